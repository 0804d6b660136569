#!/usr/bin/env bash
# Runs the whole test suite, exactly as CI does: formatting, lints, every test of the workspace
# (unit, conformance, crash, fault, recovery, property, HTTP and CLI tests) with throwaway
# PostgreSQL and Redis servers (scripts/services.sh) and an Apache Kafka broker in KRaft mode
# (scripts/kafka.sh) started for them, schemathesis against a
# running server's OpenAPI document, a quick run of the comparison benchmark against real
# PostgreSQL, Redis and NATS servers (scripts/bench-compare.sh --quick), and the fuzz target's
# build.
#
# Environment:
#   FACTLOG_CRASH_CYCLES  kill -9 cycles of the crash test (default 50)
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/setup.sh

step() { printf '\n==> %s\n' "$*"; }

step "cargo fmt --check"
cargo fmt --all --check

step "cargo clippy --all-targets -- -D warnings"
cargo clippy --workspace --all-targets --locked -- -D warnings

step "cargo test (with PostgreSQL, Redis and Kafka)"
scripts/services.sh run -- scripts/kafka.sh run -- cargo test --workspace --locked

step "schemathesis against /openapi.json"
scripts/schemathesis.sh

step "bench compare, quick: every store and workload of the comparison, with its checks"
scripts/bench-compare.sh --quick >/dev/null

step "fuzz target builds"
cargo build --manifest-path fuzz/Cargo.toml --target-dir target/fuzz

echo
echo "all checks passed"
