--
-- workflows: a graph is checked whole before anything is inserted; steps
-- are pushed waiting outside the ready jobs until their dependencies are
-- met; cancel, retry and wait (this database has no workers in the test
-- instance, so no step runs)
--
ALTER TABLE chancy_workflows ALTER COLUMN id RESTART WITH 100;
ALTER TABLE chancy_jobs ALTER COLUMN id RESTART WITH 3000000;
CREATE FUNCTION wf_step(kwargs jsonb) RETURNS jsonb LANGUAGE sql AS 'SELECT kwargs';
SELECT (chancy_define_job('s', 'wf_step(jsonb)')).name;
SELECT count(*) AS jobs_before FROM chancy_jobs \gset

-- invalid graphs: 22023, naming what is wrong
SELECT chancy_push_workflow('dup', ARRAY[chancy_step('a', chancy_job('s')),
	chancy_step('a', chancy_job('s'))]);
\echo :LAST_ERROR_SQLSTATE
SELECT chancy_push_workflow('unknown', ARRAY[chancy_step('a', chancy_job('s'), '{b}')]);
SELECT chancy_push_workflow('self', ARRAY[chancy_step('a', chancy_job('s'), '{a}')]);
-- a cycle is named by its path, whatever leads to it
SELECT chancy_push_workflow('cycle', ARRAY[chancy_step('a', chancy_job('s'), '{c}'),
	chancy_step('b', chancy_job('s'), '{a}'), chancy_step('c', chancy_job('s'), '{b}'),
	chancy_step('d', chancy_job('s'), '{a}')]);
\echo :LAST_ERROR_SQLSTATE
SELECT chancy_push_workflow('cycle', ARRAY[chancy_step('x', chancy_job('s')),
	chancy_step('after', chancy_job('s'), '{a}'),
	chancy_step('a', chancy_job('s'), '{x,b}'), chancy_step('b', chancy_job('s'), '{a}')]);
SELECT chancy_push_workflow('policy', ARRAY[chancy_step('a', chancy_job('s'), '{}', 'ignore')]);
SELECT chancy_push_workflow('', ARRAY[chancy_step('a', chancy_job('s'))]);
SELECT chancy_push_workflow('empty', '{}');
SELECT chancy_push_workflow('null', NULL);
\echo :LAST_ERROR_SQLSTATE
SELECT chancy_push_workflow('nulls', ARRAY[NULL::chancy_step]);
SELECT chancy_push_workflow('noname', ARRAY[chancy_step(NULL, chancy_job('s'))]);
SELECT chancy_push_workflow('nojob', ARRAY[chancy_step('a', NULL)]);
SELECT chancy_push_workflow('nulldep', ARRAY[chancy_step('a', chancy_job('s'), ARRAY[NULL])]);
SELECT chancy_push_workflow('unique', ARRAY[chancy_step('a',
	chancy_with_unique_key(chancy_job('s'), 'k'))]);
SELECT chancy_push_workflow('badjob', ARRAY[chancy_step('a', chancy_job('s')),
	chancy_step('b', chancy_job('no_such_job'))]);
SET chancy.max_workflow_steps = 3;
SELECT chancy_push_workflow('big', (SELECT array_agg(chancy_step(g::text, chancy_job('s')))
	FROM generate_series(1, 4) g));
\echo :LAST_ERROR_SQLSTATE
-- and at most 100 dependencies a step: 250 steps each after all before it
SET chancy.max_workflow_steps = 250;
SELECT chancy_push_workflow('dense', (SELECT array_agg(chancy_step(g::text, chancy_job('s'),
	ARRAY(SELECT h::text FROM generate_series(1, g - 1) h))) FROM generate_series(1, 250) g));
RESET chancy.max_workflow_steps;
-- none of them left anything behind
SELECT count(*) AS workflows FROM chancy_workflows;
SELECT count(*) - :jobs_before AS jobs FROM chancy_jobs;

-- Chancy's diamond: top is ready; left, right and bottom wait, out of the
-- ready index (claim 0) with their dependencies counted
SELECT chancy_push_workflow('example', ARRAY[
	chancy_step('top', chancy_job('s')),
	chancy_step('left', chancy_job('s'), '{top}'),
	chancy_step('right', chancy_job('s'), '{top}'),
	chancy_step('bottom', chancy_job('s'), '{left,right,left}')]) AS wf \gset
