// A local stand-in for Anthropic's Messages API, used by the end-to-end tests of the
// `anthropic` backend kind.
//
//   import { startAnthropicStub } from "./anthropic-stub.mjs";
//   const stub = await startAnthropicStub();      // stub.url, stub.messageRequests(), stub.close()
//
//   node tests/e2e/anthropic-stub.mjs --port 8792 [--key KEY]
//
// Wire format (Messages API, anthropic-version 2023-06-01):
//   POST /v1/messages   `x-api-key` required (any non-empty key, or exactly `apiKey`), else 401;
//                       `anthropic-version` header required, else 400. Validation like
//                       Anthropic's: model, max_tokens (integer >= 1) and messages required;
//                       unknown top-level fields (`seed`, `stop`, `n`, `response_format`...)
//                       400 "FIELD: Extra inputs are not permitted"; message roles only
//                       user/assistant (a "system" role is a 400: system goes in `system`);
//                       temperature in [0, 1]; a tool_result block must answer a tool_use id of
//                       the assistant message just before it.
//   Errors: {"type": "error", "error": {"type", "message"}}.
//
// Answers: the same deterministic text and [[stub:...]] markers as the Mistral stand-in (see
// mistral-stub.mjs), read from the last user message that has text: status, delay, answer,
// tokens, model, no-usage, tool-call, tool-args, chunk-delay, stream-cut, stream-abort, plus
//   [[stub:stream-error]]   streaming: after the first text delta, an `event: error` with an
//                           overloaded_error, then the stream ends (as Anthropic does).
// As Anthropic does it:
//   - model: claude-haiku-4-5 -> claude-haiku-4-5-20251001, claude-sonnet-4-5 ->
//     claude-sonnet-4-5-20250929 (others echoed);
//   - usage {input_tokens: ceil(chars of system + all text / 4), output_tokens};
//   - a tool call is a {type: "tool_use", id: "toolu_...", name, input} block after a short text
//     block, stop_reason "tool_use"; when the last user message carries tool_result blocks the
//     answer is `Stub answer from <id> with tool result: <results, 60 chars>`;
//   - streams: message_start (input usage), content_block_start/delta/stop per block (a ping
//     after the first start), message_delta (stop_reason, output usage), message_stop.

import http from "node:http";
import { randomBytes } from "node:crypto";
import { pathToFileURL } from "node:url";
import { countTokens, listenStub, parseMarkers, stripMarkers } from "./mistral-stub.mjs";

export const ANTHROPIC_DATED_MODELS = {
  "claude-haiku-4-5": "claude-haiku-4-5-20251001",
  "claude-sonnet-4-5": "claude-sonnet-4-5-20250929",
};

export const ANTHROPIC_FIELDS = new Set([
  "model", "messages", "max_tokens", "system", "temperature", "top_p", "top_k", "stop_sequences",
  "stream", "tools", "tool_choice", "metadata", "thinking", "service_tier", "container", "mcp_servers",
]);

const BLOCK_TYPES = new Set(["text", "image", "document", "tool_use", "tool_result", "thinking", "redacted_thinking"]);

const alnum = (n) => {
  const a = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
  return [...randomBytes(n)].map((b) => a[b % a.length]).join("");
};

/** Blocks of a message content (a string is one text block). */
export function blocks(content) {
  if (typeof content === "string") return [{ type: "text", text: content }];
  return Array.isArray(content) ? content : [];
}

/** Text of the blocks (text blocks and tool_result contents). */
function blocksText(content) {
  return blocks(content)
    .map((b) => (b.type === "text" ? b.text ?? "" : b.type === "tool_result" ? (typeof b.content === "string" ? b.content : blocksText(b.content)) : b.type === "tool_use" ? JSON.stringify(b.input ?? {}) : ""))
    .join("");
}

function anthropicError(type, message) {
  return { type: "error", error: { type, message } };
}

