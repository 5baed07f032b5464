// The end-to-end part of `make bench` and the report of the whole benchmark.
//
//   node scripts/bench.mjs [--native target/bench/native.json] [--out target/bench]
//
// Starts, on 127.0.0.1 only: the fast upstream stand-in (bench/upstream), the pass-through
// floor worker (bench/floor) and llm-mux (build/), each worker under wrangler's dev stack
// (node + a proxy workerd + the worker's own workerd), with the DevTools inspector off and
// then on (stock `wrangler dev`). Then, alternating targets within every repetition, it
// drives each target with oha at concurrency 1 and 16 against the worker's own workerd
// socket ("direct") and the public port, and reads the CPU time of the worker's workerd
// from /proc before and after. Prints one table (with the machine described) and writes
// report.md and results.json to the output directory.
//
// Pinning (2 cores): the workers' processes run on CPU 0, oha and the upstream on CPU 1
// (BENCH_RUNTIME_CPU / BENCH_LOAD_CPU change that). Every load run is bounded in count
// (-n) and time (a kill after BENCH_RUN_TIMEOUT_S). Knobs: BENCH_REPS (5), BENCH_N1 (200
// requests at concurrency 1), BENCH_N16 (1500 at concurrency 16), BENCH_QUICK=1 (a short
// smoke run).
//
// Adding a target is one line in TARGETS; a target of llm-mux that answers its probe with
// 404/405 (endpoint not there yet) or without the expected content type is reported as
// "not available" rather than failing the run.

import { spawn, execFileSync } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { gzipSync } from "node:zlib";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const env = process.env;
const QUICK = env.BENCH_QUICK === "1";
const REPS = Number(env.BENCH_REPS ?? (QUICK ? 1 : 5));
const N1 = Number(env.BENCH_N1 ?? (QUICK ? 50 : 200));
const N16 = Number(env.BENCH_N16 ?? (QUICK ? 200 : 1500));
const WARMUP = QUICK ? 50 : 300;
const RUN_TIMEOUT_MS = Number(env.BENCH_RUN_TIMEOUT_S ?? 60) * 1000;
const RUNTIME_CPU = env.BENCH_RUNTIME_CPU ?? "0";
const LOAD_CPU = env.BENCH_LOAD_CPU ?? (os.cpus().length > 1 ? "1" : "0");
const OHA = env.OHA ?? "oha";
const API_KEY = "bench-client-key";

const args = process.argv.slice(2);
const argOf = (name, dflt) => {
  const i = args.indexOf(name);
  return i >= 0 ? args[i + 1] : dflt;
};
const OUT_DIR = path.resolve(argOf("--out", path.join(ROOT, "target", "bench")));
const NATIVE_JSON = argOf("--native", path.join(OUT_DIR, "native.json"));
mkdirSync(OUT_DIR, { recursive: true });

// A 1 KB query (the size the scorer's target is stated for), mixed content.
const QUERY = (
  "Explain why the following function is slow and compare two ways to fix it, step by step. " +
  "Make sure the answer has at most 200 words.\n```python\ndef total(items):\n    r = 0\n" +
  "    for i in items:\n        r = r + i.price * i.qty\n    return r\n```\n" +
  "1. Measure it first.\n2. Then rewrite the loop.\nIf 3x + 5 = 20, what is x? " +
  "Which statement about the plaintiff's negligence claim is correct?\n" +
  "A. No duty of care.\nB. The statute of limitations expired.\nC. No causation.\nD. None.\n"
).repeat(4).slice(0, 1024);

const chat = (model, stream) => ({ model, messages: [{ role: "user", content: QUERY }], ...(stream ? { stream: true } : {}) });

// name, worker ("floor" | "rsfloor" | "mux"), path, request body, the floor it is compared with, whether
// the answer is an SSE stream. Adding a target is one line.
const TARGETS = [
  { name: "floor", worker: "floor", path: "/", body: chat("mistral-small-latest", false) },
  { name: "floor (stream)", worker: "floor", path: "/", body: chat("mistral-small-latest", true), stream: true },
  // A second floor: a minimal workers-rs worker doing llm-mux's I/O (bench/rs-floor).
  { name: "workers-rs floor", worker: "rsfloor", path: "/", body: chat("mistral-small-latest", false), floor: "floor" },
  { name: "/query", worker: "mux", path: "/query", body: { query: QUERY }, floor: "floor" },
  { name: "/query (stream)", worker: "mux", path: "/query", body: { query: QUERY, stream: true }, floor: "floor (stream)", stream: true },
  { name: "/v1/chat/completions", worker: "mux", path: "/v1/chat/completions", body: chat("auto", false), floor: "floor" },
  { name: "/v1/chat/completions (stream)", worker: "mux", path: "/v1/chat/completions", body: chat("auto", true), floor: "floor (stream)", stream: true },
];

