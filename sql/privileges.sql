--
-- privileges: who may push what; whose definitions a push uses (no role can
-- make another run code it chose); what a role may see
--
CREATE ROLE regress_chancy_alice;
CREATE ROLE regress_chancy_bob;
CREATE ROLE regress_chancy_mallory;
CREATE FUNCTION secret_job(kwargs jsonb) RETURNS void LANGUAGE sql AS '';
REVOKE EXECUTE ON FUNCTION secret_job(jsonb) FROM PUBLIC;
CREATE FUNCTION open_job(kwargs jsonb) RETURNS void LANGUAGE sql AS '';
CREATE FUNCTION cleanup(kwargs jsonb) RETURNS jsonb LANGUAGE sql
  AS $$ SELECT '{"by": "admin"}'::jsonb $$;
CREATE SCHEMA regress_mallory AUTHORIZATION regress_chancy_mallory;
SELECT (chancy_define_job('secret', 'secret_job(jsonb)',
                          kwargs => '{"password": "hunter2"}')).name AS defined;

SET ROLE regress_chancy_alice;
SELECT chancy_push('open_job') AS alice_job \gset
SELECT name, pushed_by FROM chancy_jobs WHERE id = :alice_job;
-- the tables are not writable
INSERT INTO chancy_jobs (name, function, queue, priority, max_attempts, pushed_by)
  VALUES ('x', 'x', 'default', 0, 1, 'postgres');
\echo :LAST_ERROR_SQLSTATE
UPDATE chancy_jobs SET state = 'cancelled';
\echo :LAST_ERROR_SQLSTATE
DELETE FROM chancy_job_definitions;
\echo :LAST_ERROR_SQLSTATE
-- no EXECUTE, no push, whichever way the job is named
SELECT chancy_push('secret');
\echo :LAST_ERROR_SQLSTATE
SELECT chancy_push('secret_job');
\echo :LAST_ERROR_SQLSTATE
SELECT chancy_push_many(ARRAY[chancy_job('open_job'), chancy_job('secret')]);
\echo :LAST_ERROR_SQLSTATE
-- raw C symbols are superuser-only, to define or to push
SELECT chancy_define_job('c_job', '$libdir/chancy_examples:greet');
\echo :LAST_ERROR_SQLSTATE
SELECT chancy_push(ROW('rogue', '$libdir/chancy_examples:greet', 'default', '{}', 0, 1,
                       NULL, NULL, NULL, NULL, '{}', NULL)::chancy_job);
\echo :LAST_ERROR_SQLSTATE
-- ... but a symbol a superuser put in a definition may be pushed by name
SELECT chancy_push('c_greet') AS id \gset
SELECT name, function, pushed_by FROM chancy_jobs WHERE id = :id;
-- definitions a role cannot use are not shown to it (secret: no EXECUTE)
SELECT name, defined_by FROM chancy_job_definitions ORDER BY name;
RESET ROLE;

-- a definition belongs to the role that made it: mallory's "cleanup" and
-- "secret" are hers alone
SET ROLE regress_chancy_mallory;
CREATE FUNCTION regress_mallory.evil(kwargs jsonb) RETURNS jsonb LANGUAGE sql
  AS $$ SELECT '{"by": "mallory"}'::jsonb $$;
SELECT (chancy_define_job('cleanup', 'regress_mallory.evil(jsonb)')).name AS squatted;
SELECT (chancy_define_job('secret', 'regress_mallory.evil(jsonb)')).name AS her_secret;
SELECT chancy_push('cleanup') AS id \gset
SELECT function, pushed_by FROM chancy_jobs WHERE id = :id;
RESET ROLE;
-- the superuser's push of cleanup runs the function called cleanup, never hers
SELECT chancy_push('cleanup') AS id \gset
SELECT function, pushed_by FROM chancy_jobs WHERE id = :id;
SELECT (chancy_job('cleanup')).function;
SELECT chancy_push('secret') AS id \gset
SELECT function FROM chancy_jobs WHERE id = :id;
-- a superuser's definition is its own, and used
SELECT (chancy_define_job('cleanup', 'cleanup(jsonb)', max_attempts => 3)).name AS defined;
SELECT name, function, defined_by FROM chancy_job_definitions
 WHERE name = 'cleanup' ORDER BY defined_by::text;
