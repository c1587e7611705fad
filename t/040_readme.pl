# README.md runs itself: every ```sql block of README.md, in document order,
# run through psql against a fresh cluster set up as README's "Install into an
# existing server" says, so that the README cannot drift from what chancy does.
#
# Conventions README keeps for this test:
# - Every ```sql block runs as written, one psql session per block (so a
#   \gset variable lives within its block), as the superuser, in the database
#   chancy.database names by default (postgres), with ON_ERROR_STOP.
# - A block that is not meant to run as written carries the HTML comment
#   <!-- not run --> on the line right before its fence.
# - A result shown in a block is written as psql prints it, each line behind
#   "-- " (header, dashes, rows; the "(N rows)" footer left out), after the
#   statement that prints it; the real output must match it exactly.
# - The ``` block that follows the mention of `postgresql.conf` is appended to
#   the cluster's postgresql.conf, and "need `chancy.max_executors` of at least
#   N" is applied as chancy.max_executors = N.
# - A job meant to fail (to show what follows a failure) runs a function
#   whose name says so: it contains "fails".
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use IPC::Run;
use FindBin;
use lib $FindBin::RealBin;
use ChancyTest;

my $readme = ($ENV{TESTDIR} // "$FindBin::RealBin/..") . '/README.md';
open(my $fh, '<', $readme) or die "cannot read $readme: $!";
my @lines = <$fh>;
close $fh;
chomp @lines;

# Split README into fenced blocks: language, first line number, text, and
# whether the line before the fence says <!-- not run -->.
my @blocks;
for (my $i = 0; $i < @lines; $i++)
{
	next unless $lines[$i] =~ /^\s*```(\S*)\s*$/;
	my ($lang, $start) = ($1, $i + 1);
	my $j = $i + 1;
	$j++ while $j < @lines && $lines[$j] !~ /^\s*```\s*$/;
	die "README.md line $start: fence never closed" if $j >= @lines;
	my $before = $i > 0 ? $lines[$i - 1] : '';
	push @blocks, {
		lang => $lang,
		line => $start,
		text => join("\n", @lines[ $i + 1 .. $j - 1 ]) . "\n",
		skip => ($before =~ /<!--\s*not run\s*-->/ ? 1 : 0),
		after_conf => (join(' ', @lines[ ($i > 3 ? $i - 3 : 0) .. $i - 1 ])
			  =~ /`postgresql\.conf`/ ? 1 : 0),
	};
	$i = $j;
}
my @sql = grep { $_->{lang} eq 'sql' } @blocks;
cmp_ok(scalar @sql, '>=', 8, 'README.md has its SQL examples');

# The server README tells a user to configure: its postgresql.conf lines, and
# the executor budget its queue examples say they need.
my $conf = join('', map { $_->{text} }
	  grep { $_->{lang} eq '' && $_->{after_conf} } @blocks);
like($conf, qr/shared_preload_libraries\s*=\s*'chancy'/,
	'README tells to preload chancy in postgresql.conf');
my $readme_text = join("\n", @lines);
$readme_text =~ s/\s+/ /g;
$conf .= "chancy.max_executors = $1\n"
  if $readme_text =~ /need `chancy\.max_executors` of at least (\d+)/;
my $node = chancy_node('readme', $conf);

# The shown results of a block: each run of "-- " comment lines whose second
# line is psql's dashes (---+---) is a table psql must print.
sub shown_results
{
	my ($text) = @_;
	my @l = split /\n/, $text;
	my @tables;
	for (my $i = 0; $i + 1 < @l; $i++)
	{
		next
		  unless $l[$i] =~ /^-- / && $l[ $i + 1 ] =~ /^-- -+(\+-+)*\s*$/;
		my @t;
		while ($i < @l && $l[$i] =~ /^-- (.*)$/)
		{
			(my $row = $1) =~ s/\s+$//;
			push @t, $row;
			$i++;
		}
		push @tables, \@t;
	}
	return @tables;
}

# Does @$out contain @$table, followed by psql's row count, after line $from?
# Returns the line after the match, or -1.
sub find_table
{
	my ($out, $table, $from) = @_;
	my $rows = @$table - 2;
	my $footer = $rows == 1 ? '(1 row)' : "($rows rows)";
  LINE: for (my $i = $from; $i + @$table < @$out; $i++)
	{
		for my $k (0 .. $#$table)
		{
			next LINE unless $out->[ $i + $k ] eq $table->[$k];
		}
		return $i + @$table + 1 if $out->[ $i + @$table ] eq $footer;
	}
	return -1;
}

my $psql = $node->installed_command('psql');
my $dir = PostgreSQL::Test::Utils::tempdir;
my $checked = 0;
for my $block (@sql)
{
	my $where = "README.md line $block->{line}";
	if ($block->{skip})
	{
		note "$where: marked <!-- not run -->, skipped";
		next;
	}

	# Each block runs as a user pastes it into psql; a wait that never returns
	# fails the test rather than hanging it.
	my $file = "$dir/README.md-line-$block->{line}.sql";
	open(my $out, '>', $file) or die "$file: $!";
	print $out $block->{text};
	close $out;
	my ($stdout, $stderr) = ('', '');
	my $ok = eval {
		IPC::Run::run(
			[ $psql, '-X', '-v', 'ON_ERROR_STOP=1',
			  '-d', $node->connstr('postgres'), '-f', $file ],
			'<', \undef, '>', \$stdout, '2>', \$stderr,
			IPC::Run::timeout(60));
	};
	$stderr .= "\n$@" if $@;
	ok($ok, "$where runs as written")
	  or diag "output:\n$stdout\nerrors:\n$stderr";
	unlike($stderr, qr/(WARNING|ERROR):/, "$where gives no warning")
	  if $ok;

	# What the block shows it prints, it prints.
	my @out = map { s/\s+$//r } split /\n/, $stdout;
	my $from = 0;
	for my $table (shown_results($block->{text}))
	{
		my $next = find_table(\@out, $table, $from);
		ok($next >= 0, "$where prints the result it shows: $table->[2]")
		  or diag "shown:\n" . join("\n", @$table) . "\nprinted:\n$stdout";
		$from = $next if $next >= 0;
		$checked++;
	}
}
cmp_ok($checked, '>=', 2, 'README shows results that are checked');

# Every queue the examples leave declared gets the executors of its
# concurrency within the budget README gives (no "no executor slot left").
ok( $node->poll_query_until(
		'postgres', q{
	SELECT count(*) = 0 FROM chancy_queue_stats s JOIN chancy_queues q ON q.name = s.queue
	 WHERE coalesce(s.executors, 0) <> q.concurrency}),
	'every declared queue has its executors')
  or diag $node->safe_psql('postgres', 'SELECT * FROM chancy_queue_stats');

# Every job the examples pushed ends as intended: the ones due have run, and
# none failed or even had to retry (the scheduled ones wait; a cancel records
# itself in errors).
ok( $node->poll_query_until(
		'postgres', q{
	SELECT count(*) = 0 FROM chancy_jobs
	 WHERE state IN ('running', 'retrying')
	    OR (state = 'pending' AND scheduled_at <= now())}),
	'every job the examples pushed that is due has run');
is( $node->safe_psql(
		'postgres', q{
	SELECT string_agg(format('%s %s %s: %s', id, name, state, errors), E'\n')
	  FROM chancy_jobs WHERE (state = 'failed' OR (state <> 'cancelled' AND errors <> '[]'))
	   AND function NOT LIKE '%fails%'}),
	'',
	'no job of the examples failed');

$node->stop;
done_testing();
