# Housekeeping: chancy's own statements are never JIT-compiled (the
# supervisor's and the executors' alike); a prune costs what it deletes (the
# finished index, queue by queue, not the table); the workers report their
# statistics; a queue declared in SQL keeps its concurrency over a reload of
# chancy.queues; queues of chancy.queues over chancy.max_executors are a
# warning, show their shortfall, and starve no other queue, and SQL cannot
# raise a queue past the budget.
use strict;
use warnings;
use FindBin;
use lib $FindBin::RealBin;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use ChancyTest;
use Time::HiRes qw(time usleep);

my $t0 = time;

# auto_explain logs the plan of every statement, nested ones (chancy's SPI)
# included, with its buffers; JIT is on for everything (cost thresholds 0),
# so a statement that is not kept from JIT shows "JIT:" in its plan.  The
# later shared_preload_libraries line overrides ChancyTest's.
my $node = chancy_node('housekeeping', q{
shared_preload_libraries = 'chancy, auto_explain'
chancy.queues = 'default:2'
max_worker_processes = 16
jit = on
jit_above_cost = 0
jit_inline_above_cost = 0
jit_optimize_above_cost = 0
auto_explain.log_min_duration = 0
auto_explain.log_nested_statements = on
auto_explain.log_analyze = on
auto_explain.log_timing = off
auto_explain.log_buffers = on
log_line_prefix = '%m [%p] %b '
});

# The test's own sessions neither JIT-compile nor log plans (volume); the
# control below runs with the server's settings.
$ENV{PGOPTIONS} = '-c jit=off -c auto_explain.log_min_duration=-1';

sub sql { return $node->safe_psql('postgres', shift); }

# The log from $offset as entries (an entry starts with a line with the
# prefix: time, [pid], backend type): [backend type, whole text].
sub log_entries
{
	my $offset = shift // 0;
	my @entries;
	for my $line (split /\n/, slurp_file($node->logfile, $offset))
	{
		if ($line =~ /^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+ \S+ \[\d+\] (.*?) ?[A-Z]+:  /)
		{
			push @entries, [ $1, $line ];
		}
		elsif (@entries)
		{
			$entries[-1][1] .= "\n$line";
		}
	}
	return @entries;
}

# Plan entries of chancy's own statements (their text names its tables),
# logged by a chancy worker.
sub chancy_plans
{
	return grep {
		$_->[0] =~ /^chancy (executor|supervisor)$/
		  && $_->[1] =~ /Query Text: .*chancy_(jobs|queues)/s
	} log_entries(shift);
}

sql(q{CREATE EXTENSION chancy; CREATE EXTENSION chancy_examples});
create_test_jobs($node);

# Control: the server JIT-compiles (it has LLVM) and auto_explain shows it:
# a client's aggregate over 100,000 rows logs a plan with "JIT:", and so
# does a statement of the shape of chancy's (its prune's walk) run by a
# client: chancy's statements would show "JIT:" were they compiled.
my $offset = -s $node->logfile;
{
	local $ENV{PGOPTIONS} = '';
	sql(q{SELECT sum(x) AS jit_control FROM generate_series(1, 100000) x});
	sql(q{SELECT id AS jit_control2 FROM chancy_jobs
		  WHERE queue = 'default' AND state IN ('succeeded', 'failed', 'cancelled')
			AND completed_at < now() - interval '1 day' ORDER BY completed_at LIMIT 10});
}
my @control = grep { $_->[1] =~ /Query Text: SELECT (sum\(x\) AS jit_control|id AS jit_control2)/ }
  log_entries($offset);
is(scalar(@control), 2, 'the control queries\' plans are logged');
is(join(',', map { $_->[0] } @control), 'client backend,client backend', '... by a client backend');
like($_->[1], qr/\n\s*JIT:\n\s*Functions: \d+/,
	'... and they were JIT-compiled (the server can JIT)') for @control;

# Queue keep holds 20,000 finished jobs it keeps for 10 years (rows written
# directly, as a long-lived installation would have them; the padding makes
# the table much larger than a prune should read); queue short keeps its
# finished jobs 1 s.
sql(q{SELECT chancy_declare_queue('keep', 0, prune_after => '10 years');
	  SELECT chancy_declare_queue('short', 1, prune_after => '1 s')});
my $finished_rows = q{INSERT INTO chancy_jobs (name, function, queue, state, priority,
		max_attempts, completed_at, pushed_by, kwargs)
	  SELECT 'noop', 'public.noop(pg_catalog.jsonb)', '%s', 'succeeded', 0, 1,
			 now() - interval '1 hour' + g * interval '1 ms', 'postgres',
			 jsonb_build_object('pad', repeat('x', %d))
		FROM generate_series(1, %d) g};
