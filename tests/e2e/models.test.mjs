// GET /v1/models/{id} as in the OpenAI API: the same model objects GET /v1/models lists,
// 404 with the OpenAI error body (code model_not_found) for an id the gateway does not serve,
// ids with `/` or `:` percent-encoded, and the same authentication as the other /v1 routes.

import { describe, it, before, after } from "node:test";
import assert from "node:assert/strict";
import { startGateway } from "./harness.mjs";
import { startMistralStub } from "./mistral-stub.mjs";
import { secret } from "./helpers.mjs";
import { assertOpenAiError } from "./chat-helpers.mjs";

const MISTRAL_KEY = secret("mistral");
const CLIENT_KEY = secret("client");
const LARGE_MODEL = "mistral-large-latest";

/** A fetch response as the assertion helpers take it: status, headers, text, json. */
async function read(res) {
  const text = await res.text();
  let json = null;
  try {
    json = JSON.parse(text);
  } catch {
    /* the assertion reports the body */
  }
  return { status: res.status, headers: res.headers, text, json };
}

describe("GET /v1/models/{id}", () => {
  let stub, gw;
  const auth = { authorization: `Bearer ${CLIENT_KEY}` };
  before(async () => {
    stub = await startMistralStub({ apiKey: MISTRAL_KEY });
    gw = await startGateway({
      vars: { MISTRAL_API_KEY: MISTRAL_KEY, MISTRAL_BASE_URL: stub.url, LLM_MUX_API_KEYS: CLIENT_KEY },
    });
  });
  after(async () => {
    await gw?.stop();
    await stub?.close();
  });

  it("returns each model GET /v1/models lists, as listed", async () => {
    const listed = await (await fetch(`${gw.url}/v1/models`, { headers: auth })).json();
    assert.ok(listed.data.length >= 3, JSON.stringify(listed));
    for (const model of listed.data) {
      const res = await fetch(`${gw.url}/v1/models/${encodeURIComponent(model.id)}`, { headers: auth });
      assert.equal(res.status, 200, `${model.id}: ${await res.clone().text()}`);
      assert.match(res.headers.get("content-type"), /application\/json/);
      const body = await res.json();
      assert.deepEqual(body, model);
      assert.equal(body.object, "model");
      assert.equal(typeof body.created, "number");
      assert.equal(typeof body.owned_by, "string");
    }
  });

  it("an unknown id is 404 with code model_not_found", async () => {
    const res = await fetch(`${gw.url}/v1/models/gpt-4o`, { headers: auth });
    const err = assertOpenAiError(await read(res), 404, "unknown model");
    assert.equal(err.code, "model_not_found");
    assert.equal(err.param, "model");
    assert.match(err.message, /gpt-4o/);
    // Matched exactly: the configured model id with a different case is unknown too.
    const upper = await fetch(`${gw.url}/v1/models/${LARGE_MODEL.toUpperCase()}`, { headers: auth });
    assert.equal(upper.status, 404);
  });

  it("a percent-encoded id with / and : is decoded before lookup (and still unknown here)", async () => {
    const res = await fetch(`${gw.url}/v1/models/${encodeURIComponent("ft:org/model")}`, { headers: auth });
    const err = assertOpenAiError(await read(res), 404, "encoded id");
    assert.match(err.message, /ft:org\/model/);
  });

  it("requires the API key like every /v1 route, and only GET/HEAD", async () => {
    const noKey = await fetch(`${gw.url}/v1/models/auto`);
    const err = assertOpenAiError(await read(noKey), 401, "no key");
    assert.equal(err.code, "invalid_api_key");
    const head = await fetch(`${gw.url}/v1/models/auto`, { method: "HEAD", headers: auth });
    assert.equal(head.status, 200);
    const post = await fetch(`${gw.url}/v1/models/auto`, { method: "POST", headers: auth });
    assert.equal(post.status, 405);
    assert.match(post.headers.get("allow"), /GET/);
  });
});
