# Cancels, pauses and concurrency changes against claimed batches: a
# rolled-back or prepared cancel, a claimed job cancelled before it starts,
# a job that cancels itself, a claimed job is not a running one, batches do
# not serialize jobs, a pause and a resume act at once, concurrency is never
# exceeded while it changes.
use strict;
use warnings;
use FindBin;
use lib $FindBin::RealBin;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use ChancyTest;
use Time::HiRes qw(time sleep);

my $t_start = time();
my $node = chancy_node('cancel', qq{
chancy.queues = 'default:2'
chancy.max_executors = 10
max_worker_processes = 16
max_prepared_transactions = 5
});

sub sql { return $node->safe_psql('postgres', shift); }

# For checks that wait for jobs: the output, or the error (a chancy_wait
# that timed out) instead of dying, so that the other checks still run.
sub check_sql
{
	my ($ret, $out, $err) = $node->psql('postgres', shift);
	return $ret == 0 ? $out : 'error: ' . (split /\n/, $err)[0];
}

# Wait until a query is true; else show the live jobs and the workers, and stop.
sub poll
{
	my ($query, $what) = @_;
	return if $node->poll_query_until('postgres', $query);
	diag(sql(q{SELECT id, name, queue, state, claim, attempts, started_at, completed_at, kwargs
		FROM chancy_jobs WHERE state IN ('pending', 'running', 'retrying') ORDER BY id LIMIT 50}));
	diag(sql(q{SELECT * FROM chancy_workers}));
	die "timed out waiting: $what";
}

# "state|attempts|started (true/false)" of a job once it has finished.
sub finished
{
	my $id = shift;
	return check_sql(qq{SELECT state || '|' || attempts || '|' || (started_at IS NOT NULL)
		FROM chancy_wait($id, '60 s')});
}

sql(q{
CREATE EXTENSION chancy;
-- cq: jobs to cancel; b1: one executor, for batches; r: resume rounds;
-- c: concurrency changes.  With default:2 they use all 8 executors.
SELECT chancy_declare_queue('cq', 2);
SELECT chancy_declare_queue('b1', 1);
SELECT chancy_declare_queue('r', 1);
SELECT chancy_declare_queue('c', 2);
CREATE ROLE alice;
GRANT USAGE ON SCHEMA public TO alice;
CREATE TABLE runs (name text, job bigint);
CREATE TABLE effects (job bigint);
CREATE TABLE unrelated (x int);
CREATE TABLE spans (job bigint, started timestamptz, ended timestamptz);
CREATE SEQUENCE self_runs;
GRANT USAGE ON SEQUENCE self_runs TO alice;
-- a PL/pgSQL sleep of kwargs.s seconds that checks for interrupts
CREATE FUNCTION nap(kwargs jsonb) RETURNS void LANGUAGE plpgsql AS $$
DECLARE t timestamptz := clock_timestamp() + make_interval(secs => (kwargs->>'s')::float8);
BEGIN
	WHILE clock_timestamp() < t LOOP PERFORM pg_sleep(0.01); END LOOP;
END $$;
-- records its run (rolled back with a cancel), then sleeps kwargs.s seconds
CREATE FUNCTION mark(kwargs jsonb) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
	INSERT INTO runs VALUES (kwargs->>'name', (chancy_current_job()).id);
	IF coalesce((kwargs->>'s')::float8, 0) > 0 THEN
		PERFORM pg_sleep((kwargs->>'s')::float8);
	END IF;
END $$;
CREATE FUNCTION tick(kwargs jsonb) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
	INSERT INTO effects VALUES ((chancy_current_job()).id);
	PERFORM pg_sleep(0.002);
END $$;
CREATE FUNCTION span(kwargs jsonb) RETURNS void LANGUAGE plpgsql AS $$
DECLARE t0 timestamptz := clock_timestamp();
BEGIN
	PERFORM pg_sleep((kwargs->>'s')::float8);
	INSERT INTO spans VALUES ((chancy_current_job()).id, t0, clock_timestamp());
END $$;
-- counts its runs in a sequence (not rolled back), then cancels itself
CREATE FUNCTION self_cancel(kwargs jsonb) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
	PERFORM nextval('self_runs');
	PERFORM chancy_cancel((chancy_current_job()).id);
END $$;
-- cancels itself in a block that is rolled back, and goes on
CREATE FUNCTION self_cancel_undone(kwargs jsonb) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
	BEGIN
		PERFORM chancy_cancel((chancy_current_job()).id);
		RAISE EXCEPTION 'changed my mind';
	EXCEPTION WHEN raise_exception THEN
		NULL;
	END;
	RETURN 'done';
END $$;
});
poll(q{SELECT count(*) = 8 FROM chancy_workers WHERE kind = 'executor' AND state = 'idle'},
	'8 idle executors');

