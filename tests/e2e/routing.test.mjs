// Routing through the real worker: ROUTING_THRESHOLD at its extremes, and tier overrides.

import { describe, it, before, after } from "node:test";
import assert from "node:assert/strict";
import { startGateway } from "./harness.mjs";
import { startMistralStub } from "./mistral-stub.mjs";
import { SMALL, LARGE, client, secret, tag, pollUntil, findStubRequests, assertQueryShape, assertNoSecrets } from "./helpers.mjs";

const MISTRAL_KEY = secret("mistral");

const QUERIES = [
  "hi",
  "What is 2+2?",
  "Prove that there are infinitely many primes, then analyse the time complexity of the sieve of Eratosthenes and compare it with trial division, step by step.",
  "Write a Rust function that parses RFC 3339 timestamps without external crates, explain each edge case, and give unit tests.",
];

for (const threshold of ["0", "1"]) {
  describe(`ROUTING_THRESHOLD=${threshold}`, () => {
    let stub, gw, c;
    before(async () => {
      stub = await startMistralStub();
      gw = await startGateway({ vars: { MISTRAL_API_KEY: MISTRAL_KEY, MISTRAL_BASE_URL: stub.url, ROUTING_THRESHOLD: threshold } });
      c = client(gw);
    });
    after(async () => {
      await gw?.stop();
      await stub?.close();
    });

    it("auto routing compares the score with the configured threshold", async () => {
      for (const q of QUERIES) {
        const t = tag();
        const b = assertQueryShape(await c.query({ query: `${q} ${t}` }), q);
        assert.equal(b.routing.threshold, Number(threshold), "routing.threshold echoes the configuration");
        const expected = b.routing.score >= Number(threshold) ? "large" : "small";
        assert.equal(b.routing.tier, expected, `${q}: score ${b.routing.score}`);
        if (threshold === "0") assert.equal(b.routing.tier, "large", "threshold 0 sends everything to large");
        assert.equal(b.model_used, expected === "large" ? LARGE : SMALL);
        assert.equal(findStubRequests(stub, t)[0]?.body.model, b.model_used, "upstream model matches model_used");
      }
    });

    if (threshold === "1") {
      it("a short query scores below 1 and goes small", async () => {
        const b = assertQueryShape(await c.query({ query: "hi" }), "hi");
        assert.ok(b.routing.score < 1);
        assert.equal(b.routing.tier, "small");
        assert.equal(b.routing_decision, `Routed to SMALL (score: ${b.routing_decision.slice(-5, -1)})`);
      });
    }

    it("tier overrides the score", async () => {
      const small = assertQueryShape(await c.query({ query: "Prove Fermat's last theorem in detail.", tier: "small" }), "small");
      assert.equal(small.routing.tier, "small");
      assert.equal(small.model_used, SMALL);
      assert.match(small.routing_decision, /^Routed to SMALL \(score: \d\.\d\d\)$/);
      const large = assertQueryShape(await c.query({ query: "hi", tier: "large" }), "large");
      assert.equal(large.routing.tier, "large");
      assert.equal(large.model_used, LARGE);
      assert.match(large.routing_decision, /^Routed to LARGE \(score: \d\.\d\d\)$/);
    });

    it("the Mistral key never appears in responses or logs", () => {
      assertNoSecrets(c.seen, [MISTRAL_KEY], "responses");
      assertNoSecrets([gw.logs()], [MISTRAL_KEY], "gateway logs");
    });
  });
}

// Other models configured: model_used is the configured alias, prices come from the table
// (shared/reference/mistral-api.md), and "cost if always large" uses the configured large
// model's prices.
describe("SMALL_MODEL / LARGE_MODEL configured to other models", () => {
  const SMALL_ALT = "ministral-8b-latest"; // 0.15 / 0.15 per 1M, no dated id
  const LARGE_ALT = "mistral-medium-latest"; // -> mistral-medium-3-5, 1.50 / 7.50 per 1M
  let stub, gw, c;
  before(async () => {
    stub = await startMistralStub();
    gw = await startGateway({ vars: { MISTRAL_API_KEY: MISTRAL_KEY, MISTRAL_BASE_URL: stub.url, SMALL_MODEL: SMALL_ALT, LARGE_MODEL: LARGE_ALT } });
    c = client(gw);
  });
  after(async () => {
    await gw?.stop();
    await stub?.close();
  });

  it("uses and reports the configured aliases, priced by the table", async () => {
    const t1 = tag();
    const s = assertQueryShape(await c.query({ query: `alt small ${t1} [[stub:tokens=1000,2000]]`, tier: "small" }), "alt small");
    assert.equal(s.model_used, SMALL_ALT);
    assert.equal(findStubRequests(stub, t1)[0].body.model, SMALL_ALT);
    assert.ok(Math.abs(s.metrics.cost_usd - (1000 * 0.15 + 2000 * 0.15) / 1e6) < 1e-12, `small cost ${s.metrics.cost_usd}`);
    const t2 = tag();
    const l = assertQueryShape(await c.query({ query: `alt large ${t2} [[stub:tokens=1000,2000]]`, tier: "large" }), "alt large");
    assert.equal(l.model_used, LARGE_ALT);
    assert.equal(findStubRequests(stub, t2)[0].body.model, LARGE_ALT);
    assert.ok(Math.abs(l.metrics.cost_usd - (1000 * 1.5 + 2000 * 7.5) / 1e6) < 1e-12, `large cost ${l.metrics.cost_usd}`);

    const m = (await pollUntil(() => c.metrics(), (r) => r.status === 200 && r.json.total_requests >= 2)).json;
    assert.equal(m.total_requests, 2);
    assert.deepEqual(Object.fromEntries(Object.entries(m.model_breakdown).filter(([, n]) => n > 0)), { [SMALL_ALT]: 1, [LARGE_ALT]: 1 });
    assert.ok(Math.abs(m.total_cost_usd - (s.metrics.cost_usd + l.metrics.cost_usd)) < 1e-9, "total cost");
    const ifLarge = (2 * (1000 * 1.5 + 2000 * 7.5)) / 1e6;
    assert.ok(Math.abs(m.cost_if_always_large_usd - ifLarge) < 1e-9, `cost_if_always_large_usd ${m.cost_if_always_large_usd} != ${ifLarge} (the configured large model's prices)`);
    assert.equal(m.small_model_usage_percent, "50.0%");
  });
});
