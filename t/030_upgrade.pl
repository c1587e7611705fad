# Upgrading from version 1.0: ALTER EXTENSION chancy UPDATE gives the same
# catalog as a fresh CREATE EXTENSION chancy (1.1), keeps every job, wakes a
# supervisor that was waiting for it (no restart), and corrects, with a
# notice, the rows that 1.1's rules refuse.
use strict;
use warnings;
use FindBin;
use lib $FindBin::RealBin;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use ChancyTest;
use Time::HiRes qw(time);

my $node = chancy_node('upgrade', qq{chancy.database = 'postgres, up'
chancy.queues = 'default:2'
chancy.max_executors = 6
max_worker_processes = 16
});

sub sql
{
	my ($db, $query) = @_;
	return $node->safe_psql($db, $query);
}

#--------------------------------------------------------------------------
# 1. The catalog after CREATE EXTENSION chancy VERSION '1.0'; ALTER
#    EXTENSION chancy UPDATE equals that of a fresh CREATE EXTENSION chancy.
#    pg_dump does not print an extension's members, so the same catalog
#    queries run in both databases and their outputs are compared.
#--------------------------------------------------------------------------

sql('postgres', 'CREATE DATABASE fresh');
sql('postgres', 'CREATE DATABASE upgraded');
sql('fresh', 'CREATE EXTENSION chancy');
is(sql('upgraded', q{CREATE EXTENSION chancy VERSION '1.0';
	SELECT extversion FROM pg_extension WHERE extname = 'chancy'}), '1.0',
	'version 1.0 can still be installed');
sql('upgraded', 'ALTER EXTENSION chancy UPDATE');
is(sql('upgraded', q{SELECT extversion FROM pg_extension WHERE extname = 'chancy'}),
	'1.1', 'ALTER EXTENSION chancy UPDATE goes to 1.1 (the default version)');

# The extension's members, as (classid, objid).
my $members = q{
	SELECT d.classid, d.objid FROM pg_depend d JOIN pg_extension e ON e.oid = d.refobjid
	 WHERE d.refclassid = 'pg_extension'::regclass AND d.deptype = 'e' AND e.extname = 'chancy'};
# Its relations: tables, views, and the relations of its composite types.
my $rels = qq{
	SELECT objid FROM ($members) m WHERE classid = 'pg_class'::regclass
	UNION SELECT t.typrelid FROM ($members) m JOIN pg_type t ON t.oid = m.objid
	 WHERE m.classid = 'pg_type'::regclass AND t.typrelid <> 0};
