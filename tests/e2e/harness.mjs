// Starts and stops the real, built worker (build/index.js + index_bg.wasm) in workerd through
// `wrangler dev`, from the project root so the project's wrangler.toml is used.
//
//   const gw = await startGateway({ vars: { MISTRAL_API_KEY: "k", MISTRAL_BASE_URL: stub.url } });
//   await fetch(`${gw.url}/query`, ...);  gw.logs();  await gw.stop();
//
// Isolation from the developer's machine:
// - wrangler 4.86 reads /work/main/.dev.vars (or .env) only when no --env-file is given; the
//   harness always passes its own env file (written in a private temp dir), so a developer's
//   .dev.vars never leaks into tests. CLOUDFLARE_INCLUDE_PROCESS_ENV=false keeps the test
//   runner's environment out of the worker's env too.
// - Secrets (SECRET_VARS) go through that env file, so wrangler binds them as secret_text and
//   prints them as "(hidden)"; other vars go through `--var K:V` (overriding wrangler.toml).
// - Telemetry off, wrangler's debug log redirected into the temp dir (scanned by logs()).
// Everything listens on 127.0.0.1; every wait is bounded.
//
// LLM_MUX_E2E_RUNTIME picks what runs the worker (README "Run it anywhere"):
//   wrangler (default)  `wrangler dev`, as above.
//   workerd             plain workerd without wrangler: scripts/selfhost/serve.sh, what
//                       `make serve` runs, from the config scripts/selfhost/workerd-config.mjs
//                       writes next to the build; vars and secrets in its environment (the
//                       developer's .dev.vars is never read), state in persistTo.
//   docker              the Docker image (built beforehand, LLM_MUX_IMAGE, default
//                       llm-mux:local) started by `docker-compose up` with the project's
//                       docker-compose.yml: host networking on 127.0.0.1:port, vars and secrets
//                       in a private env file, persistTo bind-mounted as the state volume.
//                       `make test-docker` runs the self-hosted subset this way.
// `make test` runs the self-hosted subset (SELFHOST_SPECS in the Makefile) with workerd too.

import { spawn, spawnSync } from "node:child_process";
import { chmodSync, mkdtempSync, writeFileSync, readdirSync, readFileSync, rmSync, existsSync, mkdirSync } from "node:fs";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";

export const PROJECT_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..", "..");
const WRANGLER = path.join(PROJECT_ROOT, "node_modules", ".bin", "wrangler");
/** Where wrangler runs (its wrangler.toml and build are used): the project root, unless
 * LLM_MUX_E2E_WORKER_DIR points at another worker directory (e.g. a release checkout). */
export const WORKER_DIR = process.env.LLM_MUX_E2E_WORKER_DIR
  ? path.resolve(process.env.LLM_MUX_E2E_WORKER_DIR)
  : PROJECT_ROOT;

/** Vars passed as secrets (env file -> secret_text bindings) instead of `--var`: these, and
 * any variable whose name ends in _API_KEY or _API_KEYS (OPENAI_API_KEY, ANTHROPIC_API_KEY, a
 * tier's own api_key_var...). */
export const SECRET_VARS = new Set(["MISTRAL_API_KEY", "LLM_MUX_API_KEYS", "LLM_MUX_ADMIN_KEY"]);

/** Whether a variable is passed as a secret. */
export function isSecretVar(name) {
  return SECRET_VARS.has(name) || /_API_KEYS?$/.test(name);
}

