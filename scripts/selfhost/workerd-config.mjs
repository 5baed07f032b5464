#!/usr/bin/env node
// Writes the self-hosted workerd config of the built worker, generated from wrangler.toml so
// the two never drift: `make serve`, the end-to-end harness (LLM_MUX_E2E_RUNTIME=workerd) and
// the Docker image all run what this writes.
//
//   node scripts/selfhost/workerd-config.mjs [--out DIR] [--vars NAME,NAME...]
//
// Output (DIR defaults to build/, next to index.js and index_bg.wasm, which the config embeds
// by relative path, so build/ can be copied anywhere as one unit):
//   DIR/llm-mux.capnp         the workerd config: one worker (the same modules, compatibility
//                             date and flags as wrangler.toml), the Durable Object classes of
//                             wrangler.toml with SQLite storage on local disk (directory
//                             "state", overridden at start-up with --directory-path), its
//                             bindings imported from the file serve.sh writes, an HTTP socket
//                             "http" (address overridden with --socket-addr).
//   DIR/llm-mux.defaults.env  wrangler.toml's [vars], NAME='value' lines: serve.sh exports
//                             those the environment does not set.
//   DIR/llm-mux.objects       the Durable Object bindings (Cap'n Proto list items) and
//   DIR/llm-mux.vars          the variable names, one a line: serve.sh writes the config's
//                             bindings from them at every start (an unset variable is left
//                             out: bound from an unset environment variable it would be null,
//                             which the worker's env accessors do not accept).
//   DIR/llm-mux.notices       what is switched off self-hosted, one line each: serve.sh
//                             prints it at every start.
//
// workerd has no way to bind "every environment variable": each name must be listed. The list
// is wrangler.toml's [vars], the variables the worker's configuration reads (CONFIG_VARS, kept
// complete by tests/e2e/selfhost-config.test.mjs), and any extra names given with --vars or
// LLM_MUX_EXTRA_VARS (e.g. a tier's own api_key_var).
//
// Platform features plain workerd does not provide are left out with a message on stderr
// (see README "Run it anywhere").

