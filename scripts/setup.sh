#!/usr/bin/env bash
# Installs what building and testing Factlog needs on a fresh machine, and does nothing where it
# is already there. Rust (cargo, rustfmt, clippy) comes with the toolchain; a C/C++ compiler builds
# the fuzz target's libFuzzer; Python with venv runs schemathesis (installed from PyPI by
# scripts/schemathesis.sh); PostgreSQL and Redis serve the tests (started by scripts/services.sh);
# NATS (JetStream) is one of the peers of the comparison benchmark (scripts/bench-compare.sh);
# Java and Maven run Apache Kafka for the tests, from jars Maven fetches once into ~/.m2
# (scripts/kafka.sh). cmake and the OpenSSL, curl and zlib headers build librdkafka (bundled in
# the rdkafka crate) for the Kafka backend.
set -euo pipefail

need_apt=()
command -v cc >/dev/null || need_apt+=(gcc)
command -v c++ >/dev/null || need_apt+=(g++)
command -v python3 >/dev/null || need_apt+=(python3)
python3 -c 'import venv, ensurepip' 2>/dev/null || need_apt+=(python3-venv)
command -v curl >/dev/null || need_apt+=(curl)
compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null || need_apt+=(postgresql)
command -v redis-server >/dev/null || need_apt+=(redis-server)
command -v nats-server >/dev/null || need_apt+=(nats-server)
command -v java >/dev/null || need_apt+=(default-jre-headless)
command -v mvn >/dev/null || need_apt+=(maven)
command -v cmake >/dev/null || need_apt+=(cmake)
command -v pkg-config >/dev/null || need_apt+=(pkg-config)
[ -f /usr/include/openssl/ssl.h ] || need_apt+=(libssl-dev)
[ -f /usr/include/x86_64-linux-gnu/curl/curl.h ] || [ -f /usr/include/curl/curl.h ] || need_apt+=(libcurl4-openssl-dev)
[ -f /usr/include/zlib.h ] || need_apt+=(zlib1g-dev)
if ((${#need_apt[@]})); then
    echo "installing ${need_apt[*]} from Debian's packages"
    if [ "$(id -u)" -eq 0 ]; then SUDO=""; else SUDO="sudo"; fi
    $SUDO apt-get update -q
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q "${need_apt[@]}"
fi
for tool in cargo rustfmt cargo-clippy; do
    command -v "$tool" >/dev/null || { echo "missing $tool: install the Rust toolchain (rustup) with rustfmt and clippy" >&2; exit 1; }
done
"$(dirname "$0")/kafka.sh" classpath >/dev/null
