// A bounded soak (issue 11): 2,000 /query requests at concurrency 64 through the built worker
// in plain workerd (LOAD_RUNTIME: not wrangler dev's proxy, which loses a POST now and then
// under load; LLM_MUX_E2E_RUNTIME=docker: the image), 10% of them with a random upstream
// fault (seeded), fallbacks on (the default).
// Afterwards /metrics equals the client-side tally exactly (counts, tokens; cost to float
// summation order), the fallbacks counted equal the answers that said they fell back, and the
// worker answers normally.

import { describe, it, before, after } from "node:test";
import assert from "node:assert/strict";

import { startGateway, LOAD_RUNTIME } from "./harness.mjs";
import { startMistralStub } from "./mistral-stub.mjs";
import { secret, random } from "./helpers.mjs";
import { metrics } from "./chat-helpers.mjs";

const REQUESTS = 2_000;
const CONCURRENCY = 64;
const FAULT_SHARE = 0.1;

/** Faults drawn for the soak: what the client sees is counted from the responses. */
const FAULTS = [
  "[[stub:status-model=mistral-small-latest:503]] [[stub:retry-after=0]]", // small fails, large answers
  "[[stub:status-model=mistral-large-latest:500]]", // large fails, small answers
  "[[stub:status=429]] [[stub:retry-after=0]]", // both tiers rate limited
  "[[stub:status=500]]", // both tiers fail
  "[[stub:status=400]]", // refused: no retry, no fallback
  "[[stub:garbage]]", // unusable 200 body
];

describe("soak: 2,000 requests at concurrency 64 with 10% faults and fallbacks", () => {
  let stub, gw;
  before(async () => {
    stub = await startMistralStub({ port: 0, maxRecorded: 100 });
    gw = await startGateway({ vars: { MISTRAL_API_KEY: secret("soak"), MISTRAL_BASE_URL: stub.url, UPSTREAM_TIMEOUT_MS: "10000" }, runtime: LOAD_RUNTIME });
  });
  after(async () => {
    await gw?.stop();
    await stub?.close();
  });

  it("metrics equal the client-side tally; the worker answers normally afterwards", async () => {
    const seed = Number(process.env.LLM_MUX_SOAK_SEED ?? 20261203);
    const rand = random(seed);
    const plan = Array.from({ length: REQUESTS }, (_, i) => {
      const fault = rand() < FAULT_SHARE ? FAULTS[Math.floor(rand() * FAULTS.length)] : "";
      const tier = rand() < 0.5 ? "small" : "large";
      return { query: `soak ${i} ${"word ".repeat(1 + (i % 7))}${fault}`, tier };
    });
    const before = await metrics(gw);
    const tally = { ok: 0, failed: 0, tokensIn: 0, tokensOut: 0, cost: 0, fallbacks: 0, byStatus: {}, tiers: {} };
    let next = 0;
    const t0 = Date.now();
    async function worker() {
      while (next < plan.length) {
        const body = plan[next++];
        const res = await fetch(`${gw.url}/query`, {
          method: "POST",
          headers: { "content-type": "application/json" },
          body: JSON.stringify(body),
          signal: AbortSignal.timeout(60_000),
        });
        const text = await res.text();
        let json;
        try {
          json = JSON.parse(text);
        } catch {
          assert.fail(`request ${JSON.stringify(body)}: HTTP ${res.status}, not JSON: ${text.slice(0, 300)}`);
        }
        tally.byStatus[res.status] = (tally.byStatus[res.status] ?? 0) + 1;
        if (res.headers.get("x-llm-mux-fallback")) tally.fallbacks++;
        if (res.status === 200) {
          tally.ok++;
          tally.tokensIn += json.metrics.tokens_in;
          tally.tokensOut += json.metrics.tokens_out;
          tally.cost += json.metrics.cost_usd;
          tally.tiers[json.routing.tier] = (tally.tiers[json.routing.tier] ?? 0) + 1;
        } else {
          assert.ok(json.error?.type, `structured error: ${JSON.stringify(json)}`);
          tally.failed++;
        }
      }
    }
    await Promise.all(Array.from({ length: CONCURRENCY }, worker));
    const seconds = (Date.now() - t0) / 1000;
    console.log(`soak: ${REQUESTS} requests in ${seconds.toFixed(1)} s (${(REQUESTS / seconds).toFixed(0)}/s), statuses ${JSON.stringify(tally.byStatus)}, fallbacks ${tally.fallbacks}`);

    const m = await metrics(gw);
    assert.equal(m.total_requests - before.total_requests, tally.ok, "completed requests");
    assert.equal(m.failed_requests_total - before.failed_requests_total, tally.failed, `failed requests ${JSON.stringify(m.failed_requests)}`);
    assert.equal(m.tokens_in - before.tokens_in, tally.tokensIn, "prompt tokens");
    assert.equal(m.tokens_out - before.tokens_out, tally.tokensOut, "completion tokens");
    assert.ok(Math.abs(m.total_cost_usd - before.total_cost_usd - tally.cost) < 1e-9, `cost ${m.total_cost_usd - before.total_cost_usd} vs ${tally.cost}`);
    for (const [tier, n] of Object.entries(tally.tiers)) {
      assert.equal(m.tier_breakdown[tier] - (before.tier_breakdown[tier] ?? 0), n, `tier ${tier}`);
    }
    const fallbacks = (x) => Object.values(x.fallbacks_total ?? {}).reduce((a, n) => a + n, 0);
    assert.equal(fallbacks(m) - fallbacks(before), tally.fallbacks, `fallbacks ${JSON.stringify(m.fallbacks_total)}`);
    assert.ok(tally.fallbacks > 0 && tally.failed > 0, "faults were injected");
    assert.equal(m.storage.duplicates, before.storage.duplicates, "no event counted twice");

    const res = await fetch(`${gw.url}/query`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ query: "still there?" }),
    });
    assert.equal(res.status, 200);
  });
});
