# On a hot standby chancy runs nothing and says why; after promotion the
# jobs pushed on the primary run without a restart, and a job that was
# running on the primary when it went down runs again.
use strict;
use warnings;
use FindBin;
use lib $FindBin::RealBin;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use ChancyTest;

# The primary serves only database live, so that the jobs of postgres wait
# for the standby.
my $primary = chancy_node('primary', "chancy.database = 'nothing_here, live'\n");
$primary->safe_psql('postgres', q{CREATE EXTENSION chancy; CREATE EXTENSION chancy_examples;
	CREATE DATABASE live});
# a job that naps on the primary (whose port it is given) and not elsewhere
$primary->safe_psql('live', q{CREATE EXTENSION chancy;
	CREATE FUNCTION nap_on(kwargs jsonb) RETURNS void LANGUAGE sql AS $$
	SELECT pg_sleep(600) WHERE current_setting('port') = kwargs->>'port' $$});
$primary->backup('backup');

my $standby = PostgreSQL::Test::Cluster->new('standby');
$standby->init_from_backup($primary, 'backup', has_streaming => 1);
$standby->append_conf('postgresql.conf', "chancy.database = 'postgres, live'\n");
$standby->start;

# The primary restarts after the standby started: its executors' claims are
# newer than any the standby would take.  A job runs there when it goes.
$primary->restart;
my $running = $primary->safe_psql('live',
	"SELECT chancy_push('nap_on', '{\"port\": \"" . $primary->port . "\"}')");
$primary->poll_query_until('live', "SELECT state = 'running' FROM chancy_jobs WHERE id = $running")
  or die 'the nap never started on the primary';

my $id = $primary->safe_psql('postgres', q{SELECT chancy_push('greet', '{"name": "Standby"}')});
$primary->wait_for_catchup($standby);

$standby->poll_query_until('postgres',
	q{SELECT state LIKE 'standby%' FROM chancy_workers WHERE kind = 'launcher'})
  or die 'the launcher never reported the standby';
pass('chancy_workers says the server is a standby');
ok($standby->log_contains(qr/chancy runs no job on this standby/),
	'the log says so');
is($standby->safe_psql('postgres', "SELECT state FROM chancy_jobs WHERE id = $id"), 'pending',
	'nothing runs on the standby');
is($standby->safe_psql('postgres',
	q{SELECT count(*) FROM chancy_workers WHERE kind <> 'launcher'}), '0',
	'no supervisor or executor on the standby');

my ($ret, $out, $err) = $standby->psql('postgres',
	q{\set VERBOSITY verbose
	SELECT chancy_push('greet')});
like($err, qr/ERROR:  25006: cannot push jobs on a standby/,
	'a push on the standby is refused with its own error');
unlike($err, qr/INSERT|CONTEXT/, 'the refusal shows no internal statement');

$primary->wait_for_catchup($standby);
$primary->stop('immediate');
$standby->promote;
is($standby->safe_psql('postgres', "SELECT state FROM chancy_wait($id, '60 s')"), 'succeeded',
	'after promotion the job pushed before it runs');
ok($standby->log_contains(qr/Hello, Standby!/), 'greet ran on the promoted server');
is($standby->safe_psql('live',
	"SELECT state || ' ' || attempts || ' ' || crashes FROM chancy_wait($running, '60 s')"),
	'succeeded 1 0',
	'the job that was running on the old primary is given back and runs, uncharged');

$standby->stop;
done_testing();
