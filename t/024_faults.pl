# Faults a job cannot get away with: limits it tries to ignore, executors
# that exit under a batch, crashes charged to the guilty job only, the
# isolated executor's promises, what a job leaves behind, deferred
# constraints, and a chancy_wait that would wait on itself.  The kill -9s
# here are the faults under test: they restart the cluster, as they would
# in production.
use strict;
use warnings;
use FindBin;
use lib $FindBin::RealBin;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use IPC::Run;
use Time::HiRes qw(time);
use ChancyTest;

my $node = chancy_node('faults', q{chancy.database = 'postgres, faultdb'
chancy.queues = 'default:1'
chancy.max_executors = 8
max_worker_processes = 16
restart_after_crash = on
});
sub sql { return $node->safe_psql('postgres', shift); }

sql(q{CREATE EXTENSION chancy; CREATE EXTENSION chancy_examples});
create_test_jobs($node);

# A job that catches the cancel every limit, cancel or shutdown sends, and
# goes on: kwargs.secs seconds in pg_sleep(kwargs.step) steps.  Its log lines
# show that it caught a cancel and whether it returned.
my $stubborn = q{
CREATE FUNCTION stubborn(kwargs jsonb) RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
	caught int := 0;
	step float8 := coalesce((kwargs->>'step')::float8, 1);
	t0 timestamptz := clock_timestamp();
	jid bigint := (chancy_current_job()).id;
BEGIN
	FOR i IN 1..ceil((kwargs->>'secs')::float8 / step)::int LOOP
		BEGIN
			PERFORM pg_sleep(step);
		EXCEPTION WHEN query_canceled THEN
			caught := caught + 1;
			RAISE LOG 'stubborn job % caught a cancel', jid;
		END;
	END LOOP;
	RAISE LOG 'stubborn job % returns', jid;
	RETURN jsonb_build_object('ran_for', extract(epoch FROM clock_timestamp() - t0),
							  'cancels_caught', caught);
END $$;
};
sql($stubborn);
sql(q{
	SELECT chancy_declare_queue('other', 1);
	SELECT chancy_declare_queue('third', 1);
	SELECT chancy_declare_queue('solo', 1);
	SELECT chancy_declare_queue('iso', 1, executor => 'isolated');
});
my $started = sql('SELECT pg_postmaster_start_time()');
$node->poll_query_until('postgres',
	q{SELECT count(*) = 5 FROM chancy_workers WHERE kind = 'executor'
	  AND database = 'postgres' AND state = 'idle'})
  or die 'executors never started';

# The pid of the executor of a queue, once it is idle.
sub idle_executor
{
	my ($queue, $db) = @_;
	$db //= 'postgres';
	$node->poll_query_until('postgres',
		"SELECT count(*) = 1 FROM chancy_workers WHERE kind = 'executor'"
		  . " AND database = '$db' AND queue = '$queue' AND state = 'idle'")
	  or die "no idle executor for queue $queue";
	return sql("SELECT pid FROM chancy_workers WHERE kind = 'executor'"
		  . " AND database = '$db' AND queue = '$queue' AND state = 'idle'");
}

# Wait for a job to be running in an executor; the executor's pid.
sub running
{
	my ($id, $db) = @_;
	$db //= 'postgres';
	$node->poll_query_until('postgres',
		"SELECT count(*) = 1 FROM chancy_workers WHERE database = '$db'"
		  . " AND job_id = $id AND state = 'running'")
	  or die "job $id never ran";
	return sql("SELECT pid FROM chancy_workers WHERE database = '$db' AND job_id = $id");
}

# Wait for a stubborn job to be in its loop (sleeping, so inside its
# exception block); the executor's pid.
sub stubborn_running
{
	my ($id, $db) = @_;
	my $pid = running($id, $db);
	$node->poll_query_until('postgres',
		"SELECT wait_event = 'PgSleep' FROM pg_stat_activity WHERE pid = $pid")
	  or die "job $id never slept";
	return $pid;
}

# Wait for a job and return "state|last message|seconds it ran".
sub outcome
{
	my ($id, $timeout) = @_;
	$timeout //= '60 s';
	return sql(qq{SELECT state || '|' || coalesce(errors->-1->>'message', '') || '|'
		|| round(extract(epoch FROM completed_at - started_at)::numeric, 1)
		FROM chancy_wait($id, '$timeout')});
}

