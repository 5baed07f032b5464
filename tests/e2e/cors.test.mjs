// CORS (CORS_ALLOW_ORIGINS): off by default; preflights of the API routes answered 204
// without authentication; actual answers (success and error, whole and streamed) carry the
// allowed origin and expose the x-llm-mux-* headers, x-request-id and retry-after; other
// origins get no CORS headers; an invalid value is refused naming the variable.

import { describe, it, before, after } from "node:test";
import assert from "node:assert/strict";
import { startGateway } from "./harness.mjs";
import { startMistralStub } from "./mistral-stub.mjs";
import { secret, assertError } from "./helpers.mjs";

const MISTRAL_KEY = secret("mistral");
const CLIENT_KEY = secret("client");
const APP = "https://app.example.com";
const LOCAL = "http://localhost:3000";
const EVIL = "https://evil.example.net";

/** The API routes with the method a browser would ask for in a preflight. */
const API_ROUTES = [
  ["/query", "POST"],
  ["/v1/chat/completions", "POST"],
  ["/v1/models", "GET"],
  ["/v1/models/auto", "GET"],
  ["/metrics", "GET"],
];

const corsHeaderNames = (res) => [...res.headers.keys()].filter((k) => k.startsWith("access-control-"));
const list = (value) => (value ?? "").split(",").map((s) => s.trim().toLowerCase()).filter(Boolean);

function preflight(gw, path, { origin, method, headers } = {}) {
  const h = { origin, "access-control-request-method": method };
  if (headers) h["access-control-request-headers"] = headers;
  return fetch(`${gw.url}${path}`, { method: "OPTIONS", headers: h });
}

function chatBody(extra = {}) {
  return JSON.stringify({ model: "small", messages: [{ role: "user", content: "Hi there" }], ...extra });
}

/** Asserts an actual (non-preflight) answer lets `origin` read it, and its own headers. */
function assertReadableBy(res, origin, context) {
  assert.equal(res.headers.get("access-control-allow-origin"), origin, `${context}: allow-origin`);
  assert.ok(list(res.headers.get("vary")).includes("origin"), `${context}: Vary: Origin`);
  const exposed = list(res.headers.get("access-control-expose-headers"));
  for (const name of ["x-request-id", "retry-after", "x-llm-mux-tier", "x-llm-mux-model", "x-llm-mux-score"]) {
    assert.ok(exposed.includes(name), `${context}: ${name} exposed (${exposed})`);
  }
  // Every gateway header this answer actually carries is readable by the page.
  for (const name of res.headers.keys()) {
    if (name.startsWith("x-llm-mux-") || name === "x-request-id" || name === "retry-after") {
      assert.ok(exposed.includes(name), `${context}: ${name} is sent but not exposed`);
    }
  }
  assert.equal(res.headers.get("access-control-allow-methods"), null, `${context}: no preflight headers`);
}

describe("CORS off (CORS_ALLOW_ORIGINS unset)", () => {
  let stub, gw;
  before(async () => {
    stub = await startMistralStub({ apiKey: MISTRAL_KEY });
    gw = await startGateway({ vars: { MISTRAL_API_KEY: MISTRAL_KEY, MISTRAL_BASE_URL: stub.url } });
  });
  after(async () => {
    await gw?.stop();
    await stub?.close();
  });

  it("a preflight is answered 204 with Allow but no CORS headers", async () => {
    const res = await preflight(gw, "/v1/chat/completions", { origin: APP, method: "POST" });
    assert.equal(res.status, 204);
    assert.deepEqual(corsHeaderNames(res), []);
    assert.equal(res.headers.get("allow"), "POST, OPTIONS");
  });

  it("answers carry no CORS headers", async () => {
    const res = await fetch(`${gw.url}/v1/chat/completions`, {
      method: "POST",
      headers: { origin: APP, "content-type": "application/json" },
      body: chatBody(),
    });
    assert.equal(res.status, 200, await res.clone().text());
    assert.deepEqual(corsHeaderNames(res), []);
    assert.equal(res.headers.get("vary"), null);
  });
});

