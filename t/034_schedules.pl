# Recurring jobs, as the supervisor fires them: a per-second schedule fires
# once a second, on time; a crash (pg_ctl stop -m immediate) while it fires,
# and one exactly between a push and its commit, leave no gap and no
# duplicate; after downtime missed fires are skipped
# and counted, or pushed within the catch_up window; overlap => false skips
# while the last job is live; the job runs as the schedule's owner, and a
# fire the owner may no longer push is a failed job; a schedule whose firing
# fails is disabled, the others go on; a function dropped and made again
# is not run in its place; a long backlog with overlap off is bounded; a
# held unique key does not stall the supervisor; changing a schedule never
# repeats a fire time; a replicated schedule fires only once adopted; a
# function changed in place by its owner is pushed in a copy of the
# database; a standby fires nothing and, promoted, goes on without
# duplicates.
use strict;
use warnings;
use FindBin;
use lib $FindBin::RealBin;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use ChancyTest;

my $node = chancy_node('schedules', "chancy.queues = 'default:3'\n");
sub sql { return $node->safe_psql('postgres', shift); }

sql(q{CREATE EXTENSION chancy;
	CREATE FUNCTION tick(kwargs jsonb) RETURNS void LANGUAGE sql AS '';
	CREATE FUNCTION slow(kwargs jsonb) RETURNS void LANGUAGE sql AS $$SELECT pg_sleep(2.5)$$;
	CREATE FUNCTION whoami(kwargs jsonb) RETURNS jsonb LANGUAGE sql
		AS $$SELECT jsonb_build_object('user', current_user)$$;
	CREATE ROLE regress_sched_owner;
	GRANT CREATE ON SCHEMA public TO regress_sched_owner;
	-- the fire times of a schedule's jobs, in order, as epoch seconds
	CREATE FUNCTION fire_times(schedule text) RETURNS SETOF bigint LANGUAGE sql AS $$
		SELECT extract(epoch FROM (meta->>'fire_at')::timestamptz)::bigint
		  FROM chancy_jobs WHERE meta->>'schedule' = schedule ORDER BY id $$;});

# Whether a schedule's fire times, from the first, are each second once.
sub every_second_once
{
	my ($schedule, $db) = @_;
	return sql(qq{SELECT count(*) = count(DISTINCT t) AND max(t) - min(t) + 1 = count(*)
				   FROM fire_times('$schedule') t});
}

# --- once a second, on time
sql(q{SELECT chancy_schedule('tick', '* * * * * *', chancy_job('tick'))});
$node->poll_query_until('postgres',
	q{SELECT fires >= 6 FROM chancy_schedules WHERE name = 'tick'})
  or die 'the per-second schedule never fired six times';
is(every_second_once('tick'), 't', 'a per-second schedule pushes one job per second, none missing');
is(sql(q{SELECT count(*) FROM chancy_jobs WHERE meta->>'schedule' = 'tick'
		 AND (created_at - (meta->>'fire_at')::timestamptz NOT BETWEEN '-40 ms' AND '1 s'
			  OR (scheduled_at > created_at AND scheduled_at <> (meta->>'fire_at')::timestamptz)
			  OR started_at < (meta->>'fire_at')::timestamptz)}), '0',
	'each job is pushed at most 40 ms before its fire time (to run at it) or within a second after, and starts no sooner');
is(sql(q{SELECT count(*) > 0 FROM chancy_jobs WHERE meta->>'schedule' = 'tick'
		 AND scheduled_at = (meta->>'fire_at')::timestamptz}), 't',
	'jobs are pushed ahead of their fire time');
my $p50 = sql(q{SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY
		extract(epoch FROM started_at - (meta->>'fire_at')::timestamptz) * 1000)
	  FROM chancy_jobs WHERE meta->>'schedule' = 'tick'});
cmp_ok($p50, '<', 100, "the median job starts within 100 ms of its fire time ($p50 ms)");
is(sql(q{SELECT count(*) FROM chancy_jobs WHERE meta->>'schedule' = 'tick' AND state <> 'succeeded'
		 AND id < (SELECT max(id) FROM chancy_jobs)}), '0', 'and its jobs run');
