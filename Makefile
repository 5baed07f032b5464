# llm-mux: `make dev` runs the gateway locally, `make test` runs every test.
SHELL := /bin/bash
export PATH := $(HOME)/.cargo/bin:$(PATH)

PORT ?= 8787
# worker-build must not download wasm-bindgen, wasm-opt or esbuild (no GitHub here).
BUILD_ENV = WASM_BINDGEN_BIN=$(HOME)/.cargo/bin/wasm-bindgen \
            WASM_OPT_BIN=$(CURDIR)/node_modules/.bin/wasm-opt \
            ESBUILD_BIN=$(CURDIR)/node_modules/.bin/esbuild

.PHONY: setup build dev serve test test-native test-e2e test-selfhost test-docker test-build-while-dev demo eval train-router calibrate simulate lint coverage mutants deploy clean bench

## setup: install the toolchain pieces and npm packages (skips what is present)
setup:
	@bash scripts/setup.sh

## build: compile the worker to build/index.js + build/index_bg.wasm. Everything is built
## and optimised in $(BUILD_STAGING), then renamed into build/ file by file, wasm first
## (scripts/publish-build.sh): a running `make dev` reloads whole files only and survives.
BUILD_STAGING = target/worker-build
# Extra wasm-opt flags (tests/build/build-while-dev.sh passes -O1 to make two builds differ).
WASM_OPT_EXTRA ?=
build: setup
	$(BUILD_ENV) worker-build --release --out-dir $(BUILD_STAGING)
	@# Functions sorted once more by their names turned into sort keys (one trait's impls
	@# side by side: ~1.1 KB gzipped), then the wasm name, producers and target features
	@# sections dropped (~138 KB raw, ~36 KB gzipped): only debugging and tools use them.
	@# Stripping after wasm-bindgen is safe; `strip = true` in the cargo profile is not
	@# (shared/reference/toolchain.md).
	node scripts/name-sort-keys.mjs $(BUILD_STAGING)/index_bg.wasm
	node_modules/.bin/wasm-opt $(BUILD_STAGING)/index_bg.wasm --reorder-functions-by-name \
	  --strip-debug --strip-producers --strip-target-features \
	  --enable-reference-types --enable-bulk-memory --enable-nontrapping-float-to-int \
	  --enable-sign-ext --enable-mutable-globals --enable-multivalue $(WASM_OPT_EXTRA) \
	  -o $(BUILD_STAGING)/index_bg.wasm
	@# Short names for the wasm's imports and exports in the wasm and the JS glue alike
	@# (wasm-bindgen's carry 16-digit hashes, written in both files: ~6 KB gzipped).
	node scripts/shorten-glue-names.mjs $(BUILD_STAGING)
	bash scripts/publish-build.sh $(BUILD_STAGING) build

## dev: run the gateway at http://127.0.0.1:$(PORT) with wrangler dev (reads .dev.vars)
dev: build
	node_modules/.bin/wrangler dev --ip 127.0.0.1 --port $(PORT)

## serve: run the built worker in plain workerd, without wrangler (README "Run it anywhere"):
##        listens on LLM_MUX_LISTEN (127.0.0.1:$(PORT)), Durable Object state (SQLite) in
##        LLM_MUX_STATE_DIR (.state), vars and secrets from the environment, then .dev.vars,
##        then wrangler.toml [vars]
LLM_MUX_LISTEN ?= 127.0.0.1:$(PORT)
LLM_MUX_STATE_DIR ?= .state
serve: build
	node scripts/selfhost/workerd-config.mjs
	LLM_MUX_LISTEN=$(LLM_MUX_LISTEN) LLM_MUX_STATE_DIR=$(LLM_MUX_STATE_DIR) scripts/selfhost/serve.sh

