# Running jobs: the seed's flow, C and PL/pgSQL jobs, defaults, priority,
# retries, scheduling, pause/resume, roles, rollback, bad functions.
use strict;
use warnings;
use FindBin;
use lib $FindBin::RealBin;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use ChancyTest;

my $node = chancy_node('exec', "chancy.queues = 'default:2'\nchancy.max_executors = 8\n");

sub sql { return $node->safe_psql('postgres', shift); }

sql(q{
CREATE EXTENSION chancy;
CREATE EXTENSION chancy_examples;
-- retries come quickly in these tests
SELECT chancy_declare_queue('fast', 1, backoff_base => '10 ms');
SELECT chancy_declare_queue('serial', 1);
CREATE TABLE effects (id serial, job bigint, note text);
CREATE FUNCTION echo(kwargs jsonb) RETURNS jsonb LANGUAGE plpgsql AS $$
BEGIN RETURN kwargs || jsonb_build_object('user', current_user); END $$;
CREATE FUNCTION record(kwargs jsonb) RETURNS void LANGUAGE sql AS $$
	INSERT INTO effects (job, note) VALUES ((chancy_current_job()).id, kwargs->>'note') $$;
CREATE FUNCTION flaky(kwargs jsonb) RETURNS jsonb LANGUAGE plpgsql AS $$
BEGIN
	INSERT INTO effects (job, note) VALUES ((chancy_current_job()).id, 'attempt');
	IF (chancy_current_job()).attempt <= (kwargs->>'failures')::int THEN
		RAISE EXCEPTION 'attempt % fails', (chancy_current_job()).attempt
			USING HINT = 'it will pass later';
	END IF;
	RETURN jsonb_build_object('attempt', (chancy_current_job()).attempt);
END $$;
GRANT INSERT, SELECT ON effects TO PUBLIC;
GRANT USAGE ON SEQUENCE effects_id_seq TO PUBLIC;
});

# The seed's whole flow: push (and commit), then wait_for_job gives a
# succeeded job.
my $offset = -s $node->logfile;
my $id = sql(q{SELECT chancy_push('greet', '{"name": "Alice"}')});
is(sql("SELECT (chancy_wait($id)).state"), 'succeeded',
	'greet pushed and waited for: succeeded');
# waiting in the transaction that pushed can only fail: nothing can run it
my ($ret, $out, $err) = $node->psql('postgres',
	q{SELECT chancy_wait(chancy_push('greet', '{"name": "Alice"}'))});
like($err, qr/pushed by the current transaction.*\n.*\n.*Commit the transaction/,
	'waiting before the push commits is an immediate error saying to commit');
ok($node->wait_for_log(qr/Hello, Alice!/, $offset), 'the log says Hello, Alice!');
is( sql(q{SELECT result FROM chancy_jobs WHERE kwargs->>'name' = 'Alice'}),
	'{"greeting": "Hello, Alice!"}', 'the C job\'s jsonb result is stored');

# A PL/pgSQL job; push-time kwargs merged over the definition's defaults
# reach the function.
sql(q{SELECT chancy_define_job('echo', kwargs => '{"a": 1, "b": 2}')});
$id = sql(q{SELECT chancy_push('echo', '{"b": 3}')});
is( sql("SELECT (chancy_wait($id)).result"),
	'{"a": 1, "b": 3, "user": "postgres"}',
	'PL/pgSQL job ran with the merged kwargs');

# Priority: with one executor, a batch pushed in one transaction runs
# highest priority first, then oldest first.
sql(q{
	SELECT chancy_push_many((SELECT array_agg(chancy_with_queue(
		chancy_with_kwargs(chancy_with_priority(chancy_job('record'), p), jsonb_build_object('note', n)),
		'serial') ORDER BY o)
	  FROM (VALUES (1, 0, 'p0 first'), (2, 10, 'p10'), (3, -5, 'p-5'), (4, 0, 'p0 second')) v(o, p, n)));
});
sql(q{SELECT chancy_wait(id, '30s') FROM chancy_jobs WHERE queue = 'serial'});
is( sql(q{SELECT string_agg(note, ', ' ORDER BY id) FROM effects WHERE note LIKE 'p%'}),
	'p10, p0 first, p0 second, p-5',
	'jobs ran by priority, then in push order');

# Retries: a job that fails twice, then succeeds on its third attempt.
$id = sql(q{SELECT chancy_push('flaky', '{"failures": 2}', queue => 'fast', max_attempts => 3)});
is(sql("SELECT state || ' ' || attempts FROM chancy_wait($id, '30s')"),
	'succeeded 3', 'flaky job succeeded on attempt 3');
is( sql(qq{SELECT string_agg((e->>'attempt') || ': ' || (e->>'message') || ' (' || (e->>'sqlstate') || ', ' || (e->>'hint') || ')', '; ')
	FROM chancy_jobs, jsonb_array_elements(errors) e WHERE id = $id}),
	'1: attempt 1 fails (P0001, it will pass later); 2: attempt 2 fails (P0001, it will pass later)',
	'each failed attempt is in errors, with its SQLSTATE and hint');