import { mkdirSync, readFileSync, renameSync, writeFileSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..", "..");

/** Variables and secrets the worker's configuration reads (crates/core/src/config). */
export const CONFIG_VARS = [
  "MISTRAL_API_KEY",
  "MISTRAL_BASE_URL",
  "SMALL_MODEL",
  "LARGE_MODEL",
  "MAX_QUERY_BYTES",
  "UPSTREAM_TIMEOUT_MS",
  "METRICS_BATCH_MS",
  "METRICS_SHARDS",
  "ROUTER",
  "ROUTING_THRESHOLD",
  "TIERS",
  "MODEL_PRICES",
  "LLM_MUX_API_KEYS",
  "QUALITY_SAMPLE_RATE",
  "QUALITY_MAX_SAMPLES_PER_HOUR",
  "QUALITY_TARGET",
  "JUDGE_TIER",
  "TARGET_LARGE_SHARE",
  "TARGET_COST_PER_1K",
  "FALLBACK",
  "MAX_BODY_BYTES",
  "MAX_UPSTREAM_RESPONSE_BYTES",
  "STREAM_IDLE_TIMEOUT_MS",
  "STREAM_MAX_DURATION_MS",
  "LLM_MUX_ADMIN_KEY",
  "CORS_ALLOW_ORIGINS",
  "KEY_POLICIES",
  "GLOBAL_RATE_LIMIT_PER_MINUTE",
  "GLOBAL_DAILY_BUDGET_USD",
  "GLOBAL_MONTHLY_BUDGET_USD",
  "BUDGET_ACTION",
  "BUDGET_MAX_COMPLETION_TOKENS",
  "CACHE_TTL_SECONDS",
  "CACHE_SCOPE",
  "LOG_REQUESTS",
  // set by serve.sh itself at each start (a random token for its graceful stop)
  "LLM_MUX_DRAIN_TOKEN",
  // keys of the other backends a TIERS entry may name by default
  "OPENAI_API_KEY",
  "ANTHROPIC_API_KEY",
];

/** wrangler.toml sections the self-hosted config carries over (or has no use for:
 * `minify` and `keep_names` shape wrangler's own bundle; workerd loads worker-build's
 * build/index.js, minified already). */
const HANDLED = new Set(["name", "main", "compatibility_date", "compatibility_flags", "vars", "durable_objects", "migrations", "observability", "build", "minify", "keep_names"]);

const NAME = /^[A-Z_][A-Z0-9_]*$/;

/**
 * Parses the TOML subset wrangler.toml uses: comments, [table], [[array.of.tables]],
 * key = "string" | 'string' | number | true/false | ["strings", ...]. Anything else throws,
 * so a new construct is noticed instead of silently dropped.
 */
export function parseToml(text) {
  const root = {};
  let table = root;
  const lines = text.split(/\r?\n/);
  lines.forEach((raw, i) => {
    const line = stripComment(raw).trim();
    if (!line) return;
    const where = `wrangler.toml:${i + 1}`;
    let m;
    if ((m = line.match(/^\[\[\s*([A-Za-z0-9_.-]+)\s*\]\]$/))) {
      const keys = m[1].split(".");
      const parent = descend(root, keys.slice(0, -1), where);
      const last = keys[keys.length - 1];
      parent[last] ??= [];
      if (!Array.isArray(parent[last])) throw new Error(`${where}: ${m[1]} is not an array of tables`);
      table = {};
      parent[last].push(table);
    } else if ((m = line.match(/^\[\s*([A-Za-z0-9_.-]+)\s*\]$/))) {
      table = descend(root, m[1].split("."), where);
    } else if ((m = line.match(/^([A-Za-z0-9_-]+)\s*=\s*(.+)$/))) {
      table[m[1]] = parseValue(m[2].trim(), where);
    } else {
      throw new Error(`${where}: cannot read ${JSON.stringify(raw)}`);
    }
  });
  return root;
}

function stripComment(line) {
  let quote = null;
  for (let i = 0; i < line.length; i++) {
    const c = line[i];
    if (quote) {
      if (c === "\\" && quote === '"') i++;
      else if (c === quote) quote = null;
    } else if (c === '"' || c === "'") quote = c;
    else if (c === "#") return line.slice(0, i);
  }
  return line;
}

function descend(root, keys, where) {
  let t = root;
  for (const k of keys) {
    t[k] ??= {};
    if (Array.isArray(t[k])) t = t[k][t[k].length - 1];
    else if (typeof t[k] === "object") t = t[k];
    else throw new Error(`${where}: ${k} is not a table`);
  }
  return t;
}

function parseValue(v, where) {
  if (v.startsWith('"')) return JSON.parse(v);
  if (v.startsWith("'") && v.endsWith("'")) return v.slice(1, -1);
  if (v === "true" || v === "false") return v === "true";
  if (/^[+-]?\d+(\.\d+)?$/.test(v)) return Number(v);
  if (v.startsWith("[") && v.endsWith("]")) {
    const inner = v.slice(1, -1).trim();
    if (!inner) return [];
    return inner.split(",").map((s) => s.trim()).filter(Boolean).map((s) => parseValue(s, where));
  }
  throw new Error(`${where}: unsupported value ${v}`);
}

/** A Cap'n Proto text literal. */
const capnpText = (s) => JSON.stringify(String(s));

/** A value for a `NAME='value'` line that POSIX sh reads back verbatim. */
const shQuote = (s) => `'${String(s).replace(/'/g, `'\\''`)}'`;

/**
 * The workerd config and the defaults file for a parsed wrangler.toml.
 * Returns {capnp, defaults, notices}.
 */
export function generate(wrangler, { extraVars = [] } = {}) {
  const notices = [];
  for (const key of Object.keys(wrangler)) {
    if (!HANDLED.has(key)) {
      notices.push(`[${key}] (wrangler.toml) has no self-hosted equivalent in plain workerd: switched off`);
    }
  }
  if (wrangler.observability?.enabled) {
    notices.push("[observability] Workers Logs is a Cloudflare service: self-hosted, the worker's logs go to workerd's stdout/stderr");
  }
  const main = wrangler.main ?? "build/index.js";
  if (path.basename(main) !== "index.js") throw new Error(`main = ${main}: expected worker-build's build/index.js`);

  const vars = wrangler.vars ?? {};
  for (const [k, v] of Object.entries(vars)) {
    if (!NAME.test(k)) throw new Error(`[vars] ${k}: not an UPPER_CASE name`);
    if (typeof v === "object") throw new Error(`[vars] ${k}: only plain values are supported self-hosted`);
  }
  const names = [...new Set([...Object.keys(vars), ...CONFIG_VARS, ...extraVars])];
  for (const n of names) if (!NAME.test(n)) throw new Error(`variable ${JSON.stringify(n)}: not an UPPER_CASE name`);

  const objects = wrangler.durable_objects?.bindings ?? [];
  const sqlite = new Set((wrangler.migrations ?? []).flatMap((m) => m.new_sqlite_classes ?? []));
  for (const o of objects) {
    if (o.script_name) notices.push(`Durable Object ${o.name}: script_name (another worker's class) is not supported self-hosted: switched off`);
  }
  const local = objects.filter((o) => !o.script_name);

  // Durable Object bindings (fixed); serve.sh adds one `fromEnvironment` binding for each
  // variable that is set when it starts (an unset one would be bound as null, which the
  // worker's env accessors do not accept).
  const objectBindings = local.map((o) => `    (name = ${capnpText(o.name)}, durableObjectNamespace = ${capnpText(o.class_name)}),`);
  const namespaces = local.map(
    (o) =>
      `    (className = ${capnpText(o.class_name)}, uniqueKey = ${capnpText(`${wrangler.name ?? "worker"}-${o.class_name}`)}, enableSql = ${sqlite.has(o.class_name)}),`,
  );
  const flags = wrangler.compatibility_flags ?? [];

  const capnp = `# Generated by scripts/selfhost/workerd-config.mjs from wrangler.toml: do not edit.
# Run: scripts/selfhost/serve.sh (make serve), or the Docker image's entrypoint.
using Workerd = import "/workerd/workerd.capnp";
# The bindings: written by serve.sh at every start (in the state directory, found through
# --import-path): the Durable Objects below and the variables set in its environment.
using Env = import "/llm-mux-env.capnp";

const config :Workerd.Config = (
  services = [
    (name = "main", worker = .worker),
    # Durable Object storage: one SQLite file per object under <state>/<uniqueKey>/.
    (name = "state", disk = (path = "state", writable = true)),
    # Outbound fetch: upstream APIs on the internet, and on this host or its network
    # (a local OpenAI-compatible server, a stand-in in tests).
    (name = "internet", network = (allow = ["public", "private", "local"], tlsOptions = (trustBrowserCas = true))),
  ],
  sockets = [
    (name = "http", address = "127.0.0.1:8787", http = (), service = "main"),
  ],
);

const worker :Workerd.Worker = (
  compatibilityDate = ${capnpText(wrangler.compatibility_date)},
  compatibilityFlags = [${flags.map(capnpText).join(", ")}],
  modules = [
    (name = "index.js", esModule = embed "index.js"),
    (name = "index_bg.wasm", wasm = embed "index_bg.wasm"),
  ],
  bindings = Env.bindings,
  durableObjectNamespaces = [
${namespaces.join("\n")}
  ],
  durableObjectStorage = (localDisk = "state"),
  globalOutbound = "internet",
);
`;

  const defaults =
    "# Generated by scripts/selfhost/workerd-config.mjs from wrangler.toml [vars]: do not edit.\n" +
    Object.entries(vars)
      .map(([k, v]) => `${k}=${shQuote(v)}\n`)
      .join("");
  const varsList = names.map((n) => `${n}\n`).join("");
  return { capnp, defaults, notices, objectBindings: objectBindings.map((l) => `${l}\n`).join(""), varsList };
}

