// Tiers as configuration: more than two tiers with a threshold each, a conditional code tier,
// per-tier prices, tier names and model ids as `model`, metrics per tier, and TIERS errors.

import { describe, it, before, after } from "node:test";
import assert from "node:assert/strict";
import { startGateway } from "./harness.mjs";
import { startMistralStub } from "./mistral-stub.mjs";
import { secret, tag, findStubRequests, stubReply, near } from "./helpers.mjs";
import { chat, chatStream, chunksOf, assembleChunks, assertOpenAiError, assertCompletion, routingHeaders, metrics, metricsUntil, user } from "./chat-helpers.mjs";

const MISTRAL_KEY = secret("mistral");

/** tiny < 0.2 <= small < 0.5 <= large; code when the code feature is >= 0.5. */
const TIERS = [
  { name: "tiny", model: "ministral-3b-latest" },
  { name: "small", model: "mistral-small-latest", min_score: 0.2, prices: { input: 1, output: 2 } },
  { name: "code", model: "codestral-latest", when: { feature: "code", min_value: 0.5 } },
  { name: "large", model: "mistral-large-latest", min_score: 0.5 },
];

const QUERIES = {
  tiny: "What is the capital of France?",
  small: "What are the main differences between TCP and UDP?",
  code: "Write a Python function that parses a CSV file and returns a list of dicts. ```python\ndef parse(path):\n    pass\n```",
  large:
    "Compare and contrast the economic policies of Keynesian and Austrian schools, analyze their implications for inflation, and prove step by step why one would dominate in a liquidity trap. Derive the equilibrium conditions.",
};
const MODELS = { tiny: "ministral-3b-latest", small: "mistral-small-latest", code: "codestral-latest", large: "mistral-large-latest" };
/** USD per 1M tokens each tier is billed at (embedded table, or the tier's own prices). */
const TIER_PRICES = { tiny: [0.1, 0.1], small: [1, 2], code: [0.3, 0.9], large: [0.5, 1.5] };
const priced = (tier, i, o) => (i * TIER_PRICES[tier][0] + o * TIER_PRICES[tier][1]) / 1e6;

describe("TIERS: tiny / small / code / large", () => {
  let stub, gw;
  before(async () => {
    stub = await startMistralStub({ apiKey: MISTRAL_KEY });
    // The thresholds above are on the heuristic scorer's scale.
    gw = await startGateway({ vars: { TIERS: JSON.stringify(TIERS), ROUTER: "heuristic", MISTRAL_API_KEY: MISTRAL_KEY, MISTRAL_BASE_URL: stub.url } });
  });
  after(async () => {
    await gw?.stop();
    await stub?.close();
  });

  it("auto routes each query to its tier, the code tier by its feature condition", async () => {
    for (const [tier, q] of Object.entries(QUERIES)) {
      const t = tag();
      const res = await chat(gw, { model: "auto", messages: [user(`${q} ${t}`)] });
      assertCompletion(res, tier);
      const h = routingHeaders(res, { cost: true });
      assert.equal(h.tier, tier, `"${q.slice(0, 40)}" -> ${h.tier} (score ${h.score})`);
      assert.equal(h.model, MODELS[tier]);
      const [up] = findStubRequests(stub, t);
      assert.equal(up.body.model, MODELS[tier], "upstream model of the tier");
    }
  });

  it("/query reports the tier names in routing and routing_decision", async () => {
    for (const [tier, q] of Object.entries(QUERIES)) {
      const res = await fetch(`${gw.url}/query`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ query: q }) });
      assert.equal(res.status, 200);
      const b = await res.json();
      assert.equal(b.routing.tier, tier);
      assert.equal(b.model_used, MODELS[tier]);
      assert.match(b.routing_decision, new RegExp(`^Routed to ${tier.toUpperCase()} \\(score: \\d\\.\\d\\d\\)$`));
      assert.equal(b.routing.threshold, 0.5, "threshold of the top plain tier");
    }
  });

  it("tier names and model ids force a tier, for /v1/chat/completions and /query", async () => {
    for (const [model, tier] of [["code", "code"], ["codestral-latest", "code"], ["tiny", "tiny"], ["mistral-large-latest", "large"]]) {
      const res = await chat(gw, { model, messages: [user(QUERIES.small)] });
      assertCompletion(res);
      assert.equal(routingHeaders(res).tier, tier, `model ${model}`);
    }
    const res = await fetch(`${gw.url}/query`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ query: "hi", tier: "code" }) });
    assert.equal((await res.json()).routing.tier, "code");
    const bad = await fetch(`${gw.url}/query`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ query: "hi", tier: "medium" }) });
    assert.equal(bad.status, 400);
    assert.match((await bad.json()).error.message, /tiny.*small.*code.*large/);
  });

  // A tier's own `prices` win over the embedded table, even when the upstream reports a dated id
  // the table knows (mistral-small-latest -> mistral-small-2603).
  it("each tier is billed at its prices: the embedded table, or the tier's own `prices`", async () => {
    for (const tier of Object.keys(QUERIES)) {
      const t = tag();
      const res = await chat(gw, { model: tier, messages: [user(`price me ${t} [[stub:tokens=10000,20000]]`)], max_tokens: 20_000 });
      assertCompletion(res);
      const [up] = findStubRequests(stub, t);
      const usage = stubReply(up).usage;
      near(routingHeaders(res, { cost: true }).cost, priced(tier, usage.prompt_tokens, usage.completion_tokens), 1e-8, `cost of tier ${tier} (upstream reported ${stubReply(up).model})`);
    }
  });

  it("/metrics counts per tier and compares with the top plain tier (large)", async () => {
    const before = await metrics(gw);
    const n = { tiny: 2, small: 1, code: 3, large: 1 };
    for (const [tier, count] of Object.entries(n)) {
      for (let i = 0; i < count; i++) {
        // small reports a dated id the price table does not know, so the tier's own prices
        // apply (as they also do for the dated id it normally reports, tested above).
        const model = tier === "small" ? " [[stub:model=mistral-small-2699]]" : "";
        const s = await chatStream(gw, { model: tier, messages: [user(`count ${tier} ${i} [[stub:tokens=1000,100]]${model}`)] });
        assembleChunks(chunksOf(s));
      }
    }
    const total = Object.values(n).reduce((a, b) => a + b, 0);
    const m = await metricsUntil(gw, (x) => x.total_requests === before.total_requests + total, { what: `${total} streams recorded` });
    for (const [tier, count] of Object.entries(n)) {
      assert.equal((m.tier_breakdown[tier] ?? 0) - (before.tier_breakdown[tier] ?? 0), count, `tier_breakdown.${tier}`);
    }
    const spent = Object.entries(n).reduce((a, [tier, c]) => a + c * priced(tier, 1000, 100), 0);
    near(m.total_cost_usd - before.total_cost_usd, spent, 1e-12, "total cost");
    near(m.cost_if_always_large_usd - before.cost_if_always_large_usd, total * priced("large", 1000, 100), 1e-12, "cost if always the top tier");
  });

  it("GET /v1/models lists auto, the four tiers and their models", async () => {
    const body = await (await fetch(`${gw.url}/v1/models`)).json();
    assert.deepEqual(body.data.map((m) => m.id), ["auto", "tiny", "small", "code", "large", ...Object.values(MODELS)]);
  });
});

