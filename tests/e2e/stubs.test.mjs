// Unit tests of the stand-ins added for issue #3 (no worker needed): the Mistral stand-in's
// streaming and tool-call markers, and the OpenAI-compatible and Anthropic stand-ins.

import { describe, it, before, after } from "node:test";
import assert from "node:assert/strict";
import { startMistralStub, MISTRAL_TOOL_CALL_ID } from "./mistral-stub.mjs";
import { startOpenAiStub } from "./openai-stub.mjs";
import { startAnthropicStub } from "./anthropic-stub.mjs";
import { readSse } from "./chat-helpers.mjs";

async function post(url, body, headers = {}) {
  const res = await fetch(url, { method: "POST", headers: { "content-type": "application/json", ...headers }, body: JSON.stringify(body), signal: AbortSignal.timeout(10_000) });
  if (res.headers.get("content-type")?.startsWith("text/event-stream")) return { status: res.status, sse: await readSse(res) };
  const text = await res.text();
  return { status: res.status, text, json: JSON.parse(text) };
}
const dataOf = (sse) => sse.events.map((e) => e.data).filter((d) => d !== "[DONE]").map((d) => JSON.parse(d));

describe("mistral stub: issue #3 markers", () => {
  let stub;
  const auth = { authorization: "Bearer k" };
  before(async () => {
    stub = await startMistralStub();
  });
  after(() => stub.close());
  const chat = (body) => post(`${stub.url}/v1/chat/completions`, { model: "mistral-small-latest", ...body }, auth);

  it("[[stub:chunk-delay=MS]] spaces the chunks and records when each was written", async () => {
    const t0 = Date.now();
    const r = await chat({ stream: true, messages: [{ role: "user", content: "slow [[stub:chunk-delay=100]] [[stub:answer=abcdefghijklmnopqrstuvwxyz0123456789]]" }] });
    const chunks = dataOf(r.sse);
    assert.equal(chunks.map((c) => c.choices[0].delta.content).join(""), "abcdefghijklmnopqrstuvwxyz0123456789");
    const { writes, endedAt } = stub.lastRequest().response;
    assert.equal(writes.length, 4, "role chunk + 3 content chunks");
    assert.ok(writes[3] - writes[0] >= 280, `spread ${writes[3] - writes[0]} ms`);
    assert.ok(endedAt >= writes[3] && endedAt - t0 >= 290);
    assert.ok(r.sse.events[0].at < writes[3], "the client got the first chunk before the last was written");
  });

  it("[[stub:tool-call=NAME]] answers a tool call with a 9-character id; a tool result gets a text answer", async () => {
    const q = { role: "user", content: 'weather [[stub:tool-call=get_weather]] [[stub:tool-args={"city":"Paris"}]]' };
    const r = await chat({ messages: [q] });
    const choice = r.json.choices[0];
    assert.equal(choice.finish_reason, "tool_calls");
    assert.equal(choice.message.content, "");
    const [call] = choice.message.tool_calls;
    assert.match(call.id, MISTRAL_TOOL_CALL_ID);
    assert.deepEqual(call.function, { name: "get_weather", arguments: '{"city":"Paris"}' });
    const r2 = await chat({ messages: [q, { role: "assistant", content: "", tool_calls: [call] }, { role: "tool", tool_call_id: call.id, content: "18C" }] });
    assert.equal(r2.json.choices[0].finish_reason, "stop");
    assert.equal(r2.json.choices[0].message.content, "Stub answer from mistral-small-2603 with tool result: 18C");
    const s = await chat({ stream: true, messages: [q] });
    const chunks = dataOf(s.sse);
    const last = chunks.at(-1);
    assert.equal(last.choices[0].finish_reason, "tool_calls");
    assert.match(last.choices[0].delta.tool_calls[0].id, MISTRAL_TOOL_CALL_ID);
    assert.ok(last.usage.completion_tokens > 0);
  });

  it("refuses tool-call ids that are not 9 characters of [a-zA-Z0-9] (422)", async () => {
    for (const id of ["call_123", "abcdefgh", "abcdefghij", "abc-efghi"]) {
      const r = await chat({ messages: [{ role: "user", content: "x" }, { role: "assistant", content: "", tool_calls: [{ id, type: "function", function: { name: "f", arguments: "{}" } }] }] });
      assert.equal(r.status, 422, id);
      assert.deepEqual(r.json.detail[0].loc, ["body", "messages", 1, "tool_calls", 0, "id"]);
    }
    const r = await chat({ messages: [{ role: "user", content: "x" }, { role: "tool", tool_call_id: "call_abc", content: "y" }] });
    assert.equal(r.status, 422);
    assert.deepEqual(r.json.detail[0].loc, ["body", "messages", 1, "tool_call_id"]);
  });

  it("[[stub:stream-abort]] kills the connection mid-body", async () => {
    const res = await fetch(`${stub.url}/v1/chat/completions`, { method: "POST", headers: { "content-type": "application/json", ...auth }, body: JSON.stringify({ model: "m", stream: true, messages: [{ role: "user", content: "x [[stub:stream-abort]]" }] }) });
    const sse = await readSse(res);
    assert.ok(sse.error, "the body fails instead of ending");
    assert.equal(sse.events.length, 2);
  });
});