// BENCH_BASE_DIR: a directory with a wrangler.toml and build/ of another llm-mux build
// (e.g. a worktree of an earlier commit), run beside this one as "baseline" targets, so a
// change is compared with what it replaces in the same run.
const BASE_DIR = env.BENCH_BASE_DIR ? path.resolve(env.BENCH_BASE_DIR) : null;
if (BASE_DIR) {
  TARGETS.push(
    { name: "baseline /query", worker: "base", path: "/query", body: { query: QUERY }, floor: "floor" },
    { name: "baseline /v1/chat/completions", worker: "base", path: "/v1/chat/completions", body: chat("auto", false), floor: "floor" },
  );
}

// BENCH_BUDGET=1: also run this build with a global daily budget (never reached), to
// measure what the ledger's admission round trip and settlement add per request.
const BUDGET = env.BENCH_BUDGET === "1";
if (BUDGET) {
  TARGETS.push({ name: "/query with a budget", worker: "budget", path: "/query", body: { query: QUERY }, floor: "floor" });
}

// Ways of running the workers; "via" is where oha connects.
const MODES = [
  { name: "direct, inspector off", key: "direct-noinsp", inspector: false, via: "direct", reps: REPS },
  { name: "public port, inspector off", key: "public-noinsp", inspector: false, via: "public", reps: Math.max(1, Math.ceil(REPS / 2)) },
  // With the inspector on a worker serves only ~50-100 req/s: fewer requests keep the run short.
  { name: "public port, inspector on (stock wrangler dev)", key: "public-insp", inspector: true, via: "public", reps: Math.max(1, Math.floor(REPS / 2)), scale: 0.25 },
  { name: "direct, inspector on (stock wrangler dev)", key: "direct-insp", inspector: true, via: "direct", reps: Math.max(1, Math.floor(REPS / 2)), scale: 0.25 },
];

// BENCH_MODES=direct-noinsp,public-noinsp picks modes (default: all).
const MODE_FILTER = env.BENCH_MODES ? new Set(env.BENCH_MODES.split(",")) : null;
// BENCH_MUX_DIR: a directory with a wrangler.toml and build/ of another llm-mux variant
// (used to profile by removing parts; default: this checkout).
const MUX_DIR = path.resolve(env.BENCH_MUX_DIR ?? ROOT);

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const log = (...a) => console.error("bench:", ...a);
const median = (xs) => {
  const s = xs.filter((x) => Number.isFinite(x)).sort((a, b) => a - b);
  if (!s.length) return NaN;
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
};

// ---------------------------------------------------------------------------------------
// Processes

const children = []; // the workers' launchers (stopped between phases)
const services = []; // the upstream stand-in (stopped at the end)
function startProcess(cmd, argv, opts = {}, list = children) {
  const child = spawn(cmd, argv, { detached: true, stdio: ["ignore", "pipe", "pipe"], ...opts });
  list.push(child);
  let out = "";
  child.stdout.setEncoding("utf8");
  child.stderr.setEncoding("utf8");
  child.stdout.on("data", (d) => (out += d));
  child.stderr.on("data", (d) => (out += d));
  child.output = () => out;
  return child;
}
function killGroup(child, sig = "SIGTERM") {
  try {
    process.kill(-child.pid, sig);
  } catch {
    /* gone */
  }
}
async function stopAll(lists = [children, services]) {
  for (const c of lists.flatMap((l) => l.splice(0))) {
    killGroup(c, "SIGTERM");
    const deadline = Date.now() + 8000;
    while (c.exitCode === null && c.signalCode === null && Date.now() < deadline) await sleep(100);
    killGroup(c, "SIGKILL");
  }
}
process.on("SIGINT", async () => {
  await stopAll();
  process.exit(130);
});

async function waitFor(check, timeoutMs, what) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await check();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(100);
  }
}

/** Child pids of a pid (from /proc). */
function childPids(pid) {
  const out = [];
  for (const d of readdirSync("/proc")) {
    if (!/^\d+$/.test(d)) continue;
    try {
      const stat = readFileSync(`/proc/${d}/stat`, "utf8");
      const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
      if (Number(fields[1]) === pid) out.push(Number(d));
    } catch {
      /* raced */
    }
  }
  return out;
}
const cmdline = (pid) => {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, "utf8").split("\0");
  } catch {
    return [];
  }
};
/** Listening TCP ports of a process (from `ss`, which reads the kernel's socket tables). */
function listeningPorts(pid) {
  const out = execFileSync("ss", ["-ltnpH"]).toString();
  const ports = [];
  for (const line of out.split("\n")) {
    if (!line.includes(`pid=${pid},`)) continue;
    const m = /127\.0\.0\.1:(\d+)\s/.exec(line);
    if (m) ports.push(Number(m[1]));
  }
  return ports;
}
/** CPU time (ns) of a process, all its threads, from /proc/<pid>/task/<tid>/schedstat. */
function cpuNs(pid) {
  let total = 0;
  for (const tid of readdirSync(`/proc/${pid}/task`)) {
    try {
      total += Number(readFileSync(`/proc/${pid}/task/${tid}/schedstat`, "utf8").split(" ")[0]);
    } catch {
      /* thread gone */
    }
  }
  return total;
}
/** utime+stime (ns, 10 ms ticks) from /proc/<pid>/stat: the cross-check of cpuNs. */
function statCpuNs(pid) {
  const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
  const f = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  const ticks = Number(f[11]) + Number(f[12]);
  return (ticks * 1e9) / 100;
}

