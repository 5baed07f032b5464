#!/usr/bin/env bash
# Installs what building and testing llm-mux needs, skipping whatever is already there:
# the wasm32 target, worker-build, the wasm-bindgen CLI matching Cargo.lock, npm packages,
# Debian's chromium (the dashboard test's browser) and the Python virtualenv of the SDK tests.
# Works without GitHub access: nothing here downloads a prebuilt binary from it.
set -euo pipefail
cd "$(dirname "$0")/.."

WORKER_BUILD_VERSION=0.8.7
export PATH="${CARGO_HOME:-$HOME/.cargo}/bin:$PATH"

say() { printf 'setup: %s\n' "$*"; }

if ! rustup target list --installed | grep -qx wasm32-unknown-unknown; then
  say "adding rust target wasm32-unknown-unknown"
  rustup target add wasm32-unknown-unknown
fi

if ! worker-build --version 2>/dev/null | grep -q "$WORKER_BUILD_VERSION"; then
  say "installing worker-build $WORKER_BUILD_VERSION (a few minutes, once)"
  cargo install worker-build --version "$WORKER_BUILD_VERSION" --locked
fi

# The CLI must equal the wasm-bindgen crate version in Cargo.lock exactly.
bindgen_version=$(awk '/^name = "wasm-bindgen"$/ {getline; gsub(/[^0-9.]/, ""); print; exit}' Cargo.lock)
if [ -z "$bindgen_version" ]; then
  echo "setup: cannot read the wasm-bindgen version from Cargo.lock" >&2
  exit 1
fi
if ! wasm-bindgen --version 2>/dev/null | grep -q " $bindgen_version\$"; then
  say "installing wasm-bindgen-cli $bindgen_version (a few minutes, once)"
  # Not --locked: its lock file pins a yanked crate (shared/reference/toolchain.md).
  cargo install wasm-bindgen-cli --version "$bindgen_version" --force
fi

# npm packages, pinned by package-lock.json; reinstalled only when the lock file changed.
if [ ! -x node_modules/.bin/wrangler ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  say "installing npm packages (npm ci)"
  npm ci --no-audit --no-fund
fi

# The dashboard's page test (tests/e2e/dashboard.test.mjs) drives Debian's chromium headless
# through puppeteer-core (which downloads no browser of its own); installed where apt-get can.
if [ -z "${CHROMIUM_BIN:-}" ] && ! command -v chromium >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    say "installing Debian's chromium (the dashboard test's browser; about a minute, once)"
    # Not fatal: without a browser only that spec is skipped.
    if ! { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; }; then
      say "could not install chromium: tests/e2e/dashboard.test.mjs will be skipped"
    fi
  else
    say "no chromium: tests/e2e/dashboard.test.mjs will be skipped (apt-get install chromium, or set CHROMIUM_BIN)"
  fi
fi

# Python SDK tests (tests/sdk): a virtualenv at .venv with the pinned official clients;
# reinstalled only when requirements-test.txt changed (its hash is kept in the venv).
PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  say "creating the Python virtualenv .venv"
  "$PYTHON" -m venv .venv
fi
req_hash=$(sha256sum requirements-test.txt | cut -d' ' -f1)
if [ "$(cat .venv/.requirements-test.sha256 2>/dev/null)" != "$req_hash" ]; then
  say "installing Python test packages (requirements-test.txt)"
  .venv/bin/python -m pip install --quiet --disable-pip-version-check -r requirements-test.txt
  echo "$req_hash" > .venv/.requirements-test.sha256
fi