is(sql(q{SELECT s.last_job_id = max(j.id) AND s.fires = count(j.*)
		   FROM chancy_schedules s JOIN chancy_jobs j ON j.meta->>'schedule' = s.name
		  WHERE s.name = 'tick' GROUP BY s.last_job_id, s.fires}), 't',
	'fires and last_job_id count the jobs pushed');

# --- a crash while it fires: every fire time once, across it
my $before = sql(q{SELECT fires FROM chancy_schedules WHERE name = 'tick'});
$node->stop('immediate');
$node->start;
$node->poll_query_until('postgres',
	qq{SELECT fires >= $before + 3 FROM chancy_schedules WHERE name = 'tick'})
  or die 'the schedule never fired after the crash';
is(every_second_once('tick'), 't',
	'after a crash the fire times go on with no gap and no duplicate');
sql(q{SELECT chancy_unschedule('tick')});

# --- a crash exactly between a fire's push and its commit: a trigger on
# chancy_jobs holds the supervisor's transaction after the push, in this
# server's life only, while the server stops as a crash does
sql(q{CREATE TABLE held_in(started timestamptz);
	INSERT INTO held_in SELECT pg_postmaster_start_time();
	CREATE FUNCTION hold_fire() RETURNS trigger LANGUAGE plpgsql AS $$
	BEGIN
		IF NEW.meta->>'schedule' = 'held' AND
		   (SELECT started FROM public.held_in) = pg_postmaster_start_time() THEN
			PERFORM pg_sleep(60);
		END IF;
		RETURN NEW;
	END $$;
	GRANT SELECT ON held_in TO PUBLIC;
	CREATE TRIGGER hold_fire AFTER INSERT ON chancy_jobs
		FOR EACH ROW EXECUTE FUNCTION hold_fire();
	SELECT chancy_schedule('held', '* * * * * *', chancy_job('tick'))});
$node->poll_query_until('postgres',
	q{SELECT count(*) = 1 FROM pg_stat_activity
	   WHERE backend_type = 'chancy supervisor' AND wait_event = 'PgSleep'})
  or die 'the supervisor was never held between a push and its commit';
is(sql(q{SELECT count(*) FROM chancy_jobs WHERE meta->>'schedule' = 'held'}), '0',
	'held: the fire is pushed but not committed');
$node->stop('immediate');
$node->start;
$node->poll_query_until('postgres',
	q{SELECT fires >= 3 FROM chancy_schedules WHERE name = 'held'})
  or die 'the held schedule never fired after the crash';
sql(q{SELECT chancy_unschedule('held'); DROP TRIGGER hold_fire ON chancy_jobs});
is(every_second_once('held'), 't',
	'after a crash between push and commit, the held fire time is pushed once and the rest follow');

# --- overlap => false: a fire is skipped while the last job is live
sql(q{SELECT chancy_schedule('slow', '* * * * * *', chancy_job('slow'), overlap => false)});
$node->poll_query_until('postgres',
	q{SELECT fires >= 2 AND skips >= 3 FROM chancy_schedules WHERE name = 'slow'})
  or die 'the slow schedule never skipped';
sql(q{SELECT chancy_unschedule('slow')});
is(sql(q{SELECT count(*) FROM chancy_jobs a JOIN chancy_jobs b ON a.id < b.id
		  WHERE a.meta->>'schedule' = 'slow' AND b.meta->>'schedule' = 'slow'
		    AND b.created_at < coalesce(a.completed_at, 'infinity')}), '0',
	'with overlap off, no job of the schedule is pushed while the last is live (queue of 3)');
is(sql(q{SELECT count(*) FROM chancy_jobs WHERE meta->>'schedule' = 'slow'
		   AND (created_at < (meta->>'fire_at')::timestamptz OR scheduled_at > created_at)}), '0',
	'with overlap off, a fire is pushed at its time, not ahead (the last job state is known then)');
# a unique key the last job may hold until just before the fire: at its time too
sql(q{SELECT chancy_schedule('keyed', '* * * * * *',
		chancy_with_unique_key(chancy_job('tick'), 'keyed'))});
