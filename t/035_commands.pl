# Command jobs (pg_cron's form of a schedule, chancy_run_command): a
# scheduled VACUUM runs at top level as the schedule's owner; several
# statements are one transaction; a procedure may commit; a command can
# neither change its role nor leave settings for its outcome or the next
# job; a time limit, a cancel and a cancel of itself stop it; a shutdown
# uses its attempt; a procedure committing in steps holds back no vacuum
# (a function job does); CREATE INDEX CONCURRENTLY works; a command that
# failed leaves the executor serving.
use strict;
use warnings;
use FindBin;
use lib $FindBin::RealBin;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use ChancyTest;

my $node = chancy_node('commands', "chancy.queues = 'default:2, solo:1'\n");
sub sql { return $node->safe_psql('postgres', shift); }

sql(q{CREATE EXTENSION chancy;
	CREATE ROLE regress_cmd_owner;
	GRANT CREATE ON SCHEMA public TO regress_cmd_owner;
	CREATE SCHEMA app AUTHORIZATION regress_cmd_owner;
	SET ROLE regress_cmd_owner;
	CREATE TABLE big(x int) WITH (autovacuum_enabled = off);
	CREATE TABLE seen(who text, what text);
	CREATE PROCEDURE twice() LANGUAGE plpgsql AS $$
	BEGIN
		INSERT INTO seen VALUES (current_user, 'first'); COMMIT;
		INSERT INTO seen VALUES (current_user, 'second'); COMMIT;
	END $$;
	CREATE FUNCTION setting(kwargs jsonb) RETURNS text LANGUAGE sql
		AS $$SELECT current_setting(kwargs->>'name')$$;});

# Push a command as the owner to queue $queue (default 'default'); its id.
sub push_command
{
	my ($command, $queue) = @_;
	$queue //= 'default';
	$command =~ s/'/''/g;
	return sql(qq{SET ROLE regress_cmd_owner;
		SELECT chancy_push(chancy_with_queue(chancy_with_kwargs(chancy_job('chancy_run_command'),
			jsonb_build_object('command', '$command')), '$queue'))});
}

# Wait for job $id to end; its state, result and first error, '|'-separated.
sub ended
{
	my $id = shift;
	$node->poll_query_until('postgres',
		qq{SELECT state IN ('succeeded', 'failed', 'cancelled') FROM chancy_jobs WHERE id = $id})
	  or die "job $id never ended";
	return sql(qq{SELECT state || '|' || coalesce(result::text, '') || '|' || coalesce(errors->0->>'message', '')
		FROM chancy_jobs WHERE id = $id});
}

# --- pg_cron's form: a scheduled VACUUM, at top level, as the schedule's owner
sql(q{SET ROLE regress_cmd_owner;
	INSERT INTO big SELECT generate_series(1, 1000);
	DELETE FROM big WHERE x % 2 = 0;
	SELECT chancy_schedule('vacuum_big', '* * * * * *', 'VACUUM big')});
$node->poll_query_until('postgres', q{SELECT fires >= 1 FROM chancy_schedules});
sql(q{SELECT chancy_unschedule('vacuum_big')});
my $job = sql(q{SELECT min(id) FROM chancy_jobs WHERE meta->>'schedule' = 'vacuum_big'});
is(ended($job), 'succeeded|["VACUUM"]|', "a scheduled VACUUM runs (VACUUM can't run in a function)");
is(sql(qq{SELECT j.pushed_by::regrole::text || ' ' || (s.vacuum_count > 0)
	FROM chancy_jobs j, pg_stat_user_tables s WHERE j.id = $job AND s.relname = 'big'}),
	'regress_cmd_owner true', 'as the schedule owner, and the table was vacuumed');

# --- names mean what they meant to the pusher: its search_path is recorded
sql(q{SET ROLE regress_cmd_owner;
	CREATE TABLE app.seen(who text, what text);
	SET search_path = app;
	SELECT public.chancy_schedule('in_app', '* * * * * *',
		'INSERT INTO seen VALUES (current_user, current_setting(''search_path''))')});
