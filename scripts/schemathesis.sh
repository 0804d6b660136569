#!/usr/bin/env bash
# Runs schemathesis (property-based API testing, from PyPI) against a real `factlog serve` on
# 127.0.0.1: every operation of /openapi.json with a bounded number of generated requests, and
# fails on any 500 or any response that breaks the document (status code, content type,
# headers, body schema). Live subscriptions (/subscribe/...) never end, so they are left to the
# SSE tests in crates/factlog-server/tests. One worker: with two, Hypothesis's shared caches race
# and report internal errors that are not the server's.
#
# Environment:
#   FACTLOG_SCHEMATHESIS_EXAMPLES  generated requests per operation and phase (default 25)
set -euo pipefail
cd "$(dirname "$0")/.."

version=4.32.5
venv=target/tools/schemathesis-$version
if [ ! -x "$venv/bin/schemathesis" ]; then
    echo "installing schemathesis $version from PyPI into $venv"
    python3 -m venv "$venv"
    "$venv/bin/pip" install -q "schemathesis==$version"
fi

cargo build -q -p factlog-cli --locked
work=$(mktemp -d)
server_pid=""
cleanup() {
    if [ -n "$server_pid" ]; then kill -TERM "$server_pid" 2>/dev/null || true; wait "$server_pid" 2>/dev/null || true; fi
    rm -rf "$work"
}
trap cleanup EXIT

mkdir "$work/backups"
# One projection, so that the projection routes answer with statuses, plans and rebuilds too
# (the OpenAPI document's example name is this one).
cat >"$work/factlog.toml" <<'EOF'
[[projections]]
name = "order_summary"
kind = "stream-summary"
EOF
target/debug/factlog serve --config "$work/factlog.toml" --listen 127.0.0.1:0 --data-dir "$work/data" --backup-dir "$work/backups" >"$work/out" 2>"$work/err" &
server_pid=$!
for _ in $(seq 100); do
    [ -s "$work/out" ] && break
    kill -0 "$server_pid" 2>/dev/null || { cat "$work/err" >&2; exit 1; }
    sleep 0.1
done
url=$(head -1 "$work/out" | awk '{print $3}')
case "$url" in http://127.0.0.1:*) ;; *) echo "could not learn the server's URL: $(cat "$work/out")" >&2; exit 1 ;; esac

"$venv/bin/schemathesis" run "$url/openapi.json" \
    --checks not_a_server_error,status_code_conformance,content_type_conformance,response_headers_conformance,response_schema_conformance \
    --max-examples "${FACTLOG_SCHEMATHESIS_EXAMPLES:-25}" \
    --exclude-path-regex '^/subscribe/' \
    --workers 1 \
    --request-timeout 30 \
    --no-color

kill -TERM "$server_pid"
wait "$server_pid"
server_pid=""
echo "schemathesis: passed; the server shut down cleanly"
