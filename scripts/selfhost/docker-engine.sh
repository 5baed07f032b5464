#!/usr/bin/env bash
# The Docker engine `make test-docker` needs, on a Debian machine where we are root:
#   docker-engine.sh install   installs Debian's docker.io, docker-compose and debootstrap when
#                              missing (apt-get update first)
#   docker-engine.sh start     starts dockerd unless one answers; prints the pid it started
#                              (empty when it reused a running engine)
#   docker-engine.sh stop PID  stops the dockerd this script started (by pid)
# The engine it starts has no default bridge (--bridge=none) and no iptables rules: containers
# and image builds run with host networking only, bound to 127.0.0.1 by the project's config.
set -euo pipefail

say() { printf 'docker-engine: %s\n' "$*" >&2; }

case ${1:-} in
  install)
    missing=()
    command -v dockerd >/dev/null || missing+=(docker.io)
    command -v docker-compose >/dev/null || missing+=(docker-compose)
    command -v debootstrap >/dev/null || missing+=(debootstrap)
    command -v docker >/dev/null || missing+=(docker.io)
    if [ ${#missing[@]} -gt 0 ]; then
      say "installing ${missing[*]} (apt-get)"
      apt-get update -q
      DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null
    fi
    ;;
  start)
    if docker info >/dev/null 2>&1; then
      say "using the running Docker engine"
      exit 0
    fi
    log=${TMPDIR:-/tmp}/llm-mux-dockerd.log
    say "starting dockerd (log: $log)"
    setsid dockerd --bridge=none --iptables=false --ip6tables=false >"$log" 2>&1 </dev/null &
    pid=$!
    for _ in $(seq 1 100); do
      if docker info >/dev/null 2>&1; then
        echo "$pid"
        exit 0
      fi
      kill -0 "$pid" 2>/dev/null || { say "dockerd exited:"; tail -20 "$log" >&2; exit 1; }
      sleep 0.3
    done
    say "dockerd did not answer within 30 s"; kill "$pid" 2>/dev/null || true; exit 1
    ;;
  stop)
    pid=${2:-}
    [ -n "$pid" ] || exit 0
    say "stopping the dockerd it started (pid $pid)"
    kill -TERM "$pid" 2>/dev/null || exit 0
    for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || exit 0; sleep 0.2; done
    kill -KILL "$pid" 2>/dev/null || true
    ;;
  *)
    echo "usage: $0 install | start | stop PID" >&2
    exit 2
    ;;
esac
