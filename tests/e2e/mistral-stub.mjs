// A local stand-in for the Mistral API (the network boundary only), used by the end-to-end
// tests, the demo and the benchmarks.
//
//   import { startMistralStub } from "./mistral-stub.mjs";
//   const stub = await startMistralStub({ port: 0 });   // stub.url, stub.requests, stub.close()
//
//   node tests/e2e/mistral-stub.mjs --port 8790 [--host 127.0.0.1] [--key KEY] [--verbose]
//
// It speaks Mistral's documented wire format (shared/reference/mistral-api.md):
//
//   POST /v1/chat/completions   `Authorization: Bearer <key>` required (any non-empty key, or
//                               exactly `apiKey` when one is configured), else 401.
//                               The body is validated like Mistral does: `model` (string) and
//                               `messages` (non-empty array of {role, content}) are required;
//                               unknown top-level fields (OpenAI-only `seed`,
//                               `max_completion_tokens`, `stream_options`, ...) get a 422 whose
//                               body is `{"detail": [{"type": "extra_forbidden", "loc": ["body",
//                               FIELD], "msg": "Extra inputs are not permitted", ...}]}`.
//   GET  /v1/models             the models the stub knows.
//   GET  /__stub/requests       (control, for out-of-process users) the recorded requests.
//   POST /__stub/reset          (control) forgets recorded requests and fail-first counters.
//
// Answers (deterministic, so tests can compute expected tokens and costs):
//   model          the dated id the alias resolves to: mistral-small-latest -> mistral-small-2603,
//                  mistral-large-latest -> mistral-large-2512 (see DATED_MODELS); others echoed.
//   answer         `Stub answer from <dated id> to: <last user message, markers removed,
//                  first 60 chars>` unless [[stub:answer=...]] is given.
//   prompt_tokens  ceil(total characters of all message contents / 4), at least 1.
//   completion_tokens  ceil(answer length / 4), at least 1.
//   Tool-call ids in requests (assistant tool_calls[].id, tool messages' tool_call_id) must be
//   exactly 9 characters of [a-zA-Z0-9], as Mistral requires: others get a 422.
//   With `stream: true`: SSE `data: {chunk}\n\n` lines; the first chunk has
//   delta.role "assistant"; usage is only on the last content chunk (with finish_reason);
//   then `data: [DONE]`.
//
// Fault injection: magic markers inside the LAST USER MESSAGE's content (combine freely):
//   [[stub:status=N]]          answer HTTP N with a Mistral error body (documented shape
//                              {"object":"error","message","type","param":null,"code"}).
//                              429 also carries `Retry-After` (see retry-after).
//   [[stub:error-body=KIND]]   error body shape for status=N: documented (default),
//                              detail ({"detail": "..."}), message ({"message": "..."}),
//                              message-object ({"object":"error","message":{"detail":...}}).
//   [[stub:retry-after=S]]     value of Retry-After on 429/503 (default 1; `none`: no header).
//   [[stub:fail-first=N]]      only the first N requests carrying this exact message content
//                              fail (with status=N, default 500); later ones succeed.
//   [[stub:echo-key]]          error messages quote the Authorization header received (an
//                              upstream that leaks the key back: the gateway must not relay it);
//                              [[stub:echo-key=bare]] quotes only the key, without "Bearer".
//   [[stub:garbage]]           200 with a non-JSON body.
//   [[stub:bad-shape]]         200 JSON without `choices`.
//   [[stub:no-usage]]          200 JSON without `usage`.
//   [[stub:delay=MS]]          wait MS milliseconds before answering (timeout tests).
//   [[stub:body-delay=MS]]     send the headers and the first bytes at once, the rest of the
//                              body MS milliseconds later (a stalled body, not a slow start).
//   [[stub:stream-cut]]        streaming: stop after the first content chunk, no usage, no [DONE]
//                              (the HTTP response itself ends cleanly).
//   [[stub:stream-abort]]      streaming: after the first content chunk, destroy the connection
//                              (the chunked body never terminates: a network failure mid-stream).
//   [[stub:chunk-delay=MS]]    streaming: wait MS milliseconds before each chunk after the first
//                              (role) chunk, so a client can see chunks arrive over time. The
//                              recorded response has `writes` (Date.now() of each chunk written)
//                              and `endedAt`.
//   [[stub:tool-call=NAME]]    answer with a call of tool NAME instead of text: message.tool_calls
//                              [{id (9 chars of [a-zA-Z0-9], as Mistral issues), type "function",
//                              function {name, arguments}, index 0}], content "", finish_reason
//                              "tool_calls"; streamed as one tool_calls delta. Only while the
//                              conversation has no tool result after the last user message: once
//                              the client sends the tool's answer, the stub answers in text
//                              `Stub answer from <id> with tool result: <tool content, 60 chars>`.
//   [[stub:tool-args=JSON]]    the call's arguments (a JSON object without `]]`; default {}).
//   [[stub:answer=TEXT]]       answer TEXT (up to the closing `]]`).
//   [[stub:tokens=IN,OUT]]     report these usage numbers instead of the computed ones.
//   [[stub:model=ID]]          report this model id in the response.
//   [[stub:finish=REASON]]     finish_reason (default stop).
//   [[stub:fail-model=ALIAS]]  answer 500 only to requests for model ALIAS (e.g. the other
//                              tier's shadow call of a sampled request).
//   [[stub:status-model=ALIAS:N]]  answer HTTP N only to requests for model ALIAS (fallback
//                              tests: one tier fails, the other answers).
//   [[stub:big-answer=BYTES]]  the answer is BYTES bytes of "x" (streamed in 64 KiB pieces).
//   [[stub:chunked]]           a whole answer without Content-Length (chunked transfer).
//   [[stub:body-cut]]          send the headers (with Content-Length) and the first bytes of
//                              the body, then destroy the connection (a body that breaks).
//   [[stub:garbage-sse]]       streaming: a malformed event (`data: {this is not json`) after
//                              the first content chunk; the stream goes on normally.
//
// Judge requests (the gateway's judge of shadow samples: a system message that starts with
// "You are an impartial judge") get a JSON reply {"score_a", "score_b"}: an answer that
// mentions a large model's dated id is graded [[stub:judge-large=N]] (default 9), any other
// [[stub:judge-small=N]] (default 6), wherever the two answers stand. Other markers of the
// embedded query are ignored for judge requests, except:
//   [[stub:judge=garbage]]       the reply is prose, not JSON.
//   [[stub:judge-status=N]]      the judge request gets HTTP N.
//   [[stub:judge-fail-first=N]]  the first N judge requests for this query get HTTP 500.