## The end-to-end specs that also run self-hosted (plain workerd in `make test`, the Docker
## image in `make test-docker`): /query, /v1/chat/completions whole and streamed, /metrics,
## errors, persistence across a restart, and cost control (the ledger Durable Object).
SELFHOST_SPECS = tests/e2e/query.test.mjs tests/e2e/chat.test.mjs tests/e2e/streaming.test.mjs \
                 tests/e2e/metrics.test.mjs tests/e2e/errors.test.mjs tests/e2e/persistence.test.mjs \
                 tests/e2e/cost-control.test.mjs

## test: native tests of the core, then end-to-end tests over the built worker in workerd
## (wrangler dev), the self-hosted subset in plain workerd (make serve's way), the official
## openai and mistralai Python SDKs against it (tests/sdk), then test-docker (the Docker
## image; ~1.5 min on a warm machine; TEST_DOCKER=0 leaves it out where Docker cannot run)
TEST_DOCKER ?= 1
test: build
	cargo test --workspace --lib --bins --tests
	node --test --test-concurrency=1 tests/e2e/
	LLM_MUX_E2E_RUNTIME=workerd node --test --test-concurrency=1 $(SELFHOST_SPECS)
	.venv/bin/python -m pytest -q tests/sdk
	bash tests/build/build-while-dev.sh
ifeq ($(TEST_DOCKER),1)
	$(MAKE) --no-print-directory test-docker
endif

## test-selfhost: the self-hosted subset in plain workerd only
test-selfhost: build
	LLM_MUX_E2E_RUNTIME=workerd node --test --test-concurrency=1 $(SELFHOST_SPECS)

## test-docker: build the Docker image (local base images from Debian's packages when no
##              registry is reachable), run the self-hosted subset against containers started
##              by docker-compose (and graceful-stop.test.mjs: `docker stop` keeps the last
##              batch), restart one and check its totals survived, remove what it
##              started (scripts/selfhost/test-docker.sh; installs Debian's docker.io if missing)
test-docker: setup
	bash scripts/selfhost/test-docker.sh $(SELFHOST_SPECS) tests/e2e/graceful-stop.test.mjs

## test-build-while-dev: `make build` twice while `make dev` serves; dev must survive (~1 min)
test-build-while-dev: build
	bash tests/build/build-while-dev.sh

test-native:
	cargo test --workspace --lib --bins --tests

test-e2e: build
	node --test --test-concurrency=1 tests/e2e/
	.venv/bin/python -m pytest -q tests/sdk

## demo: send ~20 queries to a gateway and print a table and the /metrics summary
demo: build
	node scripts/demo.mjs

EVAL_DATA ?= ../shared/data/routing-eval

## eval: both routers + baselines on the test split; writes target/eval/report-test.{md,json}
##       and the quality-vs-large-share plots docs/img/routing-test*.svg; then the
##       leave-one-benchmark-out table (target/eval/lobo.{md,json}, ~1-2 minutes)
eval:
	@mkdir -p target/eval docs/img
	cargo run --profile eval --quiet -p llm-mux-eval --bin llm-mux-eval -- report --split test \
		--markdown target/eval/report-test.md --json target/eval/report-test.json \
		--svg docs/img/routing-test.svg $(EVAL_DATA)
	@echo
	@echo "## Leave-one-benchmark-out (generalisation to an unseen benchmark)"
	@echo
	cargo run --profile eval --quiet -p llm-mux-eval --bin llm-mux-eval -- lobo \
		--markdown target/eval/lobo.md --json target/eval/lobo.json $(EVAL_DATA)

## train-router: fit the learned router on the dev split only (5-fold CV grid within dev)
##               -> data/learned_router.bin; prints the threshold for crates/core/src/learned.rs
train-router:
	cargo run --profile eval --quiet -p llm-mux-eval --bin llm-mux-eval -- train --out data/learned_router.bin $(EVAL_DATA)

