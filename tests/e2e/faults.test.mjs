// The fault matrix (issue 11): every upstream fault the stand-in can inject, end to end through
// the built worker in workerd. For each: the client's status and error, the number of upstream
// calls, and what /metrics records (count, reason, cost). The table is written to
// target/e2e/fault-matrix.md (the README's table is copied from it) and printed.
//
// Gateways: FALLBACK=none (each fault's own mapping), UPSTREAM_TIMEOUT_MS=1500,
// STREAM_IDLE_TIMEOUT_MS=1500, MAX_UPSTREAM_RESPONSE_BYTES=65536; two more point at a closed port
// and at a name that does not resolve. Then fallbacks with the default FALLBACK.

import { describe, it, before, after } from "node:test";
import assert from "node:assert/strict";
import { mkdirSync, writeFileSync } from "node:fs";
import path from "node:path";

import { startGateway, startGateways, freePort, PROJECT_ROOT } from "./harness.mjs";
import { startMistralStub } from "./mistral-stub.mjs";
import { findStubRequests, secret, tag } from "./helpers.mjs";
import { chat, chatStream, chunksOf, assembleChunks, metrics, user } from "./chat-helpers.mjs";

const KEY = secret("faults");
const LIMITS = {
  UPSTREAM_TIMEOUT_MS: "1500",
  STREAM_IDLE_TIMEOUT_MS: "1500",
  MAX_UPSTREAM_RESPONSE_BYTES: "65536",
  FALLBACK: "none",
  METRICS_BATCH_MS: "0",
};

const sum = (o) => Object.values(o ?? {}).reduce((a, b) => a + b, 0);

/** What changed in /metrics between two reads. */
function delta(before, after) {
  const changed = (field) =>
    Object.keys(after[field] ?? {}).filter((k) => (after[field][k] ?? 0) !== (before[field]?.[k] ?? 0));
  return {
    completed: after.total_requests - before.total_requests,
    failed: after.failed_requests_total - before.failed_requests_total,
    failedReasons: changed("failed_requests"),
    incompleteReasons: changed("incomplete_requests"),
    cost: after.total_cost_usd - before.total_cost_usd,
    estimated: after.requests_with_estimated_tokens - before.requests_with_estimated_tokens,
    dropped: after.dropped_stream_events - before.dropped_stream_events,
    implausible: after.implausible_usage_requests - before.implausible_usage_requests,
    withCost: after.failed_requests_with_cost - before.failed_requests_with_cost,
  };
}

const rows = [];

function record(fault, { status, code, calls, d }) {
  const records = d.completed
    ? `completed${d.incompleteReasons.length ? `, incomplete: ${d.incompleteReasons.join(", ")}` : ""}`
    : `failed: ${d.failedReasons.join(", ")}`;
  const extras = [];
  if (d.estimated) extras.push("tokens estimated");
  if (d.dropped) extras.push(`${d.dropped} malformed event dropped`);
  if (d.implausible) extras.push("usage implausible");
  rows.push(
    `| ${fault} | ${status} | ${code ?? "-"} | ${calls} | ${records} | ${d.cost > 0 ? `$${d.cost.toFixed(8)}` : "$0"}${extras.length ? ` (${extras.join(", ")})` : ""} |`,
  );
}