# The server log from an offset on.
sub log_since
{
	my $offset = shift;
	return substr(slurp_file($node->logfile), $offset);
}

# A greet job runs on a queue (the queue has a working executor).
sub greet_runs
{
	my ($queue, $name) = @_;
	my $id = sql("SELECT chancy_push('greet', queue => '$queue')");
	is(sql("SELECT state FROM chancy_wait($id, '30 s')"), 'succeeded', $name);
}

###########################################################################
# 1. Limits cannot be ignored.
###########################################################################

# a. A job that catches the time limit's cancel and goes on is ended after
# the grace: it fails with the time limit's error, its executor is replaced,
# and the server does not restart.  Its waiter is woken when the ended
# executor records the failure (deadlock_timeout, after which a waiter also
# looks, is out of the way).
my $offset = -s $node->logfile;
my $executor = idle_executor('default');
my $id = sql(q{SELECT chancy_push('stubborn', '{"secs": 8, "step": 0.3}', time_limit => '1 s')});
my $t0 = time;
my ($state, $msg, $secs) = split /\|/,
  sql(qq{SET deadlock_timeout = '60 s'; SELECT state || '|' || (errors->-1->>'message') || '|'
	|| round(extract(epoch FROM completed_at - started_at)::numeric, 1)
	FROM chancy_wait($id, '60 s')});
my $waited = time - $t0;
ok($waited < 4, sprintf('its waiter returned when the executor ended (%.1f s)', $waited));
is($state, 'failed', 'a job that ignores its time limit fails');
is($msg, 'job exceeded its time limit of 1.000 s', '... with the time limit\'s error');
ok($secs ne '' && $secs < 3, "... ended within the grace (ran $secs s)");
is(sql("SELECT count(*) FROM chancy_jobs WHERE id = $id AND state = 'succeeded'"), '0',
	'... and never counted as succeeded');
like(log_since($offset), qr/stubborn job $id caught a cancel/,
	'the job did catch the cancel');
like(log_since($offset), qr/job $id \(stubborn\) went on after it was told to stop/,
	'the log says it went on after it was told to stop');
unlike(log_since($offset), qr/stubborn job $id returns/, 'it never returned');
is(sql('SELECT pg_postmaster_start_time()'), $started, 'the server did not restart');
isnt(idle_executor('default'), $executor, 'a fresh executor replaced the ended one');
greet_runs('default', 'the fresh executor serves the queue');

# b. A job that catches the cancel and returns before the grace is up has
# still failed on its time limit.
$offset = -s $node->logfile;
$id = sql(q{SELECT chancy_push('stubborn', '{"secs": 1.8, "step": 0.3}', time_limit => '1 s')});
($state, $msg) = split /\|/, outcome($id);
like(log_since($offset), qr/stubborn job $id caught a cancel.*stubborn job $id returns/s,
	'the job caught the cancel and returned');
is("$state|$msg", 'failed|job exceeded its time limit of 1.000 s',
	'a job that returns after its time limit fired fails on its time limit');
is(sql("SELECT result IS NULL FROM chancy_jobs WHERE id = $id"), 't', '... without a result');

# c. A cancel cannot be ignored either.
$offset = -s $node->logfile;
$id = sql(q{SELECT chancy_push('stubborn', '{"secs": 30, "step": 0.3}')});
stubborn_running($id);
$t0 = time;
sql("SELECT chancy_cancel($id)");
($state, $msg) = split /\|/, outcome($id);
my $took = time - $t0;
is($state, 'cancelled', 'a job that ignores a cancel ends cancelled');
ok($took < 3, sprintf('... within the grace (%.1f s after the cancel)', $took));
like(log_since($offset), qr/stubborn job $id caught a cancel/, '(it did catch the cancel)');
greet_runs('default', 'the queue goes on after the cancel');

# d. pg_ctl stop -m fast returns promptly while a stubborn job runs; the job
# goes back without using an attempt (the queue is paused so that it stays
# back until we look), then runs again.
$id = sql(q{SELECT chancy_push('stubborn', '{"secs": 60, "step": 0.3}')});
stubborn_running($id);
sql(q{SELECT chancy_pause_queue('default')});
$t0 = time;
$node->stop('fast');
$took = time - $t0;
ok($took < 5, sprintf('pg_ctl stop -m fast returns promptly (%.1f s)', $took));
$node->start;
is(sql("SELECT state || ' ' || attempts || ' ' || crashes FROM chancy_jobs WHERE id = $id"),
	'pending 0 0', 'the job was put back, without an attempt or a crash');
