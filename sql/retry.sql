--
-- retry: chancy_retry and chancy_retry_jobs run failed and cancelled jobs
-- again.  No worker serves this database in the test instance: here jobs
-- end by hand, as an executor records them; the last part runs its jobs in
-- the database chancy.database names (postgres), where workers run them.
--
-- ids in messages do not depend on the tests before
ALTER TABLE chancy_jobs ALTER COLUMN id RESTART WITH 4000000;
ALTER TABLE chancy_workflows ALTER COLUMN id RESTART WITH 400;
SELECT name FROM chancy_declare_queue('retries');
SELECT name FROM chancy_declare_queue('bulk');
CREATE FUNCTION retry_job(kwargs jsonb) RETURNS jsonb LANGUAGE sql AS 'SELECT kwargs';
SELECT (chancy_define_job('retry_other', 'retry_job(jsonb)', queue => 'bulk')).name;
-- a job ends here as its executor would record it: its attempts used, a
-- crash charged, an error and its cost recorded
CREATE FUNCTION retry_end(job bigint, how chancy_state, at timestamptz DEFAULT now())
RETURNS void LANGUAGE sql AS $$
UPDATE chancy_jobs SET state = how, attempts = max_attempts, crashes = 1,
  started_at = at, completed_at = at, run_us = coalesce(run_us, 0) + 7,
  result = CASE WHEN how = 'succeeded' THEN '"done"'::jsonb END,
  cancelled_by = CASE WHEN how = 'cancelled' THEN current_user::regrole END,
  errors = errors || jsonb_build_object('attempt', max_attempts, 'message', how::text)
 WHERE id = job $$;

-- a failed job runs again from its first attempt: pending, due now, in the
-- ready index; its errors and its cost are kept
SELECT chancy_push('retry_job', '{"n": 1}', queue => 'retries', max_attempts => 2) AS a \gset
SELECT retry_end(:a, 'failed');
SELECT pending, failed FROM chancy_queue_stats WHERE queue = 'retries';
SELECT id = :a AS same, state, attempts, max_attempts, crashes, scheduled_at = now() AS due_now,
       started_at, completed_at, result, claim, cancelled_by, parked_on,
       errors, run_us
  FROM chancy_retry(:a);
SELECT pending, failed FROM chancy_queue_stats WHERE queue = 'retries';
SELECT state, claim IS NULL AND NOT replicated AS ready FROM chancy_jobs WHERE id = :a;
-- a cancelled one too, the cancel forgotten (it would cancel the next run)
SELECT chancy_push('retry_job', queue => 'retries') AS c \gset
SELECT state, cancelled_by IS NOT NULL AS cancel_asked FROM chancy_cancel(:c);
SELECT state, cancelled_by, completed_at, errors->-1->>'message' AS error FROM chancy_retry(:c);
SELECT pending, failed, cancelled FROM chancy_queue_stats WHERE queue = 'retries';

-- only a failed or cancelled job: 55000, and nothing changes
SELECT chancy_retry(:a);
\echo :LAST_ERROR_SQLSTATE
UPDATE chancy_jobs SET state = 'running' WHERE id = :a;
SELECT chancy_retry(:a);
SELECT retry_end(:a, 'succeeded');
SELECT chancy_retry(:a);
\echo :LAST_ERROR_SQLSTATE
SELECT state, result FROM chancy_jobs WHERE id = :a;
-- nor a workflow's step: its workflow is retried
SELECT chancy_push_sequence('retry_seq', ARRAY[chancy_with_queue(chancy_job('retry_job'), 'bulk')]) AS wf \gset
SELECT job_id AS step FROM chancy_workflow_steps WHERE workflow_id = :wf \gset
SELECT retry_end(:step, 'failed', '2001-02-03 00:30+00');
SELECT chancy_retry(:step);
\echo :LAST_ERROR_SQLSTATE
-- nor a publisher's job (logical replication)
SELECT chancy_push('retry_job', queue => 'bulk') AS pub \gset
SELECT retry_end(:pub, 'failed', '2001-02-03 00:40+00');
UPDATE chancy_jobs SET replicated = true WHERE id = :pub;
SELECT chancy_retry(:pub);
\echo :LAST_ERROR_SQLSTATE
-- unknown ids
SELECT chancy_retry(-1);
\echo :LAST_ERROR_SQLSTATE
SELECT chancy_retry(NULL);
\echo :LAST_ERROR_SQLSTATE