$node->poll_query_until('postgres', q{SELECT fires >= 1 FROM chancy_schedules WHERE name = 'in_app'});
sql(q{SELECT chancy_unschedule('in_app')});
$job = sql(q{SELECT min(id) FROM chancy_jobs WHERE meta->>'schedule' = 'in_app'});
is(ended($job), 'succeeded|["INSERT 0 1"]|', 'a command scheduled under another search_path');
is(sql(q{SELECT who || ' ' || what FROM app.seen LIMIT 1}), 'regress_cmd_owner app',
	'runs with that search_path, not the executor\'s');

# a command job whose row lost its path (written by hand) runs with chancy's
$job = sql(q{SET ROLE regress_cmd_owner;
	SELECT chancy_push(chancy_with_scheduled_at(chancy_with_kwargs(chancy_job('chancy_run_command'),
		'{"command": "INSERT INTO public.seen VALUES (current_user, current_setting(''search_path''))"}'),
		now() + interval '2 s'))});
sql(qq{UPDATE chancy_jobs SET kwargs = kwargs - 'search_path' WHERE id = $job});
is(ended($job), 'succeeded|["INSERT 0 1"]|', 'a command job with no recorded search_path');
is(sql(q{SELECT what FROM seen WHERE what LIKE 'pg_catalog%'}), 'pg_catalog, pg_temp',
	'runs with pg_catalog, pg_temp, not a path a database setting chooses');

# --- several statements: one transaction, each seeing the one before
$job = push_command(q{INSERT INTO seen VALUES (current_user, 'multi');
	UPDATE seen SET what = 'multi, updated' WHERE what = 'multi'; SELECT 1});
is(ended($job), 'succeeded|["INSERT 0 1", "UPDATE 1", "SELECT 1"]|',
	'several statements run in order; the result is their completion tags');
is(sql(q{SELECT who || ' ' || what FROM seen WHERE what LIKE 'multi%'}),
	'regress_cmd_owner multi, updated', 'as the owner');
$job = push_command(q{INSERT INTO seen VALUES (current_user, 'undone'); SELECT 1/0});
like(ended($job), qr/^failed\|\|division by zero$/, 'a failing statement fails the job');
is(sql(q{SELECT count(*) FROM seen WHERE what = 'undone'}), '0',
	'and undoes the statements before it: they are one transaction');
$job = push_command('VACUUM big; VACUUM big');
is(ended($job), 'failed||VACUUM cannot run inside a transaction block',
	'so VACUUM must be alone, as in psql -c');

# --- a procedure that commits
$job = push_command('CALL twice()');
is(ended($job), 'succeeded|["CALL"]|', 'a procedure that commits runs');
is(sql(q{SELECT string_agg(what, ',' ORDER BY what) FROM seen WHERE what IN ('first', 'second')}),
	'first,second', 'and both its transactions commit');

# --- no way out of the owner's role; no setting left for the next job
for my $escape ('SET SESSION AUTHORIZATION postgres', 'SET ROLE postgres', 'RESET ROLE',
	'RESET SESSION AUTHORIZATION', 'DISCARD ALL', 'CREATE TEMP TABLE t(x int)')
{
	like(ended(push_command($escape)), qr/^failed\|\|.*(security|cannot set parameter)/,
		"a command cannot run $escape");
}
is(ended(push_command('SET search_path = nowhere', 'solo')), 'succeeded|["SET"]|',
	'a command may set a setting');
$job = sql(q{SET ROLE regress_cmd_owner;
	SELECT chancy_push(chancy_with_queue(chancy_with_kwargs(chancy_job('setting'),
		'{"name": "search_path"}'), 'solo'))});
is(ended($job), 'succeeded|"\"$user\", public"|',
	'the next job of its queue does not see it: the executor made way for a fresh one');

# settings that would stop the outcome from being recorded are reset first
is(ended(push_command('SET default_transaction_read_only = on')), 'succeeded|["SET"]|',
	'a command that makes later transactions read-only succeeds');
$job = push_command(q{DO $$BEGIN
	PERFORM set_config('default_transaction_read_only', 'on', false);
	COMMIT;
	RAISE EXCEPTION 'after the commit';
END$$});
is(ended($job), 'failed||after the commit', 'one that fails after committing that fails');
is(sql(qq{SELECT attempts FROM chancy_jobs WHERE id = $job}), '1', 'once: it was not run again');

