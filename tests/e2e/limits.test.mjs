// Request size limits (MAX_BODY_BYTES before reading, counted for bodies without a length,
// distinct from MAX_QUERY_BYTES), the admin reset of the metrics (DELETE /metrics with
// LLM_MUX_ADMIN_KEY), and authentication before an invalid configuration is revealed
// (issue 11, defects 5, 7 and 8).

import { describe, it, before, after } from "node:test";
import assert from "node:assert/strict";
import http from "node:http";

import { startGateway, startGateways } from "./harness.mjs";
import { startMistralStub } from "./mistral-stub.mjs";
import { secret, tag, pollUntil } from "./helpers.mjs";
import { metrics } from "./chat-helpers.mjs";

const KEY = secret("limits");
const ADMIN = secret("admin");

describe("request size limits", () => {
  let stub, gw, plain;
  before(async () => {
    stub = await startMistralStub({ port: 0 });
    const vars = { MISTRAL_API_KEY: KEY, MISTRAL_BASE_URL: stub.url, MAX_BODY_BYTES: "4096", MAX_QUERY_BYTES: "100" };
    // Chunked uploads go to plain workerd (what production and `make serve` run): under
    // `wrangler dev`, the proxy in front of the worker fails or stalls the next chunked
    // request after one whose body the worker left unread ("worker restarted mid-request";
    // seen 2026-12-03 with wrangler 4.86), while workerd itself serves it.
    [gw, plain] = await startGateways({ vars }, { vars, runtime: "workerd" });
  });
  after(async () => {
    await Promise.all([gw?.stop(), plain?.stop()]);
    await stub?.close();
  });

  const post = (body, headers = {}) =>
    fetch(`${gw.url}/query`, { method: "POST", headers: { "content-type": "application/json", ...headers }, body, signal: AbortSignal.timeout(30_000) });

  it("a body over MAX_BODY_BYTES is refused from its Content-Length, naming MAX_BODY_BYTES", async () => {
    const body = JSON.stringify({ query: "hi", padding: "x".repeat(10_000) });
    const res = await post(body);
    assert.equal(res.status, 413);
    const e = (await res.json()).error;
    assert.equal(e.variable, "MAX_BODY_BYTES");
    assert.equal(e.limit_bytes, 4096);
    assert.match(e.message, /^request body is \d+ bytes, over the limit of 4096 bytes \(MAX_BODY_BYTES\)$/);
    assert.ok(!/query is/.test(e.message), "a large unknown field is not a large query");
  });

  it("a body without Content-Length is counted while read and cut at MAX_BODY_BYTES", async () => {
    // A small chunked body is read whole and served.
    const small = new ReadableStream({
      start(controller) {
        controller.enqueue(new TextEncoder().encode(`{"query": "chunked ${tag()}",`));
        controller.enqueue(new TextEncoder().encode(' "tier": "small"}'));
        controller.close();
      },
    });
    const ok = await fetch(`${plain.url}/query`, { method: "POST", headers: { "content-type": "application/json" }, body: small, duplex: "half" });
    assert.equal(ok.status, 200, await ok.text());
    // node:http with chunked transfer (no Content-Length): the gateway may answer before
    // the client has finished sending, which fetch reports as a failure; here the answer
    // is read whatever happens to the rest of the upload.
    const { status, text } = await new Promise((resolve, reject) => {
      const req = http.request(`${plain.url}/query`, { method: "POST", headers: { "content-type": "application/json", "transfer-encoding": "chunked" } });
      req.on("response", (res) => {
        let text = "";
        res.setEncoding("utf8");
        res.on("data", (d) => (text += d));
        res.on("end", () => resolve({ status: res.statusCode, text }));
      });
      req.on("error", () => {}); // the upload cut short after the answer
      setTimeout(() => reject(new Error("no answer within 20 s")), 20_000).unref();
      req.write('{"query": "hi", "pad": "');
      let sent = 0;
      const more = () => {
        if (sent++ >= 64 || req.destroyed) return req.end();
        req.write(" ".repeat(1024), () => setImmediate(more));
      };
      more();
    });
    assert.equal(status, 413, text);
    const e = JSON.parse(text).error;
    assert.equal(e.variable, "MAX_BODY_BYTES");
    assert.match(e.message, /^request body is over the limit of 4096 bytes \(MAX_BODY_BYTES\)$/);
  });

  it("a query over MAX_QUERY_BYTES names MAX_QUERY_BYTES; the body limit is not involved", async () => {
    const res = await post(JSON.stringify({ query: "q".repeat(150) }));
    assert.equal(res.status, 413);
    const e = (await res.json()).error;
    assert.equal(e.variable, "MAX_QUERY_BYTES");
    assert.match(e.message, /^query is 150 bytes, over the limit of 100 bytes \(MAX_QUERY_BYTES\)$/);
  });

  it("the same on /v1/chat/completions, in OpenAI's format", async () => {
    const res = await fetch(`${gw.url}/v1/chat/completions`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ model: "auto", messages: [{ role: "user", content: "y".repeat(8000) }] }),
    });
    assert.equal(res.status, 413);
    const e = (await res.json()).error;
    assert.equal(e.code, "request_too_large");
    assert.match(e.message, /MAX_BODY_BYTES/);
  });
});