-- a unique key a live job holds: 23505 naming the key and the job, rather
-- than the index's error
SELECT chancy_push('retry_job', queue => 'retries', unique_key => 'nightly') AS k1 \gset
SELECT retry_end(:k1, 'failed');
SELECT chancy_push('retry_job', queue => 'retries', unique_key => 'nightly') AS k2 \gset
SELECT :k2 <> :k1 AS new_job;
SELECT chancy_retry(:k1);
\echo :LAST_ERROR_SQLSTATE
-- once that job has finished, the key is free
SELECT retry_end(:k2, 'cancelled');
SELECT state, unique_key FROM chancy_retry(:k1);
-- another role's key is not this one's
CREATE ROLE regress_chancy_retrier;
SET ROLE regress_chancy_retrier;
SELECT chancy_push('retry_job', queue => 'retries', unique_key => 'nightly') AS mine \gset
RESET ROLE;
SELECT retry_end(:mine, 'failed');

-- who may: to another role the job does not exist; a role that sees it
-- without its privileges (NOINHERIT) may not; the pushing role, and roles
-- with UPDATE on chancy_jobs may
CREATE ROLE regress_chancy_stranger;
CREATE ROLE regress_chancy_peer NOINHERIT IN ROLE regress_chancy_retrier;
CREATE ROLE regress_chancy_operator;
GRANT UPDATE ON chancy_jobs TO regress_chancy_operator;
SET ROLE regress_chancy_stranger;
SELECT chancy_retry(:mine);
\echo :LAST_ERROR_SQLSTATE
SET ROLE regress_chancy_peer;
SELECT chancy_retry(:mine);
\echo :LAST_ERROR_SQLSTATE
SET ROLE regress_chancy_retrier;
SELECT state, unique_key FROM chancy_retry(:mine);
RESET ROLE;
SELECT retry_end(:mine, 'failed', '2001-02-03 08:00+00');
SET ROLE regress_chancy_operator;
SELECT state FROM chancy_retry(:mine);
RESET ROLE;

-- chancy_retry_jobs: failed jobs by queue, name and failure time, oldest
-- first.  Those of queue bulk, with the step and the publisher's job above:
SELECT retry_end(:mine, 'failed', '2001-02-03 08:00+00');
UPDATE chancy_jobs SET queue = 'bulk' WHERE id = :mine;
CREATE TABLE retry_jobs (tag text, id bigint);
-- each pushed, then failed (or cancelled) at its hour: d2 and e2 once d1
-- and e1 have failed, when their keys were free
DO $$
DECLARE
	v record;
	id bigint;
BEGIN
	FOR v IN SELECT * FROM (VALUES ('j1', 'retry_job', 'bulk', NULL, 1),
			('j2', 'retry_other', 'bulk', NULL, 2), ('j3', 'retry_job', 'retries', NULL, 3),
			('held', 'retry_job', 'bulk', 'kb', 4), ('d1', 'retry_job', 'bulk', 'kd', 5),
			('d2', 'retry_job', 'bulk', 'kd', 6), ('cancelled', 'retry_job', 'bulk', NULL, 7),
			('e1', 'retry_job', 'bulk', 'ke', 9), ('e2', 'retry_job', 'bulk', 'ke', 10))
			AS x(tag, job, queue, key, hour)
	LOOP
		id := chancy_push(v.job, queue => v.queue, unique_key => v.key);
		INSERT INTO retry_jobs VALUES (v.tag, id);
		PERFORM retry_end(id, CASE WHEN v.tag = 'cancelled' THEN 'cancelled'
							  ELSE 'failed' END::chancy_state,
						  '2001-02-03 00:00+00'::timestamptz + v.hour * interval '1 hour');
	END LOOP;
END $$;
-- and a live job holds key kb
SELECT chancy_push('retry_job', queue => 'retries', unique_key => 'kb') AS live \gset
INSERT INTO retry_jobs VALUES ('mine', :mine), ('step', :step), ('pub', :pub), ('live', :live);
CREATE VIEW retry_states AS
SELECT r.tag, j.state, j.queue, j.name, j.unique_key FROM retry_jobs r JOIN chancy_jobs j USING (id)
 ORDER BY j.completed_at NULLS LAST, r.tag;
SELECT * FROM retry_states;
SELECT queue, pending, failed, cancelled FROM chancy_queue_stats WHERE queue = 'bulk';

