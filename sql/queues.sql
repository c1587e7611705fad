--
-- queues: declaring, pausing and resuming queues; the views
--
-- error contexts would only repeat the functions' signatures
\set SHOW_CONTEXT never
SELECT name, concurrency, paused_until, backoff_base, backoff_factor, backoff_max
  FROM chancy_declare_queue('emails', 3);
SELECT name, concurrency FROM chancy_declare_queue('emails', 5, backoff_base => '2 s',
                                                   backoff_factor => 3,
                                                   backoff_max => '10 min');
SELECT name, concurrency, backoff_base, backoff_factor, backoff_max
  FROM chancy_queues WHERE name = 'emails';
SELECT name, paused_until FROM chancy_pause_queue('emails');
SELECT name, paused_until FROM chancy_pause_queue('emails', '2030-01-01 00:00:00+00');
SELECT name, paused_until FROM chancy_resume_queue('emails');

-- bad input
SELECT chancy_declare_queue(NULL);
\echo :LAST_ERROR_SQLSTATE
SELECT chancy_declare_queue('');
\echo :LAST_ERROR_SQLSTATE
SELECT chancy_declare_queue(repeat('q', 64));
\echo :LAST_ERROR_SQLSTATE
SELECT chancy_declare_queue('emails', -1);
\echo :LAST_ERROR_SQLSTATE
SELECT chancy_declare_queue('emails', NULL);
\echo :LAST_ERROR_SQLSTATE
SELECT chancy_declare_queue('emails', 1, backoff_base => '0');
\echo :LAST_ERROR_SQLSTATE
SELECT chancy_declare_queue('emails', 1, backoff_factor => 0.5);
\echo :LAST_ERROR_SQLSTATE
SELECT chancy_declare_queue('emails', 1, backoff_base => '1 min', backoff_max => '1 s');
\echo :LAST_ERROR_SQLSTATE
SELECT chancy_declare_queue('emails', 1, time_limit => '0');
\echo :LAST_ERROR_SQLSTATE
SELECT chancy_declare_queue('emails', 1, executor => 'thread');
\echo :LAST_ERROR_SQLSTATE
SELECT name, time_limit, executor
  FROM chancy_declare_queue('untrusted', 1, time_limit => '30 s', executor => 'isolated');
SELECT chancy_pause_queue('no_such_queue');
\echo :LAST_ERROR_SQLSTATE
SELECT chancy_resume_queue('no_such_queue');
\echo :LAST_ERROR_SQLSTATE
SELECT chancy_push('plain_job', queue => repeat('q', 64));
\echo :LAST_ERROR_SQLSTATE

-- managing queues is for the owner
CREATE ROLE regress_chancy_queuer;
SET ROLE regress_chancy_queuer;
SELECT chancy_declare_queue('mine');
\echo :LAST_ERROR_SQLSTATE
SELECT chancy_pause_queue('emails');
\echo :LAST_ERROR_SQLSTATE
SELECT count(*) > 0 AS can_read FROM chancy_queues;
RESET ROLE;
DROP ROLE regress_chancy_queuer;

-- counts per queue and state
SELECT queue, pending, running, succeeded, concurrency
  FROM chancy_queue_stats WHERE queue IN ('emails', 'mail2') ORDER BY queue;

-- chancy_workers lists chancy's processes (this database is not served here)
SELECT count(*) FROM chancy_workers WHERE kind = 'launcher';
SELECT count(*) FROM chancy_workers WHERE database = current_database();

-- cancelling: a pending job, a finished one, bad ids
ALTER TABLE chancy_jobs ALTER COLUMN id RESTART WITH 2000000;
SELECT chancy_push('plain_job', queue => 'emails') AS id \gset
SELECT state, errors->0->>'message' AS message FROM chancy_cancel(:id);
SELECT state FROM chancy_cancel(:id);
SELECT chancy_cancel(NULL);
\echo :LAST_ERROR_SQLSTATE
CREATE ROLE regress_chancy_other;
SET ROLE regress_chancy_other;
SELECT chancy_cancel(:id);
\echo :LAST_ERROR_SQLSTATE
RESET ROLE;
DROP ROLE regress_chancy_other;

-- outside a job there is no current job
SELECT chancy_current_job() IS NULL AS no_current_job;