like(sql("SELECT errors->0->>'context' FROM chancy_jobs WHERE id = $id"),
	qr/PL\/pgSQL function flaky\(jsonb\)/, 'errors keep the error context');
is(sql("SELECT count(*) FROM effects WHERE job = $id"), '1',
	'the effects of failed attempts were rolled back, the success committed');

# ... and one that runs out of attempts ends failed.
$id = sql(q{SELECT chancy_push('flaky', '{"failures": 5}', queue => 'fast', max_attempts => 2)});
is(sql("SELECT state || ' ' || attempts || ' ' || jsonb_array_length(errors) FROM chancy_wait($id, '30s')"),
	'failed 2 2', 'a job out of attempts has failed');
is(sql("SELECT count(*) FROM effects WHERE job = $id"), '0',
	'a failed job left no effects');

# Retries back off: with the default queue's 1 s base, the retry waits.
$id = sql(q{SELECT chancy_push('flaky', '{"failures": 1}', max_attempts => 2)});
sql("SELECT chancy_wait($id, '30s')");
ok( sql(qq{SELECT started_at - (errors->0->>'at')::timestamptz >= interval '0.5 s'
	FROM chancy_jobs WHERE id = $id}) eq 't',
	'the retry waited for its backoff (at least half the base)');

# Scheduled: not started before scheduled_at, started promptly after.
$id = sql(q{SELECT chancy_push('record', '{"note": "later"}',
	scheduled_at => clock_timestamp() + interval '1.5 s')});
is(sql("SELECT state FROM chancy_jobs WHERE id = $id"), 'pending', 'scheduled job waits');
sql("SELECT chancy_wait($id, '30s')");
is(sql("SELECT started_at >= scheduled_at FROM chancy_jobs WHERE id = $id"), 't',
	'not started before scheduled_at');
ok( sql("SELECT started_at - scheduled_at < interval '500 ms' FROM chancy_jobs WHERE id = $id")
	  eq 't', 'started promptly after scheduled_at (no poll interval)');

# Pause and resume.
sql(q{SELECT chancy_pause_queue('serial')});
$node->poll_query_until('postgres',
	q{SELECT bool_and(state = 'paused') FROM chancy_workers WHERE queue = 'serial'})
  or die 'executor never paused';
$id = sql(q{SELECT chancy_push('record', '{"note": "paused"}', queue => 'serial')});
# the push wakes the paused executor, which looks and starts nothing: wait
# until it has looked after the push committed
my $pushed_at = sql("SELECT created_at FROM chancy_jobs WHERE id = $id");
$node->poll_query_until('postgres',
	qq{SELECT bool_and(looked_at > '$pushed_at') FROM chancy_workers WHERE queue = 'serial'})
  or die 'the paused executor never looked at the push';
is(sql("SELECT state FROM chancy_jobs WHERE id = $id"), 'pending',
	'a paused queue starts no job');
sql(q{SELECT chancy_resume_queue('serial')});
is(sql("SELECT state FROM chancy_wait($id, '30s')"), 'succeeded',
	'the job runs once the queue is resumed');

# A pause with a resume time ends by itself.
sql(q{SELECT chancy_pause_queue('serial', clock_timestamp() + interval '1 s')});
$id = sql(q{SELECT chancy_push('record', '{"note": "timed pause"}', queue => 'serial')});
is(sql("SELECT state FROM chancy_wait($id, '30s')"), 'succeeded',
	'a queue paused until a time resumes by itself');
ok(sql("SELECT started_at >= (SELECT updated_at + interval '0.9 s' FROM chancy_queues WHERE name = 'serial') FROM chancy_jobs WHERE id = $id") eq 't',
	'... not before that time');

# Jobs run as the role that pushed them.
sql(q{CREATE ROLE alice; GRANT USAGE ON SCHEMA public TO alice});
$id = $node->safe_psql('postgres', q{SET ROLE alice; SELECT chancy_push('echo')});
is(sql("SELECT result->>'user' FROM chancy_wait($id, '30s')"), 'alice',
	'the job ran as the role that pushed it');

# A job whose function was dropped after the push fails with that error;
# the executor goes on.
sql(q{CREATE FUNCTION doomed(kwargs jsonb) RETURNS void LANGUAGE sql AS ''});
sql(q{SELECT chancy_pause_queue('serial')});
$id = sql(q{SELECT chancy_push('doomed', queue => 'serial', max_attempts => 2)});
sql(q{DROP FUNCTION doomed(jsonb)});
sql(q{SELECT chancy_resume_queue('serial')});
is(sql("SELECT state FROM chancy_wait($id, '30s')"), 'failed', 'dropped function: failed');
like(sql("SELECT errors->0->>'message' FROM chancy_jobs WHERE id = $id"),
	qr/function public\.doomed\(pg_catalog\.jsonb\) no longer exists/,
	'the error says the function does not exist');
is(sql("SELECT jsonb_array_length(errors) FROM chancy_jobs WHERE id = $id"), '2',
	'and it was retried per policy');

