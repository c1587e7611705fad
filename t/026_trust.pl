# Trust: the attacks of the 2026-11-29 security review (items 1, 2, 6, 7,
# 14, 21, 23), end to end with real executors.  Job names cannot be taken
# over; functions are kept by identity; no statement chancy runs as a
# privileged role can be redirected by a database owner; DROP, RENAME and
# CREATE DATABASE ... TEMPLATE get along with the workers; unique keys are
# per role; what chancy shows a role is what it may see; statistics and
# pg_stat_activity are reported; the executor budget is enforced at
# declaration; an idle supervisor is idle.
use strict;
use warnings;
use FindBin;
use lib $FindBin::RealBin;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use ChancyTest;
use Time::HiRes qw(time usleep);

my $max_executors = 6;
my $node = chancy_node('trust', qq{chancy.database = 'postgres, app'
chancy.queues = 'default:1'
chancy.max_executors = $max_executors
max_worker_processes = 16
});

# SQL as the superuser, or as another role (the test cluster trusts local
# connections); try() returns (ret, stdout, stderr) with verbose errors.
sub sql
{
	my ($db, $q) = @_;
	return $node->safe_psql($db, $q);
}

sub as_role
{
	my ($role, $db, $q) = @_;
	return $node->safe_psql($db, $q, connstr => $node->connstr($db) . " user=$role");
}

sub try
{
	my ($role, $db, $q) = @_;
	my ($ret, $out, $err) = $node->psql($db, "\\set VERBOSITY verbose\n$q",
		connstr => $node->connstr($db) . " user=$role");
	return ($ret, $out, $err);
}

# The superuser's own statements in app, once its owner has planted
# operators in public and put public first in its search_path: they must
# not run the owner's code themselves (that would be the test's fault).
sub app
{
	return $node->safe_psql('app', "SET search_path = pg_catalog, public;\n" . shift);
}

# Wait until a query (in a database, as the superuser) says 't', at most
# $secs seconds; true if it did.
sub wait_until
{
	my ($db, $q, $secs) = @_;
	my $deadline = time + $secs;
	while (time < $deadline)
	{
		my $r = $db eq 'app' ? app($q) : sql($db, $q);
		return 1 if $r eq 't';
		usleep(100_000);
	}
	return 0;
}

sub is_super
{
	my $role = shift;
	return sql('postgres', "SELECT rolsuper FROM pg_roles WHERE rolname = '$role'");
}

# A summary of a database's chancy processes and their pids.
sub app_workers
{
	return sql('postgres', q{SELECT coalesce(string_agg(kind || ':' || coalesce(queue, '-') || ':' || pid,
		', ' ORDER BY kind, queue, pid), '') FROM chancy_workers WHERE database = 'app'});
}

# Both databases served; plain roles; a log table everyone writes.
sql('postgres', q{
	CREATE ROLE mallory LOGIN;
	CREATE ROLE dbo LOGIN;
	CREATE ROLE monitor_role LOGIN;
	GRANT pg_monitor TO monitor_role;
	GRANT CREATE ON DATABASE postgres TO mallory;
	CREATE EXTENSION chancy;
	CREATE TABLE public.log (who text, what text);
	GRANT SELECT, INSERT ON public.log TO PUBLIC;
	CREATE DATABASE app OWNER dbo;
});
sql('app', q{
	CREATE EXTENSION chancy;
	CREATE TABLE public.applog (who text, what text);
	GRANT SELECT, INSERT ON public.applog TO PUBLIC;
	-- SQL-standard bodies are parsed now, not under app's later search_path
	CREATE FUNCTION public.note(kwargs jsonb) RETURNS void LANGUAGE sql
	BEGIN ATOMIC INSERT INTO public.applog VALUES (current_user, kwargs->>'what'); END;
	CREATE FUNCTION public.nap(kwargs jsonb) RETURNS void LANGUAGE sql
	BEGIN ATOMIC SELECT pg_sleep(60); END;
	SELECT chancy_declare_queue('q1', 1);
});
$node->poll_query_until('postgres', q{SELECT count(*) = 3 FROM chancy_workers
	WHERE kind = 'executor' AND state = 'idle' AND database IN ('postgres', 'app')})
  or die 'executors never started';

##########################################################################
# 1. Job names cannot be hijacked (review item 1).
##########################################################################

