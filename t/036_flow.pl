# Flow control (chancy_limits, src/flow.c): with 8 executors, jobs holding a
# key of concurrency 2 never run more than 2 at once; a pattern is every
# matching key's default; a rate spaces starts, a burst lets that many start
# at once; jobs of a saturated key wait parked while the jobs behind them
# run; a cancel ends a parked job; raising a limit under load applies within
# a second; a crash (an immediate stop) leaves the counts right and the
# parked jobs proceed; many distinct keys stay within chancy.max_limit_keys.
use strict;
use warnings;
use FindBin;
use lib $FindBin::RealBin;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time);
use ChancyTest;

my $node = chancy_node('flow', qq{
chancy.queues = 'default:8'
chancy.max_executors = 10
max_worker_processes = 16
chancy.max_limit_keys = 1000
});
sub sql { return $node->safe_psql('postgres', shift); }

# span: sleeps kwargs.s seconds; its result is when it started and ended
my $span = q{CREATE EXTENSION chancy;
	CREATE FUNCTION span(kwargs jsonb) RETURNS jsonb LANGUAGE plpgsql AS $$
	DECLARE s timestamptz := clock_timestamp();
	BEGIN
		PERFORM pg_sleep(coalesce((kwargs->>'s')::float8, 0));
		RETURN jsonb_build_object('s', s, 'e', clock_timestamp());
	END $$;};
sql($span);

# Push $n span jobs sleeping $s seconds, holding keys $keys (a text[]
# literal; each "%" becomes the job's number), tagged $tag in meta.
sub push_spans
{
	my ($n, $s, $keys, $tag) = @_;
	my $k = $keys eq 'NULL' ? 'NULL' : "replace('$keys', '%', i::text)::text[]";
	sql(qq{SELECT count(*) FROM (SELECT unnest(chancy_push_many(ARRAY(
		SELECT chancy_with_meta(chancy_with_limit_keys(chancy_with_kwargs(chancy_job('span'),
			jsonb_build_object('s', $s)), $k), '{"tag": "$tag"}')
		FROM generate_series(1, $n) i)))) x});
}

