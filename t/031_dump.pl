# pg_dump and pg_restore keep chancy's queues, definitions, schedules and jobs: a dump
# restored into a fresh cluster with chancy preloaded, in a database that
# chancy.database lists once the restore is done (so that no job runs
# against half-restored tables), restores without an error, without
# duplicating what CREATE EXTENSION and chancy.queues make there; pending
# jobs run there with the functions of that cluster, a job that was running
# at dump time runs again once, new pushes get ids above the restored ones,
# the jobs of a role dropped before the dump are left out, and
# chancy.dump_finished_jobs = off leaves finished jobs out.
use strict;
use warnings;
use FindBin;
use lib $FindBin::RealBin;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use ChancyTest;

my $src = chancy_node('dump_src', "chancy.queues = 'default:2'\n");

$src->safe_psql('postgres', q{
	CREATE EXTENSION chancy;
	CREATE EXTENSION chancy_examples;	-- greet, and its definition
	CREATE TABLE ran (n int);
	CREATE TABLE release (go boolean);
	CREATE FUNCTION record(kwargs jsonb) RETURNS jsonb LANGUAGE sql
		AS $$INSERT INTO ran VALUES ((kwargs->>'n')::int) RETURNING jsonb_build_object('n', n)$$;
	-- runs until a row appears in release
	CREATE FUNCTION hold(kwargs jsonb) RETURNS text LANGUAGE plpgsql AS $$
	BEGIN
		WHILE NOT EXISTS (SELECT FROM release) LOOP
			PERFORM pg_sleep(0.05);
		END LOOP;
		RETURN 'released';
	END $$;
	CREATE FUNCTION dropped(kwargs jsonb) RETURNS void LANGUAGE sql AS '';
	SELECT chancy_declare_queue('work', 1);
	SELECT chancy_declare_queue('default', 3);	-- chancy.queues' row, now SQL's
	SELECT chancy_define_job('record', 'record(jsonb)', queue => 'work', max_attempts => 2);
	SELECT chancy_define_job('greet', kwargs => '{"name": "Restored"}');
});

# a finished job, a running one, pending ones in a paused queue, a scheduled
# one, and one whose function is dropped
my $done = $src->safe_psql('postgres', q{SELECT chancy_push('greet')});
is($src->safe_psql('postgres', "SELECT state FROM chancy_wait($done, '30 s')"), 'succeeded',
	'a job ran before the dump');
my $held = $src->safe_psql('postgres', q{SELECT chancy_push('hold', max_attempts => 1)});
$src->poll_query_until('postgres', "SELECT state = 'running' FROM chancy_jobs WHERE id = $held")
  or die 'the held job never started';
$src->safe_psql('postgres', q{
	SELECT chancy_pause_queue('work');
	SELECT chancy_push('record', jsonb_build_object('n', n)) FROM generate_series(1, 5) n;
	SELECT chancy_push_workflow('kept', ARRAY[
		chancy_step('a', chancy_with_queue(chancy_job('greet'), 'work')),
		chancy_step('b', chancy_with_queue(chancy_job('greet'), 'work'), '{a}')]);
	SELECT chancy_push('dropped', queue => 'work');
	DROP FUNCTION dropped(jsonb);
	CREATE SCHEMA lib;
	CREATE SCHEMA other;
	CREATE FUNCTION lib.f(kwargs jsonb) RETURNS void LANGUAGE sql
		AS $$INSERT INTO ran VALUES (1001)$$;
	CREATE FUNCTION other.f(kwargs jsonb) RETURNS void LANGUAGE sql
		AS $$INSERT INTO ran VALUES (666)$$;
	SELECT chancy_push('lib.f', queue => 'work');
	-- the same source, another setting
	CREATE SCHEMA lib2;
	CREATE SCHEMA other2;
	CREATE FUNCTION lib2.f(kwargs jsonb) RETURNS void LANGUAGE sql SET work_mem = '1MB'
		AS $$INSERT INTO ran VALUES (current_setting('work_mem')::text::int)$$;
	CREATE FUNCTION other2.f(kwargs jsonb) RETURNS void LANGUAGE sql SET work_mem = '2MB'
		AS $$INSERT INTO ran VALUES (current_setting('work_mem')::text::int)$$;
	SELECT chancy_push('lib2.f', queue => 'work');
	CREATE ROLE alice;
	CREATE FUNCTION owned(kwargs jsonb) RETURNS void LANGUAGE sql AS '';
	ALTER FUNCTION owned(jsonb) OWNER TO alice;
	SELECT chancy_push('owned', queue => 'work');
	SET ROLE alice;
	SELECT chancy_schedule('nightly', '0 3 * * *',
		chancy_with_kwargs(chancy_job('record'), '{"n": 3}'), 'Europe/Berlin',
		catch_up => '1 hour', overlap => false);
	RESET ROLE;
	CREATE ROLE gone;
	SET ROLE gone;
	SELECT chancy_push('record', '{"n": 99}', queue => 'work');
	SELECT chancy_schedule('gone_nightly', '@daily', chancy_job('record'));
	RESET ROLE;
	DROP ROLE gone;
});
my $later = $src->safe_psql('postgres',
	q{SELECT chancy_push('greet', scheduled_at => now() + interval '1 day')});