# --- what stops a command
$job = sql(q{SET ROLE regress_cmd_owner;
	SELECT chancy_push(chancy_with_limits(chancy_with_kwargs(chancy_job('chancy_run_command'),
		'{"command": "SELECT pg_sleep(30)"}'), '300 ms', NULL))});
is(ended($job), 'failed||job exceeded its time limit of 0.300 s', 'a time limit stops a command');
$job = push_command('SELECT pg_sleep(30)');
$node->poll_query_until('postgres', qq{SELECT state = 'running' FROM chancy_jobs WHERE id = $job});
sql(qq{SET ROLE regress_cmd_owner; SELECT chancy_cancel($job)});
is(ended($job), 'cancelled||cancelled by regress_cmd_owner', 'a cancel stops a command');
$job = push_command('SELECT chancy_cancel((chancy_current_job()).id)');
is(ended($job), 'cancelled||cancelled by regress_cmd_owner',
	'a command that cancelled itself ends cancelled');

$job = push_command(q{DO $$BEGIN
	PERFORM chancy_cancel((chancy_current_job()).id);
	COMMIT;
	RAISE EXCEPTION 'after the cancel';
END$$});
is(ended($job), 'cancelled||cancelled by regress_cmd_owner',
	'one that cancelled itself and then failed too');
$job = push_command('SELECT pg_sleep(60)');
$node->poll_query_until('postgres', qq{SELECT state = 'running' FROM chancy_jobs WHERE id = $job});
$node->restart;
is(ended($job), 'failed||command was stopped by a shutdown of its executor',
	'a command stopped by a shutdown has used its attempt (it may have committed work)');

# --- long work and vacuum: a function job holds back the removal of rows
# deleted while it runs; a procedure that commits in steps, run as a
# command, does not
sql(q{CREATE TABLE unrelated(x int) WITH (autovacuum_enabled = off);
	CREATE FUNCTION long_sleep(kwargs jsonb) RETURNS void LANGUAGE sql AS 'SELECT pg_sleep(5)';
	CREATE PROCEDURE long_steps() LANGUAGE plpgsql AS $$
	BEGIN
		FOR i IN 1 .. 5 LOOP PERFORM pg_sleep(1); COMMIT; END LOOP;
	END $$;});
# rows deleted while job $id runs, 2 s later vacuumed: how many are left
sub dead_left_during
{
	my $id = shift;
	$node->poll_query_until('postgres', qq{SELECT state = 'running' FROM chancy_jobs WHERE id = $id});
	sql(q{INSERT INTO unrelated SELECT generate_series(1, 10000); DELETE FROM unrelated});
	sleep 2;
	sql(q{VACUUM unrelated});
	my $left = sql(q{SELECT n_dead_tup FROM pg_stat_user_tables WHERE relname = 'unrelated'});
	ended($id);
	sql(q{VACUUM unrelated});
	return $left;
}
is(dead_left_during(sql(q{SELECT chancy_push('long_sleep')})), '10000',
	'a function job holds back vacuum while it runs (as a client\'s statement would)');
is(dead_left_during(sql(q{SELECT chancy_push('chancy_run_command', '{"command": "CALL long_steps()"}')})),
	'0', 'a committing procedure run as a command job does not');

# --- CREATE INDEX CONCURRENTLY (waits for other transactions: none is open)
$job = push_command('CREATE INDEX CONCURRENTLY big_x ON big (x)');
is(ended($job), 'succeeded|["CREATE INDEX"]|', 'CREATE INDEX CONCURRENTLY runs');
is(sql(q{SELECT indisvalid FROM pg_index WHERE indexrelid = 'big_x'::regclass}), 't',
	'and the index is valid');

# --- log_statement applies (the test clusters log every statement)
is(ended(push_command('CREATE TABLE audit_me(x int)')), 'succeeded|["CREATE TABLE"]|',
	'a command makes a table');
ok($node->log_contains(qr/LOG:  statement: CREATE TABLE audit_me/),
	'and log_statement logs it, as it would a client\'s');

# --- the executors went on serving
is(ended(push_command('SELECT 1')), 'succeeded|["SELECT 1"]|', 'executors serve after all that');
ok(!$node->log_contains('no executor slot left'),
	'replacing an executor after a command is not reported as a lack of slots');
ok(!$node->log_contains('was terminated by signal'), 'and no process crashed');

$node->stop;
done_testing();
