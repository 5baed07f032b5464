// Shared helpers for the end-to-end specs: an HTTP client that remembers every response (for
// the "secrets never leak" checks), the contract's price table, polling, and assertions.

import assert from "node:assert/strict";
import { createHmac, randomBytes } from "node:crypto";
import { ALLOWED_FIELDS, contentText } from "./mistral-stub.mjs";

/** USD per 1M tokens (input, output), keyed on dated ids and aliases (the contract's table). */
export const PRICES = {
  "mistral-small-2603": { input: 0.15, output: 0.6 },
  "mistral-small-latest": { input: 0.15, output: 0.6 },
  "mistral-large-2512": { input: 0.5, output: 1.5 },
  "mistral-large-latest": { input: 0.5, output: 1.5 },
};

export const SMALL = "mistral-small-latest";
export const LARGE = "mistral-large-latest";

/** Cost the gateway must report: price of the dated id returned, the alias as fallback. */
export function expectedCost(returnedModel, alias, tokensIn, tokensOut) {
  const p = PRICES[returnedModel] ?? PRICES[alias];
  assert.ok(p, `no price for ${returnedModel} / ${alias}`);
  return (tokensIn * p.input + tokensOut * p.output) / 1e6;
}

/** What the same tokens would cost on the large model. */
export function largeCost(tokensIn, tokensOut) {
  return (tokensIn * PRICES[LARGE].input + tokensOut * PRICES[LARGE].output) / 1e6;
}

/** A distinctive secret for one spec file. */
export function secret(label = "key") {
  return `sk-e2e-${label}-${randomBytes(12).toString("hex")}`;
}

/** The gateway's id of a client key: HMAC-SHA-256 keyed "llm-mux key id", 12 hex digits. */
export function keyId(key) {
  return createHmac("sha256", "llm-mux key id").update(key).digest("hex").slice(0, 12);
}

/** A short unique tag to find a gateway request again among the stub's recorded requests. */
export function tag() {
  return `t${randomBytes(5).toString("hex")}`;
}

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/**
 * A client of one gateway. Every response text is kept in `seen` so a spec can assert that no
 * secret ever appeared in any response.
 */
export function client(gw, { token } = {}) {
  const seen = [];
  async function request(method, path, { body, raw, headers = {}, token: tok = token, timeoutMs = 30_000 } = {}) {
    const h = { ...headers };
    if (tok) h.authorization = `Bearer ${tok}`;
    let payload;
    if (raw !== undefined) payload = raw;
    else if (body !== undefined) payload = JSON.stringify(body);
    if (payload !== undefined && !Object.keys(h).some((k) => k.toLowerCase() === "content-type")) {
      h["content-type"] = "application/json";
    }
    const t0 = performance.now();
    const res = await fetch(gw.url + path, { method, headers: h, body: payload, signal: AbortSignal.timeout(timeoutMs) });
    const text = await res.text();
    const ms = performance.now() - t0;
    seen.push(`${res.status} ${[...res.headers].map(([k, v]) => `${k}: ${v}`).join("\n")}\n${text}`);
    let json;
    try {
      json = JSON.parse(text);
    } catch {
      json = undefined;
    }
    return { status: res.status, headers: res.headers, text, json, ms };
  }
  return {
    seen,
    request,
    query: (body, opts = {}) => request("POST", "/query", { body, ...opts }),
    metrics: (opts = {}) => request("GET", "/metrics", opts),
  };
}

/** Polls fn() until pred(value) holds or timeoutMs passes; returns the last value. */
export async function pollUntil(fn, pred, { timeoutMs = 15_000, intervalMs = 100 } = {}) {
  const deadline = Date.now() + timeoutMs;
  let last;
  for (;;) {
    last = await fn();
    if (pred(last)) return last;
    if (Date.now() > deadline) return last;
    await sleep(intervalMs);
  }
}

/** Asserts the contract's error shape {"error": {"type", "message"}} and the status. */
export function assertError(res, status, context = "") {
  assert.equal(res.status, status, `${context}: expected HTTP ${status}, got ${res.status}: ${res.text}`);
  assert.ok(res.json && typeof res.json === "object", `${context}: error body is not JSON: ${res.text}`);
  assert.ok(res.json.error && typeof res.json.error === "object", `${context}: no "error" object: ${res.text}`);
  assert.equal(typeof res.json.error.type, "string", `${context}: error.type not a string: ${res.text}`);
  assert.ok(res.json.error.type.length > 0, `${context}: empty error.type`);
  assert.equal(typeof res.json.error.message, "string", `${context}: error.message not a string: ${res.text}`);
  assert.ok(res.json.error.message.length > 0, `${context}: empty error.message`);
  return res.json.error;
}