/**
 * Starts one worker (bench/start-worker.mjs) pinned to RUNTIME_CPU and finds its processes:
 * {public, direct, workerPid, proxyPid, nodePid}.
 */
async function startWorker({ name, config, inspector, vars = {}, secrets = {}, persist }) {
  const argv = [path.join(ROOT, "bench", "start-worker.mjs"), "--config", config, "--port", "0"];
  if (inspector) argv.push("--inspector");
  if (persist) argv.push("--persist", persist);
  for (const [k, v] of Object.entries(vars)) argv.push("--var", `${k}=${v}`);
  for (const [k, v] of Object.entries(secrets)) argv.push("--secret", `${k}=${v}`);
  const childEnv = { ...env, WRANGLER_SEND_METRICS: "false", WRANGLER_SEND_ERROR_REPORTS: "false", CLOUDFLARE_INCLUDE_PROCESS_ENV: "false", NO_COLOR: "1" };
  for (const k of Object.keys(childEnv)) if (/^(MISTRAL_|LLM_MUX_|CLOUDFLARE_API|CF_)/.test(k)) delete childEnv[k];
  const child = startProcess("taskset", ["-c", RUNTIME_CPU, process.execPath, ...argv], { cwd: ROOT, env: childEnv });
  const ready = await waitFor(
    () => {
      if (child.exitCode !== null) throw new Error(`${name} exited early:\n${child.output()}`);
      const line = child.output().split("\n").find((l) => l.startsWith("{\"url\""));
      return line ? JSON.parse(line) : null;
    },
    120_000,
    `${name} to start`,
  );
  const nodePid = ready.pid;
  const publicPort = Number(new URL(ready.url).port);
  // The processes may still be opening their sockets: look until both are found.
  const found = await waitFor(
    async () => {
      const workerds = childPids(nodePid).filter((p) => cmdline(p).some((a) => /workerd$/.test(a)));
      let proxyPid, workerPid, direct;
      for (const p of workerds) {
        const ports = listeningPorts(p);
        if (ports.includes(publicPort)) proxyPid = p;
        else if (ports.length) {
          workerPid = p;
          // The worker's entry socket: the one that answers HTTP (not the inspector's).
          for (const port of ports) {
            try {
              // DevTools answers /json/version with {"Browser": ...} (or 501 to other paths).
              const r = await fetch(`http://127.0.0.1:${port}/json/version`, { signal: AbortSignal.timeout(5000) });
              const text = await r.text();
              if (r.status !== 501 && r.status !== 426 && !text.includes('"Browser"')) {
                direct = `http://127.0.0.1:${port}`;
                break;
              }
            } catch {
              /* not HTTP */
            }
          }
        }
      }
      return proxyPid && workerPid && direct ? { proxyPid, workerPid, direct } : null;
    },
    30_000,
    `${name}'s workerd processes and sockets`,
  );
  const { proxyPid, workerPid, direct } = found;
  return { name, child, public: ready.url, direct, workerPid, proxyPid, nodePid };
}

// ---------------------------------------------------------------------------------------
// Load

/** One bounded oha run; returns its parsed JSON summary. */
function oha(url, body, concurrency, n) {
  const argv = [
    "-c", String(concurrency), "-n", String(n), "--no-tui", "--output-format", "json",
    "-m", "POST", "-H", "content-type: application/json", "-H", `authorization: Bearer ${API_KEY}`,
    "-d", JSON.stringify(body), url,
  ];
  return new Promise((resolve, reject) => {
    const child = spawn("taskset", ["-c", LOAD_CPU, OHA, ...argv], { stdio: ["ignore", "pipe", "pipe"] });
    let out = "";
    let err = "";
    child.stdout.on("data", (d) => (out += d));
    child.stderr.on("data", (d) => (err += d));
    const timer = setTimeout(() => child.kill("SIGKILL"), RUN_TIMEOUT_MS);
    child.on("exit", (code) => {
      clearTimeout(timer);
      try {
        resolve(JSON.parse(out));
      } catch {
        reject(new Error(`oha failed (${code}): ${err.slice(0, 500)}`));
      }
    });
  });
}

