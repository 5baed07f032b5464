#!/usr/bin/env bash
# Builds, from Debian's packages, the two base images the Dockerfile takes as build arguments,
# for machines that cannot pull from an image registry (skips an image already present):
#
#   llm-mux-base/runtime:bookworm    RUNTIME_BASE: Debian's libc6 (all workerd links against)
#                                    and busybox (sh for the entrypoint, wget for the health
#                                    check), ~15 MB; the same content as busybox:glibc.
#   llm-mux-base/rust:bookworm       BUILD_BASE: a debootstrap minbase root, then (apt) gcc,
#                                    curl, libssl-dev, pkg-config, nodejs and npm, plus the Rust toolchain from rustup
#                                    (RUST_VERSION, with the wasm32 target); like rust:bookworm.
#                                    With the host's worker-build and wasm-bindgen (from
#                                    scripts/setup.sh) when present, so image builds skip
#                                    compiling them. It also trusts the host's extra CAs
#                                    (/usr/local/share/ca-certificates), so HTTPS through an
#                                    egress proxy works in image builds as it does on the host.
#
# Debian's mirror and suite are the host's (from apt's sources and /etc/os-release), never a
# host written into the repository. Needs root, apt, debootstrap and a running Docker engine
# (scripts/selfhost/docker-engine.sh).
set -euo pipefail
cd "$(dirname "$0")/../.."

RUST_VERSION=${RUST_VERSION:-1.95.0}
RUNTIME_IMAGE=${LLM_MUX_RUNTIME_BASE:-llm-mux-base/runtime:bookworm}
BUILD_IMAGE=${LLM_MUX_BUILD_BASE:-llm-mux-base/rust:bookworm}

say() { printf 'docker-base: %s\n' "$*" >&2; }
have_image() { docker image inspect "$1" >/dev/null 2>&1; }

# shellcheck disable=SC1091
suite=$(. /etc/os-release && echo "${VERSION_CODENAME:?}")
mirror() {
  local uri
  uri=$(grep -hs '^URIs:' /etc/apt/sources.list.d/*.sources | awk '{print $2}' | grep -m1 '/debian/\?$' || true)
  [ -n "$uri" ] || uri=$(grep -hs '^deb ' /etc/apt/sources.list /etc/apt/sources.list.d/*.list | awk '{print $2}' | grep -m1 '/debian/\?$' || true)
  [ -n "$uri" ] || { say "no Debian mirror in apt's sources"; exit 1; }
  echo "$uri"
}

work=$(mktemp -d "${TMPDIR:-/tmp}/llm-mux-base.XXXXXX")
trap 'rm -rf "$work"' EXIT

if have_image "$RUNTIME_IMAGE"; then
  say "$RUNTIME_IMAGE present"
else
  say "assembling $RUNTIME_IMAGE from Debian's libc6 and busybox ($suite)"
  root=$work/runtime
  mkdir -p "$root" "$work/debs"
  (cd "$work/debs" && apt-get download -q libc6 busybox 2>&1 | grep -v "unsandboxed" >&2 || true)
  for deb in "$work"/debs/*.deb; do dpkg-deb -x "$deb" "$root"; done
  rm -rf "$root/usr/share/doc" "$root/usr/share/lintian" "$root/usr/share/man"
  mkdir -p "$root/bin" "$root/tmp" "$root/etc" "$root/root" "$root/var/lib" "$root/usr/bin"
  chmod 1777 "$root/tmp"
  # busybox's applets (sh, wget, id, ...) as links, as busybox:glibc has them
  [ -e "$root/bin/busybox" ] || { say "busybox not at /bin/busybox in the package"; exit 1; }
  for applet in $(chroot "$root" /bin/busybox --list); do
    [ -e "$root/bin/$applet" ] || ln -s busybox "$root/bin/$applet"
  done
  printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n' > "$root/etc/passwd"
  printf 'root:x:0:\nnogroup:x:65534:\n' > "$root/etc/group"
  printf 'hosts: files dns\n' > "$root/etc/nsswitch.conf"
  tar -C "$root" -c . | docker import --change 'CMD ["/bin/sh"]' - "$RUNTIME_IMAGE" >/dev/null
  say "$RUNTIME_IMAGE: $(docker image inspect -f '{{.Size}}' "$RUNTIME_IMAGE" | awk '{printf "%.1f MB", $1/1e6}')"
fi

if have_image "$BUILD_IMAGE"; then
  say "$BUILD_IMAGE present"
else
  debian=llm-mux-base/debian-build:$suite
  if ! have_image "$debian"; then
    url=$(mirror)
    say "debootstrap $suite from $url (a minute or two)"
    debootstrap --variant=minbase "$suite" "$work/build" "$url" >"$work/debootstrap.log" 2>&1 \
      || { tail -20 "$work/debootstrap.log" >&2; exit 1; }
    rm -rf "$work/build/var/cache/apt/archives"/*.deb "$work/build/var/lib/apt/lists"/*
    tar -C "$work/build" -c . | docker import --change 'CMD ["/bin/bash"]' - "$debian" >/dev/null
    rm -rf "$work/build"
  fi
  say "installing gcc, curl, nodejs, npm (apt) and Rust $RUST_VERSION (rustup, wasm32 target) into $BUILD_IMAGE"
  mkdir -p "$work/extra-ca" "$work/tools"
  cp /usr/local/share/ca-certificates/*.crt "$work/extra-ca/" 2>/dev/null || true
  # worker-build and wasm-bindgen as scripts/setup.sh built them on this host (same Debian):
  # the image build then skips compiling them (it installs them itself when absent).
  cargo_bin=${CARGO_HOME:-$HOME/.cargo}/bin
  for tool in worker-build wasm-bindgen; do
    if [ -x "$cargo_bin/$tool" ]; then cp "$cargo_bin/$tool" "$work/tools/"; fi
  done
  docker build -q --network host -t "$BUILD_IMAGE" --build-arg "BASE=$debian" \
    --build-arg "RUST_VERSION=$RUST_VERSION" -f - "$work" >/dev/null <<'EOF'
ARG BASE
FROM ${BASE}
ARG RUST_VERSION
ENV RUSTUP_HOME=/usr/local/rustup CARGO_HOME=/usr/local/cargo PATH=/usr/local/cargo/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
RUN set -eu; export DEBIAN_FRONTEND=noninteractive; \
    apt-get update -q; \
    apt-get install -y -q --no-install-recommends ca-certificates curl gcc libc6-dev libssl-dev make nodejs npm pkg-config >/dev/null; \
    rm -rf /var/lib/apt/lists/*
# The host's own CAs (an egress proxy's, on machines like this one): HTTPS to rustup, crates.io
# and the npm registry is then trusted exactly as on the host.
COPY extra-ca/ /usr/local/share/ca-certificates/
RUN update-ca-certificates >/dev/null
ENV NODE_EXTRA_CA_CERTS=/etc/ssl/certs/ca-certificates.crt
RUN set -eu; \
    curl -sSf --proto '=https' --tlsv1.2 -o /tmp/rustup-init \
      https://static.rust-lang.org/rustup/dist/x86_64-unknown-linux-gnu/rustup-init; \
    chmod +x /tmp/rustup-init; \
    /tmp/rustup-init -y -q --no-modify-path --profile minimal --default-toolchain "$RUST_VERSION" \
      --target wasm32-unknown-unknown; \
    rm /tmp/rustup-init; rustc --version; cargo --version; node --version
COPY tools/ /usr/local/cargo/bin/
EOF
fi
say "base images: RUNTIME_BASE=$RUNTIME_IMAGE BUILD_BASE=$BUILD_IMAGE"
