// The response cache (issue 12): deterministic whole requests answered again from the
// Workers cache (as `wrangler dev` runs it), at no upstream cost; bypass, opt-in, TTL expiry,
// scope isolation per key, and the /metrics counts.

import { describe, it, before, after } from "node:test";
import assert from "node:assert/strict";
import { startGateway } from "./harness.mjs";
import { startMistralStub } from "./mistral-stub.mjs";
import { client, secret, tag, findStubRequests, sleep, keyId } from "./helpers.mjs";


describe("response cache", () => {
  const MISTRAL_KEY = secret("mistral");
  const A = secret("clientA");
  const B = secret("clientB");
  let stub, gw, a, b;
  before(async () => {
    stub = await startMistralStub();
    gw = await startGateway({
      vars: {
        MISTRAL_API_KEY: MISTRAL_KEY,
        MISTRAL_BASE_URL: stub.url,
        LLM_MUX_API_KEYS: `${A},${B}`,
        CACHE_TTL_SECONDS: "3",
        METRICS_BATCH_MS: "0",
      },
    });
    a = client(gw, { token: A });
    b = client(gw, { token: B });
  });
  after(async () => {
    await gw?.stop();
    await stub?.close();
  });

  const chat = (c, content, extra = {}, headers = {}) =>
    c.request("POST", "/v1/chat/completions", {
      body: { model: "small", temperature: 0, messages: [{ role: "user", content }], ...extra },
      headers,
    });

  /** The cache is written after the response: wait until the entry is there. */
  async function untilHit(c, content, extra, headers) {
    for (let i = 0; i < 40; i++) {
      const r = await chat(c, content, extra, headers);
      if (r.headers.get("x-llm-mux-cache") === "hit") return r;
      await sleep(50);
    }
    throw new Error("never a hit");
  }

  it("a repeated deterministic request is a hit: no upstream call, no cost, the same answer", async () => {
    const before = (await a.metrics()).json;
    const t = tag();
    const first = await chat(a, `What is 2+2? ${t}`);
    assert.equal(first.status, 200, first.text);
    assert.equal(first.headers.get("x-llm-mux-cache"), "miss");
    const hit = await untilHit(a, `What is 2+2? ${t}`);
    assert.equal(hit.json.choices[0].message.content, first.json.choices[0].message.content);
    assert.equal(hit.headers.get("x-llm-mux-cost-usd"), "0.00000000");
    const calls = findStubRequests(stub, t).length;
    const again = await chat(a, `What is 2+2? ${t}`);
    assert.equal(again.headers.get("x-llm-mux-cache"), "hit");
    assert.equal(findStubRequests(stub, t).length, calls, "a hit makes no upstream call");
    const m = (await a.metrics()).json;
    const hits = m.cache.hits - before.cache.hits;
    assert.ok(hits >= 2, `${hits} hits`);
    assert.equal(m.cache.misses - before.cache.misses, calls);
    const cost = Number(first.headers.get("x-llm-mux-cost-usd"));
    assert.ok(Math.abs(m.cache.saved_usd - before.cache.saved_usd - hits * cost) < 1e-9, JSON.stringify(m.cache));
    assert.ok(m.total_savings_usd >= m.cache.saved_usd);
  });

  it("bypass with x-llm-mux-cache: off or Cache-Control: no-cache; opt in with x-llm-mux-cache: on", async () => {
    const t = tag();
    await untilHit(a, `Bypass ${t}`);
    const n = findStubRequests(stub, t).length;
    const off = await chat(a, `Bypass ${t}`, {}, { "x-llm-mux-cache": "off" });
    assert.equal(off.headers.get("x-llm-mux-cache"), "bypass");
    const noCache = await chat(a, `Bypass ${t}`, {}, { "cache-control": "no-cache" });
    assert.equal(noCache.headers.get("x-llm-mux-cache"), "bypass");
    assert.equal(findStubRequests(stub, t).length, n + 2, "bypasses call the upstream");
    // Not deterministic: never cached unless opted in.
    const warm = await chat(a, `Warm ${t}`, { temperature: 0.8 });
    assert.equal(warm.headers.get("x-llm-mux-cache"), null);
    await chat(a, `Warm ${t}`, { temperature: 0.8 });
    assert.equal(findStubRequests(stub, `Warm ${t}`).length, 2);
    const opted = await untilHit(a, `Opt ${t}`, { temperature: 0.8 }, { "x-llm-mux-cache": "on" });
    assert.equal(opted.status, 200);
  });

  it("a streamed request is served from a cached whole answer as a synthetic stream; a stream is never stored", async () => {
    const t = tag();
    const whole = await untilHit(a, `Stream me ${t}`);
    const calls = findStubRequests(stub, t).length;
    const streamed = await chat(a, `Stream me ${t}`, { stream: true, stream_options: { include_usage: true } });
    assert.equal(streamed.status, 200, streamed.text);
    assert.equal(streamed.headers.get("x-llm-mux-cache"), "hit");
    assert.match(streamed.headers.get("content-type"), /text\/event-stream/);
    const events = streamed.text.split("\n\n").filter((e) => e.startsWith("data: ")).map((e) => e.slice(6));
    assert.equal(events.at(-1), "[DONE]");
    const chunks = events.slice(0, -1).map((e) => JSON.parse(e));
    const content = chunks.map((c) => c.choices?.[0]?.delta?.content ?? "").join("");
    assert.equal(content, whole.json.choices[0].message.content);
    assert.ok(chunks.some((c) => c.usage), "the usage chunk the client asked for");
    assert.equal(findStubRequests(stub, t).length, calls, "no upstream call");
    // /query streams from the same entry when opted in.
    const q = await a.query({ query: `Stream me ${t}`, tier: "small", stream: true }, { headers: { "x-llm-mux-cache": "on" } });
    assert.equal(q.status, 200, q.text);
    assert.equal(q.headers.get("x-llm-mux-cache"), null, "a different request (no temperature): not in the cache");
    // A stream that is not in the cache goes upstream and is not stored.
    const fresh = await chat(a, `Fresh stream ${t}`, { stream: true });
    assert.equal(fresh.headers.get("x-llm-mux-cache"), null);
    const after = await chat(a, `Fresh stream ${t}`);
    assert.equal(after.headers.get("x-llm-mux-cache"), "miss");
    const m = (await a.metrics()).json;
    assert.ok(m.cache.hits >= 2);
  });

  it("another key's scope never gets the answer", async () => {
    const t = tag();
    await untilHit(a, `Scoped ${t}`);
    const other = await chat(b, `Scoped ${t}`);
    assert.equal(other.headers.get("x-llm-mux-cache"), "miss");
    assert.equal(other.headers.get("x-llm-mux-key-id"), keyId(B));
  });

  it("entries expire after CACHE_TTL_SECONDS", async () => {
    const t = tag();
    await untilHit(a, `Expiring ${t}`);
    await sleep(4_000);
    const expired = await chat(a, `Expiring ${t}`);
    assert.equal(expired.headers.get("x-llm-mux-cache"), "miss");
  });

  it("/query (which has no temperature) is cached when opted in", async () => {
    const t = tag();
    const q = { query: `Capital of France? ${t}`, tier: "small" };
    const on = { headers: { "x-llm-mux-cache": "on" } };
    assert.equal((await a.query(q)).headers.get("x-llm-mux-cache"), null);
    const first = await a.query(q, on);
    assert.equal(first.status, 200, first.text);
    assert.equal(first.headers.get("x-llm-mux-cache"), "miss");
    let hit;
    for (let i = 0; i < 40 && hit?.headers.get("x-llm-mux-cache") !== "hit"; i++) {
      hit = await a.query(q, on);
      if (hit.headers.get("x-llm-mux-cache") !== "hit") await sleep(50);
    }
    assert.equal(hit.headers.get("x-llm-mux-cache"), "hit");
    assert.equal(hit.json.metrics.cost_usd, 0);
    assert.equal(hit.json.answer, first.json.answer);
  });
});

describe("response cache shared across keys (CACHE_SCOPE=shared)", () => {
  it("one key's answer serves another", async () => {
    const stub = await startMistralStub();
    const A = secret("A");
    const B = secret("B");
    const gw = await startGateway({
      vars: {
        MISTRAL_API_KEY: secret("mistral"),
        MISTRAL_BASE_URL: stub.url,
        LLM_MUX_API_KEYS: `${A},${B}`,
        CACHE_TTL_SECONDS: "60",
        CACHE_SCOPE: "shared",
      },
    });
    try {
      const t = tag();
      const body = { model: "small", temperature: 0, messages: [{ role: "user", content: `Shared ${t}` }] };
      const first = await client(gw, { token: A }).request("POST", "/v1/chat/completions", { body });
      assert.equal(first.headers.get("x-llm-mux-cache"), "miss");
      let other;
      for (let i = 0; i < 40; i++) {
        other = await client(gw, { token: B }).request("POST", "/v1/chat/completions", { body });
        if (other.headers.get("x-llm-mux-cache") === "hit") break;
        await sleep(50);
      }
      assert.equal(other.headers.get("x-llm-mux-cache"), "hit");
    } finally {
      await gw.stop();
      await stub.close();
    }
  });
});
