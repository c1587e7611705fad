# A wake-up is not lost when the executor it went to waits on a lock inside
# its claim: PostgreSQL's lock wait resets the latch a push set, so the
# executor must not rely on its latch after a claim (issue 18, item 2).
#
# Queue q has two executors.  The claim of a job named 'slow' waits on an
# advisory lock the test holds (a trigger); while the first executor (in slot
# order, the one a push wakes first) waits there, a 'noop' is pushed: its
# wake-up goes to that executor.  Once the lock is let go, the claim returns
# the slow job, and the noop must run at once on the other executor, not
# when that one's 30 s fallback sleep ends.
use strict;
use warnings;
use FindBin;
use lib $FindBin::RealBin;
use ChancyTest;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time);

my $node = chancy_node('wakeup', "chancy.queues = 'q:2'\n");
sub sql { return $node->safe_psql('postgres', shift); }

sql(q{CREATE EXTENSION chancy;
CREATE FUNCTION noop(kwargs jsonb) RETURNS void LANGUAGE sql AS 'SELECT';
CREATE FUNCTION slow(kwargs jsonb) RETURNS void LANGUAGE sql AS 'SELECT pg_sleep(30)';
CREATE FUNCTION gate() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
	IF NEW.name = 'slow' AND NEW.state = 'running' AND OLD.state = 'pending' THEN
		PERFORM pg_catalog.pg_advisory_xact_lock_shared(42);
	END IF;
	RETURN NEW;
END $$;
CREATE TRIGGER gate BEFORE UPDATE ON chancy_jobs FOR EACH ROW EXECUTE FUNCTION gate();});
$node->poll_query_until('postgres',
	q{SELECT count(*) = 2 FROM chancy_workers WHERE kind = 'executor' AND queue = 'q' AND state = 'idle'})
  or die 'the executors of q never started';

my $holder = $node->background_psql('postgres', timeout => 120);
# the race is won or lost by timing: five rounds that mean something
my ($rounds, @took) = (0);
while (@took < 5 && $rounds++ < 20)
{
	# both executors look now: their fallback sleeps are 30 s away
	my $two = sql(q{SELECT string_agg(chancy_push('noop', '{}', queue => 'q')::text, ',')
		FROM generate_series(1, 2)});
	sql(qq{SELECT count(chancy_wait(id, '10 s')) FROM unnest('{$two}'::int8[]) id});
	$holder->query_safe('SELECT pg_advisory_lock(42)');
	my $slow = sql(q{SELECT chancy_push('slow', '{}', queue => 'q')});
	$node->poll_query_until('postgres', q{SELECT count(*) = 1 FROM pg_stat_activity
		WHERE backend_type = 'chancy executor' AND wait_event = 'advisory'})
	  or die 'the claim of the slow job never waited on the lock';
	my $blocked = sql(q{SELECT pid FROM pg_stat_activity
		WHERE backend_type = 'chancy executor' AND wait_event = 'advisory'});
	my $first = sql(q{SELECT pid FROM chancy_worker_info()
		WHERE kind = 'executor' AND queue = 'q' LIMIT 1});

	my $start = time;
	my $noop = sql(q{SELECT chancy_push('noop', '{}', queue => 'q')});
	$holder->query_safe('SELECT pg_advisory_unlock(42)');
	my $state = sql(qq{SELECT state FROM chancy_wait($noop, '40 s')});
	# only a round whose wake-up went to the waiting executor says anything
	push @took, time - $start if $blocked eq $first && $state eq 'succeeded';
	sql(qq{SELECT chancy_cancel($slow)});
	sql(qq{SELECT chancy_wait($slow, '40 s')});
}
my $slowest = (sort { $b <=> $a } @took)[0] // 99;
is(scalar @took, 5, 'five rounds had the push wake the executor waiting inside its claim');
cmp_ok($slowest, '<', 5,
	'each time the job pushed meanwhile runs at once on the other executor (not after a 30 s sleep)')
  or diag('seconds: ' . join(' ', map { sprintf '%.2f', $_ } @took));

$holder->quit;

# --- the study's scenario: pause, push, resume, many times; every executor
# of the queue takes part in each drain
sub done_by { return { map { split /\|/ } split /\n/, sql(q{SELECT pid, jobs_done FROM chancy_workers
	WHERE kind = 'executor' AND queue = 'q'}) }; }
my $idle_rounds = 0;
for my $round (1 .. 10)
{
	my $before = done_by();
	sql(q{SELECT chancy_pause_queue('q')});
	sql(q{SELECT count(chancy_push('noop', '{}', queue => 'q')) FROM generate_series(1, 2000)});
	sql(q{SELECT chancy_resume_queue('q')});
	$node->poll_query_until('postgres', q{SELECT count(*) = 0 FROM chancy_jobs
		WHERE queue = 'q' AND name = 'noop' AND state <> 'succeeded'})
	  or die "round $round did not drain";
	my $after = done_by();
	$idle_rounds++ if grep { ($after->{$_} // 0) - ($before->{$_} // 0) == 0 } keys %$after;
}
is($idle_rounds, 0, 'in ten rounds of pause, push 2,000, resume, both executors took part in every drain');

$node->stop;
done_testing();