# A nap job of s seconds on cq, once it runs.  (Pushed one at a time: see 6b
# for two pushed together.)
sub start_nap
{
	my $s = shift;
	my $id = sql(qq{SELECT chancy_push('nap', '{"s": $s}', queue => 'cq')});
	poll(qq{SELECT state = 'running' FROM chancy_jobs WHERE id = $id}, "nap $id running");
	return $id;
}

# ---------------------------------------------------------------------------
# 1. A cancel that is rolled back does nothing: one undone by ROLLBACK TO
# SAVEPOINT, one by a PL/pgSQL exception handler; both jobs run to the end.
my $j1 = start_nap(3);
my $j2 = start_nap(3);
sql(qq{BEGIN; SAVEPOINT s; SELECT 1 FROM chancy_cancel($j1); ROLLBACK TO SAVEPOINT s; COMMIT;});
sql(qq{DO \$\$ BEGIN
	BEGIN
		PERFORM chancy_cancel($j2);
		RAISE EXCEPTION 'undo the cancel';
	EXCEPTION WHEN raise_exception THEN NULL;
	END;
END \$\$});
for my $c ([$j1, 'ROLLBACK TO SAVEPOINT'], [$j2, 'an exception block'])
{
	my ($id, $how) = @$c;
	is(check_sql(qq{SELECT state || '|' || (cancelled_by IS NULL) || '|' || errors::text
		|| '|' || (completed_at - started_at >= interval '2.9 s') FROM chancy_wait($id, '30 s')}),
		'succeeded|true|[]|true', "1. a cancel undone by $how does nothing: the job ran to the end and succeeded");
}

# ---------------------------------------------------------------------------
# 2. A cancel in a prepared transaction acts at COMMIT PREPARED (in another
# session), not at the next unrelated commit of the session that prepared
# it; ROLLBACK PREPARED of one does nothing.
$j1 = start_nap(5);
$j2 = start_nap(4);
my @out = split /\n/, sql(qq{
BEGIN; SELECT 1 FROM chancy_cancel($j1); PREPARE TRANSACTION 'p1';
BEGIN; SELECT 1 FROM chancy_cancel($j2); PREPARE TRANSACTION 'p2';
BEGIN; INSERT INTO unrelated VALUES (1);
SELECT chancy_push('mark', '{"name": "unrelated"}', queue => 'b1');
COMMIT;});
my $unrelated = $out[-1];
# the unrelated commit's own request (its push) was carried out ...
is((split /\|/, finished($unrelated))[0], 'succeeded',
	'2. the unrelated commit after PREPARE TRANSACTION took effect');
# ... but not the prepared cancels: nothing to wait on for what must not
# happen, give an interrupt (checked every 10 ms) half a second
sleep(0.5);
is( sql(qq{SELECT string_agg(j.state || '/' || (j.cancelled_by IS NULL) || '/' || (w.job_id IS NOT NULL), ',' ORDER BY j.id)
	FROM chancy_jobs j LEFT JOIN chancy_workers w ON w.job_id = j.id WHERE j.id IN ($j1, $j2)}),
	'running/true/true,running/true/true',
	'2. prepared cancels do not act at an unrelated commit: both jobs still run');
my $committed = sql(q{COMMIT PREPARED 'p1'; SELECT clock_timestamp()});
is( check_sql(qq{SELECT state || '|' || (errors->-1->>'message') || '|'
	|| (completed_at < '$committed'::timestamptz + interval '2 s') || '|'
	|| (completed_at - started_at < interval '4.5 s') FROM chancy_wait($j1, '30 s')}),
	'cancelled|cancelled by postgres|true|true',
	'2. COMMIT PREPARED of the cancel (another session) interrupts the job within 2 s');
