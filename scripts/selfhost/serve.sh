#!/bin/sh
# Runs the built worker in plain workerd, without wrangler: `make serve`, the end-to-end
# harness (LLM_MUX_E2E_RUNTIME=workerd) and the Docker image's entrypoint all start it here.
# POSIX sh only (the runtime image has no bash or node).
#
# Reads (all optional):
#   LLM_MUX_LISTEN     address to listen on            (default 127.0.0.1:8787)
#   LLM_MUX_STATE_DIR  Durable Object storage (SQLite) (default ./.state)
#   LLM_MUX_CONFIG     workerd config                  (default build/llm-mux.capnp, written by
#                                                       scripts/selfhost/workerd-config.mjs)
#   LLM_MUX_WORKERD    workerd binary                  (default node_modules/.bin/workerd,
#                                                       else `workerd` on PATH)
#   LLM_MUX_DEV_VARS   dotenv file of vars/secrets     (default .dev.vars when present;
#                                                       set it empty to read none)
#   LLM_MUX_DRY_RUN    non-empty: print the bindings and their values, start nothing (tests)
#   LLM_MUX_EXTRA_VARS more variable names to bind     (comma-separated; the known ones and
#                                                       *_API_KEY(S) are bound anyway)
# The worker's variables and secrets come from the environment; then from the dotenv file
# for names the environment does not set; then from wrangler.toml's [vars]
# (build/llm-mux.defaults.env) for names still unset.
set -eu

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
config=${LLM_MUX_CONFIG:-$root/build/llm-mux.capnp}
configdir=$(dirname "$config")
defaults=$configdir/llm-mux.defaults.env
listen=${LLM_MUX_LISTEN:-127.0.0.1:8787}
state=${LLM_MUX_STATE_DIR:-$root/.state}
dev_vars=${LLM_MUX_DEV_VARS-$root/.dev.vars}

say() { printf 'llm-mux: %s\n' "$*" >&2; }

if [ ! -f "$config" ]; then
  say "$config is missing: run \`make serve\` (or make build, then node scripts/selfhost/workerd-config.mjs)"
  exit 1
fi

workerd=${LLM_MUX_WORKERD:-}
if [ -z "$workerd" ]; then
  if [ -x "$root/node_modules/.bin/workerd" ]; then
    workerd=$root/node_modules/.bin/workerd
  else
    workerd=workerd
  fi
fi