describe("CORS_ALLOW_ORIGINS with two origins and API keys required", () => {
  let stub, gw;
  const auth = { authorization: `Bearer ${CLIENT_KEY}` };
  before(async () => {
    stub = await startMistralStub({ apiKey: MISTRAL_KEY });
    gw = await startGateway({
      vars: {
        MISTRAL_API_KEY: MISTRAL_KEY,
        MISTRAL_BASE_URL: stub.url,
        LLM_MUX_API_KEYS: CLIENT_KEY,
        CORS_ALLOW_ORIGINS: `${APP}, ${LOCAL}`,
      },
    });
  });
  after(async () => {
    await gw?.stop();
    await stub?.close();
  });

  for (const [path, method] of API_ROUTES) {
    it(`OPTIONS ${path} (preflight for ${method}) -> 204 without auth, origin, methods, headers, max-age`, async () => {
      const res = await preflight(gw, path, {
        origin: LOCAL,
        method,
        headers: "authorization, content-type, x-stainless-os",
      });
      assert.equal(res.status, 204);
      assert.equal(await res.text(), "");
      assert.equal(res.headers.get("access-control-allow-origin"), LOCAL);
      assert.ok(list(res.headers.get("vary")).includes("origin"));
      const methods = list(res.headers.get("access-control-allow-methods"));
      assert.ok(methods.includes(method.toLowerCase()), `methods ${methods}`);
      const allowed = list(res.headers.get("access-control-allow-headers"));
      for (const h of ["authorization", "content-type", "x-stainless-os"]) {
        assert.ok(allowed.includes(h), `${h} allowed (${allowed})`);
      }
      const maxAge = Number(res.headers.get("access-control-max-age"));
      assert.ok(Number.isInteger(maxAge) && maxAge > 0, `max-age ${maxAge}`);
      assert.equal(res.headers.get("access-control-expose-headers"), null);
    });
  }

  it("a preflight from another origin gets no CORS headers", async () => {
    const res = await preflight(gw, "/v1/chat/completions", { origin: EVIL, method: "POST", headers: "authorization" });
    assert.equal(res.status, 204);
    assert.deepEqual(corsHeaderNames(res), []);
  });

  it("a preflight for a method the route does not have announces no methods", async () => {
    const res = await preflight(gw, "/query", { origin: APP, method: "DELETE" });
    assert.equal(res.status, 204);
    assert.equal(res.headers.get("access-control-allow-methods"), null);
  });

  it("OPTIONS on an unknown path is still 404", async () => {
    const res = await preflight(gw, "/nope", { origin: APP, method: "GET" });
    assert.equal(res.status, 404);
  });

  it("a chat completion is readable by the allowed origin, with its routing headers exposed", async () => {
    const res = await fetch(`${gw.url}/v1/chat/completions`, {
      method: "POST",
      headers: { ...auth, origin: APP, "content-type": "application/json" },
      body: chatBody(),
    });
    assert.equal(res.status, 200, await res.clone().text());
    assert.ok(res.headers.get("x-llm-mux-tier"), "routing headers present");
    assertReadableBy(res, APP, "chat");
  });

  it("a streamed /v1/chat/completions answer carries the CORS headers too", async () => {
    const res = await fetch(`${gw.url}/v1/chat/completions`, {
      method: "POST",
      headers: { ...auth, origin: LOCAL, "content-type": "application/json" },
      body: chatBody({ stream: true }),
    });
    assert.equal(res.status, 200);
    assert.match(res.headers.get("content-type"), /text\/event-stream/);
    assertReadableBy(res, LOCAL, "stream");
    assert.match(await res.text(), /\[DONE\]/);
  });

  it("POST /query and GET /v1/models are readable by the allowed origin", async () => {
    const q = await fetch(`${gw.url}/query`, {
      method: "POST",
      headers: { ...auth, origin: APP, "content-type": "application/json" },
      body: JSON.stringify({ query: "hello" }),
    });
    assert.equal(q.status, 200, await q.clone().text());
    assertReadableBy(q, APP, "/query");
    const m = await fetch(`${gw.url}/v1/models`, { headers: { ...auth, origin: APP } });
    assert.equal(m.status, 200);
    assertReadableBy(m, APP, "/v1/models");
  });

  it("error answers (401 without a key, 404 unknown model) are readable by the allowed origin", async () => {
    const unauth = await fetch(`${gw.url}/v1/chat/completions`, {
      method: "POST",
      headers: { origin: APP, "content-type": "application/json" },
      body: chatBody(),
    });
    assert.equal(unauth.status, 401);
    assertReadableBy(unauth, APP, "401");
    assert.equal((await unauth.json()).error.code, "invalid_api_key");

    const missing = await fetch(`${gw.url}/v1/models/no-such-model`, { headers: { ...auth, origin: LOCAL } });
    assert.equal(missing.status, 404);
    assertReadableBy(missing, LOCAL, "404");
  });

  it("an answer to another origin carries no CORS headers (the browser blocks the read)", async () => {
    const res = await fetch(`${gw.url}/v1/chat/completions`, {
      method: "POST",
      headers: { ...auth, origin: EVIL, "content-type": "application/json" },
      body: chatBody(),
    });
    assert.equal(res.status, 200);
    assert.deepEqual(corsHeaderNames(res), []);
  });
});

