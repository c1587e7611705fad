--
-- privileges: a role pushes only jobs whose function it may execute; C
-- symbols are for superusers; the pushing role is recorded; roles see
-- their own jobs only
--
CREATE ROLE regress_chancy_alice;
CREATE ROLE regress_chancy_bob;
CREATE FUNCTION secret_job(kwargs jsonb) RETURNS void LANGUAGE sql AS '';
REVOKE EXECUTE ON FUNCTION secret_job(jsonb) FROM PUBLIC;
CREATE FUNCTION open_job(kwargs jsonb) RETURNS void LANGUAGE sql AS '';
SELECT chancy_define_job('secret', 'secret_job(jsonb)');

SET ROLE regress_chancy_alice;
SELECT chancy_push('open_job') AS alice_job \gset
SELECT name, pushed_by FROM chancy_jobs WHERE id = :alice_job;
-- the table itself is not writable
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
                       NULL, NULL, NULL, NULL, '{}')::chancy_job);
\echo :LAST_ERROR_SQLSTATE
-- ... but a symbol a superuser put in a definition may be pushed by name
SELECT chancy_push('c_greet') AS id \gset
SELECT name, function, pushed_by FROM chancy_jobs WHERE id = :id;
-- another role's definition cannot be changed
SELECT chancy_define_job('secret', 'open_job(jsonb)');
\echo :LAST_ERROR_SQLSTATE
SELECT chancy_undefine_job('secret');
\echo :LAST_ERROR_SQLSTATE
SELECT chancy_define_job('alices', 'open_job(jsonb)', priority => 3);
RESET ROLE;

GRANT EXECUTE ON FUNCTION secret_job(jsonb) TO regress_chancy_alice;
SET ROLE regress_chancy_alice;
SELECT chancy_push('secret') AS id \gset
SELECT name, pushed_by FROM chancy_jobs WHERE id = :id;

-- roles see their own jobs only
SELECT DISTINCT pushed_by FROM chancy_jobs;
SET ROLE regress_chancy_bob;
SELECT count(*) FROM chancy_jobs;
SELECT chancy_define_job('alices', 'open_job(jsonb)');
\echo :LAST_ERROR_SQLSTATE
SELECT chancy_push('alices') AS id \gset
SELECT priority FROM chancy_jobs WHERE id = :id;
RESET ROLE;

GRANT regress_chancy_alice TO regress_chancy_bob;
SET ROLE regress_chancy_bob;
SELECT count(*) > 0 AS sees_alices FROM chancy_jobs;
SELECT chancy_undefine_job('alices');
RESET ROLE;

DELETE FROM chancy_jobs WHERE pushed_by IN ('regress_chancy_alice'::regrole,
                                            'regress_chancy_bob'::regrole);
REVOKE EXECUTE ON FUNCTION secret_job(jsonb) FROM regress_chancy_alice;
DROP ROLE regress_chancy_alice;
DROP ROLE regress_chancy_bob;