describe("TIERS with the default router; configuration errors", () => {
  let stub;
  before(async () => {
    stub = await startMistralStub({ apiKey: MISTRAL_KEY });
  });
  after(async () => {
    await stub?.close();
  });

  it("the code tier follows its feature under the default router; a tier without its key answers 503", async () => {
    const tiers = [
      { name: "small", model: "mistral-small-latest" },
      { name: "code", model: "codestral-latest", when: { feature: "code", min_value: 0.5 } },
      { name: "gpt", backend: "openai", base_url: "http://127.0.0.1:9", model: "gpt-4o-mini", min_score: 0.99, prices: { input: 0.15, output: 0.6 } },
    ];
    const gw = await startGateway({ vars: { TIERS: JSON.stringify(tiers), MISTRAL_API_KEY: MISTRAL_KEY, MISTRAL_BASE_URL: stub.url } });
    try {
      // Conditional tiers test the heuristic's named features whatever the router scores with.
      for (const [q, tier] of [[QUERIES.code, "code"], [QUERIES.tiny, "small"], [QUERIES.large, "small"]]) {
        const res = await chat(gw, { model: "auto", messages: [user(q)] });
        assertCompletion(res);
        assert.equal(routingHeaders(res).tier, tier, q.slice(0, 40));
      }
      const res = await chat(gw, { model: "gpt", messages: [user("hi")] });
      const e = assertOpenAiError(res, 503, "missing OPENAI_API_KEY");
      assert.match(e.message, /OPENAI_API_KEY/);
      assert.ok(!/127\.0\.0\.1:9/.test(res.text), "no upstream call attempted");
      assertCompletion(await chat(gw, { model: "small", messages: [user("hi")] }));
    } finally {
      await gw.stop();
    }
  });

  it("an invalid TIERS value: every request answers 500 naming TIERS", async () => {
    const tiers = [{ name: "a", model: "mistral-large-latest", min_score: 0.5 }, { name: "b", model: "mistral-small-latest", min_score: 0.1 }];
    const gw = await startGateway({ vars: { TIERS: JSON.stringify(tiers), MISTRAL_API_KEY: MISTRAL_KEY, MISTRAL_BASE_URL: stub.url } });
    try {
      const res = await chat(gw, { model: "auto", messages: [user("hi")] });
      const e = assertOpenAiError(res, 500, "invalid TIERS");
      assert.match(e.message, /TIERS/);
      assert.match(e.message, /must not decrease/);
    } finally {
      await gw.stop();
    }
  });
});