my %catalog_queries = (
	'01 extension' => q{
		SELECT extname, extversion, extrelocatable, extnamespace::regnamespace,
			   (SELECT array_agg(c::regclass ORDER BY c::regclass::text) FROM unnest(extconfig) c),
			   extcondition, obj_description(oid, 'pg_extension')
		  FROM pg_extension WHERE extname = 'chancy'},
	'02 members' => qq{
		SELECT pg_describe_object(classid, objid, 0) FROM ($members) m ORDER BY 1},
	'03 relations' => qq{
		SELECT c.relname, c.relkind, c.relpersistence, c.reloptions, c.relacl,
			   c.relrowsecurity, c.relforcerowsecurity, c.relreplident, c.relhasindex,
			   c.relnatts, obj_description(c.oid, 'pg_class')
		  FROM pg_class c WHERE c.oid IN ($rels) ORDER BY c.relname},
	'04 columns' => qq{
		SELECT c.relname, a.attnum, a.attname, format_type(a.atttypid, a.atttypmod),
			   a.attnotnull, a.attidentity, a.attgenerated, a.attcollation::regcollation,
			   a.attstorage, a.attacl, pg_get_expr(d.adbin, d.adrelid),
			   col_description(c.oid, a.attnum)
		  FROM pg_class c JOIN pg_attribute a ON a.attrelid = c.oid
		  LEFT JOIN pg_attrdef d ON d.adrelid = c.oid AND d.adnum = a.attnum
		 WHERE c.oid IN ($rels) AND a.attnum > 0
		 ORDER BY c.relname, a.attnum},
	'05 dropped columns' => qq{
		SELECT c.relname, count(*) FROM pg_class c JOIN pg_attribute a ON a.attrelid = c.oid
		 WHERE c.oid IN ($rels) AND a.attisdropped GROUP BY c.relname ORDER BY 1},
	'06 constraints' => qq{
		SELECT conrelid::regclass::text, conname, contype, pg_get_constraintdef(oid),
			   condeferrable, condeferred, convalidated, conislocal,
			   obj_description(oid, 'pg_constraint')
		  FROM pg_constraint WHERE conrelid IN ($rels) ORDER BY 1, 2},
	'07 indexes' => qq{
		SELECT i.indexrelid::regclass::text, pg_get_indexdef(i.indexrelid), i.indisunique,
			   i.indisprimary, i.indisvalid, i.indisreplident, ic.reloptions,
			   obj_description(i.indexrelid, 'pg_class')
		  FROM pg_index i JOIN pg_class ic ON ic.oid = i.indexrelid
		 WHERE i.indrelid IN ($rels) ORDER BY 1},
	'08 triggers' => qq{
		SELECT tgrelid::regclass::text, tgname, pg_get_triggerdef(oid), tgenabled,
			   obj_description(oid, 'pg_trigger')
		  FROM pg_trigger WHERE tgrelid IN ($rels) AND NOT tgisinternal ORDER BY 1, 2},
	'09 policies' => qq{
		SELECT polrelid::regclass::text, polname, polcmd, polpermissive, polroles::regrole[],
			   pg_get_expr(polqual, polrelid), pg_get_expr(polwithcheck, polrelid),
			   obj_description(oid, 'pg_policy')
		  FROM pg_policy WHERE polrelid IN ($rels) ORDER BY 1, 2},
	'10 functions' => qq{
		SELECT p.oid::regprocedure, pg_get_functiondef(p.oid), p.proacl,
			   obj_description(p.oid, 'pg_proc')
		  FROM pg_proc p JOIN ($members) m ON m.classid = 'pg_proc'::regclass AND m.objid = p.oid
		 ORDER BY p.oid::regprocedure::text},
	'11 views' => qq{
		SELECT c.relname, pg_get_viewdef(c.oid, true), c.reloptions, c.relacl,
			   obj_description(c.oid, 'pg_class')
		  FROM pg_class c WHERE c.oid IN ($rels) AND c.relkind = 'v' ORDER BY 1},
	'12 types' => qq{
		SELECT t.typname, t.typtype, t.typacl, t.typrelid <> 0, obj_description(t.oid, 'pg_type')
		  FROM pg_type t JOIN ($members) m ON m.classid = 'pg_type'::regclass AND m.objid = t.oid
		 ORDER BY 1},
	'13 enum labels' => qq{
		SELECT enumtypid::regtype::text, row_number() OVER (PARTITION BY enumtypid ORDER BY enumsortorder),
			   enumlabel
		  FROM pg_enum WHERE enumtypid IN (SELECT objid FROM ($members) m
										   WHERE classid = 'pg_type'::regclass)
		 ORDER BY 1, 2},
	'14 sequences' => qq{
		SELECT s.seqrelid::regclass::text, format_type(s.seqtypid, NULL), s.seqstart, s.seqincrement,
			   s.seqmax, s.seqmin, s.seqcache, s.seqcycle, c.relacl
		  FROM pg_sequence s JOIN pg_class c ON c.oid = s.seqrelid
		  JOIN pg_depend d ON d.classid = 'pg_class'::regclass AND d.objid = s.seqrelid
		 WHERE d.refclassid = 'pg_class'::regclass AND d.refobjid IN ($rels)
		 ORDER BY 1},
	'15 initial privileges' => qq{
		SELECT pg_describe_object(classoid, objoid, objsubid), privtype, initprivs
		  FROM pg_init_privs WHERE (classoid, objoid) IN (SELECT * FROM ($members) m)
		 ORDER BY 1},
	'16 rows of chancy_queues' => q{
		SELECT name, concurrency, paused_until, backoff_base, backoff_factor, backoff_max,
			   time_limit, executor, prune_after, memory_limit, from_config
		  FROM chancy_queues ORDER BY name},
);

# Every query's output in database db, as one text with a header per query.
sub catalog_text
{
	my ($db) = @_;
	my $text = '';
	for my $name (sort keys %catalog_queries)
	{
		$text .= "=== $name\n"
		  . $node->safe_psql($db, $catalog_queries{$name}, extra_params => ['-A', '-F', ' | '])
		  . "\n";
	}
	return $text;
}

my $fresh = catalog_text('fresh');
my $upgraded = catalog_text('upgraded');
# the queries do see the objects (a query broken for both would compare equal)
like($fresh, qr/=== 10 functions\n.*chancy_push_many\(chancy_job\[\]\)/s,
	'the catalog queries list the extension\'s functions');