like(sql("SELECT errors->-1->>'message' FROM chancy_jobs WHERE id = $id"),
	qr/executor was stopped while the job ran/, 'its errors say the executor was stopped');
$started = sql('SELECT pg_postmaster_start_time()');
sql(q{SELECT chancy_resume_queue('default')});
running($id);
is(sql("SELECT attempts FROM chancy_jobs WHERE id = $id"), '1', 'it runs again on its first attempt');
sql("SELECT chancy_cancel($id)");
is(sql("SELECT state FROM chancy_wait($id, '30 s')"), 'cancelled', '(cancelled to free the queue)');

# e. DROP DATABASE of a served database while a stubborn job runs there.
sql('CREATE DATABASE faultdb');
$node->safe_psql('faultdb', "CREATE EXTENSION chancy;\n$stubborn");
sql('SELECT pg_reload_conf()');
idle_executor('default', 'faultdb');
$id = $node->safe_psql('faultdb', q{SELECT chancy_push('stubborn', '{"secs": 60, "step": 0.3}')});
stubborn_running($id, 'faultdb');
$t0 = time;
my ($ret, $out, $err) = $node->psql('postgres', 'DROP DATABASE faultdb');
$took = time - $t0;
is($ret, 0, 'DROP DATABASE of a served database with a stubborn job succeeds')
  or diag $err;
ok($took < 15, sprintf('... promptly (%.1f s)', $took));
is(sql(q{SELECT count(*) FROM pg_database WHERE datname = 'faultdb'}), '0', 'faultdb is gone');

###########################################################################
# 2. No job is lost when an executor exits (FATAL, exit()) under its batch.
###########################################################################
sql(q{
	CREATE FUNCTION fast(kwargs jsonb) RETURNS void LANGUAGE sql AS '';
	-- fast unless told how to die; before it dies, it logs how many jobs
	-- after it its executor holds (claimed with it, not started)
	CREATE FUNCTION maybe_die(kwargs jsonb) RETURNS void LANGUAGE plpgsql AS $$
	DECLARE
		jid bigint := (chancy_current_job()).id;
	BEGIN
		IF kwargs ? 'how' THEN
			RAISE LOG 'job % dies with % later jobs claimed with it', jid,
				(SELECT count(*) FROM chancy_jobs WHERE id > jid
				 AND claim = (SELECT claim FROM chancy_jobs WHERE id = jid));
			IF kwargs->>'how' = 'fatal' THEN PERFORM fatal_job(kwargs);
			ELSE PERFORM exit_job(kwargs);
			END IF;
		END IF;
	END $$;
});
$offset = -s $node->logfile;

# Push jobs to queue solo in one statement: [name, kwargs, max_attempts]...
sub push_solo
{
	my $elems = join(', ', map {
		"chancy_with_max_attempts(chancy_with_queue(chancy_with_kwargs(chancy_job('$_->[0]'),"
		  . " '$_->[1]'), 'solo'), $_->[2])"
	} @_);
	return split /[{},]/, sql("SELECT chancy_push_many(ARRAY[$elems])");
}

# Warm the executor of solo up: fast and maybe_die become known short.
sub warm_up
{
	my @ids = grep { $_ ne '' } push_solo(['fast', '{}', 1], ['maybe_die', '{}', 1],
		['fast', '{}', 1], ['maybe_die', '{}', 1]);
	sql("SELECT chancy_wait($_, '30 s')") for @ids;
}

