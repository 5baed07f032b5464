#!/usr/bin/env bash
# Defect 2 of issue 11: `make build` while `make dev` serves must leave the dev server
# running. Starts `make dev` on a free port, runs `make build` BUILDS times while it serves,
# alternately with and without WASM_OPT_EXTRA=-O1 so that each build really replaces the
# served wasm, and checks after each that the served wasm changed, wrangler reloaded, is
# alive, answers GET / and a POST /query, and never logged a wasm compile error.
# MAKEFILE=... runs another Makefile (the one before the fix reproduces the failure).
# ~1-2 minutes when the build is up to date.
set -euo pipefail
cd "$(dirname "$0")/../.."

MAKEFILE=${MAKEFILE:-Makefile}
# An even BUILDS leaves build/ as a plain `make build` makes it.
BUILDS=${BUILDS:-2}
PORT=${PORT:-$(node -e 'const s=require("net").createServer().listen(0,"127.0.0.1",()=>{console.log(s.address().port);s.close()})')}
log=$(mktemp)
fail() { echo "FAIL: $*" >&2; echo "--- make dev log ---" >&2; tail -40 "$log" >&2; exit 1; }

# Its own process group, so the cleanup stops make, wrangler and workerd, and nothing else.
setsid make -f "$MAKEFILE" dev PORT="$PORT" >"$log" 2>&1 &
dev_pid=$!
trap 'kill -- -"$dev_pid" 2>/dev/null || true; rm -f "$log"' EXIT

answers() {
  [ "$(curl -s -o /dev/null -w '%{http_code}' --max-time 5 "http://127.0.0.1:$PORT/")" = 200 ] || return 1
  # No upstream key in this test: the worker itself answers 503 upstream_not_configured.
  curl -s --max-time 5 -X POST "http://127.0.0.1:$PORT/query" -H 'content-type: application/json' \
    -d '{"query":"hi"}' | grep -q '"error"'
}

wait_answering() {
  for _ in $(seq 1 "$1"); do
    kill -0 "$dev_pid" 2>/dev/null || fail "make dev exited"
    answers && return 0
    sleep 1
  done
  fail "the dev server did not answer within $1 s"
}

started=$(date +%s)
wait_answering 300
echo "make dev answers on port $PORT after $(( $(date +%s) - started )) s"

reloads() { grep -c "Local server updated and ready" "$log" || true; }
for i in $(seq 1 "$BUILDS"); do
  reloads_before=$(reloads)
  wasm_before=$(sha256sum build/index_bg.wasm)
  extra=$([ $((i % 2)) = 1 ] && echo -O1 || true)
  t0=$(date +%s)
  make -f "$MAKEFILE" build WASM_OPT_EXTRA="$extra" >/dev/null 2>&1 || fail "make build $i failed"
  echo "make build $i (WASM_OPT_EXTRA=$extra) took $(( $(date +%s) - t0 )) s"
  # Give wrangler time to notice the change and reload (it debounces).
  for _ in $(seq 1 30); do
    [ "$(reloads)" -gt "$reloads_before" ] && break
    kill -0 "$dev_pid" 2>/dev/null || fail "make dev exited after make build $i"
    sleep 1
  done
  [ "$(sha256sum build/index_bg.wasm)" != "$wasm_before" ] \
    || fail "make build $i did not change build/index_bg.wasm (the test would prove nothing)"
  [ "$(reloads)" -gt "$reloads_before" ] || fail "wrangler did not reload after make build $i"
  wait_answering 30
  if grep -qE "CompileError|fell off end" "$log"; then fail "wrangler logged a wasm compile error"; fi
  echo "after make build $i: make dev alive and answering"
done
echo "PASS: make dev survived $BUILDS builds"
