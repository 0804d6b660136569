#!/usr/bin/env bash
# Gives a command real servers for the tests and benchmarks, then takes them away:
#
#   scripts/services.sh run [--with LIST] -- CMD ARGS...
#
# LIST is a comma-separated choice of (default: postgres,redis):
#   postgres      PostgreSQL (database `factlog`, superuser `factlog`, trust auth; fsync and
#                 synchronous_commit on): FACTLOG_TEST_POSTGRES_URL
#   redis         Redis, append-only file fsynced every second (`appendfsync everysec`), no
#                 snapshots: FACTLOG_TEST_REDIS_URL
#   redis-always  Redis with `appendfsync always` (fsync before each reply):
#                 FACTLOG_TEST_REDIS_ALWAYS_URL
#   nats          NATS with JetStream on file storage: FACTLOG_TEST_NATS_URL
# Each runs on a free port of 127.0.0.1 with its data in one temporary directory. The script
# exports the URLs, runs CMD, stops every server by the pid it started, removes the directory
# and exits with CMD's status. A URL already set in the environment is reused and that server
# is not started. Servers installed system-wide (Debian starts them on the default ports) are
# never used nor touched. Needs the Debian packages postgresql, redis-server and nats-server
# (scripts/setup.sh installs them).
set -euo pipefail

usage() {
    echo "usage: $0 run [--with postgres,redis,redis-always,nats] -- CMD [ARGS...]" >&2
    exit 2
}
[ "${1:-}" = run ] || usage
shift
services=postgres,redis
if [ "${1:-}" = --with ]; then
    [ $# -ge 2 ] || usage
    services=$2
    shift 2
fi
[ "${1:-}" = -- ] && [ $# -ge 2 ] || usage
shift
for service in ${services//,/ }; do
    case $service in
        postgres | redis | redis-always | nats) ;;
        *) echo "services.sh: unknown service '$service'" >&2; usage ;;
    esac
done
wanted() { [[ ",$services," == *",$1,"* ]]; }

tmp="" pg_bin="" pg_data="" pg_user="" pg_pid="" server_pids=()

cleanup() {
    set +e
    if [ -n "$pg_data" ] && [ -f "$pg_data/postmaster.pid" ]; then
        as_pg "$pg_bin/pg_ctl" -D "$pg_data" -m fast -w -t 30 stop >/dev/null 2>&1 \
            || { [ -z "$pg_pid" ] || kill -QUIT "$pg_pid" 2>/dev/null; }
    fi
    for pid in "${server_pids[@]}"; do kill -TERM "$pid" 2>/dev/null; wait "$pid" 2>/dev/null; done
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
fsync = on
synchronous_commit = on
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

# start_redis NAME FSYNC VARIABLE: a Redis whose append-only file is fsynced as FSYNC says
# (everysec or always), its URL exported in VARIABLE.
start_redis() {
    command -v redis-server >/dev/null || fail "no redis-server (run scripts/setup.sh)"
    local name=$1 fsync=$2 variable=$3 dir port pid
    dir=$tmp/$name
    port=$(free_port)
    mkdir "$dir"
    redis-server --bind 127.0.0.1 --port "$port" --save '' --appendonly yes --appendfsync "$fsync" \
        --dir "$dir" --daemonize no >"$dir/redis.log" 2>&1 &
    pid=$!
    server_pids+=("$pid")
    wait_until "$pid" redis_answers "$port" || fail "Redis does not answer on 127.0.0.1:$port" "$dir/redis.log"
    echo "services.sh: Redis $(redis-server --version | sed 's/.*v=\([^ ]*\).*/\1/') (appendfsync $fsync) on 127.0.0.1:$port, pid $pid, data $dir" >&2
    export "$variable=redis://127.0.0.1:$port/"
}

nats_answers() { python3 -c 'import sys, urllib.request; urllib.request.urlopen(sys.argv[1], timeout=1)' "http://127.0.0.1:$1/jsz"; }

# NATS with JetStream on file storage. nats-server 2.9 (Debian 12) fsyncs its files on a timer
# (two minutes), not before it acknowledges: the benchmark says so where it reports NATS.
start_nats() {
    command -v nats-server >/dev/null || fail "no nats-server (run scripts/setup.sh)"
    local dir=$tmp/nats port monitor pid
    port=$(free_port)
    monitor=$(free_port)
    mkdir "$dir"
    cat >"$dir/nats.conf" <<EOF
listen: 127.0.0.1:$port
http: 127.0.0.1:$monitor
jetstream {
    store_dir: "$dir/jetstream"
}
EOF
    nats-server -c "$dir/nats.conf" >"$dir/nats.log" 2>&1 &
    pid=$!
    server_pids+=("$pid")
    wait_until "$pid" nats_answers "$monitor" || fail "NATS does not answer on 127.0.0.1:$monitor" "$dir/nats.log"
    echo "services.sh: NATS $(nats-server --version | sed 's/.*v//') with JetStream on 127.0.0.1:$port, pid $pid, data $dir" >&2
    export FACTLOG_TEST_NATS_URL="nats://127.0.0.1:$port"
}

if wanted postgres && [ -z "${FACTLOG_TEST_POSTGRES_URL:-}" ]; then start_postgres; fi
if wanted redis && [ -z "${FACTLOG_TEST_REDIS_URL:-}" ]; then
    start_redis redis everysec FACTLOG_TEST_REDIS_URL
fi
if wanted redis-always && [ -z "${FACTLOG_TEST_REDIS_ALWAYS_URL:-}" ]; then
    start_redis redis-always always FACTLOG_TEST_REDIS_ALWAYS_URL
fi
if wanted nats && [ -z "${FACTLOG_TEST_NATS_URL:-}" ]; then start_nats; fi

status=0
"$@" || status=$?
exit "$status"
