# Observability (src/stats.c): what each job cost (CPU, run time, memory
# peak, WAL, buffers) in chancy_jobs; counters and histograms per database,
# role, queue and job name that match exactly; jobs per queue and state
# from gauges that follow the table through cancels, crashes, restarts and
# TRUNCATE; a role sees only its own figures; Prometheus' text format;
# chancy_health(); the per-minute history.
use strict;
use warnings;
use FindBin;
use lib $FindBin::RealBin;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time);
use ChancyTest;
use IPC::Run;

my $node = chancy_node('obs', qq{
chancy.queues = 'default:2, cost:1, counts:2'
chancy.max_executors = 8
max_worker_processes = 16
});
sub sql { return $node->safe_psql('postgres', shift); }

sql(q{CREATE EXTENSION chancy;
	CREATE FUNCTION nap(kwargs jsonb) RETURNS void LANGUAGE sql
		AS $$ SELECT pg_sleep((kwargs->>'s')::float8) $$;
	CREATE FUNCTION noop(kwargs jsonb) RETURNS void LANGUAGE sql AS $$ SELECT $$;
	CREATE TABLE tj (x int);
	CREATE TABLE td (x int);
	CREATE FUNCTION ins(kwargs jsonb) RETURNS void LANGUAGE sql
		AS $$ INSERT INTO tj SELECT generate_series(1, 10000) $$;
	CREATE FUNCTION flaky(kwargs jsonb) RETURNS void LANGUAGE plpgsql AS $$
	BEGIN
		IF kwargs->>'mode' = 'fail'
		   OR (kwargs->>'mode' = 'once' AND (chancy_current_job()).attempt = 1) THEN
			RAISE EXCEPTION 'flaky';
		END IF;
	END $$;
	SELECT chancy_declare_queue('counts', backoff_base => '1 ms', backoff_max => '1 ms');
	SELECT chancy_declare_queue('iso', 1, executor => 'isolated');
	SELECT chancy_declare_queue('paused', 1);});
create_test_jobs($node);

# Push a job value (SQL) and wait for it to finish; its id.
sub run_job
{
	my ($job) = @_;
	my $id = sql("SELECT chancy_push($job)");
	my $state = sql("SELECT (chancy_wait($id, '60 s')).state");
	return $id;
}