# Exports NAME=value lines of a dotenv file for names not already set. Accepts
# `NAME=value`, `NAME="value"` (\n, \" and \\ escapes), `NAME='value'`, an optional
# `export ` prefix, blank lines and # comments.
load_unset() {
  file=$1
  while IFS= read -r line || [ -n "$line" ]; do
    line=${line#"${line%%[![:space:]]*}"}
    case $line in '' | '#'*) continue ;; esac
    line=${line#export }
    name=${line%%=*}
    value=${line#*=}
    case $name in
      '' | *[!A-Za-z0-9_]* | [0-9]*) say "$file: skipped a line that is not NAME=value"; continue ;;
    esac
    [ "$name" = "$line" ] && { say "$file: skipped $name (no =)"; continue; }
    eval "isset=\${$name+x}"
    [ -n "$isset" ] && continue
    case $value in
      \"*\")
        value=${value#\"}; value=${value%\"}
        value=$(printf '%s' "$value" | sed -e 's/\\n/\
/g' -e 's/\\"/"/g' -e 's/\\\\/\\/g')
        ;;
      \'*\') value=${value#\'}; value=${value%\'} ;;
      *) value=${value%%[[:space:]]#*}; value=${value%"${value##*[![:space:]]}"} ;;
    esac
    export "$name=$value"
  done < "$file"
}

if [ -n "$dev_vars" ] && [ -f "$dev_vars" ]; then
  say "reading variables and secrets from $dev_vars (the environment wins)"
  load_unset "$dev_vars"
fi
[ -f "$defaults" ] && load_unset "$defaults"

notices=$configdir/llm-mux.notices
if [ -s "$notices" ]; then
  while IFS= read -r n; do say "self-hosted: $n"; done < "$notices"
fi

mkdir -p "$state"
if [ ! -w "$state" ]; then
  say "state directory $state is not writable by uid $(id -u)"
  exit 1
fi

# A token for this process's graceful stop (see stop_gracefully below), known only to this
# script and the worker: 128 random bits, hex.
LLM_MUX_DRAIN_TOKEN=$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')
export LLM_MUX_DRAIN_TOKEN

# The worker's bindings: its Durable Objects, and one `fromEnvironment` binding per variable
# that is set (known names from wrangler.toml and the worker's configuration, any *_API_KEY or
# *_API_KEYS in the environment, e.g. a tier's own api_key_var, and the names listed in
# LLM_MUX_EXTRA_VARS, comma-separated). An unset one is left out rather than bound as null.
confdir=$state/.workerd
mkdir -p "$confdir"
{
  printf '%s\n' '# Written by scripts/selfhost/serve.sh at start-up: do not edit.' \
    '@0xd4a1f3c5e7b90a2d;' \
    'using Workerd = import "/workerd/workerd.capnp";' \
    'const bindings :List(Workerd.Worker.Binding) = ['
  cat "$configdir/llm-mux.objects"
  {
    cat "$configdir/llm-mux.vars"
    printf '%s\n' "${LLM_MUX_EXTRA_VARS:-}" | tr ',' '\n'
    env | sed -n 's/^\([A-Za-z_][A-Za-z0-9_]*_API_KEYS\{0,1\}\)=.*/\1/p'
  } | sort -u | while IFS= read -r name; do
    case $name in '' | *[!A-Za-z0-9_]* | [0-9]*) continue ;; esac
    eval "isset=\${$name+x}"
    [ -n "$isset" ] && printf '    (name = "%s", fromEnvironment = "%s"),\n' "$name" "$name"
  done
  printf '%s\n' '];'
} > "$confdir/llm-mux-env.capnp.tmp"
mv "$confdir/llm-mux-env.capnp.tmp" "$confdir/llm-mux-env.capnp"

if [ -n "${LLM_MUX_DRY_RUN:-}" ]; then
  # For tests: the bindings and the values they would take, instead of starting workerd.
  cat "$confdir/llm-mux-env.capnp"
  sed -n 's/^    (name = "\([A-Za-z0-9_]*\)", fromEnvironment.*/\1/p' "$confdir/llm-mux-env.capnp" |
    while IFS= read -r name; do eval "printf '%s=%s\\n' \"\$name\" \"\${$name}\""; done
  exit 0
fi

# Graceful stop. On SIGTERM (`docker stop`, a process manager), workerd stops listening and
# lets the requests in flight finish, but it does not wait for the worker's `waitUntil`
# work: the metrics events and spend settlements an isolate batches for METRICS_BATCH_MS
# would be lost with the last batch. So before passing the signal on, this asks the worker
# to drain (POST /_llm-mux/drain with the token): it sends every batch at once from then
# on, and keeps that request open until no request is being served and nothing is left to
# send (at most 8 s); workerd's own drain waits for that request. (wget: busybox's in the
# image; curl where there is no wget.)
drain_url() {
  case $listen in
    0.0.0.0:* | \*:*) echo "http://127.0.0.1:${listen#*:}/_llm-mux/drain" ;;
    \[::\]:*) echo "http://[::1]:${listen##*]:}/_llm-mux/drain" ;;
    *) echo "http://$listen/_llm-mux/drain" ;;
  esac
}
post_drain() {
  if command -v wget >/dev/null 2>&1; then
    wget -q -O /dev/null --header "Authorization: Bearer $LLM_MUX_DRAIN_TOKEN" --post-data '' "$(drain_url)"
  else
    curl -s -o /dev/null -m 10 -X POST -H "Authorization: Bearer $LLM_MUX_DRAIN_TOKEN" "$(drain_url)"
  fi
}
trapped=0
stop_gracefully() {
  trapped=1
  trap '' TERM INT
  say "stopping: draining the worker's batches, then workerd"
  post_drain >/dev/null 2>&1 &
  drainer=$!
  # Let the drain request reach the worker before workerd stops accepting connections.
  sleep 0.2
  kill -TERM "$child" 2>/dev/null || true
  wait "$drainer" 2>/dev/null || true
}

say "serving on http://$listen, state in $state (workerd $("$workerd" --version 2>/dev/null | sed 's/^workerd //'))"
"$workerd" serve "$config" \
  --import-path "$confdir" \
  --socket-addr "http=$listen" \
  --directory-path "state=$state" &
child=$!
# SIGINT (Ctrl-C under `make serve`) stops the same way: workerd, started in the background
# of a non-interactive shell, ignores SIGINT itself.
trap stop_gracefully TERM INT
if wait "$child"; then status=0; else status=$?; fi
if [ "$trapped" = 1 ]; then
  # A trapped signal cut that `wait` short (status 128 + signal); this one returns workerd's
  # own exit status, whether it is still draining or has exited meanwhile.
  if wait "$child"; then status=0; else status=$?; fi
fi
exit "$status"