/** Anthropic-style validation: null or [status, error body]. */
export function validateAnthropicBody(body) {
  const bad = (message) => [400, anthropicError("invalid_request_error", message)];
  if (body === null || typeof body !== "object" || Array.isArray(body)) return bad("Input should be an object");
  for (const k of Object.keys(body)) if (!ANTHROPIC_FIELDS.has(k)) return bad(`${k}: Extra inputs are not permitted`);
  if (typeof body.model !== "string" || !body.model) return bad("model: Field required");
  if (!Number.isInteger(body.max_tokens) || body.max_tokens < 1) return bad("max_tokens: Field required");
  if (!Array.isArray(body.messages) || body.messages.length === 0) return bad("messages: Field required");
  if (body.system !== undefined && typeof body.system !== "string" && !Array.isArray(body.system)) return bad("system: Input should be a valid string");
  if (body.temperature !== undefined && (typeof body.temperature !== "number" || body.temperature < 0 || body.temperature > 1)) {
    return bad("temperature: Input should be less than or equal to 1");
  }
  if (body.stop_sequences !== undefined && !Array.isArray(body.stop_sequences)) return bad("stop_sequences: Input should be a valid list");
  for (const [i, m] of body.messages.entries()) {
    if (!m || (m.role !== "user" && m.role !== "assistant")) {
      return bad(`messages.${i}.role: Input should be 'user' or 'assistant'`);
    }
    if (typeof m.content !== "string" && !Array.isArray(m.content)) return bad(`messages.${i}.content: Input should be a valid list`);
    for (const [j, b] of blocks(m.content).entries()) {
      if (!b || !BLOCK_TYPES.has(b.type)) return bad(`messages.${i}.content.${j}: Input tag '${b?.type}' does not match any of the expected tags`);
      if (b.type === "tool_use" && (typeof b.id !== "string" || typeof b.name !== "string" || typeof b.input !== "object" || b.input === null || Array.isArray(b.input))) {
        return bad(`messages.${i}.content.${j}: tool_use blocks need an id, a name and an object input`);
      }
      if (b.type === "tool_result") {
        const prev = body.messages[i - 1];
        const ids = prev?.role === "assistant" ? blocks(prev.content).filter((x) => x.type === "tool_use").map((x) => x.id) : [];
        if (m.role !== "user" || !ids.includes(b.tool_use_id)) {
          return bad(`messages.${i}.content.${j}: unexpected \`tool_use_id\` found in \`tool_result\` blocks: ${b.tool_use_id}. Each \`tool_result\` block must have a corresponding \`tool_use\` block in the previous message.`);
        }
      }
    }
  }
  return null;
}

