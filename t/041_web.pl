# chancy-web, the dashboard: logins as PostgreSQL roles (what each sees and
# may do), CSRF and origin checks, every action over HTTP checked in the
# table, bad input, /metrics and /health, a lost connection and a database
# that went away; then headless Chromium logs in, loads the overview of a
# cluster that ran a mixed workload, checks the rendered charts and counts,
# and writes docs/dashboard.png.
use strict;
use warnings;
use FindBin;
use lib $FindBin::RealBin;
use ChancyTest;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use HTTP::Tiny;
use IPC::Run;
use IO::Select;
use IO::Socket::INET;
use JSON::PP;
use MIME::Base64;
use POSIX ();
use Time::HiRes qw(time usleep);

my $node = chancy_node('web', "listen_addresses = '127.0.0.1'\nmax_connections = 40\n");
# passwords over TCP; "trusted" gets in without one (chancy-web must refuse)
open my $hba, '>', $node->data_dir . '/pg_hba.conf' or die;
print $hba "local all all trust\n"
  . "host all trusted 127.0.0.1/32 trust\n"
  . "host all all 127.0.0.1/32 scram-sha-256\n";
close $hba;
$node->reload;

my $port = $node->port;
$node->safe_psql('postgres', q{
CREATE EXTENSION chancy;
CREATE ROLE op LOGIN SUPERUSER PASSWORD 'op pw';
CREATE ROLE alice LOGIN PASSWORD 'alice pw';
CREATE ROLE bob LOGIN PASSWORD 'bob pw';
CREATE ROLE trusted LOGIN;
CREATE FUNCTION web_ok(kwargs jsonb) RETURNS jsonb LANGUAGE sql
  AS $$ SELECT jsonb_build_object('n', kwargs->'n', 'slept',
                                  pg_sleep((kwargs->>'ms')::float8 / 1000) IS NULL) $$;
CREATE FUNCTION web_fails(kwargs jsonb) RETURNS void LANGUAGE plpgsql
  AS $$ BEGIN RAISE EXCEPTION 'card % declined', kwargs->>'n'
        USING DETAIL = 'the bank said no', HINT = 'try another card'; END $$;
GRANT EXECUTE ON FUNCTION web_ok(jsonb), web_fails(jsonb) TO PUBLIC;
SELECT chancy_declare_queue('mail', concurrency => 2);
});

sub sql { return $node->safe_psql('postgres', $_[0]); }
sub as { my ($role, $q) = @_; return $node->safe_psql('postgres', $q, extra_params => [ '-U', $role ]); }

