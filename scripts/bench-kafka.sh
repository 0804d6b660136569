#!/usr/bin/env bash
# Appends through Factlog's Kafka backend against Kafka's own producer benchmark on the same
# broker, and the takeover of a killed node's shards, in one run:
#
#   scripts/bench-kafka.sh                 full run (release build, about 5 minutes); rewrites
#                                          the Kafka part of docs/benchmarks.md and writes
#                                          target/bench-kafka.json
#   scripts/bench-kafka.sh --quick         smoke test in about a minute (debug build): every
#                                          step and check runs, no file is written
#   scripts/bench-kafka.sh [ARGS...]       any other arguments go to `factlog bench kafka`
#                                          (see `factlog bench kafka --help`)
#
# Starts a throwaway Kafka broker on loopback (scripts/kafka.sh run), runs `factlog bench kafka`
# against it (Kafka's ProducerPerformance comes from the broker's own jars), and stops it.
# Needs what scripts/setup.sh installs (Java, Maven for the jars).
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
    files=(--write-docs docs/benchmarks.md --json-out target/bench-kafka.json)
fi

export FACTLOG_BENCH_COMMAND="scripts/bench-kafka.sh${*:+ $*}"
# kafka.sh exports FACTLOG_TEST_KAFKA_BROKERS and FACTLOG_TEST_KAFKA_CLASSPATH, which are the
# defaults of --brokers and --kafka-classpath.
exec scripts/kafka.sh run -- "$exe" bench kafka "${files[@]}" "$@"