import http from "node:http";
import { randomBytes } from "node:crypto";
import { pathToFileURL } from "node:url";

/** Alias -> dated id the real API reports (mistral-api.md, 2026-08). */
export const DATED_MODELS = {
  "mistral-small-latest": "mistral-small-2603",
  "mistral-large-latest": "mistral-large-2512",
  "mistral-medium-latest": "mistral-medium-3-5",
  "codestral-latest": "codestral-2508",
};

/** Top-level request fields Mistral's schema accepts; anything else is `extra_forbidden`. */
export const ALLOWED_FIELDS = new Set([
  "model",
  "messages",
  "temperature",
  "top_p",
  "max_tokens",
  "stream",
  "stop",
  "random_seed",
  "response_format",
  "tools",
  "tool_choice",
  "presence_penalty",
  "frequency_penalty",
  "n",
  "prediction",
  "parallel_tool_calls",
  "safe_prompt",
  "prompt_cache_key",
  "reasoning_effort",
  "prompt_mode",
  "metadata",
]);

const ROLES = new Set(["system", "user", "assistant", "tool"]);
const MARKER_RE = /\[\[stub:([a-z-]+)(?:=(.*?))?\]\]/g;

/** Parses the [[stub:...]] markers of one text into {name: value}. */
export function parseMarkers(text) {
  const markers = {};
  if (typeof text !== "string") return markers;
  for (const m of text.matchAll(MARKER_RE)) markers[m[1]] = m[2] === undefined ? true : m[2];
  return markers;
}