$node->poll_query_until('postgres', q{SELECT fires >= 3 FROM chancy_schedules WHERE name = 'keyed'})
  or die 'the keyed schedule never fired';
sql(q{SELECT chancy_unschedule('keyed')});
is(sql(q{SELECT count(*) FROM chancy_jobs WHERE meta->>'schedule' = 'keyed'
		   AND (created_at < (meta->>'fire_at')::timestamptz OR scheduled_at > created_at)}), '0',
	'a schedule whose job has a unique key is pushed at its time, not ahead');

# removed and made again just before a fire it was fired ahead for: not twice
sql(q{CREATE PROCEDURE remake_in_lead(n int) LANGUAGE plpgsql AS $$
	DECLARE
		fire timestamptz;
	BEGIN
		FOR i IN 1 .. n LOOP
			fire := date_trunc('second', clock_timestamp()) + interval '1 s';
			-- 20 ms before the next second, when it was fired (40 ms ahead)
			PERFORM pg_sleep(greatest(extract(epoch FROM fire - clock_timestamp()) - 0.02, 0));
			PERFORM chancy_unschedule('remade');
			PERFORM chancy_schedule('remade', '* * * * * *', chancy_job('tick'));
			COMMIT;
		END LOOP;
	END $$});
sql(q{SELECT chancy_schedule('remade', '* * * * * *', chancy_job('tick'))});
sql(q{CALL remake_in_lead(4)});
$node->poll_query_until('postgres', q{SELECT fires >= 2 FROM chancy_schedules WHERE name = 'remade'})
  or die 'the remade schedule never fired';
sql(q{SELECT chancy_unschedule('remade')});
is(sql(q{SELECT count(*) = count(DISTINCT meta->>'fire_at') FROM chancy_jobs
		  WHERE meta->>'schedule' = 'remade'}), 't',
	'a schedule removed and made again in the 40 ms before a fire it was fired ahead for does not fire it again');
ok(!$node->log_contains(qr/schedule "slow" missed/),
	'fires skipped for overlap are counted, not logged as missed');

# --- the job runs as the schedule's owner; a fire it may not push fails visibly
sql(q{SET ROLE regress_sched_owner;
	CREATE FUNCTION owned(kwargs jsonb) RETURNS jsonb LANGUAGE sql
		AS $$SELECT jsonb_build_object('user', current_user)$$;
	SELECT chancy_schedule('owned', '* * * * * *', chancy_job('owned'));});
$node->poll_query_until('postgres',
	q{SELECT count(*) > 0 FROM chancy_jobs WHERE meta->>'schedule' = 'owned' AND state = 'succeeded'})
  or die 'the owned schedule never ran';
is(sql(q{SELECT DISTINCT result->>'user' || ' ' || pushed_by FROM chancy_jobs
		 WHERE meta->>'schedule' = 'owned' AND state = 'succeeded'}),
	'regress_sched_owner regress_sched_owner', 'a scheduled job is pushed by and runs as the owner');
sql(q{REVOKE EXECUTE ON FUNCTION owned(jsonb) FROM PUBLIC, regress_sched_owner});
$node->poll_query_until('postgres',
	q{SELECT count(*) > 0 FROM chancy_jobs WHERE meta->>'schedule' = 'owned' AND state = 'failed'})
  or die 'a fire the owner may not push never failed';
is(sql(q{SELECT errors->0->>'sqlstate' || ' ' || pushed_by || ' ' || (errors->0->>'message' LIKE 'permission denied%')
		   FROM chancy_jobs WHERE meta->>'schedule' = 'owned' AND state = 'failed' LIMIT 1}),
	'42501 regress_sched_owner true',
	'a fire the owner may no longer push is a failed job with the error, not nothing');
ok($node->log_contains(qr/schedule "owned" could not push its job: permission denied/),
	'and the log says so');
sql(q{SELECT chancy_unschedule('owned')});

