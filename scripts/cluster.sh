# Sourced by demo.sh and bench/run: a throwaway PostgreSQL 15 cluster with
# chancy preloaded, removed again when the calling script exits.
#
#   cluster_start [postgresql.conf lines...]   then   cpsql [psql args...]
#
# With CLUSTER_TIMED set, the postmaster runs under /usr/bin/time -v, whose
# report (peak memory of the biggest server process among others) is written
# to $cluster/time.txt by cluster_stop.

bin=/usr/lib/postgresql/15/bin
cluster=$(mktemp -d /tmp/chancy-cluster.XXXXXX)
trap '$bin/pg_ctl -D "$cluster/data" -m fast stop >/dev/null 2>&1 || true; rm -rf "$cluster"' EXIT

cluster_start() {
	$bin/initdb -D "$cluster/data" -A trust -U postgres >/dev/null
	{
		echo "shared_preload_libraries = 'chancy'"
		echo "listen_addresses = ''"
		echo "unix_socket_directories = '$cluster'"
		for line in "$@"; do echo "$line"; done
	} >>"$cluster/data/postgresql.conf"
	if [ -n "${CLUSTER_TIMED:-}" ]; then
		/usr/bin/time -v -o "$cluster/time.txt" $bin/postgres -D "$cluster/data" \
			>"$cluster/server.log" 2>&1 &
		until $bin/pg_isready -q -h "$cluster"; do sleep 0.1; done
	else
		$bin/pg_ctl -D "$cluster/data" -l "$cluster/server.log" -w start >/dev/null
	fi
}

cluster_stop() {
	$bin/pg_ctl -D "$cluster/data" -m fast -w stop >/dev/null
	wait
}

cpsql() {
	$bin/psql -X -h "$cluster" -d postgres -v ON_ERROR_STOP=1 "$@"
}