const okCount = (r) => Number(r.statusCodeDistribution?.["200"] ?? 0);

/** Probes a target once: null if it works, else why not. */
async function probe(url, target) {
  try {
    const r = await fetch(url, {
      method: "POST",
      headers: { "content-type": "application/json", authorization: `Bearer ${API_KEY}` },
      body: JSON.stringify(target.body),
      signal: AbortSignal.timeout(10_000),
    });
    const text = await r.text();
    const type = r.headers.get("content-type") ?? "";
    if (r.status !== 200) return `HTTP ${r.status}: ${text.slice(0, 120)}`;
    if (target.stream && !type.includes("text/event-stream")) return `answers ${type}, not a stream`;
    if (!target.stream && !type.includes("json")) return `answers ${type}`;
    if (target.stream && !text.includes("[DONE]")) return "stream without [DONE]";
    return null;
  } catch (e) {
    return e.message;
  }
}

async function storage(mux) {
  // A busy metrics object (the inspector-on phase) can be slow to answer: report "n/a"
  // rather than abort the whole run.
  try {
    const r = await fetch(`${mux.public}/metrics`, { headers: { authorization: `Bearer ${API_KEY}` }, signal: AbortSignal.timeout(10_000) });
    const body = await r.json();
    return body.storage ?? null;
  } catch (e) {
    log(`metrics storage not read: ${e.message}`);
    return null;
  }
}

/** Waits until the metrics object has seen `events` events (recorded after responses). */
async function settledStorage(mux, minEvents) {
  let last = null;
  const deadline = Date.now() + 30_000;
  while (Date.now() < deadline) {
    last = await storage(mux);
    if (!last || last.events + last.duplicates >= minEvents) return last;
    await sleep(200);
  }
  return last;
}

/** One measured repetition of one target: c=1 then c=16, CPU read around each. */
async function measure(worker, url, target, scale = 1) {
  const res = {};
  for (const [label, c, n] of [["c1", 1, Math.max(20, Math.round(N1 * scale))], ["c16", 16, Math.max(64, Math.round(N16 * scale))]]) {
    const w0 = cpuNs(worker.workerPid);
    const s0 = statCpuNs(worker.workerPid);
    const p0 = cpuNs(worker.proxyPid) + cpuNs(worker.nodePid);
    let r;
    try {
      r = await oha(url, target.body, c, n);
    } catch (e) {
      // A run that failed or hit its time bound counts as failed requests, not as an abort.
      log(`${target.name} c=${c}: ${e.message.split("\n")[0]}`);
      r = { statusCodeDistribution: {}, latencyPercentiles: { p50: NaN, p99: NaN }, summary: { requestsPerSec: NaN } };
    }
    const w1 = cpuNs(worker.workerPid);
    const s1 = statCpuNs(worker.workerPid);
    const p1 = cpuNs(worker.proxyPid) + cpuNs(worker.nodePid);
    const ok = okCount(r);
    res[label] = {
      ok,
      n,
      p50_ms: r.latencyPercentiles.p50 * 1e3,
      p99_ms: r.latencyPercentiles.p99 * 1e3,
      rps: r.summary.requestsPerSec * (ok / n),
      cpu_us: ok ? (w1 - w0) / ok / 1e3 : NaN,
      cpu_stat_us: ok ? (s1 - s0) / ok / 1e3 : NaN,
      stack_cpu_us: ok ? (w1 - w0 + p1 - p0) / ok / 1e3 : NaN,
    };
  }
  const ok = res.c1.ok + res.c16.ok;
  return {
    p50_c1: res.c1.p50_ms,
    p99_c1: res.c1.p99_ms,
    p50_c16: res.c16.p50_ms,
    p99_c16: res.c16.p99_ms,
    rps_c16: res.c16.rps,
    cpu_us: ok ? (res.c1.cpu_us * res.c1.ok + res.c16.cpu_us * res.c16.ok) / ok : NaN,
    cpu_stat_us: ok ? (res.c1.cpu_stat_us * res.c1.ok + res.c16.cpu_stat_us * res.c16.ok) / ok : NaN,
    stack_cpu_us: ok ? (res.c1.stack_cpu_us * res.c1.ok + res.c16.stack_cpu_us * res.c16.ok) / ok : NaN,
    ok,
    failed: res.c1.n + res.c16.n - ok,
  };
}

// ---------------------------------------------------------------------------------------
// Report helpers

