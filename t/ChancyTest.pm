# Helpers shared by chancy's TAP tests.
package ChancyTest;

use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Exporter 'import';

our @EXPORT = qw(chancy_node create_test_jobs);

# A started cluster with chancy preloaded, serving the postgres database.
sub chancy_node
{
	my ($name, $conf) = @_;
	my $node = PostgreSQL::Test::Cluster->new($name);
	$node->init(allows_streaming => 1);
	$node->append_conf('postgresql.conf', qq{
shared_preload_libraries = 'chancy'
chancy.database = 'postgres'
} . ($conf // ''));
	$node->start;
	return $node;
}

# SQL functions over the misbehaving C jobs of test/module (built, not
# installed: loaded by path), executable by every role.
sub create_test_jobs
{
	my ($node, $db) = @_;
	my $lib = "$ENV{TESTDIR}/test/module/chancy_test.so";
	die "$lib is missing: make test-module" unless -f $lib;
	$node->safe_psql($db // 'postgres', join('', (map {
		"CREATE FUNCTION $_(kwargs jsonb) RETURNS void AS '$lib', '$_' LANGUAGE C;\n"
	} qw(sleep_checking busy_loop palloc_hog malloc_hog segfault abort_job fatal_job
		 exit_job)), (map {
		"CREATE FUNCTION $_(kwargs jsonb) RETURNS jsonb AS '$lib', '$_' LANGUAGE C;\n"
	} qw(whoami spi_count))));
}

1;
