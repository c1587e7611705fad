# Helpers shared by chancy's TAP tests.
package ChancyTest;

use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Exporter 'import';

our @EXPORT = qw(chancy_node create_test_jobs hostile_operators);

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
	} qw(sleep_checking busy_loop palloc_hog palloc_mb malloc_hog segfault abort_job
		 fatal_job exit_job)), (map {
		"CREATE FUNCTION $_(kwargs jsonb) RETURNS jsonb AS '$lib', '$_' LANGUAGE C;\n"
	} qw(whoami spi_count subxids parent_results))));
}

# SQL that plants in schema public, for each type, comparison operators
# (those of %$ops: operator => name) that call public.$hit(text) before
# comparing: a statement resolving an operator through a search_path that
# starts with public runs them.
sub hostile_operators
{
	my ($hit, $ops, @types) = @_;
	my $sql = '';
	for my $t (@types)
	{
		(my $suffix = $t) =~ s/^public\.//;
		for my $op (sort keys %$ops)
		{
			my $f = "public.evil_$ops->{$op}_$suffix";
			$sql .= qq{CREATE FUNCTION $f(a $t, b $t) RETURNS boolean LANGUAGE plpgsql
SET search_path = pg_catalog AS \$\$
BEGIN PERFORM public.$hit('operator $op ($t)'); RETURN a OPERATOR(pg_catalog.$op) b; END \$\$;
CREATE OPERATOR public.$op (LEFTARG = $t, RIGHTARG = $t, FUNCTION = $f);
};
		}
	}
	return $sql;
}

1;
