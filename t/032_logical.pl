# Logical replication: a subscriber that receives chancy's tables through a
# publication FOR ALL TABLES keeps the publisher's jobs and runs none of
# them (each job pushed on the publisher runs once, there); the queues it
# receives replace its own without a conflict; and after a switch-over
# chancy_adopt_jobs() makes the jobs it received its own to run.
use strict;
use warnings;
use FindBin;
use lib $FindBin::RealBin;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use ChancyTest;

my $conf = qq{wal_level = logical
max_worker_processes = 20
};
my $pub = chancy_node('pub', $conf . "cluster_name = 'pub'\n");
my $sub = chancy_node('sub', $conf . "cluster_name = 'sub'\n");

for my $node ($pub, $sub)
{
	$node->safe_psql('postgres', q{
		CREATE EXTENSION chancy;
		CREATE TABLE ran (n int, node text);
		CREATE FUNCTION record(kwargs jsonb) RETURNS void LANGUAGE sql
			AS $$INSERT INTO ran VALUES ((kwargs->>'n')::int, current_setting('cluster_name'))$$;
	});
}
# Subscribe the subscriber to a publication, and wait until its tables are
# synchronized.
sub subscribe
{
	my ($name, $publication) = @_;
	$sub->safe_psql('postgres',
		"CREATE SUBSCRIPTION $name CONNECTION '" . $pub->connstr . " dbname=postgres'"
		  . " PUBLICATION $publication");
	$sub->poll_query_until('postgres',
		q{SELECT count(*) = 0 FROM pg_subscription_rel WHERE srsubstate NOT IN ('r', 's')})
	  or die "subscription $name never synchronized";
}

$pub->safe_psql('postgres', 'CREATE PUBLICATION everything FOR ALL TABLES');
subscribe('s', 'everything');
pass('chancy\'s tables synchronize to the subscriber');
is($sub->safe_psql('postgres', q{SELECT string_agg(name, ',') FROM chancy_queues}), 'default',
	'the publisher\'s default queue replaced the subscriber\'s, without a conflict');

# 100 jobs pushed on the publisher run there, once
my @ids = split /\n/, $pub->safe_psql('postgres',
	q{SELECT chancy_push('record', jsonb_build_object('n', n)) FROM generate_series(1, 100) n});
is($pub->safe_psql('postgres',
	'SELECT count(*) FROM (SELECT (chancy_wait(id, \'60 s\')).* FROM unnest(\'{'
	  . join(',', @ids) . '}\'::int8[]) id) w WHERE state = \'succeeded\''), '100',
	'the 100 jobs ran on the publisher');
$pub->wait_for_catchup('s');
is($sub->safe_psql('postgres',
	q{SELECT count(*) || ' ' || count(*) FILTER (WHERE replicated)
		|| ' ' || count(*) FILTER (WHERE state = 'succeeded') FROM chancy_jobs}),
	'100 100 100', 'the subscriber has them, marked replicated, succeeded');
is($sub->safe_psql('postgres',
	q{SELECT count(*) || ' ' || count(*) FILTER (WHERE node = 'pub') FROM ran}),
	'100 100', 'each ran once, on the publisher');
is($sub->safe_psql('postgres',
	q{SELECT coalesce(sum(jobs_done), 0) FROM chancy_workers WHERE kind = 'executor'}),
	'0', 'no executor of the subscriber ran a job');
is($pub->safe_psql('postgres', 'SELECT count(*) FROM chancy_jobs WHERE replicated'), '0',
	'the publisher\'s own jobs are not marked');

# a queue declared and paused on the publisher, jobs pushed to it: the
# subscriber receives them, pending, and does not run them
$pub->safe_psql('postgres', q{
	SELECT chancy_declare_queue('later', 1);
	SELECT chancy_pause_queue('later');
	SELECT chancy_push('record', jsonb_build_object('n', n), queue => 'later')
	  FROM generate_series(101, 105) n;
});
$pub->wait_for_catchup('s');
is($sub->safe_psql('postgres',
	q{SELECT count(*) FROM chancy_jobs WHERE queue = 'later' AND state = 'pending' AND replicated}),
	'5', 'the subscriber holds the publisher\'s pending jobs');
