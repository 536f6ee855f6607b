#!/usr/bin/env bash
# Starts a throwaway PostgreSQL server for the tests on 127.0.0.1 and prints
#
#   export SLUICE_TEST_PG_DSN=postgres://...
#
# on stdout (everything else goes to stderr), so .ci/run can do
#   eval "$(.ci/postgres.sh)"
# Installs the Debian package postgresql when no server binaries are found.
# Works as root (the server then runs as the OS user postgres) and as a
# normal user. Stop it with: pg_ctl -D "$SLUICE_TEST_PG_DATA" stop
set -euo pipefail

log() { echo "postgres.sh: $*" >&2; }

find_bin() {
	local d
	for d in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V -r); do
		if [ -x "$d/initdb" ] && [ -x "$d/pg_ctl" ]; then
			echo "$d"
			return
		fi
	done
}

bin=$(find_bin)
if [ -z "$bin" ]; then
	if [ "$(id -u)" != 0 ]; then
		log "no PostgreSQL server found under /usr/lib/postgresql; install it with: sudo apt-get install -y postgresql"
		exit 1
	fi
	log "installing the postgresql package"
	export DEBIAN_FRONTEND=noninteractive
	apt-get update >&2
	apt-get install -y postgresql >&2
	bin=$(find_bin)
	[ -n "$bin" ] || { log "postgresql installed, but no initdb under /usr/lib/postgresql/*/bin"; exit 1; }
fi

# PostgreSQL refuses to run as root: run it as the package's OS user.
as_server() { "$@"; }
run_user=$(id -un)
if [ "$(id -u)" = 0 ]; then
	run_user=postgres
	if ! id "$run_user" >/dev/null 2>&1; then
		useradd --system --no-create-home --shell /bin/sh "$run_user" >&2
	fi
	if command -v runuser >/dev/null; then
		as_server() { runuser -u "$run_user" -- "$@"; }
	else
		as_server() { su "$run_user" -s /bin/sh -c "$(printf '%q ' "$@")"; }
	fi
fi

data=$(mktemp -d /tmp/sluice-pg.XXXXXX)
chmod 700 "$data"
[ "$(id -u)" = 0 ] && chown "$run_user" "$data"

# Trust on loopback only: a throwaway server for tests, never for data.
as_server "$bin/initdb" -D "$data/db" -U postgres --auth=trust --encoding=UTF8 --locale=C.UTF-8 >"$data/initdb.log" 2>&1 ||
	as_server "$bin/initdb" -D "$data/db" -U postgres --auth=trust --encoding=UTF8 --locale=C >"$data/initdb.log" 2>&1 ||
	{ log "initdb failed:"; cat "$data/initdb.log" >&2; exit 1; }

port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

started=
for _ in $(seq 1 20); do
	port=$((20000 + RANDOM % 40000))
	port_free "$port" || continue
	if as_server "$bin/pg_ctl" -D "$data/db" -l "$data/server.log" -w -t 60 \
		-o "-c listen_addresses=127.0.0.1 -p $port -k $data -c max_connections=200" start >&2; then
		started=1
		break
	fi
	log "start on port $port failed, trying another"
done
[ -n "$started" ] || { log "could not start the server; see $data/server.log"; cat "$data/server.log" >&2 || true; exit 1; }

"$bin/psql" -h 127.0.0.1 -p "$port" -U postgres -d postgres -v ON_ERROR_STOP=1 -qc "CREATE DATABASE sluice_test" >&2

echo "export SLUICE_TEST_PG_DSN='postgres://postgres@127.0.0.1:$port/sluice_test?sslmode=disable'"
echo "export SLUICE_TEST_PG_DATA='$data/db'"
stop="$bin/pg_ctl -D $data/db stop"
[ "$(id -u)" = 0 ] && stop="runuser -u $run_user -- $stop"
log "server on 127.0.0.1:$port, data in $data; stop it with: $stop"
