// A local stand-in for an OpenAI-compatible chat completions server (OpenAI itself, vLLM,
// Ollama, Together, Groq...), used by the end-to-end tests of the `openai` backend kind.
//
//   import { startOpenAiStub } from "./openai-stub.mjs";
//   const stub = await startOpenAiStub();            // stub.url, stub.chatRequests(), stub.close()
//   const local = await startOpenAiStub({ apiKey: null });   // a keyless local server (Ollama)
//
//   node tests/e2e/openai-stub.mjs --port 8791 [--key KEY | --no-key]
//
// Wire format (OpenAI's chat completions API):
//   POST /v1/chat/completions   `Authorization: Bearer <key>`: any non-empty key, exactly
//                               `apiKey` when one is given, or none at all with apiKey: null
//                               (then an Authorization header is recorded but not checked).
//                               Validation like OpenAI's: model and messages required, roles
//                               system/developer/user/assistant/tool; an unknown top-level field
//                               (Mistral-only `random_seed`, `safe_prompt`...) gets 400
//                               "Unrecognized request argument supplied: FIELD"; `stream_options`
//                               without `stream: true` gets 400 as OpenAI does.
//   GET  /v1/models             the models the stub knows.
//
// Answers: the same deterministic text, token counts and [[stub:...]] markers as the Mistral
// stand-in (see mistral-stub.mjs; markers are read from the last user message): status,
// delay, answer, tokens, model, finish, no-usage, tool-call, tool-args, chunk-delay,
// stream-cut, stream-abort. Differences, as OpenAI does it:
//   - model: gpt-4o-mini -> gpt-4o-mini-2024-07-18, gpt-4o -> gpt-4o-2024-08-06 (others echoed);
//   - error bodies are {"error": {"message", "type", "param", "code"}};
//   - tool-call ids look like `call_` + 24 characters, and request ids are not constrained;
//   - streams end with a chunk carrying finish_reason and an empty delta; usage comes only when
//     the request has stream_options.include_usage, in an extra chunk with `choices: []` (all
//     other chunks then carry "usage": null), then `data: [DONE]`.

import http from "node:http";
import { randomBytes } from "node:crypto";
import { pathToFileURL } from "node:url";
import { contentText, expectedCompletion, listenStub, parseMarkers } from "./mistral-stub.mjs";

/** Alias -> dated id OpenAI reports. */
export const OPENAI_DATED_MODELS = {
  "gpt-4o-mini": "gpt-4o-mini-2024-07-18",
  "gpt-4o": "gpt-4o-2024-08-06",
};

/** Top-level fields OpenAI's chat completions endpoint accepts. */
export const OPENAI_FIELDS = new Set([
  "model", "messages", "audio", "frequency_penalty", "function_call", "functions", "logit_bias",
  "logprobs", "max_completion_tokens", "max_tokens", "metadata", "modalities", "n",
  "parallel_tool_calls", "prediction", "presence_penalty", "prompt_cache_key", "reasoning_effort",
  "response_format", "safety_identifier", "seed", "service_tier", "stop", "store", "stream",
  "stream_options", "temperature", "tool_choice", "tools", "top_logprobs", "top_p", "user",
  "verbosity", "web_search_options",
]);

const ROLES = new Set(["system", "developer", "user", "assistant", "tool"]);

function lastUserContent(messages) {
  for (let i = messages.length - 1; i >= 0; i--) if (messages[i]?.role === "user") return contentText(messages[i].content);
  return "";
}

/** What the stub answers to a valid body (see expectedCompletion in mistral-stub.mjs). */
export function expectedOpenAiCompletion(body) {
  return expectedCompletion({ ...body, model: OPENAI_DATED_MODELS[body.model] ?? body.model });
}

function openAiError(message, type = "invalid_request_error", param = null, code = null) {
  return { error: { message, type, param, code } };
}

const ERROR_TYPES = { 400: "invalid_request_error", 401: "invalid_request_error", 403: "permission_denied", 404: "invalid_request_error", 429: "rate_limit_exceeded" };

