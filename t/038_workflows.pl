# Workflows (src/workflow.c, queue.c): Chancy's diamond runs left and right
# at once and bottom after both, with their results; a fan-in of 1,000
# parents under 8 executors starts its child exactly once; the failure
# policies; a step's retries; a retry of the workflow runs only what failed;
# kill -9 of an executor mid-workflow loses nothing and runs no step twice;
# a child starts within milliseconds of its parent's commit; the gauges stay
# right; a finished workflow is pruned with its steps, a running one never.
use strict;
use warnings;
use FindBin;
use lib $FindBin::RealBin;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use IPC::Run;
use ChancyTest;

my $node = chancy_node('workflows', qq{
chancy.queues = 'default:8, two:2'
chancy.max_executors = 12
max_worker_processes = 20
restart_after_crash = on
});
sub sql { return $node->safe_psql('postgres', shift); }

# wstep: records its run in ran (in its own transaction: a run that did not
# commit leaves no row), sleeps kwargs.s seconds, fails while kwargs.fail
# names a row of failing or its attempt is below kwargs.fail_before, and
# returns its step and what its parents gave.
sql(q{CREATE EXTENSION chancy;
	CREATE TABLE ran (job bigint, step text, started timestamptz, ended timestamptz,
					  parents jsonb);
	CREATE TABLE failing (name text PRIMARY KEY);
	CREATE FUNCTION wstep(kwargs jsonb) RETURNS jsonb LANGUAGE plpgsql AS $$
	DECLARE
		me bigint := (SELECT id FROM chancy_current_job());
		my_step text := (SELECT step FROM chancy_jobs WHERE id = me);
		s timestamptz := clock_timestamp();
	BEGIN
		PERFORM pg_sleep(coalesce((kwargs->>'s')::float8, 0));
		IF EXISTS (SELECT FROM failing WHERE name = kwargs->>'fail')
		   OR (SELECT attempt FROM chancy_current_job()) < (kwargs->>'fail_before')::int THEN
			RAISE EXCEPTION 'step % fails', my_step;
		END IF;
		INSERT INTO ran VALUES (me, my_step, s, clock_timestamp(), chancy_parent_results());
		RETURN jsonb_build_object('step', my_step);
	END $$;
	SELECT chancy_define_job('w', 'wstep(jsonb)');});