# A job that kills its executor is charged a crash and fails at
# chancy.max_crashes; the jobs around it, in its batch or after it, all
# run within seconds.
sub check_exit
{
	my ($name, $kwargs, $label, $batched) = @_;
	my $solo = idle_executor('solo');
	my $offset = -s $node->logfile;
	warm_up();
	my @ids = grep { $_ ne '' } push_solo(['fast', '{}', 1], ['fast', '{}', 1],
		[$name, $kwargs, 5], ['fast', '{}', 1], ['fast', '{}', 1]);
	my $bad = splice(@ids, 2, 1);
	for my $fast (@ids)
	{
		is(sql("SELECT state || ' ' || attempts || ' ' || crashes FROM chancy_wait($fast, '15 s')"),
			'succeeded 1 0',
			"$label: job $fast beside it succeeds within seconds, on its first attempt, uncharged");
	}
	is(sql("SELECT state || ' ' || crashes FROM chancy_wait($bad, '30 s')"), 'failed 2',
		"$label: it is charged a crash each time and fails at chancy.max_crashes");
	is(sql("SELECT string_agg(e->>'message', '; ') FROM chancy_jobs j,"
		  . " jsonb_array_elements(j.errors) e WHERE id = $bad"),
		'the executor running the job died (crash 1 of at most 2); '
		  . 'the executor running the job died (crash 2 of at most 2)',
		"$label: its errors say its executor died, twice");
	isnt(idle_executor('solo'), $solo, "$label: a fresh executor serves the queue");
	if ($batched)
	{
		# the two fast jobs after it were claimed with it when it first died
		my ($held) = log_since($offset) =~ /job $bad dies with (\d+) later jobs claimed/;
		is($held, 2, "$label: its executor held the jobs after it when it died");
	}
	return $bad;
}

check_exit('fatal_job', '{}', 'fatal_job');
check_exit('exit_job', '{}', 'exit_job');
# Known short, maybe_die is claimed in one batch with the fast jobs around
# it: those claimed with it go back when it ends the executor.
my $bad = check_exit('maybe_die', '{"how": "fatal"}', 'FATAL in a batch', 1);
check_exit('maybe_die', '{"how": "exit"}', 'exit() in a batch', 1);
my $log = log_since($offset);
like($log, qr/job $bad \(maybe_die\) ended its executor/, 'the log names the job that ended its executor');
is(sql('SELECT pg_postmaster_start_time()'), $started, 'the server never restarted');
unlike($log, qr/terminated by signal/, 'no server process died by a signal');
is(sql(q{SELECT count(*) FROM chancy_jobs WHERE state IN ('pending', 'retrying', 'running')
	OR claim IS NOT NULL}), '0', 'no job is left behind');

###########################################################################
# 4. The isolated executor keeps its promises.
###########################################################################

# a. C jobs run as the role that pushed them, isolated or not.
sql(q{CREATE ROLE alice; GRANT USAGE ON SCHEMA public TO alice;
	GRANT EXECUTE ON FUNCTION whoami(jsonb) TO alice});
for my $queue ('iso', 'default')
{
	$id = sql(qq{SET ROLE alice; SELECT chancy_push('whoami', queue => '$queue')});
	is(sql("SELECT state || ' ' || (result->>'user') || ' ' || (result->>'superuser')"
		  . " FROM chancy_wait($id, '30 s')"),
		'succeeded alice false', "whoami in queue $queue runs as alice, not a superuser");
}

# b. A job that uses the database in an isolated queue fails cleanly and
# leaves no lock behind.
sql(q{CREATE TABLE iso_target (a int); INSERT INTO iso_target VALUES (1)});
my $iso = idle_executor('iso');
$id = sql(q{SELECT chancy_push('spi_count', '{"relation": "iso_target"}', queue => 'iso')});
is(sql("SELECT state || ' ' || (errors->-1->>'sqlstate') || ' ' || (errors->-1->>'message')"
	  . " FROM chancy_wait($id, '30 s')"),
	'failed 0A000 isolated job cannot use the database',
	'an isolated job cannot use the database');
is(idle_executor('iso'), $iso, 'the isolated executor lives on');
is(sql("SELECT count(*) FROM pg_locks WHERE pid = $iso"), '0',
	'the executor holds no lock');
is(sql(q{SELECT count(*) FROM pg_locks WHERE relation = 'iso_target'::regclass}), '0',
	'nobody holds a lock on the table the job tried to read');
($ret, $out, $err) = $node->psql('postgres',
	q{SET lock_timeout = '2s'; ALTER TABLE iso_target ADD COLUMN b int});
is($ret, 0, 'ALTER TABLE on that table does not wait') or diag $err;

