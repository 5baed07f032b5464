#!/usr/bin/env bash
# Moves a finished worker build from a staging directory into build/, one rename per file,
# so a running `wrangler dev` (which reloads on every change under build/) never reads a
# half-written file: rename(2) swaps a file whole. The wasm goes first, then the JS glue
# that imports it; files whose bytes did not change are left alone (no reload for them).
# Usage: scripts/publish-build.sh STAGING_DIR OUT_DIR
set -euo pipefail
staging=$1
out=$2
mkdir -p "$out/worker"
for file in index_bg.wasm index.js package.json worker/shim.mjs; do
  [ -f "$staging/$file" ] || { echo "publish-build: $staging/$file is missing" >&2; exit 1; }
  if cmp -s "$staging/$file" "$out/$file"; then
    continue
  fi
  # Same file system (both under the project), so `mv` is a rename, never a copy.
  mv -f "$staging/$file" "$out/$file"
done