$node->safe_psql('postgres', q{ROLLBACK PREPARED 'p2'});
is( check_sql(qq{SELECT state || '|' || (cancelled_by IS NULL) || '|' || errors::text || '|'
	|| (completed_at - started_at >= interval '3.9 s') FROM chancy_wait($j2, '30 s')}),
	'succeeded|true|[]|true', '2. ROLLBACK PREPARED of a cancel: the job ran to the end and succeeded');
is(sql(q{SELECT count(*) FROM pg_prepared_xacts}), '0', 'no prepared transaction left');

# ---------------------------------------------------------------------------
# 3 and 5. A batch: warm the single executor of b1 up with fast runs of mark,
# so that mark is known short and a claim takes A, B and C together.
sub warm_up_b1
{
	my $ids = sql(q{SELECT array_to_string(chancy_push_many(ARRAY(
		SELECT chancy_with_kwargs(chancy_with_queue(chancy_job('mark'), 'b1'),
			jsonb_build_object('name', 'warm', 's', 0)) FROM generate_series(1, 5))), ',')});
	sql(qq{SELECT chancy_wait(id, '30 s') FROM unnest('{$ids}'::int8[]) id});
}
warm_up_b1();
my ($ja, $jb, $jc) = split /\|/, sql(q{SELECT array_to_string(chancy_push_many(ARRAY[
	chancy_with_kwargs(chancy_with_queue(chancy_job('mark'), 'b1'), '{"name": "A", "s": 2}'),
	chancy_with_kwargs(chancy_with_queue(chancy_job('mark'), 'b1'), '{"name": "B", "s": 0}'),
	chancy_with_kwargs(chancy_with_queue(chancy_job('mark'), 'b1'), '{"name": "C", "s": 0}')]), '|')});
poll(qq{SELECT state = 'running' FROM chancy_jobs WHERE id = $ja}, 'A running');

# 5. While A, the first job of the claim, runs, the others of its batch are
# claimed (the same claim token) but pending: not started, no attempt counted.
is( sql(qq{SELECT string_agg(j.state || '/' || (j.started_at IS NULL) || '/' || j.attempts
		|| '/' || (j.claim IS NOT NULL AND j.claim = a.claim), ',' ORDER BY j.id)
	FROM chancy_jobs j, chancy_jobs a WHERE a.id = $ja AND j.id IN ($jb, $jc)}),
	'pending/true/0/true,pending/true/0/true',
	'5. batch members of a running job are claimed but pending, not started, attempts 0');
is(sql(qq{SELECT attempts || '/' || (started_at IS NOT NULL) FROM chancy_jobs WHERE id = $ja}),
	'1/true', '5. the first job of the claim is running, started, its attempt counted');

# 3. B, claimed but not started, is cancelled while A runs: it never starts,
# and C (and A) run exactly once.
is(sql(qq{SELECT state || '/' || (cancelled_by IS NOT NULL) FROM chancy_cancel($jb)}),
	'pending/true', '3. the cancel of a claimed job is asked (cancelled_by), it stays pending');
is(finished($ja), 'succeeded|1|true', '3. A succeeded');
is(finished($jb), 'cancelled|0|false', '3. B, cancelled while claimed, ended cancelled and never started');
like(sql(qq{SELECT errors->-1->>'message' FROM chancy_jobs WHERE id = $jb}),
	qr/^cancelled by postgres$/, '3. B\'s errors say who cancelled it');
is(finished($jc), 'succeeded|1|true', '3. C succeeded on its first attempt');
is( sql(q{SELECT string_agg(name || '=' || n, ',' ORDER BY name) FROM
	(SELECT name, count(*) n FROM runs WHERE name IN ('A', 'B', 'C') GROUP BY name) s}),
	'A=1,C=1', '3. A and C ran once each, B never');

