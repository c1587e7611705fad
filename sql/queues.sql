--
-- queues: declaring, changing, pausing, resuming and deleting queues; who may;
-- the views
--
-- error contexts would only repeat the functions' signatures
\set SHOW_CONTEXT never
SELECT name, concurrency, paused_until, backoff_base, backoff_factor, backoff_max,
       time_limit, memory_limit, executor, prune_after, from_config
  FROM chancy_declare_queue('emails', 3);
-- a declaration changes only the settings it is given
SELECT name, concurrency, backoff_base, backoff_factor, backoff_max
  FROM chancy_declare_queue('emails', backoff_base => '2 s', backoff_factor => 3,
                            backoff_max => '10 min');
SELECT name, concurrency, time_limit, executor
  FROM chancy_declare_queue('emails', time_limit => '1 min', executor => 'isolated',
                            memory_limit => 1000000);
SELECT name, concurrency, backoff_base, time_limit, memory_limit, executor
  FROM chancy_declare_queue('emails', 5);
-- a limit of 0 removes it
SELECT name, time_limit, memory_limit
  FROM chancy_declare_queue('emails', time_limit => '0', memory_limit => 0);
-- pause and resume
SELECT name, paused_until FROM chancy_pause_queue('emails');
SELECT name, paused_until FROM chancy_pause_queue('emails', '2030-01-01 00:00:00+00');
SELECT name, paused_until FROM chancy_resume_queue('emails');
SELECT name, paused_until FROM chancy_pause_queue('emails', '2000-01-01 00:00:00+00');

-- bad input: every rule is a CHECK of chancy_queues, with its own message
SELECT chancy_declare_queue(NULL);
\echo :LAST_ERROR_SQLSTATE
SELECT chancy_declare_queue('');
\echo :LAST_ERROR_SQLSTATE
SELECT chancy_declare_queue(repeat('q', 64));
\echo :LAST_ERROR_SQLSTATE
SELECT chancy_declare_queue('emails', -1);
\echo :LAST_ERROR_SQLSTATE
SELECT chancy_declare_queue('emails', 1001);
\echo :LAST_ERROR_SQLSTATE
SELECT chancy_declare_queue('emails', 1, backoff_base => '0');
\echo :LAST_ERROR_SQLSTATE
SELECT chancy_declare_queue('emails', 1, backoff_factor => 0.5);
\echo :LAST_ERROR_SQLSTATE
SELECT chancy_declare_queue('emails', 1, backoff_base => '1 min', backoff_max => '1 s');
\echo :LAST_ERROR_SQLSTATE
SELECT chancy_declare_queue('emails', 1, backoff_base => '600000 years', backoff_max => '600000 years');
\echo :LAST_ERROR_SQLSTATE
SELECT chancy_declare_queue('emails', 1, time_limit => '0.4 ms');
\echo :LAST_ERROR_SQLSTATE
SELECT chancy_declare_queue('emails', 1, time_limit => '-1 year 360 days 1 s');
\echo :LAST_ERROR_SQLSTATE
SELECT chancy_declare_queue('emails', 1, time_limit => '1000000 years');
\echo :LAST_ERROR_SQLSTATE
SELECT (chancy_declare_queue('yearly', 0, time_limit => '366 days', backoff_max => '1 year')).time_limit;
SELECT chancy_delete_queue('yearly');
SELECT chancy_declare_queue('emails', 1, memory_limit => -1);
\echo :LAST_ERROR_SQLSTATE
SELECT chancy_declare_queue('emails', 1, executor => 'thread');
\echo :LAST_ERROR_SQLSTATE
SELECT chancy_declare_queue('emails', 1, prune_after => '-1 day');
\echo :LAST_ERROR_SQLSTATE
-- nothing of the failed declarations stuck
SELECT name, concurrency, backoff_base, backoff_max, time_limit, executor
  FROM chancy_queues WHERE name = 'emails';
SELECT name, time_limit, executor
  FROM chancy_declare_queue('untrusted', 1, time_limit => '30 s', executor => 'isolated');
SELECT chancy_pause_queue('no_such_queue');
\echo :LAST_ERROR_SQLSTATE
SELECT chancy_resume_queue('no_such_queue');
\echo :LAST_ERROR_SQLSTATE
SELECT chancy_push('plain_job', queue => repeat('q', 64));
\echo :LAST_ERROR_SQLSTATE