# --- a schedule whose firing fails (its zone no longer known) is disabled,
# and the others go on
sql(q{SELECT chancy_schedule('fine', '* * * * * *', chancy_job('tick'));
	SELECT chancy_schedule('broken', '* * * * * *', chancy_job('tick'));
	UPDATE chancy_schedules SET time_zone = 'Mars/Olympus' WHERE name = 'broken'});
$node->poll_query_until('postgres',
	q{SELECT NOT enabled AND next_fire_at IS NULL FROM chancy_schedules WHERE name = 'broken'})
  or die 'the broken schedule was never disabled';
my $fine = sql(q{SELECT fires FROM chancy_schedules WHERE name = 'fine'});
$node->poll_query_until('postgres',
	qq{SELECT fires >= $fine + 2 FROM chancy_schedules WHERE name = 'fine'})
  or die 'the other schedule stopped';
pass('a schedule whose firing fails is disabled; the others fire on');
ok($node->log_contains(qr/schedule "broken" is disabled: time zone "Mars\/Olympus" not recognized/),
	'the log says which and why');
sql(q{SELECT chancy_unschedule('fine'), chancy_unschedule('broken')});

# --- a function dropped and made again is not run in its place, even when
# the schema's owner (who may drop anything in it) does it to a superuser's
# schedule
sql(q{CREATE ROLE regress_sched_dev;
	CREATE SCHEMA app AUTHORIZATION regress_sched_dev;
	CREATE TABLE hijacked (by text);
	GRANT INSERT ON hijacked TO PUBLIC;
	CREATE FUNCTION app.maint(kwargs jsonb) RETURNS void LANGUAGE sql AS '';
	SELECT chancy_schedule('maint', '* * * * * *', chancy_job('app.maint'));});
$node->poll_query_until('postgres',
	q{SELECT count(*) > 0 FROM chancy_jobs WHERE meta->>'schedule' = 'maint' AND state = 'succeeded'})
  or die 'the maint schedule never ran';
sql(q{SET ROLE regress_sched_dev;
	DROP FUNCTION app.maint(jsonb);
	CREATE FUNCTION app.maint(kwargs jsonb) RETURNS void LANGUAGE sql
		AS $$INSERT INTO hijacked VALUES (current_user)$$;});
$node->poll_query_until('postgres',
	q{SELECT count(*) >= 2 FROM chancy_jobs WHERE meta->>'schedule' = 'maint' AND state = 'failed'})
  or die 'the fires of the replaced function never failed';
sql(q{SELECT chancy_unschedule('maint')});
like(sql(q{SELECT DISTINCT errors->0->>'message' FROM chancy_jobs
		   WHERE meta->>'schedule' = 'maint' AND state = 'failed'}),
	qr/^the function of schedule "maint" is not the one it was made with$/,
	'a fire whose function was dropped and made again fails');
$node->poll_query_until('postgres',
	q{SELECT count(*) = 0 FROM chancy_jobs WHERE meta->>'schedule' = 'maint'
		AND state NOT IN ('succeeded', 'failed')})
  or die 'the maint jobs never finished';
is(sql(q{SELECT count(*) FROM hijacked}), '0', 'and the new function never ran as the schedule\'s owner');

# --- overlap off with a long backlog: skipped and counted, quickly, without
# counting each one past 100,000
sql(q{SELECT chancy_declare_queue('stopped', 1);
	SELECT chancy_pause_queue('stopped');
	SELECT chancy_schedule('backlog', '* * * * * *', chancy_with_queue(chancy_job('tick'), 'stopped'),
		catch_up => '366 days', overlap => false);});
$node->poll_query_until('postgres', q{SELECT fires = 1 FROM chancy_schedules WHERE name = 'backlog'})
  or die 'the backlog schedule never fired';
sql(q{UPDATE chancy_schedules SET next_fire_at = now() - interval '300 days' WHERE name = 'backlog'});
$node->poll_query_until('postgres',
	q{SELECT skips >= 100000 AND next_fire_at > now() FROM chancy_schedules WHERE name = 'backlog'})
  or die 'the backlog was never skipped';
is(sql(q{SELECT fires FROM chancy_schedules WHERE name = 'backlog'}), '1',
	'with its last job still pending, 300 days of fires are skipped, none pushed');