sql('postgres', q{
	CREATE FUNCTION public.cleanup(kwargs jsonb) RETURNS void LANGUAGE plpgsql AS $$
	BEGIN INSERT INTO public.log(who, what) VALUES (current_user, 'admin cleanup ran'); END $$;
	CREATE FUNCTION public.billing(kwargs jsonb) RETURNS void LANGUAGE plpgsql AS $$
	BEGIN INSERT INTO public.log(who, what) VALUES (current_user, 'billing ran'); END $$;
	CREATE FUNCTION public.report(kwargs jsonb) RETURNS void LANGUAGE plpgsql AS $$
	BEGIN INSERT INTO public.log(who, what) VALUES (current_user, 'report ran'); END $$;
});
as_role('mallory', 'postgres', q{
	CREATE SCHEMA mallory;
	CREATE FUNCTION mallory.evil(kwargs jsonb) RETURNS void LANGUAGE plpgsql AS $$
	BEGIN
		INSERT INTO public.log(who, what) VALUES (current_user, 'mallory code');
		EXECUTE 'ALTER ROLE mallory SUPERUSER';
	END $$;
	CREATE FUNCTION mallory.noop(kwargs jsonb) RETURNS void LANGUAGE sql AS '';
	SELECT chancy_define_job('cleanup', 'mallory.evil(jsonb)');
});

# mallory's definition of a name nobody else defined does not reach the
# superuser's push: it runs the superuser's own public.cleanup.
my $id = sql('postgres', q{SELECT chancy_push('cleanup')});
is(sql('postgres', "SELECT state || ' ' || function FROM chancy_wait($id, '30 s')"),
	'succeeded public.cleanup(pg_catalog.jsonb)',
	'a superuser push of a name mallory defined runs the superuser\'s function');
is(sql('postgres', q{SELECT string_agg(who || ': ' || what, '; ') FROM public.log}),
	'postgres: admin cleanup ran', '... and mallory\'s code never ran');
is(is_super('mallory'), 'f', '... mallory is not superuser');

