# The launcher and supervisors: several databases, databases without the
# extension or that do not exist, DROP EXTENSION and DROP DATABASE while
# workers run, and chancy.queues changed on reload.
use strict;
use warnings;
use FindBin;
use lib $FindBin::RealBin;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use ChancyTest;
use Time::HiRes qw(time);

my $node = chancy_node('dbs', qq{chancy.database = 'postgres, db1, db2, nosuchdb'
chancy.queues = 'default:1'
chancy.max_executors = 16
max_worker_processes = 24
});

# Count the lines of the server log matching a pattern.
sub log_count
{
	my ($re) = @_;
	my $log = slurp_file($node->logfile);
	my @hits = $log =~ /$re/g;
	return scalar @hits;
}

sub executors
{
	my ($db, $queue) = @_;
	return $node->safe_psql('postgres',
		"SELECT count(*) FROM chancy_workers WHERE kind = 'executor' AND database = '$db'"
		  . " AND queue = '$queue' AND state IN ('idle', 'running', 'paused')");
}

# postgres has no extension yet; db1 and db2 do not exist yet.
$node->wait_for_log(qr/database "postgres" does not have extension chancy/)
  or die;
$node->wait_for_log(qr/database "nosuchdb" listed in chancy\.database does not exist/)
  or die;

$node->safe_psql('postgres', 'CREATE EXTENSION chancy');
for my $db ('db1', 'db2')
{
	$node->safe_psql('postgres', "CREATE DATABASE $db");
	$node->safe_psql($db, q{
		CREATE EXTENSION chancy;
		CREATE FUNCTION whoami(kwargs jsonb) RETURNS jsonb LANGUAGE sql
			AS 'SELECT jsonb_build_object(''db'', current_database())';
		CREATE FUNCTION nap(kwargs jsonb) RETURNS void LANGUAGE sql
			AS 'SELECT pg_sleep((kwargs->>''s'')::float8)';
	});
}

# A database chancy.database does not list: CREATE EXTENSION and the first
# push of a session warn that its jobs will not run; a listed one is quiet.
$node->safe_psql('postgres', 'CREATE DATABASE unlisted');
my ($ret, $out, $err) = $node->psql('unlisted', 'CREATE EXTENSION chancy');
like($err, qr/WARNING:  database "unlisted" is not listed in chancy\.database/,
	'CREATE EXTENSION in an unlisted database warns');
$node->safe_psql('unlisted',
	q{CREATE FUNCTION noop(kwargs jsonb) RETURNS void LANGUAGE sql AS ''});
($ret, $out, $err) = $node->psql('unlisted',
	q{SELECT chancy_push('noop'); SELECT chancy_push_many(ARRAY[chancy_job('noop')])});
my @warnings = $err =~ /is not listed in chancy\.database/g;
is(scalar @warnings, 1, 'pushes in an unlisted database warn once a session');
($ret, $out, $err) = $node->psql('db1', q{SELECT chancy_push('whoami')});
is($err, '', 'a push in a listed database does not warn');

# Two databases served at once.
my %ids;
$ids{$_} = $node->safe_psql($_, q{SELECT chancy_push('whoami')}) for ('db1', 'db2');
for my $db ('db1', 'db2')
{
	is($node->safe_psql($db, "SELECT result->>'db' FROM chancy_wait($ids{$db}, '30s')"),
		$db, "a job of $db ran in $db");
}

# A missing database and a database without the extension: one line each,
# no restart loop.
$node->safe_psql('postgres', 'SELECT pg_reload_conf()');
$node->safe_psql('postgres', 'SELECT pg_sleep(1)');
is(log_count(qr/database "postgres" does not have extension chancy/), 1,
	'a database without the extension is logged once');
is(log_count(qr/"nosuchdb" listed in chancy\.database does not exist/), 2,
	'a missing database is logged once (and once again after a reload)');
is(log_count(qr/terminated by signal|server process .* was terminated/), 0,
	'no worker crashed');

