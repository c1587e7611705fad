# Bounds and leftovers: chancy_wait's memory over a thousand wake-ups; a
# batch claim bounded by the size of its kwargs; no sequence state carried
# from job to job; a session that outlives DROP/CREATE EXTENSION chancy;
# chancy_delete_queue under a hostile search_path; DROP EXTENSION with
# running jobs; chancy_delete_queue(purge_jobs) while an executor holds a
# batch; a group of writing jobs within the subtransaction XID cache.
use strict;
use warnings;
use FindBin;
use lib $FindBin::RealBin;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time usleep);
use ChancyTest;

my $t0 = time;
my $node = chancy_node('bounds', q{chancy.database = 'postgres, d4, d6'
chancy.queues = 'default:1'
chancy.max_executors = 14
max_worker_processes = 24
});

sub sql { return $node->safe_psql('postgres', shift); }

# (ret, stdout, stderr) of a statement as a role, with verbose errors.
sub try_as
{
	my ($role, $db, $q) = @_;
	return $node->psql($db, "\\set VERBOSITY verbose\n$q",
		connstr => $node->connstr($db) . " user=$role");
}

# Wait until a query in postgres is true, or show the live jobs and die.
sub poll
{
	my ($query, $what) = @_;
	return if $node->poll_query_until('postgres', $query);
	diag(sql(q{SELECT id, name, queue, state, claim, attempts, started_at FROM chancy_jobs
		WHERE state IN ('pending', 'running', 'retrying') ORDER BY id LIMIT 30}));
	diag(sql(q{SELECT * FROM chancy_workers}));
	die "timed out waiting: $what";
}

# The ids chancy_push_many returned, as a comma-separated list.
sub push_many
{
	my ($db, $array) = @_;
	my $ids = $node->safe_psql($db, "SELECT array_to_string(chancy_push_many($array), ',')");
	return $ids;
}

sql(q{
	CREATE EXTENSION chancy;
	CREATE EXTENSION chancy_examples;
	CREATE DATABASE d4;
	CREATE DATABASE d6;
	SELECT chancy_declare_queue('held', 1);
	SELECT chancy_pause_queue('held');
	SELECT chancy_declare_queue('noops', 2);
	SELECT chancy_declare_queue('tq', 1);
	SELECT chancy_declare_queue('sq', 1);
	SELECT chancy_declare_queue('hq', 1);
	SELECT chancy_declare_queue('pq', 1);
	-- a nap of kwargs.s seconds that records its run (SQL-standard body:
	-- parsed now, before block 5 plants operators in public)
	CREATE TABLE naps (job bigint, at timestamptz);
	CREATE FUNCTION nap(kwargs jsonb) RETURNS void LANGUAGE sql
	BEGIN ATOMIC
		INSERT INTO public.naps VALUES ((chancy_current_job()).id, clock_timestamp());
		SELECT pg_sleep((kwargs->>'s')::float8);
	END;
	-- a job that is not known short in any executor (never run before)
	CREATE FUNCTION other(kwargs jsonb) RETURNS void LANGUAGE sql BEGIN ATOMIC SELECT 1; END;
});
$node->safe_psql('d4', 'CREATE EXTENSION chancy');
$node->safe_psql('d6', 'CREATE EXTENSION chancy');
poll(q{SELECT count(*) = 10 FROM chancy_workers WHERE kind = 'executor' AND state IN ('idle', 'paused')},
	'10 executors');

##########################################################################
# 1. chancy_wait uses constant memory however many wake-ups: a session
#    waits for a job of a paused queue while 64,000 no-op jobs run, 1 in
#    64 of which shares its condition variable (job_id % 64) and wakes it;
#    its memory (pg_log_backend_memory_contexts) grows by less than 32 kB
#    between the first 6,400 jobs and the end.
##########################################################################

my $w = sql(q{SELECT chancy_push('noop', queue => 'held')});
my $waiter = $node->background_psql('postgres', timeout => 300);
# in a transaction, so that pg_stat_xact_user_tables counts its reads after
$waiter->query_safe('BEGIN');
$waiter->query_until(qr/waiting\n/, "\\echo waiting\nSELECT state FROM chancy_wait($w, '120 s');\n");
poll(q{SELECT count(*) = 1 FROM pg_stat_activity WHERE query LIKE 'SELECT state FROM chancy_wait(%'
	AND state = 'active' AND wait_event_type = 'Extension'}, 'the waiter sleeping');
my $wpid = sql(q{SELECT pid FROM pg_stat_activity WHERE query LIKE 'SELECT state FROM chancy_wait(%'});