/** The text with all markers removed. */
export function stripMarkers(text) {
  return typeof text === "string" ? text.replace(MARKER_RE, "").trim() : "";
}

/** Text of a message content (string, null, or array of chunks). */
export function contentText(content) {
  if (typeof content === "string") return content;
  if (Array.isArray(content)) {
    return content
      .map((c) => (typeof c?.text === "string" ? c.text : typeof c?.thinking === "string" ? c.thinking : ""))
      .join("");
  }
  return "";
}

/** Token estimate used for all usage numbers: ceil(chars / 4), at least 1. */
export function countTokens(text) {
  return Math.max(1, Math.ceil([...text].length / 4));
}

/** The dated id the stub reports for a requested model. */
export function datedModel(model) {
  return DATED_MODELS[model] ?? model;
}

function lastUserContent(messages) {
  for (let i = messages.length - 1; i >= 0; i--) {
    if (messages[i]?.role === "user") return contentText(messages[i].content);
  }
  return "";
}

/**
 * What the stub will answer to a valid request body, ignoring fault markers:
 * {model, answer, usage: {prompt_tokens, completion_tokens, total_tokens}, markers}.
 */
export function expectedCompletion(body) {
  const messages = body.messages;
  const last = lastUserContent(messages);
  const markers = parseMarkers(last);
  const model = typeof markers.model === "string" ? markers.model : datedModel(body.model);
  const toolResults = toolResultsAfterLastUser(messages);
  let toolCall = null;
  if (typeof markers["tool-call"] === "string" && toolResults.length === 0) {
    toolCall = { name: markers["tool-call"], arguments: typeof markers["tool-args"] === "string" ? markers["tool-args"] : "{}" };
  }
  const answer = toolCall
    ? ""
    : markers["big-answer"] !== undefined
      ? "x".repeat(Number(markers["big-answer"]) || 0)
      : typeof markers.answer === "string"
      ? markers.answer
      : toolResults.length
        ? `Stub answer from ${model} with tool result: ${toolResults.join(" | ").slice(0, 60)}`
        : `Stub answer from ${model} to: ${stripMarkers(last).slice(0, 60)}`;
  const promptChars = messages.reduce((n, m) => n + [...contentText(m.content)].length, 0);
  let prompt_tokens = Math.max(1, Math.ceil(promptChars / 4));
  let completion_tokens = toolCall ? countTokens(toolCall.name + toolCall.arguments) : countTokens(answer);
  if (typeof markers.tokens === "string") {
    const [a, b] = markers.tokens.split(",").map((s) => Number.parseInt(s, 10));
    if (Number.isInteger(a) && Number.isInteger(b)) [prompt_tokens, completion_tokens] = [a, b];
  }
  return {
    model,
    answer,
    toolCall,
    usage: { prompt_tokens, completion_tokens, total_tokens: prompt_tokens + completion_tokens },
    markers,
  };
}

/** Contents of the tool messages that follow the last user message. */
export function toolResultsAfterLastUser(messages) {
  const out = [];
  for (let i = messages.length - 1; i >= 0; i--) {
    const m = messages[i];
    if (m?.role === "user") break;
    if (m?.role === "tool") out.unshift(contentText(m.content));
  }
  return out;
}

/** Whether a request is the gateway's judge of a shadow sample. */
export function isJudgeRequest(body) {
  const first = body?.messages?.[0];
  return first?.role === "system" && contentText(first.content).startsWith("You are an impartial judge");
}

/** The two answers of a judge prompt: {a, b}. */
export function judgeAnswers(userText) {
  const a = /\[Answer A\]\n([\s\S]*?)\n\n\[Answer B\]\n/.exec(userText);
  const b = /\[Answer B\]\n([\s\S]*)$/.exec(userText);
  return { a: a ? a[1] : "", b: b ? b[1] : "" };
}

