// Metrics survive a restart: record N requests, stop the gateway, start a new one on the same
// state directory, and /metrics still shows them (and keeps counting from there).

import { describe, it, before, after } from "node:test";
import assert from "node:assert/strict";
import { rmSync } from "node:fs";
import { startGateway, tempDir } from "./harness.mjs";
import { startMistralStub } from "./mistral-stub.mjs";
import {
  client,
  secret,
  tag,
  pollUntil,
  assertQueryShape,
  assertError,
  assertNoSecrets,
  assertMetricsShape,
  assertMetricsMatch,
} from "./helpers.mjs";

const MISTRAL_KEY = secret("mistral");
const N = 5;

describe("metrics persist across restarts", () => {
  let stub, persistTo, gw;
  const bodies = [];
  const seen = [];
  const logs = [];
  let first;

  before(async () => {
    stub = await startMistralStub();
    persistTo = tempDir("llm-mux-persist-");
  });
  after(async () => {
    await gw?.stop();
    await stub?.close();
    rmSync(persistTo, { recursive: true, force: true });
  });

  const start = () => startGateway({ vars: { MISTRAL_API_KEY: MISTRAL_KEY, MISTRAL_BASE_URL: stub.url, UPSTREAM_TIMEOUT_MS: "1000" }, persistTo });
  const stop = async () => {
    await gw.stop();
    logs.push(gw.stdout(), gw.stderr());
    gw = undefined;
  };

  it(`records ${N} requests and a failure`, async () => {
    gw = await start();
    const c = client(gw);
    for (let i = 0; i < N; i++) {
      const q = { query: `persist me ${i} ${tag()} [[stub:tokens=${1000 * (i + 1)},${700 * (i + 1)}]]`, tier: i % 2 ? "large" : "small" };
      bodies.push(assertQueryShape(await c.query(q), q.query));
    }
    assertError(await c.query({ query: `fails ${tag()} [[stub:status=500]]`, tier: "small" }, { timeoutMs: 60_000 }), 502, "upstream 500");
    const res = await pollUntil(() => c.metrics(), (r) => r.status === 200 && r.json.total_requests >= N && r.json.failed_requests_total >= 1);
    first = res.json;
    assertMetricsShape(first);
    assertMetricsMatch(first, bodies);
    assert.ok(first.failed_requests_total >= 1);
    seen.push(...c.seen);
    await stop();
  });

  it("a new gateway on the same state shows the same metrics", async () => {
    assert.ok(first, "previous test recorded metrics");
    gw = await start();
    const c = client(gw);
    const res = await c.metrics();
    assert.equal(res.status, 200, res.text);
    const m = res.json;
    assertMetricsShape(m);
    assertMetricsMatch(m, bodies);
    for (const k of ["total_requests", "total_cost_usd", "cost_if_always_large_usd", "tokens_in", "tokens_out", "failed_requests_total", "avg_latency_ms", "total_cost", "cost_savings_vs_always_large", "small_model_usage_percent"]) {
      assert.deepEqual(m[k], first[k], `${k} survives the restart`);
    }
    assert.deepEqual(m.model_breakdown, first.model_breakdown);
    assert.deepEqual(m.failed_requests, first.failed_requests);
    // The object's storage counters live in its row too: a restart does not zero them.
    assert.equal(m.storage.events, first.storage.events, "storage.events survives the restart");
    assert.equal(m.storage.batches, first.storage.batches, "storage.batches survives the restart");
    // (the stored copy cannot count the write that stores it: one row per restart)
    assert.ok(first.storage.rows_written >= 1, "rows written before the restart");
    assert.ok(m.storage.rows_written >= first.storage.rows_written - 1, `rows_written kept: ${m.storage.rows_written} vs ${first.storage.rows_written}`);

    // and it keeps counting from there
    const q = { query: `after restart ${tag()}`, tier: "large" };
    bodies.push(assertQueryShape(await c.query(q), q.query));
    const later = (await pollUntil(() => c.metrics(), (r) => r.status === 200 && r.json.total_requests >= N + 1)).json;
    assertMetricsMatch(later, bodies);
    seen.push(...c.seen);
  });

  it("a gateway on another state directory starts from zero", async () => {
    await stop();
    const other = tempDir("llm-mux-persist-other-");
    try {
      gw = await startGateway({ vars: { MISTRAL_API_KEY: MISTRAL_KEY, MISTRAL_BASE_URL: stub.url }, persistTo: other });
      const c = client(gw);
      const m = (await c.metrics()).json;
      assert.equal(m.total_requests, 0);
      assert.equal(m.total_cost_usd, 0);
      seen.push(...c.seen);
      await stop();
    } finally {
      rmSync(other, { recursive: true, force: true });
    }
  });

  it("the Mistral key never appears in responses or logs", () => {
    assertNoSecrets(seen, [MISTRAL_KEY], "responses");
    assertNoSecrets(logs, [MISTRAL_KEY], "gateway stdout/stderr");
  });
});
