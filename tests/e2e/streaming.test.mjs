// Streaming through the real worker: chunks reach the client as the upstream sends them (not
// buffered whole), usage from the stream lands in /metrics after the end, and streams that end
// without usage (cut by the upstream, or abandoned by the client) are recorded as incomplete
// with estimated tokens and a nonzero cost. /query streaming too.

import { describe, it, before, after } from "node:test";
import assert from "node:assert/strict";
import { startGateway } from "./harness.mjs";
import { startMistralStub } from "./mistral-stub.mjs";
import { SMALL, LARGE, secret, tag, expectedCost, findStubRequests, near, pollUntil } from "./helpers.mjs";
import { chat, chatStream, chunksOf, assembleChunks, assertCompletion, routingHeaders, metrics, metricsUntil, readSse, user } from "./chat-helpers.mjs";

const MISTRAL_KEY = secret("mistral");
const LONG_ANSWER = "The quick brown fox jumps over the lazy dog while the streaming relay forwards every piece as it arrives.";

describe("streaming", () => {
  let stub, gw;
  before(async () => {
    stub = await startMistralStub({ apiKey: MISTRAL_KEY });
    gw = await startGateway({ vars: { MISTRAL_API_KEY: MISTRAL_KEY, MISTRAL_BASE_URL: stub.url } });
  });
  after(async () => {
    await gw?.stop();
    await stub?.close();
  });

  const upstreamOf = (t) => {
    const seen = findStubRequests(stub, t);
    assert.equal(seen.length, 1, `one upstream call for ${t}`);
    return seen[0];
  };

  /** Metrics before, a body that runs requests, then the deltas once `n` more are recorded. */
  async function measured(n, run) {
    const before = await metrics(gw);
    const out = await run();
    const after = await metricsUntil(gw, (m) => m.total_requests >= before.total_requests + n, { what: `${n} more request(s) recorded` });
    assert.equal(after.total_requests, before.total_requests + n, "exactly the expected requests recorded");
    const inc = (m, k) => m.incomplete_requests?.[k] ?? 0;
    return {
      out,
      before,
      after,
      d: {
        tokens_in: after.tokens_in - before.tokens_in,
        tokens_out: after.tokens_out - before.tokens_out,
        cost: after.total_cost_usd - before.total_cost_usd,
        estimated: after.requests_with_estimated_tokens - before.requests_with_estimated_tokens,
        incomplete: (k) => inc(after, k) - inc(before, k),
        incompleteTotal:
          Object.values(after.incomplete_requests ?? {}).reduce((a, b) => a + b, 0) -
          Object.values(before.incomplete_requests ?? {}).reduce((a, b) => a + b, 0),
      },
    };
  }

  it("the first chunk reaches the client before the upstream has finished (no buffering)", async () => {
    const t = tag();
    // ~7 content chunks, 300 ms apart: the upstream takes > 2 s to finish.
    const s = await chatStream(gw, { model: "small", messages: [user(`stream slowly ${t} [[stub:chunk-delay=300]] [[stub:answer=${LONG_ANSWER}]]`)] });
    assert.equal(s.status, 200);
    const up = upstreamOf(t);
    const { writes, endedAt } = up.response;
    assert.ok(writes.length >= 7, `upstream wrote ${writes.length} chunks`);
    const firstContent = s.events.find((e) => e.data !== "[DONE]" && JSON.parse(e.data).choices[0]?.delta?.content);
    assert.ok(firstContent, "a content chunk arrived");
    assert.ok(s.events[0].at < endedAt - 1000, `first chunk at ${s.events[0].at - s.startedAt} ms, upstream ended at ${endedAt - s.startedAt} ms`);
    assert.ok(firstContent.at < writes.at(-1), "first content chunk arrived before the upstream wrote its last chunk");
    assert.ok(s.events[0].at - s.startedAt < 1500, `time to first chunk ${s.events[0].at - s.startedAt} ms`);
    // Chunks arrive spread over time, as the upstream wrote them.
    const spread = s.events.at(-1).at - s.events[0].at;
    assert.ok(spread >= 1200, `events spread over ${spread} ms`);
    const a = assembleChunks(chunksOf(s));
    assert.equal(a.content, LONG_ANSWER);
  });

  it("usage from the stream is recorded in /metrics after the stream ends", async () => {
    const t = tag();
    const { out: s, d, after } = await measured(1, () => chatStream(gw, { model: "large", messages: [user(`count my tokens ${t} [[stub:tokens=1234,567]]`)] }));
    assert.equal(s.status, 200);
    const a = assembleChunks(chunksOf(s));
    assert.deepEqual(a.usage, { prompt_tokens: 1234, completion_tokens: 567, total_tokens: 1801 });
    assert.equal(d.tokens_in, 1234);
    assert.equal(d.tokens_out, 567);
    near(d.cost, expectedCost("mistral-large-2512", LARGE, 1234, 567), 1e-9, "cost of the stream's usage");
    assert.equal(d.estimated, 0, "real usage, not estimated");
    assert.equal(d.incompleteTotal, 0, "a complete stream is not incomplete");
    assert.ok(after.tier_breakdown.large >= 1);
    assert.equal(upstreamOf(t).body.stream, true);
  });

  it("a stream the upstream ends early (no usage, no [DONE]) is incomplete, estimated, never free", async () => {
    const t = tag();
    const { out: s, d } = await measured(1, () => chatStream(gw, { model: "small", messages: [user(`cut me short ${t} [[stub:stream-cut]]`)] }));
    assert.equal(s.status, 200);
    const chunks = chunksOf(s, { done: false });
    assert.ok(!s.events.some((e) => e.data === "[DONE]"), "no [DONE] invented for a cut stream");
    // The client is told: a final error event in OpenAI's format (the SDKs raise on it).
    const last = chunks.at(-1);
    assert.equal(last.error?.code, "upstream_cut", `last event is the error: ${JSON.stringify(last)}`);
    assert.match(last.error.message, /broke off.*incomplete/);
    const a = assembleChunks(chunks.filter((c) => !c.error));
    assert.equal(a.content, "Stub answer from", "the part that was sent reaches the client");
    assert.equal(a.usage, null);
    assert.equal(d.incompleteTotal, 1, "recorded as incomplete");
    assert.equal(d.incomplete("no_usage") + d.incomplete("upstream_cut"), 1, "reason no_usage or upstream_cut");
    assert.equal(d.estimated, 1, "tokens flagged as estimated");
    assert.ok(d.tokens_in > 0 && d.tokens_out > 0, `estimated tokens ${d.tokens_in}/${d.tokens_out}`);
    assert.equal(d.tokens_out, Math.ceil(a.content.length / 4), "completion estimated at ~4 characters per token");
    assert.ok(d.cost > 0, "never zero cost");
    near(d.cost, expectedCost("mistral-small-2603", SMALL, d.tokens_in, d.tokens_out), 1e-12, "estimate priced like usage");
  });

  it("a stream whose connection dies mid-body is recorded as upstream_cut", async () => {
    const t = tag();
    const { out: s, d } = await measured(1, () => chatStream(gw, { model: "small", messages: [user(`die mid-body ${t} [[stub:stream-abort]]`)] }));
    assert.equal(s.status, 200);
    assert.ok(!s.events.some((e) => e.data === "[DONE]"));
    const chunks = chunksOf(s, { done: false });
    assert.equal(chunks.at(-1).error?.code, "upstream_cut", "a final error event");
    assert.equal(assembleChunks(chunks.filter((c) => !c.error)).content, "Stub answer from");
    assert.equal(d.incomplete("upstream_cut"), 1, "reason upstream_cut");
    assert.equal(d.estimated, 1);
    assert.ok(d.cost > 0);
  });

  it("a stream that finishes without usage is recorded as no_usage (estimated, not free)", async () => {
    const t = tag();
    const { out: s, d } = await measured(1, () => chatStream(gw, { model: "small", messages: [user(`no usage ${t} [[stub:no-usage]]`)] }));
    const a = assembleChunks(chunksOf(s));
    assert.equal(a.usage, null);
    assert.equal(a.finish, "stop");
    assert.equal(d.incomplete("no_usage"), 1);
    assert.equal(d.estimated, 1);
    assert.ok(d.tokens_out > 0 && d.cost > 0);
  });

  it("a client that disconnects mid-stream is recorded as client_disconnected; the worker keeps serving", async () => {
    const t = tag();
    const answer = "x".repeat(400); // 25 chunks of 16 characters, 300 ms apart: ~7.5 s
    const { d } = await measured(1, async () => {
      const ac = new AbortController();
      const res = await fetch(`${gw.url}/v1/chat/completions`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ model: "small", stream: true, messages: [user(`leave early ${t} [[stub:chunk-delay=300]] [[stub:answer=${answer}]]`)] }),
        signal: ac.signal,
      });
      assert.equal(res.status, 200);
      let contentChunks = 0;
      const sse = await readSse(res, {
        onEvent: (ev) => {
          if (ev.data !== "[DONE]" && JSON.parse(ev.data).choices[0]?.delta?.content) contentChunks++;
          return contentChunks >= 2;
        },
      });
      assert.ok(sse.cancelled, "client stopped reading");
      ac.abort();
    });
    assert.equal(d.incomplete("client_disconnected"), 1, "reason client_disconnected");
    assert.equal(d.estimated, 1, "tokens estimated");
    assert.ok(d.tokens_out >= 8, `what was relayed is counted: ${d.tokens_out}`);
    assert.ok(d.cost > 0, "never zero cost");
    // The gateway stops pulling from the upstream: the stand-in sees its client go away long
    // before the 7.5 s answer is done.
    const up = upstreamOf(t);
    const gone = await pollUntil(() => up.response.clientGone === true || up.response.endedAt !== undefined, Boolean, { timeoutMs: 10_000 });
    assert.ok(gone, "upstream stream ended");
    assert.ok(up.response.writes.length < 20, `upstream stopped early (${up.response.writes.length} chunks written)`);
    // Still serving, streamed and not.
    const res = await chat(gw, { model: "small", messages: [user("still there?")] });
    assertCompletion(res, "after a disconnect");
    const s = await chatStream(gw, { model: "small", messages: [user("still streaming?")] });
    assert.equal(assembleChunks(chunksOf(s)).finish, "stop");
  });

  it("several streams at once each complete and are each recorded", async () => {
    const n = 6;
    const { out, d } = await measured(n, () =>
      Promise.all(Array.from({ length: n }, (_, i) => chatStream(gw, { model: i % 2 ? "small" : "large", messages: [user(`parallel ${i} [[stub:chunk-delay=50]] [[stub:tokens=10,${i + 1}]]`)] }))),
    );
    out.forEach((s, i) => assert.match(assembleChunks(chunksOf(s)).content, new RegExp(`parallel ${i}`)));
    assert.equal(d.tokens_in, 10 * n);
    assert.equal(d.tokens_out, (n * (n + 1)) / 2);
    assert.equal(d.incompleteTotal, 0);
  });

  it("/query with stream: true sends answer deltas, then a final event with routing and metrics, then [DONE]", async () => {
    const t = tag();
    const { out, d } = await measured(1, async () => {
      const res = await fetch(`${gw.url}/query`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ query: `What is the capital of France? ${t} [[stub:chunk-delay=100]]`, tier: "small", stream: true }),
        signal: AbortSignal.timeout(30_000),
      });
      return { res, sse: await readSse(res) };
    });
    const { res, sse } = out;
    assert.equal(res.status, 200);
    assert.match(res.headers.get("content-type"), /^text\/event-stream/);
    const h = routingHeaders({ headers: res.headers });
    assert.equal(h.tier, "small");
    assert.equal(sse.events.at(-1).data, "[DONE]");
    const events = sse.events.slice(0, -1).map((e) => JSON.parse(e.data));
    const deltas = events.filter((e) => e.type === "delta");
    const finals = events.filter((e) => e.type === "final");
    assert.equal(finals.length, 1, "one final event");
    assert.equal(events.at(-1).type, "final", "final event last");
    assert.ok(deltas.length >= 2, `${deltas.length} deltas`);
    assert.equal(deltas.length + 1, events.length, "only delta and final events");
    const up = upstreamOf(t);
    const expected = up.response.expected;
    const answer = deltas.map((e) => e.content).join("");
    assert.equal(answer, expected.answer);
    const f = finals[0];
    assert.equal(f.answer, answer);
    assert.match(f.routing_decision, /^Routed to SMALL \(score: \d\.\d\d\)$/);
    assert.equal(f.model_used, SMALL);
    assert.equal(f.upstream_model, "mistral-small-2603");
    assert.equal(f.incomplete, null);
    assert.equal(f.metrics.tokens_in, expected.usage.prompt_tokens);
    assert.equal(f.metrics.tokens_out, expected.usage.completion_tokens);
    near(f.metrics.cost_usd, expectedCost("mistral-small-2603", SMALL, expected.usage.prompt_tokens, expected.usage.completion_tokens), 1e-12, "final cost");
    assert.equal(f.metrics.tokens_estimated, false);
    assert.equal(typeof f.metrics.latency_ms, "number");
    assert.equal(f.routing.tier, "small");
    assert.equal(typeof f.routing.score, "number");
    assert.ok(Array.isArray(f.routing.features));
    assert.equal(d.tokens_in, expected.usage.prompt_tokens);
    near(d.cost, f.metrics.cost_usd, 1e-12, "metrics record what the final event reports");
    assert.equal(up.body.stream, true);
  });

  it("/query streaming of a cut stream: a final error event (no [DONE]), tokens estimated", async () => {
    const { out, d } = await measured(1, async () => {
      const res = await fetch(`${gw.url}/query`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ query: "cut the query stream [[stub:stream-cut]]", tier: "large", stream: true }),
        signal: AbortSignal.timeout(30_000),
      });
      return readSse(res);
    });
    assert.ok(!out.events.some((e) => e.data === "[DONE]"), "no [DONE] after a failure");
    const f = JSON.parse(out.events.at(-1).data);
    assert.equal(f.type, "error");
    assert.equal(f.error.type, "upstream_error");
    assert.match(f.error.message, /broke off.*incomplete/);
    const deltas = out.events.slice(0, -1).map((e) => JSON.parse(e.data));
    assert.equal(deltas.map((x) => x.content).join(""), "Stub answer from", "the part that was sent");
    assert.equal(d.incompleteTotal, 1);
    assert.equal(d.incomplete("upstream_cut"), 1);
    assert.equal(d.estimated, 1);
    assert.ok(d.cost > 0, "never free");
  });

  it("auto with the default router: the tier follows score >= threshold, streamed or not", async () => {
    const probe = await fetch(`${gw.url}/query`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ query: "hi" }) });
    const threshold = (await probe.json()).routing.threshold;
    const queries = [
      "hi",
      "Compare and contrast the economic policies of Keynesian and Austrian schools, analyze their implications for inflation, and prove step by step why one would dominate in a liquidity trap. Derive the equilibrium conditions.",
    ];
    const tiers = new Set();
    for (const q of queries) {
      const res = await chat(gw, { model: "auto", messages: [user(q)] });
      assertCompletion(res);
      const h = routingHeaders(res, { cost: true });
      assert.equal(h.tier, h.score >= threshold ? "large" : "small", `score ${h.score} vs threshold ${threshold}`);
      assert.equal(h.model, h.tier === "large" ? LARGE : SMALL);
      const s = await chatStream(gw, { model: "auto", messages: [user(q)] });
      const hs = routingHeaders(s, { cost: false });
      assert.equal(hs.tier, h.tier, "same routing when streamed");
      assert.equal(hs.score, h.score);
      assert.equal(assembleChunks(chunksOf(s)).model, h.tier === "large" ? "mistral-large-2512" : "mistral-small-2603");
      tiers.add(h.tier);
    }
    assert.deepEqual([...tiers].sort(), ["large", "small"], "a greeting and a hard analysis land on different tiers");
  });

  it("/query without stream still answers whole JSON", async () => {
    const res = await fetch(`${gw.url}/query`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ query: "plain query", stream: false }),
    });
    assert.equal(res.status, 200);
    assert.match(res.headers.get("content-type"), /application\/json/);
    const b = await res.json();
    assert.equal(typeof b.answer, "string");
  });
});
