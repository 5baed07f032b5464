// Backends other than Mistral, configured through TIERS: an OpenAI-compatible server (with a
// key, and a keyless local one as Ollama/vLLM run) and Anthropic's Messages API, each behind
// its own stand-in. Request and response translation, streaming, tool calls, usage and cost,
// upstream errors as 502 in OpenAI's format.

import { describe, it, before, after } from "node:test";
import assert from "node:assert/strict";
import { startGateway } from "./harness.mjs";
import { startOpenAiStub } from "./openai-stub.mjs";
import { startAnthropicStub } from "./anthropic-stub.mjs";
import { secret, tag, near } from "./helpers.mjs";
import { chat, chatStream, chunksOf, assembleChunks, assertOpenAiError, assertCompletion, routingHeaders, metrics, metricsUntil, user } from "./chat-helpers.mjs";

const OPENAI_KEY = secret("openai");
const ANTHROPIC_KEY = secret("anthropic");
const PRICES = {
  local: { input: 0.01, output: 0.02 },
  gpt: { input: 0.15, output: 0.6 },
  claude: { input: 1, output: 5 },
};
const cost = (tier, i, o) => (i * PRICES[tier].input + o * PRICES[tier].output) / 1e6;

const WEATHER_TOOL = {
  type: "function",
  function: { name: "get_weather", description: "Current weather", parameters: { type: "object", properties: { city: { type: "string" } }, required: ["city"] } },
};

