// One structured JSON log line per request (issue 13, LOG_REQUESTS): request id, route,
// status, outcome, tier, model, score, latency, tokens, cost, key id; never the prompt,
// the answer or a secret; off with LOG_REQUESTS=0.

import { describe, it, before, after } from "node:test";
import assert from "node:assert/strict";
import { startGateway } from "./harness.mjs";
import { startMistralStub } from "./mistral-stub.mjs";
import { client, secret, tag, pollUntil, keyId } from "./helpers.mjs";


/** The JSON request lines in a gateway's logs. */
function lines(gw) {
  return gw
    .logs()
    .split("\n")
    .map((l) => l.slice(l.indexOf("{")))
    .filter((l) => l.startsWith('{"'))
    .map((l) => {
      try {
        return JSON.parse(l);
      } catch {
        return null;
      }
    })
    .filter((l) => l && typeof l.request_id === "string" && typeof l.status === "number");
}

describe("request log lines", () => {
  const MISTRAL_KEY = secret("mistral");
  const KEY = secret("client");
  let stub, gw, c;
  before(async () => {
    stub = await startMistralStub();
    gw = await startGateway({ vars: { MISTRAL_API_KEY: MISTRAL_KEY, MISTRAL_BASE_URL: stub.url, LLM_MUX_API_KEYS: KEY } });
    c = client(gw, { token: KEY });
  });
  after(async () => {
    await gw?.stop();
    await stub?.close();
  });

  it("every request gets one line with its routing, usage, cost and key id, and nothing secret", async () => {
    const t = tag();
    const prompt = `The secret prompt ${t}`;
    const q = await c.query({ query: prompt, tier: "small" });
    assert.equal(q.status, 200, q.text);
    const s = await c.request("POST", "/v1/chat/completions", {
      body: { model: "large", stream: true, messages: [{ role: "user", content: `Streamed ${t}` }] },
    });
    assert.equal(s.status, 200);
    const denied = await client(gw).query({ query: `no key ${t}` });
    assert.equal(denied.status, 401);
    const m = await c.metrics();
    assert.equal(m.status, 200);
    const ids = [q, s, denied, m].map((r) => r.headers.get("x-request-id"));
    const found = await pollUntil(
      async () => lines(gw).filter((l) => ids.includes(l.request_id)),
      (ls) => ls.length >= 4,
    );
    const byId = Object.fromEntries(found.map((l) => [l.request_id, l]));
    assert.equal(found.length, 4, JSON.stringify(found));
    const ql = byId[ids[0]];
    assert.equal(ql.route, "/query");
    assert.equal(ql.status, 200);
    assert.equal(ql.outcome, "ok");
    assert.equal(ql.tier, "small");
    assert.equal(ql.model, "mistral-small-latest");
    assert.equal(ql.tokens_in, q.json.metrics.tokens_in);
    assert.equal(ql.tokens_out, q.json.metrics.tokens_out);
    assert.equal(ql.cost_usd, q.json.metrics.cost_usd);
    assert.equal(ql.score, q.json.routing.score);
    assert.equal(ql.key_id, keyId(KEY));
    assert.equal(typeof ql.latency_ms, "number");
    const sl = byId[ids[1]];
    assert.equal(sl.route, "/v1/chat/completions");
    assert.equal(sl.tier, "large");
    assert.ok(sl.tokens_out > 0);
    assert.equal(byId[ids[2]].status, 401);
    assert.equal(byId[ids[2]].outcome, "unauthorized");
    assert.equal(byId[ids[3]].route, "/metrics");
    const logs = gw.logs();
    for (const forbidden of [prompt, `Streamed ${t}`, KEY, MISTRAL_KEY]) {
      assert.ok(!logs.includes(forbidden), `logs contain ${forbidden.slice(0, 20)}...`);
    }
    // The answers are not logged either.
    assert.ok(!logs.includes(q.json.answer), "the answer is not logged");
  });
});

describe("LOG_REQUESTS=0", () => {
  it("turns the lines off", async () => {
    const stub = await startMistralStub();
    const gw = await startGateway({ vars: { MISTRAL_API_KEY: secret("m"), MISTRAL_BASE_URL: stub.url, LOG_REQUESTS: "0" } });
    try {
      const r = await client(gw).query({ query: "hello", tier: "small" });
      assert.equal(r.status, 200);
      await new Promise((res) => setTimeout(res, 500));
      assert.equal(lines(gw).filter((l) => l.request_id === r.headers.get("x-request-id")).length, 0);
      const bad = await startGateway({ vars: { MISTRAL_API_KEY: secret("m"), MISTRAL_BASE_URL: stub.url, LOG_REQUESTS: "maybe" } });
      try {
        const e = await client(bad).query({ query: "hello" });
        assert.equal(e.status, 500);
        assert.equal(e.json.error.variable, "LOG_REQUESTS");
      } finally {
        await bad.stop();
      }
    } finally {
      await gw.stop();
      await stub.close();
    }
  });
});