# 3. The same, with the cancel landing while the second job (Y) of the
# group runs, the first one's success (X) not yet committed.
warm_up_b1();
my ($x, $y, $b2, $c2) = split /\|/, sql(q{SELECT array_to_string(chancy_push_many(ARRAY[
	chancy_with_kwargs(chancy_with_queue(chancy_job('mark'), 'b1'), '{"name": "X", "s": 0}'),
	chancy_with_kwargs(chancy_with_queue(chancy_job('mark'), 'b1'), '{"name": "Y", "s": 1.5}'),
	chancy_with_kwargs(chancy_with_queue(chancy_job('mark'), 'b1'), '{"name": "B2", "s": 0}'),
	chancy_with_kwargs(chancy_with_queue(chancy_job('mark'), 'b1'), '{"name": "C2", "s": 0}')]), '|')});
poll(qq{SELECT job_id = $y FROM chancy_workers WHERE queue = 'b1'}, 'Y executing');
is(sql(qq{SELECT state || '/' || (started_at IS NULL) FROM chancy_jobs WHERE id = $y}),
	'pending/true', '5. a batch member being executed is still pending until its group commits');
sql(qq{SELECT 1 FROM chancy_cancel($b2)});
is( join(' ', map { finished($_) } ($x, $y, $b2, $c2)),
	'succeeded|1|true succeeded|1|true cancelled|0|false succeeded|1|true',
	'3. cancel during the 2nd job of a group: X, Y, C2 succeeded, B2 cancelled unstarted');
is( sql(q{SELECT string_agg(name || '=' || n, ',' ORDER BY name) FROM
	(SELECT name, count(*) n FROM runs WHERE name IN ('X', 'Y', 'B2', 'C2') GROUP BY name) s}),
	'C2=1,X=1,Y=1', '3. ... X, Y, C2 ran once each, B2 never');

# 3. Cancelling the batch member being executed (Y2): it is interrupted and
# ends cancelled; the job before it in the group keeps its success, once.
warm_up_b1();
my ($x3, $y3, $c3) = split /\|/, sql(q{SELECT array_to_string(chancy_push_many(ARRAY[
	chancy_with_kwargs(chancy_with_queue(chancy_job('mark'), 'b1'), '{"name": "X3", "s": 0}'),
	chancy_with_kwargs(chancy_with_queue(chancy_job('mark'), 'b1'), '{"name": "Y3", "s": 30}'),
	chancy_with_kwargs(chancy_with_queue(chancy_job('mark'), 'b1'), '{"name": "C3", "s": 0}')]), '|')});
poll(qq{SELECT job_id = $y3 FROM chancy_workers WHERE queue = 'b1'}, 'Y3 executing');
sql(qq{SELECT 1 FROM chancy_cancel($y3)});
is( join(' ', map { finished($_) } ($x3, $y3, $c3)),
	'succeeded|1|true cancelled|1|true succeeded|1|true',
	'3. a running batch member cancelled: it ends cancelled, the others succeed');
ok(sql(qq{SELECT completed_at - started_at < interval '5 s' FROM chancy_jobs WHERE id = $y3}) eq 't',
	'3. ... it was interrupted at once');
is( sql(q{SELECT string_agg(name || '=' || n, ',' ORDER BY name) FROM
	(SELECT name, count(*) n FROM runs WHERE name IN ('X3', 'Y3', 'C3') GROUP BY name) s}),
	'C3=1,X3=1', '3. ... X3 and C3 ran once each, Y3\'s effects were rolled back');

# 3. At scale: 200 jobs of 2 ms on two executors, about 60 cancels of live
# jobs while they run.  Each succeeded job has its effect exactly once, each
# cancelled job none; nothing else.
my ($lo, $hi) = split /\|/, sql(q{SELECT min(x) || '|' || max(x) FROM unnest(chancy_push_many(ARRAY(
	SELECT chancy_with_kwargs(chancy_job('tick'), jsonb_build_object('i', i))
	  FROM generate_series(1, 200) i))) x});
sql(q{SET client_min_messages = warning;} . join('', map { qq{
	SELECT count(*) FROM (SELECT id FROM chancy_jobs
		WHERE id BETWEEN $lo AND $hi AND state IN ('pending', 'running')
		ORDER BY random() LIMIT 1) r, LATERAL chancy_cancel(r.id) c;
	SELECT pg_sleep(0.002);} } 1 .. 60));
poll(qq{SELECT count(*) = 0 FROM chancy_jobs WHERE id BETWEEN $lo AND $hi
	AND state IN ('pending', 'retrying', 'running')}, 'the 200 jobs finished');