describe("OpenAI-compatible and Anthropic backends via TIERS", () => {
  let openai, local, anthropic, gw;
  before(async () => {
    openai = await startOpenAiStub({ apiKey: OPENAI_KEY });
    local = await startOpenAiStub({ apiKey: null });
    anthropic = await startAnthropicStub({ apiKey: ANTHROPIC_KEY });
    const tiers = [
      { name: "local", backend: "openai", base_url: `${local.url}/v1`, model: "llama3.2", api_key_var: "", prices: PRICES.local },
      { name: "gpt", backend: "openai", base_url: openai.url, model: "gpt-4o-mini", min_score: 0.2, prices: PRICES.gpt },
      { name: "claude", backend: "anthropic", base_url: anthropic.url, model: "claude-haiku-4-5", min_score: 0.5, prices: PRICES.claude },
    ];
    // min_score values are on the heuristic scorer's scale (ROUTER=heuristic); the learned
    // router's scores sit on another scale.
    gw = await startGateway({ vars: { TIERS: JSON.stringify(tiers), ROUTER: "heuristic", OPENAI_API_KEY: OPENAI_KEY, ANTHROPIC_API_KEY: ANTHROPIC_KEY } });
  });
  after(async () => {
    await gw?.stop();
    await Promise.all([openai?.close(), local?.close(), anthropic?.close()]);
  });

  const find = (reqs, t) => {
    const hits = reqs.filter((r) => r.rawBody.includes(t));
    assert.equal(hits.length, 1, `one upstream call carrying ${t}`);
    return hits[0];
  };

  describe("openai backend", () => {
    it("non-streaming: bearer key, OpenAI fields kept, Mistral-only fields mapped, answer passed through", async () => {
      const t = tag();
      const res = await chat(gw, {
        model: "gpt",
        messages: [{ role: "developer", content: "Be brief." }, user(`Hello there ${t}`)],
        random_seed: 11,
        safe_prompt: true,
        max_completion_tokens: 40,
        temperature: 1.7,
        logprobs: false,
        user: "u-42",
        response_format: { type: "text" },
      });
      const b = assertCompletion(res, "openai");
      const up = find(openai.chatRequests(), t);
      assert.equal(up.response.status, 200, `stand-in accepted: ${JSON.stringify(up.response.body)}`);
      assert.equal(up.path, "/v1/chat/completions");
      assert.equal(up.headers.authorization, `Bearer ${OPENAI_KEY}`);
      assert.equal(up.body.model, "gpt-4o-mini");
      assert.equal(up.body.seed, 11, "random_seed -> seed");
      assert.ok(!("random_seed" in up.body) && !("safe_prompt" in up.body), "Mistral-only fields not sent");
      assert.equal(up.body.max_completion_tokens, 40);
      assert.equal(up.body.temperature, 1.7, "OpenAI's temperature range kept");
      assert.equal(up.body.user, "u-42");
      assert.equal(up.body.messages[0].role, "developer", "developer role kept for OpenAI");
      assert.ok(!("stream_options" in up.body), "no stream_options on a non-streaming call");
      // The upstream's chat.completion, as it was.
      const sent = up.response.body;
      assert.equal(b.id, sent.id);
      assert.equal(b.model, "gpt-4o-mini-2024-07-18");
      assert.equal(b.system_fingerprint, sent.system_fingerprint, "upstream fields kept");
      assert.equal(b.choices[0].message.content, sent.choices[0].message.content);
      assert.deepEqual(b.usage, sent.usage);
      const h = routingHeaders(res, { cost: true });
      assert.deepEqual([h.tier, h.model], ["gpt", "gpt-4o-mini"]);
      near(h.cost, cost("gpt", sent.usage.prompt_tokens, sent.usage.completion_tokens), 1e-8, "cost header at the tier's prices");
    });

    it("a keyless local server gets no Authorization header; base_url may end in /v1", async () => {
      const t = tag();
      const res = await chat(gw, { model: "local", messages: [user(`hi local ${t}`)] });
      assertCompletion(res);
      const up = find(local.chatRequests(), t);
      assert.equal(up.path, "/v1/chat/completions");
      assert.equal(up.headers.authorization, undefined);
      assert.equal(up.body.model, "llama3.2");
      assert.equal(routingHeaders(res).tier, "local");
    });

    it("streaming: include_usage forced upstream, usage chunk relayed to a client that asked, recorded in /metrics", async () => {
      const t = tag();
      const before = await metrics(gw);
      const s = await chatStream(gw, { model: "gpt", stream_options: { include_usage: true }, messages: [user(`stream please ${t} [[stub:chunk-delay=20]] [[stub:tokens=300,70]]`)] });
      assert.equal(s.status, 200);
      routingHeaders(s, { cost: false });
      const up = find(openai.chatRequests(), t);
      assert.equal(up.body.stream, true);
      assert.deepEqual(up.body.stream_options, { include_usage: true }, "gateway asks for usage");
      const chunks = chunksOf(s);
      const a = assembleChunks(chunks);
      assert.equal(a.content, up.response.expected.answer);
      assert.equal(a.finish, "stop");
      assert.equal(a.usage.prompt_tokens, 300);
      assert.deepEqual(chunks.at(-1).choices, [], "OpenAI's usage-only chunk relayed");
      const m = await metricsUntil(gw, (x) => x.total_requests === before.total_requests + 1, { what: "stream recorded" });
      assert.equal(m.tokens_in - before.tokens_in, 300);
      assert.equal(m.tokens_out - before.tokens_out, 70);
      near(m.total_cost_usd - before.total_cost_usd, cost("gpt", 300, 70), 1e-12, "stream cost");
      assert.equal(m.requests_with_estimated_tokens, before.requests_with_estimated_tokens);
    });

    it("a client that did not ask for usage gets no usage-only chunk, yet the usage is recorded", async () => {
      for (const options of [undefined, { include_usage: false }]) {
        const t = tag();
        const before = await metrics(gw);
        const s = await chatStream(gw, { model: "gpt", messages: [user(`opts ${t} [[stub:tokens=40,9]]`)], ...(options ? { stream_options: options } : {}) });
        assert.equal(s.status, 200);
        const up = find(openai.chatRequests(), t);
        assert.equal(up.body.stream_options?.include_usage, true, "usage still requested upstream");
        const chunks = chunksOf(s);
        assert.ok(chunks.every((c) => c.choices.length > 0), `no chunk without choices: ${s.raw.slice(-400)}`);
        assert.equal(assembleChunks(chunks).finish, "stop");
        const m = await metricsUntil(gw, (x) => x.total_requests === before.total_requests + 1, { what: "stream recorded" });
        assert.equal(m.tokens_in - before.tokens_in, 40);
        assert.equal(m.tokens_out - before.tokens_out, 9);
        assert.equal(m.requests_with_estimated_tokens, before.requests_with_estimated_tokens, "real usage, not estimated");
      }
    });

    it("tool calls: OpenAI ids pass through unchanged both ways, streamed and not", async () => {
      const t = tag();
      const q = user(`weather in Lima? ${t} [[stub:tool-call=get_weather]] [[stub:tool-args={"city":"Lima"}]]`);
      const res = await chat(gw, { model: "gpt", messages: [q], tools: [WEATHER_TOOL], tool_choice: "required" });
      const b = assertCompletion(res);
      assert.equal(b.choices[0].finish_reason, "tool_calls");
      const [call] = b.choices[0].message.tool_calls;
      assert.match(call.id, /^call_[A-Za-z0-9]{24}$/);
      assert.equal(find(openai.chatRequests(), t).body.tool_choice, "required", "OpenAI's tool_choice kept");
      const res2 = await chat(gw, { model: "gpt", tools: [WEATHER_TOOL], messages: [q, { role: "assistant", content: null, tool_calls: [call] }, { role: "tool", tool_call_id: call.id, content: "22C" }] });
      const b2 = assertCompletion(res2);
      assert.match(b2.choices[0].message.content, /with tool result: 22C/);
      const second = openai.chatRequests().filter((r) => r.rawBody.includes(t)).at(-1);
      assert.equal(second.body.messages[1].tool_calls[0].id, call.id, "id not rewritten for OpenAI");
      assert.equal(second.body.messages[2].tool_call_id, call.id);
      const s = await chatStream(gw, { model: "gpt", tools: [WEATHER_TOOL], messages: [q] });
      const a = assembleChunks(chunksOf(s));
      assert.equal(a.finish, "tool_calls");
      assert.equal(a.toolCalls[0].function.name, "get_weather");
      assert.deepEqual(JSON.parse(a.toolCalls[0].function.arguments), { city: "Lima" });
    });

    it("upstream errors in OpenAI's format (400 -> 400, 401 and 500 -> 502); a cut stream is incomplete", async () => {
      for (const [status, clientStatus, code] of [[400, 400, "upstream_400"], [401, 502, "upstream_auth_failed"], [500, 502, "upstream_error"]]) {
        const res = await chat(gw, { model: "gpt", messages: [user(`fail [[stub:status=${status}]]`)] });
        const e = assertOpenAiError(res, clientStatus, `openai ${status}`);
        assert.equal(e.code, code);
        assert.ok(e.message.length > 10, e.message);
        if (status === 401) assert.match(e.message, /gateway's own API key/);
        assert.ok(!res.text.includes(OPENAI_KEY));
      }
      const before = await metrics(gw);
      const s = await chatStream(gw, { model: "gpt", messages: [user("cut [[stub:stream-abort]]")] });
      assert.equal(s.status, 200);
      const m = await metricsUntil(gw, (x) => x.total_requests === before.total_requests + 1, { what: "cut stream recorded" });
      assert.equal((m.incomplete_requests.upstream_cut ?? 0) - (before.incomplete_requests.upstream_cut ?? 0), 1);
      assert.ok(m.total_cost_usd > before.total_cost_usd);
    });
  });

  describe("anthropic backend", () => {
    it("non-streaming: Messages API request (system, max_tokens, stop_sequences, headers), chat.completion back", async () => {
      const t = tag();
      const res = await chat(gw, {
        model: "claude",
        messages: [{ role: "system", content: "You are terse." }, { role: "developer", content: "Use metric units." }, user(`Hello Claude ${t}`)],
        temperature: 1.5,
        stop: "END",
        seed: 5,
        n: 1,
        response_format: { type: "text" },
        presence_penalty: 0.5,
        stream_options: { include_usage: true },
      });
      const b = assertCompletion(res, "anthropic");
      const up = find(anthropic.messageRequests(), t);
      assert.equal(up.response.status, 200, `stand-in accepted the translated body: ${JSON.stringify(up.response.body)}`);
      assert.equal(up.headers["x-api-key"], ANTHROPIC_KEY);
      assert.equal(up.headers["anthropic-version"], "2023-06-01");
      assert.equal(up.headers.authorization, undefined, "no bearer header for Anthropic");
      assert.equal(up.body.model, "claude-haiku-4-5");
      assert.equal(up.body.system, "You are terse.\n\nUse metric units.");
      assert.deepEqual(up.body.messages, [{ role: "user", content: [{ type: "text", text: `Hello Claude ${t}` }] }]);
      assert.equal(up.body.max_tokens, 4096, "default max_tokens");
      assert.deepEqual(up.body.stop_sequences, ["END"]);
      assert.equal(up.body.temperature, 1, "clamped to Anthropic's range");
      const sent = up.response.body;
      assert.equal(b.choices[0].message.content, sent.content[0].text);
      assert.equal(b.choices[0].finish_reason, "stop");
      assert.equal(b.model, "claude-haiku-4-5-20251001");
      assert.deepEqual(b.usage, { prompt_tokens: sent.usage.input_tokens, completion_tokens: sent.usage.output_tokens, total_tokens: sent.usage.input_tokens + sent.usage.output_tokens });
      const h = routingHeaders(res, { cost: true });
      assert.deepEqual([h.tier, h.model], ["claude", "claude-haiku-4-5"]);
      near(h.cost, cost("claude", sent.usage.input_tokens, sent.usage.output_tokens), 1e-8, "cost header");
    });

    it("max_completion_tokens / max_tokens become max_tokens", async () => {
      for (const [field, v] of [["max_completion_tokens", 77], ["max_tokens", 33]]) {
        const t = tag();
        assertCompletion(await chat(gw, { model: "claude", messages: [user(`limit ${t}`)], [field]: v }));
        assert.equal(find(anthropic.messageRequests(), t).body.max_tokens, v, field);
      }
    });

    it("streaming: Anthropic events become chat.completion.chunks and [DONE]; usage recorded", async () => {
      const t = tag();
      const before = await metrics(gw);
      const s = await chatStream(gw, { model: "claude", messages: [user(`stream Claude ${t} [[stub:chunk-delay=20]]`)] });
      assert.equal(s.status, 200);
      assert.ok(!/^event:/m.test(s.raw), "no Anthropic event names leak to the client");
      routingHeaders(s, { cost: false });
      const up = find(anthropic.messageRequests(), t);
      assert.equal(up.body.stream, true);
      const chunks = chunksOf(s);
      const a = assembleChunks(chunks);
      const exp = up.response.expected;
      assert.equal(a.content, exp.answer);
      assert.equal(a.finish, "stop");
      assert.equal(chunks[0].choices[0].delta.role, "assistant");
      assert.equal(a.model, "claude-haiku-4-5-20251001");
      assert.deepEqual(a.usage, { prompt_tokens: exp.usage.input_tokens, completion_tokens: exp.usage.output_tokens, total_tokens: exp.usage.input_tokens + exp.usage.output_tokens });
      const m = await metricsUntil(gw, (x) => x.total_requests === before.total_requests + 1, { what: "stream recorded" });
      assert.equal(m.tokens_in - before.tokens_in, exp.usage.input_tokens);
      assert.equal(m.tokens_out - before.tokens_out, exp.usage.output_tokens);
      near(m.total_cost_usd - before.total_cost_usd, cost("claude", exp.usage.input_tokens, exp.usage.output_tokens), 1e-12, "stream cost");
    });

    it("tool calls: tool_use <-> tool_calls, tool results as tool_result blocks, streamed and not", async () => {
      const t = tag();
      const q = user(`weather in Oslo? ${t} [[stub:tool-call=get_weather]] [[stub:tool-args={"city":"Oslo"}]]`);
      const res = await chat(gw, { model: "claude", messages: [q], tools: [WEATHER_TOOL], tool_choice: { type: "function", function: { name: "get_weather" } } });
      const b = assertCompletion(res);
      const first = find(anthropic.messageRequests(), t);
      assert.deepEqual(first.body.tools, [{ name: "get_weather", description: "Current weather", input_schema: WEATHER_TOOL.function.parameters }]);
      assert.deepEqual(first.body.tool_choice, { type: "tool", name: "get_weather" });
      assert.equal(b.choices[0].finish_reason, "tool_calls");
      assert.equal(b.choices[0].message.content, "Let me check.");
      const [call] = b.choices[0].message.tool_calls;
      assert.match(call.id, /^toolu_/);
      assert.equal(call.type, "function");
      assert.equal(call.function.name, "get_weather");
      assert.deepEqual(JSON.parse(call.function.arguments), { city: "Oslo" });
      // Round trip: the stand-in checks that each tool_result answers a tool_use just before it.
      const res2 = await chat(gw, {
        model: "claude",
        tools: [WEATHER_TOOL],
        messages: [q, b.choices[0].message, { role: "tool", tool_call_id: call.id, content: "-3C, snow" }],
      });
      const b2 = assertCompletion(res2, "answer after the tool result");
      assert.match(b2.choices[0].message.content, /with tool result: -3C, snow/);
      const second = anthropic.messageRequests().filter((r) => r.rawBody.includes(t)).at(-1);
      assert.deepEqual(second.body.messages.map((m) => m.role), ["user", "assistant", "user"]);
      assert.deepEqual(second.body.messages[1].content.find((c) => c.type === "tool_use"), { type: "tool_use", id: call.id, name: "get_weather", input: { city: "Oslo" } });
      assert.deepEqual(second.body.messages[2].content, [{ type: "tool_result", tool_use_id: call.id, content: "-3C, snow" }]);
      // Streamed: content_block_start(tool_use) + input_json_delta -> tool_calls deltas.
      const s = await chatStream(gw, { model: "claude", tools: [WEATHER_TOOL], messages: [q] });
      const a = assembleChunks(chunksOf(s));
      assert.equal(a.finish, "tool_calls");
      assert.equal(a.content, "Let me check.");
      assert.equal(a.toolCalls.length, 1);
      assert.match(a.toolCalls[0].id, /^toolu_/);
      assert.deepEqual(JSON.parse(a.toolCalls[0].function.arguments), { city: "Oslo" });
    });

    // A 529 or 429 falls back to the tier below (gpt, failing the same way here): the client
    // gets the last tier's error; a 400 is Anthropic's own (no fallback).
    it("upstream errors in OpenAI's format with Anthropic's message (400 -> 400, 529 -> 502, 429 -> 429)", async () => {
      for (const [status, clientStatus, code, needle] of [[400, 400, "upstream_400", /Invalid request/], [529, 502, "upstream_error", /HTTP 529/], [429, 429, "rate_limit_exceeded", /rate limit/i]]) {
        const res = await chat(gw, { model: "claude", messages: [user(`fail [[stub:status=${status}]] [[stub:retry-after=0]]`)] });
        const e = assertOpenAiError(res, clientStatus, `anthropic ${status}`);
        assert.equal(e.code, code);
        assert.match(e.message, needle);
        assert.ok(!res.text.includes(ANTHROPIC_KEY));
        if (status === 429) assert.ok(res.headers.get("retry-after"), "Retry-After on a 429");
      }
      const s = await chatStream(gw, { model: "claude", messages: [user("fail [[stub:status=400]]")] });
      assertOpenAiError(s, 400, "anthropic streaming error before the stream");
    });

    it("a stream cut by the upstream or broken by an error event is recorded as incomplete", async () => {
      for (const marker of ["stream-cut", "stream-abort", "stream-error"]) {
        const before = await metrics(gw);
        const s = await chatStream(gw, { model: "claude", messages: [user(`cut [[stub:${marker}]]`)] });
        assert.equal(s.status, 200);
        assert.ok(!s.events.some((e) => e.data === "[DONE]"), `${marker}: no [DONE] for an unfinished stream`);
        // An upstream error event is relayed as an OpenAI error chunk (checked below); the
        // content chunks before it are what the client got.
        const contentChunks = chunksOf(s, { done: false }).filter((c) => !c.error);
        assert.equal(assembleChunks(contentChunks).content, "Stub answer from", `${marker}: partial content relayed`);
        const m = await metricsUntil(gw, (x) => x.total_requests === before.total_requests + 1, { what: `${marker} recorded` });
        const incomplete = (x) => Object.values(x.incomplete_requests).reduce((a, b) => a + b, 0);
        assert.equal(incomplete(m) - incomplete(before), 1, `${marker}: incomplete`);
        assert.equal(m.requests_with_estimated_tokens - before.requests_with_estimated_tokens, 1, `${marker}: estimated`);
        assert.ok(m.total_cost_usd > before.total_cost_usd, `${marker}: not free`);
      }
    });

    // Anthropic's mid-stream `event: error` is relayed the way OpenAI-compatible streams carry
    // failures, `data: {"error": {...}}`, which the openai SDK raises as APIError.
    it("an Anthropic error event mid-stream reaches the client as an error chunk", async () => {
      const s = await chatStream(gw, { model: "claude", messages: [user("overload me [[stub:stream-error]]")] });
      const errors = s.events.filter((e) => e.data !== "[DONE]").map((e) => JSON.parse(e.data)).filter((d) => d.error);
      assert.equal(errors.length, 1, `an error chunk relayed: ${s.raw}`);
      assert.match(errors[0].error.message, /Overloaded/);
    });
  });

  describe("routing across backends", () => {
    it("auto picks local / gpt / claude by score; concrete model ids pass through", async () => {
      const cases = [
        ["auto", "What is the capital of France?", "local"],
        ["auto", "What are the main differences between TCP and UDP?", "gpt"],
        ["auto", "Compare and contrast Keynesian and Austrian economics, analyze inflation, and prove step by step which dominates in a liquidity trap.", "claude"],
        ["claude-haiku-4-5", "hi", "claude"],
        ["gpt-4o-mini", "Prove the Riemann hypothesis step by step.", "gpt"],
        ["llama3.2", "hi", "local"],
      ];
      for (const [model, content, tier] of cases) {
        const res = await chat(gw, { model, messages: [user(content)] });
        assertCompletion(res, `${model}: ${content}`);
        const h = routingHeaders(res, { cost: true });
        assert.equal(h.tier, tier, `${model} "${content.slice(0, 30)}" (score ${h.score})`);
      }
      const m = await metrics(gw);
      for (const tier of ["local", "gpt", "claude"]) assert.ok(m.tier_breakdown[tier] >= 2, `tier_breakdown.${tier}: ${JSON.stringify(m.tier_breakdown)}`);
      assert.ok(!JSON.stringify(m).includes(OPENAI_KEY) && !JSON.stringify(m).includes(ANTHROPIC_KEY));
    });

    it("GET /v1/models lists auto, the tiers and their models with their backends", async () => {
      const body = await (await fetch(`${gw.url}/v1/models`)).json();
      assert.deepEqual(body.data.map((m) => m.id), ["auto", "local", "gpt", "claude", "llama3.2", "gpt-4o-mini", "claude-haiku-4-5"]);
      const owner = Object.fromEntries(body.data.map((m) => [m.id, m.owned_by]));
      assert.equal(owner["gpt-4o-mini"], "openai");
      assert.equal(owner["claude-haiku-4-5"], "anthropic");
    });

    it("unknown model lists what is available", async () => {
      const res = await chat(gw, { model: "mistral-small-latest", messages: [user("hi")] });
      const e = assertOpenAiError(res, 400, "model not configured here");
      assert.equal(e.code, "model_not_found");
      assert.match(e.message, /claude-haiku-4-5/);
    });
  });
});
