// A graceful stop of the self-hosted gateway keeps the metrics and spend of every request
// answered before it (scripts/selfhost/serve.sh: SIGTERM -> POST /_llm-mux/drain with this
// process's token -> workerd's SIGTERM). Runs in plain workerd (LOAD_RUNTIME; the Docker image
// with LLM_MUX_E2E_RUNTIME=docker), where SIGTERM is a graceful stop; `wrangler dev` has none.
//
// Each request's metrics event and spend settlement wait in the isolate for METRICS_BATCH_MS
// and are sent from a `waitUntil`, which workerd's drain does not wait for. With a 2-second
// window and no drain, a request answered just before the stop was lost every time.

import { describe, it, before, after } from "node:test";
import assert from "node:assert/strict";
import { rmSync } from "node:fs";

import { startGateway, tempDir, LOAD_RUNTIME, RUNTIME } from "./harness.mjs";
import { startMistralStub } from "./mistral-stub.mjs";
import { client, secret, near, assertError } from "./helpers.mjs";
import { chatStream } from "./chat-helpers.mjs";

const MISTRAL_KEY = secret("graceful");
const pico = (usd) => BigInt(Math.round(usd * 1e12));

describe("graceful stop (self-hosted)", () => {
  let stub;
  const dirs = [];
  before(async () => {
    stub = await startMistralStub();
  });
  after(async () => {
    await stub?.close();
    for (const d of dirs) rmSync(d, { recursive: true, force: true });
  });

  it("requests answered just before SIGTERM are recorded, with their spend, after the restart (METRICS_BATCH_MS=2000)", async () => {
    const persistTo = tempDir("llm-mux-graceful-");
    dirs.push(persistTo);
    const vars = {
      MISTRAL_API_KEY: MISTRAL_KEY,
      MISTRAL_BASE_URL: stub.url,
      METRICS_BATCH_MS: "2000",
      GLOBAL_DAILY_BUDGET_USD: "1",
    };
    let gw = await startGateway({ vars, persistTo, runtime: LOAD_RUNTIME });
    let costs;
    let slow;
    try {
      const c = client(gw);
      const first = await c.query({ query: "What is the capital of France?", tier: "small" });
      assert.equal(first.status, 200, first.text);
      const streamed = await chatStream(gw, { model: "large", messages: [{ role: "user", content: "Say hello." }] });
      assert.equal(streamed.status, 200, streamed.text);
      // In flight when the stop begins: workerd finishes it, and the drain waits for it.
      slow = c.query({ query: "A slow question [[stub:delay=1500]]", tier: "large" });
      await new Promise((r) => setTimeout(r, 300));
      const stopping = gw.stop();
      const late = await slow;
      assert.equal(late.status, 200, `the request in flight at the stop gets its answer: ${late.text}`);
      await stopping;
      const usage = streamed.events.map((e) => (e.data === "[DONE]" ? null : JSON.parse(e.data).usage)).find(Boolean);
      assert.ok(usage, "the stream reported its usage");
      costs = [first.json.metrics.cost_usd, late.json.metrics.cost_usd];
    } finally {
      await gw.stop();
    }
    if (LOAD_RUNTIME === "workerd") assert.equal(gw.child.exitCode, 0, "serve.sh exits 0 after a graceful stop");
    gw = await startGateway({ vars, persistTo, runtime: LOAD_RUNTIME });
    try {
      const m = (await client(gw).metrics()).json;
      assert.equal(m.total_requests, 3, `all three requests answered before the stop are counted: ${JSON.stringify(m.tier_breakdown)}`);
      assert.equal(m.failed_requests_total, 0);
      assert.ok(m.total_cost_usd > costs[0] + costs[1], `cost includes the stream's: ${m.total_cost_usd}`);
      // The spend settled in the ledger equals the recorded cost (the stream's included).
      near(Number(BigInt(m.budgets.global.daily_spent_picousd)) / 1e12, m.total_cost_usd, 1e-12, "settled spend = recorded cost");
      assert.ok(BigInt(m.budgets.global.daily_spent_picousd) >= pico(costs[0]) + pico(costs[1]));
    } finally {
      await gw.stop();
    }
  });

  it("SIGINT (Ctrl-C under make serve) stops as gracefully: the request is recorded, serve.sh exits 0", { skip: LOAD_RUNTIME !== "workerd" && "serve.sh on the host only" }, async () => {
    const persistTo = tempDir("llm-mux-graceful-");
    dirs.push(persistTo);
    const vars = { MISTRAL_API_KEY: MISTRAL_KEY, MISTRAL_BASE_URL: stub.url, METRICS_BATCH_MS: "2000" };
    let gw = await startGateway({ vars, persistTo, runtime: LOAD_RUNTIME });
    try {
      const r = await client(gw).query({ query: "Interrupted?", tier: "small" });
      assert.equal(r.status, 200, r.text);
      const exited = new Promise((resolve) => gw.child.once("exit", (code, signal) => resolve({ code, signal })));
      process.kill(gw.child.pid, "SIGINT");
      const timeout = new Promise((resolve) => setTimeout(() => resolve(null), 10_000).unref());
      assert.deepEqual(await Promise.race([exited, timeout]), { code: 0, signal: null }, `serve.sh stops on SIGINT:\n${gw.logs()}`);
    } finally {
      await gw.stop();
    }
    gw = await startGateway({ vars, persistTo, runtime: LOAD_RUNTIME });
    try {
      assert.equal((await client(gw).metrics()).json.total_requests, 1, "the request answered before the SIGINT is counted");
    } finally {
      await gw.stop();
    }
  });

  it("the drain path answers only with this process's token: otherwise it is an unknown path", async () => {
    const gw = await startGateway({ vars: { MISTRAL_API_KEY: MISTRAL_KEY, MISTRAL_BASE_URL: stub.url }, runtime: LOAD_RUNTIME });
    try {
      const c = client(gw);
      for (const token of [undefined, "wrong", "0123456789abcdef0123456789abcdef"]) {
        assertError(await c.request("POST", "/_llm-mux/drain", { token }), 404, `token ${JSON.stringify(token)}`);
      }
      // Still batching: nothing was switched by the refused requests. A request is answered
      // and counted as before.
      const q = await c.query({ query: "Still there?", tier: "small" });
      assert.equal(q.status, 200, q.text);
      assert.equal((await c.metrics()).json.total_requests, 1);
    } finally {
      await gw.stop();
    }
  });

  it("under wrangler dev (no drain token) the drain path is unknown too", { skip: RUNTIME !== "wrangler" && "only under wrangler dev" }, async () => {
    const gw = await startGateway({ vars: { MISTRAL_API_KEY: MISTRAL_KEY, MISTRAL_BASE_URL: stub.url } });
    try {
      assertError(await client(gw).request("POST", "/_llm-mux/drain", { token: "anything" }), 404, "wrangler dev");
    } finally {
      await gw.stop();
    }
  });
});