my $jobs_before = $src->safe_psql('postgres',
	q{SELECT string_agg(id || ' ' || name || ' ' || state, ', ' ORDER BY id) FROM chancy_jobs
	   WHERE pushed_by::oid IN (SELECT oid FROM pg_roles)});
my $orphan = $src->safe_psql('postgres',
	q{SELECT id FROM chancy_jobs WHERE pushed_by::oid NOT IN (SELECT oid FROM pg_roles)});

my $dump = $PostgreSQL::Test::Utils::tmp_check . '/chancy.dump';
command_ok([ 'pg_dump', '-Fc', '-f', $dump, '-d', $src->connstr('postgres') ],
	'pg_dump -Fc of a database with chancy');
my $plain = $PostgreSQL::Test::Utils::tmp_check . '/live.sql';
{
	local $ENV{PGOPTIONS} = '-c chancy.dump_finished_jobs=off';
	command_ok([ 'pg_dump', '-f', $plain, '-d', $src->connstr('postgres') ],
		'pg_dump with chancy.dump_finished_jobs = off');
}
$src->stop('fast');

#--------------------------------------------------------------------------
# Restore into a fresh cluster
#--------------------------------------------------------------------------

my $dst = chancy_node('dump_dst', "chancy.queues = 'default:2'\nchancy.max_executors = 16\n"
	  . "max_worker_processes = 30\n");
$dst->safe_psql('postgres', 'CREATE DATABASE restored; CREATE ROLE alice; CREATE ROLE mallory');
my ($stdout, $stderr);
my $ok = IPC::Run::run([ 'pg_restore', '-d', $dst->connstr('restored'), $dump ],
	'>', \$stdout, '2>', \$stderr);
ok($ok, 'pg_restore into a fresh cluster succeeds') or diag($stderr);
unlike($stderr, qr/error/i, 'pg_restore reports no error');
ok($dst->log_contains(qr/database "restored" is not listed in chancy\.database/),
	'CREATE EXTENSION warned that the database is not served yet');
is($dst->safe_psql('restored',
	q{SELECT string_agg(concat_ws(' ', name, cron, time_zone, owner, (job).name, (job).kwargs,
		overlap, catch_up), ', ') FROM chancy_schedules}),
	'nightly 0 3 * * * Europe/Berlin alice record {"n": 3} f 01:00:00',
	'a schedule is restored with its owner, job and settings; that of a dropped role is left out');
is($dst->safe_psql('restored', "SELECT state || ' ' || (claim IS NOT NULL) FROM chancy_jobs WHERE id = $held"),
	'running true', 'nothing runs before the database is listed');

# a function of the job's signature that another role owns here; and
# another function of the same owner renamed into the place of the job's
$dst->safe_psql('restored', q{
	ALTER FUNCTION owned(jsonb) OWNER TO mallory;
	ALTER SCHEMA lib RENAME TO lib_old;
	ALTER SCHEMA other RENAME TO lib;
	ALTER SCHEMA lib2 RENAME TO lib2_old;
	ALTER SCHEMA other2 RENAME TO lib2;
});

# the restore done, chancy serves the database
$dst->append_conf('postgresql.conf', "chancy.database = 'postgres, restored'\n");
$dst->reload;

is($dst->safe_psql('restored',
	q{SELECT string_agg(name || ' ' || concurrency || ' ' || from_config || ' '
		|| (paused_until IS NOT NULL), ', ' ORDER BY name) FROM chancy_queues}),
	'default 3 false false, work 1 false true',
	'queues: the one declared in SQL replaced the row chancy.queues made; the pause is kept');
is($dst->safe_psql('restored',
	q{SELECT string_agg(name || ' ' || kwargs::text || ' ' || from_extension, ', ' ORDER BY name)
		FROM chancy_job_definitions}),
	'greet {"name": "Restored"} false, record {} false',
	'definitions: the redefined one replaced the row the example extension made');
is($dst->safe_psql('restored',
	q{SELECT string_agg(id || ' ' || name || ' ' || state, ', ' ORDER BY id) FROM chancy_jobs}),
	$jobs_before, 'every job is restored with its id and state');
is($dst->safe_psql('restored', "SELECT count(*) FROM chancy_jobs WHERE id = $orphan"), '0',
	'but the job of a role dropped before the dump, which could come back as another role\'s');

