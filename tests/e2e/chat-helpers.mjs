// Helpers of the /v1/chat/completions specs: calling the endpoint (whole or streamed, with
// arrival times), reading server-sent events, OpenAI error and chunk shape assertions, and
// waiting for /metrics to count something.

import assert from "node:assert/strict";
import { sleep } from "./helpers.mjs";

/** POST /v1/chat/completions (non-streaming): {status, headers, text, json}. */
export async function chat(gw, body, { headers = {}, timeoutMs = 30_000, raw } = {}) {
  const res = await fetch(`${gw.url}/v1/chat/completions`, {
    method: "POST",
    headers: { "content-type": "application/json", ...headers },
    body: raw ?? JSON.stringify(body),
    signal: AbortSignal.timeout(timeoutMs),
  });
  const text = await res.text();
  let json;
  try {
    json = JSON.parse(text);
  } catch {
    json = undefined;
  }
  return { status: res.status, headers: res.headers, text, json };
}

/**
 * Reads an SSE body as it arrives: returns {events: [{data, event, at}], raw, firstByteAt,
 * endedAt, error}. `at` is Date.now() when the event's bytes were read. `onEvent(ev, events)`
 * may return true to stop reading (the body is then cancelled).
 */
export async function readSse(res, { onEvent } = {}) {
  const reader = res.body.getReader();
  const decoder = new TextDecoder();
  const events = [];
  let buffer = "";
  let raw = "";
  let firstByteAt;
  let error;
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      firstByteAt ??= Date.now();
      const text = decoder.decode(value, { stream: true });
      raw += text;
      buffer += text.replace(/\r\n/g, "\n");
      let at;
      while ((at = buffer.indexOf("\n\n")) >= 0) {
        const block = buffer.slice(0, at);
        buffer = buffer.slice(at + 2);
        const ev = { event: "", data: "", at: Date.now() };
        const data = [];
        for (const line of block.split("\n")) {
          if (line.startsWith(":")) continue;
          const i = line.indexOf(":");
          const field = i < 0 ? line : line.slice(0, i);
          const value = i < 0 ? "" : line.slice(i + 1).replace(/^ /, "");
          if (field === "data") data.push(value);
          else if (field === "event") ev.event = value;
        }
        if (!data.length) continue;
        ev.data = data.join("\n");
        events.push(ev);
        if (onEvent?.(ev, events)) {
          await reader.cancel().catch(() => {});
          return { events, raw, firstByteAt, endedAt: Date.now(), error, cancelled: true, rest: buffer };
        }
      }
    }
  } catch (e) {
    error = e;
  }
  return { events, raw, firstByteAt, endedAt: Date.now(), error, rest: buffer };
}

/** POST /v1/chat/completions with stream: true; returns the response and its events. */
export async function chatStream(gw, body, { headers = {}, timeoutMs = 30_000, onEvent } = {}) {
  const startedAt = Date.now();
  const res = await fetch(`${gw.url}/v1/chat/completions`, {
    method: "POST",
    headers: { "content-type": "application/json", ...headers },
    body: JSON.stringify({ ...body, stream: true }),
    signal: AbortSignal.timeout(timeoutMs),
  });
  if (!res.headers.get("content-type")?.startsWith("text/event-stream")) {
    const text = await res.text();
    let json;
    try {
      json = JSON.parse(text);
    } catch {
      json = undefined;
    }
    return { status: res.status, headers: res.headers, text, json, events: [], startedAt };
  }
  const sse = await readSse(res, { onEvent });
  return { status: res.status, headers: res.headers, startedAt, ...sse };
}

/** The JSON chunks of a chat stream (without [DONE]); asserts [DONE] ends it when `done`. */
export function chunksOf(stream, { done = true } = {}) {
  const datas = stream.events.map((e) => e.data);
  if (done) {
    assert.equal(datas.at(-1), "[DONE]", `stream ends with [DONE]: ${stream.raw?.slice(-300)}`);
    assert.equal(datas.filter((d) => d === "[DONE]").length, 1, "exactly one [DONE]");
  }
  return datas.filter((d) => d !== "[DONE]").map((d) => JSON.parse(d));
}

