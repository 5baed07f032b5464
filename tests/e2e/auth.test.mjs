// Client authentication: with LLM_MUX_API_KEYS set, /query and /metrics need
// `Authorization: Bearer <one of the keys>` (else 401); without it they are open.

import { describe, it, before, after } from "node:test";
import assert from "node:assert/strict";
import { startGateway } from "./harness.mjs";
import { startMistralStub } from "./mistral-stub.mjs";
import { client, secret, tag, assertError, assertQueryShape, assertNoSecrets, findStubRequests } from "./helpers.mjs";

const MISTRAL_KEY = secret("mistral");
const CLIENT_A = secret("clientA");
const CLIENT_B = secret("clientB");

describe("auth on (LLM_MUX_API_KEYS set)", () => {
  let stub, gw, anon;
  const clients = [];
  before(async () => {
    stub = await startMistralStub();
    gw = await startGateway({ vars: { MISTRAL_API_KEY: MISTRAL_KEY, MISTRAL_BASE_URL: stub.url, LLM_MUX_API_KEYS: `${CLIENT_A},${CLIENT_B}` } });
    anon = client(gw);
    clients.push(anon);
  });
  after(async () => {
    await gw?.stop();
    await stub?.close();
  });
  const as = (token) => {
    const c = client(gw, { token });
    clients.push(c);
    return c;
  };

  it("401 without a key, with a wrong key, or with a malformed header", async () => {
    const t = tag();
    const body = { query: `secret stuff ${t}`, tier: "small" };
    assertError(await anon.query(body), 401, "no header");
    assertError(await as("wrong-key").query(body), 401, "wrong key");
    assertError(await as(`${CLIENT_A},${CLIENT_B}`).query(body), 401, "the whole list as one key");
    assertError(await as(CLIENT_A.slice(0, -1)).query(body), 401, "a prefix of a key");
    assertError(await as(`${CLIENT_A}x`).query(body), 401, "a key with a suffix");
    assertError(await anon.query(body, { headers: { authorization: CLIENT_A } }), 401, "key without Bearer");
    assertError(await anon.query(body, { headers: { authorization: `Basic ${CLIENT_A}` } }), 401, "Basic scheme");
    assertError(await anon.query(body, { headers: { authorization: "Bearer " } }), 401, "empty bearer");
    assert.equal(findStubRequests(stub, t).length, 0, "nothing reached the upstream");
  });

  it("401 is answered before the body is looked at", async () => {
    assertError(await anon.request("POST", "/query", { raw: "{not json" }), 401, "bad body, no key");
  });

  it("/metrics needs a key too", async () => {
    assertError(await anon.metrics(), 401, "metrics, no header");
    assertError(await as("wrong-key").metrics(), 401, "metrics, wrong key");
    const ok = await as(CLIENT_B).metrics();
    assert.equal(ok.status, 200, ok.text);
    assert.equal(typeof ok.json.total_requests, "number");
  });

  it("each configured key is accepted; the client key is not forwarded upstream", async () => {
    for (const key of [CLIENT_A, CLIENT_B]) {
      const t = tag();
      const res = await as(key).query({ query: `hello ${t}`, tier: "small" });
      assertQueryShape(res, "authorised");
      const up = findStubRequests(stub, t);
      assert.equal(up.length, 1);
      assert.equal(up[0].headers.authorization, `Bearer ${MISTRAL_KEY}`, "upstream gets the Mistral key, not the client's");
      assert.ok(!JSON.stringify(up[0].headers).includes(key), "client key not forwarded in any header");
      assert.ok(!up[0].rawBody.includes(key), "client key not in the upstream body");
    }
  });

  it("validation still applies to authorised requests", async () => {
    assertError(await as(CLIENT_A).request("POST", "/query", { raw: "{not json" }), 400, "bad body with key");
  });

  it("the Mistral key and the client keys never appear in responses or logs", () => {
    assertNoSecrets(clients.flatMap((c) => c.seen), [MISTRAL_KEY, CLIENT_A, CLIENT_B], "responses");
    assertNoSecrets([gw.stdout(), gw.stderr()], [MISTRAL_KEY, CLIENT_A, CLIENT_B], "gateway stdout/stderr");
  });
});

describe("auth off (LLM_MUX_API_KEYS unset)", () => {
  let stub, gw, c;
  before(async () => {
    stub = await startMistralStub();
    gw = await startGateway({ vars: { MISTRAL_API_KEY: MISTRAL_KEY, MISTRAL_BASE_URL: stub.url } });
    c = client(gw);
  });
  after(async () => {
    await gw?.stop();
    await stub?.close();
  });

  it("/query and /metrics are open", async () => {
    assertQueryShape(await c.query({ query: "open door", tier: "small" }), "no auth");
    assert.equal((await c.metrics()).status, 200);
  });

  it("an Authorization header is ignored and not forwarded", async () => {
    const t = tag();
    const stray = secret("stray");
    assertQueryShape(await c.query({ query: `stray header ${t}`, tier: "small" }, { token: stray }), "stray");
    const up = findStubRequests(stub, t)[0];
    assert.equal(up.headers.authorization, `Bearer ${MISTRAL_KEY}`);
  });

  it("the Mistral key never appears in responses or logs", () => {
    assertNoSecrets(c.seen, [MISTRAL_KEY], "responses");
    assertNoSecrets([gw.stdout(), gw.stderr()], [MISTRAL_KEY], "gateway stdout/stderr");
  });
});