# c. Interrupts that are not for the job do not kill it: a ProcSignalBarrier
# (DROP DATABASE) and a request to log memory contexts.
$offset = -s $node->logfile;
$id = sql(q{SELECT chancy_push('sleep_checking', '{"seconds": 6}', queue => 'iso')});
$iso = running($id);
sql('CREATE DATABASE tmpdb');
sql('DROP DATABASE tmpdb');
is(sql("SELECT pg_log_backend_memory_contexts($iso)"), 't', 'memory contexts asked of the executor');
ok($node->wait_for_log(qr/logging memory contexts of PID $iso/, $offset),
	'the executor logged its memory contexts');
is(sql("SELECT state FROM chancy_jobs WHERE id = $id"), 'running',
	'the isolated job still runs after a barrier and a memory-context request');
is(sql("SELECT state || ' ' || attempts FROM chancy_wait($id, '30 s')"), 'succeeded 1',
	'... and succeeds on its first attempt');
is(idle_executor('iso'), $iso, '... in the same executor');
# Its time limit and a cancel still do kill it.
$id = sql(q{SELECT chancy_push('busy_loop', queue => 'iso', time_limit => '1 s')});
like(outcome($id), qr/^failed\|job exceeded its time limit of 1\.000 s\|/,
	'an isolated busy loop fails on its time limit');
$id = sql(q{SELECT chancy_push('sleep_checking', '{"seconds": 60}', queue => 'iso')});
running($id);
$t0 = time;
sql("SELECT chancy_cancel($id)");
is(sql("SELECT state FROM chancy_wait($id, '30 s')"), 'cancelled', 'an isolated job can be cancelled');
ok(time - $t0 < 3, '... at once');

###########################################################################
# 5. Jobs leave nothing behind: session advisory locks, temporary objects.
###########################################################################
sql(q{
	CREATE FUNCTION lock_and_fail(kwargs jsonb) RETURNS void LANGUAGE plpgsql AS $$
	BEGIN
		PERFORM pg_advisory_lock(4242);
		RAISE EXCEPTION 'failing while holding advisory lock 4242';
	END $$;
	CREATE FUNCTION try_lock(kwargs jsonb) RETURNS jsonb LANGUAGE sql
		AS $$ SELECT jsonb_build_object('locked', pg_try_advisory_lock(4242)) $$;
});
$id = sql(q{SELECT chancy_push('lock_and_fail')});
like(outcome($id), qr/^failed\|failing while holding advisory lock 4242\|/,
	'a job took an advisory lock and failed');
is(sql('SELECT pg_try_advisory_lock(4242)'), 't', 'the lock is free afterwards');
$id = sql(q{SELECT chancy_push('try_lock')});
is(sql("SELECT result->>'locked' FROM chancy_wait($id, '30 s')"), 'true',
	'the next job can take it');
is(sql('SELECT pg_try_advisory_lock(4242)'), 't', 'and it is free again after that job');

# temporary objects: a job may still make a temporary function (temporary
# tables are refused), which another role's job must never find
sql(q{
	CREATE FUNCTION make_temp(kwargs jsonb) RETURNS void LANGUAGE plpgsql AS $$
	BEGIN
		EXECUTE 'CREATE FUNCTION pg_temp.leak() RETURNS int LANGUAGE sql AS ''SELECT 1''';
	END $$;
	CREATE FUNCTION find_temp(kwargs jsonb) RETURNS jsonb LANGUAGE sql
		AS $$ SELECT jsonb_build_object('found', to_regprocedure('pg_temp.leak()') IS NOT NULL) $$;
	CREATE ROLE regress_temp_other;
});
my ($made, $found) = split /\n/, sql(q{BEGIN;
	SELECT chancy_push('make_temp');
	SET LOCAL ROLE regress_temp_other;
	SELECT chancy_push('find_temp');
	COMMIT;});
is(sql("SELECT state FROM chancy_wait($made, '30 s')"), 'succeeded', 'a job made a temporary function');
is(sql("SELECT result->>'found' FROM chancy_wait($found, '30 s')"), 'false',
	'the next job, of another role, in the same queue of one executor, does not find it');
ok($node->log_contains(qr/A job of role "postgres" made temporary objects/),
	'the executor that ran it made way for a fresh one');