describe("openai stub", () => {
  let keyed, keyless;
  before(async () => {
    keyed = await startOpenAiStub({ apiKey: "sk-o" });
    keyless = await startOpenAiStub({ apiKey: null });
  });
  after(async () => {
    await keyed.close();
    await keyless.close();
  });
  const url = (s) => `${s.url}/v1/chat/completions`;
  const msg = [{ role: "user", content: "hello" }];

  it("checks the bearer key, or needs none", async () => {
    assert.equal((await post(url(keyed), { model: "gpt-4o-mini", messages: msg })).status, 401);
    assert.equal((await post(url(keyed), { model: "gpt-4o-mini", messages: msg }, { authorization: "Bearer nope" })).json.error.code, "invalid_api_key");
    const ok = await post(url(keyed), { model: "gpt-4o-mini", messages: msg }, { authorization: "Bearer sk-o" });
    assert.equal(ok.status, 200);
    assert.equal(ok.json.model, "gpt-4o-mini-2024-07-18");
    assert.equal(ok.json.choices[0].message.content, "Stub answer from gpt-4o-mini-2024-07-18 to: hello");
    assert.equal((await post(url(keyless), { model: "llama3.2", messages: msg })).status, 200);
  });

  it("validates like OpenAI: unknown fields and stream_options without stream are 400", async () => {
    const r = await post(url(keyless), { model: "m", messages: msg, random_seed: 1 });
    assert.equal(r.status, 400);
    assert.deepEqual(Object.keys(r.json.error).sort(), ["code", "message", "param", "type"]);
    assert.match(r.json.error.message, /random_seed/);
    assert.equal((await post(url(keyless), { model: "m", messages: msg, stream_options: { include_usage: true } })).status, 400);
    assert.equal((await post(url(keyless), { model: "m", messages: [{ role: "tool", content: "x" }] })).status, 400);
  });

  it("streams chunks; usage only with include_usage, in a chunk with no choices", async () => {
    const without = dataOf((await post(url(keyless), { model: "m", stream: true, messages: msg })).sse);
    assert.ok(without.every((c) => !("usage" in c)));
    assert.equal(without.at(-1).choices[0].finish_reason, "stop");
    const withUsage = dataOf((await post(url(keyless), { model: "m", stream: true, stream_options: { include_usage: true }, messages: msg })).sse);
    assert.deepEqual(withUsage.at(-1).choices, []);
    assert.equal(withUsage.at(-1).usage.prompt_tokens, 2);
    assert.ok(withUsage.slice(0, -1).every((c) => c.usage === null));
  });

  it("tool calls: call_ ids, arguments streamed in pieces", async () => {
    const q = [{ role: "user", content: 'x [[stub:tool-call=f]] [[stub:tool-args={"a":"long value"}]]' }];
    const r = await post(url(keyless), { model: "m", messages: q });
    assert.match(r.json.choices[0].message.tool_calls[0].id, /^call_/);
    assert.equal(r.json.choices[0].message.content, null);
    const chunks = dataOf((await post(url(keyless), { model: "m", stream: true, messages: q })).sse);
    const args = chunks.flatMap((c) => c.choices[0]?.delta?.tool_calls ?? []).map((t) => t.function.arguments).join("");
    assert.equal(args, '{"a":"long value"}');
  });
});

describe("anthropic stub", () => {
  let stub;
  const h = { "x-api-key": "sk-a", "anthropic-version": "2023-06-01" };
  before(async () => {
    stub = await startAnthropicStub({ apiKey: "sk-a" });
  });
  after(() => stub.close());
  const msgs = (body, headers = h) => post(`${stub.url}/v1/messages`, { model: "claude-haiku-4-5", max_tokens: 100, ...body }, headers);

  it("checks x-api-key and anthropic-version", async () => {
    assert.equal((await msgs({ messages: [{ role: "user", content: "hi" }] }, { "anthropic-version": "2023-06-01" })).status, 401);
    assert.equal((await msgs({ messages: [{ role: "user", content: "hi" }] }, { "x-api-key": "sk-a" })).status, 400);
    const ok = await msgs({ system: "Be brief.", messages: [{ role: "user", content: "hi" }] });
    assert.equal(ok.status, 200);
    assert.equal(ok.json.type, "message");
    assert.deepEqual(ok.json.content, [{ type: "text", text: "Stub answer from claude-haiku-4-5-20251001 to: hi" }]);
    assert.equal(ok.json.usage.input_tokens, Math.ceil("Be brief.hi".length / 4));
  });

  it("validates like Anthropic: extra fields, system role, missing max_tokens, unmatched tool_result", async () => {
    const bad = async (body) => {
      const r = await msgs(body);
      assert.equal(r.status, 400, JSON.stringify(body));
      assert.equal(r.json.type, "error");
      return r.json.error.message;
    };
    assert.match(await bad({ messages: [{ role: "user", content: "x" }], seed: 1 }), /seed: Extra inputs/);
    assert.match(await bad({ messages: [{ role: "system", content: "x" }] }), /role/);
    assert.match(await bad({ messages: [{ role: "user", content: "x" }], max_tokens: undefined }), /max_tokens/);
    assert.match(await bad({ messages: [{ role: "user", content: [{ type: "tool_result", tool_use_id: "toolu_x", content: "y" }] }] }), /tool_use/);
  });

  it("streams Messages API events in order; tool_use blocks with input_json_delta", async () => {
    const r = await msgs({ stream: true, messages: [{ role: "user", content: 'x [[stub:tool-call=f]] [[stub:tool-args={"a":1}]]' }] });
    const names = r.sse.events.map((e) => e.event);
    assert.equal(names[0], "message_start");
    assert.equal(names.at(-1), "message_stop");
    assert.equal(names.at(-2), "message_delta");
    assert.ok(names.includes("ping"));
    const data = r.sse.events.map((e) => JSON.parse(e.data));
    assert.ok(data.some((d) => d.type === "content_block_start" && d.content_block.type === "tool_use"));
    const json = data.filter((d) => d.delta?.type === "input_json_delta").map((d) => d.delta.partial_json).join("");
    assert.deepEqual(JSON.parse(json), { a: 1 });
    assert.equal(data.at(-2).delta.stop_reason, "tool_use");
  });
});