/** Messages of a recorded stub request whose last user message contains `needle`. */
export function findStubRequests(stub, needle) {
  return stub.chatRequests().filter((r) => {
    const msgs = r.body?.messages;
    if (!Array.isArray(msgs)) return false;
    return msgs.some((m) => m.role === "user" && contentText(m.content).includes(needle));
  });
}

/** {answer, usage, model} the stub actually sent for one recorded request. */
export function stubReply(entry) {
  const r = entry.response;
  assert.ok(r, "stub request has no recorded response");
  if (r.stream) return { answer: r.expected.answer, usage: r.expected.usage, model: r.expected.model };
  return { answer: r.body.choices[0].message.content, usage: r.body.usage, model: r.body.model };
}

/** Asserts the upstream request is one Mistral accepts: only documented fields. */
export function assertCleanUpstreamBody(body) {
  const extra = Object.keys(body).filter((k) => !ALLOWED_FIELDS.has(k));
  assert.deepEqual(extra, [], `gateway sent fields Mistral forbids: ${extra.join(", ")}`);
  for (const f of ["seed", "max_completion_tokens", "stream_options", "user", "logprobs"]) {
    assert.ok(!(f in body), `gateway sent OpenAI-only field ${f}`);
  }
}

/**
 * Asserts a successful /query answer has the contract's shape; returns its body.
 * Checks fields and types, routing_decision format and its agreement with routing.
 */
export function assertQueryShape(res, context = "") {
  assert.equal(res.status, 200, `${context}: expected 200, got ${res.status}: ${res.text}`);
  const b = res.json;
  assert.ok(b && typeof b === "object", `${context}: body not JSON: ${res.text}`);
  assert.equal(typeof b.answer, "string", "answer is a string");
  assert.equal(typeof b.routing_decision, "string", "routing_decision is a string");
  assert.equal(typeof b.model_used, "string", "model_used is a string");
  assert.ok(b.metrics && typeof b.metrics === "object", "metrics object");
  for (const k of ["latency_ms", "tokens_in", "tokens_out", "cost_usd"]) {
    assert.equal(typeof b.metrics[k], "number", `metrics.${k} is a number (${JSON.stringify(b.metrics)})`);
    assert.ok(Number.isFinite(b.metrics[k]) && b.metrics[k] >= 0, `metrics.${k} finite and >= 0`);
  }
  assert.ok(Number.isInteger(b.metrics.latency_ms), `metrics.latency_ms is an integer: ${b.metrics.latency_ms}`);
  assert.ok(Number.isInteger(b.metrics.tokens_in), "metrics.tokens_in is an integer");
  assert.ok(Number.isInteger(b.metrics.tokens_out), "metrics.tokens_out is an integer");
  const r = b.routing;
  assert.ok(r && typeof r === "object", "routing object");
  assert.equal(typeof r.score, "number", "routing.score is a number");
  assert.ok(r.score >= 0 && r.score <= 1, `routing.score in [0,1]: ${r.score}`);
  assert.ok(r.tier === "small" || r.tier === "large", `routing.tier small|large: ${r.tier}`);
  assert.equal(typeof r.threshold, "number", "routing.threshold is a number");
  assert.ok(Array.isArray(r.features), "routing.features is an array");
  for (const f of r.features) {
    assert.equal(typeof f.name, "string", `feature name: ${JSON.stringify(f)}`);
    assert.equal(typeof f.value, "number", `feature value: ${JSON.stringify(f)}`);
    assert.equal(typeof f.contribution, "number", `feature contribution: ${JSON.stringify(f)}`);
  }
  const m = /^Routed to (SMALL|LARGE) \(score: (\d\.\d\d)\)$/.exec(b.routing_decision);
  assert.ok(m, `routing_decision format: ${JSON.stringify(b.routing_decision)}`);
  assert.equal(m[1], r.tier.toUpperCase(), "routing_decision tier agrees with routing.tier");
  // two decimals of routing.score (tolerant of the round-half-even vs half-up difference)
  assert.ok(Math.abs(Number(m[2]) - r.score) <= 0.005 + 1e-9, `decision score ${m[2]} vs routing.score ${r.score}`);
  return b;
}

/** Asserts none of `secrets` appears in any of `texts` (labelled for the failure message). */
export function assertNoSecrets(texts, secrets, label) {
  for (const s of secrets) {
    if (!s) continue;
    const hits = texts.filter((t) => t.includes(s));
    assert.equal(hits.length, 0, `${label}: secret leaked in ${hits.length} place(s), e.g. ${hits[0]?.slice(0, 500)}`);
  }
}

/** Asserts |a - b| <= eps. */
export function near(a, b, eps, msg) {
  assert.ok(Math.abs(a - b) <= eps, `${msg}: ${a} vs ${b} (|diff| ${Math.abs(a - b)} > ${eps})`);
}