/** The stub judge's reply to a judge prompt: {content} or {status}. */
function judgeReply(userText, markers, failCounts) {
  if (markers["judge-status"] !== undefined) return { status: Number(markers["judge-status"]) };
  if (markers["judge-fail-first"] !== undefined) {
    const key = `judge:${userText}`;
    const n = failCounts.get(key) ?? 0;
    failCounts.set(key, n + 1);
    if (n < Number(markers["judge-fail-first"])) return { status: 500 };
  }
  if (markers.judge === "garbage") return { content: "I am sorry, I cannot grade these answers." };
  const large = Number(markers["judge-large"] ?? 9);
  const small = Number(markers["judge-small"] ?? 6);
  const grade = (text) => (/mistral-large|large-\d{4}/.test(text) ? large : small);
  const { a, b } = judgeAnswers(userText);
  return { content: JSON.stringify({ score_a: grade(a), score_b: grade(b) }) };
}

/** Mistral's tool-call id form: exactly 9 characters of [a-zA-Z0-9]. */
export const MISTRAL_TOOL_CALL_ID = /^[a-zA-Z0-9]{9}$/;

/** A fresh tool-call id in Mistral's form. */
export function mistralToolCallId() {
  const alphabet = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
  return [...randomBytes(9)].map((b) => alphabet[b % alphabet.length]).join("");
}

/** Mistral-style validation; returns null or a list of pydantic-like error details. */
export function validateBody(body) {
  if (body === null || typeof body !== "object" || Array.isArray(body)) {
    return [{ type: "model_attributes_type", loc: ["body"], msg: "Input should be a valid dictionary or object to extract fields from", input: body }];
  }
  const errors = [];
  for (const key of Object.keys(body)) {
    if (!ALLOWED_FIELDS.has(key)) {
      errors.push({ type: "extra_forbidden", loc: ["body", key], msg: "Extra inputs are not permitted", input: body[key] });
    }
  }
  if (!("model" in body)) errors.push({ type: "missing", loc: ["body", "model"], msg: "Field required", input: body });
  else if (typeof body.model !== "string" || body.model === "") {
    errors.push({ type: "string_type", loc: ["body", "model"], msg: "Input should be a valid string", input: body.model });
  }
  if (!("messages" in body)) {
    errors.push({ type: "missing", loc: ["body", "messages"], msg: "Field required", input: body });
  } else if (!Array.isArray(body.messages) || body.messages.length === 0) {
    errors.push({ type: "list_type", loc: ["body", "messages"], msg: "Input should be a non-empty list", input: body.messages });
  } else {
    body.messages.forEach((m, i) => {
      if (m === null || typeof m !== "object" || !ROLES.has(m.role)) {
        errors.push({ type: "union_tag_invalid", loc: ["body", "messages", i], msg: "Input tag does not match any of the expected tags: 'system', 'user', 'assistant', 'tool'", input: m });
      } else if (!(m.content === null || m.content === undefined || typeof m.content === "string" || Array.isArray(m.content))) {
        errors.push({ type: "string_type", loc: ["body", "messages", i, "content"], msg: "Input should be a valid string", input: m.content });
      }
      if (m && typeof m === "object" && m.role === "assistant" && Array.isArray(m.tool_calls)) {
        m.tool_calls.forEach((call, j) => {
          if (call?.id !== undefined && call?.id !== null && !(typeof call.id === "string" && MISTRAL_TOOL_CALL_ID.test(call.id))) {
            errors.push({ type: "value_error", loc: ["body", "messages", i, "tool_calls", j, "id"], msg: "Value error, Tool call id has to be a string of length 9 with only a-z, A-Z, 0-9", input: call.id });
          }
        });
      }
      if (m && typeof m === "object" && m.role === "tool" && m.tool_call_id !== undefined && m.tool_call_id !== null) {
        if (!(typeof m.tool_call_id === "string" && MISTRAL_TOOL_CALL_ID.test(m.tool_call_id))) {
          errors.push({ type: "value_error", loc: ["body", "messages", i, "tool_call_id"], msg: "Value error, Tool call id has to be a string of length 9 with only a-z, A-Z, 0-9", input: m.tool_call_id });
        }
      }
    });
  }
  const num = (k, lo, hi) => {
    if (body[k] === undefined || body[k] === null) return;
    if (typeof body[k] !== "number" || body[k] < lo || body[k] > hi) {
      errors.push({ type: "less_than_equal", loc: ["body", k], msg: `Input should be a number in [${lo}, ${hi}]`, input: body[k] });
    }
  };
  num("temperature", 0, 1.5);
  num("top_p", 0, 1);
  num("presence_penalty", -2, 2);
  num("frequency_penalty", -2, 2);
  for (const k of ["max_tokens", "random_seed", "n"]) {
    if (body[k] !== undefined && body[k] !== null && !(Number.isInteger(body[k]) && body[k] >= 0)) {
      errors.push({ type: "int_type", loc: ["body", k], msg: "Input should be a valid non-negative integer", input: body[k] });
    }
  }
  if (body.stream !== undefined && body.stream !== null && typeof body.stream !== "boolean") {
    errors.push({ type: "bool_type", loc: ["body", "stream"], msg: "Input should be a valid boolean", input: body.stream });
  }
  return errors.length ? errors : null;
}