/** What the stub answers to a valid body: {model, answer, toolCall, toolResults, usage, markers}. */
export function expectedAnthropicMessage(body) {
  const msgs = body.messages;
  let lastText = "";
  for (let i = msgs.length - 1; i >= 0; i--) {
    const texts = msgs[i].role === "user" ? blocks(msgs[i].content).filter((b) => b.type === "text") : [];
    if (texts.length) {
      lastText = texts.map((b) => b.text).join("");
      break;
    }
  }
  const markers = parseMarkers(lastText);
  const model = typeof markers.model === "string" ? markers.model : ANTHROPIC_DATED_MODELS[body.model] ?? body.model;
  const final = msgs[msgs.length - 1];
  const toolResults = final.role === "user"
    ? blocks(final.content).filter((b) => b.type === "tool_result").map((b) => (typeof b.content === "string" ? b.content : blocksText(b.content)))
    : [];
  const toolCall = typeof markers["tool-call"] === "string" && toolResults.length === 0
    ? { name: markers["tool-call"], input: JSON.parse(typeof markers["tool-args"] === "string" ? markers["tool-args"] : "{}") }
    : null;
  const answer = toolCall
    ? "Let me check."
    : typeof markers.answer === "string"
      ? markers.answer
      : toolResults.length
        ? `Stub answer from ${model} with tool result: ${toolResults.join(" | ").slice(0, 60)}`
        : `Stub answer from ${model} to: ${stripMarkers(lastText).slice(0, 60)}`;
  const system = typeof body.system === "string" ? body.system : Array.isArray(body.system) ? body.system.map((b) => b.text ?? "").join("") : "";
  const chars = [...system].length + msgs.reduce((n, m) => n + [...blocksText(m.content)].length, 0);
  let input_tokens = Math.max(1, Math.ceil(chars / 4));
  let output_tokens = countTokens(answer + (toolCall ? toolCall.name + JSON.stringify(toolCall.input) : ""));
  if (typeof markers.tokens === "string") {
    const [a, b] = markers.tokens.split(",").map((s) => Number.parseInt(s, 10));
    if (Number.isInteger(a) && Number.isInteger(b)) [input_tokens, output_tokens] = [a, b];
  }
  return { model, answer, toolCall, toolResults, usage: { input_tokens, output_tokens }, markers };
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

const ERROR_TYPES = { 400: "invalid_request_error", 401: "authentication_error", 403: "permission_error", 404: "not_found_error", 413: "request_too_large", 429: "rate_limit_error", 500: "api_error", 529: "overloaded_error" };

/**
 * Starts the stub on 127.0.0.1. Options: port, host, apiKey (exact key required; default any
 * non-empty x-api-key), verbose.
 * Returns {url, port, requests, messageRequests(), lastRequest(), reset(), close()}.
 */
export async function startAnthropicStub({ port = 0, host = "127.0.0.1", apiKey, maxRecorded = 10000, verbose = false } = {}) {
  const requests = [];
  let seq = 0;
  const server = http.createServer(async (req, res) => {
    const chunks = [];
    for await (const c of req) chunks.push(c);
    const rawBody = Buffer.concat(chunks).toString("utf8");
    const url = new URL(req.url, "http://stub");
    const entry = { seq: ++seq, at: Date.now(), method: req.method, path: url.pathname, headers: { ...req.headers }, rawBody, body: undefined, response: undefined };
    const abort = new AbortController();
    res.on("close", () => abort.abort());
    const send = (status, payload, headers = {}) => {
      const text = JSON.stringify(payload);
      entry.response = { status, body: payload, headers };
      if (res.destroyed) return;
      res.writeHead(status, { "content-type": "application/json", "content-length": Buffer.byteLength(text), "request-id": `req_${alnum(20)}`, ...headers });
      res.end(text);
      if (verbose) console.log(`${req.method} ${url.pathname} -> ${status}`);
    };
    try {
      if (url.pathname === "/__stub/requests" && req.method === "GET") return send(200, requests);
      requests.push(entry);
      if (requests.length > maxRecorded) requests.splice(0, requests.length - maxRecorded);
      if (url.pathname !== "/v1/messages") return send(404, anthropicError("not_found_error", "Not found"));
      if (req.method !== "POST") return send(405, anthropicError("invalid_request_error", "Method not allowed"));
      const key = req.headers["x-api-key"];
      if (typeof key !== "string" || key.trim() === "" || (apiKey !== undefined && key !== apiKey)) {
        return send(401, anthropicError("authentication_error", "invalid x-api-key"));
      }
      if (!req.headers["anthropic-version"]) return send(400, anthropicError("invalid_request_error", "anthropic-version: header is required"));
      let body;
      try {
        body = JSON.parse(rawBody);
      } catch {
        return send(400, anthropicError("invalid_request_error", "There was an error parsing the body"));
      }
      entry.body = body;
      const invalid = validateAnthropicBody(body);
      if (invalid) return send(invalid[0], invalid[1]);

      const expected = expectedAnthropicMessage(body);
      const { markers } = expected;
      if (markers.delay !== undefined) {
        await sleep(Number(markers.delay) || 0, abort.signal);
        if (abort.signal.aborted) {
          entry.response = { status: 0, body: "client went away" };
          return;
        }
      }
      if (markers.status !== undefined && Number(markers.status) !== 200) {
        const status = Number(markers.status);
        const headers = status === 429 ? { "retry-after": String(markers["retry-after"] ?? 1) } : {};
        const msg = status === 529 ? "Overloaded" : status === 429 ? "Number of request tokens has exceeded your per-minute rate limit" : status >= 500 ? "Internal server error" : "Invalid request (stub)";
        return send(status, anthropicError(ERROR_TYPES[status] ?? "api_error", msg), headers);
      }

      const id = `msg_${alnum(24)}`;
      const toolUseId = expected.toolCall ? `toolu_${alnum(24)}` : undefined;
      const stopReason = expected.toolCall ? "tool_use" : "end_turn";
      const content = [{ type: "text", text: expected.answer }];
      if (expected.toolCall) content.push({ type: "tool_use", id: toolUseId, name: expected.toolCall.name, input: expected.toolCall.input });

      if (body.stream === true) {
        const writes = [];
        entry.response = { status: 200, stream: true, expected, writes, toolUseId, endedAt: undefined };
        res.writeHead(200, { "content-type": "text/event-stream; charset=utf-8", "cache-control": "no-cache" });
        const event = (name, data) => `event: ${name}\ndata: ${JSON.stringify({ type: name, ...data })}\n\n`;
        const chunkDelay = Number(markers["chunk-delay"]) || 0;
        const write = async (text, wait = true) => {
          if (wait && chunkDelay > 0) await sleep(chunkDelay, abort.signal);
          if (abort.signal.aborted || res.destroyed) return false;
          res.write(text);
          writes.push(Date.now());
          return true;
        };
        const events = [];
        content.forEach((block, index) => {
          if (block.type === "text") {
            events.push(event("content_block_start", { index, content_block: { type: "text", text: "" } }));
            for (const p of block.text.match(/.{1,16}/gs) ?? [""]) events.push(event("content_block_delta", { index, delta: { type: "text_delta", text: p } }));
          } else {
            events.push(event("content_block_start", { index, content_block: { type: "tool_use", id: block.id, name: block.name, input: {} } }));
            for (const p of JSON.stringify(block.input).match(/.{1,8}/gs) ?? []) {
              events.push(event("content_block_delta", { index, delta: { type: "input_json_delta", partial_json: p } }));
            }
          }
          events.push(event("content_block_stop", { index }));
        });
        const outputUsage = markers["no-usage"] ? {} : { usage: { output_tokens: expected.usage.output_tokens } };
        events.push(event("message_delta", { delta: { stop_reason: stopReason, stop_sequence: null }, ...outputUsage }));
        events.push(event("message_stop", {}));
        const start = event("message_start", {
          message: { id, type: "message", role: "assistant", model: expected.model, content: [], stop_reason: null, stop_sequence: null, usage: { input_tokens: expected.usage.input_tokens, output_tokens: 1 } },
        });
        await write(start, false);
        // events[0] is content_block_start, events[1] the first delta.
        if (markers["stream-cut"] || markers["stream-abort"] || markers["stream-error"]) {
          if ((await write(events[0])) && (await write(event("ping", {}) + events[1]))) {
            if (markers["stream-error"]) {
              res.end(event("error", { error: { type: "overloaded_error", message: "Overloaded" } }));
            } else if (markers["stream-abort"]) setTimeout(() => res.destroy(), 50);
            else res.end();
          }
          entry.response.endedAt = Date.now();
          return;
        }
        for (const [i, e] of events.entries()) {
          if (!(await write(i === 1 ? event("ping", {}) + e : e))) {
            entry.response.clientGone = true;
            entry.response.endedAt = Date.now();
            return;
          }
        }
        res.end();
        entry.response.endedAt = Date.now();
        return;
      }

      const response = { id, type: "message", role: "assistant", model: expected.model, content, stop_reason: stopReason, stop_sequence: null };
      if (!markers["no-usage"]) response.usage = { ...expected.usage, cache_creation_input_tokens: 0, cache_read_input_tokens: 0 };
      return send(200, response);
    } catch (err) {
      if (!res.headersSent) send(500, anthropicError("api_error", `stub failure: ${err.message}`));
      else res.destroy();
    }
  });
  const stub = await listenStub(server, { host, port, requests });
  return {
    ...stub,
    messageRequests: () => requests.filter((r) => r.path === "/v1/messages" && r.method === "POST"),
  };
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? "").href) {
  const args = process.argv.slice(2);
  const opts = { port: 8792 };
  for (let i = 0; i < args.length; i++) {
    if (args[i] === "--port") opts.port = Number(args[++i]);
    else if (args[i] === "--key") opts.apiKey = args[++i];
    else if (args[i] === "--verbose") opts.verbose = true;
    else {
      console.error("usage: node tests/e2e/anthropic-stub.mjs [--port 8792] [--key KEY] [--verbose]");
      process.exit(2);
    }
  }
  const stub = await startAnthropicStub(opts);
  console.log(`Anthropic stub listening on ${stub.url}`);
  const shutdown = async () => {
    await stub.close();
    process.exit(0);
  };
  process.on("SIGINT", shutdown);
  process.on("SIGTERM", shutdown);
}
