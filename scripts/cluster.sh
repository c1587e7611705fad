# Sourced by demo.sh and bench/run: a throwaway PostgreSQL 15 cluster with
# chancy preloaded, removed again when the calling script exits.
#
#   cluster_start [postgresql.conf lines...]   then   cpsql [psql args...]

bin=/usr/lib/postgresql/15/bin
cluster=$(mktemp -d /tmp/chancy-cluster.XXXXXX)
trap '$bin/pg_ctl -D "$cluster/data" -m fast stop >/dev/null 2>&1; rm -rf "$cluster"' EXIT

cluster_start() {
	$bin/initdb -D "$cluster/data" -A trust -U postgres >/dev/null
	{
		echo "shared_preload_libraries = 'chancy'"
		echo "listen_addresses = ''"
		echo "unix_socket_directories = '$cluster'"
		for line in "$@"; do echo "$line"; done
	} >>"$cluster/data/postgresql.conf"
	$bin/pg_ctl -D "$cluster/data" -l "$cluster/server.log" -w start >/dev/null
}

cpsql() {
	$bin/psql -X -h "$cluster" -d postgres -v ON_ERROR_STOP=1 "$@"
}