my $new = $dst->safe_psql('restored', q{SELECT chancy_push('greet')});
ok($new > $later, "a new push gets an id above the restored ones ($new > $later)");
is($dst->safe_psql('restored', "SELECT state FROM chancy_wait($new, '30 s')"), 'succeeded',
	'a new job runs');

# the job that was running at dump time runs again, once
$dst->poll_query_until('restored',
	"SELECT state = 'running' AND jsonb_array_length(errors) = 1 FROM chancy_jobs WHERE id = $held")
  or die 'the held job never ran again';
$dst->safe_psql('restored', 'INSERT INTO release VALUES (true)');
is($dst->safe_psql('restored',
	"SELECT state || ' ' || attempts || ' ' || result::text || ' ' || jsonb_array_length(errors)"
	  . " FROM chancy_wait($held, '30 s')"),
	'succeeded 1 "released" 1',
	'the job running at dump time ran again once; its interrupted run is recorded, not counted');

# pending jobs run with this cluster's functions
$dst->safe_psql('restored', q{SELECT chancy_resume_queue('work')});
is($dst->safe_psql('restored',
	q{SELECT string_agg(state::text, ',' ORDER BY id) FROM
		(SELECT (chancy_wait(id, '30 s')).* FROM chancy_jobs WHERE name = 'record') j}),
	'succeeded,succeeded,succeeded,succeeded,succeeded',
	'the pending jobs ran after the restore');
is($dst->safe_psql('restored', 'SELECT string_agg(n::text, \',\' ORDER BY n) FROM ran'),
	'1,2,3,4,5', 'with the restored function');
is($dst->safe_psql('restored', q{SELECT state || ' ' || steps_done FROM chancy_wait_workflow(
	(SELECT id FROM chancy_workflows WHERE name = 'kept'), '30 s')}), 'succeeded 2',
	'a workflow is restored with its dependencies, and its steps run in order');
ok($dst->safe_psql('restored', q{SELECT chancy_push_sequence('new', ARRAY[chancy_job('greet')])
	> (SELECT id FROM chancy_workflows WHERE name = 'kept')}) eq 't',
	'a new workflow gets an id above the restored ones');
like($dst->safe_psql('restored',
	q{SELECT state || ': ' || (errors->-1->>'detail')
		FROM (SELECT (chancy_wait(id, '30 s')).* FROM chancy_jobs WHERE name = 'owned') j}),
	qr/^failed: The job was pushed in another database or cluster .* no function of that signature, owner and source/,
	'a function of that signature owned by another role is not run in its place');
like($dst->safe_psql('restored',
	q{SELECT state || ': ' || (errors->-1->>'detail')
		FROM (SELECT (chancy_wait(id, '30 s')).* FROM chancy_jobs WHERE name = 'lib.f') j}),
	qr/^failed: The job was pushed in another database or cluster/,
	'nor is another function of the same owner renamed into its place');
is($dst->safe_psql('restored', 'SELECT count(*) FROM ran WHERE n = 666'), '0',
	'which never ran');
like($dst->safe_psql('restored',
	q{SELECT state || ': ' || (errors->-1->>'detail')
		FROM (SELECT (chancy_wait(id, '30 s')).* FROM chancy_jobs WHERE name = 'lib2.f') j}),
	qr/^failed: The job was pushed in another database or cluster/,
	'nor one with the same source and other settings');
like($dst->safe_psql('restored',
	q{SELECT state || ': ' || (errors->-1->>'message')
		FROM chancy_jobs WHERE name = 'dropped'}),
	qr/^failed: function public\.dropped\(pg_catalog\.jsonb\) no longer exists/,
	'a job whose function was dropped before the dump fails, running nothing else');
is($dst->safe_psql('restored',
	"SELECT state || ' ' || (scheduled_at > now() + interval '23 hours') FROM chancy_jobs WHERE id = $later"),
	'pending true', 'a scheduled job keeps its time');

# a function renamed after the push is not run under its new name
$dst->safe_psql('restored', q{
	SELECT chancy_pause_queue('work');
	CREATE FUNCTION soon_renamed(kwargs jsonb) RETURNS void LANGUAGE sql AS '';
});
my $renamed = $dst->safe_psql('restored', q{SELECT chancy_push('soon_renamed', queue => 'work')});
$dst->safe_psql('restored', 'ALTER FUNCTION soon_renamed(jsonb) RENAME TO renamed');
# pushed under its new name, run first: the executor knows the function then
my $new_name = $dst->safe_psql('restored',
	q{SELECT chancy_push('renamed', queue => 'work', priority => 10)});
$dst->safe_psql('restored', q{SELECT chancy_resume_queue('work')});
is($dst->safe_psql('restored', "SELECT state FROM chancy_wait($new_name, '30 s')"), 'succeeded',
	'a job pushed under the new name runs');
