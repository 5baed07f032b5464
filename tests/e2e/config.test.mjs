// Configuration errors: a missing MISTRAL_API_KEY gives 503 with instructions; invalid values
// are refused with a 500 whose message names the variable.

import { describe, it, before, after } from "node:test";
import assert from "node:assert/strict";
import { startGateway } from "./harness.mjs";
import { startMistralStub } from "./mistral-stub.mjs";
import { client, secret, assertError, assertNoSecrets } from "./helpers.mjs";

const MISTRAL_KEY = secret("mistral");

describe("MISTRAL_API_KEY not configured", () => {
  let stub, gw, c;
  before(async () => {
    stub = await startMistralStub();
    gw = await startGateway({ vars: { MISTRAL_BASE_URL: stub.url } });
    c = client(gw);
  });
  after(async () => {
    await gw?.stop();
    await stub?.close();
  });

  it("POST /query answers 503 saying how to set MISTRAL_API_KEY, and calls nothing", async () => {
    const res = await c.query({ query: "hello", tier: "small" });
    const err = assertError(res, 503, "no key");
    assert.match(err.message, /MISTRAL_API_KEY/, "message names MISTRAL_API_KEY");
    assert.match(err.message, /secret|\.dev\.vars|set/i, "message says how to set it");
    assert.equal(stub.chatRequests().length, 0, "nothing sent upstream");
  });

  it("GET /metrics still works", async () => {
    const res = await c.metrics();
    assert.equal(res.status, 200, res.text);
    assert.equal(res.json.total_requests, 0);
  });

  it("an empty MISTRAL_API_KEY counts as not configured", async () => {
    const gw2 = await startGateway({ vars: { MISTRAL_API_KEY: "", MISTRAL_BASE_URL: stub.url } });
    try {
      const err = assertError(await client(gw2).query({ query: "hello", tier: "small" }), 503, "empty key");
      assert.match(err.message, /MISTRAL_API_KEY/);
    } finally {
      await gw2.stop();
    }
  });
});

const INVALID = [
  ["MAX_QUERY_BYTES", "abc"],
  ["MAX_QUERY_BYTES", "-1"],
  ["UPSTREAM_TIMEOUT_MS", "abc"],
  ["ROUTING_THRESHOLD", "abc"],
  ["ROUTING_THRESHOLD", "1.5"],
  ["MISTRAL_BASE_URL", "not a url"],
];

describe("invalid configuration values are refused, naming the variable", () => {
  let stub;
  before(async () => {
    stub = await startMistralStub();
  });
  after(async () => {
    await stub?.close();
  });

  for (const [name, value] of INVALID) {
    it(`${name}=${JSON.stringify(value)} -> 500 naming ${name}`, async () => {
      const vars = { MISTRAL_API_KEY: MISTRAL_KEY, MISTRAL_BASE_URL: stub.url, [name]: value };
      const gw = await startGateway({ vars });
      try {
        const c = client(gw);
        const res = await c.query({ query: "hello", tier: "small" });
        const err = assertError(res, 500, `${name}=${value}`);
        assert.ok(err.message.includes(name), `message names ${name}: ${err.message}`);
        assertNoSecrets(c.seen, [MISTRAL_KEY], "responses");
        assert.equal(stub.chatRequests().length, 0, "nothing sent upstream");
      } finally {
        await gw.stop();
      }
    });
  }
});
