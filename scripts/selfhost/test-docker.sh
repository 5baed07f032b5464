#!/usr/bin/env bash
# `make test-docker`: the Docker image, tested for real on this machine.
#   1. Debian's docker.io / docker-compose / debootstrap when missing; dockerd started when
#      none answers (and stopped at the end).
#   2. Base images: LLM_MUX_BUILD_BASE / LLM_MUX_RUNTIME_BASE when given (e.g. the Dockerfile's
#      registry defaults), else built locally from Debian's packages (docker-base.sh, once).
#   3. `docker-compose build` of the image (LLM_MUX_IMAGE, default llm-mux:test); its size.
#   4. The self-hosted subset (the spec files given as arguments) against containers started
#      by docker-compose (tests/e2e/harness.mjs, LLM_MUX_E2E_RUNTIME=docker).
#   5. compose-restart-check.mjs: `docker-compose up` as a user runs it, traffic, `restart`,
#      totals survived, `down -v`.
# Containers use host networking bound to 127.0.0.1. Everything it started is removed; the
# images stay (they are the cache that makes the next run fast).
set -euo pipefail
cd "$(dirname "$0")/../.."
started_at=$(date +%s)
say() { printf 'test-docker: %s\n' "$*" >&2; }

# One run at a time on a machine (checkouts share the engine, the base images and the image
# tag; a run that started dockerd stops it when it ends).
exec 9>"${TMPDIR:-/tmp}/llm-mux-test-docker.lock"
if ! flock -n 9; then
  say "another test-docker run holds the lock; waiting for it"
  flock 9
fi

bash scripts/selfhost/docker-engine.sh install
dockerd_pid=$(bash scripts/selfhost/docker-engine.sh start)
cleanup() {
  local status=$?
  bash scripts/selfhost/docker-engine.sh stop "$dockerd_pid" || true
  exit $status
}
trap cleanup EXIT

if [ -z "${LLM_MUX_BUILD_BASE:-}" ] || [ -z "${LLM_MUX_RUNTIME_BASE:-}" ]; then
  export LLM_MUX_BUILD_BASE=llm-mux-base/rust:bookworm LLM_MUX_RUNTIME_BASE=llm-mux-base/runtime:bookworm
  bash scripts/selfhost/docker-base.sh
fi
export LLM_MUX_IMAGE=${LLM_MUX_IMAGE:-llm-mux:test}

say "building $LLM_MUX_IMAGE (BUILD_BASE=$LLM_MUX_BUILD_BASE, RUNTIME_BASE=$LLM_MUX_RUNTIME_BASE)"
build_started=$(date +%s)
# docker-compose needs the env file to exist even to build; an empty one will do.
empty_env=$(mktemp)
build_log=${TMPDIR:-/tmp}/llm-mux-docker-build.log
LLM_MUX_ENV_FILE=$empty_env docker-compose -p llm-mux-test-build -f docker-compose.yml build llm-mux >"$build_log" 2>&1 \
  || { rm -f "$empty_env"; tail -40 "$build_log" >&2; say "image build failed (log: $build_log)"; exit 1; }
rm -f "$empty_env"
# Tag the build stage too (all cached by now): its layers, dependencies compiled, are then
# not "dangling" and survive `docker image prune`, so the next run stays fast.
docker build -q --network host --target build --build-arg "BUILD_BASE=$LLM_MUX_BUILD_BASE" \
  --build-arg "RUNTIME_BASE=$LLM_MUX_RUNTIME_BASE" -t "${LLM_MUX_IMAGE%%:*}:build-stage" . >/dev/null 2>&1
build_s=$(( $(date +%s) - build_started ))
size=$(docker image inspect -f '{{.Size}}' "$LLM_MUX_IMAGE")
size_mb=$(awk -v s="$size" 'BEGIN {printf "%.1f", s / 1e6}')
say "image $LLM_MUX_IMAGE: $size_mb MB uncompressed (built in ${build_s} s)"

say "self-hosted subset against docker-compose containers: $*"
LLM_MUX_E2E_RUNTIME=docker node --test --test-concurrency=1 "$@"

say "docker-compose up, restart, totals survive"
node scripts/selfhost/compose-restart-check.mjs

# Nothing it started is left: no container, no volume of its compose projects.
left=$( (docker ps -a --format '{{.Names}}'; docker volume ls -q) | grep -E '^llm-mux-(e2e|compose-check)-' || true)
if [ -n "$left" ]; then
  say "left behind: $left"
  exit 1
fi

say "passed in $(( $(date +%s) - started_at )) s (image build ${build_s} s, image $size_mb MB)"