-- max_jobs is 1 to 1,000,000
SELECT chancy_retry_jobs(max_jobs => 0);
\echo :LAST_ERROR_SQLSTATE
SELECT chancy_retry_jobs(max_jobs => 1000001);
SELECT chancy_retry_jobs(max_jobs => NULL);
SELECT chancy_retry_jobs('no_such_queue', max_jobs => 1000000);
-- a plain role retries only jobs it may: its own
SET ROLE regress_chancy_retrier;
SELECT chancy_retry_jobs('bulk');
RESET ROLE;
-- by name; by failure time, from failed_after until before failed_before
SELECT chancy_retry_jobs('bulk', 'retry_other');
SELECT chancy_retry_jobs(failed_after => '2001-02-03 03:00+00', failed_before => '2001-02-03 04:00+00');
-- at most max_jobs, oldest first
SELECT chancy_retry_jobs('bulk', max_jobs => 1);
SELECT * FROM retry_states;
-- a job whose key a live job holds is skipped, and does not count against
-- max_jobs: d1 runs again, d2 (after it) is not looked at
SELECT chancy_retry_jobs('bulk', max_jobs => 1);
-- of failed jobs sharing a key, the oldest runs again (e1); its key is then
-- held for d2 and e2
SELECT chancy_retry_jobs('bulk');
SELECT * FROM retry_states;
SELECT chancy_retry_jobs('bulk');
SELECT queue, pending, failed, cancelled FROM chancy_queue_stats WHERE queue = 'bulk';

DROP VIEW retry_states;
DROP TABLE retry_jobs;
DROP FUNCTION retry_end(bigint, chancy_state, timestamptz);
REVOKE UPDATE ON chancy_jobs FROM regress_chancy_operator;
DELETE FROM chancy_jobs WHERE pushed_by = 'regress_chancy_retrier'::regrole;
DROP ROLE regress_chancy_stranger, regress_chancy_peer, regress_chancy_operator,
          regress_chancy_retrier;

-- Where workers run jobs (the database chancy.database serves): a retried
-- job runs again.  Its first jobs are pushed with the extension, so that
-- the executors find them when they start.
SELECT current_database() AS regress_db \gset
\c postgres
BEGIN;
CREATE EXTENSION chancy;
SELECT name, concurrency FROM chancy_declare_queue('default', 0);
SELECT name FROM chancy_declare_queue('retry_served', 1);
SELECT name FROM chancy_declare_queue('retry_woken', 1);
CREATE TABLE retry_switch (fail boolean NOT NULL);
INSERT INTO retry_switch VALUES (true);
CREATE FUNCTION retry_flaky(kwargs jsonb) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
	IF (SELECT fail FROM public.retry_switch) THEN
		RAISE EXCEPTION 'the service is down';
	END IF;
	RETURN 'up';
END $$;
SELECT chancy_push('retry_flaky', queue => 'retry_served') AS f \gset
-- h has failed before the executor of its queue starts (as one records it)
SELECT chancy_push('retry_flaky', queue => 'retry_woken') AS h \gset
UPDATE chancy_jobs SET state = 'failed', attempts = 1, completed_at = now(),
  errors = '[{"attempt": 1, "message": "failed before"}]' WHERE id = :h;
COMMIT;
SELECT state, attempts, errors->-1->>'message' AS error FROM chancy_wait(:f, '60 s');
-- with the queue paused it waits: the gauges moved when the retry committed
SELECT name FROM chancy_pause_queue('retry_served');
SELECT state FROM chancy_retry(:f);
SELECT pending, running, succeeded, failed FROM chancy_queue_stats WHERE queue = 'retry_served';
UPDATE retry_switch SET fail = false;
SELECT name FROM chancy_resume_queue('retry_served');
SELECT state, attempts, result, jsonb_array_length(errors) AS errors FROM chancy_wait(:f, '60 s');
SELECT pending, running, succeeded, failed FROM chancy_queue_stats WHERE queue = 'retry_served';
-- the executor of retry_woken has run no job: it sleeps until something
-- wakes it (or 30 s pass).  The retry wakes it when it commits: h runs at
-- once, and fails again
UPDATE retry_switch SET fail = true;
SELECT pending, running, succeeded, failed FROM chancy_queue_stats WHERE queue = 'retry_woken';
SELECT chancy_retry_jobs('retry_woken');
SELECT state, attempts, errors->-1->>'message' AS error, jsonb_array_length(errors) AS errors
  FROM chancy_wait(:h, '20 s');
SELECT pending, running, succeeded, failed FROM chancy_queue_stats WHERE queue = 'retry_woken';
DROP EXTENSION chancy;
DROP FUNCTION retry_flaky(jsonb);
DROP TABLE retry_switch;
\c :regress_db
