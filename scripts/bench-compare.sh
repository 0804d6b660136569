#!/usr/bin/env bash
# Factlog against the stores users would choose instead, on the same workloads, in one run:
#
#   scripts/bench-compare.sh                 full run (release build, about 15 minutes);
#                                            rewrites the comparison in docs/benchmarks.md and
#                                            writes target/bench-compare.json
#   scripts/bench-compare.sh --quick         smoke test in about a minute (debug build): every
#                                            workload and check runs, no file is written
#   scripts/bench-compare.sh [ARGS...]       any other arguments go to `factlog bench compare`
#                                            (see `factlog bench compare --help`)
#
# Starts throwaway PostgreSQL, Redis (appendfsync always, and everysec) and NATS JetStream
# servers on loopback (scripts/services.sh) and a Kafka broker for Factlog on Kafka
# (scripts/kafka.sh), runs `factlog bench compare` against them, and stops them. A server whose
# URL (or FACTLOG_TEST_KAFKA_BROKERS) is already set in the environment is used instead and not
# started, so under `scripts/kafka.sh run` no second broker is started. Needs what
# scripts/setup.sh installs.
set -euo pipefail
cd "$(dirname "$0")/.."

quick=false
for arg in "$@"; do [ "$arg" != --quick ] || quick=true; done

if $quick; then
    cargo build --locked -q -p factlog-cli
    exe=target/debug/factlog
    files=()
else
    cargo build --locked -q --release -p factlog-cli
    exe=target/release/factlog
    files=(--write-docs docs/benchmarks.md --json-out target/bench-compare.json)
fi

export FACTLOG_BENCH_COMMAND="scripts/bench-compare.sh${*:+ $*}"
# The servers' URLs are read inside the child shell, once services.sh and kafka.sh have
# exported them.
# shellcheck disable=SC2016
exec scripts/services.sh run --with postgres,redis,redis-always,nats -- scripts/kafka.sh run -- bash -c '
    exe=$1
    shift
    exec "$exe" bench compare --require-all \
        --postgres-url "$FACTLOG_TEST_POSTGRES_URL" \
        --redis-always-url "$FACTLOG_TEST_REDIS_ALWAYS_URL" \
        --redis-everysec-url "$FACTLOG_TEST_REDIS_URL" \
        --nats-url "$FACTLOG_TEST_NATS_URL" \
        --kafka-brokers "$FACTLOG_TEST_KAFKA_BROKERS" \
        "$@"
' bench-compare "$exe" "${files[@]}" "$@"