/** OpenAI-style validation: null, or [status, error body]. */
export function validateOpenAiBody(body) {
  if (body === null || typeof body !== "object" || Array.isArray(body)) {
    return [400, openAiError("We could not parse the JSON body of your request.")];
  }
  for (const k of Object.keys(body)) {
    if (!OPENAI_FIELDS.has(k)) return [400, openAiError(`Unrecognized request argument supplied: ${k}`)];
  }
  if (typeof body.model !== "string" || body.model === "") return [400, openAiError("you must provide a model parameter", "invalid_request_error", "model")];
  if (!Array.isArray(body.messages) || body.messages.length === 0) {
    return [400, openAiError("Invalid 'messages': empty array. Expected an array with minimum length 1.", "invalid_request_error", "messages", "empty_array")];
  }
  for (const [i, m] of body.messages.entries()) {
    if (!m || typeof m !== "object" || !ROLES.has(m.role)) {
      return [400, openAiError(`Invalid value for 'messages[${i}].role'.`, "invalid_request_error", `messages[${i}].role`, "invalid_value")];
    }
    if (m.role === "tool" && typeof m.tool_call_id !== "string") {
      return [400, openAiError(`Missing required parameter: 'messages[${i}].tool_call_id'.`, "invalid_request_error", `messages[${i}].tool_call_id`, "missing_required_parameter")];
    }
  }
  if (body.stream_options !== undefined && body.stream_options !== null && body.stream !== true) {
    return [400, openAiError("The 'stream_options' parameter is only allowed when 'stream' is enabled.", "invalid_request_error", "stream_options")];
  }
  if (body.temperature !== undefined && (typeof body.temperature !== "number" || body.temperature < 0 || body.temperature > 2)) {
    return [400, openAiError("Invalid 'temperature'", "invalid_request_error", "temperature", "decimal_above_max_value")];
  }
  return null;
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

const alnum = (n) => {
  const a = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
  return [...randomBytes(n)].map((b) => a[b % a.length]).join("");
};

/**
 * Starts the stub on 127.0.0.1. Options: port, host, apiKey (string: require it; undefined: any
 * non-empty bearer; null: no key needed), verbose.
 * Returns {url, port, requests, chatRequests(), lastRequest(), reset(), close()}.
 */
export async function startOpenAiStub({ port = 0, host = "127.0.0.1", apiKey, maxRecorded = 10000, verbose = false } = {}) {
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
      const text = typeof payload === "string" ? payload : JSON.stringify(payload);
      entry.response = { status, body: payload, headers };
      if (res.destroyed) return;
      res.writeHead(status, { "content-type": typeof payload === "string" ? "text/plain" : "application/json", "content-length": Buffer.byteLength(text), ...headers });
      res.end(text);
      if (verbose) console.log(`${req.method} ${url.pathname} -> ${status}`);
    };
    try {
      if (url.pathname === "/__stub/requests" && req.method === "GET") return send(200, requests);
      if (url.pathname === "/__stub/reset" && req.method === "POST") {
        requests.length = 0;
        return send(200, { ok: true });
      }
      requests.push(entry);
      if (requests.length > maxRecorded) requests.splice(0, requests.length - maxRecorded);
      if (url.pathname === "/v1/models" && req.method === "GET") {
        return send(200, { object: "list", data: Object.keys(OPENAI_DATED_MODELS).map((id) => ({ id, object: "model", created: 0, owned_by: "system" })) });
      }
      if (url.pathname !== "/v1/chat/completions") return send(404, openAiError(`Invalid URL (${req.method} ${url.pathname})`, "invalid_request_error"));
      if (req.method !== "POST") return send(405, openAiError("Method not allowed"));

      if (apiKey !== null) {
        const m = /^Bearer (.+)$/.exec(req.headers.authorization ?? "");
        if (!m || m[1].trim() === "" || (apiKey !== undefined && m[1] !== apiKey)) {
          return send(401, openAiError("Incorrect API key provided.", "invalid_request_error", null, "invalid_api_key"));
        }
      }
      let body;
      try {
        body = JSON.parse(rawBody);
      } catch {
        return send(400, openAiError("We could not parse the JSON body of your request."));
      }
      entry.body = body;
      const invalid = validateOpenAiBody(body);
      if (invalid) return send(invalid[0], invalid[1]);

      const markers = parseMarkers(lastUserContent(body.messages));
      if (markers.delay !== undefined) {
        await sleep(Number(markers.delay) || 0, abort.signal);
        if (abort.signal.aborted) {
          entry.response = { status: 0, body: "client went away" };
          return;
        }
      }
      if (markers.status !== undefined && Number(markers.status) !== 200) {
        const status = Number(markers.status);
        const msg = status === 429 ? "Rate limit reached for requests" : status >= 500 ? "The server had an error while processing your request." : "Invalid request (stub)";
        const headers = status === 429 ? { "retry-after": String(markers["retry-after"] ?? 1) } : {};
        return send(status, openAiError(msg, ERROR_TYPES[status] ?? "server_error", null, status === 429 ? "rate_limit_exceeded" : null), headers);
      }

      const expected = expectedOpenAiCompletion(body);
      const id = `chatcmpl-${alnum(29)}`;
      const created = Math.floor(Date.now() / 1000);
      const fingerprint = "fp_stub0001";
      const finish = expected.toolCall ? "tool_calls" : typeof markers.finish === "string" ? markers.finish : "stop";
      const toolCallId = expected.toolCall ? `call_${alnum(24)}` : undefined;
      const usage = {
        ...expected.usage,
        prompt_tokens_details: { cached_tokens: 0, audio_tokens: 0 },
        completion_tokens_details: { reasoning_tokens: 0, audio_tokens: 0, accepted_prediction_tokens: 0, rejected_prediction_tokens: 0 },
      };

      if (body.stream === true) {
        const includeUsage = body.stream_options?.include_usage === true;
        const writes = [];
        entry.response = { status: 200, stream: true, expected, writes, includeUsage, toolCallId, endedAt: undefined };
        res.writeHead(200, { "content-type": "text/event-stream; charset=utf-8", "cache-control": "no-cache" });
        const chunk = (choices, extra = {}) =>
          `data: ${JSON.stringify({ id, object: "chat.completion.chunk", created, model: expected.model, service_tier: "default", system_fingerprint: fingerprint, choices, ...(includeUsage ? { usage: null } : {}), ...extra })}\n\n`;
        const delta = (d, finish_reason = null) => [{ index: 0, delta: d, logprobs: null, finish_reason }];
        const chunkDelay = Number(markers["chunk-delay"]) || 0;
        const write = async (text, wait = true) => {
          if (wait && chunkDelay > 0) await sleep(chunkDelay, abort.signal);
          if (abort.signal.aborted || res.destroyed) return false;
          res.write(text);
          writes.push(Date.now());
          return true;
        };
        const pieces = expected.toolCall
          ? [
              { tool_calls: [{ index: 0, id: toolCallId, type: "function", function: { name: expected.toolCall.name, arguments: "" } }] },
              ...(expected.toolCall.arguments.match(/.{1,8}/gs) ?? []).map((a) => ({ tool_calls: [{ index: 0, function: { arguments: a } }] })),
            ]
          : (expected.answer.match(/.{1,16}/gs) ?? [""]).map((p) => ({ content: p }));
        await write(chunk(delta({ role: "assistant", content: expected.toolCall ? null : "", refusal: null })), false);
        if (markers["stream-cut"] || markers["stream-abort"]) {
          if (await write(chunk(delta(pieces[0])))) {
            if (markers["stream-abort"]) setTimeout(() => res.destroy(), 50);
            else res.end();
          }
          entry.response.endedAt = Date.now();
          return;
        }
        for (const p of pieces) {
          if (!(await write(chunk(delta(p))))) {
            entry.response.clientGone = true;
            entry.response.endedAt = Date.now();
            return;
          }
        }
        if (!(await write(chunk(delta({}, finish))))) return;
        if (includeUsage && !markers["no-usage"]) {
          if (!(await write(chunk([], { usage })))) return;
        }
        res.end("data: [DONE]\n\n");
        entry.response.endedAt = Date.now();
        return;
      }

      const message = { role: "assistant", content: expected.toolCall ? null : expected.answer, refusal: null, annotations: [] };
      if (expected.toolCall) {
        message.tool_calls = [{ id: toolCallId, type: "function", function: { name: expected.toolCall.name, arguments: expected.toolCall.arguments } }];
      }
      const response = {
        id,
        object: "chat.completion",
        created,
        model: expected.model,
        choices: [{ index: 0, message, logprobs: null, finish_reason: finish }],
        service_tier: "default",
        system_fingerprint: fingerprint,
      };
      if (!markers["no-usage"]) response.usage = usage;
      return send(200, response, { "x-request-id": `req_${alnum(16)}` });
    } catch (err) {
      if (!res.headersSent) send(500, openAiError(`stub failure: ${err.message}`, "server_error"));
      else res.destroy();
    }
  });
  const stub = await listenStub(server, { host, port, requests });
  return {
    ...stub,
    chatRequests: () => requests.filter((r) => r.path === "/v1/chat/completions" && r.method === "POST"),
  };
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? "").href) {
  const args = process.argv.slice(2);
  const opts = { port: 8791 };
  for (let i = 0; i < args.length; i++) {
    if (args[i] === "--port") opts.port = Number(args[++i]);
    else if (args[i] === "--key") opts.apiKey = args[++i];
    else if (args[i] === "--no-key") opts.apiKey = null;
    else if (args[i] === "--verbose") opts.verbose = true;
    else {
      console.error("usage: node tests/e2e/openai-stub.mjs [--port 8791] [--key KEY | --no-key] [--verbose]");
      process.exit(2);
    }
  }
  const stub = await startOpenAiStub(opts);
  console.log(`OpenAI-compatible stub listening on ${stub.url}`);
  const shutdown = async () => {
    await stub.close();
    process.exit(0);
  };
  process.on("SIGINT", shutdown);
  process.on("SIGTERM", shutdown);
}