-- managing queues is for the owner, who may grant it: then it works
CREATE ROLE regress_chancy_queuer;
SET ROLE regress_chancy_queuer;
SELECT chancy_declare_queue('mine');
\echo :LAST_ERROR_SQLSTATE
SELECT chancy_pause_queue('emails');
\echo :LAST_ERROR_SQLSTATE
SELECT chancy_delete_queue('emails');
\echo :LAST_ERROR_SQLSTATE
SELECT count(*) > 0 AS can_read FROM chancy_queues;
RESET ROLE;
GRANT EXECUTE ON FUNCTION
  chancy_declare_queue(text, int, interval, float8, interval, interval, text, interval, bigint, int, interval),
  chancy_pause_queue(text, timestamptz), chancy_resume_queue(text),
  chancy_delete_queue(text, boolean)
  TO regress_chancy_queuer;
SET ROLE regress_chancy_queuer;
SELECT name, concurrency FROM chancy_declare_queue('mine', 2);
SELECT name, paused_until IS NOT NULL AS paused FROM chancy_pause_queue('mine');
SELECT name, paused_until IS NULL AS resumed FROM chancy_resume_queue('mine');
SELECT chancy_delete_queue('mine');
RESET ROLE;
REVOKE ALL ON FUNCTION
  chancy_declare_queue(text, int, interval, float8, interval, interval, text, interval, bigint, int, interval),
  chancy_pause_queue(text, timestamptz), chancy_resume_queue(text),
  chancy_delete_queue(text, boolean)
  FROM regress_chancy_queuer;
DROP ROLE regress_chancy_queuer;

-- the queue functions cannot be redirected: a schema named like the caller
-- (first in its search_path) with a look-alike chancy_queues is not used
CREATE SCHEMA postgres;
CREATE TABLE postgres.chancy_queues (LIKE public.chancy_queues);
INSERT INTO postgres.chancy_queues SELECT * FROM public.chancy_queues;
SELECT name, paused_until IS NOT NULL AS paused FROM chancy_pause_queue('untrusted');
SELECT name, paused_until IS NOT NULL AS paused FROM public.chancy_queues WHERE name = 'untrusted';
SELECT name, paused_until IS NOT NULL AS paused FROM postgres.chancy_queues WHERE name = 'untrusted';
DROP SCHEMA postgres CASCADE;

-- deleting a queue: refused while it has jobs that have not finished
SELECT chancy_push('plain_job', queue => 'untrusted') AS live \gset
SELECT chancy_delete_queue('untrusted');
\echo :LAST_ERROR_SQLSTATE
SELECT chancy_delete_queue('untrusted', purge_jobs => true);
SELECT count(*) AS jobs_left FROM chancy_jobs WHERE id = :live;
SELECT count(*) AS queue_left FROM chancy_queues WHERE name = 'untrusted';
SELECT chancy_push('plain_job', queue => 'untrusted');
\echo :LAST_ERROR_SQLSTATE
SELECT chancy_delete_queue('untrusted');
\echo :LAST_ERROR_SQLSTATE

-- counts per queue and state
SELECT queue, pending, running, succeeded, concurrency, executors
  FROM chancy_queue_stats WHERE queue IN ('emails', 'default') ORDER BY queue;

-- chancy_workers lists chancy's processes (this database is not served here)
SELECT count(*) FROM chancy_workers WHERE kind = 'launcher';
SELECT count(*) FROM chancy_workers WHERE database = current_database();

-- cancelling: a pending job, a finished one, bad ids
ALTER TABLE chancy_jobs ALTER COLUMN id RESTART WITH 2000000;
SELECT chancy_push('plain_job', queue => 'emails') AS id \gset
SELECT state, errors->0->>'message' AS message, cancelled_by FROM chancy_cancel(:id);
SELECT state FROM chancy_cancel(:id);
SELECT chancy_cancel(NULL);
\echo :LAST_ERROR_SQLSTATE
-- a role that cannot see a job cannot learn it exists, nor who pushed it
CREATE ROLE regress_chancy_other;
SET ROLE regress_chancy_other;
SELECT chancy_cancel(:id);
\echo :LAST_ERROR_SQLSTATE
SELECT chancy_cancel(-5);
\echo :LAST_ERROR_SQLSTATE
RESET ROLE;
DROP ROLE regress_chancy_other;
-- a cancel that is rolled back (savepoint) leaves the job as it was
SELECT chancy_push('plain_job', queue => 'emails') AS id \gset
BEGIN;
SAVEPOINT s;
SELECT state FROM chancy_cancel(:id);
ROLLBACK TO SAVEPOINT s;
COMMIT;
SELECT state, cancelled_by FROM chancy_jobs WHERE id = :id;
-- a claimed job is only asked to be cancelled: its executor records it
UPDATE chancy_jobs SET claim = 42 WHERE id = :id;
SELECT state, cancelled_by FROM chancy_cancel(:id);
UPDATE chancy_jobs SET claim = NULL WHERE id = :id;

-- outside a job there is no current job
SELECT chancy_current_job() IS NULL AS no_current_job;