# The waiter's memory: (grand total, used) from its memory context dump.
sub waiter_memory
{
	my $off = -s $node->logfile;
	sql("SELECT pg_log_backend_memory_contexts($wpid)");
	my $re = qr/\[$wpid\][^\n]*LOG:\s+Grand total: (\d+) bytes in \d+ blocks; \d+ free \(\d+ chunks\); (\d+) used/;
	$node->wait_for_log($re, $off);
	my ($total, $used) = slurp_file($node->logfile, $off) =~ $re;
	return ($total, $used);
}

my $noops = 0;
sub run_noops
{
	my ($chunks, $size) = @_;
	for (1 .. $chunks)
	{
		sql("SELECT cardinality(chancy_push_many(array_fill(chancy_with_queue(chancy_job('noop'), 'noops'),
			ARRAY[$size])))");
		$noops += $size;
	}
	poll("SELECT count(*) = $noops FROM chancy_jobs WHERE queue = 'noops' AND state = 'succeeded'",
		"$noops no-op jobs");
}
my $t1 = time;
run_noops(2, 3200);
my ($total1, $used1) = waiter_memory();
run_noops(18, 3200);
my ($total2, $used2) = waiter_memory();
my $wakes = sql("SELECT count(*) FROM chancy_jobs WHERE queue = 'noops' AND id % 64 = $w % 64");
diag(sprintf('1. %d no-op jobs in %.1f s; %d of them share the waiter\'s condition variable',
	$noops, time - $t1, $wakes));
diag("1. waiter memory after 6,400 jobs: $total1 bytes ($used1 used); after $noops: $total2 bytes ($used2 used)");
ok($wakes >= 990, "1. $wakes finished jobs woke the waiter's condition variable");
ok($total2 - $total1 < 32768, '1. the waiter\'s memory grew by less than 32 kB: ' . ($total2 - $total1) . ' bytes');
ok($used2 - $used1 < 32768, '1. ... and its used memory too: ' . ($used2 - $used1) . ' bytes');

# The waiter is still waiting; the job runs once its queue resumes.
is(sql("SELECT state FROM chancy_jobs WHERE id = $w"), 'pending', '1. the waited job is still pending');
sql(q{SELECT chancy_resume_queue('held')});
my $wout = $waiter->query(q{SELECT 'reads=' || coalesce(idx_scan, 0) FROM pg_stat_xact_user_tables
	WHERE relid = 'chancy_jobs'::regclass});