# A step of job w, with kwargs $k and further chancy_with_* calls $with.
sub step
{
	my ($name, $deps, %o) = @_;
	my $job = "chancy_with_kwargs(chancy_job('w'), '" . ($o{kwargs} // '{}') . "')";
	$job = "chancy_with_queue($job, '$o{queue}')" if $o{queue};
	$job = "chancy_with_max_attempts($job, $o{attempts})" if $o{attempts};
	return "chancy_step('$name', $job, '{" . join(',', @$deps) . "}'"
	  . ($o{policy} ? ", '$o{policy}'" : '') . ')';
}

sub push_workflow
{
	my ($name, @steps) = @_;
	return sql("SELECT chancy_push_workflow('$name', ARRAY[" . join(', ', @steps) . '])');
}

sub wait_workflow
{
	my ($id, $secs) = @_;
	$secs //= 120;
	return sql("SELECT state FROM chancy_wait_workflow($id, '$secs s')");
}

# 1. Chancy's diamond in queue two (2 executors): left and right overlap,
# bottom starts after both ended, and gets both results.
my $wf = push_workflow('example', step('top', [], queue => 'two'),
	step('left', ['top'], queue => 'two', kwargs => '{"s": 1}'),
	step('right', ['top'], queue => 'two', kwargs => '{"s": 1}'),
	step('bottom', ['left', 'right'], queue => 'two'));
is(wait_workflow($wf), 'succeeded', 'the diamond succeeds');
my %t = map { my ($s, $b, $e) = split /\|/; ($s => [$b, $e]) }
  split /\n/, sql(q{SELECT r.step, extract(epoch FROM started), extract(epoch FROM ended)
	FROM ran r JOIN chancy_jobs j ON j.id = r.job WHERE j.workflow_id = } . $wf);
ok($t{left}[0] < $t{right}[1] && $t{right}[0] < $t{left}[1], 'left and right ran at once');
ok($t{bottom}[0] >= $t{left}[1] && $t{bottom}[0] >= $t{right}[1],
	'bottom started after both ended');
ok($t{left}[0] >= $t{top}[1], '... and they after top');
is(sql(qq{SELECT parents FROM ran r JOIN chancy_jobs j ON j.id = r.job
	WHERE j.workflow_id = $wf AND r.step = 'bottom'}),
	'{"left": {"step": "left"}, "right": {"step": "right"}}',
	'bottom gets the results of left and right');
is(sql(qq{SELECT concat_ws(' ', state, steps_total, steps_done, steps_failed, steps_waiting)
	FROM chancy_workflows WHERE id = $wf}), 'succeeded 4 4 0 0', 'its counters');

# 2. Fan-in: 1,000 parents under 8 executors, one child: it starts once,
# after the last parent, and sees all 1,000 results.
$wf = sql(q{SELECT chancy_push_workflow('fan-in',
	ARRAY(SELECT chancy_step('p' || g, chancy_job('w')) FROM generate_series(1, 1000) g)
	|| chancy_step('child', chancy_job('w'),
				   ARRAY(SELECT 'p' || g FROM generate_series(1, 1000) g)))});
is(wait_workflow($wf), 'succeeded', 'the fan-in succeeds');
is(sql(qq{SELECT count(*) || ' ' || min((SELECT count(*) FROM jsonb_object_keys(parents))) FROM ran r
	JOIN chancy_jobs j ON j.id = r.job WHERE j.workflow_id = $wf AND r.step = 'child'}),
	'1 1000', 'its child ran once, with 1,000 results');
is(sql(qq{SELECT (SELECT started FROM ran r JOIN chancy_jobs j ON j.id = r.job
		WHERE j.workflow_id = $wf AND r.step = 'child')
	>= max(ended) FROM ran r JOIN chancy_jobs j ON j.id = r.job
	WHERE j.workflow_id = $wf AND r.step <> 'child'}), 't', '... after the last parent ended');
is(sql(qq{SELECT count(DISTINCT r.job) || ' ' || count(*) FROM ran r
	JOIN chancy_jobs j ON j.id = r.job WHERE j.workflow_id = $wf}), '1001 1001',
	'every step ran exactly once');

# 3. Failure policies.  b fails for good (2 attempts): c (cancel) is
# cancelled naming b, d after c too; fin (run) runs anyway; w (wait) and
# what follows it wait; the workflow has failed.
sql(q{INSERT INTO failing VALUES ('b')});
$wf = push_workflow('policies', step('a', []),
	step('b', ['a'], kwargs => '{"fail": "b"}', attempts => 2),
	step('c', ['b']), step('d', ['c']),
	step('fin', ['d'], policy => 'run'),
	step('w', ['b'], policy => 'wait'), step('after_w', ['w']),
	step('flaky', ['a'], kwargs => '{"fail_before": 3}', attempts => 3),
	step('after_flaky', ['flaky']));
is(wait_workflow($wf), 'failed', 'a workflow whose step failed has failed');
is(sql(qq{SELECT string_agg(step || ':' || state || ':' || attempts, ' ' ORDER BY job_id)
	FROM chancy_workflow_steps WHERE workflow_id = $wf}),
	'a:succeeded:1 b:failed:2 c:cancelled:0 d:cancelled:0 fin:succeeded:1 w:pending:0 '
	  . 'after_w:pending:0 flaky:succeeded:3 after_flaky:succeeded:1',
	'cancel, run and wait; a step retried within its attempts went on');
is(sql(qq{SELECT string_agg((errors->-1->>'message') || ' ' || (errors->-1->>'dependency_job'),
	' / ' ORDER BY job_id) FROM chancy_workflow_steps WHERE workflow_id = $wf AND step IN ('c', 'd')}),
	sprintf('dependency "b" failed %d / dependency "b" failed %d',
		(sql(qq{SELECT job_id FROM chancy_workflow_steps WHERE workflow_id = $wf AND step = 'b'})) x 2),
	'the cancelled steps name the failed ancestor');
is(sql(qq{SELECT parents FROM ran r JOIN chancy_jobs j ON j.id = r.job
	WHERE j.workflow_id = $wf AND r.step = 'fin'}), '{}', 'a failed parent gives no result');
is(sql(qq{SELECT concat_ws(' ', steps_total, steps_done, steps_failed, steps_waiting)
	FROM chancy_workflows WHERE id = $wf}), '9 7 3 2', 'its counters');

# 4. The retry runs b, c, d and fin again (b succeeds now), w and after_w
# go on; a, flaky and after_flaky keep their runs and results.
sql(qq{DELETE FROM failing; SELECT state FROM chancy_retry_workflow($wf)});
is(wait_workflow($wf), 'succeeded', 'the retried workflow succeeds');
is(sql(qq{SELECT string_agg(r.step || '=' || r.n, ' ' ORDER BY r.step) FROM (
	SELECT j.step, count(*) AS n FROM ran x JOIN chancy_jobs j ON j.id = x.job
	WHERE j.workflow_id = $wf GROUP BY 1) r}),
	'a=1 after_flaky=1 after_w=1 b=1 c=1 d=1 fin=2 flaky=1 w=1',
	'only what failed or followed a failure ran again');
is(sql(qq{SELECT string_agg(step || ':' || attempts, ' ' ORDER BY job_id)
	FROM chancy_workflow_steps WHERE workflow_id = $wf AND step IN ('a', 'b', 'flaky')}),
	'a:1 b:1 flaky:3', 'succeeded steps keep their attempts');

# 5. kill -9 of the executor running a step: the cluster restarts, the step
# runs again; nothing is lost and no step's work commits twice.
$wf = push_workflow('crash', step('one', []), step('two', ['one'], kwargs => '{"s": 30}'),
	step('three', ['two']));
my $two = sql(qq{SELECT job_id FROM chancy_workflow_steps WHERE workflow_id = $wf AND step = 'two'});
$node->poll_query_until('postgres',
	"SELECT count(*) = 1 FROM chancy_workers WHERE job_id = $two AND state = 'running'")
  or die 'step two never ran';
my $pid = sql("SELECT pid FROM chancy_workers WHERE job_id = $two");
sql(qq{UPDATE chancy_jobs SET kwargs = '{}' WHERE id = $two});
kill 'KILL', $pid;
$node->poll_query_until('postgres', 'SELECT true', 't') or die 'server never came back';
is(wait_workflow($wf), 'succeeded', 'a workflow whose executor was killed succeeds');
is(sql(qq{SELECT string_agg(j.step || '=' || (SELECT count(*) FROM ran r WHERE r.job = j.id),
	' ' ORDER BY j.id) FROM chancy_jobs j WHERE j.workflow_id = $wf}), 'one=1 two=1 three=1',
	'each step committed its work once');
is(sql("SELECT crashes FROM chancy_jobs WHERE id = $two"), '1', 'the killed step was charged a crash');

# 6. A chain of 50 steps: each starts within milliseconds of its parent's
# end (the benchmark holds the real bound).
$wf = sql(q{SELECT chancy_push_sequence('chain',
	ARRAY(SELECT chancy_job('w') FROM generate_series(1, 50)))});
is(wait_workflow($wf), 'succeeded', 'a chain of 50 succeeds');
my ($p50, $max) = split /\|/, sql(qq{SELECT
	percentile_cont(0.5) WITHIN GROUP (ORDER BY gap), max(gap) FROM (
	SELECT 1000 * extract(epoch FROM c.started_at - p.completed_at) AS gap
	FROM chancy_workflow_deps d JOIN chancy_jobs p ON p.id = d.parent
	JOIN chancy_jobs c ON c.id = d.child WHERE d.workflow_id = $wf) g});
cmp_ok($p50, '<', 50, "a child starts within milliseconds of its parent (p50 $p50 ms, max $max ms)");

# 7a. The C SDK: a C step reads its parents' results; a plain job has none.
create_test_jobs($node);
$wf = push_workflow('sdk', step('x', []),
	q{chancy_step('c', chancy_job('parent_results'), '{x}')});
is(wait_workflow($wf), 'succeeded', 'a workflow with a C step succeeds');
is(sql(qq{SELECT result FROM chancy_jobs WHERE workflow_id = $wf AND step = 'c'}),
	'{"parents": {"x": {"step": "x"}}}', 'the C step got its parent\'s result');
my $plain = sql(q{SELECT chancy_push('parent_results')});
is(sql(qq{SELECT result FROM chancy_wait($plain, '60 s')}), '{"parents": {}}',
	'a job that is no step has no parents');

# 7b. Dynamic fan-out: split adds three parts and a merge after them, in
# its transaction; final, which depended on split only, does not wait for
# them.
sql(q{CREATE FUNCTION split(kwargs jsonb) RETURNS jsonb LANGUAGE sql AS $$
	SELECT to_jsonb(cardinality(chancy_add_steps(ARRAY(
		SELECT chancy_step('part' || g, chancy_job('w'), '{split}') FROM generate_series(1, 3) g)
		|| chancy_step('merge', chancy_job('w'), '{part1,part2,part3}')))) $$});
$wf = push_workflow('fan-out', q{chancy_step('split', chancy_job('split'))},
	step('final', ['split']));
is(wait_workflow($wf), 'succeeded', 'a workflow that grew succeeds');
is(sql(qq{SELECT concat_ws(' ', steps_total, steps_done, steps_failed, steps_waiting)
	FROM chancy_workflows WHERE id = $wf}), '6 6 0 0', 'its counters count the added steps');
is(sql(qq{SELECT parents FROM ran r JOIN chancy_jobs j ON j.id = r.job
	WHERE j.workflow_id = $wf AND r.step = 'merge'}),
	'{"part1": {"step": "part1"}, "part2": {"step": "part2"}, "part3": {"step": "part3"}}',
	'merge ran after the parts, with their results');
is(sql(qq{SELECT bool_and(r.started >= s.completed_at) FROM ran r JOIN chancy_jobs j ON j.id = r.job,
	chancy_jobs s WHERE j.workflow_id = $wf AND j.step LIKE 'part%'
	AND s.workflow_id = $wf AND s.step = 'split'}), 't', 'the parts ran after split');

# 7b'. Steps added after a step that failed: one that runs anyway runs; one
# that would be cancelled at once is refused.
sql(q{CREATE FUNCTION add_after_failure(kwargs jsonb) RETURNS jsonb LANGUAGE plpgsql AS $$
	DECLARE
		refused text := 'none';
	BEGIN
		PERFORM chancy_add_steps(ARRAY[chancy_step('n_run', chancy_job('w'), '{f}', 'run')]);
		BEGIN
			PERFORM chancy_add_steps(ARRAY[chancy_step('n_cancel', chancy_job('w'), '{f}')]);
		EXCEPTION WHEN OTHERS THEN
			refused := SQLSTATE;
		END;
		RETURN to_jsonb(refused);
	END $$;
	INSERT INTO failing VALUES ('f');});
$wf = push_workflow('late-adds', step('f', [], kwargs => '{"fail": "f"}'),
	q{chancy_step('r', chancy_job('add_after_failure'), '{f}', 'run')});
is(wait_workflow($wf), 'failed', 'a workflow whose step failed, with steps added after it, has failed');
is(sql(qq{SELECT string_agg(step || ':' || state, ' ' ORDER BY job_id) || ' ' ||
	(SELECT result FROM chancy_jobs WHERE workflow_id = $wf AND step = 'r')
	FROM chancy_workflow_steps WHERE workflow_id = $wf}),
	'f:failed r:succeeded n_run:succeeded "22023"',
	'a step added after a failed one runs anyway; one it would cancel is refused');
sql(q{DELETE FROM failing});

# 7d. A step with a scheduled_at needs both its dependencies and its time.
$wf = sql(q{SELECT chancy_push_workflow('timed', ARRAY[chancy_step('now', chancy_job('w')),
	chancy_step('later', chancy_with_scheduled_at(chancy_job('w'), now() + interval '2 s'),
				'{now}')])});
is(wait_workflow($wf, 30), 'succeeded', 'a workflow with a scheduled step succeeds');
is(sql(qq{SELECT bool_and(r.started >= j.scheduled_at)
	FROM ran r JOIN chancy_jobs j ON j.id = r.job WHERE j.workflow_id = $wf AND j.step = 'later'}),
	't', 'its scheduled step started at its time, not when its dependency ended');

# 7e. Code of another role that a step calls (a SECURITY DEFINER function)
# reads none of the step's parents' results, and adds no step to its
# workflow; the step itself reads them.
sql(q{CREATE ROLE alice; CREATE ROLE bob;
	CREATE TABLE bob_saw (parents jsonb, add_steps text);
	ALTER TABLE bob_saw OWNER TO bob;
	CREATE FUNCTION bob_peek() RETURNS void LANGUAGE plpgsql SECURITY DEFINER
		SET search_path = public AS $$
	DECLARE
		st text := 'none';
	BEGIN
		BEGIN
			PERFORM chancy_add_steps(ARRAY[chancy_step('bobs', chancy_job('w'))]);
		EXCEPTION WHEN OTHERS THEN
			st := SQLSTATE;
		END;
		INSERT INTO bob_saw VALUES (chancy_parent_results(), st);
	END $$;
	ALTER FUNCTION bob_peek() OWNER TO bob;
	CREATE FUNCTION alice_step(kwargs jsonb) RETURNS jsonb LANGUAGE sql AS $$
		SELECT bob_peek(); SELECT chancy_parent_results() $$;
	GRANT ALL ON ran, failing TO alice;});
$wf = $node->safe_psql('postgres', q{SET ROLE alice; SELECT chancy_push_workflow('secret', ARRAY[
	chancy_step('creds', chancy_with_kwargs(chancy_job('w'), '{"token": "t0ps3cret"}')),
	chancy_step('use', chancy_job('alice_step'), '{creds}')])});
is(wait_workflow($wf), 'succeeded', 'a step calling another role\'s code succeeds');
is(sql(q{SELECT parents::text || ' ' || add_steps FROM bob_saw}), '{} 42501',
	'that code read no result and could add no step');
is(sql(qq{SELECT result FROM chancy_jobs WHERE workflow_id = $wf AND step = 'use'}),
	'{"creds": {"step": "creds"}}', 'the step itself read its parent\'s result');

# 7f. A step that cancels its own workflow finishes; the others are cancelled.
sql(q{CREATE FUNCTION boss(kwargs jsonb) RETURNS void LANGUAGE sql AS $$
	SELECT pg_sleep(0.5);
	SELECT chancy_cancel_workflow((SELECT workflow_id FROM chancy_jobs
								   WHERE id = (SELECT id FROM chancy_current_job()))) $$});
$wf = push_workflow('self-cancel', q{chancy_step('boss', chancy_job('boss'))},
	step('sibling', [], kwargs => '{"s": 5}'), step('after', ['sibling']));
is(wait_workflow($wf, 30), 'cancelled', 'a workflow cancelled by its own step is cancelled');
is(sql(qq{SELECT string_agg(step || ':' || state, ' ' ORDER BY job_id) FROM chancy_workflow_steps
	WHERE workflow_id = $wf}), 'boss:succeeded sibling:cancelled after:cancelled',
	'the step that cancelled it finished, the others were cancelled');

# 7g. A waiting step whose time has come is not a due job (no false
# alarm in chancy_queue_stats and chancy_health).
sql(q{SELECT chancy_declare_queue('hq', 1)});
$wf = sql(q{SELECT chancy_push_workflow('health', ARRAY[
	chancy_step('slow', chancy_with_queue(chancy_with_kwargs(chancy_job('w'), '{"s": 3}'), 'hq')),
	chancy_step('due', chancy_with_queue(chancy_with_scheduled_at(chancy_job('w'),
		now() + interval '0.2 s'), 'hq'), '{slow}')])});
$node->poll_query_until('postgres', qq{SELECT state = 'running' FROM chancy_jobs
	WHERE workflow_id = $wf AND step = 'slow'}) or die 'slow never ran';
sleep 1;
is(sql(q{SELECT coalesce(oldest_pending_age::text, 'none') FROM chancy_queue_stats WHERE queue = 'hq'}),
	'none', 'a step waiting for its dependency is not due, past its scheduled time');
is(wait_workflow($wf), 'succeeded', '... and runs after it');

# 7c. Deleting a queue with its jobs cancels its live steps first: the steps
# after them, in other queues, do not wait for ever.
sql(q{SELECT chancy_declare_queue('doomed', 0)});
$wf = push_workflow('purged', step('first', [], queue => 'doomed'), step('after', ['first']));
sql(q{SELECT chancy_delete_queue('doomed', purge_jobs => true)});
is(wait_workflow($wf, 10), 'failed', 'a workflow whose step\'s queue was purged has failed');
is(sql(qq{SELECT string_agg(step || ':' || state, ' ') FROM chancy_jobs WHERE workflow_id = $wf}),
	'after:cancelled', 'the step after the purged one was cancelled');
is(sql(qq{SELECT state || ' ' || steps_waiting FROM chancy_retry_workflow($wf)}), 'failed 1',
	'a retry leaves it waiting for the step that is gone: it has failed again');

# 7. The gauges match the table.
is(sql(q{SELECT bool_and(from_gauges) AND NOT EXISTS (
	(SELECT queue, pending, running, retrying, succeeded, failed, cancelled FROM chancy_queue_counts()
	 EXCEPT SELECT queue, count(*) FILTER (WHERE state = 'pending'),
		count(*) FILTER (WHERE state = 'running'), count(*) FILTER (WHERE state = 'retrying'),
		count(*) FILTER (WHERE state = 'succeeded'), count(*) FILTER (WHERE state = 'failed'),
		count(*) FILTER (WHERE state = 'cancelled') FROM chancy_jobs GROUP BY queue)) FROM chancy_queue_counts()}),
	't', 'the per-state gauges match the table');

# 8. Pruning: with chancy.prune_after at 2 s, a running workflow's finished
# step stays; once it has finished, the workflow goes with all its steps.
sql(q{ALTER SYSTEM SET chancy.prune_after = '2s'; SELECT pg_reload_conf()});
$wf = push_workflow('prune', step('quick', []), step('slow', [], kwargs => '{"s": 5}'),
	step('last', ['quick', 'slow']));
$node->poll_query_until('postgres', qq{SELECT state = 'succeeded' FROM chancy_jobs
	WHERE workflow_id = $wf AND step = 'quick'}) or die 'quick never ran';
sleep 3;
is(sql(qq{SELECT count(*) FROM chancy_jobs WHERE workflow_id = $wf}), '3',
	'a running workflow\'s finished step is not pruned');
is(wait_workflow($wf), 'succeeded', 'it finishes');
ok($node->poll_query_until('postgres', qq{SELECT NOT EXISTS (SELECT FROM chancy_workflows WHERE id = $wf)
	AND NOT EXISTS (SELECT FROM chancy_jobs WHERE workflow_id = $wf)
	AND NOT EXISTS (SELECT FROM chancy_workflow_deps WHERE workflow_id = $wf)}),
	'then it is pruned with its steps and dependencies');

# A finished workflow whose prune is due, locked by a retry in an open
# transaction, is left for later: the supervisor does not spin on it.
sql(q{INSERT INTO failing VALUES ('once')});
$wf = push_workflow('locked', step('once', [], kwargs => '{"fail": "once"}'));
is(wait_workflow($wf), 'failed', 'a workflow fails');
sleep 3;
my $retry = IPC::Run::start([ 'psql', '-X', '-q', '-d', $node->connstr('postgres'), '-c',
	"BEGIN; SELECT chancy_retry_workflow($wf); SELECT pg_sleep(4); ROLLBACK;" ]);
sleep 1;
my $commits0 = sql(q{SELECT xact_commit FROM pg_stat_database WHERE datname = 'postgres'});
sleep 2;
my $commits = sql(q{SELECT xact_commit FROM pg_stat_database WHERE datname = 'postgres'}) - $commits0;
$retry->finish;
cmp_ok($commits, '<', 100, "while it is locked, the supervisor waits ($commits commits in 2 s)");
ok($node->poll_query_until('postgres', qq{SELECT NOT EXISTS (SELECT FROM chancy_workflows WHERE id = $wf)}),
	'and prunes it once it is free');

done_testing();
