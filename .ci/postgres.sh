#!/usr/bin/env bash
# A throwaway local PostgreSQL for the tests' metadata suite.
#
#   eval "$(.ci/postgres.sh start)"   # installs the Debian package if missing, starts a fresh cluster,
#                                     # prints `export PARAMDB_TEST_PG_URL=... PARAMDB_TEST_PG_DIR=...`
#   .ci/postgres.sh stop              # stops it and removes its files (reads PARAMDB_TEST_PG_DIR)
#
# The cluster lives in a temporary folder, listens on 127.0.0.1 at a free port, trusts local connections
# and runs with fsync off: it holds test data only. PostgreSQL refuses to run as root, so the server runs
# as the `postgres` user the package creates.
set -euo pipefail

log() { echo "postgres.sh: $*" >&2; }

bindir() {
    local ctl
    ctl=$(ls -d /usr/lib/postgresql/*/bin/pg_ctl 2>/dev/null | sort -V | tail -n 1 || true)
    [ -n "$ctl" ] && dirname "$ctl"
}

as_postgres() {
    if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

start() {
    local bin dir port
    bin=$(bindir || true)
    if [ -z "$bin" ]; then
        log "installing PostgreSQL (Debian package)"
        apt-get update -qq >&2
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >&2
        bin=$(bindir)
    fi
    if [ "$(id -u)" -eq 0 ] && ! id postgres >/dev/null 2>&1; then
        useradd --system --home-dir /var/lib/postgresql --shell /bin/bash postgres
    fi
    dir=$(mktemp -d /tmp/paramdb-pg.XXXXXX)
    chmod 755 "$dir"
    [ "$(id -u)" -eq 0 ] && chown postgres: "$dir"
    port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    as_postgres "$bin/initdb" -D "$dir/data" -U postgres -A trust -E UTF8 --no-sync >"$dir/initdb.log" 2>&1 \
        || { cat "$dir/initdb.log" >&2; exit 1; }
    as_postgres "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 \
        -o "-p $port -k $dir -c listen_addresses=127.0.0.1 -c fsync=off -c full_page_writes=off" start >&2 \
        || { cat "$dir/server.log" >&2; exit 1; }
    as_postgres "$bin/createdb" -h 127.0.0.1 -p "$port" -U postgres paramdb_test
    log "PostgreSQL $("$bin/postgres" --version | awk '{print $3}') on 127.0.0.1:$port, data in $dir"
    echo "export PARAMDB_TEST_PG_URL=postgresql+psycopg://postgres@127.0.0.1:$port/paramdb_test"
    echo "export PARAMDB_TEST_PG_DIR=$dir"
}

stop() {
    local dir=${PARAMDB_TEST_PG_DIR:-}
    [ -n "$dir" ] && [ -d "$dir/data" ] || return 0
    as_postgres "$(bindir)/pg_ctl" -D "$dir/data" -m fast -w stop >&2 || true
    rm -rf "$dir"
}

case "${1:-}" in
    start) start ;;
    stop) stop ;;
    *) echo "usage: $0 start|stop" >&2; exit 2 ;;
esac