like($wout, qr/^succeeded\nreads=\d+$/, '1. chancy_wait returned the job, succeeded, once its queue resumed');
my ($reads) = $wout =~ /reads=(\d+)/;
ok(defined $reads && $reads >= $wakes / 2,
	"1. the waiter read the job " . ($reads // 'no') . " times (woken by $wakes jobs): it was woken, and slept again");
$waiter->query_safe('COMMIT');
$waiter->quit;

##########################################################################
# 2. A batch claim is bounded by the size of its kwargs as well as by
#    chancy.batch_size: a known-short job with small kwargs is claimed in
#    big batches; with ~400 kB of incompressible kwargs each, a claim holds
#    at most 3 (1 MB in all).  Each job records how many jobs carry its
#    claim.
##########################################################################

sql(q{
	CREATE TABLE claims (job bigint, n int);
	-- (the id in a subquery of its own: chancy_current_job() is volatile, and
	-- as a plain condition it would make a scan of every job: not short)
	CREATE FUNCTION tiny(kwargs jsonb) RETURNS void LANGUAGE sql AS $$
		INSERT INTO claims SELECT (chancy_current_job()).id, (SELECT count(*) FROM chancy_jobs
			WHERE claim = (SELECT claim FROM chancy_jobs WHERE id = (SELECT (chancy_current_job()).id)))
	$$;
});
# warm up: tiny runs fast in tq's executor, so it is known short there
my $ids = push_many('postgres', q{ARRAY(SELECT chancy_with_queue(chancy_job('tiny'), 'tq')
	FROM generate_series(1, 5))});
sql("SELECT chancy_wait(id, '30 s') FROM unnest('{$ids}'::int8[]) id");

# Jobs pushed while tq is paused, all ready when it resumes: the claim's
# largest batch (what the first job of a batch sees).
sub claimed_together
{
	my $array = shift;
	sql(q{SELECT chancy_pause_queue('tq')});
	my $ids = push_many('postgres', $array);
	my $sizes = sql("SELECT min(pg_column_size(kwargs)) || ' ' || max(pg_column_size(kwargs))
		FROM chancy_jobs WHERE id IN ($ids)");
	sql(q{SELECT chancy_resume_queue('tq')});
	my $states = sql("SELECT string_agg(DISTINCT (chancy_wait(id, '60 s')).state::text, ',')
		FROM unnest('{$ids}'::int8[]) id");
	my $seen = sql("SELECT count(*) || ' ' || max(n) || ' ' || string_agg(n::text, ',' ORDER BY job)
		FROM claims WHERE job IN ($ids)");
	return ($states, $sizes, split(/ /, $seen));
}

my ($states, $sizes, $count, $max, $list) = claimed_together(q{ARRAY(SELECT
	chancy_with_kwargs(chancy_with_queue(chancy_job('tiny'), 'tq'), jsonb_build_object('i', g))
	FROM generate_series(1, 40) g)});
diag("2. 40 small jobs: kwargs $sizes bytes; jobs per claim, as each job saw it: $list");
is("$states $count", 'succeeded 40', '2. 40 tiny jobs with small kwargs succeeded');
ok($max > 10, "2. ... claimed in big batches (at most $max jobs carried one claim)");

($states, $sizes, $count, $max, $list) = claimed_together(q{ARRAY(SELECT
	chancy_with_kwargs(chancy_with_queue(chancy_job('tiny'), 'tq'), jsonb_build_object('blob',
		(SELECT string_agg(md5(random()::text || g || i), '') FROM generate_series(1, 12500) i)))
	FROM generate_series(1, 10) g)});
diag("2. 10 jobs of ~400 kB kwargs: kwargs $sizes bytes (min max); jobs per claim: $list");
ok((split / /, $sizes)[0] > 300_000, "2. their kwargs are incompressible: pg_column_size min/max $sizes");
is("$states $count", 'succeeded 10', '2. the 10 tiny jobs with big kwargs succeeded');
ok($max <= 3, "2. no claim held more than 3 of them (at most $max)");

##########################################################################
# 3. Jobs leave no sequence state: job A (nextval) then job B (lastval) in
#    the one executor of sq: B fails with 55000, lastval not yet defined.
#    Also within one claim (A and C pushed together, C catching the error).
##########################################################################

sql(q{
	CREATE SEQUENCE s3;
	CREATE TABLE seqlog (job bigint, pid int, what text);
	CREATE FUNCTION seq_a(kwargs jsonb) RETURNS void LANGUAGE plpgsql AS $$
	DECLARE v bigint := nextval('s3');
	BEGIN
		INSERT INTO seqlog VALUES ((chancy_current_job()).id, pg_backend_pid(),
			'nextval ' || v || ' lastval ' || lastval());
	END $$;
	CREATE FUNCTION seq_b(kwargs jsonb) RETURNS bigint LANGUAGE plpgsql AS $$
	BEGIN
		RAISE LOG 'seq_b job % runs in pid %', (chancy_current_job()).id, pg_backend_pid();
		RETURN lastval();
	END $$;
	CREATE FUNCTION seq_c(kwargs jsonb) RETURNS void LANGUAGE plpgsql AS $$
	BEGIN
		INSERT INTO seqlog VALUES ((chancy_current_job()).id, pg_backend_pid(),
			'lastval ' || lastval());
	EXCEPTION WHEN object_not_in_prerequisite_state THEN
		INSERT INTO seqlog VALUES ((chancy_current_job()).id, pg_backend_pid(), 'lastval ' || SQLSTATE);
	END $$;
});
my $ja = sql(q{SELECT chancy_push('seq_a', queue => 'sq')});
is(sql("SELECT state FROM chancy_wait($ja, '30 s')"), 'succeeded', '3. A (nextval) succeeded');
my $log_off = -s $node->logfile;
my $jb = sql(q{SELECT chancy_push('seq_b', queue => 'sq')});
is( sql("SELECT state || ' ' || (errors->0->>'sqlstate') || ' ' || (errors->0->>'message')
	FROM chancy_wait($jb, '30 s')"),
	'failed 55000 lastval is not yet defined in this session',
	'3. B, run after A, failed: lastval is not yet defined in this session (55000)');
my ($a_pid, $a_what) = split /\|/, sql("SELECT pid || '|' || what FROM seqlog WHERE job = $ja");
like($a_what, qr/^nextval (\d+) lastval \1$/, "3. within A, lastval worked ($a_what)");
$node->wait_for_log(qr/seq_b job $jb runs in pid \d+/, $log_off);
my ($b_pid) = slurp_file($node->logfile, $log_off) =~ /seq_b job $jb runs in pid (\d+)/;
is($b_pid, $a_pid, "3. A and B ran in the same executor (pid $a_pid)");
my ($ja2, $jc) = split /,/, push_many('postgres', q{ARRAY[chancy_with_queue(chancy_job('seq_a'), 'sq'),
	chancy_with_queue(chancy_job('seq_c'), 'sq')]});
sql("SELECT chancy_wait(id, '30 s') FROM unnest(ARRAY[$ja2, $jc]) id");
is( sql("SELECT string_agg(pid || ' ' || what, ', ' ORDER BY job) FROM seqlog WHERE job IN ($ja2, $jc)")
	  =~ s/nextval (\d+) lastval \1/nextval/r,
	"$a_pid nextval, $a_pid lastval 55000",
	'3. pushed together, C after A in the same executor: lastval not defined either');

##########################################################################
# 4. A session survives DROP EXTENSION chancy; CREATE EXTENSION chancy in
#    another session: without reconnecting, it pushes, its job runs, and
#    what it had cached (a queue, a definition) is forgotten.
##########################################################################

$node->safe_psql('d4', q{
	CREATE TABLE notes (what text);
	CREATE FUNCTION note(kwargs jsonb) RETURNS void LANGUAGE sql AS $$
		INSERT INTO public.notes VALUES (kwargs->>'what') $$;
	SELECT chancy_declare_queue('q4', 0);
});
my $s1 = $node->background_psql('d4', on_error_stop => 0, timeout => 120);
$s1->query_safe("\\set VERBOSITY verbose");

# (stdout, stderr) of a statement in S1.
sub s1
{
	my $q = shift;
	$s1->{stderr} = '';
	my $out = $s1->query($q);
	my $err = $s1->{stderr};
	$s1->{stderr} = '';
	return ($out, $err);
}
# S1 defines n4, pushes to q4 (concurrency 0: parked), pushes note and n4
my ($out, $err) = s1(q{SELECT 1 FROM chancy_define_job('n4', 'note(jsonb)', kwargs => '{"what": "n4"}');
	SELECT 1 FROM chancy_push('note', '{"what": "parked"}', queue => 'q4');
	SELECT chancy_push('note', '{"what": "before"}') AS id \gset
	SELECT state FROM chancy_wait(:id, '30 s');
	SELECT chancy_push('n4') AS id \gset
	SELECT state FROM chancy_wait(:id, '30 s');});
is("$out|$err", "1\n1\nsucceeded\nsucceeded|", '4. S1 pushes jobs before the reinstall; they run');
$node->safe_psql('d4', 'DROP EXTENSION chancy');
$node->safe_psql('d4', 'CREATE EXTENSION chancy');
($out, $err) = s1(q{SELECT chancy_push('note', '{"what": "after"}') AS id \gset
	SELECT state FROM chancy_wait(:id, '60 s');});
is("$out|$err", 'succeeded|', '4. after DROP/CREATE EXTENSION elsewhere, S1 pushes again without error; the job runs');
($out, $err) = s1(q{SELECT (chancy_push_many(ARRAY[chancy_with_kwargs(chancy_job('note'),
	'{"what": "after, many"}')]))[1] AS id \gset
	SELECT state FROM chancy_wait(:id, '60 s');});
is("$out|$err", 'succeeded|', '4. ... and with chancy_push_many of a chancy_job (the type is new)');
($out, $err) = s1(q{SELECT chancy_push('note', queue => 'q4')});
like($err, qr/ERROR:\s+42704:/, '4. S1\'s push to q4, a queue of the old installation, is refused (42704)');
($out, $err) = s1(q{SELECT chancy_push('n4')});
like($err, qr/ERROR:/, '4. S1\'s push of n4, a definition of the old installation, is refused');
is( $node->safe_psql('d4', q{SELECT string_agg(what, ',' ORDER BY what) FROM notes}),
	'after,after, many,before,n4', '4. the notes of the jobs before and after');
$s1->quit;

##########################################################################
# 5. chancy_delete_queue under a hostile search_path: a role granted it,
#    whose search_path is public, where it planted operators and functions
#    that mimic pg_catalog's (they log and record themselves, and would make
#    it superuser).  Deletes with and without purge_jobs, including one
#    while an executor holds a batch, do what they say; none of its objects
#    ran.
##########################################################################

sql(q{
	CREATE ROLE qadmin LOGIN;
	GRANT CREATE ON SCHEMA public TO qadmin;
	GRANT EXECUTE ON FUNCTION chancy_delete_queue(text, boolean) TO qadmin;
	ALTER ROLE qadmin SET search_path = public;
	CREATE TABLE public.hits (who text, what text);
	GRANT INSERT ON public.hits TO PUBLIC;
	SELECT chancy_declare_queue('h1', 0);
	SELECT chancy_declare_queue('h2', 0);
});
my $evil = q{
CREATE FUNCTION public.hit(what text) RETURNS void LANGUAGE plpgsql
SET search_path = pg_catalog AS $$
BEGIN
	RAISE LOG 'EVIL: % ran as %', what, current_user;
	INSERT INTO public.hits VALUES (current_user, what);
	IF (SELECT rolsuper FROM pg_roles WHERE rolname OPERATOR(pg_catalog.=) current_user) THEN
		EXECUTE 'ALTER ROLE qadmin SUPERUSER';
	END IF;
END $$;
};
$evil .= hostile_operators('hit', { '=' => 'eq', '<>' => 'ne' },
	'public.chancy_state', 'text', 'int8', 'bool', 'name');
$evil .= q{
CREATE FUNCTION public.format(f text, a bigint) RETURNS text LANGUAGE plpgsql
SET search_path = pg_catalog AS $$
BEGIN PERFORM public.hit('function format(text, bigint)'); RETURN pg_catalog.format(f, a); END $$;
CREATE FUNCTION public.now() RETURNS timestamptz LANGUAGE plpgsql
SET search_path = pg_catalog AS $$
BEGIN PERFORM public.hit('function now()'); RETURN pg_catalog.now(); END $$;
CREATE FUNCTION public.clock_timestamp() RETURNS timestamptz LANGUAGE plpgsql
SET search_path = pg_catalog AS $$
BEGIN PERFORM public.hit('function clock_timestamp()'); RETURN pg_catalog.clock_timestamp(); END $$;
};
my ($ret, $stdout, $stderr) = try_as('qadmin', 'postgres', $evil);
is($ret, 0, '5. qadmin planted its operators and functions in public') or diag($stderr);
is((try_as('qadmin', 'postgres', 'SHOW search_path'))[1], 'public', '5. qadmin\'s search_path is public');
# The trap works: a comparison of chancy_state under qadmin's search_path
# (as in chancy_delete_queue: state <> 'running') runs its operator, which
# beats pg_catalog's anyenum one.
try_as('qadmin', 'postgres', q{SELECT 'pending'::chancy_state <> 'running'});
is(sql(q{SELECT string_agg(who || ': ' || what, '; ') FROM public.hits}),
	'qadmin: operator <> (public.chancy_state)',
	'5. (control: qadmin\'s own chancy_state <> \'running\' runs its operator)');

# The superuser's own statements here must not run qadmin's objects (that
# would be the test's fault): pg_catalog alone, chancy's objects qualified.
sub su { return sql("SET search_path = pg_catalog;\n" . shift); }

# Jobs of h1: finished only; of h2: pending.
my $h1 = su(q{SELECT string_agg((public.chancy_cancel(public.chancy_push('public.other', queue => 'h1'))).id::text, ',')
	FROM generate_series(1, 2)});
my $h2 = su(q{SELECT string_agg(public.chancy_push('public.other', queue => 'h2')::text, ',')
	FROM generate_series(1, 3)});

($ret, $stdout, $stderr) = try_as('qadmin', 'postgres', q{SELECT chancy_delete_queue('h2')});
like($stderr, qr/ERROR:\s+55006: queue "h2" has jobs that have not finished\nDETAIL:\s+Jobs pending, retrying or running: 3\./,
	'5. delete of h2 without purge_jobs, its jobs pending: refused (55006), detail counts 3');
is( su(qq{SELECT (SELECT count(*) FROM public.chancy_queues WHERE name OPERATOR(pg_catalog.=) 'h2')
	|| ' ' || (SELECT string_agg(state::text, ',') FROM public.chancy_jobs WHERE id IN ($h2))}),
	'1 pending,pending,pending', '5. ... h2 and its jobs are still there');
($ret, $stdout, $stderr) = try_as('qadmin', 'postgres', q{SELECT chancy_delete_queue('h1')});
is($ret, 0, '5. delete of h1 (only finished jobs) without purge_jobs succeeds') or diag($stderr);
is( su(qq{SELECT (SELECT count(*) FROM public.chancy_queues WHERE name OPERATOR(pg_catalog.=) 'h1')
	|| ' ' || (SELECT string_agg(state::text, ',') FROM public.chancy_jobs WHERE id IN ($h1))}),
	'0 cancelled,cancelled', '5. ... h1 is gone, its finished jobs kept');
($ret, $stdout, $stderr) = try_as('qadmin', 'postgres', q{SELECT chancy_delete_queue('h2', purge_jobs => true)});
is($ret, 0, '5. delete of h2 with purge_jobs succeeds') or diag($stderr);
is( su(qq{SELECT (SELECT count(*) FROM public.chancy_queues WHERE name OPERATOR(pg_catalog.=) 'h2')
	|| ' ' || (SELECT count(*) FROM public.chancy_jobs WHERE id IN ($h2))}),
	'0 0', '5. ... h2 and its jobs are gone');

# hq: an executor holds [nap 1.5 s running, nap 0, nap 0]; other (not
# known short) waits unclaimed behind them.  A purge as qadmin.
sub warm_nap
{
	my $q = shift;
	my $ids = push_many('postgres', "ARRAY(SELECT chancy_with_kwargs(chancy_with_queue(chancy_job('nap'),
		'$q'), '{\"s\": 0}') FROM generate_series(1, 4))");
	sql("SELECT chancy_wait(id, '30 s') FROM unnest('{$ids}'::int8[]) id");
	return $ids;
}

# Pause q, push nap s=$first then nap 0 x 3 (and @more), resume: the ids,
# once the first runs and the next three carry its claim, still pending.
sub held_batch
{
	my ($q, $first, @more) = @_;
	sql("SELECT chancy_pause_queue('$q')");
	my $array = "ARRAY[chancy_with_kwargs(chancy_with_queue(chancy_job('nap'), '$q'), '{\"s\": $first}')"
	  . join('', map { ", chancy_with_kwargs(chancy_with_queue(chancy_job('nap'), '$q'), '{\"s\": 0}')" } 1 .. 3)
	  . join('', map { ", $_" } @more) . ']';
	my @ids = split /,/, push_many('postgres', $array);
	sql("SELECT chancy_resume_queue('$q')");
	# (state::text: block 5's operators on chancy_state are not the superuser's to run)
	poll("SELECT state::text = 'running' FROM chancy_jobs WHERE id = $ids[0]", "$q: first nap running");
	return @ids;
}

my $hq_warm = warm_nap('hq');
my @hq = held_batch('hq', 1.5, q{chancy_with_queue(chancy_job('other'), 'hq')});
is( su(qq{SELECT string_agg(j.state::text || '/'
	|| coalesce((j.claim OPERATOR(pg_catalog.=) f.claim)::text, 'unclaimed'), ','
	ORDER BY j.id) FROM public.chancy_jobs j, public.chancy_jobs f
	WHERE f.id OPERATOR(pg_catalog.=) $hq[0] AND j.id IN ($hq[1], $hq[2], $hq[3], $hq[4])}),
	'pending/true,pending/true,pending/true,pending/unclaimed',
	'5. hq: the three naps behind the running one carry its claim; other is unclaimed');
($ret, $stdout, $stderr) = try_as('qadmin', 'postgres', q{SELECT chancy_delete_queue('hq', true)});
is($ret, 0, '5. delete of hq with purge_jobs while its executor holds a batch succeeds') or diag($stderr);
is( su(qq{SELECT string_agg(CASE WHEN EXISTS (SELECT FROM public.chancy_jobs WHERE id OPERATOR(pg_catalog.=) i)
	THEN (SELECT w.state::text FROM public.chancy_wait(i, '30 s') w) ELSE 'deleted' END, ','
	ORDER BY o) FROM unnest(ARRAY[$hq[0], $hq[1], $hq[2], $hq[3], $hq[4]]::int8[]) WITH ORDINALITY AS u(i, o)}),
	'succeeded,cancelled,cancelled,cancelled,deleted',
	'5. ... the running nap succeeded, the held ones ended cancelled, the unclaimed one was deleted');
is( su(qq{SELECT count(*) FROM public.naps WHERE job IN ($hq[1], $hq[2], $hq[3])}), '0',
	'5. ... the held naps never ran');
is( su(qq{SELECT count(*) FROM public.chancy_jobs WHERE id IN ($hq_warm)}), '0',
	'5. ... and hq\'s finished jobs were deleted');
is(su(q{SELECT count(*) FROM public.chancy_queues WHERE name OPERATOR(pg_catalog.=) 'hq'}), '0',
	'5. ... hq is gone');

is(su(q{SELECT count(*) FROM public.hits WHERE who OPERATOR(pg_catalog.<>) 'qadmin'}), '0',
	'5. none of qadmin\'s objects ran for chancy (public.hits has only the control)');
my @evil_lines = grep { /LOG:\s+EVIL: (?!%)/ && !/ran as qadmin$/ } split /\n/, slurp_file($node->logfile);
is(scalar @evil_lines, 0, '5. ... nor logged (even in a statement rolled back)') or diag(join("\n", @evil_lines));
is(su(q{SELECT rolsuper FROM pg_roles WHERE rolname OPERATOR(pg_catalog.=) 'qadmin'}), 'f',
	'5. qadmin is not superuser');
su(q{DROP OWNED BY qadmin});

##########################################################################
# 6. DROP EXTENSION chancy with running jobs.  README: "`DROP EXTENSION
#    chancy` waits for the jobs being run to finish (it needs the table
#    their outcome goes to, as `DROP TABLE` waits for queries on the
#    table), then the workers of that database leave; the jobs still
#    pending are dropped with the extension."  Two jobs run (2 s, 3 s), one
#    is ready behind them, one is scheduled: DROP returns after both
#    running jobs committed their success; no error about recording an
#    outcome is logged; d6's executors leave; the pending jobs never run.
##########################################################################

$node->safe_psql('d6', q{
	SELECT chancy_declare_queue('default', 2);
	CREATE TABLE runs6 (tag text, started timestamptz, ended timestamptz);
	CREATE FUNCTION nap6(kwargs jsonb) RETURNS void LANGUAGE plpgsql AS $$
	DECLARE t0 timestamptz := clock_timestamp();
	BEGIN
		PERFORM pg_sleep((kwargs->>'s')::float8);
		INSERT INTO runs6 VALUES (kwargs->>'tag', t0, clock_timestamp());
	END $$;
});
poll(q{SELECT count(*) = 2 FROM chancy_workers WHERE database = 'd6' AND kind = 'executor' AND state = 'idle'},
	'2 idle executors in d6');
my $d6_ids = push_many('d6', q{ARRAY[
	chancy_with_kwargs(chancy_job('nap6'), '{"s": 2, "tag": "a"}'),
	chancy_with_kwargs(chancy_job('nap6'), '{"s": 3, "tag": "b"}')]});
$node->poll_query_until('d6', "SELECT count(*) = 2 FROM chancy_jobs WHERE id IN ($d6_ids) AND state = 'running'")
  or die 'the two naps of d6 never ran';
$node->safe_psql('d6', q{
	SELECT chancy_push('nap6', '{"s": 0, "tag": "c"}');
	SELECT chancy_push('nap6', '{"s": 0, "tag": "later"}', scheduled_at => now() + interval '2 s');
});
$log_off = -s $node->logfile;
my $drop_start = $node->safe_psql('d6', 'SELECT clock_timestamp()');
($ret, $stdout, $stderr) = $node->psql('d6', 'DROP EXTENSION chancy; SELECT clock_timestamp()');
is($ret, 0, '6. DROP EXTENSION chancy with two jobs running succeeds') or diag($stderr);
my $drop_end = (split /\n/, $stdout)[-1];
is( $node->safe_psql('d6', qq{SELECT string_agg(tag || ' ' || (ended <= '$drop_end'), ',' ORDER BY tag)
	|| ' ' || (max(ended) > '$drop_start') FROM runs6}),
	'a true,b true true',
	'6. DROP EXTENSION returned after both running jobs committed their success (b ended after it began)');
poll(q{SELECT count(*) = 0 FROM chancy_workers WHERE database = 'd6' AND kind = 'executor'
	AND (pid IS NOT NULL OR state <> 'exited')}, 'd6\'s executors leaving');
pass('6. then d6\'s executors left (exited)');
is( sql(q{SELECT count(*) FROM pg_stat_activity WHERE datname = 'd6' AND backend_type LIKE 'chancy%'}),
	'0', '6. no chancy process is left in d6');
# the scheduled job would have been due 2 s after its push: let that pass
$node->poll_query_until('d6', "SELECT clock_timestamp() > '$drop_end'::timestamptz + interval '2.5 s'");
is($node->safe_psql('d6', q{SELECT count(*) FROM runs6 WHERE tag IN ('c', 'later')}), '0',
	'6. the pending jobs (ready and scheduled) never ran: dropped with the extension');
my @errors = grep { /ERROR|outcome|discarded/ } split /\n/, slurp_file($node->logfile, $log_off);
is(scalar(grep { /outcome|record/i } @errors), 0, '6. no error about recording an outcome was logged')
  or diag(join("\n", @errors));
# (an executor whose claim waited behind the DROP's lock fails on the
# dropped table: it sees chancy is gone and leaves without reporting that)
is(scalar @errors, 0, '6. no ERROR at all was logged meanwhile') or diag(join("\n", @errors));

# Executors that left free their slots of chancy.max_executors ("the
# queues of all served databases share chancy.max_executors"): a queue of
# postgres declared within the budget gets every slot the executors of
# postgres and d4 leave.
my $free = sql(q{SELECT current_setting('chancy.max_executors')::int - count(*) FROM chancy_workers
	WHERE kind = 'executor' AND database <> 'd6'});
sql("SELECT chancy_declare_queue('after6', $free)");
my $deadline = time + 30;
my $got;
while (time < $deadline)
{
	$got = sql(q{SELECT count(*) FROM chancy_workers WHERE queue = 'after6' AND pid IS NOT NULL});
	last if $got == $free;
	usleep(100_000);
}
is($got, $free, "6. d6's executor slots were freed: a new queue of postgres got all $free free slots")
  or diag(sql(q{SELECT kind, database, queue, state, pid FROM chancy_workers ORDER BY 1, 2, 3}));
sql(q{SELECT chancy_delete_queue('after6')});
poll(q{SELECT count(*) = 0 FROM chancy_workers WHERE queue = 'after6'}, 'after6\'s executors leaving');

##########################################################################
# 7. chancy_delete_queue(name, purge_jobs => true), as the superuser, while
#    the executor of pq holds a batch [nap 2 s running, nap 0 x 3 claimed]:
#    the running one finishes and succeeds, the three held ones end
#    cancelled without running, nothing of pq is left live, pq is gone.
##########################################################################

warm_nap('pq');
my @pq = held_batch('pq', 2);
is( sql(qq{SELECT string_agg(j.state || '/' || (j.claim = f.claim) || '/' || (j.started_at IS NULL), ','
	ORDER BY j.id) FROM chancy_jobs j, chancy_jobs f WHERE f.id = $pq[0] AND j.id IN ($pq[1], $pq[2], $pq[3])}),
	'pending/true/true,pending/true/true,pending/true/true',
	'7. the three naps behind the running one carry its claim, pending, not started');
my $deleted_at = (split /\n/, sql(q{SELECT chancy_delete_queue('pq', purge_jobs => true);
	SELECT clock_timestamp()}))[-1];
is( sql(qq{SELECT state || ' ' || (completed_at > '$deleted_at') FROM chancy_wait($pq[0], '30 s')}),
	'succeeded true', '7. the running nap finished after the delete, and succeeded');
is( sql(qq{SELECT string_agg(w.state || '/' || (w.started_at IS NULL), ',' ORDER BY w.id)
	FROM unnest(ARRAY[$pq[1], $pq[2], $pq[3]]::int8[]) i, LATERAL chancy_wait(i, '30 s') w}),
	'cancelled/true,cancelled/true,cancelled/true', '7. the three held naps ended cancelled, never started');
is(sql(qq{SELECT string_agg(job::text, ',') FROM naps WHERE job IN ($pq[0], $pq[1], $pq[2], $pq[3])}),
	$pq[0], '7. only the running nap ran');
is( sql(q{SELECT count(*) FROM chancy_jobs WHERE queue = 'pq' AND state IN ('pending', 'retrying', 'running')}),
	'0', '7. no job of pq is left pending, retrying or running');
is(sql(q{SELECT count(*) FROM chancy_queues WHERE name = 'pq'}), '0', '7. pq is gone');
poll(q{SELECT count(*) = 0 FROM chancy_workers WHERE queue = 'pq'}, 'pq\'s executor leaving');
pass('7. pq\'s executor left');

##########################################################################
# 8. A group of writing jobs never overflows the process's cache of
# subtransaction XIDs (past 64, every snapshot in the cluster slows): each
# job here takes two (its own subtransaction and an exception block's)
create_test_jobs($node);
sql(q{CREATE TABLE sx (n int);
	CREATE TABLE sx_seen (count int, overflowed boolean);
	CREATE FUNCTION write_twice(kwargs jsonb) RETURNS void LANGUAGE plpgsql AS $$
	DECLARE
		seen jsonb;
	BEGIN
		INSERT INTO sx VALUES (1);
		BEGIN
			INSERT INTO sx VALUES (2);
		EXCEPTION WHEN OTHERS THEN NULL;
		END;
		seen := subxids('{}');
		INSERT INTO sx_seen VALUES ((seen->>'count')::int, (seen->>'overflowed')::boolean);
	END $$;});
# known short once run, then claimed 64 at a time
my $first = sql(q{SELECT chancy_push('write_twice')});
sql(qq{SELECT state FROM chancy_wait($first, '30 s')});
sql(q{SELECT chancy_push_many(array_agg(chancy_job('write_twice'))) FROM generate_series(1, 200)});
$node->poll_query_until('postgres', q{SELECT count(*) = 201 FROM sx_seen})
  or die 'the writing jobs never ran';
is(sql(q{SELECT bool_or(overflowed)::text || ' ' || (max(count) <= 64)::text FROM sx_seen}),
	'false true', 'no group of writing jobs overflowed the subtransaction XID cache');
cmp_ok(sql(q{SELECT max(count) FROM sx_seen}), '>=', 40,
	'while groups still held many jobs (the cap, not a slow machine, ended them)');

is(scalar(() = slurp_file($node->logfile) =~ /terminated by signal/g), 0, 'the server never restarted');
diag(sprintf('runtime %.1f s', time - $t0));
$node->stop;

done_testing();