function writeAtomic(file, text) {
  const tmp = `${file}.${process.pid}.tmp`;
  writeFileSync(tmp, text);
  renameSync(tmp, file);
}

function main(argv) {
  let out = path.join(ROOT, "build");
  const extra = (process.env.LLM_MUX_EXTRA_VARS ?? "").split(",");
  for (let i = 0; i < argv.length; i++) {
    if (argv[i] === "--out") out = path.resolve(argv[++i]);
    else if (argv[i] === "--vars") extra.push(...argv[++i].split(","));
    else if (argv[i] === "--quiet") continue;
    else throw new Error(`unknown argument ${argv[i]}`);
  }
  const wrangler = parseToml(readFileSync(path.join(ROOT, "wrangler.toml"), "utf8"));
  const { capnp, defaults, notices, objectBindings, varsList } = generate(wrangler, { extraVars: extra.map((s) => s.trim()).filter(Boolean) });
  mkdirSync(out, { recursive: true });
  writeAtomic(path.join(out, "llm-mux.capnp"), capnp);
  writeAtomic(path.join(out, "llm-mux.defaults.env"), defaults);
  writeAtomic(path.join(out, "llm-mux.objects"), objectBindings);
  writeAtomic(path.join(out, "llm-mux.vars"), varsList);
  writeAtomic(path.join(out, "llm-mux.notices"), notices.map((n) => `${n}\n`).join(""));
  if (!argv.includes("--quiet")) {
    for (const n of notices) process.stderr.write(`selfhost: ${n}\n`);
  }
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  try {
    main(process.argv.slice(2));
  } catch (e) {
    process.stderr.write(`selfhost: ${e.message}\n`);
    process.exit(1);
  }
}
