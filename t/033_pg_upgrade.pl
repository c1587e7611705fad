# pg_upgrade of a cluster with chancy: the library loads in binary-upgrade
# mode without starting anything (pg_upgrade checks that it loads, and no
# job may run while the catalogs are being moved), every job is kept, and
# the jobs run in the upgraded cluster.
use strict;
use warnings;
use FindBin;
use lib $FindBin::RealBin;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use ChancyTest;

my $old = chancy_node('old');
$old->safe_psql('postgres', q{
	CREATE EXTENSION chancy;
	CREATE TABLE ran (n int);
	CREATE FUNCTION record(kwargs jsonb) RETURNS void LANGUAGE sql
		AS $$INSERT INTO ran VALUES ((kwargs->>'n')::int)$$;
	SELECT chancy_declare_queue('work', 1);
	SELECT chancy_pause_queue('work');
	SELECT chancy_push('record', jsonb_build_object('n', n), queue => 'work')
	  FROM generate_series(1, 10) n;
});
my $done = $old->safe_psql('postgres', q{SELECT chancy_push('record', '{"n": 0}')});
is($old->safe_psql('postgres', "SELECT state FROM chancy_wait($done, '30 s')"), 'succeeded',
	'a job ran before the upgrade');
my $jobs = $old->safe_psql('postgres',
	q{SELECT string_agg(id || ' ' || state, ',' ORDER BY id) FROM chancy_jobs});
$old->stop;

my $new = PostgreSQL::Test::Cluster->new('new');
$new->init;
$new->append_conf('postgresql.conf', qq{
shared_preload_libraries = 'chancy'
chancy.database = 'postgres'
});
# pg_upgrade writes its logs into the new data directory; it runs from there
my $bindir = $new->config_data('--bindir');
my ($stdout, $stderr);
my $ok = IPC::Run::run([ 'pg_upgrade', '--no-sync',
		'-d', $old->data_dir, '-D', $new->data_dir,
		'-b', $bindir, '-B', $bindir, '-s', $new->host,
		'-p', $old->port, '-P', $new->port ],
	'>', \$stdout, '2>', \$stderr, init => sub { chdir $new->data_dir });
ok($ok, 'pg_upgrade of a cluster with chancy preloaded succeeds')
  or diag($stdout . $stderr);

$new->start;
is($new->safe_psql('postgres',
	q{SELECT string_agg(id || ' ' || state, ',' ORDER BY id) FROM chancy_jobs}),
	$jobs, 'every job is kept');
$new->safe_psql('postgres', q{SELECT chancy_resume_queue('work')});
is($new->safe_psql('postgres',
	q{SELECT count(*) FROM (SELECT (chancy_wait(id, '60 s')).* FROM chancy_jobs
		WHERE queue = 'work') w WHERE state = 'succeeded'}),
	'10', 'the jobs run in the upgraded cluster');
is($new->safe_psql('postgres', 'SELECT string_agg(n::text, \',\' ORDER BY n) FROM ran'),
	'0,1,2,3,4,5,6,7,8,9,10', 'each once');
my $id = $new->safe_psql('postgres', q{SELECT chancy_push('record', '{"n": 11}')});
ok($id > 11, 'a new push gets an id above the kept ones');
is($new->safe_psql('postgres', "SELECT state FROM chancy_wait($id, '30 s')"), 'succeeded',
	'and runs');
$new->stop;
done_testing();