-- mallory changing hers afterwards changes nothing for anyone else
SET ROLE regress_chancy_mallory;
SELECT (chancy_define_job('cleanup', max_attempts => 9)).name AS redefined;
SELECT chancy_undefine_job('secret');
RESET ROLE;
SELECT chancy_push('cleanup') AS id \gset
SELECT function, max_attempts FROM chancy_jobs WHERE id = :id;
SET ROLE regress_chancy_alice;
SELECT chancy_push('cleanup') AS id \gset
SELECT function, max_attempts, pushed_by FROM chancy_jobs WHERE id = :id;
-- a role cannot remove another's definition: it has none of its own
SELECT chancy_undefine_job('cleanup');
\echo :LAST_ERROR_SQLSTATE
RESET ROLE;

-- a role's push uses the definition of a role that can already act as it
-- (here bob, a member of alice); two such are ambiguous
GRANT regress_chancy_alice TO regress_chancy_bob;
SET ROLE regress_chancy_bob;
SELECT (chancy_define_job('shared', 'open_job(jsonb)', priority => 7)).name AS defined;
RESET ROLE;
SET ROLE regress_chancy_alice;
SELECT chancy_push('shared') AS id \gset
SELECT function, priority FROM chancy_jobs WHERE id = :id;
RESET ROLE;
GRANT regress_chancy_alice TO regress_chancy_mallory;
SET ROLE regress_chancy_mallory;
SELECT (chancy_define_job('shared', 'regress_mallory.evil(jsonb)')).name AS defined;
RESET ROLE;
SET ROLE regress_chancy_alice;
SELECT chancy_push('shared');
\echo :LAST_ERROR_SQLSTATE
-- alice settles it with her own definition
SELECT (chancy_define_job('shared', 'open_job(jsonb)', priority => 1)).name AS defined;
SELECT chancy_push('shared') AS id \gset
SELECT function, priority FROM chancy_jobs WHERE id = :id;
RESET ROLE;
REVOKE regress_chancy_alice FROM regress_chancy_mallory;
-- ... but bob's push does not use alice's definition (alice cannot act as bob)
SET ROLE regress_chancy_bob;
SELECT chancy_push('shared') AS id \gset
SELECT function, priority FROM chancy_jobs WHERE id = :id;
RESET ROLE;

GRANT EXECUTE ON FUNCTION secret_job(jsonb) TO regress_chancy_alice;
SET ROLE regress_chancy_alice;
SELECT chancy_push('secret') AS id \gset
SELECT name, pushed_by, kwargs FROM chancy_jobs WHERE id = :id;
-- now alice may use the definition, she may see it
SELECT name, defined_by FROM chancy_job_definitions WHERE name = 'secret';

-- roles see their own jobs only (members see the roles they belong to)
SELECT DISTINCT pushed_by FROM chancy_jobs ORDER BY 1;
SELECT sum(pending) > 0 AS counts_own FROM chancy_queue_stats;
SET ROLE regress_chancy_mallory;
SELECT DISTINCT pushed_by FROM chancy_jobs ORDER BY 1;
-- the views count only what the role may see
SELECT sum(pending) AS mallory_pending FROM chancy_queue_stats;
-- worker details are for pg_monitor members; the claim plan is for all
SELECT kind, pid IS NULL AS no_pid FROM chancy_workers;
SELECT count(*) > 0 AS explained FROM chancy_explain_claim('default');
RESET ROLE;

-- the schema chancy lives in keeps its name: its statements name it, and a
-- schema of the old name made by the schema's owner would get what they run
-- (public is the database owner's in PostgreSQL 15)
ALTER SCHEMA public RENAME TO public_renamed;
\echo :LAST_ERROR_SQLSTATE
CREATE SCHEMA regress_other;
ALTER SCHEMA regress_other RENAME TO regress_other2;
DROP SCHEMA regress_other2;

DELETE FROM chancy_jobs WHERE pushed_by IN ('regress_chancy_alice'::regrole,
                                            'regress_chancy_bob'::regrole,
                                            'regress_chancy_mallory'::regrole);
DELETE FROM chancy_job_definitions WHERE defined_by IN ('regress_chancy_alice'::regrole,
                                                        'regress_chancy_bob'::regrole,
                                                        'regress_chancy_mallory'::regrole);
SELECT chancy_undefine_job('cleanup');
REVOKE EXECUTE ON FUNCTION secret_job(jsonb) FROM regress_chancy_alice;
DROP SCHEMA regress_mallory CASCADE;
DROP ROLE regress_chancy_alice;
DROP ROLE regress_chancy_bob;
DROP ROLE regress_chancy_mallory;
