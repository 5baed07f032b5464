// Error responses of the real worker: client errors (400/404/405/413) and upstream failures
// (502/504), all in the contract's shape {"error": {"type", "message"}}, none leaking the key.

import { describe, it, before, after } from "node:test";
import assert from "node:assert/strict";
import { startGateway } from "./harness.mjs";
import { startMistralStub } from "./mistral-stub.mjs";
import { client, secret, tag, assertError, assertQueryShape, assertNoSecrets, findStubRequests } from "./helpers.mjs";

const MISTRAL_KEY = secret("mistral");
const TIMEOUT_MS = 1500;

describe("error responses", () => {
  let stub, gw, c;
  before(async () => {
    stub = await startMistralStub();
    // MAX_QUERY_BYTES comes from wrangler.toml (the documented default, 32768).
    gw = await startGateway({
      vars: { MISTRAL_API_KEY: MISTRAL_KEY, MISTRAL_BASE_URL: stub.url, UPSTREAM_TIMEOUT_MS: String(TIMEOUT_MS) },
    });
    c = client(gw);
  });
  after(async () => {
    await gw?.stop();
    await stub?.close();
  });

  describe("400 bad requests (nothing sent upstream)", () => {
    const cases = [
      ["malformed JSON", { raw: "{not json" }],
      ["truncated JSON", { raw: '{"query": "hi"' }],
      ["empty body", { raw: "" }],
      ["JSON array", { body: ["query"] }],
      ["JSON string", { body: "query" }],
      ["JSON null", { raw: "null" }],
      ["missing query", { body: {} }],
      ["query null", { body: { query: null } }],
      ["query number", { body: { query: 42 } }],
      ["query array", { body: { query: ["a"] } }],
      ["query object", { body: { query: { text: "a" } } }],
      ["empty query", { body: { query: "" } }],
      ["tier not one of the three", { body: { query: "hi", tier: "medium" } }],
      ["tier uppercase", { body: { query: "hi", tier: "LARGE" } }],
      ["tier number", { body: { query: "hi", tier: 1 } }],
      ["max_tokens zero", { body: { query: "hi", max_tokens: 0 } }],
      ["max_tokens negative", { body: { query: "hi", max_tokens: -5 } }],
      ["max_tokens fractional", { body: { query: "hi", max_tokens: 1.5 } }],
      ["max_tokens string", { body: { query: "hi", max_tokens: "10" } }],
      ["max_tokens bool", { body: { query: "hi", max_tokens: true } }],
    ];
    for (const [name, opts] of cases) {
      it(name, async () => {
        const before = stub.chatRequests().length;
        const res = await c.request("POST", "/query", opts);
        assertError(res, 400, name);
        assert.equal(stub.chatRequests().length, before, "nothing was sent upstream");
      });
    }
  });

  it("400 error bodies are JSON with a JSON content type", async () => {
    const res = await c.request("POST", "/query", { raw: "{nope" });
    assertError(res, 400, "content type");
    assert.match(res.headers.get("content-type") ?? "", /^application\/json/);
  });

  it("413 when the query is over MAX_QUERY_BYTES (32768), counted in UTF-8 bytes", async () => {
    const over = await c.query({ query: "a".repeat(32769) });
    assertError(over, 413, "32769 ASCII bytes");
    // 10923 x 3-byte characters = 32769 bytes but only 10923 characters.
    const multi = await c.query({ query: "€".repeat(10923) });
    assertError(multi, 413, "32769 UTF-8 bytes in 10923 chars");
    const huge = await c.query({ query: "b".repeat(200_000) });
    assertError(huge, 413, "200 KB query");
  });

  it("a query of exactly MAX_QUERY_BYTES is accepted", async () => {
    const res = await c.query({ query: "a".repeat(32768), tier: "small" });
    assertQueryShape(res, "32768 bytes");
  });

  it("404 for unknown paths", async () => {
    for (const [method, path] of [["GET", "/nope"], ["POST", "/nope"], ["GET", "/metricsx"], ["POST", "/query/extra"]]) {
      const res = await c.request(method, path, method === "POST" ? { body: { query: "hi" } } : {});
      assertError(res, 404, `${method} ${path}`);
    }
  });

  it("405 for wrong methods on known paths", async () => {
    assertError(await c.request("GET", "/query"), 405, "GET /query");
    assertError(await c.request("PUT", "/query", { body: { query: "hi" } }), 405, "PUT /query");
    assertError(await c.request("DELETE", "/query"), 405, "DELETE /query");
    assertError(await c.request("POST", "/metrics", { body: {} }), 405, "POST /metrics");
  });

  // The client's status follows the upstream's: 429 stays 429, a refused request (400, 422)
  // is the client's 400, a refused gateway key (401) and server errors are 502.
  describe("upstream failures: status mapped, upstream status kept, message sanitised", () => {
    const cases = [
      ["upstream 500", "[[stub:status=500]]", 500, 502],
      ["upstream 503", "[[stub:status=503]] [[stub:retry-after=0]]", 503, 502],
      ["upstream 429", "[[stub:status=429]] [[stub:retry-after=0]]", 429, 429],
      ["upstream 400", "[[stub:status=400]]", 400, 400],
      ["upstream 401 (bad Mistral key)", "[[stub:status=401]]", 401, 502],
      ["upstream 422 with a {detail} body", "[[stub:status=422]] [[stub:error-body=detail]]", 422, 400],
      ["upstream 500 with message as an object", "[[stub:status=500]] [[stub:error-body=message-object]]", 500, 502],
    ];
    for (const [name, marker, status, clientStatus] of cases) {
      it(name, async () => {
        const t = tag();
        const res = await c.query({ query: `fail please ${t} ${marker}`, tier: "small" }, { timeoutMs: 60_000 });
        const err = assertError(res, clientStatus, name);
        assert.equal(err.upstream_status, status, `error.upstream_status: ${res.text}`);
        assert.ok(findStubRequests(stub, t).length >= 1, "the upstream was called");
        assert.ok(!res.text.includes(MISTRAL_KEY), "key not in the response");
      });
    }

    it("200 with a non-JSON body", async () => {
      const res = await c.query({ query: `garbage ${tag()} [[stub:garbage]]`, tier: "small" });
      const err = assertError(res, 502, "garbage");
      if ("upstream_status" in err) assert.equal(err.upstream_status, 200);
      assert.ok(!res.text.includes("<html>"), "raw upstream body not relayed");
    });

    it("200 JSON without choices", async () => {
      const res = await c.query({ query: `bad shape ${tag()} [[stub:bad-shape]]`, tier: "large" });
      const err = assertError(res, 502, "bad-shape");
      if ("upstream_status" in err) assert.equal(err.upstream_status, 200);
    });

    it("an upstream error that echoes the key is not relayed", async () => {
      const res = await c.query({ query: `echo ${tag()} [[stub:status=500]] [[stub:echo-key]]`, tier: "small" }, { timeoutMs: 60_000 });
      assertError(res, 502, "echo-key");
      assert.ok(!res.text.includes(MISTRAL_KEY), `key leaked: ${res.text}`);
    });

    it("an upstream error that echoes the bare key (no Bearer prefix) is not relayed", async () => {
      for (const [marker, status] of [["[[stub:status=429]] [[stub:retry-after=0]]", 429], ["[[stub:status=400]] [[stub:error-body=message]]", 400], ["[[stub:status=422]] [[stub:error-body=detail]]", 400]]) {
        const res = await c.query({ query: `echo bare ${tag()} ${marker} [[stub:echo-key=bare]]`, tier: "small" }, { timeoutMs: 60_000 });
        assertError(res, status, `echo-key=bare ${marker}`);
        assert.ok(!res.text.includes(MISTRAL_KEY), `key leaked: ${res.text}`);
      }
    });

    it("a transient 503 that recovers is not an error", async () => {
      // The gateway may retry (then 200) or not (then 502); either way no key leaks and the
      // shape is right.
      const res = await c.query({ query: `flaky ${tag()} [[stub:fail-first=1]] [[stub:status=503]] [[stub:retry-after=0]]`, tier: "small" }, { timeoutMs: 60_000 });
      if (res.status === 200) assertQueryShape(res, "retried");
      else assertError(res, 502, "not retried");
    });
  });

  it(`504 when the upstream is slower than UPSTREAM_TIMEOUT_MS (${TIMEOUT_MS} ms)`, async () => {
    const t0 = Date.now();
    const res = await c.query({ query: `slow ${tag()} [[stub:delay=8000]]`, tier: "small" }, { timeoutMs: 30_000 });
    const elapsed = Date.now() - t0;
    assertError(res, 504, "timeout");
    assert.ok(elapsed >= TIMEOUT_MS - 100, `answered after ${elapsed} ms, before the timeout`);
    assert.ok(elapsed < 7000, `answered after ${elapsed} ms: the timeout was not enforced`);
  });

  it(`504 when the upstream sends its headers but stalls the body past UPSTREAM_TIMEOUT_MS`, async () => {
    const t0 = Date.now();
    const res = await c.query({ query: `stalled ${tag()} [[stub:body-delay=8000]]`, tier: "small" }, { timeoutMs: 30_000 });
    const elapsed = Date.now() - t0;
    assertError(res, 504, "stalled body");
    assert.ok(elapsed >= TIMEOUT_MS - 100, `answered after ${elapsed} ms, before the timeout`);
    assert.ok(elapsed < 7000, `answered after ${elapsed} ms: the deadline did not cover the body`);
  });

  it("the Mistral key never appears in responses or logs", () => {
    assertNoSecrets(c.seen, [MISTRAL_KEY], "responses");
    assertNoSecrets([gw.stdout(), gw.stderr()], [MISTRAL_KEY], "gateway stdout/stderr");
  });
});