# Wait until every job tagged $tag has ended; die after $secs seconds.
sub drained
{
	my ($tag, $secs) = @_;
	my $deadline = time + ($secs // 180);
	while (time < $deadline)
	{
		return 1 if sql(qq{SELECT count(*) FROM chancy_jobs WHERE meta->>'tag' = '$tag'
			AND state IN ('pending', 'retrying', 'running')}) == 0;
		select(undef, undef, undef, 0.1);
	}
	diag(sql(q{SELECT string_agg(key || ' running ' || running || ' parked ' || parked, ', ')
		FROM chancy_limit_stats}));
	diag(sql(qq{SELECT string_agg(state || ' ' || coalesce(claim::text, '-') || ' '
		|| coalesce(parked_on, '-'), ', ') FROM chancy_jobs
		WHERE meta->>'tag' = '$tag' AND state IN ('pending', 'retrying', 'running')}));
	die "jobs tagged $tag did not end";
}

# The most jobs tagged $tag (and matching $where) that ran at once, from
# the times each recorded.
sub max_overlap
{
	my ($tag, $where) = @_;
	$where //= 'true';
	return sql(qq{WITH iv AS (SELECT (result->>'s')::timestamptz s, (result->>'e')::timestamptz e
			FROM chancy_jobs WHERE meta->>'tag' = '$tag' AND state = 'succeeded' AND $where),
		ev AS (SELECT s AS t, 1 AS d FROM iv UNION ALL SELECT e, -1 FROM iv)
		SELECT coalesce(max(c), 0) FROM (SELECT sum(d) OVER (ORDER BY t, d) c FROM ev) x});
}

# --- concurrency 2 with 8 executors: never more than 2 at once
sql(q{SELECT chancy_set_limit('A', concurrency => 2)});
push_spans(2000, 0.002, '{A}', 'conc');
drained('conc');
is(sql(q{SELECT count(*) FROM chancy_jobs WHERE meta->>'tag' = 'conc' AND state = 'succeeded'}),
	'2000', 'all 2,000 jobs of key A succeeded');
is(max_overlap('conc'), '2', 'never more than 2 jobs of key A ran at once (8 executors)');
is(sql(q{SELECT sum(attempts) FROM chancy_jobs WHERE meta->>'tag' = 'conc'}), '2000',
	'parking took back the runs the claims counted: one attempt each');
is(sql(q{SELECT running || '/' || parked FROM chancy_limit_stats WHERE key = 'A'}), '0/0',
	'afterwards key A has nothing running or parked');
ok(sql(q{SELECT throttled > 0 FROM chancy_limit_stats WHERE key = 'A'}) eq 't',
	'jobs of key A were throttled on the way');

# --- a pattern is the default of every key it begins; jobs also hold two keys
sql(q{SELECT chancy_set_limit('customer:*', concurrency => 1)});
push_spans(20, 0.02, '{customer:1}', 'pat1');
push_spans(20, 0.02, '{customer:2,other}', 'pat2');
drained('pat1');
drained('pat2');
is(max_overlap('pat1'), '1', 'customer:1 follows customer:* (concurrency 1)');
is(max_overlap('pat2'), '1', 'so does customer:2, held with another key');
cmp_ok(max_overlap('pat1') + 0, '<', sql(q{
	WITH iv AS (SELECT (result->>'s')::timestamptz s, (result->>'e')::timestamptz e
		FROM chancy_jobs WHERE meta->>'tag' IN ('pat1', 'pat2')),
	ev AS (SELECT s AS t, 1 AS d FROM iv UNION ALL SELECT e, -1 FROM iv)
	SELECT max(c) FROM (SELECT sum(d) OVER (ORDER BY t, d) c FROM ev) x}) + 0,
	'but the two customers ran side by side');

# --- two keys held in opposite orders: no deadlock, both limits hold
sql(q{SELECT chancy_set_limit('X', concurrency => 1); SELECT chancy_set_limit('Y', concurrency => 1)});
push_spans(100, 0.001, '{X,Y}', 'xy');
push_spans(100, 0.001, '{Y,X}', 'xy');
drained('xy', 60);
is(sql(q{SELECT count(*) FROM chancy_jobs WHERE meta->>'tag' = 'xy' AND state = 'succeeded'}),
	'200', 'jobs holding {X,Y} and {Y,X} all ran');
is(max_overlap('xy'), '1', 'one at a time, as each key allows');

# --- no head-of-line blocking: a saturated key's jobs wait parked, the
# jobs behind them run
sql(q{SELECT chancy_set_limit('slow', concurrency => 1)});
push_spans(120, 0.3, '{slow}', 'hol');
my $t0 = time;
push_spans(500, 0, 'NULL', 'free');
drained('free', 60);
my $free_secs = time - $t0;
cmp_ok(sql(q{SELECT count(*) FROM chancy_jobs WHERE meta->>'tag' = 'hol'
	AND state IN ('pending', 'running')}), '>', 110,
	'the jobs of the saturated key still wait');
cmp_ok($free_secs, '<', 30, "500 jobs behind them ran meanwhile (${free_secs}s)");
cmp_ok(sql(q{SELECT parked FROM chancy_limit_stats WHERE key = 'slow'}), '>', 100,
	'they wait parked, outside the ready jobs');
is(sql(q{SELECT count(*) FROM chancy_jobs WHERE parked_on IS NOT NULL AND claim IS DISTINCT FROM 0}),
	'0', 'a job is parked_on a key only while parked (claim 0)');

# a cancel ends a parked job at once
my $parked = sql(q{SELECT min(id) FROM chancy_jobs WHERE claim = 0 AND parked_on = 'slow'});
is(sql(qq{SELECT state || '|' || coalesce(claim::text, 'null') || '|' || coalesce(parked_on, 'null')
	FROM chancy_cancel($parked)}), 'cancelled|null|null', 'a cancel ends a parked job at once');

# --- raising a limit under load applies within a second
my $set_at = sql(q{SELECT clock_timestamp() FROM chancy_set_limit('slow', concurrency => 4)});
$node->poll_query_until('postgres', q{SELECT count(*) >= 4 FROM chancy_jobs
	WHERE meta->>'tag' = 'hol' AND state = 'running'}) or die 'the raised limit never applied';
my $took = sql(qq{SELECT extract(epoch FROM max(started_at) - '$set_at')
	FROM (SELECT started_at FROM chancy_jobs WHERE meta->>'tag' = 'hol'
		  AND started_at > '$set_at' ORDER BY started_at LIMIT 3) s});
cmp_ok($took, '<', 1.0, "concurrency 1 -> 4: 3 more jobs started within ${took}s");

# --- a crash: the counts start over right, and parked jobs proceed
sql(q{SELECT chancy_set_limit('slow', concurrency => 2)});
$node->poll_query_until('postgres', q{SELECT count(*) = 2 FROM chancy_jobs
	WHERE meta->>'tag' = 'hol' AND state = 'running'}) or die 'no 2 running';
$node->stop('immediate');
$node->start;
drained('hol', 300);
is(sql(q{SELECT count(*) FROM chancy_jobs WHERE meta->>'tag' = 'hol' AND state = 'succeeded'}),
	'119', 'after a crash every parked job of key slow ran');
cmp_ok(max_overlap('hol'), '<=', 4, 'key slow never ran over the highest limit it had (4)');
is(sql(q{SELECT running || '/' || parked FROM chancy_limit_stats WHERE key = 'slow'}), '0/0',
	'and nothing counts as running after them');

# --- rates: 10 per second spaces starts by 100 ms; no 10 s window holds
# more than 101.  Starts as chancy records them (started_at): a job's own
# clock also counts what the executor does before calling it (compiling a
# PL/pgSQL function the first time, for one)
sql(q{SELECT chancy_set_limit('R', rate => 10, per => '1 second')});
push_spans(105, 0, '{R}', 'rate');
drained('rate', 60);
my ($gap, $window) = split /\|/, sql(q{
	WITH s AS (SELECT started_at t FROM chancy_jobs WHERE meta->>'tag' = 'rate')
	SELECT (SELECT extract(epoch FROM min(d)) * 1000 FROM (SELECT t - lag(t) OVER (ORDER BY t) d FROM s) x),
		   (SELECT max((SELECT count(*) FROM s b WHERE b.t >= a.t AND b.t < a.t + interval '10 s')) FROM s a)});
cmp_ok($gap, '>=', 95, "starts of a 10/s key are at least 95 ms apart (${gap} ms)");
cmp_ok($window, '<=', 101, "no 10 s window holds more than 101 starts ($window)");

# --- a queue's rate: every job of the queue holds key queue:<name>
sql(q{SELECT chancy_declare_queue('metered', 2, rate => 10)});
sql(q{SELECT chancy_push_many(ARRAY(SELECT chancy_with_meta(chancy_with_queue(chancy_job('span'),
	'metered'), '{"tag": "metered"}') FROM generate_series(1, 15)))});
drained('metered', 60);
is(sql(q{WITH s AS (SELECT started_at t FROM chancy_jobs WHERE meta->>'tag' = 'metered')
	SELECT extract(epoch FROM min(d)) * 1000 >= 95 FROM (SELECT t - lag(t) OVER (ORDER BY t) d FROM s) x}),
	't', 'a queue of rate 10/s starts its jobs at least 95 ms apart');
sql(q{SELECT chancy_declare_queue('metered', 0, rate => 0)});

# --- a suspended key: its jobs wait parked, and start once it is resumed
sql(q{SELECT chancy_suspend_key('S', now() + interval '1 hour')});
push_spans(3, 0, '{S}', 'susp');
$node->poll_query_until('postgres', q{SELECT parked = 3 FROM chancy_limit_stats WHERE key = 'S'})
  or die 'the jobs of a suspended key were not parked';
my $resumed_at = sql(q{SELECT clock_timestamp() FROM chancy_suspend_key('S', NULL)});
drained('susp', 30);
cmp_ok(sql(qq{SELECT extract(epoch FROM max(started_at) - '$resumed_at')
	FROM chancy_jobs WHERE meta->>'tag' = 'susp'}), '<', 1.0,
	'jobs of a suspended key start within a second of its resume');

# --- a burst lets that many start at once
sql(q{SELECT chancy_set_limit('B', rate => 1, per => '1 minute', burst => 20)});
push_spans(25, 0, '{B}', 'burst');
$node->poll_query_until('postgres', q{SELECT count(*) = 20 FROM chancy_jobs
	WHERE meta->>'tag' = 'burst' AND state = 'succeeded'}) or die 'no burst';
is(sql(q{SELECT extract(epoch FROM max((result->>'s')::timestamptz) - min((result->>'s')::timestamptz)) < 1
	FROM chancy_jobs WHERE meta->>'tag' = 'burst' AND state = 'succeeded'}), 't',
	'burst 20: 20 started at once');
is(sql(q{SELECT parked || '|' || tokens FROM chancy_limit_stats WHERE key = 'B'}), '5|0',
	'the other 5 wait parked for the next token');
sql(q{SELECT chancy_cancel(id) FROM chancy_jobs WHERE meta->>'tag' = 'burst' AND state = 'pending'});

# --- many distinct keys: shared memory holds at most chancy.max_limit_keys
push_spans(100000, 0, '{customer:%}', 'many');
drained('many', 300);
is(sql(q{SELECT count(*) FROM chancy_jobs WHERE meta->>'tag' = 'many' AND state = 'succeeded'}),
	'100000', '100,000 jobs with distinct keys ran, with room for 1,000 keys');
cmp_ok(sql(q{SELECT count(*) FROM chancy_limit_state()}), '<=', 1000,
	'shared memory held at most chancy.max_limit_keys of them');

# --- released jobs are counted until claimed: with the queue paused, a slot
# that frees releases one parked job, not the whole backlog
sql(q{SELECT chancy_set_limit('P', concurrency => 1)});
push_spans(1, 1, '{P}', 'churn1');
$node->poll_query_until('postgres', q{SELECT count(*) = 1 FROM chancy_jobs
	WHERE meta->>'tag' = 'churn1' AND state = 'running'}) or die 'no running job of key P';
push_spans(200, 0, '{P}', 'churn');
$node->poll_query_until('postgres', q{SELECT parked = 200 FROM chancy_limit_stats WHERE key = 'P'})
  or die 'the jobs of key P were not parked';
sql(q{SELECT chancy_pause_queue('default')});
drained('churn1', 30);
sleep(2);
# (a released job not claimed within a second is forgotten, and the next
# one released: in the 2 s slept, up to 3, never the backlog)
cmp_ok(sql(q{SELECT parked FROM chancy_limit_stats WHERE key = 'P'}), '>=', 196,
	'a slot that frees while the queue is paused releases one parked job a second, not all');
sql(q{SELECT chancy_resume_queue('default')});
drained('churn', 60);
cmp_ok(sql(q{SELECT throttled FROM chancy_limit_stats WHERE key = 'P'}), '<=', 260,
	'and each job of key P was parked about once');

$node->stop;

# --- a small chancy.max_limit_keys: keys without limits take no room; a claim
# never evicts a key it uses; keys whose bucket owes tokens are evicted when
# room runs out, with a warning, so that other roles' keys still get room
my $small = chancy_node('flow_small', qq{
chancy.queues = 'default:4'
chancy.max_limit_keys = 100
});
sub ssql { return $small->safe_psql('postgres', shift); }
ssql($span . q{
	CREATE ROLE eve; CREATE ROLE bob;
	GRANT EXECUTE ON FUNCTION span(jsonb) TO eve, bob;
	SELECT chancy_set_limit('fill:*', concurrency => 100);
	SELECT chancy_set_limit('a', concurrency => 1);});
sub spush
{
	my ($role, $s, $keys, $tag) = @_;
	return $small->safe_psql('postgres', qq{SET ROLE $role;
		SELECT chancy_push(chancy_with_meta(chancy_with_limit_keys(chancy_with_kwargs(chancy_job('span'),
			jsonb_build_object('s', $s)), $keys), '{"tag": "$tag"}'))});
}
sub sdrained
{
	my $tag = shift;
	$small->poll_query_until('postgres', qq{SELECT count(*) = 0 FROM chancy_jobs
		WHERE meta->>'tag' = '$tag' AND state IN ('pending', 'retrying', 'running')})
	  or die "jobs tagged $tag did not end";
}
ssql(q{SELECT chancy_push_many(ARRAY(SELECT chancy_with_meta(chancy_with_limit_keys(chancy_job('span'),
	ARRAY(SELECT 'fill:' || g || '_' || k FROM generate_series(1, CASE WHEN g = 13 THEN 3 ELSE 8 END) k)),
	'{"tag": "fill"}') FROM generate_series(1, 13) g))});
sdrained('fill');
is(ssql(q{SELECT count(*) FROM chancy_limit_state()}), '99', 'shared memory has room for one more key');
spush('bob', 1.5, q{'{a,fill:b}'}, 'ev1');
$small->poll_query_until('postgres', q{SELECT state = 'running' FROM chancy_jobs WHERE meta->>'tag' = 'ev1'})
  or die 'ev1 never ran';
spush('bob', 0.5, q{'{a}'}, 'ev2');
sdrained('ev1');
sdrained('ev2');
is(ssql(q{SELECT (j2.result->>'s')::timestamptz >= (j1.result->>'e')::timestamptz
	FROM chancy_jobs j1, chancy_jobs j2 WHERE j1.meta->>'tag' = 'ev1' AND j2.meta->>'tag' = 'ev2'}),
	't', 'a key entered by a claim that had to make room is not evicted by it: a (concurrency 1) ran one at a time');
is(ssql(q{SELECT coalesce(sum(running), 0) FROM chancy_limit_state()}), '0', 'and every count is back to 0');

# a role fills the table with keys whose bucket owes a token for an hour
ssql(q{SELECT chancy_set_limit('api:*', rate => 1, per => '1 hour')});
$small->safe_psql('postgres', q{SET ROLE eve;
	SELECT chancy_push_many(ARRAY(SELECT chancy_with_meta(chancy_with_limit_keys(chancy_job('span'),
		ARRAY['api:eve' || g]), '{"tag": "evefill"}') FROM generate_series(1, 150) g))});
sdrained('evefill');
spush('bob', 0, q{'{bob-unlimited}'}, 'bob1');
spush('bob', 0, q{'{fill:bob}'}, 'bob2');
sdrained('bob1');
sdrained('bob2');
is(ssql(q{SELECT string_agg(state::text, ',' ORDER BY id) FROM chancy_jobs WHERE meta->>'tag' IN ('bob1', 'bob2')}),
	'succeeded,succeeded', "another role's jobs, with a key without limits and a new limited key, still run");
ok($small->log_contains('limit keys were evicted from shared memory before their bucket refilled'),
	'the log says room ran short');
$small->stop;
done_testing();