## calibrate: threshold meeting a target on dev, e.g.
##   make calibrate ROUTER=learned TARGET="--target-quality 0.95"
##   (or --target-large-share 0.3, or --max-cost-per-1k 0.05)
ROUTER ?= heuristic
TARGET ?= --target-quality 0.95
calibrate:
	cargo run --profile eval --quiet -p llm-mux-eval --bin llm-mux-eval -- calibrate --router $(ROUTER) $(TARGET) --split dev $(EVAL_DATA)

## simulate: the quality controller on replayed traffic (docs/quality.md): the test split as
##           50,000 requests x 20 seeds at a 0.95 quality target, then the shifting-traffic
##           scenario (mmlu -> gsm8k -> mt_bench); prints both tables, writes
##           target/eval/simulate*.json and docs/img/quality-*.svg
SIM = cargo run --profile eval --quiet -p llm-mux-eval --bin llm-mux-eval -- simulate
simulate:
	@mkdir -p target/eval docs/img
	$(SIM) --split test --requests 50000 --seeds 20 --sample-rate 0.02 --target-quality 0.95 \
		--json target/eval/simulate-test.json --svg docs/img/quality-test.svg $(EVAL_DATA)
	$(SIM) --split test --requests 50000 --seeds 20 --sample-rate 0.02 --target-quality 0.95 \
		--json target/eval/simulate-shift.json --svg docs/img/quality-shift.svg \
		$(EVAL_DATA)/mmlu.jsonl --then $(EVAL_DATA)/gsm8k.jsonl --then $(EVAL_DATA)/mt_bench.jsonl

## bench: scorer/router cost, worker size, end-to-end cost against a pass-through floor,
## Durable Object rows per request; one table (see BENCHMARKS.md; ~5-10 minutes)
bench: build
	bash scripts/bench.sh

lint:
	cargo fmt --check
	cargo clippy --workspace --all-targets -- -D warnings

## coverage: line coverage of the native tests (installs cargo-llvm-cov once)
coverage:
	@rustup component list --installed | grep -q llvm-tools || rustup component add llvm-tools-preview
	@cargo llvm-cov --version >/dev/null 2>&1 || cargo install cargo-llvm-cov --locked
	cargo llvm-cov --workspace --lib --tests --summary-only

## mutants: mutation testing of the core's native tests (cargo-mutants, installed once;
##          not part of `make test`): mutates MUTANTS_FILES one mutant at a time, runs
##          `cargo test -p llm-mux-core` on each, then prints caught/missed per file and the
##          score (scripts/mutants-score.py). Bounded: one job (MUTANTS_JOBS), a mutant's tests
##          killed after 30 s (MUTANTS_TIMEOUT), the key modules below by default; widen with
##          e.g. MUTANTS_FILES='crates/core/src/**/*.rs'. Results in mutants.out/ (docs/mutants.md).
MUTANTS_FILES ?= crates/core/src/metrics/aggregate.rs crates/core/src/metrics/outbox.rs \
                 crates/core/src/pricing.rs crates/core/src/routing.rs \
                 crates/core/src/routes.rs crates/core/src/chat.rs crates/core/src/api.rs
MUTANTS_JOBS ?= 1
MUTANTS_TIMEOUT ?= 30
MUTANTS_ARGS ?=
mutants:
	@cargo mutants --version >/dev/null 2>&1 || cargo install cargo-mutants --locked
	@# Exit 2 (missed mutants) and 3 (timeouts) are results, printed below; others are errors.
	@status=0; cargo mutants --package llm-mux-core --jobs $(MUTANTS_JOBS) \
	  --timeout $(MUTANTS_TIMEOUT) --no-shuffle \
	  $(foreach f,$(MUTANTS_FILES),--file '$(f)') $(MUTANTS_ARGS) || status=$$?; \
	python3 scripts/mutants-score.py --missed mutants.out || exit $$?; \
	case $$status in 0|2|3) ;; *) exit $$status ;; esac

## deploy: build and deploy to Cloudflare (needs `wrangler login` and the secret set)
deploy: build
	node_modules/.bin/wrangler deploy

clean:
	rm -rf build target/wasm32-unknown-unknown
