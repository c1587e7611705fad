--
-- wait: chancy_wait's errors (this database has no workers in the test
-- instance, so jobs stay pending)
--
-- ids in messages do not depend on the tests before
ALTER TABLE chancy_jobs ALTER COLUMN id RESTART WITH 1000000;
SELECT chancy_push('plain_job') AS id \gset
-- a pending job times out, naming the job and its state
SELECT chancy_wait(:id, '50 ms');
\echo :LAST_ERROR_SQLSTATE
-- finished jobs are returned at once, whole
UPDATE chancy_jobs SET state = 'succeeded', result = '{"ok": true}' WHERE id = :id;
SELECT id = :id AS same, state, result FROM chancy_wait(:id);
UPDATE chancy_jobs SET state = 'failed' WHERE id = :id;
SELECT state FROM chancy_wait(:id, '0');
UPDATE chancy_jobs SET state = 'cancelled' WHERE id = :id;
SELECT state FROM chancy_wait(:id);
-- a job pushed by the waiting transaction: commit first
BEGIN;
SELECT chancy_push('plain_job') AS mine \gset
SELECT chancy_wait(:mine, '10 s');
\echo :LAST_ERROR_SQLSTATE
ROLLBACK;
-- unknown ids, NULL, negative timeouts, snapshot isolation
SELECT chancy_wait(-1);
\echo :LAST_ERROR_SQLSTATE
SELECT chancy_wait(NULL);
\echo :LAST_ERROR_SQLSTATE
SELECT chancy_wait(:id, '-1 s');
\echo :LAST_ERROR_SQLSTATE
BEGIN ISOLATION LEVEL REPEATABLE READ;
SELECT chancy_wait(:id);
\echo :LAST_ERROR_SQLSTATE
ROLLBACK;
-- another role's jobs cannot be waited for
CREATE ROLE regress_chancy_waiter;
SET ROLE regress_chancy_waiter;
SELECT chancy_wait(:id);
\echo :LAST_ERROR_SQLSTATE
RESET ROLE;
DROP ROLE regress_chancy_waiter;
