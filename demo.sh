#!/bin/bash
# The main job, end to end, on a fresh Debian 12 machine:
#
#   sudo ./demo.sh
#
# installs what is needed and chancy itself (scripts/setup), starts a
# throwaway PostgreSQL cluster with chancy preloaded, defines and pushes the
# seed's greet job, waits for a background worker to run it, shows its row
# and the line it logged, and removes the cluster again.
#
#   sudo ./demo.sh --dashboard
#
# then also pushes a mixed workload and serves the dashboard, chancy-web, on
# http://127.0.0.1:8787/ (log in as role demo, password demo) until Ctrl-C.
set -euo pipefail
cd "$(dirname "$0")"

if [ "$(id -u)" = 0 ]; then
	scripts/setup
	exec scripts/as-postgres ./demo.sh "$@"
fi
dashboard=false
case "${1:-}" in
	--dashboard) dashboard=true ;;
	"") ;;
	*) echo "usage: demo.sh [--dashboard]" >&2; exit 2 ;;
esac

. scripts/cluster.sh
if $dashboard; then
	# logins over TCP with a password the server checks: a free port
	port=55432
	while (echo >/dev/tcp/127.0.0.1/$port) 2>/dev/null; do port=$((port + 1)); done
	cluster_start "chancy.database = 'postgres'" "listen_addresses = '127.0.0.1'" "port = $port"
	printf 'local all all trust\nhost all all 127.0.0.1/32 scram-sha-256\n' >"$cluster/data/pg_hba.conf"
	$bin/pg_ctl -D "$cluster/data" reload >/dev/null
else
	cluster_start "chancy.database = 'postgres'"
fi
cpsql() {
	$bin/psql -X -h "$cluster" -p "${port:-5432}" -d postgres -v ON_ERROR_STOP=1 "$@"
}

cpsql -e <<'SQL'
CREATE EXTENSION chancy;
-- the seed's greet job: a C function, and its @job(...) defaults
CREATE EXTENSION chancy_examples;
SELECT name, function, queue, priority, max_attempts, kwargs FROM chancy_job_definitions;
SELECT chancy_push('greet', '{"name": "Alice"}') AS id \gset
-- the push has committed: an executor runs it; wait for the outcome
\x on
SELECT * FROM chancy_wait(:id, '30 seconds');
SQL
echo "server log:"
grep 'Hello, Alice!' "$cluster/server.log"

$dashboard || exit 0
cpsql -q <<'SQL'
CREATE ROLE demo LOGIN SUPERUSER PASSWORD 'demo';
CREATE FUNCTION public.send_mail(kwargs jsonb) RETURNS jsonb LANGUAGE sql
  AS $$ SELECT jsonb_build_object('to', kwargs->>'to', 'slept', pg_sleep(random() / 20) IS NULL) $$;
CREATE FUNCTION public.charge_card(kwargs jsonb) RETURNS void LANGUAGE plpgsql
  AS $$ BEGIN RAISE EXCEPTION 'card % declined', kwargs->>'card' USING HINT = 'try another card'; END $$;
SELECT chancy_declare_queue('mail', concurrency => 2);
SELECT count(chancy_push('public.send_mail', jsonb_build_object('to', 'user' || g || '@example.com'),
                         queue => 'mail', scheduled_at => now() + g * interval '1 s'))
  FROM generate_series(1, 300) g;
SELECT count(chancy_push('public.charge_card', jsonb_build_object('card', g), max_attempts => 2,
                         scheduled_at => now() + g * interval '20 s'))
  FROM generate_series(1, 15) g;
SQL
echo "chancy-web: open http://127.0.0.1:8787/ and log in as demo, password demo (Ctrl-C stops it;"
echo "the charts fill in as each minute ends)"
PGPASSWORD=demo $bin/chancy-web --listen 127.0.0.1:8787 "host=127.0.0.1 port=$port dbname=postgres user=demo" || true
