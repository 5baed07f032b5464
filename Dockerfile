# llm-mux, self-hosted: the worker built from this checkout, run by plain workerd (no
# wrangler, no Cloudflare account). README "Run it anywhere"; `docker compose up --build`.
#
# Base images are build arguments. The defaults are pulled from Docker Hub; where no registry
# is reachable, scripts/selfhost/docker-base.sh builds equivalents from Debian's packages
# (`make test-docker` does, and passes them in):
#   BUILD_BASE    Rust (rustup, the wasm32 target is added here) and a C compiler; node, npm,
#                 pkg-config and OpenSSL's headers (worker-build links OpenSSL) are installed
#                 with apt, worker-build and wasm-bindgen-cli with cargo, when missing.
#   RUNTIME_BASE  glibc and a busybox (sh, wget): all workerd and the entrypoint need.
# Builds need the network (crates.io, the npm registry): build with host networking
# (docker-compose.yml does).
ARG BUILD_BASE=rust:1.95-bookworm
ARG RUNTIME_BASE=busybox:1.36-glibc

FROM ${BUILD_BASE} AS build
ENV CARGO_TERM_COLOR=never CARGO_INCREMENTAL=0
RUN set -eu; \
    if ! command -v node >/dev/null || ! command -v npm >/dev/null \
       || ! command -v pkg-config >/dev/null || ! pkg-config --exists openssl; then \
      apt-get update; apt-get install -y --no-install-recommends nodejs npm pkg-config libssl-dev; \
      rm -rf /var/lib/apt/lists/*; \
    fi; \
    rustup target list --installed | grep -qx wasm32-unknown-unknown || rustup target add wasm32-unknown-unknown
WORKDIR /src

# worker-build and the wasm-bindgen CLI at the versions scripts/setup.sh and Cargo.lock pin,
# installed when the base does not have them (a layer of its own: rebuilt when those change).
COPY scripts/setup.sh scripts/setup.sh
COPY Cargo.lock Cargo.lock
RUN set -eu; \
    wb=$(sed -n 's/^WORKER_BUILD_VERSION=//p' scripts/setup.sh); \
    bg=$(awk '/^name = "wasm-bindgen"$/ {getline; gsub(/[^0-9.]/, ""); print; exit}' Cargo.lock); \
    test -n "$wb" && test -n "$bg"; \
    worker-build --version 2>/dev/null | grep -q "$wb" \
      || cargo install --quiet worker-build --version "$wb" --locked; \
    wasm-bindgen --version 2>/dev/null | grep -q " $bg\$" \
      || cargo install --quiet wasm-bindgen-cli --version "$bg"; \
    rm -rf "$CARGO_HOME/registry/src" "$CARGO_HOME/registry/cache" "$CARGO_HOME/git"

# npm packages (esbuild and binaryen for the build; workerd, copied to the runtime image).
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund --loglevel=error

# The worker's dependencies, compiled against stub sources of the workspace's crates (a layer
# rebuilt only when a manifest or Cargo.lock changes; worker-build runs this same cargo build).
COPY Cargo.toml ./
COPY crates/core/Cargo.toml crates/core/Cargo.toml
COPY crates/eval/Cargo.toml crates/eval/Cargo.toml
RUN set -eu; \
    mkdir -p src crates/core/src crates/core/benches crates/eval/src; \
    touch src/lib.rs crates/core/src/lib.rs crates/eval/src/lib.rs; \
    echo 'fn main() {}' > crates/eval/src/main.rs; echo 'fn main() {}' > crates/core/benches/routers.rs; \
    cargo build --quiet --lib --release --target wasm32-unknown-unknown -p llm-mux; \
    rm -rf src crates

# The worker, as `make build` builds it.
COPY wrangler.toml ./
COPY src src
COPY crates crates
COPY data data
COPY scripts/name-sort-keys.mjs scripts/shorten-glue-names.mjs scripts/wasm-leb.mjs scripts/
RUN set -eu; \
    find src crates -name '*.rs' -exec touch {} +; \
    WASM_BINDGEN_BIN=$CARGO_HOME/bin/wasm-bindgen WASM_OPT_BIN=$PWD/node_modules/.bin/wasm-opt \
      ESBUILD_BIN=$PWD/node_modules/.bin/esbuild worker-build --release; \
    node scripts/name-sort-keys.mjs build/index_bg.wasm; \
    node_modules/.bin/wasm-opt build/index_bg.wasm --reorder-functions-by-name \
      --strip-debug --strip-producers --strip-target-features \
      --enable-reference-types --enable-bulk-memory \
      --enable-nontrapping-float-to-int --enable-sign-ext --enable-mutable-globals \
      --enable-multivalue -o build/index_bg.wasm; \
    node scripts/shorten-glue-names.mjs build

# Its workerd config (generated from wrangler.toml), the launcher and workerd itself.
COPY scripts/selfhost scripts/selfhost
RUN set -eu; \
    node scripts/selfhost/workerd-config.mjs; \
    mkdir -p /out/app/build /out/app/scripts/selfhost /out/usr/local/bin; \
    cp build/index.js build/index_bg.wasm build/llm-mux.* /out/app/build/; \
    cp scripts/selfhost/serve.sh /out/app/scripts/selfhost/; \
    cp "$(node -p 'require.resolve("@cloudflare/workerd-linux-64/bin/workerd")')" /out/usr/local/bin/workerd; \
    /out/usr/local/bin/workerd --version

FROM ${RUNTIME_BASE}
COPY --from=build /out/ /
RUN set -eu; \
    echo 'llm-mux:x:10001:10001:llm-mux:/var/lib/llm-mux:/bin/false' >> /etc/passwd; \
    echo 'llm-mux:x:10001:' >> /etc/group; \
    mkdir -p /var/lib/llm-mux; chown 10001:10001 /var/lib/llm-mux
USER 10001:10001
WORKDIR /app
# LLM_MUX_LISTEN: 127.0.0.1 by default (docker-compose.yml uses host networking); behind a
# port mapping, listen on 0.0.0.0:8787 instead.
ENV LLM_MUX_LISTEN=127.0.0.1:8787 \
    LLM_MUX_STATE_DIR=/var/lib/llm-mux \
    LLM_MUX_CONFIG=/app/build/llm-mux.capnp \
    LLM_MUX_WORKERD=/usr/local/bin/workerd \
    LLM_MUX_DEV_VARS=
VOLUME ["/var/lib/llm-mux"]
EXPOSE 8787
# GET / is the unauthenticated index; wget to 0.0.0.0 reaches a wildcard listener too. (No
# `wget -T`: Debian's busybox 1.35 wget crashes with it; --timeout bounds the check.)
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 \
    CMD ["/bin/sh", "-c", "wget -q -O /dev/null \"http://${LLM_MUX_LISTEN}/\""]
STOPSIGNAL SIGTERM
ENTRYPOINT ["/app/scripts/selfhost/serve.sh"]