describe("DELETE /metrics (LLM_MUX_ADMIN_KEY)", () => {
  let stub, gw, plain;
  before(async () => {
    stub = await startMistralStub({ port: 0 });
    [gw, plain] = await startGateways(
      { vars: { MISTRAL_API_KEY: KEY, MISTRAL_BASE_URL: stub.url, LLM_MUX_ADMIN_KEY: ADMIN } },
      { vars: { MISTRAL_API_KEY: KEY, MISTRAL_BASE_URL: stub.url } },
    );
  });
  after(async () => {
    await Promise.all([gw?.stop(), plain?.stop()]);
    await stub?.close();
  });

  const del = (g, token) =>
    fetch(`${g.url}/metrics`, { method: "DELETE", headers: token ? { authorization: `Bearer ${token}` } : {} });

  it("resets every total with the admin key; refuses without it; the key never echoed", async () => {
    for (let i = 0; i < 2; i++) {
      const res = await fetch(`${gw.url}/query`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ query: `count me ${i}` }) });
      assert.equal(res.status, 200);
    }
    await fetch(`${gw.url}/query`, { method: "POST", headers: { "content-type": "application/json" }, body: "{" });
    const before = await metrics(gw);
    assert.ok(before.total_requests >= 2 && before.total_cost_usd > 0 && before.failed_requests_total >= 1);
    for (const token of [undefined, "wrong", KEY]) {
      const res = await del(gw, token);
      assert.equal(res.status, 403, `token ${token}`);
      const text = await res.text();
      assert.equal(JSON.parse(text).error.type, "permission_error");
      assert.ok(!text.includes(ADMIN));
    }
    assert.equal((await metrics(gw)).total_requests, before.total_requests, "refused resets change nothing");
    const res = await del(gw, ADMIN);
    assert.equal(res.status, 200);
    assert.deepEqual(await res.json(), { reset: true });
    const after = await metrics(gw);
    assert.equal(after.total_requests, 0);
    assert.equal(after.total_cost_usd, 0);
    assert.equal(after.failed_requests_total, 0);
    assert.deepEqual(after.tier_breakdown, {});
    // Counting goes on after the reset.
    await fetch(`${gw.url}/query`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ query: "after the reset" }) });
    assert.equal((await metrics(gw)).total_requests, 1);
    // The runtime's log output reaches wrangler's stdout asynchronously: wait for it.
    const logs = await pollUntil(() => gw.logs(), (l) => /metrics reset by the admin key/.test(l));
    assert.match(logs, /metrics reset by the admin key/);
    assert.ok(!gw.logs().includes(ADMIN), "the admin key is not logged");
  });

  it("without LLM_MUX_ADMIN_KEY resets are off (403)", async () => {
    const res = await del(plain, ADMIN);
    assert.equal(res.status, 403);
    assert.match((await res.json()).error.message, /LLM_MUX_ADMIN_KEY/);
  });
});

describe("authentication before configuration details", () => {
  let gw;
  const CLIENT = secret("client");
  before(async () => {
    gw = await startGateway({ vars: { MISTRAL_API_KEY: KEY, LLM_MUX_API_KEYS: CLIENT, MISTRAL_BASE_URL: "ftp://internal-gw.example.corp:21" } });
  });
  after(async () => {
    await gw?.stop();
  });

  it("an unauthenticated caller gets 401, not the invalid configured URL", async () => {
    for (const [method, path] of [["GET", "/metrics"], ["POST", "/query"], ["POST", "/v1/chat/completions"], ["GET", "/v1/models"]]) {
      const res = await fetch(`${gw.url}${path}`, { method, headers: { "content-type": "application/json" }, body: method === "POST" ? "{}" : undefined });
      const text = await res.text();
      assert.equal(res.status, 401, `${method} ${path}: ${text}`);
      assert.ok(!text.includes("internal-gw"), `${method} ${path} revealed the URL: ${text}`);
    }
    const res = await fetch(`${gw.url}/metrics`, { headers: { authorization: `Bearer ${CLIENT}` } });
    assert.equal(res.status, 500);
    assert.equal((await res.json()).error.variable, "MISTRAL_BASE_URL");
  });
});