like($dst->safe_psql('restored',
	"SELECT state || ': ' || (errors->-1->>'message') FROM chancy_wait($renamed, '30 s')"),
	qr/^failed: function public\.soon_renamed\(pg_catalog\.jsonb\) does not exist/,
	'a job whose function was renamed fails');

# a schema renamed after the push, once an executor knows the function
$dst->safe_psql('restored', q{
	CREATE SCHEMA s1;
	CREATE FUNCTION s1.sf(kwargs jsonb) RETURNS void LANGUAGE sql AS '';
});
my $warm = $dst->safe_psql('restored', q{SELECT chancy_push('s1.sf', queue => 'work')});
is($dst->safe_psql('restored', "SELECT state FROM chancy_wait($warm, '30 s')"), 'succeeded',
	'an executor ran the function');
$dst->safe_psql('restored', q{SELECT chancy_pause_queue('work')});
my $moved = $dst->safe_psql('restored', q{SELECT chancy_push('s1.sf', queue => 'work')});
$dst->safe_psql('restored', q{
	ALTER SCHEMA s1 RENAME TO s2;
	SELECT chancy_resume_queue('work');
});
like($dst->safe_psql('restored',
	"SELECT state || ': ' || (errors->-1->>'message') FROM chancy_wait($moved, '30 s')"),
	qr/^failed: function s1\.sf\(pg_catalog\.jsonb\) does not exist/,
	'a job whose function\'s schema was renamed fails, even in an executor that knew it');

# a copy into another database of the same cluster: function OIDs are the
# database's own there too
$dst->safe_psql('restored', q{SELECT chancy_pause_queue('work')});
my $copied = $dst->safe_psql('restored',
	q{SELECT chancy_push('record', '{"n": 77}', queue => 'work')});
my $copy = $PostgreSQL::Test::Utils::tmp_check . '/copy.dump';
command_ok([ 'pg_dump', '-Fc', '-f', $copy, '-d', $dst->connstr('restored') ],
	'pg_dump of the restored database');
$dst->safe_psql('postgres', 'CREATE DATABASE again');
command_ok([ 'pg_restore', '-d', $dst->connstr('again'), $copy ],
	'restored into another database of the same cluster');
$dst->append_conf('postgresql.conf', "chancy.database = 'postgres, restored, again'\n");
$dst->reload;
$dst->safe_psql('again', q{SELECT chancy_resume_queue('work')});
my $defined = $dst->safe_psql('again',
	q{SELECT chancy_push('record', '{"n": 78}', queue => 'work')});
is($dst->safe_psql('again',
	"SELECT string_agg(state::text, ',') FROM (SELECT (chancy_wait(id, '30 s')).* FROM"
	  . " unnest(ARRAY[$copied, $defined]) id) w"),
	'succeeded,succeeded',
	'there a copied job runs, and so does a push by a copied definition');

# chancy.dump_finished_jobs = off: finished jobs left out, live ones kept
$dst->safe_psql('postgres', 'CREATE DATABASE live');
$ok = IPC::Run::run([ 'psql', '-X', '-q', '-v', 'ON_ERROR_STOP=1', '-d', $dst->connstr('live'),
	'-f', $plain ], '>', \$stdout, '2>', \$stderr);
ok($ok, 'the dump without finished jobs restores') or diag($stderr);
is($dst->safe_psql('live',
	q{SELECT string_agg(state::text || ' ' || n, ', ' ORDER BY state) FROM
		(SELECT state, count(*) AS n FROM chancy_jobs GROUP BY state) s}),
	'pending 12, running 1', 'only the jobs that had not finished were dumped');

# pg_restore --clean into the same database drops and creates the functions
# (new OIDs) and chancy with them: its jobs run with the new functions
my $again = $PostgreSQL::Test::Utils::tmp_check . '/live.dump';
command_ok([ 'pg_dump', '-Fc', '-f', $again, '-d', $dst->connstr('live') ],
	'pg_dump of the database restored without finished jobs');
command_ok([ 'pg_restore', '--clean', '--if-exists', '-d', $dst->connstr('live'), $again ],
	'pg_restore --clean into the same database');
$dst->append_conf('postgresql.conf', "chancy.database = 'postgres, restored, again, live'\n");
$dst->reload;
$dst->safe_psql('live', q{SELECT chancy_resume_queue('work')});
is($dst->safe_psql('live',
	q{SELECT string_agg(state::text, ',') FROM
		(SELECT (chancy_wait(id, '30 s')).* FROM chancy_jobs WHERE name = 'record'
		  AND kwargs->>'n' IN ('1', '2', '3', '4', '5') ORDER BY id) j}),
	'succeeded,succeeded,succeeded,succeeded,succeeded',
	'after pg_restore --clean the jobs run with the functions made again');

$dst->stop;
done_testing();