sql(sprintf($finished_rows, 'keep', 600, 20000));

# 1. chancy at work under JIT and auto_explain: C and SQL jobs run, a
# running job is put back by a restart (the supervisor then looks for jobs
# to recover) and cancelled, and the supervisor prunes (below).
sql(q{CREATE TABLE sink (n int);
	  CREATE FUNCTION fill(kwargs jsonb) RETURNS void LANGUAGE sql AS $$
		INSERT INTO sink SELECT g FROM generate_series(1, (kwargs->>'n')::int) g $$});
my @ids = map { sql(qq{SELECT chancy_push('greet', '{"name": "J$_"}')}) } 1 .. 5;
push @ids, sql(q{SELECT chancy_push('fill', '{"n": 1000}')}) for 1 .. 3;
is(sql("SELECT string_agg((chancy_wait(id, '60 s')).state::text, ',' ORDER BY id)
		FROM unnest(ARRAY[" . join(',', @ids) . "]) id"),
	join(',', ('succeeded') x 8), 'C and SQL jobs succeed under JIT and auto_explain');

my $sleeper = sql(q{SELECT chancy_push('sleep_checking', '{"seconds": 60}')});
my $running = "SELECT count(*) = 1 FROM chancy_workers WHERE job_id = $sleeper AND state = 'running'";
$node->poll_query_until('postgres', $running) or die "job $sleeper never ran";
$offset = -s $node->logfile;
$node->restart;
$node->poll_query_until('postgres', $running) or die "job $sleeper never ran again";
sql("SELECT chancy_cancel($sleeper)");
is(sql("SELECT (chancy_wait($sleeper, '60 s')).state"), 'cancelled',
	'a job put back by a restart runs again and is cancelled');
# (a supervisor prunes as it starts: it is idle from then on)
$node->wait_for_log(qr/chancy supervisor LOG:  duration: [^\n]*\n\s*Query Text: WITH RECURSIVE f\(queue\)/,
	$offset);

# 2. A prune pass costs what it deletes.  Short gets 20 finished jobs an
# hour old, then a job of short runs: within 10 s of its end (README:
# pruning comes "at most 10 seconds after jobs finish") the supervisor
# deletes short's old jobs, and keep's 20,000 stay.
my $del0 = sql(q{SELECT n_tup_del FROM pg_stat_user_tables WHERE relid = 'chancy_jobs'::regclass});
my $prune_offset = -s $node->logfile;
sql(sprintf($finished_rows, 'short', 0, 20));
my $id = sql(q{SELECT chancy_push('greet', queue => 'short')});
sql("SELECT chancy_wait($id, '60 s')");
my $t_prune = time;
my $gone = q{SELECT count(*) = 0 FROM chancy_jobs WHERE queue = 'short'};
my $prune_secs;
while (time - $t_prune < 15)
{
	if (sql($gone) eq 't') { $prune_secs = time - $t_prune; last; }
	usleep(100_000);
}
ok(defined $prune_secs, 'a job that finished makes the supervisor prune within 10 s (15 s allowed)')
  or diag('short still has ' . sql(q{SELECT count(*) FROM chancy_jobs WHERE queue = 'short'})
	  . ' finished jobs 15 s after a job of it finished');
unless (defined $prune_secs)
{
	# wake it (a change to chancy_queues does) to go on with the rest
	sql(q{SELECT chancy_declare_queue('short', prune_after => '1 s')});
	$node->poll_query_until('postgres', $gone) or die 'short was never pruned';
}
is(sql(q{SELECT count(*) FROM chancy_jobs WHERE queue = 'keep'}), '20000',
	'keep\'s 20,000 finished jobs all stay');

# 3. Statistics: the prune's 21 deletes (the 20 old rows and the job) reach
# pg_stat_user_tables within a few seconds (the supervisor reports after
# its transactions).
my $t_stats = time;
ok($node->poll_query_until('postgres',
		qq{SELECT n_tup_del >= $del0 + 21 FROM pg_stat_user_tables
		   WHERE relid = 'chancy_jobs'::regclass}),
	'n_tup_del of chancy_jobs grows by the 21 rows pruned');
cmp_ok(time - $t_stats, '<', 10, '... within a few seconds');

# The plan of each prune DELETE, as the supervisor ran it: the finished
# index, with the queue in its condition, never a scan of the table; and
# it reads far fewer pages than the table has.
my $pages = sql(q{SELECT pg_relation_size('chancy_jobs') / 8192});
my @prunes = grep {
	$_->[0] eq 'chancy supervisor'
	  && $_->[1] =~ /Query Text: WITH d AS \(DELETE FROM \S+\.chancy_jobs WHERE id = ANY \(ARRAY\(/
} log_entries($prune_offset);
my @deleting = grep { $_->[1] =~ /chancy_jobs_finished[^\n]*\(actual rows=([1-9]\d*) loops=1\)/ } @prunes;
my @keeping = grep { $_->[1] =~ /chancy_jobs_finished[^\n]*\(actual rows=0 loops=1\)/ } @prunes;
ok(@deleting >= 1, 'the plan of the prune DELETE that deleted short\'s rows is logged')
  or diag(join "\n\n", map { $_->[1] } @prunes);
ok(@keeping >= 1, 'and that of keep, which deleted nothing');
my $max_buffers = 0;
for my $p (@prunes)
{
	my $text = $p->[1];
	like($text, qr/Index (Only )?Scan using chancy_jobs_finished on \S+.*\n\s*Index Cond: \(\(?queue = \$1\)/,
		'a prune DELETE walks chancy_jobs_finished by queue');
	unlike($text, qr/Seq Scan/, '... with no sequential scan');
	my ($buffers) = $text =~ /\n\s*Buffers: ([^\n]*)/;
	my $n = 0;
	$n += $1 while ($buffers // '') =~ /(?:hit|read)=(\d+)/g;
	ok(defined $buffers, '... and its buffers are logged');
	$max_buffers = $n if $n > $max_buffers;
}
note("chancy_jobs: $pages pages; a prune DELETE read at most $max_buffers; "
	  . sprintf('pruned %s s after the job ended', defined $prune_secs ? sprintf('%.1f', $prune_secs) : 'over 15'));
cmp_ok($pages, '>', 1500, 'chancy_jobs has over 1,500 pages');
cmp_ok($max_buffers, '<', 250,
	'a prune DELETE reads under 250 pages (about 5 per row it deletes), not the table');

# Executors report their updates too: each job claimed and finished is an
# update of chancy_jobs that shows within a few seconds.
my $upd0 = sql(q{SELECT n_tup_upd FROM pg_stat_user_tables WHERE relid = 'chancy_jobs'::regclass});
@ids = map { sql(q{SELECT chancy_push('greet')}) } 1 .. 5;
sql("SELECT chancy_wait(id, '60 s') FROM unnest(ARRAY[" . join(',', @ids) . "]) id");
$t_stats = time;
ok($node->poll_query_until('postgres',
		qq{SELECT n_tup_upd >= $upd0 + 10 FROM pg_stat_user_tables
		   WHERE relid = 'chancy_jobs'::regclass}),
	'n_tup_upd of chancy_jobs grows as executors run jobs (claim and outcome)');
cmp_ok(time - $t_stats, '<', 10, '... within a few seconds');

# 1 (continued): no plan of chancy's own statements, from the supervisor or
# an executor, was JIT-compiled; the jobs' own statements (fill's INSERT)
# are user code and not looked at.
my @mine = chancy_plans(0);
my @sup = grep { $_->[0] eq 'chancy supervisor' } @mine;
my @exe = grep { $_->[0] eq 'chancy executor' } @mine;
note(scalar(@sup) . ' plans of the supervisor, ' . scalar(@exe) . ' of executors');
cmp_ok(scalar(@sup), '>=', 10, 'many plans of the supervisor\'s statements are logged');
cmp_ok(scalar(@exe), '>=', 10, 'many plans of the executors\' statements are logged');
my @jit = grep { $_->[1] =~ /\n\s*JIT:/ } @mine;
is(scalar(@jit), 0, 'none of chancy\'s statements was JIT-compiled')
  or diag(join "\n\n", map { $_->[1] } @jit[0 .. ($#jit < 2 ? $#jit : 2)]);
my @fills = grep { $_->[0] eq 'chancy executor' && $_->[1] =~ /Query Text:.*INSERT INTO sink/s }
  log_entries(0);
note(scalar(@fills) . ' plans of fill\'s INSERT, '
	  . scalar(grep { $_->[1] =~ /\n\s*JIT:/ } @fills) . ' of them JIT-compiled');

$node->stop;

# 4. Queue precedence on reload: a queue whose concurrency SQL changed keeps
# it; one that follows chancy.queues follows the new setting; the executors
# follow both.
my $prec = chancy_node('precedence', qq{chancy.queues = 'default:2, rq:1'
chancy.max_executors = 6
max_worker_processes = 16
});
sub sql2 { return $prec->safe_psql('postgres', shift); }
sql2(q{CREATE EXTENSION chancy});
$prec->poll_query_until('postgres',
	q{SELECT count(*) = 1 FROM chancy_queues WHERE name = 'rq' AND from_config AND concurrency = 1})
  or die 'rq was never declared from chancy.queues';
is(sql2(q{SELECT concurrency || ' ' || from_config FROM chancy_declare_queue('rq', 3)}),
	'3 false', 'chancy_declare_queue changes rq\'s concurrency: SQL owns it');
$prec->append_conf('postgresql.conf', "chancy.queues = 'default:1, rq:2'\n");
$prec->reload;
ok($prec->poll_query_until('postgres',
		q{SELECT concurrency = 1 AND from_config FROM chancy_queues WHERE name = 'default'}),
	'on reload, default follows chancy.queues (1)');
is(sql2(q{SELECT concurrency || ' ' || from_config FROM chancy_queues WHERE name = 'rq'}),
	'3 false', 'rq keeps the concurrency SQL gave it');
ok($prec->poll_query_until('postgres',
		q{SELECT count(*) FILTER (WHERE queue = 'rq') = 3
			 AND count(*) FILTER (WHERE queue = 'default') = 1
		  FROM chancy_workers WHERE kind = 'executor' AND state <> 'exited'}),
	'executors: 3 for rq, 1 for default')
  or diag(sql2(q{SELECT queue, state FROM chancy_workers WHERE kind = 'executor'}));
$prec->stop;

# 5. Queues of chancy.queues that need more executors than
# chancy.max_executors: a warning says so, chancy_queue_stats shows the
# shortfall, and the other queue still runs.  SQL cannot raise a queue over
# the budget (53400) but may lower one that is over it.
my $budget = chancy_node('budget', qq{chancy.max_executors = 3
chancy.queues = 'default:1, big:5'
max_worker_processes = 16
});
sub sql3 { return $budget->safe_psql('postgres', shift); }
sql3(q{CREATE EXTENSION chancy; CREATE EXTENSION chancy_examples});
# (the warning, with its detail and hint: lines of the supervisor's pid)
$budget->wait_for_log(qr/WARNING:  [^\n]*database "postgres"/);
my ($warning) = slurp_file($budget->logfile) =~
  /(\[(\d+)\] [^\n]*WARNING:  [^\n]*database "postgres"[^\n]*\n(?:[^\n]*\[\2\] [^\n]*(?:DETAIL|HINT):  [^\n]*\n)*)/;
like($warning, qr/need 6 executors/, 'a warning: the queues of "postgres" need 6 executors')
  or diag($warning);
like($warning, qr/\b3 are left/, '... but only 3 are left');
like($warning, qr/HINT:  Raise chancy\.max_executors/, '... and a hint to raise chancy.max_executors');
$budget->poll_query_until('postgres',
	q{SELECT count(*) = 3 FROM chancy_workers WHERE kind = 'executor' AND state IN ('idle', 'busy', 'running')})
  or diag('the executors never started: '
	  . sql3(q{SELECT string_agg(queue || ':' || state, ', ') FROM chancy_workers WHERE kind = 'executor'}));
my ($conc, $execs) = split /\|/,
  sql3(q{SELECT concurrency, executors FROM chancy_queue_stats WHERE queue = 'big'});
is($conc, 5, 'chancy_queue_stats: big asks for 5 executors');
cmp_ok($execs, '<', 5, '... and shows fewer (the shortfall)');
$id = sql3(q{SELECT chancy_push('greet')});
my ($ret, $out, $err) = $budget->psql('postgres', "SELECT (chancy_wait($id, '15 s')).state");
is($out, 'succeeded', 'a job of default still runs')
  or diag($err . "\nexecutors: "
	  . sql3(q{SELECT string_agg(queue || ':' || state, ', ') FROM chancy_workers WHERE kind = 'executor'})
	  . "\nqueue|concurrency|executors: "
	  . sql3(q{SELECT string_agg(queue || '|' || concurrency || '|' || executors, ', ') FROM chancy_queue_stats}));

($ret, $out, $err) = $budget->psql('postgres',
	"\\set VERBOSITY verbose\nSELECT chancy_declare_queue('big', 6)");
like($err, qr/ERROR:  53400: [^\n]*executors/,
	'raising a queue over the budget is an error (53400) about executors');
like($err, qr/need 7\b.*\b3 are left/s, '... saying the queues would need 7 and 3 are left');
like($err, qr/HINT:  [^\n]*raise chancy\.max_executors/,
	'... with a hint');
($ret, $out, $err) = $budget->psql('postgres',
	"\\set VERBOSITY verbose\nSELECT chancy_declare_queue('default', 2)");
like($err, qr/ERROR:  53400:/, 'so is raising the other queue');
is(sql3(q{SELECT concurrency || ' ' || from_config FROM chancy_declare_queue('big', 4)}),
	'4 false', 'lowering a queue that is over the budget works');
$budget->stop;

my $secs = time - $t0;
note(sprintf('%.1f s in all', $secs));
done_testing();