/** Asserts every chunk is a chat.completion.chunk; returns {content, finish, usage, toolCalls, model}. */
export function assembleChunks(chunks) {
  let content = "";
  let finish = null;
  let usage = null;
  const toolCalls = [];
  let model;
  for (const c of chunks) {
    assert.equal(c.object, "chat.completion.chunk", `chunk object: ${JSON.stringify(c)}`);
    assert.equal(typeof c.id, "string", "chunk id");
    assert.ok(Array.isArray(c.choices), `chunk choices: ${JSON.stringify(c)}`);
    model ??= c.model;
    if (c.usage) usage = c.usage;
    for (const choice of c.choices) {
      const d = choice.delta ?? {};
      if (typeof d.content === "string") content += d.content;
      for (const tc of d.tool_calls ?? []) {
        const i = tc.index ?? 0;
        toolCalls[i] ??= { id: undefined, type: "function", function: { name: "", arguments: "" } };
        if (tc.id) toolCalls[i].id = tc.id;
        if (tc.function?.name) toolCalls[i].function.name += tc.function.name;
        if (tc.function?.arguments) toolCalls[i].function.arguments += tc.function.arguments;
      }
      if (choice.finish_reason) finish = choice.finish_reason;
    }
  }
  return { content, finish, usage, toolCalls, model };
}

/** Asserts OpenAI's error body {"error": {"message", "type", "param", "code"}} and the status. */
export function assertOpenAiError(res, status, context = "") {
  assert.equal(res.status, status, `${context}: expected HTTP ${status}, got ${res.status}: ${res.text}`);
  assert.match(res.headers.get("content-type") ?? "", /application\/json/, `${context}: JSON content type`);
  const e = res.json?.error;
  assert.ok(e && typeof e === "object", `${context}: no "error" object: ${res.text}`);
  assert.equal(typeof e.message, "string", `${context}: error.message: ${res.text}`);
  assert.ok(e.message.length > 0, `${context}: empty error.message`);
  assert.equal(typeof e.type, "string", `${context}: error.type: ${res.text}`);
  for (const k of ["param", "code"]) {
    assert.ok(k in e, `${context}: error.${k} present (null allowed): ${res.text}`);
    assert.ok(e[k] === null || typeof e[k] === "string", `${context}: error.${k} is a string or null: ${res.text}`);
  }
  return e;
}

/** Asserts a non-streaming chat.completion answer; returns the body. */
export function assertCompletion(res, context = "") {
  assert.equal(res.status, 200, `${context}: expected 200, got ${res.status}: ${res.text}`);
  const b = res.json;
  assert.equal(b?.object, "chat.completion", `${context}: object: ${res.text}`);
  assert.equal(typeof b.id, "string");
  assert.equal(typeof b.created, "number");
  assert.ok(b.created > 1_600_000_000, `${context}: created is a unix time: ${b.created}`);
  assert.equal(typeof b.model, "string");
  assert.ok(Array.isArray(b.choices) && b.choices.length >= 1, `${context}: choices`);
  assert.equal(b.choices[0].message.role, "assistant");
  return b;
}

/** Asserts the routing headers; returns {tier, score, model, cost}. */
export function routingHeaders(res, { cost } = {}) {
  const h = res.headers;
  const tier = h.get("x-llm-mux-tier");
  const score = h.get("x-llm-mux-score");
  const model = h.get("x-llm-mux-model");
  const costUsd = h.get("x-llm-mux-cost-usd");
  assert.ok(tier, "x-llm-mux-tier header");
  assert.match(score ?? "", /^\d(\.\d+)?$/, "x-llm-mux-score header is a number");
  assert.ok(Number(score) >= 0 && Number(score) <= 1, "score in [0, 1]");
  assert.ok(model, "x-llm-mux-model header");
  if (cost === true) assert.match(costUsd ?? "", /^\d+(\.\d+)?$/, `x-llm-mux-cost-usd header: ${costUsd}`);
  if (cost === false) assert.equal(costUsd, null, "no x-llm-mux-cost-usd on a stream");
  return { tier, score: Number(score), model, cost: costUsd === null ? undefined : Number(costUsd) };
}

/** GET /metrics as JSON. */
export async function metrics(gw) {
  const res = await fetch(`${gw.url}/metrics`, { signal: AbortSignal.timeout(10_000) });
  assert.equal(res.status, 200);
  return res.json();
}

/** Polls /metrics until pred(m) holds (recording happens after the response); returns m. */
export async function metricsUntil(gw, pred, { timeoutMs = 15_000, what = "metrics condition" } = {}) {
  const deadline = Date.now() + timeoutMs;
  let m;
  for (;;) {
    m = await metrics(gw);
    if (pred(m)) return m;
    if (Date.now() > deadline) assert.fail(`${what} not reached within ${timeoutMs} ms: ${JSON.stringify(m)}`);
    await sleep(100);
  }
}

/** A user message. */
export const user = (content) => ({ role: "user", content });
