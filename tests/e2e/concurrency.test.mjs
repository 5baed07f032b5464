// 200 concurrent /query calls against a fresh persisted state: every one succeeds and /metrics
// (recorded after the response via waitUntil) ends up counting exactly those 200, with the cost
// equal to the sum of the 200 responses' cost_usd.

import { describe, it, before, after } from "node:test";
import assert from "node:assert/strict";
import { rmSync } from "node:fs";
import { startGateway, tempDir } from "./harness.mjs";
import { startMistralStub } from "./mistral-stub.mjs";
import {
  SMALL,
  LARGE,
  client,
  secret,
  pollUntil,
  sleep,
  assertQueryShape,
  assertNoSecrets,
  assertMetricsShape,
  assertMetricsMatch,
  near,
} from "./helpers.mjs";

const MISTRAL_KEY = secret("mistral");
const N = 200;

describe(`${N} concurrent queries`, () => {
  let stub, gw, c, persistTo;
  before(async () => {
    stub = await startMistralStub();
    persistTo = tempDir("llm-mux-conc-");
    gw = await startGateway({ vars: { MISTRAL_API_KEY: MISTRAL_KEY, MISTRAL_BASE_URL: stub.url }, persistTo });
    c = client(gw);
  });
  after(async () => {
    await gw?.stop();
    await stub?.close();
    if (persistTo) rmSync(persistTo, { recursive: true, force: true });
  });

  const bodies = [];

  it(`all ${N} succeed`, { timeout: 120_000 }, async () => {
    const before = (await c.metrics()).json;
    assert.equal(before.total_requests, 0, "fresh state");
    const tiers = ["small", "large", undefined];
    const results = await Promise.all(
      Array.from({ length: N }, (_, i) => {
        // varied lengths and tiers so that tokens and prices differ between requests
        const q = { query: `Concurrent question number ${i}: ${"why ".repeat(i % 17)}?` };
        if (tiers[i % 3]) q.tier = tiers[i % 3];
        return c.query(q, { timeoutMs: 90_000 });
      }),
    );
    const failed = results.filter((r) => r.status !== 200);
    assert.equal(failed.length, 0, `${failed.length} failed, e.g. ${failed[0]?.status} ${failed[0]?.text}`);
    for (const r of results) bodies.push(assertQueryShape(r, "concurrent"));
    assert.equal(stub.chatRequests().length, N, "one upstream call per query");
    const small = bodies.filter((b) => b.model_used === SMALL).length;
    const large = bodies.filter((b) => b.model_used === LARGE).length;
    assert.ok(small >= Math.floor(N / 3) && large >= Math.floor(N / 3), `both tiers used (${small} small, ${large} large)`);
  });

  it(`/metrics counts exactly ${N} and the exact total cost`, { timeout: 60_000 }, async () => {
    assert.equal(bodies.length, N, "previous test produced the responses");
    const res = await pollUntil(() => c.metrics(), (r) => r.status === 200 && r.json.total_requests >= N, { timeoutMs: 30_000, intervalMs: 250 });
    assert.equal(res.status, 200, res.text);
    let m = res.json;
    assert.equal(m.total_requests, N, `total_requests after the wait: ${m.total_requests}`);
    assertMetricsShape(m);
    assertMetricsMatch(m, bodies);
    const sum = bodies.reduce((a, b) => a + b.metrics.cost_usd, 0);
    near(m.total_cost_usd, sum, 1e-9, "total_cost_usd = sum of the responses' cost_usd");
    assert.equal(Object.values(m.model_breakdown).reduce((a, b) => a + b, 0), N, "model_breakdown sums to N");
    assert.equal(m.failed_requests_total, 0, `no failures: ${JSON.stringify(m.failed_requests)}`);
    // and nothing arrives late or twice
    await sleep(2000);
    m = (await c.metrics()).json;
    assert.equal(m.total_requests, N, "still exactly N after a further wait");
    near(m.total_cost_usd, sum, 1e-9, "cost unchanged after a further wait");
  });

  it("the Mistral key never appears in responses or logs", () => {
    assertNoSecrets(c.seen, [MISTRAL_KEY], "responses");
    assertNoSecrets([gw.stdout(), gw.stderr()], [MISTRAL_KEY], "gateway stdout/stderr");
  });
});