/** Checks the /metrics shape and the formatted fields against the numeric ones. */
export function assertMetricsShape(m) {
  for (const k of ["total_requests", "avg_latency_ms", "total_cost_usd", "cost_if_always_large_usd", "savings_ratio", "tokens_in", "tokens_out", "failed_requests_total"]) {
    assert.equal(typeof m[k], "number", `${k} is a number: ${JSON.stringify(m)}`);
    assert.ok(Number.isFinite(m[k]) && m[k] >= 0, `${k} finite and >= 0`);
  }
  for (const k of ["total_requests", "tokens_in", "tokens_out", "failed_requests_total"]) {
    assert.ok(Number.isInteger(m[k]), `${k} is an integer`);
  }
  for (const k of ["total_cost", "cost_savings_vs_always_large", "small_model_usage_percent"]) {
    assert.equal(typeof m[k], "string", `${k} is a string: ${JSON.stringify(m)}`);
  }
  assert.match(m.total_cost, /^\$\d+\.\d{2,}$/, "total_cost like $0.24");
  near(Number(m.total_cost.slice(1)), m.total_cost_usd, 0.005 + 1e-9, "total_cost displays total_cost_usd");
  assert.match(m.cost_savings_vs_always_large, /^-?\d+\.\d%$/, "cost_savings_vs_always_large like 71.8%");
  assert.match(m.small_model_usage_percent, /^\d+\.\d%$/, "small_model_usage_percent like 76.3%");
  assert.ok(m.model_breakdown && typeof m.model_breakdown === "object" && !Array.isArray(m.model_breakdown), "model_breakdown object");
  const breakdown = Object.values(m.model_breakdown);
  for (const v of breakdown) assert.ok(Number.isInteger(v) && v >= 0, "model_breakdown counts are integers");
  assert.equal(breakdown.reduce((a, b) => a + b, 0), m.total_requests, "model_breakdown sums to total_requests");
  assert.ok(m.failed_requests && typeof m.failed_requests === "object" && !Array.isArray(m.failed_requests), "failed_requests object");
  const failed = Object.entries(m.failed_requests);
  for (const [reason, n] of failed) {
    assert.ok(reason.length > 0, "failure reason is a non-empty label");
    assert.ok(Number.isInteger(n) && n >= 0, `failed_requests.${reason} is an integer`);
  }
  assert.equal(failed.reduce((a, [, n]) => a + n, 0), m.failed_requests_total, "failed_requests sums to failed_requests_total");
  if (m.cost_if_always_large_usd > 0) {
    near(m.savings_ratio, 1 - m.total_cost_usd / m.cost_if_always_large_usd, 1e-9, "savings_ratio = 1 - cost / cost_if_always_large");
  }
  near(Number(m.cost_savings_vs_always_large.slice(0, -1)), m.savings_ratio * 100, 0.05 + 1e-9, "cost_savings_vs_always_large = savings_ratio as a percentage");
  if (m.total_requests > 0) {
    const small = m.model_breakdown[SMALL] ?? 0;
    near(Number(m.small_model_usage_percent.slice(0, -1)), (100 * small) / m.total_requests, 0.05 + 1e-9, "small_model_usage_percent");
  }
}

/** Checks /metrics against the successful /query bodies it must aggregate. */
export function assertMetricsMatch(m, bodies) {
  assert.equal(m.total_requests, bodies.length, "total_requests counts successful completions");
  const sum = (f) => bodies.reduce((a, b) => a + f(b), 0);
  near(m.total_cost_usd, sum((b) => b.metrics.cost_usd), 1e-9, "total_cost_usd = sum of cost_usd");
  near(m.cost_if_always_large_usd, sum((b) => largeCost(b.metrics.tokens_in, b.metrics.tokens_out)), 1e-9, "cost_if_always_large_usd");
  assert.equal(m.tokens_in, sum((b) => b.metrics.tokens_in), "tokens_in sum");
  assert.equal(m.tokens_out, sum((b) => b.metrics.tokens_out), "tokens_out sum");
  const byModel = {};
  for (const b of bodies) byModel[b.model_used] = (byModel[b.model_used] ?? 0) + 1;
  const nonzero = Object.fromEntries(Object.entries(m.model_breakdown).filter(([, n]) => n > 0));
  assert.deepEqual(nonzero, byModel, "model_breakdown counts model_used");
  if (bodies.length) {
    const lat = bodies.map((b) => b.metrics.latency_ms);
    assert.ok(m.avg_latency_ms >= Math.min(...lat) - 1 && m.avg_latency_ms <= Math.max(...lat) + 1, `avg_latency_ms ${m.avg_latency_ms} within [${Math.min(...lat)}, ${Math.max(...lat)}]`);
  }
}

/** A small deterministic generator (mulberry32), so a failure can be replayed. */
export function random(seed) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