my $ncancelled = sql(qq{SELECT count(*) FROM chancy_jobs WHERE id BETWEEN $lo AND $hi AND state = 'cancelled'});
ok($ncancelled > 0, "3. at scale: some jobs were cancelled ($ncancelled)");
is(sql(qq{SELECT count(*) FROM chancy_jobs WHERE id BETWEEN $lo AND $hi
	AND state NOT IN ('succeeded', 'cancelled')}), '0',
	'3. at scale: every job succeeded or was cancelled');
is( sql(qq{SELECT count(*) FROM chancy_jobs j WHERE id BETWEEN $lo AND $hi AND state = 'succeeded'
	AND (SELECT count(*) FROM effects e WHERE e.job = j.id) <> 1}), '0',
	'3. at scale: each succeeded job has exactly one effect');
is( sql(qq{SELECT count(*) FROM effects e JOIN chancy_jobs j ON j.id = e.job
	WHERE j.state <> 'succeeded'}), '0',
	'3. at scale: no cancelled job has an effect');
is(sql(qq{SELECT count(*) FROM chancy_jobs WHERE id BETWEEN $lo AND $hi AND state = 'succeeded' AND attempts <> 1}),
	'0', '3. at scale: every succeeded job counted one attempt');

# ---------------------------------------------------------------------------
# 4. A job that cancels itself (pushed by alice) ends cancelled, ran once,
# and its errors say alice cancelled it.
my $self = $node->safe_psql('postgres',
	q{SET ROLE alice; SELECT chancy_push('self_cancel', queue => 'cq', max_attempts => 3)});
is(finished($self), 'cancelled|1|true', '4. a job that cancelled itself ends cancelled, one attempt');
is(sql(q{SELECT last_value || '/' || is_called FROM self_runs}), '1/true', '4. ... it ran once');
is( sql(qq{SELECT jsonb_array_length(errors) || '|' || (errors->-1->>'message') || '|'
	|| (errors->-1->>'sqlstate') FROM chancy_jobs WHERE id = $self}),
	'1|cancelled by alice|57014', '4. ... its errors say the pushing role cancelled it');
# A job whose cancel of itself was rolled back (an exception block) is not
# cancelled: it succeeds.
$self = $node->safe_psql('postgres',
	q{SET ROLE alice; SELECT chancy_push('self_cancel_undone', queue => 'cq')});