# Poll $query until it returns 't'; false after $secs seconds.
sub poll
{
	my ($query, $secs) = @_;
	my $deadline = time + ($secs // 60);
	while (time < $deadline)
	{
		return 1 if sql($query) eq 't';
		select(undef, undef, undef, 0.1);
	}
	return 0;
}

sub cost
{
	my ($id, $col) = @_;
	return sql("SELECT $col FROM chancy_jobs WHERE id = $id");
}

# --- what each job cost
my $id = run_job(q{chancy_with_queue(chancy_with_kwargs(chancy_job('busy_loop'), '{"seconds": 0.2}'), 'cost')});
my $cpu = cost($id, 'cpu_user_us + cpu_sys_us');
ok($cpu >= 150_000 && $cpu <= 400_000, "a C job spinning 200 ms records 150-400 ms of CPU ($cpu us)");
ok(cost($id, 'run_us') >= 200_000, 'and at least 200 ms of run time');

$id = run_job(q{chancy_with_queue(chancy_with_kwargs(chancy_job('nap'), '{"s": 0.2}'), 'cost')});
$cpu = cost($id, 'cpu_user_us + cpu_sys_us');
ok($cpu < 20_000, "a pg_sleep(0.2) job records under 20 ms of CPU ($cpu us)");
ok(cost($id, 'run_us') >= 200_000, 'and at least 200 ms of run time (' . cost($id, 'run_us') . ' us)');

$id = run_job(q{chancy_with_queue(chancy_with_kwargs(chancy_job('palloc_mb'), '{"mb": 100}'), 'cost')});
my $peak = cost($id, 'mem_peak_bytes');
ok($peak >= 100 * 1024 * 1024 && $peak <= 150 * 1024 * 1024,
	"a job allocating 100 MB records a peak of 100-150 MB ($peak bytes)");
$id = run_job(q{chancy_with_queue(chancy_job('noop'), 'cost')});
$peak = cost($id, 'mem_peak_bytes');
ok($peak < 8 * 1024 * 1024, "the next trivial job of that executor records under 8 MB ($peak bytes)");

$id = run_job(q{chancy_with_queue(chancy_job('ins'), 'cost')});
my $job_wal = cost($id, 'wal_bytes');
my $explain = sql(q{EXPLAIN (ANALYZE, WAL, FORMAT JSON) INSERT INTO td SELECT generate_series(1, 10000)});
my ($direct_wal) = $explain =~ /"WAL Bytes":\s*(\d+)/;
ok(abs($job_wal - $direct_wal) <= 0.1 * $direct_wal,
	"a job inserting 10,000 rows records its WAL within 10% of the statement run directly ($job_wal, $direct_wal)");
ok(cost($id, 'blks_hit') > 0, 'and its buffer hits');

$id = run_job(q{chancy_with_queue(chancy_with_kwargs(chancy_job('busy_loop'), '{"seconds": 0.2}'), 'iso')});
$cpu = cost($id, 'cpu_user_us + cpu_sys_us');
ok($cpu >= 150_000 && $cpu <= 400_000, "an isolated job's CPU comes from its child ($cpu us)");
ok(cost($id, 'mem_peak_bytes') > 0, "and its peak resident size");

$id = run_job(q{chancy_with_queue(chancy_with_max_attempts(chancy_with_kwargs(chancy_job('flaky'), '{"mode": "fail"}'), 1), 'cost')});
is(cost($id, "state::text || ' ' || (run_us IS NOT NULL)"), 'failed true', 'a failed run records what it cost');

sql(q{ALTER SYSTEM SET chancy.track_costs = off; SELECT pg_reload_conf();});
# the executor reads it at its next reload: until then a job may be measured
my $off = 0;
for (1 .. 100)
{
	$id = run_job(q{chancy_with_queue(chancy_job('noop'), 'cost')});
	last if ($off = cost($id, 'run_us IS NULL') eq 't');
	select(undef, undef, undef, 0.1);
}
ok($off, 'with chancy.track_costs off, nothing is measured');
sql(q{ALTER SYSTEM RESET chancy.track_costs; SELECT pg_reload_conf();});

# --- counters: 10,000 jobs, 7,000 succeed, 2,000 fail once, 1,000 fail
sql(q{SELECT count(*) FROM unnest(chancy_push_many(ARRAY(
	SELECT chancy_with_queue(chancy_with_max_attempts(chancy_with_kwargs(chancy_job('flaky'),
		jsonb_build_object('mode', CASE WHEN i <= 7000 THEN 'ok' WHEN i <= 9000 THEN 'once'
										ELSE 'fail' END)),
		CASE WHEN i <= 7000 THEN 1 WHEN i <= 9000 THEN 2 ELSE 1 END), 'counts')
	FROM generate_series(1, 10000) i)))});
ok(poll(q{SELECT count(*) = 0 FROM chancy_jobs WHERE queue = 'counts'
	AND state IN ('pending', 'retrying', 'running')}, 180), '10,000 jobs ran');
is(sql(q{SELECT concat_ws(' ', pushed, started, succeeded, failed, retried, cancelled, crashed)
	FROM chancy_stats WHERE queue = 'counts' AND job = 'flaky'}),
	'10000 12000 9000 1000 2000 0 0',
	'pushed, started, succeeded, failed, retried, cancelled, crashed match exactly');
is(sql(q{SELECT string_agg(name || '=' || value, ' ' ORDER BY name) FROM chancy_metrics()
	WHERE labels->>'queue' = 'counts' AND name IN ('chancy_job_wait_seconds_count',
		'chancy_job_run_seconds_count', 'chancy_jobs_started_total')}),
	'chancy_job_run_seconds_count=12000 chancy_job_wait_seconds_count=12000 chancy_jobs_started_total=12000',
	'the wait and run histograms count every run');
is(sql(q{SELECT concat_ws(' ', pending, running, retrying, succeeded, failed) FROM chancy_queue_stats
	WHERE queue = 'counts'}), '0 0 0 9000 1000', 'chancy_queue_stats counts them from the gauges');

# the gauges against the table, for every queue
my $gauges_match = q{SELECT bool_and(from_gauges) AND NOT EXISTS (
	(SELECT queue, pending, running, retrying, succeeded, failed, cancelled FROM chancy_queue_counts()
	 EXCEPT SELECT queue, count(*) FILTER (WHERE state = 'pending'),
		count(*) FILTER (WHERE state = 'running'), count(*) FILTER (WHERE state = 'retrying'),
		count(*) FILTER (WHERE state = 'succeeded'), count(*) FILTER (WHERE state = 'failed'),
		count(*) FILTER (WHERE state = 'cancelled') FROM chancy_jobs GROUP BY queue)
	UNION ALL
	(SELECT queue, count(*) FILTER (WHERE state = 'pending'),
		count(*) FILTER (WHERE state = 'running'), count(*) FILTER (WHERE state = 'retrying'),
		count(*) FILTER (WHERE state = 'succeeded'), count(*) FILTER (WHERE state = 'failed'),
		count(*) FILTER (WHERE state = 'cancelled') FROM chancy_jobs GROUP BY queue
	 EXCEPT SELECT queue, pending, running, retrying, succeeded, failed, cancelled
	 FROM chancy_queue_counts())) FROM chancy_queue_counts()};
is(sql($gauges_match), 't', 'the gauges match the table');

# --- counted again while a long job runs and pushes commit meanwhile: no
# lock on chancy_jobs, nothing counted twice or lost
sql(q{CREATE PROCEDURE push_loop(n int) LANGUAGE plpgsql AS $$
	BEGIN
		FOR i IN 1 .. n LOOP
			PERFORM chancy_push(chancy_with_queue(chancy_job('noop'), 'counts'));
			COMMIT;
		END LOOP;
	END $$;});
$id = sql(q{SELECT chancy_push(chancy_with_kwargs(chancy_job('sleep_checking'), '{"seconds": 30}'))});
ok(poll("SELECT state = 'running' FROM chancy_jobs WHERE id = $id", 30), 'a long job runs');
my ($in, $out2, $err2) = ('', '', '');
my $pusher = IPC::Run::start([ 'psql', '-XAtq', '-d', $node->connstr('postgres'), '-c',
	'CALL push_loop(3000)' ], \$in, \$out2, \$err2);
my $recounts = 0;
for (1 .. 5)
{
	sql(q{SELECT chancy_stats_rebuild()});
	$recounts++ if poll(q{SELECT bool_and(from_gauges) FROM chancy_queue_counts()}, 10);
}
is($recounts, 5, 'the gauges are counted again while a job runs and pushes commit');
$pusher->finish;
sql("SELECT chancy_cancel($id)");
ok(poll(q{SELECT count(*) = 0 FROM chancy_jobs WHERE state IN ('pending', 'retrying', 'running')
	AND queue IN ('counts', 'default')}, 60), 'and everything ran');
is(sql($gauges_match), 't', 'the gauges match the table after counts made under way');

# --- a paused queue: cancels, health
sql(q{SELECT chancy_pause_queue('paused')});
my @paused = split /\n/, sql(q{SELECT chancy_push(chancy_with_queue(chancy_job('noop'), 'paused'))
	FROM generate_series(1, 5)});
sql("SELECT chancy_cancel($paused[0]); SELECT chancy_cancel($paused[1]);");
is(sql(q{SELECT concat_ws(' ', pending, cancelled, scheduled) FROM chancy_queue_stats WHERE queue = 'paused'}),
	'3 2 0', 'cancelled jobs leave pending for cancelled');
sql(q{SELECT chancy_push(chancy_with_scheduled_at(chancy_with_queue(chancy_job('noop'), 'paused'),
	now() + interval '1 hour'))});
is(sql(q{SELECT concat_ws(' ', pending, scheduled) FROM chancy_queue_stats WHERE queue = 'paused'}),
	'4 1', 'a job pushed for later is pending and scheduled');
is(sql($gauges_match), 't', 'the gauges still match the table');
is(sql(q{SELECT status FROM chancy_health('1 hour') WHERE "check" = 'queue paused'}), 'ok',
	'chancy_health: the paused queue is fine while its jobs are young');
ok(poll(q{SELECT status = 'warn' FROM chancy_health('1 second') WHERE "check" = 'queue paused'}, 10),
	'chancy_health turns to warn once its oldest job waited past the threshold');
is(sql(q{SELECT string_agg(status, ',' ORDER BY "check") FROM chancy_health()
	WHERE "check" IN ('launcher', 'supervisor', 'version', 'statistics', 'schedules', 'time limits')}),
	'ok,ok,ok,ok,ok,ok', 'the other checks are ok');

sql(q{SELECT chancy_delete_queue('paused', purge_jobs => true)});
ok(poll($gauges_match, 30), 'a queue deleted with its jobs: the gauges are counted again');

# --- what a role may see
sql(q{CREATE ROLE alice LOGIN; CREATE ROLE bob LOGIN; CREATE ROLE carol LOGIN;
	GRANT pg_read_all_stats TO carol;});
sub as { my ($r, $q) = @_; return $node->safe_psql('postgres', $q, extra_params => [ '-U', $r ]); }
for my $r (qw(alice bob))
{
	my $pushed = as($r, q{SELECT chancy_push('noop', '{}')});
	as($r, "SELECT chancy_wait($pushed, '30 s')");
}
is(as('alice', q{SELECT string_agg(role::text || ':' || pushed, ',') FROM chancy_stats WHERE job = 'noop'
	AND queue = 'default'}), 'alice:1', 'a role sees only its own counters');
is(as('alice', q{SELECT sum(value) FROM chancy_metrics() WHERE name = 'chancy_jobs_pushed_total'}), '1',
	'and only its own metrics');
is(as('alice', q{SELECT sum(succeeded) FROM chancy_queue_stats}), '1', 'and only its own jobs per state');
is(as('carol', q{SELECT count(DISTINCT role) >= 3 FROM chancy_stats}), 't',
	'a member of pg_read_all_stats sees every role');
my ($rc, $out, $err) = $node->psql('postgres', 'SELECT chancy_stats_reset()',
	extra_params => [ '-U', 'alice' ]);
like($err, qr/permission denied/, 'chancy_stats_reset is not for every role');

# a table of alice's named chancy_jobs is not chancy's
as('alice', q{CREATE TEMP TABLE chancy_jobs (x int); TRUNCATE chancy_jobs;});
is(sql(q{SELECT bool_and(from_gauges) FROM chancy_queue_counts()}), 't',
	'TRUNCATE of another table named chancy_jobs leaves the gauges alone');

# a name longer than an entry holds: one entry, cut between characters
sql(q{SELECT chancy_define_job(repeat('é', 200), 'noop')});
my $long = sql(q{SELECT chancy_push(repeat('é', 200))});
sql("SELECT chancy_wait($long, '30 s')");
is(sql(q{SELECT count(*) || ' ' || sum(pushed) || ' ' || sum(started) || ' ' || (max(length(job)) < 128)
	FROM chancy_stats WHERE job LIKE 'éé%'}), '1 1 1 true',
	'a long job name is counted in one entry, cut at a character');

# a job deleted while chancy_cancel waits for its row: an error, not a crash
$id = sql(q{SELECT chancy_push(chancy_with_scheduled_at(chancy_job('noop'), now() + interval '1 hour'))});
my ($din, $dout, $derr) = ('', '', '');
my $deleter = IPC::Run::start([ 'psql', '-XAtq', '-d', $node->connstr('postgres'), '-c',
	"BEGIN; DELETE FROM chancy_jobs WHERE id = $id; SELECT pg_sleep(1); COMMIT;" ],
	\$din, \$dout, \$derr);
ok(poll(q{SELECT count(*) = 1 FROM pg_stat_activity WHERE query LIKE 'BEGIN; DELETE%'
	AND wait_event = 'PgSleep'}, 10), 'a session deletes a job and holds its row');
my ($crc, $cout, $cerr) = $node->psql('postgres', "SELECT chancy_cancel($id)");
$deleter->finish;
like($cerr, qr/job $id does not exist/, 'chancy_cancel then says the job does not exist');
is(sql('SELECT 1'), '1', 'and the server is up');
# the job was deleted by hand, behind the gauges' back: counted again
sql(q{SELECT chancy_stats_rebuild()});
ok(poll($gauges_match, 30), 'after a delete by hand, chancy_stats_rebuild() makes the gauges right');

# --- Prometheus' text format
my $text = sql(q{SELECT chancy_metrics_prometheus()});
my (%type, %seen_family, $bad, $last_family);
my $label = qr/[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\[\\"n])*"/;
my $number = qr/[-+]?(?:\d+(?:\.\d*)?(?:[eE][-+]?\d+)?|Inf|NaN)/;
my %buckets;
for my $line (split /\n/, $text)
{
	if ($line =~ /^# HELP ([a-zA-Z_:][a-zA-Z0-9_:]*) .+$/) { next; }
	if ($line =~ /^# TYPE ([a-zA-Z_:][a-zA-Z0-9_:]*) (counter|gauge|histogram)$/)
	{
		$bad = "family $1 declared twice" if $seen_family{$1}++;
		$type{$1} = $2;
		$last_family = $1;
		next;
	}
	if ($line =~ /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{($label(?:,$label)*)\})? ($number)$/)
	{
		my ($name, $labels, $value) = ($1, $2 // '', $3);
		(my $family = $name) =~ s/_(bucket|sum|count)$// if $type{$name =~ s/_(bucket|sum|count)$//r};
		$family //= $name;
		$bad //= "sample $name outside its family" if !defined $last_family || $family ne $last_family;
		if ($name =~ /_bucket$/)
		{
			my ($le) = $labels =~ /le="([^"]+)"/;
			(my $series = $labels) =~ s/,?le="[^"]+"//;
			push @{ $buckets{"$family\{$series\}"} }, [ $le, $value ];
		}
		next;
	}
	$bad //= "bad line: $line";
}
ok(!defined $bad, 'the Prometheus text parses' . ($bad ? ": $bad" : ''));
ok($type{chancy_jobs_total} eq 'counter' && $type{chancy_job_wait_seconds} eq 'histogram'
	&& $type{chancy_job_run_seconds} eq 'histogram' && $type{chancy_queue_jobs} eq 'gauge',
	'with chancy_jobs_total, chancy_job_wait_seconds, chancy_job_run_seconds, chancy_queue_jobs');
like($text, qr/^chancy_jobs_total\{database="postgres",queue="counts",job="flaky",outcome="retried"\} 2000$/m,
	'chancy_jobs_total has an outcome label');
my $succeeded = sql(q{SELECT count(*) FROM chancy_jobs WHERE queue = 'counts' AND state = 'succeeded'});
like($text, qr/^chancy_queue_jobs\{database="postgres",queue="counts",state="succeeded"\} $succeeded$/m,
	'chancy_queue_jobs has a state label');
my $monotonic = 1;
for my $series (values %buckets)
{
	my $prev = -1;
	for my $b (@$series)
	{
		$monotonic = 0 if $b->[1] < $prev;
		$prev = $b->[1];
	}
	$monotonic = 0 unless $series->[-1][0] eq '+Inf';
}
ok($monotonic && %buckets, 'histogram buckets are cumulative, up to +Inf');

# --- history: one row a minute (the first minute after a start is not known)
ok(poll(q{SELECT coalesce(sum(started), 0) = 12000 AND sum(succeeded) = 9000
	FROM chancy_stats_history WHERE queue = 'counts' AND job = 'flaky'}, 150),
	'the supervisor writes the minutes into chancy_stats_history');
is(as('alice', q{SELECT count(*) FROM chancy_stats_history WHERE job = 'flaky'}), '0',
	'a role sees only its own history');

# --- a job that ends its executor is charged a crash each time, then fails
$id = sql(q{SELECT chancy_push('exit_job', '{}')});
ok(poll("SELECT state = 'failed' FROM chancy_jobs WHERE id = $id", 60),
	'a job that exits its executor fails at chancy.max_crashes');
is(sql(q{SELECT concat_ws(' ', started, crashed, failed) FROM chancy_stats WHERE job = 'exit_job'}),
	'2 2 0', 'each crash counts a run started and crashed (once: not failed too)');
is(sql($gauges_match), 't', 'the gauges match the table');

# --- an immediate stop: the gauges are counted from the table again; the
# history keeps one day (rows planted 3 and 9 days back, in the partitions
# their days use, go: the 9-day-old one shares today's)
sql(q{INSERT INTO chancy_stats_history (minute, day, role, queue, job, pushed, started,
		succeeded, failed, retried, cancelled, crashed, cpu_ms)
	SELECT m, floor((extract(epoch FROM m) - 946684800) / 86400)::bigint % 9, 'postgres',
		'planted', j, 0, 0, 0, 0, 0, 0, 0, 0
	FROM (VALUES (now() - interval '3 days', 'old'), (now() - interval '9 days', 'cycle'),
				 (now() - interval '1 hour', 'recent')) v(m, j);
	ALTER SYSTEM SET chancy.stats_retention = '1d';});
$id = sql(q{SELECT chancy_push(chancy_with_kwargs(chancy_job('sleep_checking'), '{"seconds": 60}'))});
ok(poll("SELECT state = 'running' FROM chancy_jobs WHERE id = $id", 30), 'a long job runs');
$node->stop('immediate');
$node->start;
ok(poll($gauges_match, 30), 'after the restart the gauges are counted from the table');
ok(poll(q{SELECT string_agg(job, ',') = 'recent' FROM chancy_stats_history WHERE queue = 'planted'}, 30),
	'history past chancy.stats_retention goes, a day at a time');
is(sql(q{SELECT count(*) FROM chancy_stats WHERE queue = 'counts'}), '0',
	'the counters start over with shared memory');

# --- TRUNCATE behind chancy's back: counted again
sql(q{TRUNCATE chancy_jobs});
ok(poll(q{SELECT coalesce(sum(pending + running + succeeded + failed + cancelled), 0) = 0
	AND coalesce(bool_and(from_gauges), true) FROM chancy_queue_counts()}, 30),
	'after TRUNCATE chancy_jobs the gauges are counted again');

done_testing();
