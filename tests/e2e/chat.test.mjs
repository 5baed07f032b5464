// POST /v1/chat/completions and GET /v1/models over the default Mistral tiers: the OpenAI
// request format translated to Mistral's (seed, max_completion_tokens, stream_options, roles,
// tool-call ids), routing (auto, tier names, concrete model ids, conversation context),
// routing and cost headers, OpenAI error bodies.

import { describe, it, before, after } from "node:test";
import assert from "node:assert/strict";
import { startGateway } from "./harness.mjs";
import { startMistralStub, MISTRAL_TOOL_CALL_ID } from "./mistral-stub.mjs";
import { SMALL, LARGE, secret, tag, expectedCost, findStubRequests, stubReply, assertCleanUpstreamBody, near } from "./helpers.mjs";
import {
  chat,
  chatStream,
  chunksOf,
  assembleChunks,
  assertOpenAiError,
  assertCompletion,
  routingHeaders,
  metrics,
  metricsUntil,
  user,
} from "./chat-helpers.mjs";

const MISTRAL_KEY = secret("mistral");

const WEATHER_TOOL = {
  type: "function",
  function: {
    name: "get_weather",
    description: "Current weather in a city",
    parameters: { type: "object", properties: { city: { type: "string" } }, required: ["city"] },
  },
};

/** A question the scorer sends to the large tier, longer than 200 characters. */
const COMPLEX =
  "Compare and contrast the economic policies of Keynesian and Austrian schools, analyze their implications for inflation, and prove step by step why one would dominate in a liquidity trap. Derive the equilibrium conditions.";
const SIMPLE = "What is the capital of France?";

