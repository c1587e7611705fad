# Limits and cancellation: time and memory limits in the executor, the
# isolated executor for C code that cannot be trusted, chancy_cancel.
use strict;
use warnings;
use FindBin;
use lib $FindBin::RealBin;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use ChancyTest;

my $node = chancy_node('limits', "chancy.queues = 'default:1'\n");
sub sql { return $node->safe_psql('postgres', shift); }

sql(q{CREATE EXTENSION chancy; CREATE EXTENSION chancy_examples});
create_test_jobs($node);
sql(q{
	CREATE FUNCTION spi_sleep(kwargs jsonb) RETURNS void LANGUAGE sql AS 'SELECT pg_sleep(60)';
	SELECT chancy_declare_queue('default', 1);
	SELECT chancy_declare_queue('iso', 1, executor => 'isolated');
	SELECT chancy_declare_queue('limited', 1, time_limit => '1 s');
});
my $started = sql('SELECT pg_postmaster_start_time()');
$node->poll_query_until('postgres',
	q{SELECT count(*) = 3 FROM chancy_workers WHERE kind = 'executor' AND state = 'idle'})
  or die 'executors never started';
my $executor = sql(q{SELECT pid FROM chancy_workers WHERE queue = 'default'});

# Wait for a job and return "state|message|seconds it ran".
sub outcome
{
	my $id = shift;
	return sql(qq{SELECT state || '|' || coalesce(errors->-1->>'message', '') || '|'
		|| round(extract(epoch FROM completed_at - started_at)::numeric, 1)
		FROM chancy_wait($id, '60 s')});
}

# Time limit: a C job that checks for interrupts, and SQL run through SPI.
my $id = sql(q{SELECT chancy_push('sleep_checking', '{"seconds": 30}', time_limit => '1 s')});
my ($state, $msg, $secs) = split /\|/, outcome($id);
is($state, 'failed', 'a job over its time limit fails');
like($msg, qr/time limit of 1\.000 s/, 'the error says "time limit" and the limit');
ok($secs >= 1.0 && $secs < 1.2, "it was stopped at the limit (ran $secs s)");

$id = sql(q{SELECT chancy_push('spi_sleep', time_limit => '0.5 s')});
($state, $msg, $secs) = split /\|/, outcome($id);
like("$state $msg", qr/^failed .*time limit of 0\.500 s/, 'SQL the job runs is stopped too');
ok($secs < 0.7, "... at the limit (ran $secs s)");

# The queue's default time limit applies to jobs that set none.
$id = sql(q{SELECT chancy_push('sleep_checking', '{"seconds": 30}', queue => 'limited')});
like(outcome($id), qr/^failed\|job exceeded its time limit of 1\.000 s/,
	'the queue\'s time limit applies');

# Retries follow the normal policy after a time limit.
$id = sql(q{SELECT chancy_push('sleep_checking', '{"seconds": 30}', time_limit => '0.2 s',
	max_attempts => 2)});
is(sql("SELECT state || ' ' || attempts || ' ' || jsonb_array_length(errors) FROM chancy_wait($id, '60 s')"),
	'failed 2 2', 'a timed-out job is retried per its max_attempts');

# The executor goes on.
$id = sql(q{SELECT chancy_push('greet')});
is(sql("SELECT state FROM chancy_wait($id, '30 s')"), 'succeeded', 'the next job runs');

# Memory limit: palloc and malloc hogs fail, the server and executor survive.
sub data_kb { my $pid = shift; my ($data) = (slurp_file("/proc/$pid/status") =~ /VmData:\s+(\d+)/); return $data; }
my $before = data_kb($executor);
$id = sql(q{SELECT chancy_push('palloc_hog', memory_limit => 200000000)});
($state, $msg) = split /\|/, outcome($id);
is($state, 'failed', 'palloc hog fails');
like($msg, qr/memory limit of 200000000 bytes/, 'palloc hog: the error says "memory limit" and the limit');
is(sql(q{SELECT pid FROM chancy_workers WHERE queue = 'default'}), $executor,
	'the executor survived');
my $after = data_kb($executor);
ok($after - $before < 50_000, "its memory went back (VmData $before kB before, $after kB after)");

# malloc'd memory a job leaks cannot be freed: a fresh executor replaces it.
$id = sql(q{SELECT chancy_push('malloc_hog', memory_limit => 200000000)});
($state, $msg) = split /\|/, outcome($id);
is($state, 'failed', 'malloc hog fails');
like($msg, qr/memory limit of 200000000 bytes/, 'malloc hog: the error says "memory limit" and the limit');
$node->poll_query_until('postgres',
	qq{SELECT pid <> $executor FROM chancy_workers WHERE queue = 'default' AND state = 'idle'})
  or die 'the leaking executor was not replaced';