/** A free TCP port on 127.0.0.1. */
export function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.unref();
    srv.once("error", reject);
    srv.listen(0, "127.0.0.1", () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

/** A fresh temp dir for persisted state. */
export function tempDir(prefix = "llm-mux-e2e-") {
  return mkdtempSync(path.join(os.tmpdir(), prefix));
}

/** Throws a clear error when the worker has not been built. */
export function assertBuilt(root = PROJECT_ROOT) {
  for (const f of ["build/index.js"]) {
    if (!existsSync(path.join(root, f))) {
      throw new Error(`${f} is missing: build the worker first (make build / worker-build --release)`);
    }
  }
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
/** Like sleep, but does not keep the process alive (for upper bounds in races). */
const bound = (ms) => new Promise((r) => setTimeout(r, ms).unref());

// wrangler runs in its own process group (so stop() can take workerd down with it); if this
// process dies without calling stop(), take the groups down here so nothing is left behind.
const liveGroups = new Set();
const liveDirs = new Set(); // temp dirs holding env files with secrets
let exitHooked = false;
function hookExit() {
  if (exitHooked) return;
  exitHooked = true;
  const killAll = () => {
    for (const pgid of liveGroups) {
      try {
        process.kill(-pgid, "SIGKILL");
      } catch {
        /* gone */
      }
    }
    liveGroups.clear();
    for (const dir of liveDirs) rmSync(dir, { recursive: true, force: true });
    liveDirs.clear();
  };
  process.on("exit", killAll);
  for (const sig of ["SIGINT", "SIGTERM", "SIGHUP"]) {
    process.once(sig, () => {
      killAll();
      process.exit(128 + (sig === "SIGINT" ? 2 : sig === "SIGTERM" ? 15 : 1));
    });
  }
}

function dotenvLine(k, v) {
  // dotenv: double-quoted values, escape backslashes, quotes and newlines.
  const escaped = String(v).replace(/\\/g, "\\\\").replace(/"/g, '\\"').replace(/\n/g, "\\n");
  return `${k}="${escaped}"`;
}

/** What runs the worker: wrangler (default), workerd or docker. */
export const RUNTIME = process.env.LLM_MUX_E2E_RUNTIME || "wrangler";
if (!["wrangler", "workerd", "docker"].includes(RUNTIME)) {
  throw new Error(`LLM_MUX_E2E_RUNTIME=${RUNTIME}: expected wrangler, workerd or docker`);
}

/**
 * The runtime for load tests (thousands of POSTs at high concurrency): plain workerd when the
 * suite runs under wrangler dev, else RUNTIME. wrangler dev puts a proxy (its ProxyWorker, in a
 * second workerd) in front of the worker; it pools its connections to the worker, and both
 * sides close an idle one after 5 s, so a request sent on a pooled connection at ~5 s idle is
 * lost ("Network connection lost" in the proxy). wrangler 4.86 answers a POST lost that way
 * with a 503 "Your worker restarted mid-request" although nothing restarted
 * (cloudflare/workers-sdk#14641, open). Under load many pooled connections idle between
 * bursts: one CI run lost a request of the load test to it; alone, 5 of 40 POSTs sent
 * 4.98-5.02 s apart through wrangler dev's port got that 503. Node's fetch closes its idle
 * connections after 4 s, before workerd's 5 s, so the client -> workerd path has no such race.
 */
export const LOAD_RUNTIME = RUNTIME === "wrangler" ? "workerd" : RUNTIME;

/** The runner's environment without the worker's variables (so only `vars` reach it). */
function cleanEnv() {
  const env = {};
  for (const [k, v] of Object.entries(process.env)) {
    if (/^(MISTRAL_|OPENAI_|ANTHROPIC_|LLM_MUX_|CLOUDFLARE_|CF_|WRANGLER_)/.test(k) || /_API_KEYS?$/.test(k)) continue;
    env[k] = v;
  }
  return env;
}

/**
 * Starts the gateway and waits until the worker answers HTTP: `wrangler dev`, or plain
 * workerd / the Docker image when LLM_MUX_E2E_RUNTIME says so (same options and result).
 * Options:
 *   vars        {NAME: value}; SECRET_VARS go in the env file, the rest as --var.
 *               A value of undefined/null leaves the variable out.
 *   persistTo   state directory (default: a fresh temp dir, removed on stop()).
 *   port        listen port (default: a free one).
 *   config      wrangler config path (default: the project's wrangler.toml).
 *   cwd         directory wrangler runs in (default: the project root).
 *   readyPath   path polled for readiness (default /metrics; any HTTP status counts).
 *   timeoutMs   bound on start-up (default 60000).
 *   runtime     `wrangler`, `workerd` or `docker` for this gateway (default: RUNTIME).
 * Returns {url, port, persistTo, stop(), logs(), stdout(), stderr(), child}.
 */
export async function startGateway(options = {}) {
  // freePort() finds a port free now; another process (often a runtime starting at the same
  // moment, whose own sockets take ports the system hands out) may bind it before wrangler
  // or workerd does, which then exits with "Address already in use". Only then, and only
  // for ports chosen here, a new port is picked (at most three attempts in all).
  for (let attempt = 1; ; attempt++) {
    try {
      return await startGatewayOnce(options);
    } catch (e) {
      if (options.port !== undefined || attempt >= 3 || !/Address already in use|EADDRINUSE/.test(e.message)) throw e;
      console.error(`harness: a port was taken before the gateway bound it; new ports (attempt ${attempt + 1})`);
    }
  }
}

/**
 * Starts several gateways at once (each as startGateway(options)); if any fails, the others
 * are stopped before the error is thrown, so that none is left running without an owner.
 */
export async function startGateways(...list) {
  const started = await Promise.allSettled(list.map((options) => startGateway(options)));
  const failed = started.find((r) => r.status === "rejected");
  if (failed) {
    await Promise.all(started.filter((r) => r.status === "fulfilled").map((r) => r.value.stop()));
    throw failed.reason;
  }
  return started.map((r) => r.value);
}

async function startGatewayOnce({
  vars = {},
  persistTo,
  port,
  config,
  cwd = WORKER_DIR,
  readyPath = "/metrics",
  timeoutMs = 60_000,
  runtime = RUNTIME,
} = {}) {
  if (runtime !== "wrangler") {
    if (config) throw new Error(`startGateway({config}) needs wrangler dev (runtime ${runtime})`);
    return startSelfHosted({ vars, persistTo, port, cwd, readyPath, timeoutMs, docker: runtime === "docker" });
  }
  if (!config && cwd === PROJECT_ROOT) assertBuilt(cwd);
  const work = tempDir("llm-mux-gw-");
  hookExit();
  liveDirs.add(work);
  persistTo = persistTo ?? path.join(work, "state");
  mkdirSync(persistTo, { recursive: true });
  const logDir = path.join(work, "wrangler-logs");
  mkdirSync(logDir);
  const envFile = path.join(work, "test.env");
  const cliVars = [];
  const envLines = [];
  for (const [k, v] of Object.entries(vars)) {
    if (v === undefined || v === null) continue;
    if (isSecretVar(k)) envLines.push(dotenvLine(k, v));
    else cliVars.push("--var", `${k}:${v}`);
  }
  writeFileSync(envFile, envLines.join("\n") + "\n", { mode: 0o600 });

  port = port ?? (await freePort());
  const inspectorPort = await freePort();
  const args = [
    "dev",
    "--ip", "127.0.0.1",
    "--port", String(port),
    "--inspector-port", String(inspectorPort),
    "--inspector-ip", "127.0.0.1",
    "--persist-to", persistTo,
    "--env-file", envFile,
    "--show-interactive-dev-session=false",
    "--log-level", "info",
    ...(config ? ["--config", config] : []),
    ...cliVars,
  ];

  const env = cleanEnv();
  Object.assign(env, {
    CLOUDFLARE_INCLUDE_PROCESS_ENV: "false",
    CLOUDFLARE_LOAD_DEV_VARS_FROM_DOT_ENV: "true",
    WRANGLER_SEND_METRICS: "false",
    WRANGLER_SEND_ERROR_REPORTS: "false",
    WRANGLER_HIDE_BANNER: "true",
    WRANGLER_LOG_PATH: logDir,
    NO_COLOR: "1",
    FORCE_COLOR: "0",
  });

  let stdout = "";
  let stderr = "";
  const child = spawn(WRANGLER, args, { cwd, env, detached: true, stdio: ["ignore", "pipe", "pipe"] });
  liveGroups.add(child.pid);
  child.stdout.setEncoding("utf8");
  child.stderr.setEncoding("utf8");
  child.stdout.on("data", (d) => (stdout += d));
  child.stderr.on("data", (d) => (stderr += d));
  let exited = null;
  const exitPromise = new Promise((resolve) => {
    child.once("exit", (code, signal) => {
      exited = { code, signal };
      resolve(exited);
    });
  });

  const killGroup = (sig) => {
    try {
      process.kill(-child.pid, sig);
    } catch {
      /* already gone */
    }
  };

  let stopped = false;
  const stop = async () => {
    if (stopped) return;
    stopped = true;
    if (!exited) {
      killGroup("SIGTERM");
      const done = await Promise.race([exitPromise, bound(10_000).then(() => null)]);
      if (!done) {
        killGroup("SIGKILL");
        await Promise.race([exitPromise, bound(5_000)]);
      }
    }
    // workerd is in the same process group; make sure nothing of it survives.
    killGroup("SIGKILL");
    liveGroups.delete(child.pid);
    await sleep(200);
    // The temp dir holds the env file (with the secrets), the logs and, when the caller gave
    // no persistTo, the state; a caller-given persistTo is left alone.
    rmSync(work, { recursive: true, force: true });
    liveDirs.delete(work);
  };

  const url = `http://127.0.0.1:${port}`;
  const deadline = Date.now() + timeoutMs;
  let lastErr;
  try {
    for (;;) {
      if (exited) {
        throw new Error(`wrangler dev exited early (${JSON.stringify(exited)})`);
      }
      if (Date.now() > deadline) throw new Error(`wrangler dev not ready after ${timeoutMs} ms (last: ${lastErr})`);
      if (/Ready on http/.test(stdout)) {
        try {
          const res = await fetch(url + readyPath, { signal: AbortSignal.timeout(5000) });
          await res.arrayBuffer();
          break;
        } catch (e) {
          lastErr = e.message;
        }
      }
      await sleep(150);
    }
  } catch (e) {
    // wrangler's own log has the runtime's reason (e.g. a port taken between freePort()
    // and the bind); it is deleted with the temp dir, so it goes into the error.
    let log = "";
    try {
      log = readdirSync(logDir)
        .map((f) => readFileSync(path.join(logDir, f), "utf8"))
        .join("\n")
        .slice(-6000);
    } catch {
      /* no log */
    }
    const out = `--- stdout ---\n${stdout}\n--- stderr ---\n${stderr}\n--- wrangler log (end) ---\n${log}`;
    await stop();
    e.message += `\n${out}`;
    throw e;
  }

  const wranglerLogs = () => {
    try {
      return readdirSync(logDir)
        .map((f) => readFileSync(path.join(logDir, f), "utf8"))
        .join("\n");
    } catch {
      return "";
    }
  };
  let logSnapshot = "";
  return {
    url,
    port,
    persistTo,
    child,
    stdout: () => stdout,
    stderr: () => stderr,
    /** Everything wrangler/workerd printed, plus wrangler's debug log files. */
    logs: () => {
      if (!stopped) logSnapshot = wranglerLogs();
      return `${stdout}\n${stderr}\n${logSnapshot}`;
    },
    stop: async () => {
      logSnapshot = wranglerLogs();
      await stop();
    },
  };
}

let configWritten = false;
let composeRuns = 0;

/**
 * startGateway for LLM_MUX_E2E_RUNTIME=workerd (scripts/selfhost/serve.sh) and docker
 * (`docker-compose up` of the built image). The process (serve.sh's workerd, or the
 * docker-compose client attached to the container) runs in its own process group.
 */
async function startSelfHosted({ vars, persistTo, port, cwd, readyPath, timeoutMs, docker = RUNTIME === "docker" }) {
  if (!docker && !configWritten) {
    assertBuilt(cwd);
    const gen = spawnSync(process.execPath, [path.join(cwd, "scripts/selfhost/workerd-config.mjs"), "--quiet"], { cwd, encoding: "utf8" });
    if (gen.status !== 0) throw new Error(`workerd-config.mjs failed: ${gen.stderr}`);
    configWritten = true;
  }
  const work = tempDir("llm-mux-gw-");
  hookExit();
  liveDirs.add(work);
  persistTo = persistTo ?? path.join(work, "state");
  mkdirSync(persistTo, { recursive: true });
  port = port ?? (await freePort());
  const listen = `127.0.0.1:${port}`;
  const given = Object.entries(vars).filter(([, v]) => v !== undefined && v !== null);
  const env = cleanEnv();
  let cmd;
  let args;
  let project;
  if (docker) {
    // The container runs as a non-root user: it must be able to write the state directory.
    chmodSync(persistTo, 0o777);
    const envFile = path.join(work, "gateway.env");
    // docker-compose 1.x reads env files literally (no quotes): one NAME=value a line.
    for (const [k, v] of given) {
      if (/[\r\n]/.test(String(v))) throw new Error(`${k}: a value with a newline cannot go through an env file`);
    }
    const lines = [...given, ["LLM_MUX_EXTRA_VARS", given.map(([k]) => k).join(",")]];
    writeFileSync(envFile, lines.map(([k, v]) => `${k}=${v}\n`).join(""), { mode: 0o600 });
    project = `llm-mux-e2e-${process.pid}-${++composeRuns}`;
    Object.assign(env, {
      LLM_MUX_ENV_FILE: envFile,
      LLM_MUX_LISTEN: listen,
      LLM_MUX_STATE: persistTo,
      ...(process.env.LLM_MUX_IMAGE ? { LLM_MUX_IMAGE: process.env.LLM_MUX_IMAGE } : {}),
    });
    cmd = "docker-compose";
    args = ["-p", project, "-f", path.join(cwd, "docker-compose.yml"), "up", "--no-build", "--force-recreate", "--no-color"];
  } else {
    Object.assign(env, Object.fromEntries(given.map(([k, v]) => [k, String(v)])), {
      LLM_MUX_LISTEN: listen,
      LLM_MUX_STATE_DIR: persistTo,
      LLM_MUX_DEV_VARS: "", // never the developer's .dev.vars
      LLM_MUX_EXTRA_VARS: given.map(([k]) => k).join(","),
    });
    cmd = path.join(cwd, "scripts/selfhost/serve.sh");
    args = [];
  }

  let stdout = "";
  let stderr = "";
  const child = spawn(cmd, args, { cwd, env, detached: true, stdio: ["ignore", "pipe", "pipe"] });
  liveGroups.add(child.pid);
  if (docker) liveProjects.set(project, env);
  child.stdout.setEncoding("utf8");
  child.stderr.setEncoding("utf8");
  child.stdout.on("data", (d) => (stdout += d));
  child.stderr.on("data", (d) => (stderr += d));
  let exited = null;
  const exitPromise = new Promise((resolve) => {
    child.once("exit", (code, signal) => {
      exited = { code, signal };
      resolve(exited);
    });
  });
  const killGroup = (sig) => {
    try {
      process.kill(-child.pid, sig);
    } catch {
      /* already gone */
    }
  };

  let stopped = false;
  const stop = async () => {
    if (stopped) return;
    stopped = true;
    if (docker) {
      // Removes the container and the project's unused named volume (the state directory is
      // a bind mount: it stays).
      // Not spawnSync: this process may be serving the gateway's upstream stand-in, which
      // must keep answering the requests in flight while the container drains.
      await composeDownAsync(project, env);
      liveProjects.delete(project);
    }
    if (!exited) {
      // serve.sh alone gets the SIGTERM, as PID 1 of the container does from `docker stop`:
      // it drains the worker's batches, then passes the signal on to workerd.
      if (docker) killGroup("SIGTERM");
      else process.kill(child.pid, "SIGTERM");
      const done = await Promise.race([exitPromise, bound(10_000).then(() => null)]);
      if (!done) {
        killGroup("SIGKILL");
        await Promise.race([exitPromise, bound(5_000)]);
      }
    }
    killGroup("SIGKILL");
    liveGroups.delete(child.pid);
    await sleep(100);
    rmSync(work, { recursive: true, force: true });
    liveDirs.delete(work);
  };

  const url = `http://${listen}`;
  const deadline = Date.now() + timeoutMs;
  let lastErr;
  try {
    for (;;) {
      if (exited) throw new Error(`${cmd} exited early (${JSON.stringify(exited)})`);
      if (Date.now() > deadline) throw new Error(`${RUNTIME} gateway not ready after ${timeoutMs} ms (last: ${lastErr})`);
      try {
        const res = await fetch(url + readyPath, { signal: AbortSignal.timeout(5000) });
        await res.arrayBuffer();
        break;
      } catch (e) {
        lastErr = e.cause?.code ?? e.message;
      }
      await sleep(100);
    }
  } catch (e) {
    const out = `--- stdout ---\n${stdout}\n--- stderr ---\n${stderr}`;
    await stop();
    e.message += `\n${out}`;
    throw e;
  }
  return {
    url,
    port,
    persistTo,
    child,
    runtime: RUNTIME,
    stdout: () => stdout,
    stderr: () => stderr,
    logs: () => `${stdout}\n${stderr}`,
    stop,
  };
}

// docker-compose projects started here and not yet taken down (by name, with their env).
const liveProjects = new Map();

/** `docker-compose down` of a project: the container and its unused named volume. */
const composeDownArgs = (project) => ["-p", project, "-f", path.join(WORKER_DIR, "docker-compose.yml"), "down", "-v", "--timeout", "10"];

function composeDownAsync(project, env) {
  return new Promise((resolve) => {
    const down = spawn("docker-compose", composeDownArgs(project), { env, stdio: "ignore" });
    const timer = setTimeout(() => down.kill("SIGKILL"), 60_000);
    down.once("exit", () => {
      clearTimeout(timer);
      resolve();
    });
    down.once("error", () => {
      clearTimeout(timer);
      resolve();
    });
  });
}

function composeDown(project, env) {
  spawnSync("docker-compose", composeDownArgs(project), {
    env,
    stdio: "ignore",
    timeout: 60_000,
  });
}

process.on("exit", () => {
  for (const [project, env] of liveProjects) composeDown(project, env);
  liveProjects.clear();
});