function machine() {
  const cpuModel = os.cpus()[0]?.model ?? "unknown CPU";
  const sh = (cmd, argv) => {
    try {
      return execFileSync(cmd, argv, { stdio: ["ignore", "pipe", "ignore"] }).toString().trim();
    } catch {
      return "?";
    }
  };
  const wranglerVersion = JSON.parse(readFileSync(path.join(ROOT, "node_modules", "wrangler", "package.json"), "utf8")).version;
  const workerdVersion = sh(path.join(ROOT, "node_modules", ".bin", "workerd"), ["--version"]);
  return {
    cpu: `${cpuModel}, ${os.cpus().length} logical CPUs`,
    kernel: `${os.type()} ${os.release()} ${os.arch()}`,
    memory_gb: (os.totalmem() / 2 ** 30).toFixed(1),
    node: process.version,
    rustc: sh("rustc", ["--version"]),
    wrangler: wranglerVersion,
    workerd: workerdVersion,
    oha: sh(OHA, ["--version"]),
  };
}
const loadavg = () => os.loadavg().map((x) => x.toFixed(2)).join(" ");

function sizes() {
  const out = {};
  for (const f of ["build/index_bg.wasm", "build/index.js", "bench/floor/index.js"]) {
    const p = path.join(f.startsWith("build/") ? MUX_DIR : ROOT, f);
    if (!existsSync(p)) continue;
    const raw = readFileSync(p);
    out[f] = { raw: raw.length, gzip: gzipSync(raw, { level: 9 }).length };
  }
  return out;
}

/** The size `wrangler deploy` reports for its upload ("Total Upload: X KiB / gzip: Y KiB":
 * wasm and wrangler's own JS bundle concatenated, gzip level 6), from a dry run that
 * uploads nothing; null if wrangler cannot run here. */