describe("fault matrix", () => {
  let stub, gw, refused, dns;

  before(async () => {
    stub = await startMistralStub({ port: 0 });
    const closed = await freePort();
    [gw, refused, dns] = await startGateways(
      { vars: { MISTRAL_API_KEY: KEY, MISTRAL_BASE_URL: stub.url, ...LIMITS } },
      { vars: { MISTRAL_API_KEY: KEY, MISTRAL_BASE_URL: `http://127.0.0.1:${closed}`, ...LIMITS } },
      { vars: { MISTRAL_API_KEY: KEY, MISTRAL_BASE_URL: "http://llm-mux-no-such-host.invalid", ...LIMITS } },
    );
  });

  after(async () => {
    await Promise.all([gw?.stop(), refused?.stop(), dns?.stop()]);
    await stub?.close();
    if (rows.length) {
      const table = [
        "| fault | client status | error code | upstream calls | /metrics records | cost recorded |",
        "|---|---|---|---|---|---|",
        ...rows,
      ].join("\n");
      const dir = path.join(PROJECT_ROOT, "target", "e2e");
      mkdirSync(dir, { recursive: true });
      writeFileSync(path.join(dir, "fault-matrix.md"), table + "\n");
      console.log(`\n${table}\n`);
    }
  });

  /** One non-streamed request with `marker` against gateway `g`; returns what happened. */
  async function whole(g, marker, { model = "small", extra = {} } = {}) {
    const t = tag();
    const before = await metrics(g);
    const res = await chat(g, { model, messages: [user(`fault ${t} ${marker}`)], ...extra }, { timeoutMs: 30_000 });
    const after = await metrics(g);
    const body = JSON.parse(res.text);
    return { res, body, t, calls: g === gw ? findStubRequests(stub, t).length : "-", d: delta(before, after) };
  }

  /** One streamed request with `marker`; returns the events and what /metrics recorded. */
  async function streamed(marker) {
    const t = tag();
    const before = await metrics(gw);
    const s = await chatStream(gw, { model: "small", messages: [user(`fault ${t} ${marker}`)] }, { timeoutMs: 30_000 });
    const after = await metrics(gw);
    const chunks = chunksOf(s, { done: false });
    return { s, chunks, calls: findStubRequests(stub, t).length, d: delta(before, after) };
  }

  const errorCases = [
    ["401 (gateway key refused)", "[[stub:status=401]]", 502, "upstream_auth_failed", 1, "upstream_auth_failed"],
    ["403", "[[stub:status=403]]", 502, "upstream_auth_failed", 1, "upstream_auth_failed"],
    ["400", "[[stub:status=400]]", 400, "upstream_400", 1, "upstream_rejected"],
    ["422", "[[stub:status=422]] [[stub:error-body=detail]]", 400, "upstream_422", 1, "upstream_rejected"],
    ["429 with Retry-After: 1", "[[stub:status=429]] [[stub:retry-after=1]]", 429, "rate_limit_exceeded", 2, "upstream_rate_limited"],
    ["429 without Retry-After", "[[stub:status=429]] [[stub:retry-after=none]]", 429, "rate_limit_exceeded", 2, "upstream_rate_limited"],
    ["500", "[[stub:status=500]]", 502, "upstream_error", 2, "upstream_error"],
    ["503", "[[stub:status=503]] [[stub:retry-after=0]]", 502, "upstream_error", 2, "upstream_error"],
    ["header timeout (no answer in 1.5 s)", "[[stub:delay=4000]]", 504, "upstream_timeout", 1, "upstream_timeout"],
    ["stalled body (headers, then nothing)", "[[stub:body-delay=4000]]", 504, "upstream_timeout", 1, "upstream_timeout"],
    ["cut body (connection dies mid-body)", "[[stub:body-cut]]", 502, "upstream_broken", 1, "upstream_broken"],
    ["garbage JSON (200, not JSON)", "[[stub:garbage]]", 502, "upstream_invalid_response", 1, "upstream_invalid_response"],
    ["oversized answer (Content-Length 200 KB > 64 KiB)", "[[stub:big-answer=200000]]", 502, "upstream_too_large", 1, "upstream_too_large"],
    ["oversized answer (chunked, no length)", "[[stub:big-answer=200000]] [[stub:chunked]]", 502, "upstream_too_large", 1, "upstream_too_large"],
  ];

  for (const [fault, marker, status, code, calls, reason] of errorCases) {
    it(`${fault}: ${status} ${code}, ${calls} upstream call(s), recorded as ${reason}`, async () => {
      const { res, body, calls: made, d } = await whole(gw, marker);
      assert.equal(res.status, status, `${fault}: ${res.text}`);
      assert.equal(body.error.code, code, JSON.stringify(body));
      assert.ok(!res.text.includes(KEY), "no key in the body");
      assert.ok(!/127\.0\.0\.1|localhost/.test(body.error.message), `no host in the message: ${body.error.message}`);
      assert.equal(res.headers.get("x-should-retry"), "false", "clients are told the gateway retried");
      if (status === 429) assert.match(res.headers.get("retry-after") ?? "", /^\d+$/, "Retry-After on 429");
      assert.equal(made, calls, `${fault}: upstream calls`);
      assert.deepEqual(d.failedReasons, [reason], `${fault}: recorded reason`);
      assert.equal(d.failed, 1);
      assert.equal(d.completed, 0);
      // Only an answer that began (and was billed) before it broke is priced, as an estimate.
      const billed = ["upstream_broken"].includes(reason) || fault.startsWith("stalled body");
      assert.equal(d.cost > 0, billed, `${fault}: cost ${d.cost}`);
      assert.equal(d.withCost, billed ? 1 : 0);
      record(fault, { status, code, calls: made, d });
    });
  }

  it("connection refused: 502 naming the cause, recorded as upstream_unreachable", async () => {
    const { res, body, d } = await whole(refused, "");
    assert.equal(res.status, 502, res.text);
    assert.equal(body.error.code, "upstream_unreachable");
    assert.match(body.error.message, /cannot reach upstream host: connection refused/);
    assert.ok(!body.error.message.includes("127.0.0.1"), body.error.message);
    assert.deepEqual(d.failedReasons, ["upstream_unreachable"]);
    record("connection refused", { status: 502, code: body.error.code, calls: "- (2 attempts)", d });
  });

  it("DNS failure: 502 naming the cause, recorded as upstream_unreachable", async () => {
    const { res, body, d } = await whole(dns, "");
    assert.equal(res.status, 502, res.text);
    assert.equal(body.error.code, "upstream_unreachable");
    assert.match(body.error.message, /cannot reach upstream host: DNS lookup failed/);
    assert.ok(!body.error.message.includes("invalid"), `no host name: ${body.error.message}`);
    assert.deepEqual(d.failedReasons, ["upstream_unreachable"]);
    record("DNS failure", { status: 502, code: body.error.code, calls: "- (2 attempts)", d });
  });

  const streamCases = [
    ["stalled stream (no chunk for 1.5 s)", "[[stub:chunk-delay=4000]]", "upstream_timeout", /STREAM_IDLE_TIMEOUT_MS/],
    ["cut stream (connection dies)", "[[stub:stream-abort]]", "upstream_cut", /broke off/],
    ["cut stream (ends without [DONE])", "[[stub:stream-cut]]", "upstream_cut", /broke off/],
    ["oversized stream (> 64 KiB)", "[[stub:big-answer=200000]]", "upstream_too_large", /MAX_UPSTREAM_RESPONSE_BYTES/],
  ];
  for (const [fault, marker, reason, message] of streamCases) {
    it(`${fault}: 200, then an error event ${reason} and no [DONE]; recorded incomplete`, async () => {
      const t0 = Date.now();
      const { s, chunks, calls, d } = await streamed(marker);
      assert.equal(s.status, 200);
      assert.ok(!s.events.some((e) => e.data === "[DONE]"), "no [DONE]");
      const last = chunks.at(-1);
      assert.equal(last.error?.code, reason, JSON.stringify(last));
      assert.match(last.error.message, message);
      assert.equal(chunks.filter((c) => c.error).length, 1, "one error event");
      assert.equal(calls, 1);
      assert.equal(d.completed, 1);
      assert.deepEqual(d.incompleteReasons, [reason]);
      assert.ok(d.cost > 0, "what was streamed is priced");
      assert.equal(d.estimated, 1);
      if (reason === "upstream_timeout") assert.ok(Date.now() - t0 < 4000, "ended by the idle timeout");
      record(fault, { status: "200 + error event", code: reason, calls, d });
    });
  }

  it("garbage SSE line: dropped and counted, the stream completes", async () => {
    const { s, chunks, calls, d } = await streamed("[[stub:garbage-sse]]");
    assert.equal(s.status, 200);
    assert.equal(s.events.at(-1).data, "[DONE]");
    assert.ok(!s.raw.includes("this is not json"), "the malformed line is not relayed");
    assert.match(assembleChunks(chunks).content, /^Stub answer from/);
    assert.equal(d.dropped, 1);
    assert.equal(d.completed, 1);
    assert.deepEqual(d.incompleteReasons, []);
    record("garbage SSE line", { status: 200, code: null, calls, d });
  });

  it("absurd usage (999,999,999,999 tokens): replaced by an estimate, flagged and counted", async () => {
    const { res, calls, d } = await whole(gw, "[[stub:tokens=999999999999,999999999999]]");
    assert.equal(res.status, 200);
    assert.equal(d.implausible, 1);
    assert.equal(d.estimated, 1);
    assert.ok(d.cost > 0 && d.cost < 0.001, `cost ${d.cost}`);
    assert.ok(Number(res.headers.get("x-llm-mux-cost-usd")) < 0.001);
    record("absurd usage", { status: 200, code: null, calls, d });
  });
});

