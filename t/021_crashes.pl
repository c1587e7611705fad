# Crash recovery: a job whose executor is killed, a poison job that crashes
# its executor every time, a clean shutdown while a job runs.  The kill -9
# here is the fault under test: it restarts the cluster, as it would in
# production.
use strict;
use warnings;
use FindBin;
use lib $FindBin::RealBin;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use ChancyTest;

my $node = chancy_node('crashes', "chancy.queues = 'default:1'\nrestart_after_crash = on\n");
sub sql { return $node->safe_psql('postgres', shift); }

sql(q{CREATE EXTENSION chancy; CREATE EXTENSION chancy_examples});
create_test_jobs($node);

# Wait for a job to be running; the pid of its executor.
sub running
{
	my $id = shift;
	$node->poll_query_until('postgres',
		"SELECT count(*) = 1 FROM chancy_workers WHERE job_id = $id AND state = 'running'")
	  or die "job $id never ran";
	return sql("SELECT pid FROM chancy_workers WHERE job_id = $id");
}

# Wait until the server accepts connections again after a crash.
sub wait_restarted
{
	$node->poll_query_until('postgres', 'SELECT true', 't') or die 'server never came back';
}

# kill -9 of the executor mid-job: the cluster restarts, the job is
# recovered and succeeds on its retry.
my $id = sql(q{SELECT chancy_push('sleep_checking', '{"seconds": 2}')});
my $pid = running($id);
kill 'KILL', $pid;
wait_restarted();
is(sql("SELECT state FROM chancy_wait($id, '60 s')"), 'succeeded',
	'a job whose executor was killed is recovered and succeeds');
is(sql("SELECT crashes || ' ' || attempts FROM chancy_jobs WHERE id = $id"), '1 1',
	'one crash is counted, and the crashed run did not use an attempt');
like(sql("SELECT errors->0->>'message' FROM chancy_jobs WHERE id = $id"),
	qr/the executor running the job died \(crash 1 of at most 2\)/,
	'the recovery is recorded in errors');
ok($node->log_contains(qr/1 job whose executor had gone was given back/),
	'the log says so');

# A job that crashes its executor every time fails after chancy.max_crashes,
# and the server keeps serving other jobs.
$id = sql(q{SELECT chancy_push('segfault', max_attempts => 10)});
$node->poll_query_until('postgres', "SELECT state = 'failed' FROM chancy_jobs WHERE id = $id")
  or die 'the poison job never failed';
is(sql("SELECT crashes || ' ' || state FROM chancy_jobs WHERE id = $id"), '2 failed',
	'a poison job fails after chancy.max_crashes crashes');
is(sql("SELECT count(*) FROM chancy_jobs j, jsonb_array_elements(j.errors) e
	WHERE id = $id AND e->>'message' LIKE 'the executor running the job died%'"), '2',
	'each crash is recorded');
$id = sql(q{SELECT chancy_push('greet')});
is(sql("SELECT state FROM chancy_wait($id, '60 s')"), 'succeeded',
	'the server goes on serving jobs');

# A late write from an executor whose claim was recovered is refused.
sql(q{CREATE TABLE marks (id bigint)});
sql(q{CREATE FUNCTION slow_mark(kwargs jsonb) RETURNS void LANGUAGE plpgsql AS $$
	BEGIN PERFORM pg_sleep(1.5); INSERT INTO marks VALUES ((chancy_current_job()).id); END $$});
$id = sql(q{SELECT chancy_push('slow_mark')});
running($id);
# what a supervisor does after a crash, done while the executor still runs
sql(q{UPDATE chancy_jobs SET claim = NULL, state = 'retrying' WHERE id = } . $id);
sql(q{SELECT chancy_pause_queue('default')});
$node->poll_query_until('postgres',
	"SELECT count(*) = 0 FROM chancy_workers WHERE job_id = $id") or die;
is(sql("SELECT state || ' ' || (result IS NULL)::text FROM chancy_jobs WHERE id = $id"),
	'retrying true', 'the stale executor could not record its outcome');
is(sql("SELECT count(*) FROM marks WHERE id = $id"), '0',
	'and its effects were rolled back');
sql(q{SELECT chancy_resume_queue('default')});
is(sql("SELECT state FROM chancy_wait($id, '60 s')"), 'succeeded', 'the job then ran again');

# A clean shutdown while a job runs: it is put back, not counted as a crash,
# and runs after the restart.
$id = sql(q{SELECT chancy_push('sleep_checking', '{"seconds": 30}')});
running($id);
$node->stop('fast');
$node->start;
is(sql("SELECT state FROM chancy_wait($id, '120 s')"), 'succeeded',
	'a job interrupted by a shutdown runs again after it');
is(sql("SELECT crashes || ' ' || attempts FROM chancy_jobs WHERE id = $id"), '0 1',
	'no crash and no attempt were counted');
like(sql("SELECT errors->0->>'message' FROM chancy_jobs WHERE id = $id"),
	qr/executor was stopped while the job ran/, 'the interruption is recorded');

$node->stop;
done_testing();
