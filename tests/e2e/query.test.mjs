// POST /query happy paths through the real worker: both tiers, what reaches Mistral, token
// counts and cost, and the answer.

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
  expectedCost,
  findStubRequests,
  stubReply,
  assertCleanUpstreamBody,
  assertQueryShape,
  assertNoSecrets,
  assertError,
  near,
} from "./helpers.mjs";

const MISTRAL_KEY = secret("mistral");

describe("POST /query (happy paths)", () => {
  let stub, gw, c;
  before(async () => {
    stub = await startMistralStub();
    gw = await startGateway({
      vars: { MISTRAL_API_KEY: MISTRAL_KEY, MISTRAL_BASE_URL: stub.url, SMALL_MODEL: SMALL, LARGE_MODEL: LARGE },
    });
    c = client(gw);
  });
  after(async () => {
    await gw?.stop();
    await stub?.close();
  });

  /** One forced-tier query, checked end to end against what the stub saw and answered. */
  async function checkTier(tier, alias, datedId) {
    const t = tag();
    const query = `What is the capital of France? (${t})`;
    const res = await c.query({ query, tier });
    const b = assertQueryShape(res, `tier=${tier}`);
    assert.equal(b.model_used, alias, "model_used is the configured alias");
    assert.equal(b.routing.tier, tier);
    assert.match(b.routing_decision, new RegExp(`^Routed to ${tier.toUpperCase()} `));

    const seen = findStubRequests(stub, t);
    assert.equal(seen.length, 1, "exactly one upstream call");
    const up = seen[0];
    assert.equal(up.method, "POST");
    assert.equal(up.path, "/v1/chat/completions");
    assert.equal(up.headers.authorization, `Bearer ${MISTRAL_KEY}`, "upstream got the Mistral key as a bearer token");
    assert.equal(up.body.model, alias, "upstream model is the alias");
    assertCleanUpstreamBody(up.body);
    const lastUser = up.body.messages.filter((m) => m.role === "user").at(-1);
    assert.ok(lastUser.content.includes(query), "query forwarded as the user message");
    assert.equal(up.response.status, 200);

    const reply = stubReply(up);
    assert.equal(reply.model, datedId);
    assert.equal(b.answer, reply.answer, "answer is the upstream's content");
    assert.equal(b.metrics.tokens_in, reply.usage.prompt_tokens, "tokens_in = upstream prompt_tokens");
    assert.equal(b.metrics.tokens_out, reply.usage.completion_tokens, "tokens_out = upstream completion_tokens");
    const cost = expectedCost(datedId, alias, reply.usage.prompt_tokens, reply.usage.completion_tokens);
    near(b.metrics.cost_usd, cost, 1e-12, "cost_usd = tokens x price of the dated model");
    return b;
  }

  it("tier=small goes to the small model", async () => {
    await checkTier("small", SMALL, "mistral-small-2603");
  });

  it("tier=large goes to the large model", async () => {
    await checkTier("large", LARGE, "mistral-large-2512");
  });

  // Large but plausible counts: prompt tokens within 4 per request byte + 16,384, the
  // answer within max_tokens + 16,384 (usage beyond that is replaced by an estimate).
  it("large token counts are priced exactly (small: 0.15/0.60, large: 0.50/1.50 per 1M)", async () => {
    let res = await c.query({ query: "price check [[stub:tokens=16000,200000]]", tier: "small", max_tokens: 200_000 });
    let b = assertQueryShape(res, "small priced");
    assert.equal(b.metrics.tokens_in, 16_000);
    assert.equal(b.metrics.tokens_out, 200_000);
    assert.equal(b.metrics.tokens_estimated, false);
    near(b.metrics.cost_usd, (16_000 * 0.15 + 200_000 * 0.6) / 1e6, 1e-12, "small cost");
    res = await c.query({ query: "price check [[stub:tokens=16000,200000]]", tier: "large", max_tokens: 200_000 });
    b = assertQueryShape(res, "large priced");
    near(b.metrics.cost_usd, (16_000 * 0.5 + 200_000 * 1.5) / 1e6, 1e-12, "large cost");
  });

  it("an unknown dated id is priced by the alias (fallback)", async () => {
    const res = await c.query({ query: "fallback [[stub:model=mistral-large-2999]] [[stub:tokens=100,200]]", tier: "large" });
    const b = assertQueryShape(res, "alias fallback");
    assert.equal(b.model_used, LARGE);
    near(b.metrics.cost_usd, (100 * 0.5 + 200 * 1.5) / 1e6, 1e-12, "alias price used");
  });

  it("a completion without usage is never recorded as free", async () => {
    // Mistral documents usage on every completion, but some clients report answers without it
    // (shared/reference/mistral-api.md): the gateway may refuse it (502) or estimate tokens,
    // but must not report zero tokens or zero cost for an answer it returns.
    const res = await c.query({ query: `no usage here ${tag()} [[stub:no-usage]]`, tier: "large" });
    if (res.status === 200) {
      const b = assertQueryShape(res, "no-usage");
      assert.ok(b.metrics.tokens_in > 0 && b.metrics.tokens_out > 0, `tokens: ${JSON.stringify(b.metrics)}`);
      assert.ok(b.metrics.cost_usd > 0, `cost_usd: ${b.metrics.cost_usd}`);
    } else {
      assertError(res, 502, "no-usage refused");
    }
  });

  it("the answer is passed through verbatim (unicode, quotes, newlines)", async () => {
    const answer = 'Ça marche: "ok" — 東京\\n done';
    const res = await c.query({ query: `verbatim [[stub:answer=${answer}]]`, tier: "small" });
    const b = assertQueryShape(res, "verbatim");
    assert.equal(b.answer, answer);
  });

  it("tier defaults to auto and auto follows score >= threshold", async () => {
    const t = tag();
    const res = await c.query({ query: `Explain briefly why the sky is blue. ${t}` });
    const b = assertQueryShape(res, "auto");
    const expected = b.routing.score >= b.routing.threshold ? "large" : "small";
    assert.equal(b.routing.tier, expected, `score ${b.routing.score} vs threshold ${b.routing.threshold}`);
    assert.equal(b.model_used, expected === "large" ? LARGE : SMALL);
    assert.equal(findStubRequests(stub, t)[0].body.model, b.model_used);
    const explicit = assertQueryShape(await c.query({ query: `Explain briefly why the sky is blue. ${t}`, tier: "auto" }), "auto explicit");
    assert.equal(explicit.routing.tier, b.routing.tier, "tier:auto is the default");
    near(explicit.routing.score, b.routing.score, 1e-12, "scoring is deterministic");
  });

  it("max_tokens is forwarded to Mistral", async () => {
    const t = tag();
    const res = await c.query({ query: `short please ${t}`, tier: "small", max_tokens: 50 });
    assertQueryShape(res, "max_tokens");
    const up = findStubRequests(stub, t)[0];
    assert.equal(up.body.max_tokens, 50);
    assertCleanUpstreamBody(up.body);
  });

  it("responses are JSON", async () => {
    const res = await c.query({ query: "content type", tier: "small" });
    assert.equal(res.status, 200);
    assert.match(res.headers.get("content-type") ?? "", /^application\/json/);
  });

  it("the Mistral key never appears in responses or logs", async () => {
    const m = await c.metrics();
    assert.equal(m.status, 200);
    assertNoSecrets(c.seen, [MISTRAL_KEY], "responses");
    assertNoSecrets([gw.logs()], [MISTRAL_KEY], "gateway logs");
  });
});
