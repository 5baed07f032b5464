#!/usr/bin/env node
// The docker-compose path as a user runs it (part of `make test-docker`): `docker-compose up -d`
// with the project's docker-compose.yml (named state volume, env file), wait for the image's
// health check, record traffic (/query, a streamed /v1/chat/completions), check the container
// runs as a non-root user, `docker-compose restart`, and check /metrics' totals survived.
// Then `docker-compose down -v`. The only stand-in is the Mistral stub, on 127.0.0.1.
//
//   LLM_MUX_IMAGE=llm-mux:test node scripts/selfhost/compose-restart-check.mjs

import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { freePort } from "../../tests/e2e/harness.mjs";
import { startMistralStub } from "../../tests/e2e/mistral-stub.mjs";

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..", "..");
const project = `llm-mux-compose-check-${process.pid}`;
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const say = (m) => process.stderr.write(`compose-check: ${m}\n`);

const work = mkdtempSync(path.join(os.tmpdir(), "llm-mux-compose-"));
const stub = await startMistralStub();
const port = await freePort();
const url = `http://127.0.0.1:${port}`;
const envFile = path.join(work, "gateway.env");
const apiKey = `sk-compose-${process.pid}`;
writeFileSync(envFile, `MISTRAL_API_KEY=${apiKey}\nMISTRAL_BASE_URL=${stub.url}\n`, { mode: 0o600 });
const env = {
  ...process.env,
  LLM_MUX_ENV_FILE: envFile,
  LLM_MUX_LISTEN: `127.0.0.1:${port}`,
  LLM_MUX_IMAGE: process.env.LLM_MUX_IMAGE ?? "llm-mux:local",
};
delete env.LLM_MUX_STATE; // the compose file's named volume, as a user gets it

function compose(...args) {
  const res = spawnSync("docker-compose", ["-p", project, "-f", path.join(ROOT, "docker-compose.yml"), ...args], { env, encoding: "utf8", timeout: 120_000 });
  if (res.status !== 0) throw new Error(`docker-compose ${args.join(" ")}: ${res.stderr}`);
  return res.stdout;
}
function docker(...args) {
  const res = spawnSync("docker", args, { encoding: "utf8", timeout: 60_000 });
  if (res.status !== 0) throw new Error(`docker ${args.join(" ")}: ${res.stderr}`);
  return res.stdout.trim();
}

async function until(what, fn, timeoutMs = 60_000) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      const v = await fn();
      if (v) return v;
    } catch {
      /* not yet */
    }
    if (Date.now() > deadline) throw new Error(`${what}: not within ${timeoutMs} ms`);
    await sleep(250);
  }
}

async function metrics() {
  const res = await fetch(`${url}/metrics`, { signal: AbortSignal.timeout(5000) });
  assert.equal(res.status, 200);
  return res.json();
}

let failed = false;
try {
  compose("up", "-d", "--no-build");
  const id = compose("ps", "-q", "llm-mux").trim();
  assert.ok(id, "a container");
  const started = Date.now();
  await until("health check healthy", () => docker("inspect", "-f", "{{.State.Health.Status}}", id) === "healthy", 90_000);
  say(`healthy after ${((Date.now() - started) / 1000).toFixed(1)} s`);
  assert.equal(docker("exec", id, "id", "-u"), "10001", "runs as the non-root user");
  const mounts = JSON.parse(docker("inspect", "-f", "{{json .Mounts}}", id));
  assert.ok(mounts.some((m) => m.Type === "volume" && m.Destination === "/var/lib/llm-mux"), "state in a volume");
  assert.equal(docker("inspect", "-f", "{{.HostConfig.NetworkMode}}", id), "host");

  for (let i = 0; i < 3; i++) {
    const res = await fetch(`${url}/query`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ query: `compose check ${i}` }) });
    assert.equal(res.status, 200, await res.clone().text());
    await res.json();
  }
  const chat = await fetch(`${url}/v1/chat/completions`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ model: "auto", stream: true, messages: [{ role: "user", content: "compose check, streamed" }] }),
  });
  assert.equal(chat.status, 200);
  const sse = await chat.text();
  assert.match(sse, /data: \[DONE\]/);

  const before = await until("4 requests in /metrics", async () => {
    const m = await metrics();
    return m.total_requests === 4 ? m : null;
  });
  say(`before restart: ${before.total_requests} requests, $${before.total_cost_usd}`);

  compose("restart");
  await until("answers after the restart", async () => (await fetch(`${url}/`)).status === 200);
  const after = await metrics();
  for (const k of ["total_requests", "total_cost_usd", "tokens_in", "tokens_out", "model_breakdown"]) {
    assert.deepEqual(after[k], before[k], `${k} survives docker-compose restart`);
  }
  say(`after restart: ${after.total_requests} requests, $${after.total_cost_usd}: totals survived`);
  const logs = compose("logs", "--no-color");
  assert.ok(!logs.includes(apiKey), "the Mistral key is not in the container's logs");
  assert.ok(logs.includes("self-hosted:"), "the container says what is switched off");
} catch (e) {
  failed = true;
  say(`FAILED: ${e.stack ?? e}`);
  try {
    process.stderr.write(compose("logs", "--no-color"));
  } catch {
    /* nothing more to show */
  }
} finally {
  try {
    compose("down", "-v", "--timeout", "10");
  } catch (e) {
    say(`down: ${e.message}`);
    failed = true;
  }
  await stub.close();
  rmSync(work, { recursive: true, force: true });
}
process.exit(failed ? 1 : 0);