pass('the executor that leaked was replaced by a fresh one');
is(sql('SELECT pg_postmaster_start_time()'), $started, 'the server never restarted');

# chancy.memory_limit applies to jobs that set none.
sql(q{ALTER SYSTEM SET chancy.memory_limit = '150MB'; SELECT pg_reload_conf()});
$id = sql(q{SELECT chancy_push('palloc_hog')});
like(outcome($id), qr/^failed\|job exceeded its memory limit of 157286400 bytes/,
	'chancy.memory_limit applies by default');
sql(q{ALTER SYSTEM RESET chancy.memory_limit; SELECT pg_reload_conf()});

# The isolated executor: crashes, non-interruptible loops and runaway malloc
# fail only their job.
my %expect = (
	segfault => qr/job crashed with signal 11: Segmentation fault/,
	abort_job => qr/job crashed with signal 6: Abort/,
	busy_loop => qr/job exceeded its time limit of 1\.000 s/,
	malloc_hog => qr/job exceeded its memory limit of 100000000 bytes/);
for my $job (sort keys %expect)
{
	$id = sql(qq{SELECT chancy_push('$job', queue => 'iso', time_limit => '1 s',
		memory_limit => 100000000)});
	($state, $msg) = split /\|/, outcome($id);
	is($state, 'failed', "isolated $job fails");
	like($msg, $expect{$job}, "isolated $job: $msg");
}
$id = sql(q{SELECT chancy_push('greet', '{"name": "Iso"}', queue => 'iso')});
is(sql("SELECT result->>'greeting' FROM chancy_wait($id, '30 s')"), 'Hello, Iso!',
	'an isolated job returns its result');
is(sql('SELECT pg_postmaster_start_time()'), $started,
	'the server never restarted: the postmaster start time is unchanged');
ok(!$node->log_contains(qr/terminated by signal/), 'no server process died by a signal');

# Cancel a pending job: it never starts.
sql(q{SELECT chancy_pause_queue('default')});
$id = sql(q{SELECT chancy_push('greet')});
is(sql("SELECT state FROM chancy_cancel($id)"), 'cancelled', 'a pending job is cancelled');
sql(q{SELECT chancy_resume_queue('default')});
my $next = sql(q{SELECT chancy_push('greet')});
sql("SELECT chancy_wait($next, '30 s')");
is(sql("SELECT state || ' ' || (started_at IS NULL)::text FROM chancy_jobs WHERE id = $id"),
	'cancelled true', 'a cancelled job never starts');

# Cancel a running job: it is interrupted and ends cancelled, not retried.
$id = sql(q{SELECT chancy_push('sleep_checking', '{"seconds": 60}', max_attempts => 3)});
$node->poll_query_until('postgres', "SELECT state = 'running' FROM chancy_jobs WHERE id = $id")
  or die 'job never started';
sql("SELECT chancy_cancel($id)");
($state, $msg, $secs) = split /\|/, outcome($id);
is($state, 'cancelled', 'a running job is cancelled');
like($msg, qr/cancelled by postgres/, 'errors say who cancelled it');
ok($secs < 5, "it stopped at once (ran $secs s)");
is(sql("SELECT attempts FROM chancy_jobs WHERE id = $id"), '1', 'it was not retried');
$id = sql(q{SELECT chancy_push('greet')});
is(sql("SELECT state FROM chancy_wait($id, '30 s')"), 'succeeded', 'the executor goes on');

# Only the job's owner (or an admin) may cancel it.
sql(q{CREATE ROLE alice; CREATE ROLE bob; CREATE ROLE ops;
	GRANT UPDATE ON chancy_jobs TO ops; SELECT chancy_pause_queue('default')});
$id = $node->safe_psql('postgres', q{SET ROLE alice; SELECT chancy_push('greet')});
my ($ret, $out, $err) = $node->psql('postgres', "SET ROLE bob; SELECT chancy_cancel($id)");
like($err, qr/job $id does not exist/,
	'another role may not cancel, nor learn that the job exists');
is($node->safe_psql('postgres', "SET ROLE alice; SELECT state FROM chancy_cancel($id)"),
	'cancelled', 'the role that pushed it may');
$id = $node->safe_psql('postgres', q{SET ROLE alice; SELECT chancy_push('greet')});
is($node->safe_psql('postgres', "SET ROLE ops; SELECT state FROM chancy_cancel($id)"),
	'cancelled', 'a role with UPDATE on chancy_jobs may');
($ret, $out, $err) = $node->psql('postgres', 'SELECT chancy_cancel(-5)');
like($err, qr/job -5 does not exist/, 'an unknown job is an error');
sql(q{SELECT chancy_resume_queue('default')});

$node->stop;
done_testing();