###########################################################################
# 6. Deferred constraints are the job's own: checked within it, failing it
# alone.
###########################################################################
sql(q{
	CREATE TABLE parent (id int PRIMARY KEY);
	INSERT INTO parent VALUES (1);
	CREATE TABLE child (pid int REFERENCES parent DEFERRABLE INITIALLY DEFERRED);
	CREATE FUNCTION add_child(kwargs jsonb) RETURNS void LANGUAGE sql
		AS $$ INSERT INTO child VALUES ((kwargs->>'pid')::int) $$;
});
$id = sql(q{SELECT chancy_push('add_child', '{"pid": 1}')});
is(sql("SELECT state FROM chancy_wait($id, '30 s')"), 'succeeded',
	'a valid row into a deferred foreign key succeeds');
# the three are claimed as a batch (add_child is known short now)
my @ids = grep { $_ ne '' } split /[{},]/, sql(q{SELECT chancy_push_many(ARRAY[
	chancy_with_kwargs(chancy_job('add_child'), '{"pid": 1}'),
	chancy_with_kwargs(chancy_job('add_child'), '{"pid": 42}'),
	chancy_with_kwargs(chancy_job('add_child'), '{"pid": 1}')])});
is(join(' ', map { sql("SELECT state FROM chancy_wait($_, '30 s')") } @ids),
	'succeeded failed succeeded', 'an invalid row fails only its own job');
like(sql("SELECT (errors->-1->>'sqlstate') || ' ' || (errors->-1->>'message')"
	  . " FROM chancy_jobs WHERE id = $ids[1]"),
	qr/^23503 .*violates foreign key constraint/, '... with 23503 as its own error');
is(sql('SELECT count(*) FILTER (WHERE pid = 1) || \' \' || count(*) FILTER (WHERE pid = 42) FROM child'),
	'3 0', 'the valid rows are in, the invalid one is not');

###########################################################################
# 7. chancy_wait cannot hang on itself: waiting for a job blocked on a lock
# the waiter holds is a deadlock.
###########################################################################
sql(q{
	CREATE TABLE counter (n int);
	INSERT INTO counter VALUES (10);
	CREATE FUNCTION bump(kwargs jsonb) RETURNS void LANGUAGE sql
		AS $$ UPDATE counter SET n = n + 1 $$;
});
my $holder = $node->background_psql('postgres', on_error_stop => 0);
$holder->query_safe(q{\set VERBOSITY verbose});
$holder->query_safe(q{BEGIN; UPDATE counter SET n = 0});
$id = sql(q{SELECT chancy_push('bump')});
my $bumper = running($id);
$node->poll_query_until('postgres',
	"SELECT wait_event_type = 'Lock' FROM pg_stat_activity WHERE pid = $bumper")
  or die 'the job never waited for the row lock';
$t0 = time;
($out, $ret) = $holder->query("SELECT state FROM chancy_wait($id)");
$took = time - $t0;
like($holder->{stderr}, qr/40P01: deadlock detected/,
	'chancy_wait for a job blocked on the waiter\'s lock: deadlock detected');
ok($took < 5, sprintf('... within about deadlock_timeout (%.1f s)', $took));
$holder->{stderr} = '';
$holder->query_safe('ROLLBACK');
$holder->quit;
is(sql("SELECT state || ' ' || attempts FROM chancy_wait($id, '30 s')"), 'succeeded 1',
	'once the waiter rolled back, the job succeeds');
is(sql('SELECT n FROM counter'), '11', '... and its update is in');

###########################################################################
# 3. Crashes are charged to the guilty only.  (Last: these restart the
# server, which the checks above say never happens.)
###########################################################################

# Wait for the cluster to have restarted after a crash (after log offset).
sub wait_crash_restart
{
	my $offset = shift;
	$node->wait_for_log(qr/all server processes terminated; reinitializing/, $offset)
	  or die 'no crash restart';
	$node->poll_query_until('postgres', 'SELECT true', 't') or die 'server never came back';
}

# Wait for jobs to be running (started, in an executor) again.
sub all_running
{
	my @ids = @_;
	my $list = join(',', @ids);
	$node->poll_query_until('postgres',
		"SELECT count(*) = " . scalar(@ids) . " FROM chancy_workers"
		  . " WHERE state = 'running' AND job_id IN ($list)")
	  or die "jobs $list never ran again";
}