const ERROR_TYPES = {
  400: "invalid_request_error",
  401: "authentication_error",
  403: "permission_error",
  404: "not_found_error",
  422: "invalid_request_error",
  429: "rate_limit_error",
};

function errorBody(status, message, kind = "documented") {
  switch (kind) {
    case "detail":
      return { detail: message };
    case "message":
      return { message };
    case "message-object":
      return { object: "error", message: { detail: [{ type: "value_error", msg: message }] }, type: "invalid_request_error", param: null, code: null };
    default:
      return { object: "error", message, type: ERROR_TYPES[status] ?? "internal_server_error", param: null, code: String(status === 429 ? 1300 : status >= 500 ? 3000 : 1000 + (status % 100)) };
  }
}

function sleep(ms, signal) {
  return new Promise((resolve) => {
    if (signal.aborted) return resolve();
    const t = setTimeout(resolve, ms);
    signal.addEventListener("abort", () => {
      clearTimeout(t);
      resolve();
    }, { once: true });
  });
}

/**
 * Starts the stub on 127.0.0.1. Options: port (0 = any free port), host, apiKey (require this
 * exact key; default: any non-empty bearer), maxRecorded (recorded requests kept, default 10000),
 * verbose (log one line per request).
 * Returns {url, port, requests, reset(), close(), lastRequest(), chatRequests()}.
 */
