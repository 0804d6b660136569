#!/usr/bin/env bash
# Gives a command real PostgreSQL and Redis servers for the tests, then takes them away:
#
#   scripts/services.sh run -- CMD ARGS...
#
# starts a throwaway PostgreSQL (database `factlog`, superuser `factlog`, trust auth) and Redis
# (append-only file, no snapshots), each on a free port of 127.0.0.1 with its data in one
# temporary directory, exports FACTLOG_TEST_POSTGRES_URL and FACTLOG_TEST_REDIS_URL, runs CMD,
# stops both servers by the pids it started, removes the directory and exits with CMD's status.
# A URL already set in the environment is reused and that server is not started. Servers
# installed system-wide (Debian starts them on the default ports) are never used nor touched.
# Needs the Debian packages postgresql and redis-server (scripts/setup.sh installs them).
set -euo pipefail

if [ "${1:-}" != run ] || [ "${2:-}" != -- ] || [ $# -lt 3 ]; then
    echo "usage: $0 run -- CMD [ARGS...]" >&2
    exit 2
fi
shift 2

tmp="" pg_bin="" pg_data="" pg_user="" pg_pid="" redis_pid=""

cleanup() {
    set +e
    if [ -n "$pg_data" ] && [ -f "$pg_data/postmaster.pid" ]; then
        as_pg "$pg_bin/pg_ctl" -D "$pg_data" -m fast -w -t 30 stop >/dev/null 2>&1 \
            || { [ -z "$pg_pid" ] || kill -QUIT "$pg_pid" 2>/dev/null; }
    fi
    if [ -n "$redis_pid" ]; then kill -TERM "$redis_pid" 2>/dev/null; wait "$redis_pid" 2>/dev/null; fi
    [ -z "$tmp" ] || rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# Prints a message and the given log files to stderr, and exits 1 (the trap cleans up).
fail() {
    echo "services.sh: $1" >&2
    shift
    for log in "$@"; do [ ! -f "$log" ] || { echo "--- $log" >&2; cat "$log" >&2; }; done
    exit 1
}

# Polls a command until it succeeds, for at most 30 s, and gives up at once if the server's
# process (pid first argument) is gone.
wait_until() {
    local pid=$1 deadline=$((SECONDS + 30))
    shift
    until "$@" >/dev/null 2>&1; do
        kill -0 "$pid" 2>/dev/null && ((SECONDS < deadline)) || return 1
        sleep 0.1
    done
}

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# PostgreSQL refuses to run as root: there its programs run as an unprivileged user, from a
# directory that user can enter.
as_pg() {
    if [ -n "$pg_user" ]; then (cd "$tmp" && runuser -u "$pg_user" -- "$@"); else "$@"; fi
}

tmp=$(mktemp -d)
chmod 755 "$tmp"

start_postgres() {
    pg_bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
    [ -x "$pg_bin/initdb" ] || fail "no PostgreSQL in /usr/lib/postgresql/*/bin (run scripts/setup.sh)"
    local dir=$tmp/postgres port
    pg_data=$dir/data
    mkdir "$dir"
    if [ "$(id -u)" -eq 0 ]; then
        if id postgres >/dev/null 2>&1; then pg_user=postgres; else pg_user=nobody; fi
        chown "$pg_user:" "$dir"
    fi
    as_pg "$pg_bin/initdb" -D "$pg_data" --auth=trust -U factlog >"$tmp/initdb.log" 2>&1 \
        || fail "initdb failed" "$tmp/initdb.log"
    port=$(free_port)
    cat >>"$pg_data/postgresql.conf" <<EOF
listen_addresses = '127.0.0.1'
port = $port
unix_socket_directories = '$dir'
max_connections = 200
EOF
    as_pg "$pg_bin/pg_ctl" -D "$pg_data" -l "$dir/postgres.log" -w -t 30 start >/dev/null \
        || fail "PostgreSQL did not start" "$dir/postgres.log"
    pg_pid=$(head -n 1 "$pg_data/postmaster.pid")
    wait_until "$pg_pid" "$pg_bin/pg_isready" -q -h 127.0.0.1 -p "$port" -U factlog -d postgres \
        || fail "PostgreSQL does not answer on 127.0.0.1:$port" "$dir/postgres.log"
    "$pg_bin/createdb" -h 127.0.0.1 -p "$port" -U factlog factlog \
        || fail "createdb factlog failed" "$dir/postgres.log"
    echo "services.sh: $("$pg_bin/postgres" --version) on 127.0.0.1:$port, pid $pg_pid, data $pg_data" >&2
    export FACTLOG_TEST_POSTGRES_URL="postgres://factlog@127.0.0.1:$port/factlog"
}

redis_answers() { [ "$(redis-cli -h 127.0.0.1 -p "$1" ping)" = PONG ]; }

start_redis() {
    command -v redis-server >/dev/null || fail "no redis-server (run scripts/setup.sh)"
    local dir=$tmp/redis port
    port=$(free_port)
    mkdir "$dir"
    redis-server --bind 127.0.0.1 --port "$port" --save '' --appendonly yes --appendfsync everysec \
        --dir "$dir" --daemonize no >"$dir/redis.log" 2>&1 &
    redis_pid=$!
    wait_until "$redis_pid" redis_answers "$port" || fail "Redis does not answer on 127.0.0.1:$port" "$dir/redis.log"
    echo "services.sh: Redis $(redis-server --version | sed 's/.*v=\([^ ]*\).*/\1/') on 127.0.0.1:$port, pid $redis_pid, data $dir" >&2
    export FACTLOG_TEST_REDIS_URL="redis://127.0.0.1:$port/"
}

[ -n "${FACTLOG_TEST_POSTGRES_URL:-}" ] || start_postgres
[ -n "${FACTLOG_TEST_REDIS_URL:-}" ] || start_redis

status=0
"$@" || status=$?
exit "$status"