sql(q{SELECT chancy_unschedule('backlog')});

# --- a catch-up of many schedules at once goes in several transactions of
# at most 10,000 fires, each fire time once
sql(q{SELECT count(chancy_schedule('many' || i, '* * * * * *',
		chancy_with_queue(chancy_job('tick'), 'stopped'), catch_up => '1 hour'))
	FROM generate_series(1, 12) i});
sql(q{UPDATE chancy_schedules SET next_fire_at = date_trunc('second', now()) - interval '20 minutes'
	WHERE name LIKE 'many%'});
$node->poll_query_until('postgres',
	q{SELECT bool_and(fires >= 1000 AND next_fire_at > now()) FROM chancy_schedules WHERE name LIKE 'many%'})
  or die 'the many schedules never caught up';
is(sql(q{SELECT count(*) = count(DISTINCT (meta->>'schedule', meta->>'fire_at')) AND count(*) >= 12000
		   FROM chancy_jobs WHERE meta->>'schedule' LIKE 'many%'}), 't',
	'12 schedules catching up 1,000 fires each push them all, none twice');
sql(q{SELECT count(chancy_unschedule(name)) FROM chancy_schedules WHERE name LIKE 'many%';
	DELETE FROM chancy_jobs WHERE queue = 'stopped'});

# --- a transaction holding a job's unique key does not hold the supervisor
# up: that fire fails after a second, the others go on
my $holder = $node->background_psql('postgres', timeout => 120);
$holder->query_safe('BEGIN');
$holder->query_safe(q{SELECT chancy_push(chancy_with_unique_key(chancy_job('tick'), 'held'))});
sql(q{SELECT chancy_schedule('held', '* * * * * *', chancy_with_unique_key(chancy_job('tick'), 'held'));
	SELECT chancy_schedule('free', '* * * * * *', chancy_job('tick'));});
$node->poll_query_until('postgres',
	q{SELECT count(*) > 0 FROM chancy_jobs WHERE meta->>'schedule' = 'held' AND state = 'failed'})
  or die 'the held fire never failed';
my $free = sql(q{SELECT fires FROM chancy_schedules WHERE name = 'free'});
$node->poll_query_until('postgres',
	qq{SELECT fires >= $free + 2 FROM chancy_schedules WHERE name = 'free'})
  or die 'the free schedule stopped';
is(sql(q{SELECT errors->0->>'sqlstate' FROM chancy_jobs
		  WHERE meta->>'schedule' = 'held' AND state = 'failed' LIMIT 1}), '55P03',
	'a fire waiting on a unique key an open transaction holds fails on a lock timeout; the others fire on');
$holder->query_safe('ROLLBACK');
$holder->quit;
sql(q{SELECT chancy_unschedule('held'), chancy_unschedule('free')});

# --- changing a schedule's expression never fires a time twice, even when
# the supervisor fired it after the changing transaction began
sql(q{SELECT chancy_schedule('dup', '*/2 * * * * *', chancy_job('tick'))});
$node->poll_query_until('postgres', q{SELECT fires >= 1 FROM chancy_schedules WHERE name = 'dup'})
  or die 'the dup schedule never fired';
sql(q{BEGIN;
	SELECT pg_sleep(2.5);	-- the window: the supervisor fires meanwhile
	SELECT chancy_schedule('dup', '0/2 * * * * *', chancy_job('tick'));
	COMMIT;});
my $dup = sql(q{SELECT fires FROM chancy_schedules WHERE name = 'dup'});
$node->poll_query_until('postgres', qq{SELECT fires >= $dup + 2 FROM chancy_schedules WHERE name = 'dup'})
  or die 'the dup schedule stopped';
is(sql(q{SELECT count(*) = count(DISTINCT t) FROM fire_times('dup') t}), 't',
	'no fire time is pushed twice across the change');
sql(q{SELECT chancy_unschedule('dup')});

