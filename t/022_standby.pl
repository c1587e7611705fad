# On a hot standby chancy runs nothing and says why; after promotion the
# jobs pushed on the primary run without a restart.
use strict;
use warnings;
use FindBin;
use lib $FindBin::RealBin;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use ChancyTest;

# The primary serves no database, so that the jobs wait for the standby.
my $primary = chancy_node('primary', "chancy.database = 'nothing_here'\n");
$primary->safe_psql('postgres', q{CREATE EXTENSION chancy; CREATE EXTENSION chancy_examples});
$primary->backup('backup');

my $standby = PostgreSQL::Test::Cluster->new('standby');
$standby->init_from_backup($primary, 'backup', has_streaming => 1);
$standby->append_conf('postgresql.conf', "chancy.database = 'postgres'\n");
$standby->start;

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

$primary->stop;
$standby->promote;
is($standby->safe_psql('postgres', "SELECT state FROM chancy_wait($id, '60 s')"), 'succeeded',
	'after promotion the job pushed before it runs');
ok($standby->log_contains(qr/Hello, Standby!/), 'greet ran on the promoted server');

$standby->stop;
done_testing();