# Wait (up to $secs) until $cond returns true.
sub wait_for
{
	my ($cond, $secs) = @_;
	my $until = time + ($secs // 30);
	while (time < $until)
	{
		return 1 if $cond->();
		usleep(100_000);
	}
	return 0;
}

# Wait (up to $secs) until $query returns t.
sub poll
{
	my ($query, $secs) = @_;
	my $until = time + ($secs // 30);
	while (time < $until)
	{
		return 1 if sql($query) eq 't';
		usleep(100_000);
	}
	return 0;
}

# alice's jobs for the actions: one that failed, one waiting far ahead, a
# workflow that failed and one that waits
my $a_failed = as('alice', q{SELECT chancy_push('web_fails', '{"n": 0}', max_attempts => 1)});
as('alice', q{SELECT count(chancy_push('web_fails', jsonb_build_object('n', g), queue => 'mail',
	max_attempts => 1)) FROM generate_series(1, 3) g});
my $a_later = as('alice', q{SELECT chancy_push('web_ok', '{"n": "<script>alert(1)</script>"}',
	scheduled_at => now() + interval '1 day')});
my $b_later = as('bob', q{SELECT chancy_push('web_ok', '{"n": 1}', scheduled_at => now() + interval '1 day')});
my $wf_failed = as('alice', q{SELECT chancy_push_workflow('wf', ARRAY[
	chancy_step('a', chancy_with_max_attempts(chancy_job('web_fails'), 1)),
	chancy_step('b', chancy_job('web_ok'), '{a}')])});
my $wf_waiting = as('alice', q{SELECT chancy_push_workflow('later', ARRAY[
	chancy_step('a', chancy_with_scheduled_at(chancy_job('web_ok'), now() + interval '1 day'))])});
ok(poll(qq{SELECT state = 'failed' FROM chancy_jobs WHERE id = $a_failed})
	  && poll(qq{SELECT state = 'failed' FROM chancy_workflows WHERE id = $wf_failed}),
	'the job and the workflow the actions retry have failed');

# --- chancy-web, its machine endpoints as op (the password in the environment)
my $webport = PostgreSQL::Test::Cluster::get_free_port();
my $base = "http://127.0.0.1:$webport";
my ($out, $err) = ('', '');
my $web;
{
	local $ENV{PGPASSWORD} = 'op pw';
	$web = IPC::Run::start([ 'chancy-web', '--listen', "127.0.0.1:$webport",
		"host=127.0.0.1 port=$port dbname=postgres user=op" ],
		'>', \$out, '2>', \$err);
}
my $started = IPC::Run::timer(30);
$started->start;
$web->pump until $err =~ /serving/ || $started->is_expired;
like($err, qr{serving http://127\.0\.0\.1:$webport/}, 'chancy-web listens on the address it was given');

my $http = HTTP::Tiny->new(max_redirect => 0, timeout => 30);

# A request; $cookie is a session id, $form a POST's fields.
sub req
{
	my ($method, $path, $cookie, $form, $headers) = @_;
	my %h = %{ $headers // {} };
	$h{Cookie} = "chancy_session=$cookie" if $cookie;
	return $method eq 'POST'
	  ? $http->post_form("$base$path", $form // {}, { headers => \%h })
	  : $http->request($method, "$base$path", { headers => \%h });
}

# The status of a GET of $path that says it is for $host (HTTP::Tiny sets
# Host itself, so over a socket of our own).
sub status_for_host
{
	my ($path, $host) = @_;
	my $sock = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $webport) or die "connect: $!";
	print $sock "GET $path HTTP/1.1\r\nHost: $host\r\nConnection: close\r\n\r\n";
	my ($status) = (<$sock> // '') =~ m{^HTTP/1\.[01] (\d+)};
	close $sock;
	return $status // 0;
}

# Log in: the answer, and the session id its cookie carries.
sub login
{
	my ($user, $password) = @_;
	my $r = req('POST', '/login', undef, { user => $user, password => $password });
	my ($id) = ($r->{headers}{'set-cookie'} // '') =~ /chancy_session=([0-9a-f]{64})/;
	return ($r, $id);
}

# The CSRF token a logged-in page's forms carry.
sub csrf
{
	my ($cookie) = @_;
	my ($token) = req('GET', '/jobs', $cookie)->{content} =~ /name="csrf" value="([0-9a-f]{64})"/;
	return $token;
}

# The message a page shows (the flash of the last action, or the error).
sub said
{
	my ($r) = @_;
	my $text = ($r->{content} =~ /id="(?:flash|error)">([^<]*)</)[0] // '';
	my %entity = (quot => '"', '#39' => "'", lt => '<', gt => '>', amp => '&');
	$text =~ s/&(quot|#39|lt|gt|amp);/$entity{$1}/g;
	return $text;
}

# --- logging in
my $r = req('GET', '/');
is($r->{status} . ' ' . ($r->{headers}{location} // ''), '303 /login', 'a visitor is sent to the login page');
($r) = login('alice', 'wrong');
is($r->{status}, 401, 'a wrong password is refused');
like(said($r), qr/password authentication failed/, 'with the server\'s reason');
($r) = login('trusted', 'anything');
is($r->{status}, 401, 'a role the server lets in without a password is refused');
like(said($r), qr/without checking its password/, 'saying why');
$r = req('POST', '/login', undef, { user => 'alice' });
is($r->{status}, 400, 'a login without a password is a bad request');

my ($alice_r, $alice) = login('alice', 'alice pw');
my (undef, $bob) = login('bob', 'bob pw');
my (undef, $op) = login('op', 'op pw');
is($alice_r->{status}, 303, 'alice logs in');
ok($alice && $bob && $op, 'each login gets a session cookie');
like($alice_r->{headers}{'set-cookie'}, qr/; HttpOnly; SameSite=Strict/, 'the cookie is HttpOnly and SameSite=Strict');
$r = req('GET', '/', $alice);
is($r->{status}, 200, 'the overview loads');
like($r->{headers}{'content-security-policy'}, qr/default-src 'none'.*frame-ancestors 'none'/,
	'with a content security policy that loads nothing from elsewhere');
is(join(',', map { $r->{headers}{$_} // '-' } qw(x-frame-options x-content-type-options cache-control)),
	'DENY,nosniff,no-store', 'and the other secure headers');
like($r->{content}, qr{<span id="role">alice</span>}, 'naming the role logged in');
is(sql(q{SELECT count(*) FROM pg_stat_activity WHERE application_name = 'chancy-web'
	AND usename IN ('alice', 'bob', 'op')}), '3', 'each session is a connection of its own role');

# --- what each sees
$r = req('GET', '/jobs?queue=default', $alice);
like($r->{content}, qr{href="/jobs/$a_later"}, 'alice sees her jobs');
unlike($r->{content}, qr{href="/jobs/$b_later"}, 'not bob\'s');
like(req('GET', '/jobs?queue=default', $op)->{content}, qr{href="/jobs/$b_later".*href="/jobs/$a_later"}s,
	'an operator sees both');
is(req('GET', "/jobs/$b_later", $alice)->{status}, 404, 'bob\'s job is not there for alice');
$r = req('GET', "/jobs/$a_later", $alice);
like($r->{content}, qr{&lt;script&gt;alert\(1\)&lt;/script&gt;}, 'kwargs are shown escaped');
unlike($r->{content}, qr{<script}, 'no script reaches the page');
$r = req('GET', "/jobs/$a_failed", $alice);
like($r->{content}, qr{<div id="errors">.*card 0 declined.*the bank said no.*try another card}s,
	'a failed job\'s errors, with detail and hint');
like($r->{content}, qr{data-col="run_us"><pre>\d+<}, 'and what its run cost');
is(req('GET', '/limits', $alice)->{content} =~ /id="not-allowed"/ ? 1 : 0, 1,
	'a plain role is told it may not read the limits');
like(req('GET', '/limits', $op)->{content}, qr{<h1>Limits</h1>(<table>|<p class="empty">None)}, 'an operator reads them');
for my $page (qw(/queues /schedules /workers /workflows))
{
	is(req('GET', $page, $alice)->{status}, 200, "$page loads");
}
like(req('GET', "/workflows/$wf_failed", $alice)->{content}, qr{data-col="step">a<.*state-failed}s,
	'a workflow shows its steps');

# --- actions need the session's CSRF token, from this site
my $tok_a = csrf($alice);
my $tok_b = csrf($bob);
my $tok_op = csrf($op);
ok($tok_a && $tok_op && $tok_a ne $tok_op, 'each session has its own CSRF token');
$r = req('POST', "/jobs/$a_later/cancel", $alice, {});
is($r->{status}, 403, 'an action without the CSRF token is refused');
$r = req('POST', "/jobs/$a_later/cancel", $alice, { csrf => $tok_b });
is($r->{status}, 403, 'and with another session\'s');
$r = req('POST', "/jobs/$a_later/cancel", $alice, { csrf => $tok_a }, { Origin => 'http://evil.example' });
is($r->{status}, 403, 'and from another site');
$r = req('POST', "/jobs/$a_later/cancel", undef, { csrf => $tok_a });
is($r->{status}, 403, 'and without a session');
is(sql("SELECT state FROM chancy_jobs WHERE id = $a_later"), 'pending', 'the job is untouched');

# --- every action, checked in the table
$r = req('POST', "/jobs/$b_later/cancel", $alice, { csrf => $tok_a });
is($r->{status}, 404, 'alice cannot cancel bob\'s job');
is(sql("SELECT state FROM chancy_jobs WHERE id = $b_later"), 'pending', 'it stays pending');
$r = req('POST', "/jobs/$a_later/cancel", $alice, { csrf => $tok_a },
	{ Origin => "http://127.0.0.1:$webport" });
is($r->{status} . ' ' . $r->{headers}{location}, "303 /jobs/$a_later", 'alice cancels her job');
is(sql("SELECT state FROM chancy_jobs WHERE id = $a_later"), 'cancelled', 'it is cancelled');
like(said(req('GET', "/jobs/$a_later", $alice)), qr/Job $a_later: cancel sent; its state: cancelled/,
	'the next page says so');
req('POST', "/jobs/$a_later/cancel", $alice, { csrf => $tok_a });
like(said(req('GET', "/jobs/$a_later", $alice)), qr/has already finished/, 'a NOTICE reaches the page');

$r = req('POST', "/jobs/$a_failed/retry", $alice, { csrf => $tok_a });
is($r->{status}, 303, 'alice retries her failed job');
ok(poll(qq{SELECT state = 'failed' AND jsonb_array_length(errors) = 2 FROM chancy_jobs WHERE id = $a_failed}),
	'it ran again (and failed again)');
$r = req('POST', "/jobs/$b_later/retry", $bob, { csrf => $tok_b });
is($r->{status}, 409, 'a pending job is not retried (409)');
like(said($r), qr/job $b_later is pending/, 'with the server\'s message');

$r = req('POST', '/queues/pause', $alice, { csrf => $tok_a, queue => 'mail' });
is($r->{status}, 403, 'alice may not pause a queue');
is(sql(q{SELECT paused_until IS NULL FROM chancy_queues WHERE name = 'mail'}), 't', 'it is not paused');
$r = req('POST', '/queues/pause', $op, { csrf => $tok_op, queue => 'default' });
is($r->{status}, 303, 'an operator pauses a queue');
is(sql(q{SELECT paused_until = 'infinity' FROM chancy_queues WHERE name = 'default'}), 't', 'it is paused');
$r = req('POST', '/queues/resume', $op, { csrf => $tok_op, queue => 'default' });
is(sql(q{SELECT paused_until IS NULL OR paused_until < now() FROM chancy_queues WHERE name = 'default'}), 't',
	'and resumes it');
$r = req('POST', '/queues/concurrency', $op, { csrf => $tok_op, queue => 'default', concurrency => 1 });
is(sql(q{SELECT concurrency FROM chancy_queues WHERE name = 'default'}), '1', 'and sets its concurrency')
  or diag(said($r));
$r = req('POST', '/queues/concurrency', $op, { csrf => $tok_op, queue => 'nosuch', concurrency => 1 });
is($r->{status}, 404, 'of a queue that exists only');
is(sql(q{SELECT count(*) FROM chancy_queues WHERE name = 'nosuch'}), '0', 'none is made');

$r = req('POST', "/workflows/$wf_failed/retry", $alice, { csrf => $tok_a });
is($r->{status}, 303, 'alice retries her failed workflow');
ok(poll(qq{SELECT w.state = 'failed' AND s.attempts = 1 AND jsonb_array_length(s.errors) = 2
	FROM chancy_workflows w JOIN chancy_jobs s ON s.workflow_id = w.id AND s.step = 'a'
	WHERE w.id = $wf_failed}), 'its failed step ran again');
$r = req('POST', "/workflows/$wf_waiting/cancel", $bob, { csrf => $tok_b });
is($r->{status}, 404, 'bob cannot cancel alice\'s workflow');
$r = req('POST', "/workflows/$wf_waiting/cancel", $alice, { csrf => $tok_a });
is(sql("SELECT state FROM chancy_workflows WHERE id = $wf_waiting"), 'cancelled', 'alice cancels hers');

# bulk retry: alice's failed mail (those failed so far), by filter
ok(poll(q{SELECT count(*) = 3 FROM chancy_jobs WHERE name = 'web_fails' AND queue = 'mail' AND state = 'failed'}),
	'alice\'s mail has failed');
my $failed_mail = sql(q{SELECT string_agg(id::text, ',' ORDER BY id) FROM chancy_jobs
	WHERE name = 'web_fails' AND queue = 'mail' AND state = 'failed'});
$r = req('POST', '/jobs/retry', $bob, { csrf => $tok_b, queue => 'mail', name => 'web_fails' });
like(said(req('GET', '/jobs', $bob)), qr/Retried 0 failed jobs/, 'bob\'s bulk retry finds none of alice\'s');
$r = req('POST', '/jobs/retry', $alice, { csrf => $tok_a, queue => 'mail', name => 'web_fails' });
is($r->{status}, 303, 'alice retries her failed mail by filter');
is(sql(qq{SELECT count(*) FROM chancy_jobs WHERE id IN ($failed_mail) AND state = 'failed' AND attempts = 1
	AND jsonb_array_length(errors) = 1}), '0', 'every one of them ran again or waits to');
$r = req('POST', '/jobs/retry', $alice, { csrf => $tok_a, failed_after => 'yesterday-ish' });
is($r->{status}, 400, 'a bulk retry with a bad time is a bad request');

# --- bad input
is(req('GET', '/nosuch', $alice)->{status}, 404, 'an unknown page is 404');
is(req('GET', '/jobs/12abc', $alice)->{status}, 404, 'and so is a job path that is no id');
$r = req('GET', '/jobs?state=lost', $alice);
is($r->{status}, 400, 'an unknown state is 400');
like(said($r), qr/"lost" is not a job state/, 'with a message');
is(req('GET', '/jobs?since=soon', $alice)->{status}, 400, 'a malformed time is 400');
is(req('GET', '/jobs?sort=id', $alice)->{status}, 400, 'an unknown parameter is 400');
is(req('GET', '/jobs?before=1;2', $alice)->{status}, 400, 'a malformed page marker is 400');
is(req('GET', '/jobs/1/cancel', $alice)->{status}, 405, 'an action by GET is 405');
is(req('DELETE', '/jobs', $alice)->{status}, 405, 'another method is 405');
$r = req('GET', q{/jobs?queue=x'%3B%20DROP%20TABLE%20chancy_jobs%3B--}, $op);
is($r->{status}, 200, 'SQL in a parameter is only a value');
is(sql(q{SELECT to_regclass('chancy_jobs') IS NOT NULL}), 't', 'that ran as none');
$r = req('POST', '/queues/resume', $op, { csrf => $tok_op, queue => 'a', 'queue2' => 'x' x 5000 });
is($r->{status}, 400, 'a form field longer than 4 kB is refused');
$r = $http->request('POST', "$base/queues/resume", { headers => { Cookie => "chancy_session=$op",
	'Content-Type' => 'application/x-www-form-urlencoded' }, content => 'x' x 70000 });
is($r->{status}, 413, 'a body over 64 kB is 413');

# --- for machines
$r = req('GET', '/metrics');
is($r->{status}, 200, '/metrics answers without a login');
like($r->{content}, qr/^chancy_jobs_total\{database="postgres",queue="mail",job="web_fails",outcome="failed"\} [1-9]\d*$/m,
	'in Prometheus\' text format');
$r = req('GET', '/health');
my $health = decode_json($r->{content});
is(join(',', map { $_->{check} } grep { $_->{check} =~ /^(launcher|supervisor|version)$/ } @$health),
	'launcher,supervisor,version', '/health lists chancy_health()\'s checks');
is($r->{status}, (grep { $_->{status} eq 'fail' } @$health) ? 503 : 200, 'its status is 503 only with a check failing');

# --- a lost connection shows an error page, then recovers
sql(q{SELECT pg_terminate_backend(pid) FROM pg_stat_activity
	WHERE application_name = 'chancy-web' AND usename = 'alice'});
$r = req('GET', '/', $alice);
is($r->{status}, 503, 'a lost connection is a 503 page');
like(said($r), qr/connection to the database was lost/, 'saying so');
is(req('GET', '/', $alice)->{status}, 200, 'the next request opens it again');

# a role the server no longer lets in (its password changed) is logged out
sql(q{ALTER ROLE alice PASSWORD 'changed'});
sql(q{SELECT pg_terminate_backend(pid) FROM pg_stat_activity
	WHERE application_name = 'chancy-web' AND usename = 'alice'});
is(req('GET', '/', $alice)->{status}, 503, 'its connection is lost');
$r = req('GET', '/', $alice);
is($r->{status}, 401, 'a session whose role the server no longer lets in then ends (401)');
like(said($r), qr/Log in again: .*password authentication failed/, 'saying why');
is(req('GET', '/', $alice)->{status}, 303, 'and sends to the login page after');

# a request for another host name (DNS rebinding) is refused
is(status_for_host('/metrics', "attacker.example:$webport"), 421,
	'a request naming another host is refused (421)');
is(status_for_host('/style.css', "localhost:$webport"), 200, 'localhost is this host');

$node->stop('fast');
$r = req('GET', '/queues', $op);
is($r->{status}, 503, 'with the server down, pages are 503');
like(said($r), qr/database cannot be reached|connection to the database was lost/, 'and say why');
ok(wait_for(sub { req('GET', '/health')->{status} == 503 }), '/health is 503 (once its kept answer is 2 s old)');
$node->start;
ok(poll(q{SELECT count(*) > 0 FROM chancy_workers WHERE kind = 'supervisor'}), 'the server is back');
is(req('GET', '/queues', $op)->{status}, 200, 'and so are the pages, on the same session');
ok(wait_for(sub { req('GET', '/health')->{status} == 200 }), 'and /health');

# --- log out
$r = req('POST', '/logout', $bob, { csrf => $tok_b });
is($r->{status} . ' ' . $r->{headers}{location}, '303 /login', 'bob logs out');
is(req('GET', '/jobs', $bob)->{status}, 303, 'his session is gone');
is(sql(q{SELECT count(*) FROM pg_stat_activity WHERE application_name = 'chancy-web' AND usename = 'bob'}),
	'0', 'with its connection');

# --- one role cannot take every session: its 11th ends its least recently used
my @bobs = map { (login('bob', 'bob pw'))[1] } 1 .. 11;
is(req('GET', '/jobs', $bobs[0])->{status}, 303, 'a role\'s 11th session ends its least recently used one');
is(scalar(grep { req('GET', '/jobs', $_)->{status} == 200 } @bobs[1 .. 10]), 10, 'and keeps the ten others');
is(req('GET', '/jobs', $op)->{status}, 200, 'and other roles\' sessions');

# --- a real browser: headless Chromium over the DevTools protocol (a pipe)
# The mixed workload the overview shows: bob's mail that succeeds, alice's
# that fails, spread over 70 seconds so that its runs fall into a minute the
# supervisor writes into the history (not the one it started in).
as('bob', q{SELECT count(chancy_push('web_ok', jsonb_build_object('n', g, 'ms', g % 20),
	queue => 'mail', scheduled_at => now() + g * interval '500 ms')) FROM generate_series(1, 140) g});
as('alice', q{SELECT count(chancy_push('web_fails', jsonb_build_object('n', g), queue => 'mail',
	max_attempts => 1, scheduled_at => now() + g * interval '5 s')) FROM generate_series(1, 14) g});
ok(poll(q{SELECT count(*) = 0 FROM chancy_jobs WHERE queue = 'mail' AND state <> ALL ('{succeeded,failed}')}, 120),
	'the workload has run');
ok(poll(q{SELECT sum(succeeded) >= 50 FROM chancy_stats_history WHERE queue = 'mail' AND job = 'web_ok'}, 150),
	'its minutes are in the history');

my $chrome = chromium_start();
my $page = cdp($chrome, 'Target.createTarget', { url => 'about:blank' });
my $sess = cdp($chrome, 'Target.attachToTarget', { targetId => $page->{targetId}, flatten => JSON::PP::true })->{sessionId};
cdp($chrome, 'Emulation.setDeviceMetricsOverride',
	{ width => 1280, height => 900, deviceScaleFactor => 1, mobile => JSON::PP::false }, $sess);
cdp($chrome, 'Page.navigate', { url => "$base/login" }, $sess);
is(wait_eval($chrome, $sess, q{location.pathname + ' ' + document.readyState}, '/login complete'), 1,
	'Chromium loads the login page');
evaluate($chrome, $sess, q{document.querySelector('input[name=user]').value = 'op';
	document.querySelector('input[name=password]').value = 'op pw';
	document.getElementById('login').submit(); 1});
is(wait_eval($chrome, $sess, q{location.pathname + ' ' + document.readyState + ' ' +
	(document.querySelector('h1') || {}).textContent}, '/ complete Overview'), 1,
	'it logs in by the form and lands on the overview')
  or diag(evaluate($chrome, $sess, 'document.body.innerText'));
my $dom = decode_json(evaluate($chrome, $sess, q{JSON.stringify((() => {
	const cell = (q, col) => [...document.querySelectorAll('td[data-col=queue]')]
		.filter(td => td.textContent === q).map(td => td.parentElement
		.querySelector('td[data-col=' + col + ']').textContent)[0];
	const charts = [...document.querySelectorAll('svg.chart')];
	return {
		charts: charts.map(c => c.id),
		drawn: charts.filter(c => c.querySelector('polyline, circle') &&
			c.getBoundingClientRect().width > 300).length,
		succeeded: cell('mail', 'succeeded'), failed: cell('mail', 'failed'),
		tiles: document.querySelectorAll('#health .tile').length,
		styled: getComputedStyle(document.querySelector('header')).display
	};
})())}));
my $counts = sql(q{SELECT count(*) FILTER (WHERE state = 'succeeded') || ',' || count(*) FILTER (WHERE state = 'failed')
	FROM chancy_jobs WHERE queue = 'mail'});
is(join(',', grep { /-mail$/ } @{ $dom->{charts} }), 'runs-mail,wait-mail,run-mail',
	'the overview has the mail queue\'s three charts');
is($dom->{drawn}, scalar @{ $dom->{charts} }, 'each drawn, with lines, at its size');
is("$dom->{succeeded},$dom->{failed}", $counts, 'its counts are the table\'s');
ok($dom->{tiles} >= 7, 'the health tiles are there');
is($dom->{styled}, 'flex', 'the style sheet applies (the page\'s policy lets it load)');
my $png = cdp($chrome, 'Page.captureScreenshot', { format => 'png', captureBeyondViewport => JSON::PP::true }, $sess);
mkdir "$ENV{TESTDIR}/docs";
open my $shot, '>:raw', "$ENV{TESTDIR}/docs/dashboard.png" or die "docs/dashboard.png: $!";
print $shot decode_base64($png->{data});
close $shot;
ok(-s "$ENV{TESTDIR}/docs/dashboard.png" > 10_000, 'a screenshot is written to docs/dashboard.png');
syswrite($chrome->{in}, encode_json({ id => 0, method => 'Browser.close' }) . "\0");
my $gone = time + 20;
usleep(100_000) while waitpid($chrome->{pid}, POSIX::WNOHANG) == 0 && time < $gone;
kill 'TERM', $chrome->{pid} if time >= $gone;

$web->signal('TERM');
$web->finish;
like($err, qr/chancy-web: stopping/, 'chancy-web stops on SIGTERM');

# --- HTTPS with --cert and --key (a self-signed certificate)
my $tls = PostgreSQL::Test::Utils::tempdir();
system('openssl', 'req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-subj', '/CN=127.0.0.1',
	'-days', '1', '-keyout', "$tls/key.pem", '-out', "$tls/cert.pem") == 0
  or die 'openssl req failed';
$err = '';
$web = IPC::Run::start([ 'chancy-web', '--listen', "127.0.0.1:$webport", '--cert', "$tls/cert.pem",
	'--key', "$tls/key.pem", "host=127.0.0.1 port=$port dbname=postgres" ], '>', \$out, '2>', \$err);
$started = IPC::Run::timer(30);
$started->start;
$web->pump until $err =~ /serving/ || $started->is_expired;
like($err, qr{serving https://}, 'chancy-web serves HTTPS with a certificate');
my $https = HTTP::Tiny->new(max_redirect => 0, timeout => 30, verify_SSL => 0);
$r = $https->post_form("https://127.0.0.1:$webport/login", { user => 'bob', password => 'bob pw' });
is($r->{status}, 303, 'a login over HTTPS');
like($r->{headers}{'set-cookie'}, qr/; Secure$/, 'gets a Secure cookie');
like($r->{headers}{'strict-transport-security'}, qr/max-age=/, 'and Strict-Transport-Security');
$web->signal('TERM');
$web->finish;
$node->stop;
done_testing();

# Chromium, headless, driven over --remote-debugging-pipe: it reads commands
# from fd 3 and writes answers to fd 4, each a JSON text ended by a NUL.
sub chromium_start
{
	pipe(my $cmd_r, my $cmd_w) or die "pipe: $!";
	pipe(my $ans_r, my $ans_w) or die "pipe: $!";
	my $profile = PostgreSQL::Test::Utils::tempdir();
	my $pid = fork() // die "fork: $!";
	if ($pid == 0)
	{
		my ($in, $out);
		# above 4 first, so that putting them on 3 and 4 clobbers neither
		do { $in = POSIX::dup(fileno($cmd_r)) } until $in > 4;
		do { $out = POSIX::dup(fileno($ans_w)) } until $out > 4;
		POSIX::dup2($in, 3);
		POSIX::dup2($out, 4);
		open STDOUT, '>', "$profile/chromium.log";
		open STDERR, '>&', \*STDOUT;
		exec('chromium', '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic',
			'--no-first-run', '--disable-background-networking', '--disable-component-update',
			'--disable-sync', '--remote-debugging-pipe', "--user-data-dir=$profile")
		  or POSIX::_exit(127);
	}
	close $cmd_r;
	close $ans_w;
	return { pid => $pid, in => $cmd_w, out => $ans_r, id => 0, buf => '' };
}

# Send a DevTools command (to a page's session, if given); its result.
sub cdp
{
	my ($c, $method, $params, $session) = @_;
	my $id = ++$c->{id};
	my %msg = (id => $id, method => $method, params => $params);
	$msg{sessionId} = $session if $session;
	syswrite($c->{in}, encode_json(\%msg) . "\0") or die "chromium: $!";
	my $sel = IO::Select->new($c->{out});
	my $until = time + 60;
	while (time < $until)
	{
		while ($c->{buf} =~ s/^([^\0]*)\0//)
		{
			my $m = decode_json($1);
			next unless ($m->{id} // 0) == $id;
			die "chromium: $method: " . encode_json($m->{error}) if $m->{error};
			return $m->{result};
		}
		next unless $sel->can_read(1);
		sysread($c->{out}, $c->{buf}, 1 << 20, length $c->{buf}) or die "chromium has gone";
	}
	die "chromium: no answer to $method";
}

# Evaluate JavaScript in the page; its value.
sub evaluate
{
	my ($c, $session, $js) = @_;
	my $r = cdp($c, 'Runtime.evaluate', { expression => $js, returnByValue => JSON::PP::true }, $session);
	return $r->{result}{value};
}

# Whether $js comes to evaluate to $want within 30 seconds.
sub wait_eval
{
	my ($c, $session, $js, $want) = @_;
	my $until = time + 30;
	my $got = '';
	while (time < $until)
	{
		$got = eval { evaluate($c, $session, $js) } // '';
		return 1 if $got eq $want;
		usleep(100_000);
	}
	diag("last: $got");
	return 0;
}