function wranglerUpload() {
  const out = mkdtempSync(path.join(os.tmpdir(), "llm-mux-bench-dry-"));
  try {
    const text = execFileSync(path.join(ROOT, "node_modules", ".bin", "wrangler"), ["deploy", "--dry-run", "--outdir", out], {
      cwd: MUX_DIR,
      encoding: "utf8",
      stdio: ["ignore", "pipe", "pipe"],
      timeout: 120_000,
    });
    const m = /Total Upload: ([\d.]+) KiB \/ gzip: ([\d.]+) KiB/.exec(text.replace(/\x1b\[[0-9;]*m/g, ""));
    return m ? { raw_kib: Number(m[1]), gzip_kib: Number(m[2]) } : null;
  } catch (e) {
    log(`wrangler deploy --dry-run failed: ${e.message}`);
    return null;
  } finally {
    rmSync(out, { recursive: true, force: true });
  }
}

const fmt = (x, d = 2) => (Number.isFinite(x) ? x.toFixed(d) : "n/a");
const kb = (b) => `${(b / 1024).toFixed(1)} KB`;
const ratio = (x, f) => (Number.isFinite(x) && Number.isFinite(f) && f > 0 ? `${(x / f).toFixed(2)}x` : "");

// ---------------------------------------------------------------------------------------
// Main

const started = Date.now();
const load_before = loadavg();
const mach = machine();
const size = sizes();
const upload = wranglerUpload();
const upstreamBin = path.join(ROOT, "bench", "upstream", "target", "release", "llm-mux-bench-upstream");
if (!existsSync(upstreamBin)) throw new Error(`${upstreamBin} is missing: cargo build --release in bench/upstream`);
if (!existsSync(path.join(MUX_DIR, "build", "index.js"))) throw new Error("build/index.js is missing: make build");

const results = { machine: mach, sizes: size, wrangler_upload: upload, modes: {}, storage: {}, unavailable: {} };
const work = mkdtempSync(path.join(os.tmpdir(), "llm-mux-bench-"));
try {
  const upstreamPort = 20000 + Math.floor(Math.random() * 20000);
  const upstream = startProcess("taskset", ["-c", LOAD_CPU, upstreamBin, "--port", String(upstreamPort)], {}, services);
  const upstreamUrl = `http://127.0.0.1:${upstreamPort}`;
  await waitFor(() => upstream.output().includes("listening"), 10_000, "the upstream stand-in");
  log(`upstream stand-in at ${upstreamUrl} (CPU ${LOAD_CPU}); workers on CPU ${RUNTIME_CPU}; load ${load_before}`);

  for (const inspector of [false, true]) {
    const modes = MODES.filter((m) => m.inspector === inspector && (!MODE_FILTER || MODE_FILTER.has(m.key)));
    if (!modes.length) continue;
    log(`starting workers (inspector ${inspector ? "on" : "off"})`);
    const floor = await startWorker({
      name: "floor",
      config: path.join(ROOT, "bench", "floor", "wrangler.toml"),
      inspector,
      vars: { UPSTREAM: upstreamUrl, KEY: "bench-upstream-key" },
      persist: path.join(work, "state-floor"),
    });
    const mux = await startWorker({
      name: "llm-mux",
      config: path.join(MUX_DIR, "wrangler.toml"),
      inspector,
      vars: { MISTRAL_BASE_URL: upstreamUrl },
      secrets: { MISTRAL_API_KEY: "bench-upstream-key", LLM_MUX_API_KEYS: API_KEY },
      persist: path.join(work, `state-${inspector ? "insp" : "noinsp"}`),
    });
    const rsFloorConfig = path.join(ROOT, "bench", "rs-floor", "wrangler.toml");
    const rsfloor = existsSync(path.join(ROOT, "bench", "rs-floor", "build", "index.js"))
      ? await startWorker({
          name: "workers-rs floor",
          config: rsFloorConfig,
          inspector,
          vars: { MISTRAL_BASE_URL: upstreamUrl },
          secrets: { MISTRAL_API_KEY: "bench-upstream-key" },
          persist: path.join(work, "state-rsfloor"),
        })
      : null;
    const base = BASE_DIR
      ? await startWorker({
          name: "baseline llm-mux",
          config: path.join(BASE_DIR, "wrangler.toml"),
          inspector,
          vars: { MISTRAL_BASE_URL: upstreamUrl },
          secrets: { MISTRAL_API_KEY: "bench-upstream-key", LLM_MUX_API_KEYS: API_KEY },
          persist: path.join(work, `state-base-${inspector ? "insp" : "noinsp"}`),
        })
      : null;
    const budget = BUDGET
      ? await startWorker({
          name: "llm-mux with a budget",
          config: path.join(MUX_DIR, "wrangler.toml"),
          inspector,
          vars: { MISTRAL_BASE_URL: upstreamUrl, GLOBAL_DAILY_BUDGET_USD: "1000000" },
          secrets: { MISTRAL_API_KEY: "bench-upstream-key", LLM_MUX_API_KEYS: API_KEY },
          persist: path.join(work, `state-budget-${inspector ? "insp" : "noinsp"}`),
        })
      : null;
    const workers = { floor, mux, ...(rsfloor ? { rsfloor } : {}), ...(base ? { base } : {}), ...(budget ? { budget } : {}) };
    log(`floor: public ${floor.public}, direct ${floor.direct}; llm-mux: public ${mux.public}, direct ${mux.direct}`);

    // Which targets exist in this build.
    const targets = [];
    for (const t of TARGETS) {
      const why = workers[t.worker] ? await probe(workers[t.worker].direct + t.path, t) : "not built";
      if (why) results.unavailable[t.name] = why;
      else targets.push(t);
    }
    if (!inspector) log(`targets: ${targets.map((t) => t.name).join(", ")}; unavailable: ${JSON.stringify(results.unavailable)}`);

    // Warm-up: JIT and wasm tiers, connection pools.
    for (const t of targets) {
      for (const via of new Set(modes.map((m) => m.via))) await oha(workers[t.worker][via] + t.path, t.body, 4, WARMUP);
    }

    const maxReps = Math.max(...modes.map((m) => m.reps));
    const raw = {};
    let muxRequests = 0;
    let storage0 = await settledStorage(mux, 0);
    for (let rep = 0; rep < maxReps; rep++) {
      for (const mode of modes) {
        if (rep >= mode.reps) continue;
        // Alternate the order of targets between repetitions.
        const order = rep % 2 ? [...targets].reverse() : targets;
        for (const t of order) {
          const w = workers[t.worker];
          const m = await measure(w, w[mode.via] + t.path, t, mode.scale ?? 1);
          if (t.worker === "mux") muxRequests += m.ok + m.failed;
          ((raw[mode.key] ??= {})[t.name] ??= []).push(m);
          log(`${mode.key} rep ${rep + 1}/${mode.reps} ${t.name}: p50 ${fmt(m.p50_c1)} ms, ${fmt(m.rps_c16, 0)} req/s, cpu ${fmt(m.cpu_us, 0)} us${m.failed ? `, ${m.failed} FAILED` : ""}`);
        }
      }
    }
    // Durable Object cost: rows per request over every llm-mux request of this phase.
    const probes = targets.filter((t) => t.worker === "mux").length;
    const storage1 = await settledStorage(mux, (storage0?.events ?? 0) + muxRequests);
    if (storage0 && storage1) {
      const events = storage1.events - storage0.events;
      results.storage[inspector ? "inspector on" : "inspector off"] = {
        requests: muxRequests,
        events,
        rows_written_per_request: (storage1.rows_written - storage0.rows_written) / muxRequests,
        rows_read_per_request: (storage1.rows_read - storage0.rows_read) / muxRequests,
        rows_written_per_event: events ? (storage1.rows_written - storage0.rows_written) / events : NaN,
        // Durable Object calls carrying events (absent before batching).
        events_per_batch:
          storage1.batches !== undefined && storage1.batches > (storage0.batches ?? 0)
            ? events / (storage1.batches - (storage0.batches ?? 0))
            : NaN,
        duplicates: storage1.duplicates - storage0.duplicates,
        probes,
      };
    }
    for (const mode of modes) {
      results.modes[mode.key] = { name: mode.name, reps: mode.reps, targets: {} };
      for (const [name, reps] of Object.entries(raw[mode.key] ?? {})) {
        const agg = {};
        for (const k of Object.keys(reps[0])) agg[k] = median(reps.map((r) => r[k]));
        agg.failed = reps.reduce((s, r) => s + r.failed, 0);
        results.modes[mode.key].targets[name] = agg;
      }
    }
    await stopAll([children]);
  }
} finally {
  await stopAll();
  rmSync(work, { recursive: true, force: true });
}
results.load = { before: load_before, after: loadavg() };
results.seconds = Math.round((Date.now() - started) / 1000);

// ---------------------------------------------------------------------------------------
// The table

let native = null;
try {
  native = JSON.parse(readFileSync(NATIVE_JSON, "utf8"));
} catch {
  /* native part not run */
}
results.native = native;

const lines = [];
const p = (s = "") => lines.push(s);
p(`## llm-mux benchmark (${new Date().toISOString().slice(0, 16).replace("T", " ")} UTC)`);
p();
p(`Machine: ${mach.cpu}, ${mach.memory_gb} GB, ${mach.kernel}; ${mach.rustc}; node ${mach.node}; wrangler ${mach.wrangler}; workerd ${mach.workerd}; ${mach.oha}.`);
p(`Load average (1/5/15 min) before: ${results.load.before}, after: ${results.load.after} (other work shares the machine: compare with the floor of the same run).`);
p(`Workers pinned to CPU ${RUNTIME_CPU}, oha and the upstream stand-in to CPU ${LOAD_CPU}. ${REPS} repetitions (medians), ${N1} requests at concurrency 1 and ${N16} at 16 per repetition; 1 KB query.`);
p();
if (native) {
  p("### 1. Scorer and router, native, per query (`cargo bench --bench routers`): median of 31 samples taken in rounds over all cases, and in brackets the fastest sample, the better estimate on a shared, busy machine");
  p();
  const routers = [...new Set(native.map((r) => r.router))];
  const sizesB = [...new Set(native.map((r) => r.bytes))];
  p(`| router | ${sizesB.map((b) => (b >= 1024 ? `${b / 1024} KB` : `${b} B`)).join(" | ")} | per KB at 32 KB |`);
  p(`|---|${sizesB.map(() => "---").join("|")}|---|`);
  for (const r of routers) {
    const row = sizesB.map((b) => native.find((x) => x.router === r && x.bytes === b));
    const last = row[row.length - 1];
    p(`| ${r} | ${row.map((x) => (x ? `${fmt(x.median_ns / 1e3)} us (${fmt(x.min_ns / 1e3)})` : "")).join(" | ")} | ${last ? fmt(last.median_ns / 1e3 / (last.bytes / 1024)) : ""} us (${last ? fmt(last.min_ns / 1e3 / (last.bytes / 1024)) : ""}) |`);
  }
  p();
}
p("### 2. Worker size");
p();
p("| file | raw | gzip -9 |");
p("|---|---|---|");
let totalRaw = 0;
let totalGz = 0;
for (const [f, s] of Object.entries(size)) {
  p(`| ${f} | ${kb(s.raw)} | ${kb(s.gzip)} |`);
  if (f.startsWith("build/")) {
    totalRaw += s.raw;
    totalGz += s.gzip;
  }
}
p(`| **llm-mux total (build/)** | ${kb(totalRaw)} | **${kb(totalGz)}** |`);
p();
p(upload ? `\`wrangler deploy --dry-run\` reports: Total Upload ${upload.raw_kib} KiB / gzip ${upload.gzip_kib} KiB (wasm and wrangler's JS bundle in one gzip stream, level 6).` : "`wrangler deploy --dry-run` did not run.");
p();
p("### 3. End to end under wrangler dev (loopback; ratios to the floor of the same run)");
for (const [key, mode] of Object.entries(results.modes)) {
  p();
  const sc = MODES.find((m) => m.key === key)?.scale ?? 1;
  p(`**${mode.name}** (${mode.reps} repetitions of ${Math.max(20, Math.round(N1 * sc))} requests at c=1 and ${Math.max(64, Math.round(N16 * sc))} at c=16)`);
  p();
  p("| target | p50 c=1 | p99 c=1 | p50 c=16 | p99 c=16 | req/s c=16 | workerd CPU/request | stack CPU/request |");
  p("|---|---|---|---|---|---|---|---|");
  for (const t of TARGETS) {
    const m = mode.targets[t.name];
    if (!m) continue;
    const f = t.floor ? mode.targets[t.floor] : null;
    const r = (k) => (f ? ` (${ratio(m[k], f[k])})` : "");
    const d = (k) => (f && Number.isFinite(m[k] - f[k]) ? ` (${m[k] >= f[k] ? "+" : ""}${fmt(m[k] - f[k])})` : "");
    p(
      `| ${t.name} | ${fmt(m.p50_c1)} ms${d("p50_c1")} | ${fmt(m.p99_c1)} ms | ${fmt(m.p50_c16)} ms | ${fmt(m.p99_c16)} ms${r("p99_c16")} | ${fmt(m.rps_c16, 0)}${r("rps_c16")} | ${fmt(m.cpu_us, 0)} us${r("cpu_us")} | ${fmt(m.stack_cpu_us, 0)} us${r("stack_cpu_us")} |` +
        (m.failed ? ` ${m.failed} failed` : ""),
    );
  }
}
for (const [name, why] of Object.entries(results.unavailable)) p(`\nNot available in this build: ${name} (${why}).`);
p();
p("CPU/request: CPU time of the worker's own workerd process (all threads, /proc/<pid>/task/*/schedstat) over the successful requests of the c=1 and c=16 runs; it includes the metrics Durable Object, which runs in the same process. Stack CPU adds the proxy workerd and wrangler's node process. p50 c=1 shows + ms over the floor.");
p();
p("### 4. Durable Object cost (SQLite, from /metrics `storage`)");
p();
p("| phase | requests | events recorded | events per Durable Object call | rows written/request | rows read/request | rows written/event |");
p("|---|---|---|---|---|---|---|");
for (const [phase, s] of Object.entries(results.storage)) {
  p(`| ${phase} | ${s.requests} | ${s.events} | ${fmt(s.events_per_batch, 1)} | ${fmt(s.rows_written_per_request, 3)} | ${fmt(s.rows_read_per_request, 3)} | ${fmt(s.rows_written_per_event, 3)} |`);
}
p();
p("Events are batched per isolate (METRICS_BATCH_MS, default 100 ms) and sent after the response (ctx.waitUntil); the object writes one row per batch. /metrics sends its isolate's queue before reading, so every event is counted here; fewer events than requests would mean some were lost.");
p();
p("### Targets");
p();
const direct = results.modes["direct-noinsp"]?.targets ?? {};
const q = direct["/query"];
const fl = direct.floor;
const oneKb = native?.find((x) => x.bytes === 1024 && /heuristic scorer/.test(x.router));
const big = native?.find((x) => x.bytes === 32768 && /heuristic scorer/.test(x.router));
const st = results.storage["inspector off"];
const mark = (ok) => (ok ? "met" : "MISSED");
p("| target | measured | |");
p("|---|---|---|");
if (oneKb) {
  p(`| scorer <= 5 us per 1 KB query, native | median ${fmt(oneKb.median_ns / 1e3)} us, fastest ${fmt(oneKb.min_ns / 1e3)} us | ${mark(oneKb.median_ns <= 5000)} (median), ${mark(oneKb.min_ns <= 5000)} (fastest) |`);
  if (big) p(`| scorer linear in length | fastest ${fmt(big.min_ns / 1e3 / 32)} us per KB at 32 KB vs ${fmt(oneKb.min_ns / 1e3)} at 1 KB | ${mark(big.min_ns / 32 <= oneKb.min_ns * 1.5)} |`);
}
p(`| bundle <= 250 KB gzipped (this round's budget; 200 KB before issue 10) | ${kb(totalGz)} (gzip -9 per file)${upload ? `; wrangler's report ${upload.gzip_kib} KiB` : ""} | ${mark(totalGz <= 250 * 1024 && (!upload || upload.gzip_kib <= 250))} |`);
if (q && fl) {
  p(`| workerd CPU per /query <= 1.5x floor (direct, inspector off) | ${fmt(q.cpu_us, 0)} us vs ${fmt(fl.cpu_us, 0)} us = ${ratio(q.cpu_us, fl.cpu_us)} | ${mark(q.cpu_us <= 1.5 * fl.cpu_us)} |`);
  p(`| /query p50 <= floor + 1 ms (c=1, direct, inspector off) | ${fmt(q.p50_c1)} ms vs ${fmt(fl.p50_c1)} ms (${q.p50_c1 >= fl.p50_c1 ? "+" : ""}${fmt(q.p50_c1 - fl.p50_c1)}) | ${mark(q.p50_c1 <= fl.p50_c1 + 1)} |`);
}
if (st) p(`| rows written per request <= 1 | ${fmt(st.rows_written_per_request, 3)} (${fmt(st.rows_written_per_event, 3)} per recorded event) | ${mark(st.rows_written_per_request <= 1 && st.rows_written_per_event <= 1)} |`);
p();
p(`End-to-end part took ${results.seconds} s.`);

const report = lines.join("\n") + "\n";
writeFileSync(path.join(OUT_DIR, "report.md"), report);
writeFileSync(path.join(OUT_DIR, "results.json"), JSON.stringify(results, null, 2) + "\n");
console.log(report);