describe("fallback across tiers (default FALLBACK: the other tier)", () => {
  let stub, gw;
  before(async () => {
    stub = await startMistralStub({ port: 0 });
    gw = await startGateway({ vars: { MISTRAL_API_KEY: KEY, MISTRAL_BASE_URL: stub.url, UPSTREAM_TIMEOUT_MS: "3000", METRICS_BATCH_MS: "0" } });
  });
  after(async () => {
    await gw?.stop();
    await stub?.close();
  });

  it("a tier answering 503 falls back to the other tier: 200, said in routing_decision, header and /metrics", async () => {
    const before = await metrics(gw);
    const t = tag();
    const res = await fetch(`${gw.url}/query`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ query: `fallback ${t} [[stub:status-model=mistral-small-latest:503]] [[stub:retry-after=0]]`, tier: "small" }),
    });
    const body = await res.json();
    assert.equal(res.status, 200, JSON.stringify(body));
    assert.equal(res.headers.get("x-llm-mux-fallback"), "small->large; reason=upstream_error");
    assert.equal(res.headers.get("x-llm-mux-tier"), "large");
    assert.match(body.routing_decision, /Routed to LARGE .*fell back from SMALL \(upstream_error\)/);
    assert.deepEqual(body.routing.fallback, { from: "small", to: "large", reason: "upstream_error" });
    const calls = findStubRequests(stub, t).map((r) => r.body.model);
    assert.deepEqual(calls, ["mistral-small-latest", "mistral-small-latest", "mistral-large-latest"]);
    const after = await metrics(gw);
    assert.equal((after.fallbacks_total["small->large upstream_error"] ?? 0) - (before.fallbacks_total["small->large upstream_error"] ?? 0), 1);
    assert.equal(after.tier_breakdown.large - (before.tier_breakdown.large ?? 0), 1);
  });

  it("a stream falls back before it starts; chunks come from the other tier", async () => {
    const t = tag();
    const s = await chatStream(gw, { model: "large", messages: [user(`fallback stream ${t} [[stub:status-model=mistral-large-latest:500]]`)] });
    assert.equal(s.status, 200);
    assert.equal(s.headers.get("x-llm-mux-fallback"), "large->small; reason=upstream_error");
    assert.equal(assembleChunks(chunksOf(s)).model, "mistral-small-2603");
  });

  it("worst case: both tiers rate limited -> 429 after 4 upstream calls (2 attempts x 2 tiers), x-should-retry: false", async () => {
    const t = tag();
    const before = await metrics(gw);
    const res = await chat(gw, { model: "small", messages: [user(`both limited ${t} [[stub:status=429]] [[stub:retry-after=0]]`)] });
    assert.equal(res.status, 429, res.text);
    assert.ok(res.headers.get("retry-after"));
    assert.equal(res.headers.get("x-should-retry"), "false");
    assert.equal(res.headers.get("x-llm-mux-fallback"), "small->large; reason=upstream_rate_limited");
    assert.equal(findStubRequests(stub, t).length, 4);
    const after = await metrics(gw);
    assert.equal(after.failed_requests.upstream_rate_limited - (before.failed_requests.upstream_rate_limited ?? 0), 1);
    assert.equal((after.fallbacks_total["small->large upstream_rate_limited"] ?? 0) - (before.fallbacks_total["small->large upstream_rate_limited"] ?? 0), 1);
  });

  it("refused requests (400, 422) and refused keys (401) never fall back", async () => {
    for (const status of [400, 401, 422]) {
      const t = tag();
      const res = await chat(gw, { model: "small", messages: [user(`no fallback ${t} [[stub:status=${status}]]`)] });
      assert.equal(res.status, status === 401 ? 502 : 400);
      assert.equal(res.headers.get("x-llm-mux-fallback"), null);
      assert.equal(findStubRequests(stub, t).length, 1, `${status}: one call, no retry, no fallback`);
    }
  });
});