export async function startMistralStub({ port = 0, host = "127.0.0.1", apiKey, maxRecorded = 10000, verbose = false } = {}) {
  const requests = [];
  const failCounts = new Map();
  let seq = 0;

  const record = (entry) => {
    requests.push(entry);
    if (requests.length > maxRecorded) requests.splice(0, requests.length - maxRecorded);
  };

  const server = http.createServer(async (req, res) => {
    const chunks = [];
    for await (const c of req) chunks.push(c);
    const rawBody = Buffer.concat(chunks).toString("utf8");
    const url = new URL(req.url, "http://stub");
    const entry = {
      seq: ++seq,
      at: Date.now(),
      method: req.method,
      path: url.pathname,
      headers: { ...req.headers },
      rawBody,
      body: undefined,
      response: undefined,
    };
    const abort = new AbortController();
    res.on("close", () => abort.abort());

    const send = (status, payload, headers = {}) => {
      const text = typeof payload === "string" ? payload : JSON.stringify(payload);
      entry.response = { status, body: payload, headers };
      if (res.destroyed) return;
      res.writeHead(status, {
        "content-type": typeof payload === "string" ? "text/plain; charset=utf-8" : "application/json",
        "content-length": Buffer.byteLength(text),
        ...headers,
      });
      res.end(text);
      if (verbose) console.log(`${req.method} ${url.pathname} -> ${status}`);
    };

    try {
      if (url.pathname === "/__stub/requests" && req.method === "GET") {
        return send(200, requests.filter((r) => !r.path.startsWith("/__stub/")));
      }
      if (url.pathname === "/__stub/reset" && req.method === "POST") {
        requests.length = 0;
        failCounts.clear();
        return send(200, { ok: true });
      }
      record(entry);
      if (url.pathname === "/v1/models" && req.method === "GET") {
        return send(200, {
          object: "list",
          data: Object.entries(DATED_MODELS).map(([alias, id]) => ({ id: alias, object: "model", created: 0, owned_by: "mistralai", aliases: [id] })),
        });
      }
      if (url.pathname !== "/v1/chat/completions") {
        return send(404, { detail: "Not Found" });
      }
      if (req.method !== "POST") return send(405, { detail: "Method Not Allowed" });

      const auth = req.headers.authorization ?? "";
      const m = /^Bearer (.+)$/.exec(auth);
      if (!m || m[1].trim() === "" || (apiKey !== undefined && m[1] !== apiKey)) {
        return send(401, errorBody(401, "Unauthorized"));
      }

      let body;
      try {
        body = JSON.parse(rawBody);
      } catch {
        return send(422, { detail: [{ type: "json_invalid", loc: ["body", 0], msg: "JSON decode error", input: {} }] });
      }
      entry.body = body;
      const invalid = validateBody(body);
      if (invalid) return send(422, { detail: invalid });

      const last = lastUserContent(body.messages);
      const markers = parseMarkers(last);
      if (isJudgeRequest(body)) {
        entry.judge = true;
        const reply = judgeReply(last, markers, failCounts);
        if (reply.status) return send(reply.status, errorBody(reply.status, "Internal server error (stub judge)"));
        const usage = { prompt_tokens: countTokens(body.messages.map((x) => contentText(x.content)).join("")), completion_tokens: countTokens(reply.content) };
        usage.total_tokens = usage.prompt_tokens + usage.completion_tokens;
        return send(200, {
          id: randomBytes(16).toString("hex"),
          object: "chat.completion",
          created: Math.floor(Date.now() / 1000),
          model: datedModel(body.model),
          choices: [{ index: 0, message: { role: "assistant", content: reply.content }, finish_reason: "stop" }],
          usage,
        });
      }
      if (typeof markers["fail-model"] === "string" && markers["fail-model"] === body.model) {
        return send(500, errorBody(500, "Internal server error (stub, failing model)"));
      }
      if (typeof markers["status-model"] === "string") {
        const [alias, code] = markers["status-model"].split(":");
        if (alias === body.model) {
          const status = Number(code) || 500;
          const headers = status === 429 ? { "retry-after": String(markers["retry-after"] ?? 1) } : {};
          return send(status, errorBody(status, `Stub failure for model ${alias}`), headers);
        }
      }
      if (markers.delay !== undefined) {
        await sleep(Number(markers.delay) || 0, abort.signal);
        if (abort.signal.aborted) {
          entry.response = { status: 0, body: "client went away", headers: {} };
          return;
        }
      }

      let failStatus = markers.status !== undefined ? Number(markers.status) : undefined;
      if (markers["fail-first"] !== undefined) {
        const n = failCounts.get(last) ?? 0;
        failCounts.set(last, n + 1);
        failStatus = n < Number(markers["fail-first"]) ? (failStatus ?? 500) : undefined;
      }
      if (failStatus !== undefined && failStatus !== 200) {
        const headers = {};
        if ((failStatus === 429 || failStatus === 503) && markers["retry-after"] !== "none") headers["retry-after"] = String(markers["retry-after"] ?? 1);
        let msg = failStatus === 429 ? "Requests rate limit exceeded" : failStatus >= 500 ? "Internal server error (stub)" : "Invalid request (stub)";
        if (markers["echo-key"] === "bare") msg += ` (key ${m[1]} is over its quota)`;
        else if (markers["echo-key"]) msg += ` [received authorization: ${auth}]`;
        return send(failStatus, errorBody(failStatus, msg, markers["error-body"]), headers);
      }
      if (markers.garbage) return send(200, "<html><body>502 Bad Gateway (not JSON)</body></html>");

      const expected = expectedCompletion(body);
      const id = randomBytes(16).toString("hex");
      const created = Math.floor(Date.now() / 1000);
      const finish = typeof markers.finish === "string" ? markers.finish : "stop";
      const rl = {
        "x-ratelimit-remaining-req-minute": "59",
        "x-ratelimit-remaining-tokens-minute": "499000",
      };

      if (markers["bad-shape"]) {
        return send(200, { id, object: "chat.completion", created, model: expected.model, usage: expected.usage });
      }

      if (body.stream === true) {
        const writes = [];
        const toolCallId = expected.toolCall ? mistralToolCallId() : undefined;
        entry.response = { status: 200, stream: true, expected, writes, endedAt: undefined, toolCallId };
        res.writeHead(200, { "content-type": "text/event-stream", "cache-control": "no-cache", ...rl });
        const chunk = (delta, finish_reason = null, usage = null) =>
          `data: ${JSON.stringify({ id, object: "chat.completion.chunk", created, model: expected.model, choices: [{ index: 0, delta, finish_reason }], ...(usage ? { usage } : {}) })}\n\n`;
        const chunkDelay = Number(markers["chunk-delay"]) || 0;
        const write = async (text, { wait = true } = {}) => {
          if (wait && chunkDelay > 0) await sleep(chunkDelay, abort.signal);
          if (abort.signal.aborted || res.destroyed) return false;
          res.write(text);
          writes.push(Date.now());
          return true;
        };
        const pieceSize = markers["big-answer"] !== undefined ? 65536 : 16;
        const pieces = expected.toolCall
          ? [null]
          : expected.answer.match(new RegExp(`.{1,${pieceSize}}`, "gs")) ?? [""];
        const contentDelta = (p) =>
          p === null
            ? { content: "", tool_calls: [{ id: toolCallId, type: "function", function: { name: expected.toolCall.name, arguments: expected.toolCall.arguments }, index: 0 }] }
            : { content: p };
        await write(chunk({ role: "assistant", content: "" }), { wait: false });
        if (markers["stream-cut"] || markers["stream-abort"]) {
          if (await write(chunk(contentDelta(pieces[0])))) {
            if (markers["stream-abort"]) {
              // Give the bytes a moment to leave, then kill the socket mid-body.
              setTimeout(() => res.destroy(), 50);
              entry.response.endedAt = Date.now();
              return;
            }
            res.end();
          }
          entry.response.endedAt = Date.now();
          return;
        }
        const finishReason = expected.toolCall ? "tool_calls" : finish;
        for (let i = 0; i < pieces.length; i++) {
          if (i === 1 && markers["garbage-sse"]) {
            if (!(await write("data: {this is not json\n\n", { wait: false }))) return;
          }
          const lastPiece = i === pieces.length - 1;
          const text = lastPiece
            ? chunk(contentDelta(pieces[i]), finishReason, markers["no-usage"] ? null : expected.usage)
            : chunk(contentDelta(pieces[i]));
          if (!(await write(text))) {
            entry.response.endedAt = Date.now();
            entry.response.clientGone = true;
            return;
          }
        }
        res.end("data: [DONE]\n\n");
        entry.response.endedAt = Date.now();
        return;
      }

      const response = {
        id,
        object: "chat.completion",
        created,
        model: expected.model,
        choices: [{ index: 0, message: { role: "assistant", content: expected.answer, tool_calls: null }, finish_reason: finish }],
      };
      if (expected.toolCall) {
        response.choices[0].message.tool_calls = [
          { id: mistralToolCallId(), type: "function", function: { name: expected.toolCall.name, arguments: expected.toolCall.arguments }, index: 0 },
        ];
        response.choices[0].finish_reason = "tool_calls";
      }
      if (!markers["no-usage"]) response.usage = expected.usage;
      if (markers["body-cut"]) {
        const text = JSON.stringify(response);
        entry.response = { status: 200, body: response, headers: rl, bodyCut: true };
        res.writeHead(200, { "content-type": "application/json", "content-length": Buffer.byteLength(text), ...rl });
        res.write(text.slice(0, 40));
        setTimeout(() => res.destroy(), 50);
        return;
      }
      if (markers.chunked) {
        const text = JSON.stringify(response);
        entry.response = { status: 200, body: response, headers: rl, chunked: true };
        res.writeHead(200, { "content-type": "application/json", ...rl });
        for (let i = 0; i < text.length; i += 65536) {
          if (res.destroyed) return;
          if (!res.write(text.slice(i, i + 65536))) await new Promise((r) => res.once("drain", r));
        }
        res.end();
        return;
      }
      if (markers["body-delay"] !== undefined) {
        // Headers and the first bytes now, the rest of the body after the delay.
        const text = JSON.stringify(response);
        entry.response = { status: 200, body: response, headers: rl, bodyDelayed: true };
        res.writeHead(200, { "content-type": "application/json", "content-length": Buffer.byteLength(text), ...rl });
        res.write(text.slice(0, 10));
        await sleep(Number(markers["body-delay"]) || 0, abort.signal);
        if (!res.destroyed) res.end(text.slice(10));
        return;
      }
      return send(200, response, rl);
    } catch (err) {
      if (!res.headersSent) send(500, errorBody(500, `stub failure: ${err.message}`));
      else res.destroy();
    }
  });
  const stub = await listenStub(server, { host, port, requests, onReset: () => failCounts.clear() });
  return {
    ...stub,
    /** Recorded POST /v1/chat/completions requests. */
    chatRequests: () => requests.filter((r) => r.path === "/v1/chat/completions" && r.method === "POST"),
  };
}