like($fresh, qr/=== 04 columns\n.*chancy_jobs \| 24 \| cancelled_by \| regrole/s,
	'and the columns of its tables');
for my $name (sort keys %catalog_queries)
{
	my ($f) = $fresh =~ /=== \Q$name\E\n(.*?)(?:\n===|\z)/s;
	my ($u) = $upgraded =~ /=== \Q$name\E\n(.*?)(?:\n===|\z)/s;
	is($u, $f, "after the update, $name equal a fresh install's");
}

# pg_dump --schema-only in binary-upgrade mode does print the members (as
# pg_upgrade would recreate them); apart from the OIDs it preserves, both
# dumps are the same.
sub dump_schema
{
	my ($db) = @_;
	my ($stdout, $stderr);
	my $ok = IPC::Run::run([ 'pg_dump', '--schema-only', '--binary-upgrade', '--no-owner',
			'--dbname', $node->connstr($db) ], '>', \$stdout, '2>', \$stderr);
	die "pg_dump $db failed: $stderr" unless $ok;
	# drop the OIDs and xids that binary-upgrade mode preserves, the random
	# key of \restrict, and the database's name
	$stdout =~ s/^SELECT pg_catalog\.binary_upgrade_set_next_\w+\(.*\n//mg;
	$stdout =~ s/^-- Dumped .*\n//mg;
	$stdout =~ s/^\\(un)?restrict \w+$//mg;
	$stdout =~ s/relfrozenxid = '\d+'/relfrozenxid = 'X'/g;
	$stdout =~ s/^WHERE oid = '\d+';$/WHERE oid = 'X';/mg;
	$stdout =~ s/\b$db\b/DB/g;
	# the OIDs of the configuration tables (their names are compared above)
	$stdout =~ s/(binary_upgrade_create_empty_extension\('chancy', .*?)'\{[\d,]+\}'/$1'{X}'/g;
	# a column added with a default keeps it for the rows it found: a
	# storage detail of ALTER TABLE ADD COLUMN, not a difference of schema
	$stdout =~ s/^-- set missing value\.\n.*binary_upgrade_set_missing_value\(.*\n\n\n//mg;
	return $stdout;
}
my $fresh_dump = dump_schema('fresh');
my $upgraded_dump = dump_schema('upgraded');
like($fresh_dump, qr/CREATE TABLE public\.chancy_jobs/,
	'a binary-upgrade dump shows the extension\'s tables');
# on a mismatch, show a diff rather than both dumps
ok($upgraded_dump eq $fresh_dump,
	'pg_dump --schema-only --binary-upgrade of both databases is the same')
  or do
{
	my $dir = $PostgreSQL::Test::Utils::tmp_check;
	unlink("$dir/030_fresh.sql", "$dir/030_upgraded.sql");
	append_to_file("$dir/030_fresh.sql", $fresh_dump);
	append_to_file("$dir/030_upgraded.sql", $upgraded_dump);
	diag(scalar `diff -u $dir/030_fresh.sql $dir/030_upgraded.sql`);
};

#--------------------------------------------------------------------------
# 2. A served database at version 1.0: the 1.1 library will not work with
#    its objects (the supervisor says to update and waits; a push is an
#    error with that hint); ALTER EXTENSION chancy UPDATE then keeps every
#    job, and the supervisor starts working at once, without a restart.
#--------------------------------------------------------------------------

my $offset = -s $node->logfile;
sql('postgres', 'CREATE DATABASE up');
sql('up', q{
CREATE EXTENSION chancy VERSION '1.0';
CREATE ROLE alice LOGIN;
-- grants that did nothing in 1.0 (the functions ran as their caller)
GRANT EXECUTE ON FUNCTION chancy_pause_queue(text, timestamptz),
	chancy_resume_queue(text) TO alice;
CREATE TABLE ran (n int, job bigint, by_role text);
GRANT INSERT ON ran TO PUBLIC;
CREATE FUNCTION upjob(kwargs jsonb) RETURNS void LANGUAGE sql AS $$
	INSERT INTO ran VALUES ((kwargs->>'n')::int, (chancy_current_job()).id, current_user) $$;
});
ok($node->wait_for_log(
		qr/extension chancy in database "up" must be updated\n(?:.*\n)*?.*DETAIL:  Its version is 1\.0; the installed library needs version 1\.1\.(?:.*\n)*?.*HINT:  Run ALTER EXTENSION chancy UPDATE in that database\./,
		$offset),
	'the supervisor of a database at 1.0 logs that it needs ALTER EXTENSION chancy UPDATE');
my $supervisor = sql('up', q{SELECT pid FROM pg_stat_activity
	WHERE datname = 'up' AND application_name = 'chancy supervisor'});
like($supervisor, qr/^\d+$/, 'and waits, connected to the database');

my ($ret, $out, $err) = $node->psql('up', q{SELECT chancy_push('upjob')});
like($err,
	qr/ERROR:  extension chancy must be updated\nDETAIL:  Its version is 1\.0; the installed library needs version 1\.1\.\nHINT:  Run ALTER EXTENSION chancy UPDATE\./,
	'chancy_push at 1.0 is an error saying to run ALTER EXTENSION chancy UPDATE');
($ret, $out, $err) = $node->psql('up', q{SELECT chancy_declare_queue('work', 2)});
like($err, qr/ERROR:  extension chancy must be updated\n(?:.*\n)*HINT:  Run ALTER EXTENSION chancy UPDATE\./,
	'so is declaring a queue with the 1.0 function');

# What the 1.0 library left: queues (three with a time limit, a backoff or
# a prune_after that 1.1 refuses), definitions (one with a time limit 1.1
# refuses), and jobs written as 1.0 wrote them (function a qualified
# signature, no OID): 1000 pending, 10 scheduled for tomorrow, 5 failed,
# 1 running under the claim of an executor long gone.  The 1.1 library
# refuses to push at 1.0, and its trigger on chancy_queues too, so the rows
# go in directly, with triggers off.
sql('up', q{
SET session_replication_role = replica;
INSERT INTO chancy_queues (name, concurrency) VALUES ('default', 2), ('work', 2);
INSERT INTO chancy_queues (name, concurrency, time_limit) VALUES ('bad_limit', 0, '-1 year 360 days 1 s');
INSERT INTO chancy_queues (name, concurrency, backoff_base, backoff_max)
	VALUES ('bad_backoff', 0, '1 second', '400 days');
INSERT INTO chancy_queues (name, concurrency, prune_after) VALUES ('bad_prune', 0, '1 day -1 hour');
INSERT INTO chancy_job_definitions (name, function, queue, priority, max_attempts, kwargs, defined_by)
	VALUES ('defjob', 'public.upjob(jsonb)', 'work', 5, 3, '{"n": 0}', 'postgres');
INSERT INTO chancy_job_definitions (name, function, time_limit, defined_by)
	VALUES ('bad_def', 'public.upjob(jsonb)', '-1 year 360 days 1 s', 'postgres');
INSERT INTO chancy_jobs (name, function, queue, priority, max_attempts, kwargs, pushed_by)
	SELECT 'defjob', 'public.upjob(jsonb)', CASE WHEN n % 2 = 0 THEN 'work' ELSE 'default' END,
		   5, 3, jsonb_build_object('n', n), 'postgres'
	  FROM generate_series(1, 1000) n;
INSERT INTO chancy_jobs (name, function, queue, priority, max_attempts, kwargs, pushed_by,
						 scheduled_at)
	SELECT 'defjob', 'public.upjob(jsonb)', 'work', 5, 3, jsonb_build_object('n', n),
		   'postgres', now() + interval '1 day'
	  FROM generate_series(2001, 2010) n;
INSERT INTO chancy_jobs (name, function, queue, priority, max_attempts, kwargs, pushed_by,
						 state, attempts, started_at, completed_at, errors)
	SELECT 'defjob', 'public.upjob(jsonb)', 'work', 5, 1, jsonb_build_object('n', n),
		   'postgres', 'failed', 1, now(), now(), '[{"attempt": 1, "message": "boom"}]'
	  FROM generate_series(3001, 3005) n;
INSERT INTO chancy_jobs (name, function, queue, priority, max_attempts, kwargs, pushed_by,
						 state, attempts, started_at, claim)
	VALUES ('defjob', 'public.upjob(jsonb)', 'work', 5, 1, '{"n": 4001}', 'postgres',
			'running', 1, now(), 12345);
});
# an operator's privileges on the functions 1.1 makes anew stay
sql('up', q{CREATE ROLE up_pusher;
	REVOKE EXECUTE ON FUNCTION chancy_push(text, jsonb, text, int, int, timestamptz, text, interval, bigint, jsonb) FROM PUBLIC;
	GRANT EXECUTE ON FUNCTION chancy_push(text, jsonb, text, int, int, timestamptz, text, interval, bigint, jsonb) TO up_pusher});
is(sql('up', q{SELECT count(*) FROM ran}), '0', 'nothing runs at 1.0');
is(sql('up', q{SELECT count(*) FROM pg_stat_activity
	WHERE datname = 'up' AND application_name LIKE 'chancy executor%'}), '0',
	'no executor is started for it');

my $started = sql('up', 'SELECT pg_postmaster_start_time()');
my (undef, undef, $notices) =
  $node->psql('up', 'ALTER EXTENSION chancy UPDATE', on_error_die => 1);
my $updated_at = time;
is(sql('up', q{SELECT has_function_privilege('up_pusher', 'chancy_push(text, jsonb, text, int, int, timestamptz, text, interval, bigint, jsonb, text[])', 'EXECUTE')
	|| ' ' || has_function_privilege('public', 'chancy_push(text, jsonb, text, int, int, timestamptz, text, interval, bigint, jsonb, text[])', 'EXECUTE')
	|| ' ' || has_function_privilege('public', 'chancy_define_job(text, text, text, int, int, jsonb, interval, bigint, text[])', 'EXECUTE')}),
	'true false true', 'chancy_push made anew keeps its grants (PUBLIC revoked, a role granted); chancy_define_job its default');
sql('up', q{GRANT EXECUTE ON FUNCTION chancy_push(text, jsonb, text, int, int, timestamptz, text, interval, bigint, jsonb, text[]) TO PUBLIC});

# Every pending job runs, promptly: the supervisor was woken by the update
# (its fallback sleep is a minute) and the server did not restart.
$node->poll_query_until('up',
	q{SELECT count(*) = 1001 FROM chancy_jobs WHERE state = 'succeeded'})
  or diag(sql('up', q{SELECT state, count(*) FROM chancy_jobs GROUP BY 1 ORDER BY 1}));
my $elapsed = time - $updated_at;
cmp_ok($elapsed, '<', 30, sprintf('all live jobs finished %.1f s after the update', $elapsed));
is(sql('up', 'SELECT pg_postmaster_start_time()'), $started, 'without a restart');
is(sql('up', q{SELECT pid FROM pg_stat_activity
	WHERE datname = 'up' AND application_name = 'chancy supervisor'}), $supervisor,
	'the supervisor that waited is the one that works');
is(sql('up', q{SELECT count(*) || ' ' || count(DISTINCT n) || ' ' || min(n) || ' ' || max(n)
	FROM ran WHERE n <= 1000}), '1000 1000 1 1000', 'each of the 1000 pending jobs ran once');
is(sql('up', q{SELECT count(*) FROM chancy_jobs j JOIN ran r ON r.job = j.id
	WHERE (j.kwargs->>'n')::int = r.n AND j.state = 'succeeded' AND j.attempts = 1}), '1001',
	'as the job recorded for it, in one attempt');
is(sql('up', q{SELECT count(*) || ' ' || bool_and(state = 'pending' AND attempts = 0
	AND started_at IS NULL AND claim IS NULL AND scheduled_at > now() + interval '23 hours')
	FROM chancy_jobs WHERE (kwargs->>'n')::int BETWEEN 2001 AND 2010}), '10 true',
	'the 10 scheduled jobs stay pending for tomorrow');
is(sql('up', q{SELECT count(*) || ' ' || bool_and(state = 'failed' AND attempts = 1
	AND errors = '[{"attempt": 1, "message": "boom"}]' AND claim IS NULL)
	FROM chancy_jobs WHERE (kwargs->>'n')::int BETWEEN 3001 AND 3005}), '5 true',
	'the 5 failed jobs stay failed, their errors kept');
is(sql('up', q{SELECT count(*) FROM ran WHERE n > 1000 AND n <> 4001}), '0',
	'none of those ran');
is(sql('up', q{SELECT state || ' crashes=' || crashes || ' attempts=' || attempts
	|| ' claim=' || coalesce(claim::text, 'none')
	FROM chancy_jobs WHERE kwargs->>'n' = '4001'}),
	'succeeded crashes=0 attempts=1 claim=none',
	'the job running under a dead claim was given back uncharged and ran');
is(sql('up', q{SELECT count(*) FROM ran WHERE n = 4001}), '1', 'once');
like(slurp_file($node->logfile, $offset), qr/1 job whose executor had gone was given back/,
	'the log says it was given back');

# Live jobs and definitions got the OID of the function they name; final
# jobs keep none.
is(sql('up', q{SELECT count(*) FILTER (WHERE function_oid = 'upjob(jsonb)'::regprocedure)
	|| ' ' || count(*) FILTER (WHERE function_oid IS NULL AND state = 'failed')
	|| ' ' || count(*) FROM chancy_jobs}), '1011 5 1016',
	'the 1011 live jobs got function_oid, the failed ones none');
is(sql('up', q{SELECT string_agg(name || '=' || (function_oid = 'upjob(jsonb)'::regprocedure)::text,
	', ' ORDER BY name) FROM chancy_job_definitions}), 'bad_def=true, defjob=true',
	'and so did the definitions');

# The definitions and queues made under 1.0 work by name, for the owner and
# for another role (the owner's definitions are everyone's defaults).
my $id = sql('up', q{SELECT chancy_push('defjob', '{"n": 5001}')});
is(sql('up', qq{SELECT state || ' ' || queue || ' ' || priority || ' ' || max_attempts
	FROM chancy_wait($id, '60 s')}), 'succeeded work 5 3',
	'a 1.0 definition pushes by name, with its defaults');
$id = $node->safe_psql('up', q{SELECT chancy_push('defjob', '{"n": 5002}')},
	extra_params => [ '-U', 'alice' ]);
is($node->safe_psql('up', qq{SELECT state FROM chancy_wait($id, '60 s')},
		extra_params => [ '-U', 'alice' ]), 'succeeded',
	'and for another role');
is(sql('up', q{SELECT by_role FROM ran WHERE n = 5002}), 'alice', 'which runs as that role');
is(sql('up', q{SELECT (chancy_declare_queue('work', concurrency => 1)).concurrency}), '1',
	'a queue declared under 1.0 can be changed with the 1.1 function');
# The queue functions, now SECURITY DEFINER, were made anew: 1.0's grants
# (which did nothing then) do not become effective.
for my $call (q{chancy_pause_queue('work')}, q{chancy_resume_queue('work')})
{
	my ($ret, $out, $err) = $node->psql('up', "SELECT $call",
		extra_params => [ '-U', 'alice' ]);
	like($err, qr/permission denied for function/,
		"a 1.0 grant does not let alice run $call");
}
$id = sql('up', q{SELECT chancy_push('defjob', '{"n": 5003}', queue => 'work')});
is(sql('up', qq{SELECT state FROM chancy_wait($id, '60 s')}), 'succeeded',
	'and runs jobs');

#--------------------------------------------------------------------------
# 3. Rows 1.1's rules refuse are corrected by the update, with a notice.
#--------------------------------------------------------------------------

# The script's messages must reach the client; PostgreSQL runs an extension
# script with client_min_messages at least WARNING, so a NOTICE raised there
# is never seen: either level is accepted here, as long as it arrives.
like($notices, qr/(?:NOTICE|WARNING):  time limits of queues longer than 366 days, shorter than 1 ms or with negative parts were removed/,
	'the update tells the client it removed a queue\'s time limit');
like($notices, qr/(?:NOTICE|WARNING):  retry backoffs of queues beyond 366 days were reset to the defaults/,
	'and reset a queue\'s backoff');
like($notices, qr/(?:NOTICE|WARNING):  time limits of job definitions longer than 366 days, shorter than 1 ms or with negative parts were removed/,
	'and removed a definition\'s time limit');
is(sql('up', q{SELECT coalesce(time_limit::text, 'NULL') FROM chancy_queues WHERE name = 'bad_limit'}),
	'NULL', 'a 1.0 queue time limit of -1 year 360 days 1 s is removed');
is(sql('up', q{SELECT backoff_base || ' ' || backoff_max FROM chancy_queues WHERE name = 'bad_backoff'}),
	'00:00:01 01:00:00', 'a backoff_max of 400 days is reset to the defaults');
is(sql('up', q{SELECT coalesce(prune_after::text, 'NULL') FROM chancy_queues WHERE name = 'bad_prune'}),
	'NULL', 'a prune_after with a negative part is removed');
is(sql('up', q{SELECT coalesce(time_limit::text, 'NULL') FROM chancy_job_definitions WHERE name = 'bad_def'}),
	'NULL', 'a definition\'s time limit with a negative part is removed');
is(sql('up', q{SELECT string_agg(name || ':' || from_config::text, ' ' ORDER BY name)
	FROM chancy_queues}),
	'bad_backoff:false bad_limit:false bad_prune:false default:true work:false',
	'only the queue of chancy.queues follows the setting');

ok(!$node->log_contains(qr/terminated by signal|PANIC/), 'no server process died');
$node->stop;
done_testing();