describe("CORS_ALLOW_ORIGINS=*", () => {
  let stub, gw;
  before(async () => {
    stub = await startMistralStub({ apiKey: MISTRAL_KEY });
    gw = await startGateway({
      vars: { MISTRAL_API_KEY: MISTRAL_KEY, MISTRAL_BASE_URL: stub.url, CORS_ALLOW_ORIGINS: "*" },
    });
  });
  after(async () => {
    await gw?.stop();
    await stub?.close();
  });

  it("any origin is allowed, preflight and answer", async () => {
    const origin = "http://127.0.0.1:5173";
    const pre = await preflight(gw, "/v1/chat/completions", { origin, method: "POST" });
    assert.equal(pre.status, 204);
    assert.equal(pre.headers.get("access-control-allow-origin"), origin);
    const res = await fetch(`${gw.url}/v1/chat/completions`, {
      method: "POST",
      headers: { origin, "content-type": "application/json" },
      body: chatBody(),
    });
    assert.equal(res.status, 200);
    assertReadableBy(res, origin, "*");
  });
});

describe("an invalid CORS_ALLOW_ORIGINS is refused, naming the variable", () => {
  let stub;
  before(async () => {
    stub = await startMistralStub({ apiKey: MISTRAL_KEY });
  });
  after(async () => {
    await stub?.close();
  });

  for (const value of ["https://app.example.com/path", "*, https://app.example.com", "app.example.com"]) {
    it(`CORS_ALLOW_ORIGINS=${JSON.stringify(value)} -> 500 naming it, nothing sent upstream`, async () => {
      const gw = await startGateway({
        vars: { MISTRAL_API_KEY: MISTRAL_KEY, MISTRAL_BASE_URL: stub.url, CORS_ALLOW_ORIGINS: value },
      });
      try {
        const res = await fetch(`${gw.url}/query`, {
          method: "POST",
          headers: { "content-type": "application/json" },
          body: JSON.stringify({ query: "hello" }),
        });
        const text = await res.text();
        let json = null;
        try {
          json = JSON.parse(text);
        } catch {
          /* assertError reports the non-JSON body */
        }
        const err = assertError({ status: res.status, json, text }, 500, value);
        assert.match(err.message, /CORS_ALLOW_ORIGINS/);
        assert.equal(stub.chatRequests().length, 0);
      } finally {
        await gw.stop();
      }
    });
  }
});