/**
 * Starts a stand-in's server on host:port and returns the handle every stand-in shares:
 * {url, port, server, requests, lastRequest(), reset(), close()}. `onReset` clears what a
 * stand-in keeps besides the recorded requests.
 */
export async function listenStub(server, { host, port, requests, onReset = () => {} }) {
  server.keepAliveTimeout = 65_000;
  await new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, host, resolve);
  });
  const actualPort = server.address().port;
  return {
    url: `http://${host}:${actualPort}`,
    port: actualPort,
    server,
    requests,
    lastRequest: () => requests[requests.length - 1],
    reset() {
      requests.length = 0;
      onReset();
    },
    close() {
      return new Promise((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections?.();
      });
    },
  };
}

function parseArgs(argv) {
  const out = { port: 8790, host: "127.0.0.1", verbose: false };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === "--port") out.port = Number(argv[++i]);
    else if (a === "--host") out.host = argv[++i];
    else if (a === "--key") out.apiKey = argv[++i];
    else if (a === "--verbose") out.verbose = true;
    else if (a === "--help" || a === "-h") {
      console.log("usage: node tests/e2e/mistral-stub.mjs [--port 8790] [--host 127.0.0.1] [--key KEY] [--verbose]");
      process.exit(0);
    } else {
      console.error(`unknown argument: ${a}`);
      process.exit(2);
    }
  }
  return out;
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? "").href) {
  const opts = parseArgs(process.argv.slice(2));
  const stub = await startMistralStub({ ...opts, maxRecorded: 1000 });
  console.log(`Mistral stub listening on ${stub.url}`);
  const shutdown = async () => {
    await stub.close();
    process.exit(0);
  };
  process.on("SIGINT", shutdown);
  process.on("SIGTERM", shutdown);
}