# a. kill -9 of an unrelated client backend, twice: the jobs running then
# (two queues) and a batch claimed but not started are put back uncharged.
idle_executor('third');
$id = sql(q{SELECT chancy_push('sleep_checking', '{"seconds": 0}', queue => 'third')});
sql("SELECT chancy_wait($id, '30 s')");
my @long = (
	sql(q{SELECT chancy_push('sleep_checking', '{"seconds": 20}')}),
	sql(q{SELECT chancy_push('sleep_checking', '{"seconds": 20}', queue => 'other')}));
my @third = grep { $_ ne '' } split /[{},]/, sql(q{SELECT chancy_push_many(ARRAY[
	chancy_with_kwargs(chancy_with_queue(chancy_job('sleep_checking'), 'third'), '{"seconds": 20}'),
	chancy_with_kwargs(chancy_with_queue(chancy_job('sleep_checking'), 'third'), '{"seconds": 0}'),
	chancy_with_kwargs(chancy_with_queue(chancy_job('sleep_checking'), 'third'), '{"seconds": 0}')])});
all_running(@long, $third[0]);
is(sql("SELECT count(*) FROM chancy_jobs WHERE id IN ($third[1], $third[2])"
	  . " AND claim IS NOT NULL AND state = 'pending'"), '2',
	'a batch is claimed but not started');
my @all = (@long, @third);
my $all = join(',', @all);
for my $round (1, 2)
{
	my $bg_out = '';
	my $bg = IPC::Run::start(
		[ $node->installed_command('psql'), '-XAtq', '-d', $node->connstr('postgres'),
		  '-c', 'SELECT pg_sleep(120) AS unrelated' ],
		'>', \$bg_out, '2>', \$bg_out);
	$node->poll_query_until('postgres',
		q{SELECT count(*) = 1 FROM pg_stat_activity WHERE query LIKE '%AS unrelated'
		  AND pid <> pg_backend_pid()})
	  or die 'the unrelated backend never started';
	my $victim = sql(q{SELECT pid FROM pg_stat_activity WHERE query LIKE '%AS unrelated'
		AND pid <> pg_backend_pid()});
	$offset = -s $node->logfile;
	kill 'KILL', $victim;
	wait_crash_restart($offset);
	eval { $bg->finish; };
	all_running(@long, $third[0]);
	is(sql("SELECT string_agg(crashes::text || '/' || attempts::text, ' ' ORDER BY id)"
		  . " FROM chancy_jobs WHERE id IN ($all)"),
		'0/1 0/1 0/1 0/0 0/0',
		"crash $round of an unrelated backend: no job is charged, no attempt used");
	is(sql("SELECT count(*) FROM chancy_jobs WHERE id IN ($all) AND state = 'failed'"), '0',
		"crash $round: no job failed");
}
is(join(' ', map { sql("SELECT state || ' ' || crashes || ' ' || attempts FROM chancy_wait($_, '60 s')") } @all),
	join(' ', ('succeeded 0 1') x 5), 'after two unrelated crashes every job succeeds uncharged');

# b. kill -9 of the executor running a job charges that job only, not the
# job another executor was running.
my $guilty = sql(q{SELECT chancy_push('sleep_checking', '{"seconds": 4}')});
my $innocent = sql(q{SELECT chancy_push('sleep_checking', '{"seconds": 4}', queue => 'other')});
my $pid = running($guilty);
running($innocent);
$offset = -s $node->logfile;
kill 'KILL', $pid;
wait_crash_restart($offset);
is(sql("SELECT state || ' ' || crashes FROM chancy_wait($guilty, '60 s')"), 'succeeded 1',
	'the job whose executor was killed is charged one crash, then succeeds');
is(sql("SELECT state || ' ' || crashes || ' ' || attempts FROM chancy_wait($innocent, '60 s')"),
	'succeeded 0 1', 'the job of another executor is not charged');

# c. pg_ctl stop -m immediate (SIGQUIT to every process) charges nobody.
$id = sql(q{SELECT chancy_push('sleep_checking', '{"seconds": 4}')});
running($id);
$node->stop('immediate');
$node->start;
is(sql("SELECT state || ' ' || crashes || ' ' || attempts FROM chancy_wait($id, '60 s')"),
	'succeeded 0 1', 'a job running at an immediate shutdown is not charged, and runs again');

$node->stop;
done_testing();