SELECT name, state, steps_total, steps_done, steps_failed, steps_waiting
  FROM chancy_workflows WHERE id = :wf;
SELECT s.step, s.state, s.deps_left, j.claim, s.on_dep_failure, s.depends_on
  FROM chancy_workflow_steps s JOIN chancy_jobs j ON j.id = s.job_id
 WHERE s.workflow_id = :wf ORDER BY s.job_id;
SELECT chancy_workflow_dot(:wf);
-- waiting steps are not jobs parked by flow control
SELECT count(*) AS unkeyed_parked FROM chancy_limit_stats WHERE key IS NULL;
-- results are for a running step
SELECT chancy_step_result('top');
SELECT chancy_parent_results();
SELECT chancy_add_steps(ARRAY[chancy_step('more', chancy_job('s'))]);

-- a sequence: steps 1, 2, 3, each after the one before
SELECT chancy_push_sequence('seq', ARRAY[chancy_job('s'), chancy_job('s'),
	chancy_job('s')]) AS seq \gset
SELECT step, deps_left, depends_on FROM chancy_workflow_steps
 WHERE workflow_id = :seq ORDER BY job_id;

-- cancelling a waiting step cancels the steps after it (their policy is
-- cancel); a step that runs anyway counts it as met
SELECT chancy_push_workflow('partial', ARRAY[
	chancy_step('a', chancy_job('s')),
	chancy_step('b', chancy_job('s'), '{a}'),
	chancy_step('c', chancy_job('s'), '{b}'),
	chancy_step('finally', chancy_job('s'), '{c}', 'run'),
	chancy_step('later', chancy_job('s'), '{b}', 'wait')]) AS part \gset
SELECT state FROM chancy_cancel((SELECT job_id FROM chancy_workflow_steps
								 WHERE workflow_id = :part AND step = 'b'));
SELECT step, state, deps_left, errors->-1->>'message' AS why FROM chancy_workflow_steps
 WHERE workflow_id = :part ORDER BY job_id;
SELECT state, steps_done, steps_failed, steps_waiting FROM chancy_workflows WHERE id = :part;

-- cancelling the workflow cancels every step no executor holds at once;
-- waiting returns it
SELECT state, steps_done, steps_failed, steps_waiting, cancelled_by
  FROM chancy_cancel_workflow(:part);
SELECT step, state, errors->-1->>'message' AS why FROM chancy_workflow_steps
 WHERE workflow_id = :part ORDER BY job_id;
SELECT state FROM chancy_wait_workflow(:part, '0');
SELECT state FROM chancy_cancel_workflow(:part);

-- a retry runs the failed and cancelled steps again, waiting anew (a
-- succeeded step would keep its result)
UPDATE chancy_jobs SET state = 'succeeded', result = '{"a": 1}', attempts = 1
 WHERE workflow_id = :part AND step = 'a';
SELECT state, steps_done, steps_failed, steps_waiting FROM chancy_retry_workflow(:part);
SELECT s.step, s.state, s.deps_left, j.claim, s.attempts, s.result
  FROM chancy_workflow_steps s JOIN chancy_jobs j ON j.id = s.job_id
 WHERE s.workflow_id = :part ORDER BY s.job_id;
-- a running workflow is not retried
SELECT chancy_retry_workflow(:part);
\echo :LAST_ERROR_SQLSTATE

-- waiting: a time-out, the pushing transaction, unknown ids
SELECT chancy_wait_workflow(:wf, '50 ms');
\echo :LAST_ERROR_SQLSTATE
BEGIN;
SELECT chancy_push_sequence('mine', ARRAY[chancy_job('s')]) AS mine \gset
SELECT chancy_wait_workflow(:mine, '1 s');
ROLLBACK;
SELECT chancy_wait_workflow(-1);
\echo :LAST_ERROR_SQLSTATE
SELECT chancy_cancel_workflow(-1);
SELECT chancy_retry_workflow(NULL);

-- another role sees none of it, and cannot cancel it
CREATE ROLE regress_chancy_wf;
SET ROLE regress_chancy_wf;
SELECT count(*) FROM chancy_workflows;
SELECT count(*) FROM chancy_workflow_steps;
SELECT chancy_cancel_workflow(:wf);
SELECT * FROM chancy_workflow_deps;
RESET ROLE;
DROP ROLE regress_chancy_wf;
SELECT state FROM chancy_cancel_workflow(:wf);
SELECT state FROM chancy_cancel_workflow(:seq);