# --- a schedule written by logical replication is the publisher's: it does
# not fire here until chancy_adopt_jobs()
sql(q{SELECT chancy_schedule('mirrored', '* * * * * *', chancy_job('tick'), enabled => false);
	SELECT chancy_schedule('local', '* * * * * *', chancy_job('tick'));
	SELECT pg_replication_origin_create('regress_origin');});
sql(q{SET session_replication_role = replica;
	SELECT pg_replication_origin_session_setup('regress_origin');
	UPDATE chancy_schedules SET enabled = true, next_fire_at = now() WHERE name = 'mirrored';});
is(sql(q{SELECT replicated FROM chancy_schedules WHERE name = 'mirrored'}), 't',
	'a schedule that replication writes is marked replicated');
my $local = sql(q{SELECT fires FROM chancy_schedules WHERE name = 'local'});
$node->poll_query_until('postgres', qq{SELECT fires >= $local + 2 FROM chancy_schedules WHERE name = 'local'})
  or die 'the local schedule stopped';
is(sql(q{SELECT fires FROM chancy_schedules WHERE name = 'mirrored'}), '0',
	'and does not fire here, while the others do');
sql(q{SELECT chancy_adopt_jobs()});
$node->poll_query_until('postgres', q{SELECT fires >= 1 FROM chancy_schedules WHERE name = 'mirrored'})
  or die 'the adopted schedule never fired';
pass('after chancy_adopt_jobs() it fires here');
sql(q{SELECT chancy_unschedule('mirrored'), chancy_unschedule('local')});

# --- downtime: missed fires skipped and counted, or caught up in the window
# The server comes back without its supervisor (chancy.database names no
# database), the fire times are set an hour back as if it had been down
# that long, and it restarts serving the database.
sql(q{SELECT chancy_schedule('skipper', '@every 1 minute', chancy_job('tick'));
	SELECT chancy_schedule('catcher', '@every 1 minute', chancy_job('tick'), catch_up => '30 minutes')});
$node->append_conf('postgresql.conf', "chancy.database = 'nothing_here'\n");
$node->restart;
my $missed = sql(q{UPDATE chancy_schedules
	SET next_fire_at = chancy_cron_next('@every 1 minute', now() - interval '1 hour 1 minute')
	RETURNING extract(epoch FROM next_fire_at)::bigint});
$missed =~ s/\n.*//s;
$node->append_conf('postgresql.conf', "chancy.database = 'postgres'\n");
my $log_offset = -s $node->logfile;
$node->restart;
$node->poll_query_until('postgres',
	q{SELECT bool_and(next_fire_at > now() AND fires + skips >= 60) FROM chancy_schedules})
  or die 'the schedules never moved on after the downtime';
my $now = sql(q{SELECT extract(epoch FROM now())::bigint});
my $total = int(($now - $missed) / 60);
my ($fires, $skips) = split /\|/, sql(q{SELECT fires, skips FROM chancy_schedules WHERE name = 'skipper'});
cmp_ok($skips, '>=', $total - 1, "without catch_up, the fire times missed are skipped ($skips)");
cmp_ok($fires, '<=', 1, 'and none of them pushed, but one due in the last seconds');
like(slurp_file($node->logfile, $log_offset), qr/schedule "skipper" missed \d+ fire times from/,
	'one log line says how many');
my ($cfires, $cskips) = split /\|/, sql(q{SELECT fires, skips FROM chancy_schedules WHERE name = 'catcher'});
cmp_ok(abs($cfires - 30), '<=', 1, "with catch_up => '30 minutes', the fires of the last 30 minutes are pushed ($cfires)");
is($cfires + $cskips, $fires + $skips, 'the older ones are skipped and counted');
is(sql(q{SELECT bool_and(t >= extract(epoch FROM now() - interval '30 minutes 10 seconds'))
		  AND count(*) = count(DISTINCT t)
		  AND array_agg(t) = array_agg(t ORDER BY t)
		 FROM fire_times('catcher') t}), 't',
	'each with its own fire_at, oldest first, none twice');
sql(q{SELECT chancy_unschedule('skipper'), chancy_unschedule('catcher')});