describe("POST /v1/chat/completions on Mistral (default tiers)", () => {
  let stub, gw;
  before(async () => {
    stub = await startMistralStub({ apiKey: MISTRAL_KEY });
    // Routing assertions below use the heuristic scorer (transparent, stable scale); the
    // default router is exercised in streaming.test.mjs.
    gw = await startGateway({ vars: { ROUTER: "heuristic", MISTRAL_API_KEY: MISTRAL_KEY, MISTRAL_BASE_URL: stub.url } });
  });
  after(async () => {
    await gw?.stop();
    await stub?.close();
  });

  const onlyRequest = (t) => {
    const seen = findStubRequests(stub, t);
    assert.equal(seen.length, 1, `exactly one upstream call for ${t}`);
    return seen[0];
  };

  it("translates every OpenAI parameter and role to Mistral's schema (no 422)", async () => {
    const t = tag();
    const res = await chat(gw, {
      model: "small",
      messages: [
        { role: "system", content: "You are terse." },
        { role: "developer", content: "Answer in English." },
        user(`Weather in Paris and Rome? (${t})`),
        {
          role: "assistant",
          content: null,
          tool_calls: [
            { id: "call_Xf3kP0a9QmZ2rT7yB1cD4eG6", type: "function", function: { name: "get_weather", arguments: '{"city":"Paris"}' } },
            { id: "call_9sLmN4bV2cX8zQ1wE5rT7yU3", type: "function", function: { name: "get_weather", arguments: '{"city":"Rome"}' } },
          ],
        },
        { role: "tool", tool_call_id: "call_Xf3kP0a9QmZ2rT7yB1cD4eG6", content: "18C, sunny" },
        { role: "tool", tool_call_id: "call_9sLmN4bV2cX8zQ1wE5rT7yU3", content: "24C, cloudy" },
        { role: "assistant", content: "Paris 18C, Rome 24C." },
        user([{ type: "text", text: `Thanks. Which is warmer? (${t})` }]),
      ],
      temperature: 0.2,
      top_p: 0.9,
      max_completion_tokens: 50,
      stop: ["END"],
      seed: 42,
      response_format: { type: "json_object" },
      tools: [WEATHER_TOOL],
      tool_choice: "auto",
      parallel_tool_calls: true,
      n: 1,
      presence_penalty: 0.1,
      frequency_penalty: 0.2,
      stream_options: { include_usage: true },
      user: "end-user-1",
      logprobs: false,
      store: false,
    });
    const b = assertCompletion(res, "all parameters");
    const up = onlyRequest(t);
    assert.equal(up.response.status, 200, `the stand-in accepted the translated body: ${JSON.stringify(up.response.body)}`);
    assert.equal(up.headers.authorization, `Bearer ${MISTRAL_KEY}`);
    const body = up.body;
    assertCleanUpstreamBody(body);
    assert.equal(body.model, SMALL);
    assert.equal(body.stream, false);
    assert.equal(body.random_seed, 42, "seed -> random_seed");
    assert.equal(body.max_tokens, 50, "max_completion_tokens -> max_tokens");
    for (const [k, v] of Object.entries({ temperature: 0.2, top_p: 0.9, stop: ["END"], n: 1, presence_penalty: 0.1, frequency_penalty: 0.2, tool_choice: "auto", parallel_tool_calls: true })) {
      assert.deepEqual(body[k], v, `${k} passed through`);
    }
    assert.deepEqual(body.response_format, { type: "json_object" });
    assert.deepEqual(body.tools, [WEATHER_TOOL]);
    assert.deepEqual(body.messages.map((m) => m.role), ["system", "system", "user", "assistant", "tool", "tool", "assistant", "user"], "developer -> system");
    // Tool-call ids: Mistral's 9-character form, each tool answer matching its call.
    const [a, b2] = body.messages[3].tool_calls.map((c) => c.id);
    assert.match(a, MISTRAL_TOOL_CALL_ID);
    assert.match(b2, MISTRAL_TOOL_CALL_ID);
    assert.notEqual(a, b2, "distinct calls keep distinct ids");
    assert.equal(body.messages[4].tool_call_id, a);
    assert.equal(body.messages[5].tool_call_id, b2);
    assert.equal(body.messages[3].tool_calls[0].function.arguments, '{"city":"Paris"}');
    // The answer: the upstream's chat.completion, with routing and cost headers.
    const reply = stubReply(up);
    assert.equal(b.choices[0].message.content, reply.answer);
    assert.equal(b.model, "mistral-small-2603", "upstream's dated model id kept");
    assert.deepEqual(b.usage, reply.usage);
    assert.equal(b.id, up.response.body.id, "upstream id kept");
    const h = routingHeaders(res, { cost: true });
    assert.equal(h.tier, "small");
    assert.equal(h.model, SMALL);
    near(h.cost, expectedCost("mistral-small-2603", SMALL, reply.usage.prompt_tokens, reply.usage.completion_tokens), 1e-8, "x-llm-mux-cost-usd");
  });

  it("Mistral-named parameters (random_seed, safe_prompt) from a Mistral client pass through", async () => {
    const t = tag();
    const res = await chat(gw, { model: "small", messages: [user(`hello ${t}`)], random_seed: 7, safe_prompt: false, max_tokens: 20 });
    assertCompletion(res);
    const up = onlyRequest(t);
    assert.equal(up.body.random_seed, 7);
    assert.equal(up.body.max_tokens, 20);
    assert.equal(up.body.safe_prompt, false);
  });

  it("a tool call comes back with Mistral's id, and the round trip with that id is accepted", async () => {
    const t = tag();
    const question = user(`What's the weather in Paris? (${t}) [[stub:tool-call=get_weather]] [[stub:tool-args={"city":"Paris"}]]`);
    const res = await chat(gw, { model: "small", messages: [question], tools: [WEATHER_TOOL], tool_choice: "required" });
    const b = assertCompletion(res, "tool call");
    assert.equal(b.choices[0].finish_reason, "tool_calls");
    const [call] = b.choices[0].message.tool_calls;
    assert.match(call.id, MISTRAL_TOOL_CALL_ID, "Mistral's id travels back unchanged");
    assert.equal(call.type, "function");
    assert.equal(call.function.name, "get_weather");
    assert.deepEqual(JSON.parse(call.function.arguments), { city: "Paris" });
    assert.equal(onlyRequest(t).body.tool_choice, "any", "tool_choice required -> Mistral's any");

    const res2 = await chat(gw, {
      model: "small",
      messages: [question, { role: "assistant", content: "", tool_calls: [call] }, { role: "tool", tool_call_id: call.id, name: "get_weather", content: "18C and sunny" }],
      tools: [WEATHER_TOOL],
    });
    const b2 = assertCompletion(res2, "answer after the tool result");
    assert.equal(b2.choices[0].finish_reason, "stop");
    assert.match(b2.choices[0].message.content, /with tool result: 18C and sunny/);
    const second = findStubRequests(stub, t).at(-1);
    assert.equal(second.body.messages[1].tool_calls[0].id, call.id, "a 9-character id is not rewritten");
    assert.equal(second.body.messages[2].tool_call_id, call.id);
  });

  it("the stand-in refuses tool-call ids Mistral would refuse (so the rewriting above is real)", async () => {
    const res = await fetch(`${stub.url}/v1/chat/completions`, {
      method: "POST",
      headers: { "content-type": "application/json", authorization: `Bearer ${MISTRAL_KEY}` },
      body: JSON.stringify({ model: SMALL, messages: [user("x"), { role: "assistant", content: "", tool_calls: [{ id: "call_abc", type: "function", function: { name: "f", arguments: "{}" } }] }, { role: "tool", tool_call_id: "call_abc", content: "y" }] }),
    });
    assert.equal(res.status, 422);
    const body = await res.json();
    assert.deepEqual(body.detail.map((d) => d.loc.slice(1).join(".")), ["messages.1.tool_calls.0.id", "messages.2.tool_call_id"]);
  });

  it("model auto routes by complexity; small/large pick a tier; a served model id passes through", async () => {
    const cases = [
      { model: "auto", content: SIMPLE, tier: "small", upstream: SMALL },
      { model: "auto", content: COMPLEX, tier: "large", upstream: LARGE },
      { model: "large", content: SIMPLE, tier: "large", upstream: LARGE },
      { model: "small", content: COMPLEX, tier: "small", upstream: SMALL },
      { model: LARGE, content: SIMPLE, tier: "large", upstream: LARGE },
      { model: SMALL, content: COMPLEX, tier: "small", upstream: SMALL },
    ];
    for (const c of cases) {
      const t = tag();
      const res = await chat(gw, { model: c.model, messages: [user(`${c.content} ${t}`)] });
      const b = assertCompletion(res, `model ${c.model}`);
      const h = routingHeaders(res, { cost: true });
      assert.equal(h.tier, c.tier, `model ${c.model}: tier for ${c.content.slice(0, 20)}`);
      assert.equal(h.model, c.upstream);
      const up = onlyRequest(t);
      assert.equal(up.body.model, c.upstream, `model ${c.model}: upstream model`);
      assert.equal(b.model, stubReply(up).model);
    }
  });

  it("auto scores the latest user turn with its context, not the first message", async () => {
    const score = async (messages) => {
      const res = await chat(gw, { model: "auto", messages });
      assertCompletion(res);
      return routingHeaders(res);
    };
    const simpleAlone = await score([user("and the other one?")]);
    assert.equal(simpleAlone.tier, "small", "a short follow-up alone is simple");
    // A chat that opened simply and then asks a hard question goes to large.
    const hardLater = await score([user("hi"), { role: "assistant", content: "Hello! How can I help?" }, user(COMPLEX)]);
    assert.equal(hardLater.tier, "large", `hard latest turn after a simple opener: score ${hardLater.score}`);
    const hardAlone = await score([user(COMPLEX)]);
    near(hardLater.score, hardAlone.score, 1e-4, "a long latest turn is scored on its own");
    // A short follow-up to a hard question keeps its context.
    const followUp = await score([user(COMPLEX), { role: "assistant", content: "Here is the analysis..." }, user("and the other one?")]);
    assert.equal(followUp.tier, "large", `short follow-up of a hard question: score ${followUp.score}`);
    // A simple question after a hard conversation is judged on itself.
    const longSimple = `${SIMPLE} Just the name of the city, please, I am filling in a crossword and need the answer. ${"Thank you very much for the help. ".repeat(4)}`;
    assert.ok(longSimple.length >= 200);
    const simpleLater = await score([user(COMPLEX), { role: "assistant", content: "Here is the analysis..." }, user(longSimple)]);
    assert.ok(simpleLater.score < followUp.score, `a new simple question scores lower than a follow-up (${simpleLater.score} vs ${followUp.score})`);
  });

  it("unknown model: 400 in OpenAI's format, no upstream call, counted as unknown_model", async () => {
    const before = await metrics(gw);
    const t = tag();
    const res = await chat(gw, { model: "gpt-9-turbo", messages: [user(`hi ${t}`)] });
    const e = assertOpenAiError(res, 400, "unknown model");
    assert.equal(e.type, "invalid_request_error");
    assert.equal(e.param, "model");
    assert.equal(e.code, "model_not_found");
    assert.match(e.message, /gpt-9-turbo/);
    assert.equal(findStubRequests(stub, t).length, 0, "no upstream call");
    const resStream = await chatStream(gw, { model: "gpt-9-turbo", messages: [user("hi")] });
    assert.equal(resStream.status, 400, "a streaming request for an unknown model is a plain 400 too");
    assert.equal(resStream.json?.error?.code, "model_not_found");
    await metricsUntil(gw, (m) => (m.failed_requests.unknown_model ?? 0) === (before.failed_requests.unknown_model ?? 0) + 2, { what: "2 unknown_model failures" });
  });

  it("invalid requests: 400 in OpenAI's format naming the parameter", async () => {
    const cases = [
      [{ messages: [user("x")] }, "model"],
      [{ model: "auto" }, "messages"],
      [{ model: "auto", messages: [] }, "messages"],
      [{ model: "auto", messages: [{ role: "wizard", content: "x" }] }, "messages[0].role"],
      [{ model: "auto", messages: [{ role: "user", content: 5 }] }, "messages[0].content"],
      [{ model: "auto", messages: [user("x")], temperature: 3 }, "temperature"],
      [{ model: "auto", messages: [user("x")], max_completion_tokens: 0 }, "max_completion_tokens"],
      [{ model: "auto", messages: [user("x")], stream: "yes" }, "stream"],
    ];
    for (const [body, param] of cases) {
      const res = await chat(gw, body);
      const e = assertOpenAiError(res, 400, JSON.stringify(body));
      assert.equal(e.type, "invalid_request_error");
      assert.equal(e.param, param, `param of ${JSON.stringify(body)}`);
    }
    const res = await chat(gw, undefined, { raw: "{not json" });
    assert.equal(assertOpenAiError(res, 400, "bad JSON").type, "invalid_request_error");
    const get = await fetch(`${gw.url}/v1/chat/completions`);
    const getRes = { status: get.status, headers: get.headers, text: await get.text() };
    getRes.json = JSON.parse(getRes.text);
    assertOpenAiError(getRes, 405, "GET");
    assert.match(get.headers.get("allow") ?? "", /POST/);
  });

  // The client's status follows the upstream's (issue 11): a refused request (400, 422) is
  // the client's 400 with the upstream's reason; a server error is 502 (after the fallback
  // to the other tier, which fails the same way here).
  it("upstream errors in OpenAI's format: 400/422 -> 400 with the reason, 500 -> 502; the key never echoed", async () => {
    const cases = [
      ["[[stub:status=400]]", 400, "invalid_request_error", "upstream_400"],
      ["[[stub:status=422]] [[stub:error-body=detail]]", 400, "invalid_request_error", "upstream_422"],
      ["[[stub:status=500]] [[stub:echo-key]]", 502, "upstream_error", "upstream_error"],
    ];
    for (const [marker, status, type, code] of cases) {
      const res = await chat(gw, { model: "small", messages: [user(`fail ${marker}`)] });
      const e = assertOpenAiError(res, status, marker);
      assert.equal(e.type, type, marker);
      assert.equal(e.code, code, marker);
      assert.match(e.message, /stub/i, `upstream message relayed: ${e.message}`);
      assert.ok(!res.text.includes(MISTRAL_KEY), "key not echoed");
      assert.equal(res.headers.get("x-should-retry"), "false", "the gateway retried already");
    }
    const res = await chatStream(gw, { model: "small", messages: [user("fail streaming [[stub:status=400]]")] });
    assertOpenAiError(res, 400, "streaming request failing before the stream starts");
  });

  it("streams Mistral's chunks through unchanged, with routing headers and no cost header", async () => {
    const t = tag();
    const s = await chatStream(gw, { model: "auto", messages: [user(`${SIMPLE} ${t}`)], stream_options: { include_usage: true }, seed: 3, max_completion_tokens: 64 });
    assert.equal(s.status, 200);
    assert.match(s.headers.get("content-type"), /^text\/event-stream/);
    const h = routingHeaders(s, { cost: false });
    assert.equal(h.tier, "small");
    const up = onlyRequest(t);
    assert.equal(up.response.status, 200, "the stand-in accepted the stream request");
    assertCleanUpstreamBody(up.body);
    assert.equal(up.body.stream, true);
    assert.equal(up.body.random_seed, 3);
    assert.equal(up.body.max_tokens, 64);
    const chunks = chunksOf(s);
    const a = assembleChunks(chunks);
    assert.equal(chunks[0].choices[0].delta.role, "assistant");
    assert.equal(a.content, up.response.expected.answer);
    assert.equal(a.finish, "stop");
    assert.deepEqual(a.usage, up.response.expected.usage, "usage on the last chunk, as Mistral sends it");
    assert.equal(a.model, "mistral-small-2603");
  });

  it("streams a tool call (one tool_calls delta with Mistral's id, finish_reason tool_calls)", async () => {
    const s = await chatStream(gw, { model: "large", tools: [WEATHER_TOOL], messages: [user('weather? [[stub:tool-call=get_weather]] [[stub:tool-args={"city":"Oslo"}]]')] });
    const a = assembleChunks(chunksOf(s));
    assert.equal(a.finish, "tool_calls");
    assert.equal(a.toolCalls.length, 1);
    assert.match(a.toolCalls[0].id, MISTRAL_TOOL_CALL_ID);
    assert.equal(a.toolCalls[0].function.name, "get_weather");
    assert.deepEqual(JSON.parse(a.toolCalls[0].function.arguments), { city: "Oslo" });
    assert.ok(a.usage?.completion_tokens > 0);
  });

  it("GET /v1/models lists auto, the tiers and their models", async () => {
    const res = await fetch(`${gw.url}/v1/models`);
    assert.equal(res.status, 200);
    const body = await res.json();
    assert.equal(body.object, "list");
    const ids = body.data.map((m) => m.id);
    assert.deepEqual(ids, ["auto", "small", "large", SMALL, LARGE]);
    for (const m of body.data) {
      assert.equal(m.object, "model");
      assert.equal(typeof m.owned_by, "string");
      assert.equal(typeof m.created, "number");
    }
    const post = await fetch(`${gw.url}/v1/models`, { method: "POST" });
    assert.equal(post.status, 405);
  });

  it("answered chat completions are in /metrics with the tier breakdown", async () => {
    const m = await metrics(gw);
    assert.ok(m.total_requests >= 10, `requests counted: ${m.total_requests}`);
    assert.ok(m.tier_breakdown.small > 0 && m.tier_breakdown.large > 0, JSON.stringify(m.tier_breakdown));
    assert.equal(Object.values(m.tier_breakdown).reduce((a, b) => a + b, 0), m.total_requests);
    assert.ok(!JSON.stringify(m).includes(MISTRAL_KEY));
  });
});