# Her definition is real: a push of hers uses it (and fails, as her).
$id = as_role('mallory', 'postgres', q{SELECT chancy_push('cleanup')});
is( as_role('mallory', 'postgres', "SELECT state || ' ' || function || ' ' || (errors->0->>'sqlstate')
	FROM chancy_wait($id, '30 s')"),
	'failed mallory.evil(pg_catalog.jsonb) 42501',
	'mallory\'s own push of the name runs her function, as her');

# The redefinition variant: a squatter's definition first, then the
# superuser's, then the squatter swaps hers for evil code.
as_role('mallory', 'postgres', q{SELECT chancy_define_job('nightly_billing', 'mallory.noop(jsonb)')});
sql('postgres', q{SELECT chancy_define_job('nightly_billing', 'public.billing(jsonb)', max_attempts => 3)});
is( sql('postgres', q{SELECT string_agg(defined_by::text || ' ' || function, '; ' ORDER BY defined_by::text)
	FROM chancy_job_definitions WHERE name = 'nightly_billing'}),
	'mallory mallory.noop(pg_catalog.jsonb); postgres public.billing(pg_catalog.jsonb)',
	'the superuser\'s definition is its own, beside mallory\'s');
as_role('mallory', 'postgres',
	q{SELECT chancy_define_job('nightly_billing', 'mallory.evil(jsonb)', max_attempts => 3)});
$id = sql('postgres', q{SELECT chancy_push('nightly_billing')});
is(sql('postgres', "SELECT state || ' ' || function FROM chancy_wait($id, '30 s')"),
	'succeeded public.billing(pg_catalog.jsonb)',
	'after mallory redefines hers, the superuser\'s push still runs billing');
is(sql('postgres', q{SELECT count(*) FROM public.log WHERE what = 'mallory code'}), '0',
	'... mallory\'s code never ran');
is(is_super('mallory'), 'f', '... mallory is still not superuser');

##########################################################################
# 2. Functions are kept by identity: one dropped and created again by
#    another role is not run in its place.
##########################################################################

sql('postgres', q{
	CREATE SCHEMA s;
	GRANT USAGE, CREATE ON SCHEMA s TO mallory;
	CREATE FUNCTION s.job(kwargs jsonb) RETURNS void LANGUAGE plpgsql AS $$
	BEGIN INSERT INTO public.log(who, what) VALUES (current_user, 'original s.job'); END $$;
	SELECT chancy_declare_queue('held', 1);
	SELECT chancy_pause_queue('held');
	SELECT chancy_define_job('sjob', 's.job(jsonb)', queue => 'held');
});
my @held = split /\n/, sql('postgres', q{
	SELECT chancy_push('s.job', queue => 'held') FROM generate_series(1, 3);
	SELECT chancy_push('sjob') FROM generate_series(1, 2);
});
is(scalar @held, 5, 'five jobs of s.job pushed on a paused queue');
sql('postgres', q{DROP FUNCTION s.job(jsonb)});
as_role('mallory', 'postgres', q{
	CREATE FUNCTION s.job(kwargs jsonb) RETURNS void LANGUAGE plpgsql AS $$
	BEGIN
		INSERT INTO public.log(who, what) VALUES (current_user, 'mallory code');
		EXECUTE 'ALTER ROLE mallory SUPERUSER';
	END $$;
});
sql('postgres', q{SELECT chancy_resume_queue('held')});
my $ids = join(',', @held);
sql('postgres', "SELECT chancy_wait(id, '30 s') FROM unnest(ARRAY[$ids]::int8[]) id");
is( sql('postgres', qq{SELECT count(*) FROM chancy_jobs WHERE id IN ($ids) AND state = 'failed'
	AND errors->0->>'message' ~ '^function s\\.job\\(pg_catalog\\.jsonb\\) no longer exists'}),
	'5', 'all five jobs failed: "function ... no longer exists"');
is(sql('postgres', q{SELECT count(*) FROM public.log WHERE what IN ('mallory code', 'original s.job')}),
	'0', '... mallory\'s function never ran');
is(is_super('mallory'), 'f', '... mallory is not superuser');
my ($ret, $out, $err) = try('postgres', 'postgres', q{SELECT chancy_push('sjob')});
like($err, qr/function s\.job\(pg_catalog\.jsonb\) of job "sjob" no longer exists/,
	'a push of the definition naming the dropped function is refused');

##########################################################################
# 6. Unique keys cannot be used against another role (review item 7).
##########################################################################

my $m1 = as_role('mallory', 'postgres',
	q{SELECT chancy_push('mallory.noop', unique_key => 'daily-report', scheduled_at => '9999-01-01')});
$id = sql('postgres', q{SELECT chancy_push('report', unique_key => 'daily-report')});
isnt($id, $m1, 'the superuser\'s push of a key mallory holds creates its own job');
is(sql('postgres', "SELECT state || ' ' || pushed_by FROM chancy_wait($id, '30 s')"),
	'succeeded postgres', '... which runs');
my $a1 = sql('postgres', q{SELECT chancy_push('report', unique_key => 'secret-key-of-admin',
	scheduled_at => now() + interval '1 hour')});
my $m2 = as_role('mallory', 'postgres',
	q{SELECT chancy_push('mallory.noop', unique_key => 'secret-key-of-admin')});
isnt($m2, $a1, 'mallory pushing the superuser\'s key gets a job of her own, not its id');
is(as_role('mallory', 'postgres', "SELECT pushed_by FROM chancy_jobs WHERE id = $m2"), 'mallory',
	'... one she pushed');
($ret, $out, $err) = try('mallory', 'postgres', "SELECT chancy_cancel($a1)");
like($err, qr/ERROR:\s+42704: job $a1 does not exist/,
	'mallory cancelling the superuser\'s job: "does not exist" (42704)');
unlike($err, qr/postgres|permission/, '... without permission details or the pusher\'s name');
sql('postgres', "SELECT chancy_cancel($a1)");

##########################################################################
# 7. Visibility (review items 14, 21).
##########################################################################

sql('postgres', q{
	CREATE FUNCTION public.send_mail(kwargs jsonb) RETURNS void LANGUAGE sql AS '';
	REVOKE EXECUTE ON FUNCTION public.send_mail(jsonb) FROM PUBLIC;
	SELECT chancy_define_job('mailer', 'public.send_mail(jsonb)', kwargs => '{"smtp_password": "hunter2"}');
});
ok(sql('postgres', q{SELECT count(*) > 0 FROM chancy_workers WHERE database = 'app'}) eq 't',
	'(the superuser sees app\'s workers)');
is( as_role('mallory', 'postgres', q{SELECT count(*) FILTER (WHERE database IS NOT NULL AND database <> current_database())
	|| ' ' || count(pid) || ' ' || count(job_id) || ' ' || (count(*) FILTER (WHERE kind = 'executor') > 0)
	FROM chancy_workers}),
	'0 0 0 true', 'mallory sees only this database\'s workers, without pids or job ids');
is( as_role('monitor_role', 'postgres', q{SELECT (count(pid) FILTER (WHERE kind = 'executor') > 0)
	|| ' ' || (count(*) FILTER (WHERE database = 'app') > 0) FROM chancy_workers}),
	'true true', 'a pg_monitor member sees pids, and other databases');
my $mine = as_role('mallory', 'postgres', q{SELECT count(*) FROM chancy_jobs});
is( as_role('mallory', 'postgres', q{SELECT sum(pending + running + retrying + succeeded + failed + cancelled)
	FROM chancy_queue_stats}),
	$mine, "chancy_queue_stats counts only mallory's jobs for her ($mine)");
is(sql('postgres', q{SELECT count(*) FROM chancy_jobs WHERE pushed_by = 'mallory'::regrole}), $mine,
	'... which are all hers');
ok(sql('postgres', q{SELECT count(*) FROM chancy_jobs}) > $mine, '... and not all the jobs');
is( as_role('mallory', 'postgres', q{SELECT count(*) FROM chancy_job_definitions
	WHERE name = 'mailer' OR kwargs::text LIKE '%hunter2%'}),
	'0', 'mallory does not see a definition whose function she may not run, nor its kwargs');
($ret, $out, $err) = try('mallory', 'postgres', q{SELECT chancy_job('mailer')});
unlike("$out $err", qr/hunter2/, '... nor get its kwargs through chancy_job()');

##########################################################################
# 8. Statistics and activity (review items 6, 21): executors report their
#    writes while they live, and show idle when idle.
##########################################################################

sql('postgres', q{
	CREATE TABLE public.big (id int PRIMARY KEY, v int);
	INSERT INTO public.big SELECT g, 0 FROM generate_series(1, 10000) g;
	CREATE FUNCTION public.bump_all(kwargs jsonb) RETURNS void LANGUAGE sql
		AS 'UPDATE public.big SET v = v + 1';
});
my $bumps = sql('postgres', q{SELECT chancy_push_many(array_fill(chancy_job('bump_all'), ARRAY[30]))});
$bumps =~ s/[{}]//g;
is( sql('postgres', "SELECT string_agg(DISTINCT (chancy_wait(id, '60 s')).state::text, ',')
	FROM unnest('{$bumps}'::int8[]) id"),
	'succeeded', '30 jobs updated public.big');
ok( wait_until('postgres', q{SELECT n_tup_upd >= 300000 FROM pg_stat_user_tables
	WHERE relid = 'public.big'::regclass}, 30),
	'pg_stat_user_tables shows the jobs\' 300000 updates while the executors live')
  or diag(sql('postgres', q{SELECT n_tup_upd FROM pg_stat_user_tables WHERE relid = 'public.big'::regclass}));
ok( sql('postgres', q{SELECT n_tup_upd >= 60 FROM pg_stat_user_tables
	WHERE relid = 'public.chancy_jobs'::regclass}) eq 't',
	'... and chancy\'s own updates of chancy_jobs');
ok( wait_until('postgres', q{SELECT count(*) > 0 AND bool_and(a.state = 'idle')
	FROM chancy_workers w JOIN pg_stat_activity a USING (pid)
	WHERE w.kind = 'executor' AND w.database = 'postgres' AND w.state IN ('idle', 'paused')}, 10),
	'idle executors are "idle" in pg_stat_activity')
  or diag(sql('postgres', q{SELECT string_agg(pid || ' ' || state || ' ' || query, '; ')
	FROM pg_stat_activity WHERE backend_type = 'chancy executor'}));
is( sql('postgres', q{SELECT count(*) FROM pg_stat_activity
	WHERE backend_type = 'chancy executor' AND datname = 'postgres'}),
	sql('postgres', q{SELECT count(*) FROM chancy_workers WHERE kind = 'executor' AND database = 'postgres'}),
	'executors have backend_type "chancy executor"');

##########################################################################
# 10. An idle supervisor uses no measurable CPU.
##########################################################################

sub cpu_ticks
{
	my $pid = shift;
	my $stat = slurp_file("/proc/$pid/stat");
	$stat =~ s/^.*\)\s+//s;
	my @f = split /\s+/, $stat;
	return $f[11] + $f[12];    # utime + stime
}
my $sup = sql('postgres', q{SELECT pid FROM chancy_workers WHERE kind = 'supervisor' AND database = 'postgres'});
SKIP:
{
	skip 'no /proc', 1 unless -r "/proc/$sup/stat";
	my $before = cpu_ticks($sup);
	# nothing happens: the point is what the supervisor does meanwhile
	sleep(20);
	my $used = cpu_ticks($sup) - $before;
	ok($used <= 2, "an idle supervisor used $used clock ticks in 20 s (at most 2)");
}

##########################################################################
# 3. No privileged statement can be redirected by a database owner
#    (review item 2): operators and functions planted in public, put
#    first in app's search_path; then the supervisor restarts (failed
#    DROP DATABASE, terminated supervisor, reload, server restart) and the
#    superuser pushes jobs and manages queues there.
##########################################################################

my @types = ('text', 'int4', 'int8', 'timestamptz', 'regrole', 'oid', 'bool', 'name',
	'public.chancy_state');
my %ops = ('=' => 'eq', '<>' => 'ne', '<' => 'lt', '<=' => 'le', '>' => 'gt', '>=' => 'ge');
my $evil = q{
CREATE FUNCTION public.evil_hit(what text) RETURNS void LANGUAGE plpgsql
SET search_path = pg_catalog AS $$
BEGIN
	IF (SELECT rolsuper FROM pg_roles WHERE rolname OPERATOR(pg_catalog.=) current_user) THEN
		RAISE LOG 'EVIL: % ran as superuser %', what, current_user;
		EXECUTE 'ALTER ROLE dbo SUPERUSER';
	END IF;
END $$;
};
$evil .= hostile_operators('evil_hit', \%ops, @types);
for my $t ('int4', 'int8')
{
	$evil .= qq{CREATE FUNCTION public.evil_plus_$t(a $t, b $t) RETURNS $t LANGUAGE plpgsql
SET search_path = pg_catalog AS \$\$
BEGIN PERFORM public.evil_hit('operator + ($t)'); RETURN a OPERATOR(pg_catalog.+) b; END \$\$;
CREATE OPERATOR public.+ (LEFTARG = $t, RIGHTARG = $t, FUNCTION = public.evil_plus_$t);
};
}
$evil .= q{CREATE FUNCTION public.evil_cat(a jsonb, b jsonb) RETURNS jsonb LANGUAGE plpgsql
SET search_path = pg_catalog AS $$
BEGIN PERFORM public.evil_hit('operator || (jsonb)'); RETURN a OPERATOR(pg_catalog.||) b; END $$;
CREATE OPERATOR public.|| (LEFTARG = jsonb, RIGHTARG = jsonb, FUNCTION = public.evil_cat);
};
for my $f ('now() RETURNS timestamptz', 'clock_timestamp() RETURNS timestamptz',
	'random() RETURNS float8')
{
	(my $name = $f) =~ s/\(.*//;
	$evil .= qq{CREATE FUNCTION public.$f LANGUAGE plpgsql SET search_path = pg_catalog AS \$\$
BEGIN PERFORM public.evil_hit('function $name()'); RETURN pg_catalog.$name(); END \$\$;
};
}
$evil .= q{ALTER DATABASE app SET search_path = public, pg_catalog;};
as_role('dbo', 'app', $evil);
is(as_role('dbo', 'app', q{SHOW search_path}), 'public, pg_catalog',
	'dbo put public (with its operators) first in app\'s search_path');

# A DROP DATABASE that fails because another session uses app (review
# item 2's trigger for a supervisor restart; item 4 below: the workers
# are not bounced).
my $before = app_workers();
like($before, qr/^executor:default:\d+, executor:q1:\d+, supervisor:-:\d+$/, 'app\'s workers run');
my $dbo_session = $node->background_psql('app', extra_params => [ '-U', 'dbo' ]);
$dbo_session->query_safe('SELECT 1');
($ret, $out, $err) = try('dbo', 'postgres', 'DROP DATABASE app');
like($err, qr/database "app" is being accessed by other users/,
	'DROP DATABASE app fails while another session uses app');
is(app_workers(), $before, '4. a DROP DATABASE that failed left app\'s supervisor and executors alone');
$dbo_session->quit;

# Restarts: a terminated supervisor, a reload, then the whole server.
my $old_sup = sql('postgres', q{SELECT pid FROM chancy_workers WHERE kind = 'supervisor' AND database = 'app'});
sql('postgres', "SELECT pg_terminate_backend($old_sup)");
$node->poll_query_until('postgres', qq{SELECT count(*) = 2 FROM chancy_workers w
	WHERE w.database = 'app' AND w.kind = 'executor' AND w.state = 'idle'
	AND EXISTS (SELECT FROM chancy_workers s WHERE s.kind = 'supervisor' AND s.database = 'app'
				AND s.pid IS NOT NULL AND s.pid <> $old_sup)})
  or die 'app\'s supervisor never came back';
$id = sql('app', q{SELECT chancy_push('public.note', '{"what": "after supervisor restart"}')});
is(sql('app', "SELECT state FROM chancy_wait($id, '30 s')"), 'succeeded',
	'a job runs in app after its supervisor restarted');
sql('postgres', 'SELECT pg_reload_conf()');
$node->restart;
$node->poll_query_until('postgres', q{SELECT count(*) = 2 FROM chancy_workers
	WHERE database = 'app' AND kind = 'executor' AND state = 'idle'})
  or die 'app\'s executors never came back after the restart';

# Jobs and queue management by the superuser, with app's search_path.
is(sql('app', q{SHOW search_path}), 'public, pg_catalog', 'the superuser\'s session has it too');
my @app_ids = split /\n/, sql('app', q{
	SELECT chancy_push('public.note', '{"what": "default"}');
	SELECT chancy_push('public.note', '{"what": "q1"}', queue => 'q1', unique_key => 'k1');
	SELECT chancy_push(chancy_with_priority(chancy_job('public.note'), 5));
});
is( sql('app', join(' UNION ALL ', map { "SELECT state::text FROM chancy_wait($_, '30 s')" } @app_ids)),
	"succeeded\nsucceeded\nsucceeded", 'the superuser\'s jobs run in app');
# (times are computed elsewhere: now() in app would be dbo's now())
my $soon = sql('postgres', q{SELECT clock_timestamp() + interval '1 s'});
sql('app', qq{
	SELECT chancy_declare_queue('q1', 1, time_limit => '1 min');
	SELECT chancy_pause_queue('q1');
	SELECT chancy_resume_queue('q1');
	SELECT chancy_pause_queue('default', '$soon');
});
$id = sql('app', q{SELECT chancy_push('public.note', '{"what": "after pause"}')});
is(sql('app', "SELECT state FROM chancy_wait($id, '30 s')"), 'succeeded',
	'declare, pause and resume work there');
my $cancel = sql('app', q{SELECT chancy_push('public.note', scheduled_at => '2999-01-01')});
is(sql('app', "SELECT state FROM chancy_cancel($cancel)"), 'cancelled', 'and cancels');

# The "$user" schema: a look-alike chancy_queues in schema "postgres",
# whose trigger would make dbo superuser.
as_role('dbo', 'app', q{
	CREATE SCHEMA postgres;
	CREATE TABLE postgres.chancy_queues (LIKE public.chancy_queues);
	INSERT INTO postgres.chancy_queues SELECT * FROM public.chancy_queues;
	CREATE FUNCTION postgres.grab() RETURNS trigger LANGUAGE plpgsql
	SET search_path = pg_catalog AS $$
	BEGIN PERFORM public.evil_hit('trigger on postgres.chancy_queues'); RETURN NEW; END $$;
	CREATE TRIGGER grab BEFORE UPDATE ON postgres.chancy_queues
		FOR EACH ROW EXECUTE FUNCTION postgres.grab();
	GRANT USAGE ON SCHEMA postgres TO PUBLIC;
	GRANT ALL ON postgres.chancy_queues TO PUBLIC;
});
sql('app', q{SET search_path = "$user", public; SELECT chancy_pause_queue('q1')});
is(app(q{SELECT paused_until = 'infinity' FROM public.chancy_queues WHERE name = 'q1'}), 't',
	'chancy_pause_queue with "$user" first in the search_path paused the real queue');
is(app(q{SELECT paused_until IS NULL FROM postgres.chancy_queues WHERE name = 'q1'}), 't',
	'... not the look-alike');
sql('app', q{SET search_path = "$user", public; SELECT chancy_resume_queue('q1')});
is(app(q{SELECT paused_until IS NULL OR paused_until <= now() FROM public.chancy_queues WHERE name = 'q1'}),
	't', '... and resumed it');

is(is_super('dbo'), 'f', 'dbo never became superuser');
# (the server log also has the functions' source: log_statement = all)
my @evil_lines = grep { /LOG:\s+EVIL: (?!%)/ } split /\n/, slurp_file($node->logfile);
is(scalar @evil_lines, 0, 'none of dbo\'s operators, functions or triggers ran as a superuser')
  or diag(join("\n", @evil_lines));

##########################################################################
# 9. The executor budget is enforced when a queue is declared or raised
#    (not when it is lowered).
##########################################################################

my $used = sql('postgres', q{SELECT sum(concurrency) FROM chancy_queues})
  + app(q{SELECT sum(concurrency) FROM public.chancy_queues});
is($used, 4, 'the queues of both databases use 4 executors');
my $ask = $max_executors - $used + 1;
# If one goes through, it is undone (what follows needs app's executors):
# a DELETE is never refused, and a queue of 1 then fits.
sub undo_budget
{
	sql('postgres', q{SELECT chancy_delete_queue(name, true) FROM chancy_queues
		WHERE name = 'big' OR (name = 'held' AND concurrency <> 1)});
	sql('postgres', q{SELECT chancy_declare_queue('held', 1)});
}
($ret, $out, $err) = try('postgres', 'postgres', "SELECT chancy_declare_queue('big', $ask)");
like($err, qr/ERROR:\s+53400:/, "a new queue of $ask executors is refused (53400)");
like($err, qr/HINT:.*chancy\.max_executors/, '... with a hint naming chancy.max_executors');
is(sql('postgres', q{SELECT count(*) FROM chancy_queues WHERE name = 'big'}), '0',
	'... and the queue was not created');
undo_budget();
# Raising an existing queue over the budget is refused the same way.
my $raise = 1 + $ask;
($ret, $out, $err) = try('postgres', 'postgres', "SELECT chancy_declare_queue('held', $raise)");
like($err, qr/ERROR:\s+53400:/, "raising a queue by $ask executors is refused (53400)");
is(sql('postgres', q{SELECT concurrency FROM chancy_queues WHERE name = 'held'}), '1',
	'... and its concurrency is unchanged');
undo_budget();

# Over the budget through chancy.queues (which the supervisors declare,
# and which the server only logs), an operator can still lower a queue.
$node->append_conf('postgresql.conf', "chancy.queues = 'default:4'");
$node->reload;
ok( wait_until('postgres', q{SELECT concurrency = 4 FROM chancy_queues WHERE name = 'default'}, 30)
	  && wait_until('app', q{SELECT concurrency = 4 FROM public.chancy_queues WHERE name = 'default'}, 30),
	'(chancy.queues = \'default:4\' puts both databases over the budget)');
($ret, $out, $err) = try('postgres', 'postgres', "SELECT chancy_declare_queue('default', 1)");
is($ret, 0, 'lowering a queue of a database over its budget is allowed') or diag($err);
$node->append_conf('postgresql.conf', "chancy.queues = 'default:1'");
$node->reload;
# (undone by deleting and declaring again if it was refused)
sql('postgres', q{SELECT chancy_delete_queue('default', true) WHERE
	(SELECT concurrency FROM chancy_queues WHERE name = 'default') <> 1;
	SELECT chancy_declare_queue('default', 1);});
app(q{SELECT chancy_delete_queue('default', true) WHERE
	(SELECT concurrency FROM public.chancy_queues WHERE name = 'default') <> 1;
	SELECT chancy_declare_queue('default', 1);});

##########################################################################
# 5. CREATE DATABASE ... TEMPLATE and ALTER DATABASE ... RENAME of a
#    served database (review item 23).
##########################################################################

$node->poll_query_until('postgres', q{SELECT count(*) = 2 FROM chancy_workers
	WHERE database = 'app' AND kind = 'executor' AND state = 'idle'})
  or die 'app\'s executors are not all there';
my $pids = sql('postgres', q{SELECT string_agg(pid::text, ',') FROM chancy_workers WHERE database = 'app'});
($ret, $out, $err) = try('postgres', 'postgres', 'CREATE DATABASE copy TEMPLATE app');
is($ret, 0, 'CREATE DATABASE copy TEMPLATE app succeeds') or diag($err);
ok( wait_until('postgres', qq{SELECT count(*) = 2 FROM chancy_workers
	WHERE database = 'app' AND kind = 'executor' AND state = 'idle' AND pid <> ALL ('{$pids}')}, 30),
	'app\'s workers (new ones) came back after it');
$id = sql('app', q{SELECT chancy_push('public.note', '{"what": "after template"}')});
is(sql('app', "SELECT state FROM chancy_wait($id, '30 s')"), 'succeeded', '... and run its jobs');
is(sql('postgres', q{SELECT count(*) FROM chancy_workers WHERE database = 'copy'}), '0',
	'the copy (not listed) is not served');

($ret, $out, $err) = try('postgres', 'postgres', 'ALTER DATABASE app RENAME TO app2');
is($ret, 0, 'ALTER DATABASE app RENAME TO app2 succeeds') or diag($err);
ok( wait_until('postgres', q{SELECT count(*) = 0 FROM chancy_workers
	WHERE database IN ('app', 'app2') OR (kind <> 'launcher' AND database IS NULL)}, 30),
	'app2 is not served (not listed): its workers are gone');

##########################################################################
# 4. (cont.) Without other sessions, DROP DATABASE succeeds quickly even
#    with a job running there.
##########################################################################

sql('postgres', 'ALTER DATABASE app2 RENAME TO app');
sql('postgres', 'SELECT pg_reload_conf()');
$node->poll_query_until('postgres', q{SELECT count(*) = 2 FROM chancy_workers
	WHERE database = 'app' AND kind = 'executor' AND state = 'idle'})
  or die 'app is not served again after renaming it back';
$id = sql('app', q{SELECT chancy_push('public.nap')});
$node->poll_query_until('postgres', "SELECT count(*) = 1 FROM chancy_workers WHERE job_id = $id")
  or die 'the nap never started';
my $start = time;
($ret, $out, $err) = try('postgres', 'postgres', 'DROP DATABASE app');
my $took = time - $start;
is($ret, 0, 'DROP DATABASE app succeeds with a job running there') or diag($err);
ok($took < 15, sprintf('... quickly (%.1f s)', $took));
ok( wait_until('postgres', q{SELECT count(*) = 0 FROM chancy_workers
	WHERE kind <> 'launcher' AND (database IS NULL OR database = 'app')}, 30),
	'... and its workers\' slots are freed');
$id = sql('postgres', q{SELECT chancy_push('report')});
is(sql('postgres', "SELECT state FROM chancy_wait($id, '30 s')"), 'succeeded',
	'postgres is still served');

sql('postgres', 'DROP DATABASE copy');

##########################################################################
# 11. Jobs of different roles run by one executor share nothing: not
#     cursors (WITH HOLD ones cannot be made in a security-restricted
#     operation), not large-object descriptors, not SET
#     CONSTRAINTS (second security review, defect 2).  The jobs are known
#     short, so one claim takes them all, in one batch.
##########################################################################

sql('postgres', q{
CREATE ROLE lalice LOGIN;
CREATE ROLE lmal LOGIN;
GRANT USAGE ON SCHEMA public TO lalice, lmal;
CREATE TABLE lsecret (s text);
INSERT INTO lsecret VALUES ('alice-secret');
GRANT SELECT ON lsecret TO lalice;
CREATE TABLE lparent (id int PRIMARY KEY);
INSERT INTO lparent VALUES (1);
CREATE TABLE lchild (id int REFERENCES lparent DEFERRABLE INITIALLY IMMEDIATE);
GRANT SELECT ON lparent TO lalice;
GRANT INSERT ON lchild TO lalice;
CREATE TABLE lclaims (job bigint, claim bigint);
-- which claim each job ran under (chancy_jobs shows each role its own only)
CREATE FUNCTION note_claim() RETURNS void LANGUAGE sql SECURITY DEFINER
	SET search_path = pg_catalog, public AS $$
	INSERT INTO lclaims SELECT id, claim FROM chancy_jobs WHERE id = (chancy_current_job()).id $$;
CREATE FUNCTION leak_cursors(kwargs jsonb) RETURNS void LANGUAGE plpgsql AS $$
DECLARE c refcursor := 'leak';
BEGIN
	PERFORM note_claim();
	OPEN c FOR SELECT s FROM lsecret;
END $$;
CREATE FUNCTION leak_lo(kwargs jsonb) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
	PERFORM note_claim();
	PERFORM lo_open((kwargs->>'lo')::oid, 262144);
END $$;
CREATE FUNCTION defer_all(kwargs jsonb) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
	PERFORM note_claim();
	SET CONSTRAINTS ALL DEFERRED;
END $$;
CREATE FUNCTION peek(kwargs jsonb) RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
	got jsonb := '{}';
	r record;
BEGIN
	PERFORM note_claim();
	BEGIN
		EXECUTE 'FETCH leak' INTO r;
		got := got || jsonb_build_object('cursor', r.s);
	EXCEPTION WHEN OTHERS THEN
		got := got || jsonb_build_object('cursor', SQLSTATE);
	END;
	BEGIN
		got := got || jsonb_build_object('lo', convert_from(loread(0, 100), 'UTF8'));
	EXCEPTION WHEN OTHERS THEN
		got := got || jsonb_build_object('lo', SQLSTATE);
	END;
	RETURN got;
END $$;
CREATE FUNCTION fk_insert(kwargs jsonb) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
	PERFORM note_claim();
	INSERT INTO lchild VALUES (1);
END $$;
});
my $lo = as_role('lalice', 'postgres',
	q{SELECT lo_from_bytea(0, convert_to('alice-large-object', 'UTF8'))});
sub push_as
{
	my ($role, $name, $kwargs) = @_;
	return as_role($role, 'postgres', "SELECT chancy_push('$name', '$kwargs')");
}
# warm up: each function runs once, fast, in the executor of default
for my $job (['lalice', 'leak_cursors', '{}'], ['lalice', 'leak_lo', qq({"lo": $lo})],
	['lmal', 'defer_all', '{}'], ['lmal', 'peek', '{}'], ['lalice', 'fk_insert', '{}'])
{
	my $wid = push_as(@$job);
	sql('postgres', "SELECT chancy_wait($wid, '30 s')");
}
sql('postgres', q{TRUNCATE lclaims; SELECT chancy_pause_queue('default')});
my @ids = (push_as('lalice', 'leak_cursors', '{}'), push_as('lalice', 'leak_lo', qq({"lo": $lo})),
	push_as('lmal', 'defer_all', '{}'), push_as('lmal', 'peek', '{}'),
	push_as('lalice', 'fk_insert', '{}'));
sql('postgres', q{SELECT chancy_resume_queue('default')});
my $list = join(',', @ids);
is(sql('postgres', "SELECT string_agg(w.state::text, ' ' ORDER BY w.id) FROM chancy_jobs j,"
	  . " LATERAL chancy_wait(j.id, '30 s') w WHERE j.id IN ($list)"),
	'succeeded succeeded succeeded succeeded succeeded',
	'the five jobs of two roles succeed (alice\'s foreign key holds after mallory deferred all)');
is(sql('postgres', "SELECT count(DISTINCT claim) FROM lclaims WHERE job IN ($list)"), '1',
	'... all five under one claim: one batch of one executor');
is(sql('postgres', "SELECT result FROM chancy_jobs WHERE id = $ids[3]"),
	'{"lo": "42704", "cursor": "34000"}',
	'mallory\'s job finds none of alice\'s cursors or large-object descriptors');

is(is_super('mallory') . is_super('dbo'), 'ff', 'in the end, neither mallory nor dbo is superuser');
$node->stop;
done_testing();