# --- a function its owner changed in place (CREATE OR REPLACE) after the
# schedule was made: here it runs as it is now, and so it does in a copy of
# the database (another catalog, where the function is checked by its
# owner and what it does as last fired)
sql(q{CREATE TABLE beats (body text);
	CREATE FUNCTION beat(kwargs jsonb) RETURNS void LANGUAGE sql AS $$INSERT INTO beats VALUES ('first')$$;
	SELECT chancy_schedule('beat', '* * * * * *', chancy_job('beat'));});
$node->poll_query_until('postgres', q{SELECT count(*) > 0 FROM beats})
  or die 'the beat schedule never ran';
sql(q{CREATE OR REPLACE FUNCTION beat(kwargs jsonb) RETURNS void LANGUAGE sql
	AS $$INSERT INTO beats VALUES ('second')$$});
$node->poll_query_until('postgres', q{SELECT count(*) > 0 FROM beats WHERE body = 'second'})
  or die 'the replaced body never ran';
sql(q{SELECT chancy_schedule('beat', '* * * * * *', chancy_job('beat'), enabled => false)});
my $copy = $PostgreSQL::Test::Utils::tmp_check . '/schedules.dump';
command_ok([ 'pg_dump', '-Fc', '-f', $copy, '-d', $node->connstr('postgres') ],
	'pg_dump of the database');
sql(q{SELECT chancy_unschedule('beat')});
$node->safe_psql('postgres', 'CREATE DATABASE copy');
command_ok([ 'pg_restore', '-d', $node->connstr('copy'), $copy ], 'restored into another database');
# enabled as the supervisor finds a restored schedule (chancy_schedule()
# would pin the function anew)
my $restored = $node->safe_psql('copy', q{SELECT coalesce(max(id), 0) FROM chancy_jobs});
$node->safe_psql('copy', q{TRUNCATE beats;
	UPDATE chancy_schedules SET enabled = true, next_fire_at = now() WHERE name = 'beat'});
$node->append_conf('postgresql.conf', "chancy.database = 'postgres, copy'\n");
$node->reload;
$node->poll_query_until('copy',
	qq{SELECT count(*) > 0 FROM chancy_jobs WHERE meta->>'schedule' = 'beat' AND id > $restored})
  or die 'the copied schedule never fired';
$node->safe_psql('copy', q{SELECT chancy_unschedule('beat')});
# (whether they run there depends on executor slots for a second database)
is($node->safe_psql('copy', qq{SELECT bool_and(state <> 'failed')
		AND bool_and(function_oid = 'beat(jsonb)'::regprocedure::oid) FROM chancy_jobs
	WHERE meta->>'schedule' = 'beat' AND id > $restored}), 't',
	'in a copy of the database the function as last fired is pushed, not refused');
$node->append_conf('postgresql.conf', "chancy.database = 'postgres'\n");
$node->reload;

# --- a standby fires nothing; promoted, it goes on without duplicates
sql(q{SELECT chancy_schedule('tick', '* * * * * *', chancy_job('tick'))});
$node->backup('backup');
my $standby = PostgreSQL::Test::Cluster->new('schedules_standby');
$standby->init_from_backup($node, 'backup', has_streaming => 1);
$standby->start;
$node->poll_query_until('postgres',
	q{SELECT fires >= 3 FROM chancy_schedules WHERE name = 'tick'})
  or die 'the schedule never fired on the primary';
$node->wait_for_catchup($standby);
is($standby->safe_psql('postgres', q{SELECT count(*) FROM chancy_workers WHERE kind = 'supervisor'}),
	'0', 'no supervisor fires on the standby');
$node->stop('immediate');
my $replayed = $standby->safe_psql('postgres', q{SELECT fires FROM chancy_schedules WHERE name = 'tick'});
$standby->promote;
$standby->poll_query_until('postgres',
	qq{SELECT fires >= $replayed + 3 FROM chancy_schedules WHERE name = 'tick'})
  or die 'the promoted standby never fired';
is($standby->safe_psql('postgres', q{SELECT count(*) = count(DISTINCT t) FROM fire_times('tick') t}),
	't', 'promoted, it fires on with no fire time twice');
$standby->stop;

done_testing();