# chancy.queues changed on reload: executors follow.
$node->append_conf('postgresql.conf', "chancy.queues = 'default:2, other:3'");
$node->reload;
$node->poll_query_until('postgres',
	q{SELECT count(*) = 3 FROM chancy_workers WHERE database = 'db1' AND queue = 'other' AND pid IS NOT NULL})
  or die 'queue other never got 3 executors';
is(executors('db1', 'default'), 2, 'default queue grew to 2 executors');
is($node->safe_psql('db1', q{SELECT concurrency FROM chancy_queues WHERE name = 'other'}), '3',
	'the new queue is declared');

# chancy_declare_queue changes take effect without a restart.
$node->safe_psql('db1', q{SELECT chancy_declare_queue('other', 1)});
$node->poll_query_until('postgres',
	q{SELECT count(*) = 1 FROM chancy_workers WHERE database = 'db1' AND queue = 'other'})
  or die 'queue other never shrank';
pass('lowering a queue\'s concurrency stops executors');

# DROP EXTENSION while a job runs: it completes, the workers leave.
my $nap = $node->safe_psql('db2', q{SELECT chancy_push('nap', '{"s": 2}')});
$node->poll_query_until('db2', "SELECT state = 'running' FROM chancy_jobs WHERE id = $nap")
  or die 'job never started';
my $start = time;
$node->safe_psql('db2', 'DROP EXTENSION chancy');
ok(time - $start < 10, 'DROP EXTENSION does not hang');
$node->poll_query_until('postgres',
	q{SELECT count(*) = 0 FROM chancy_workers WHERE database = 'db2' AND pid IS NOT NULL})
  or die 'workers never left db2';
pass('the workers of db2 left after DROP EXTENSION');

# CREATE EXTENSION brings them back.
$node->safe_psql('db2', 'CREATE EXTENSION chancy');
$nap = $node->safe_psql('db2', q{SELECT chancy_push('nap', '{"s": 0}')});
is($node->safe_psql('db2', "SELECT state FROM chancy_wait($nap, '30s')"), 'succeeded',
	'CREATE EXTENSION again: jobs run again');

# DROP DATABASE while a job runs there.
$nap = $node->safe_psql('db2', q{SELECT chancy_push('nap', '{"s": 30}')});
$node->poll_query_until('db2', "SELECT state = 'running' FROM chancy_jobs WHERE id = $nap")
  or die 'job never started';
$start = time;
($ret, $out, $err) = $node->psql('postgres', 'DROP DATABASE db2');
is($ret, 0, 'DROP DATABASE of a chancy database succeeds') or diag($err);
ok(time - $start < 15, 'DROP DATABASE does not hang');
$node->poll_query_until('postgres',
	q{SELECT count(*) = 0 FROM chancy_workers WHERE kind <> 'launcher' AND database IS NULL})
  or die 'slots of db2 never freed';
pass('the slots of the dropped database are freed');

# db1 is still served.
my $id = $node->safe_psql('db1', q{SELECT chancy_push('whoami')});
is($node->safe_psql('db1', "SELECT state FROM chancy_wait($id, '30s')"), 'succeeded',
	'the other database is still served');
is(log_count(qr/terminated by signal/), 0, 'the server never restarted');

# A database taken out of chancy.database while a job of it runs: its
# workers leave (the job goes back, to run when it is served again), and
# every slot is freed (none left "exited", counting against
# chancy.max_executors for ever).
$nap = $node->safe_psql('db1', q{SELECT chancy_push('nap', '{"s": 3}')});
$node->poll_query_until('db1', "SELECT state = 'running' FROM chancy_jobs WHERE id = $nap")
  or die 'job never started';
$node->append_conf('postgresql.conf', "chancy.database = 'postgres, nosuchdb'");
$node->reload;
ok($node->poll_query_until('postgres',
		q{SELECT count(*) = 0 FROM chancy_workers WHERE kind = 'executor'
		   AND (database = 'db1' OR state = 'exited')}),
	'the executors of a database no longer served leave, and free their slots')
  or diag($node->safe_psql('postgres', 'SELECT * FROM chancy_workers'));
is($node->safe_psql('db1', "SELECT state || ' ' || (claim IS NULL) FROM chancy_jobs WHERE id = $nap"),
	'pending true', 'the job they were running went back');

$node->stop;
done_testing();