# A library that cannot be loaded, a symbol that is missing.
sql(q{SELECT chancy_pause_queue('serial')});
my $lib = sql(q{SELECT chancy_push(chancy_with_queue(chancy_job('greet'), 'serial'))});
my $sym = sql(q{SELECT chancy_push(chancy_with_queue(chancy_job('greet'), 'serial'))});
sql(qq{UPDATE chancy_jobs SET function = '\$libdir/no_such_library:greet' WHERE id = $lib});
sql(qq{UPDATE chancy_jobs SET function = '\$libdir/chancy_examples:no_such_symbol', max_attempts = 1 WHERE id = $sym});
sql(q{SELECT chancy_resume_queue('serial')});
is(sql("SELECT state FROM chancy_wait($lib, '30s')"), 'failed', 'missing library: failed');
like(sql("SELECT errors->0->>'message' FROM chancy_jobs WHERE id = $lib"),
	qr/could not access file/, 'the error says the library cannot be loaded');
is(sql("SELECT state FROM chancy_wait($sym, '30s')"), 'failed', 'missing symbol: failed');
like(sql("SELECT errors->0->>'message' FROM chancy_jobs WHERE id = $sym"),
	qr/could not find function "no_such_symbol"/, 'the error names the missing symbol');
$id = sql(q{SELECT chancy_push('greet', queue => 'serial')});
is(sql("SELECT (chancy_wait($id, '30s')).state"), 'succeeded', 'the executor lives on');

# Pruning: finished jobs older than their queue's prune_after are deleted
# by the supervisor; others stay.
sql(q{SELECT chancy_declare_queue('ephemeral', 1, prune_after => '0 s')});
$id = sql(q{SELECT chancy_push('record', '{"note": "ephemeral"}', queue => 'ephemeral')});
sql("SELECT chancy_wait($id, '30 s')");
$node->poll_query_until('postgres', "SELECT count(*) = 0 FROM chancy_jobs WHERE id = $id")
  or die 'the finished job was never pruned';
pass('a finished job past its queue\'s prune_after is pruned');
is(sql(q{SELECT count(*) > 0 FROM chancy_jobs WHERE queue = 'serial' AND state = 'succeeded'}),
	't', 'jobs of queues that keep them for a day stay');

# Observability.
is( sql(q{SELECT count(*) FROM pg_stat_activity
	WHERE backend_type = 'chancy executor' AND application_name LIKE 'chancy executor: %'}),
	sql(q{SELECT count(*) FROM chancy_workers WHERE kind = 'executor' AND pid IS NOT NULL}),
	'executors appear in pg_stat_activity with what they are');
is(sql(q{SELECT count(*) FROM pg_stat_activity WHERE backend_type IN ('chancy launcher', 'chancy supervisor')}),
	'2', 'so do the launcher and the supervisor');
like(sql(q{SELECT succeeded || '/' || failed FROM chancy_queue_stats WHERE queue = 'fast'}),
	qr/^1\/1$/, 'chancy_queue_stats counts jobs per state');
ok(sql(q{SELECT sum(jobs_done) FROM chancy_workers}) >= 10, 'chancy_workers counts jobs done');

# Every executor of a queue takes part after a resume (issue 18: one of
# two once stayed idle through a whole drain): pause, push, resume, drain,
# ten times, and each of the two executors of 'default' ran jobs every time.
sql(q{CREATE FUNCTION pair_noop(kwargs jsonb) RETURNS void LANGUAGE sql AS ''});
$node->poll_query_until('postgres',
	q{SELECT count(pid) = 2 FROM chancy_workers WHERE queue = 'default'})
  or die 'the executors of default are not both there';
my $all_took_part = 0;
for my $round (1 .. 10)
{
	my %before = map { split /:/ } split /\n/,
	  sql(q{SELECT pid || ':' || jobs_done FROM chancy_workers WHERE queue = 'default'});
	sql(q{SELECT chancy_pause_queue('default')});
	sql(q{SELECT count(*) FROM unnest(chancy_push_many((SELECT array_agg(
		chancy_job('pair_noop')) FROM generate_series(1, 5000))))});
	sql(q{SELECT chancy_resume_queue('default')});
	$node->poll_query_until('postgres',
		q{SELECT count(*) = 0 FROM chancy_jobs WHERE name = 'pair_noop' AND state <> 'succeeded'})
	  or die "round $round never drained";
	my %after = map { split /:/ } split /\n/,
	  sql(q{SELECT pid || ':' || jobs_done FROM chancy_workers WHERE queue = 'default'});
	my @idle = grep { !exists $before{$_} || $after{$_} == $before{$_} } keys %after;
	$all_took_part++ if keys %after == 2 && !@idle;
	diag("round $round: executors " . join(', ', map { "$_ ran " . ($after{$_} - ($before{$_} // 0)) } sort keys %after))
	  if @idle;
}
is($all_took_part, 10, 'after each of ten resumes, both executors of the queue ran jobs');

$node->stop;
done_testing();
