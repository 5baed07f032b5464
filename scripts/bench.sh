#!/usr/bin/env bash
# `make bench`: the whole benchmark, printed as one table (see BENCHMARKS.md).
#   1. scorer/router cost natively (cargo bench --bench routers)
#   2. worker size (build/, raw and gzipped)
#   3. end to end under wrangler dev against the floor (scripts/bench.mjs), and against a
#      second floor: a minimal workers-rs worker doing the same I/O (bench/rs-floor)
#   4. Durable Object rows per request
# Installs what it needs once (oha; the upstream stand-in is built from bench/upstream).
# Assumes `make build` ran (the Makefile's bench target depends on it).
# Environment: BENCH_QUICK=1 for a short smoke run; BENCH_REPS, BENCH_N1, BENCH_N16 (see
# scripts/bench.mjs); BENCH_SKIP_NATIVE=1 to reuse the last native results.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="${CARGO_HOME:-$HOME/.cargo}/bin:$PATH"
OUT=target/bench
OHA_VERSION=1.16.0
mkdir -p "$OUT"
say() { printf 'bench: %s\n' "$*" >&2; }

if ! oha --version >/dev/null 2>&1; then
  say "installing oha $OHA_VERSION (the load generator; a few minutes, once)"
  cargo install oha --version "$OHA_VERSION" --locked
fi
for tool in taskset ss; do
  command -v "$tool" >/dev/null || { echo "bench: $tool is required (util-linux / iproute2)" >&2; exit 1; }
done

say "building the upstream stand-in (bench/upstream)"
cargo build --release --quiet --manifest-path bench/upstream/Cargo.toml

if [ "${BENCH_SKIP_NATIVE:-0}" != 1 ]; then
  say "native scorer/router benchmark"
  # Its own target dir and panic = unwind: with the release profile's panic = "abort", cargo
  # would build the library twice into one directory (the bench harness needs unwind).
  CARGO_TARGET_DIR=target/bench-native CARGO_PROFILE_RELEASE_PANIC=unwind \
    BENCH_JSON="$PWD/$OUT/native.json" cargo bench --quiet -p llm-mux-core --bench routers >&2
fi

say "building the workers-rs floor (bench/rs-floor)"
# Same toolchain as `make build`: worker-build pointed at the local wasm-bindgen, wasm-opt
# and esbuild (no downloads).
(cd bench/rs-floor && WASM_BINDGEN_BIN="${CARGO_HOME:-$HOME/.cargo}/bin/wasm-bindgen" \
  WASM_OPT_BIN="$PWD/../../node_modules/.bin/wasm-opt" ESBUILD_BIN="$PWD/../../node_modules/.bin/esbuild" \
  worker-build --release >&2)

say "end to end (wrangler dev, loopback)"
node scripts/bench.mjs --native "$OUT/native.json" --out "$OUT"
say "report written to $OUT/report.md and $OUT/results.json"