$sub->poll_query_until('postgres',
	q{SELECT count(*) = 1 FROM chancy_workers WHERE kind = 'executor' AND queue = 'later'})
  or die 'the subscriber never started an executor for the queue it received';
$sub->safe_psql('postgres', q{SELECT chancy_resume_queue('later')});
# the executor looks at its queue after the resume, and finds nothing to run
my $looked = $sub->safe_psql('postgres', 'SELECT now()');
$sub->poll_query_until('postgres',
	"SELECT looked_at > '$looked' FROM chancy_workers WHERE kind = 'executor' AND queue = 'later'")
  or die 'the executor never looked at its queue';
is($sub->safe_psql('postgres', q{SELECT count(*) FROM ran WHERE node = 'sub'}), '0',
	'a resumed queue on the subscriber runs none of the publisher\'s jobs');

# switch-over: the subscriber stops following, adopts the jobs, runs them
$sub->safe_psql('postgres', 'DROP SUBSCRIPTION s');
is($sub->safe_psql('postgres', 'SELECT chancy_adopt_jobs()'), '105',
	'chancy_adopt_jobs() makes the 105 jobs the subscriber received its own');
is($sub->safe_psql('postgres',
	q{SELECT string_agg(state::text, ',') FROM
		(SELECT (chancy_wait(id, '60 s')).* FROM chancy_jobs WHERE queue = 'later' ORDER BY id) w}),
	'succeeded,succeeded,succeeded,succeeded,succeeded', 'the adopted jobs run');
is($sub->safe_psql('postgres',
	q{SELECT string_agg(n::text, ',' ORDER BY n) FROM ran WHERE node = 'sub'}),
	'101,102,103,104,105', 'on the subscriber');
is($sub->safe_psql('postgres', q{SELECT count(*) FROM ran}), '105',
	'and none of the finished ones ran again');

# a push that a trigger makes in an apply worker (on a replicated table that
# is not chancy's) is the subscriber's own job, and runs there
$pub->safe_psql('postgres', q{
	CREATE TABLE orders (n int PRIMARY KEY);
	CREATE PUBLICATION orders FOR TABLE orders;
});
$sub->safe_psql('postgres', q{
	CREATE TABLE orders (n int PRIMARY KEY);
	CREATE FUNCTION order_job() RETURNS trigger LANGUAGE plpgsql
		SET search_path = public AS $$
	BEGIN
		IF NEW.n >= 0 THEN
			PERFORM chancy_push('record', jsonb_build_object('n', NEW.n),
								queue => CASE WHEN NEW.n >= 300 THEN 'held' ELSE 'default' END);
		ELSE
			PERFORM chancy_cancel(j.id) FROM chancy_jobs j WHERE j.kwargs->>'n' = (-NEW.n)::text;
		END IF;
		RETURN NEW;
	END $$;
	SELECT chancy_declare_queue('held', 1);
	SELECT chancy_pause_queue('held');
	CREATE TRIGGER order_job AFTER INSERT ON orders FOR EACH ROW EXECUTE FUNCTION order_job();
	ALTER TABLE orders ENABLE ALWAYS TRIGGER order_job;
});
subscribe('o', 'orders');
$pub->safe_psql('postgres', 'INSERT INTO orders VALUES (200)');
$pub->wait_for_catchup('o');
is($sub->safe_psql('postgres',
	q{SELECT replicated || ' ' || (chancy_wait(id, '60 s')).state FROM chancy_jobs
	   WHERE kwargs->>'n' = '200'}),
	'false succeeded', 'a job pushed by a trigger in an apply worker is local, and runs');
$pub->safe_psql('postgres', 'INSERT INTO orders VALUES (300)');
$pub->safe_psql('postgres', 'INSERT INTO orders VALUES (-300)');
$pub->wait_for_catchup('o');
is($sub->safe_psql('postgres',
	q{SELECT state || ' ' || replicated FROM chancy_jobs WHERE kwargs->>'n' = '300'}),
	'cancelled false', 'and one it cancels from there stays local');

ok(!$sub->log_contains(qr/duplicate key|ERROR:.*logical replication/),
	'the subscriber\'s log shows no replication conflict');
$pub->stop;
$sub->stop;
done_testing();