is(sql(qq{SELECT state || '|' || (result #>> '{}') || '|' || (cancelled_by IS NULL)
	FROM chancy_wait($self, '60 s')}), 'succeeded|done|true',
	'4. a job whose cancel of itself was rolled back succeeds');

# ---------------------------------------------------------------------------
# 6. Ten jobs of 0.3 s on two executors (that know nap as short) run two at a
# time: about 1.5 s, not the 2.7 s of one executor holding the batch.
my $ids = sql(q{SELECT array_to_string(chancy_push_many(ARRAY(
	SELECT chancy_with_kwargs(chancy_job('nap'), '{"s": 0}') FROM generate_series(1, 6))), ',')});
sql(qq{SELECT chancy_wait(id, '30 s') FROM unnest('{$ids}'::int8[]) id});
$ids = sql(q{SELECT array_to_string(chancy_push_many(ARRAY(
	SELECT chancy_with_kwargs(chancy_job('nap'), '{"s": 0.3}') FROM generate_series(1, 10))), ',')});
sql(qq{SELECT chancy_wait(id, '60 s') FROM unnest('{$ids}'::int8[]) id});
my $took = sql(qq{SELECT round(extract(epoch FROM max(completed_at) - min(started_at))::numeric, 2)
	FROM chancy_jobs WHERE id = ANY ('{$ids}')});
ok($took < 2.2, "6. ten 0.3 s jobs on concurrency 2 took $took s (< 2.2 s)");

# 6b. Two jobs pushed to a queue with two idle executors (that know nap as
# long: one job per claim) start together, whether pushed in one statement
# or in two commits right after each other: the second job must not wait
# for the first to end (0.3 s) while the other executor sleeps.  A healthy
# second start follows the first within a few ms; a lost wake-up leaves it
# 30 ms to 0.3 s late (whatever else happens to wake the sleeper).  Each
# round in one session, which waits for its jobs.
my %gaps = (together => [], 'one after the other' => []);
for my $round (1 .. 20)
{
	my $how = $round % 2 ? 'together' : 'one after the other';
	poll(q{SELECT count(*) = 2 FROM chancy_workers WHERE queue = 'cq' AND state = 'idle'},
		'cq executors idle');
	my $push = $how eq 'together'
	  ? q{SELECT ids[1] AS a, ids[2] AS b FROM chancy_push_many(ARRAY[
		chancy_with_kwargs(chancy_with_queue(chancy_job('nap'), 'cq'), '{"s": 0.3}'),
		chancy_with_kwargs(chancy_with_queue(chancy_job('nap'), 'cq'), '{"s": 0.3}')]) ids \gset}
	  : q{SELECT chancy_push('nap', '{"s": 0.3}', queue => 'cq') AS a \gset
		SELECT chancy_push('nap', '{"s": 0.3}', queue => 'cq') AS b \gset};
	push @{ $gaps{$how} }, check_sql($push . q{
		SELECT round(abs(extract(epoch FROM a.started_at - b.started_at))::numeric, 3)
		  FROM chancy_wait(:a, '30 s') a, chancy_wait(:b, '30 s') b;});
}
for my $how (sort keys %gaps)
{
	is(scalar(grep { !/^[\d.]+$/ || $_ >= 0.025 } @{ $gaps{$how} }), 0,
		"6b. two jobs pushed $how on two idle executors start within 25 ms (start gaps: "
		  . join(' ', @{ $gaps{$how} }) . ')');
}

# ---------------------------------------------------------------------------
# 7. A pause stops jobs already claimed but not started: 120 jobs of 1 ms
# (mark known short: one claim takes 64), paused once a few have run.
warm_up_b1();
my $ps = sql(q{SELECT min(x) || '|' || max(x) FROM unnest(chancy_push_many(ARRAY(
	SELECT chancy_with_kwargs(chancy_with_queue(chancy_job('mark'), 'b1'),
		jsonb_build_object('name', 'p' || i, 's', 0.001)) FROM generate_series(1, 120) i))) x});
my ($plo, $phi) = split /\|/, $ps;
@out = split /\n/, sql(qq{
DO \$\$ BEGIN
	WHILE (SELECT count(*) FROM chancy_jobs WHERE id BETWEEN $plo AND $phi
		   AND state = 'succeeded') < 5 AND clock_timestamp() < now() + interval '30 s' LOOP
		PERFORM pg_sleep(0.001);
	END LOOP;
END \$\$;
SELECT 'claimed=' || count(*) FROM chancy_jobs WHERE id BETWEEN $plo AND $phi
	AND claim IS NOT NULL AND started_at IS NULL;
SELECT 1 FROM chancy_pause_queue('b1');
SELECT 'paused=' || clock_timestamp();});
my ($claimed) = map { /^claimed=(\d+)/ ? $1 : () } @out;
my ($paused) = map { /^paused=(.*)/ ? $1 : () } @out;
ok($claimed > 0, "7. when the pause committed, $claimed jobs were claimed but not started");
poll(q{SELECT state = 'paused' FROM chancy_workers WHERE queue = 'b1'}, 'b1 executor paused');
is( sql(qq{SELECT count(*) FROM chancy_jobs WHERE id BETWEEN $plo AND $phi
	AND started_at > '$paused'::timestamptz}), '0',
	'7. no job started after the pause committed');
my $left = sql(qq{SELECT count(*) FROM chancy_jobs WHERE id BETWEEN $plo AND $phi AND started_at IS NULL});
ok($left > 0, "7. $left jobs were left unstarted by the pause");
is(sql(qq{SELECT count(*) FROM chancy_jobs WHERE id BETWEEN $plo AND $phi AND started_at IS NULL
	AND NOT (state = 'pending' AND claim IS NULL AND attempts = 0)}), '0',
	'7. ... they were handed back: pending, unclaimed, no attempt');
sql(q{SELECT 1 FROM chancy_resume_queue('b1')});
poll(qq{SELECT count(*) = 120 FROM chancy_jobs WHERE id BETWEEN $plo AND $phi AND state = 'succeeded'},
	'the 120 jobs succeeded after the resume');
is(sql(q{SELECT count(*) || '/' || count(DISTINCT name) FROM runs WHERE name ~ '^p\d+$'}),
	'120/120', '7. after the resume every job ran, once');

# ---------------------------------------------------------------------------
# 8. A resume reaches the executor at once: 20 rounds of pause, push, resume
# (every other round once the executor has seen the pause).
my @delays;
my $held = 1;
for my $round (1 .. 20)
{
	sql(q{SELECT 1 FROM chancy_pause_queue('r')});
	poll(q{SELECT state = 'paused' FROM chancy_workers WHERE queue = 'r'}, 'r executor paused')
	  if $round % 2 == 0;
	my ($id, $before, undef, $resumed) = split /\n/, sql(qq{
		SELECT chancy_push('mark', '{"name": "round $round"}', queue => 'r');
		SELECT clock_timestamp();
		SELECT 1 FROM chancy_resume_queue('r');
		SELECT clock_timestamp();});
	my ($ret, $delay) = $node->psql('postgres', qq{
		SELECT round(extract(epoch FROM started_at - '$resumed'::timestamptz)::numeric, 3)
		  || '|' || (started_at > '$before'::timestamptz) FROM chancy_wait($id, '10 s')});
	my ($d, $after) = $ret == 0 ? split(/\|/, $delay) : (10, 'true');
	$held = 0 unless $after eq 'true';
	push @delays, $d;
}
my @slow = grep { $_ >= 1 } @delays;
is(scalar(@slow), 0, '8. every resumed job started within 1 s of the resume (delays: '
	. join(' ', @delays) . ')');
ok($held, '8. no job started before its queue was resumed');

# ---------------------------------------------------------------------------
# 9. Concurrency is never exceeded while it changes: two 4 s jobs on c
# (concurrency 2), then concurrency 1 (one executor stops after its job),
# then 2 again while it still runs it, then four more jobs.  Two slots of
# chancy.max_executors are free: a third executor could start.
# (pushed one at a time: see 6b for two pushed together)
my @first = map {
	my $id = sql(q{SELECT chancy_push('span', '{"s": 4}', queue => 'c')});
	poll(qq{SELECT state = 'running' FROM chancy_jobs WHERE id = $id}, "span $id running");
	$id } 1 .. 2;
sql(q{SELECT 1 FROM chancy_declare_queue('c', 1)});
poll(q{SELECT count(*) = 1 FROM chancy_workers WHERE queue = 'c' AND state = 'stopping'},
	'one executor of c stopping');
sleep(0.3);
sql(q{SELECT 1 FROM chancy_declare_queue('c', 2)});
my @more = split /\|/, sql(q{SELECT array_to_string(chancy_push_many(ARRAY(
	SELECT chancy_with_kwargs(chancy_with_queue(chancy_job('span'), 'c'), '{"s": 1}')
	  FROM generate_series(1, 4))), '|')});
my $max_alive = 0;
for (1 .. 10)
{
	my $n = sql(q{SELECT count(*) FROM chancy_workers WHERE queue = 'c'
		AND state NOT IN ('exited')});
	$max_alive = $n if $n > $max_alive;
	sleep(0.1);
}
is( join(' ', map { join('/', (split /\|/, finished($_))[0, 1]) } (@first, @more)),
	join(' ', ('succeeded/1') x 6), '9. all six jobs of c succeeded, each on its first attempt');
my $overlap = sql(q{SELECT max((SELECT count(*) FROM spans o
	WHERE o.started <= s.started AND s.started < o.ended)) FROM spans s});
ok($overlap <= 2, "9. at most 2 jobs of c ran at once (max overlap $overlap)");
ok($max_alive <= 2, "9. at most 2 executors of c alive while it changed (saw $max_alive)");

# ---------------------------------------------------------------------------
ok(!$node->log_contains(qr/discarded/), 'no outcome was discarded (no group rolled back)');
ok(!$node->log_contains(qr/terminated by signal/), 'no server process died by a signal');

$node->stop;
note(sprintf('runtime %.1f s', time() - $t_start));
done_testing();
