#!/bin/bash
# The main job, end to end, on a fresh Debian 12 machine:
#
#   sudo ./demo.sh
#
# installs what is needed and chancy itself (scripts/setup), starts a
# throwaway PostgreSQL cluster with chancy preloaded, defines and pushes the
# seed's greet job, waits for a background worker to run it, shows its row
# and the line it logged, and removes the cluster again.
set -euo pipefail
cd "$(dirname "$0")"

if [ "$(id -u)" = 0 ]; then
	scripts/setup
	exec scripts/as-postgres ./demo.sh
fi

. scripts/cluster.sh
cluster_start "chancy.database = 'postgres'"

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
