# Loading chancy: it must be preloaded, its settings are checked, and a
# preloaded server accepts pushes.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

# Without shared_preload_libraries, CREATE EXTENSION fails with a clear error.
my $bare = PostgreSQL::Test::Cluster->new('bare');
$bare->init;
$bare->start;
my ($ret, $out, $err) = $bare->psql('postgres', 'CREATE EXTENSION chancy');
isnt($ret, 0, 'CREATE EXTENSION fails without preloading');
like($err, qr/chancy must be loaded via shared_preload_libraries/,
	'the error says how to load chancy');
$bare->stop;

# Preloaded: the settings exist with their defaults.
my $node = PostgreSQL::Test::Cluster->new('main');
$node->init;
$node->append_conf('postgresql.conf', "shared_preload_libraries = 'chancy'");
$node->start;
is($node->safe_psql('postgres', 'SHOW chancy.queues'), 'default:2',
	'chancy.queues default');
is($node->safe_psql('postgres', 'SHOW chancy.database'), 'postgres',
	'chancy.database default');
is($node->safe_psql('postgres', 'SHOW chancy.max_executors'), '4',
	'chancy.max_executors default');

# A bad chancy.queues is refused with the reason.
($ret, $out, $err) = $node->psql('postgres',
	"ALTER SYSTEM SET chancy.queues = 'default:x'");
isnt($ret, 0, 'a malformed chancy.queues is refused');
like($err, qr/invalid value for parameter "chancy.queues".*\n.*concurrency "x"/,
	'the error names the bad concurrency');
($ret, $out, $err) = $node->psql('postgres',
	"ALTER SYSTEM SET chancy.queues = 'default:4, emails:2'");
is($ret, 0, 'a well-formed chancy.queues is accepted');

# The seed's flow on the pushing side.
$node->safe_psql('postgres', 'CREATE EXTENSION chancy; CREATE EXTENSION chancy_examples');
my $id = $node->safe_psql('postgres',
	q{SELECT chancy_push('greet', '{"name": "Alice"}')});
like($id, qr/^\d+$/, 'push returns an id');
is( $node->safe_psql(
		'postgres', "SELECT name || ' ' || (kwargs->>'name') FROM chancy_jobs WHERE id = $id"),
	'greet Alice',
	'the pushed job is stored');

# Definitions are cached per backend: a change in one session is seen by
# another session's next push.
my $s1 = $node->background_psql('postgres');
$s1->query_safe(q{SELECT chancy_push('greet')});
$node->safe_psql('postgres',
	q{SELECT chancy_declare_queue('elsewhere');
	  SELECT chancy_define_job('greet', 'greet(jsonb)', queue => 'elsewhere')});
$id = $s1->query_safe(q{SELECT chancy_push('greet')});
is($s1->query_safe("SELECT queue FROM chancy_jobs WHERE id = $id"),
	'elsewhere', 'another session sees the redefinition');
$s1->quit;

$node->stop;

# chancy.max_executors that does not fit max_worker_processes: the log says so.
$node->append_conf('postgresql.conf', "chancy.max_executors = 20\nmax_worker_processes = 8");
$node->start;
ok( $node->log_contains(
		qr/chancy\.max_executors \(20\) does not fit in max_worker_processes \(8\)/),
	'the log says when chancy.max_executors does not fit');
$node->stop;
done_testing();
