// GET /metrics through the real worker: a fresh state starts at zero; successes add requests,
// tokens and cost; failures are counted by reason and add no cost; derived fields agree.

import { describe, it, before, after } from "node:test";
import assert from "node:assert/strict";
import { startGateway } from "./harness.mjs";
import { startMistralStub } from "./mistral-stub.mjs";
import {
  SMALL,
  LARGE,
  client,
  secret,
  tag,
  pollUntil,
  sleep,
  assertError,
  assertQueryShape,
  assertNoSecrets,
  assertMetricsShape,
  assertMetricsMatch,
} from "./helpers.mjs";

const MISTRAL_KEY = secret("mistral");

describe("GET /metrics", () => {
  let stub, gw, c;
  before(async () => {
    stub = await startMistralStub();
    gw = await startGateway({ vars: { MISTRAL_API_KEY: MISTRAL_KEY, MISTRAL_BASE_URL: stub.url, UPSTREAM_TIMEOUT_MS: "1000" } });
    c = client(gw);
  });
  after(async () => {
    await gw?.stop();
    await stub?.close();
  });

  it("a fresh state reports zeros", async () => {
    const res = await c.metrics();
    assert.equal(res.status, 200, res.text);
    assert.match(res.headers.get("content-type") ?? "", /^application\/json/);
    const m = res.json;
    assertMetricsShape(m);
    assert.equal(m.total_requests, 0);
    assert.equal(m.total_cost_usd, 0);
    assert.equal(m.cost_if_always_large_usd, 0);
    assert.equal(m.tokens_in, 0);
    assert.equal(m.tokens_out, 0);
    assert.equal(m.failed_requests_total, 0);
    assert.equal(m.avg_latency_ms, 0);
  });

  const bodies = [];
  let failuresSent = 0;

  it("successes and failures are aggregated; failures add no cost", async () => {
    const ok = [
      { query: `one ${tag()} [[stub:tokens=10000,20000]]`, tier: "small", max_tokens: 20_000 },
      { query: `two ${tag()} [[stub:tokens=3000,500]]`, tier: "small" },
      { query: `three ${tag()} [[stub:tokens=10000,20000]]`, tier: "large", max_tokens: 20_000 },
      { query: `four ${tag()}` },
    ];
    for (const q of ok) bodies.push(assertQueryShape(await c.query(q), q.query));

    assertError(await c.query({ query: `upstream 500 ${tag()} [[stub:status=500]]`, tier: "small" }, { timeoutMs: 60_000 }), 502, "upstream 500");
    assertError(await c.query({ query: `garbage ${tag()} [[stub:garbage]]`, tier: "large" }, { timeoutMs: 60_000 }), 502, "garbage");
    assertError(await c.query({ query: `slow ${tag()} [[stub:delay=5000]]`, tier: "small" }, { timeoutMs: 60_000 }), 504, "timeout");
    failuresSent = 3;
    assertError(await c.query({ query: "" }), 400, "client error");

    const m = (
      await pollUntil(
        () => c.metrics(),
        (r) => r.status === 200 && r.json.total_requests >= bodies.length && r.json.failed_requests_total >= failuresSent,
        { timeoutMs: 15_000 },
      )
    ).json;
    assertMetricsShape(m);
    assertMetricsMatch(m, bodies);
    assert.ok(m.failed_requests_total >= failuresSent, `failed_requests_total ${m.failed_requests_total} counts the ${failuresSent} upstream failures: ${JSON.stringify(m.failed_requests)}`);
    assert.ok(m.failed_requests_total <= failuresSent + 1, `failed_requests_total ${m.failed_requests_total}: more failures than sent: ${JSON.stringify(m.failed_requests)}`);
    assert.ok(Object.keys(m.failed_requests).length >= 2, `a timeout and an upstream error have different reasons: ${JSON.stringify(m.failed_requests)}`);
    assert.ok(m.model_breakdown[LARGE] >= 1 && m.model_breakdown[SMALL] >= 2);
    // 0.0135 (small 10k/20k) + 0.00075 (small 3k/0.5k) + 0.035 (large 10k/20k) + the auto one
    assert.ok(m.total_cost_usd > 0.049, `total_cost_usd ${m.total_cost_usd}`);
  });

  it("nothing is counted twice (stable after a further wait)", async () => {
    await sleep(1500);
    const m = (await c.metrics()).json;
    assertMetricsMatch(m, bodies);
    assert.ok(m.failed_requests_total <= failuresSent + 1);
  });

  it("secrets never appear in responses or logs", () => {
    assertNoSecrets(c.seen, [MISTRAL_KEY], "responses");
    assertNoSecrets([gw.stdout(), gw.stderr()], [MISTRAL_KEY], "gateway stdout/stderr");
  });
});
