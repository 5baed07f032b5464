// Issue 13 through the real worker: latency percentiles (whole request, upstream, overhead,
// streams' time to first byte) overall / per tier / per model, outcome counts with the
// upstream's status, time windows (`?window=`) and the series behind charts
// (`/metrics/series`), spread over several metrics shards (METRICS_SHARDS) and merged on
// read, across restarts (each isolate picks its shard at random).

import { describe, it, before, after } from "node:test";
import assert from "node:assert/strict";
import { rmSync } from "node:fs";

import { startGateway, tempDir } from "./harness.mjs";
import { startMistralStub } from "./mistral-stub.mjs";
import { SMALL, LARGE, client, secret, tag, assertError } from "./helpers.mjs";
import { chatStream } from "./chat-helpers.mjs";

const MISTRAL_KEY = secret("mistral");
const WINDOWS = ["1h", "24h", "7d", "30d", "all"];

describe("latency percentiles, outcomes, windows and series", () => {
  let stub, gw, c, persistTo;
  const sent = { small: 0, large: 0, failed503: 0, badRequest: 0, streams: 0 };
  const vars = () => ({
    MISTRAL_API_KEY: MISTRAL_KEY,
    MISTRAL_BASE_URL: stub.url,
    METRICS_SHARDS: "8",
    FALLBACK: "none",
  });

  before(async () => {
    stub = await startMistralStub();
    persistTo = tempDir("llm-mux-obs-");
    gw = await startGateway({ vars: vars(), persistTo });
    c = client(gw);
  });
  after(async () => {
    await gw?.stop();
    await stub?.close();
    rmSync(persistTo, { recursive: true, force: true });
  });

  async function traffic() {
    const t = tag();
    // the upstream takes >= 150 ms on small and >= 300 ms on large
    for (let i = 0; i < 4; i++) {
      const r = await c.query({ query: `small ${i} ${t} [[stub:delay=150]]`, tier: "small" });
      assert.equal(r.status, 200, r.text);
      sent.small++;
    }
    for (let i = 0; i < 2; i++) {
      const r = await c.query({ query: `large ${i} ${t} [[stub:delay=300]]`, tier: "large" });
      assert.equal(r.status, 200, r.text);
      sent.large++;
    }
    // a stream whose chunks come 40 ms apart: its first byte comes well before its end
    const s = await chatStream(gw, {
      model: "small",
      messages: [{ role: "user", content: `stream ${t} [[stub:chunk-delay=40]]` }],
    });
    assert.equal(s.status, 200);
    sent.small++;
    sent.streams++;
    assertError(await c.query({ query: `down ${t} [[stub:status=503]] [[stub:retry-after=0]]`, tier: "small" }), 502);
    sent.failed503++;
    assertError(await c.query({ tier: "small" }), 400);
    sent.badRequest++;
  }

  it("reports p50/p95/p99 of the request, the upstream, the overhead and a stream's first byte", async () => {
    await traffic();
    const m = (await c.metrics()).json;
    assert.equal(m.window, "all");
    const l = m.latency_ms;
    assert.equal(l.overall.request.count, sent.small + sent.large);
    assert.equal(l.by_tier.small.request.count, sent.small);
    assert.equal(l.by_tier.large.request.count, sent.large);
    assert.equal(l.by_model[SMALL].request.count, sent.small);
    assert.equal(l.by_model[LARGE].upstream.count, sent.large);
    for (const kind of ["request", "upstream", "overhead"]) {
      const q = l.overall[kind];
      assert.ok(q.p50 <= q.p95 && q.p95 <= q.p99, `${kind}: ${JSON.stringify(q)}`);
    }
    // the stub's delay is upstream time; the request includes it
    // (a percentile is within the sketch's 1% of the true order statistic)
    assert.ok(l.by_tier.large.upstream.p50 >= 300 * 0.99, JSON.stringify(l.by_tier.large));
    assert.ok(l.by_tier.large.request.p50 >= l.by_tier.large.upstream.p50);
    assert.ok(l.by_tier.small.upstream.p50 >= 150 * 0.99, JSON.stringify(l.by_tier.small));
    // the gateway's own part is what is left: far below the upstream's
    assert.ok(l.overall.overhead.p50 < 150, JSON.stringify(l.overall.overhead));
    // time to first byte: streams only, before the stream's end
    assert.equal(l.overall.ttfb.count, sent.streams);
    assert.equal(l.by_tier.small.ttfb.count, sent.streams);
    assert.equal(l.by_tier.large.ttfb, undefined);
    assert.ok(l.overall.ttfb.p50 < l.by_tier.small.request.p99, JSON.stringify(l));
  });

  it("counts outcomes: ok, the upstream's status, client errors", async () => {
    const m = (await c.metrics()).json;
    assert.equal(m.outcomes.ok, sent.small + sent.large);
    assert.equal(m.outcomes.upstream_error_503, sent.failed503);
    assert.equal(m.outcomes.bad_request, sent.badRequest);
    assert.equal(m.failed_requests.upstream_error, sent.failed503, "the reason keeps its label");
    const total = Object.values(m.outcomes).reduce((a, b) => a + b, 0);
    assert.equal(total, m.total_requests + m.failed_requests_total);
  });

  it("breaks usage down per tier and per model: requests, tokens, cost and cost if always large", async () => {
    const m = (await c.metrics()).json;
    for (const [by, names] of [["by_tier", ["small", "large"]], ["by_model", [SMALL, LARGE]]]) {
      assert.deepEqual(Object.keys(m[by]).sort(), [...names].sort(), by);
      const sum = (k) => Object.values(m[by]).reduce((a, u) => a + u[k], 0);
      assert.equal(sum("requests"), m.total_requests, by);
      assert.equal(sum("tokens_in"), m.tokens_in, by);
      assert.equal(sum("tokens_out"), m.tokens_out, by);
      assert.ok(Math.abs(sum("cost_usd") - m.total_cost_usd) < 1e-12, by);
      assert.ok(Math.abs(sum("cost_if_always_large_usd") - m.cost_if_always_large_usd) < 1e-12, by);
    }
    assert.equal(m.by_tier.small.requests, sent.small);
    assert.equal(m.by_model[LARGE].requests, sent.large);
    // the top tier costs what it would cost at the top tier's prices
    assert.ok(Math.abs(m.by_tier.large.cost_usd - m.by_tier.large.cost_if_always_large_usd) < 1e-15);
    assert.ok(m.by_tier.small.cost_usd < m.by_tier.small.cost_if_always_large_usd);
  });

  it("answers every window, naming it; all of today's traffic is in each", async () => {
    const all = (await c.metrics()).json;
    for (const w of WINDOWS) {
      const r = await c.request("GET", `/metrics?window=${w}`);
      assert.equal(r.status, 200, r.text);
      assert.equal(r.json.window, w);
      assert.equal(r.json.total_requests, all.total_requests, w);
      assert.deepEqual(r.json.tier_breakdown, all.tier_breakdown, w);
      assert.deepEqual(r.json.failed_requests, all.failed_requests, w);
      assert.deepEqual(r.json.outcomes, all.outcomes, w);
      assert.deepEqual(r.json.by_tier, all.by_tier, w);
      assert.equal(r.json.tokens_in, all.tokens_in, w);
      assert.ok(Math.abs(r.json.total_cost_usd - all.total_cost_usd) < 1e-12, w);
      assert.equal(r.json.latency_ms.overall.request.count, all.latency_ms.overall.request.count, w);
    }
  });

  it("refuses an unknown window with a structured 400", async () => {
    for (const bad of ["2h", "ALL", "", "1h;drop"]) {
      for (const path of ["/metrics", "/metrics/series"]) {
        const r = await c.request("GET", `${path}?window=${encodeURIComponent(bad)}`);
        assertError(r, 400, `${path} ${bad}`);
        assert.match(r.json.error.message, /1h, 24h, 7d, 30d, all/);
      }
    }
  });

  it("serves the series of each window; its points add up to the window's totals", async () => {
    const steps = { "1h": 300, "24h": 3600, "7d": 3600, "30d": 86400, all: 86400 };
    const m = (await c.metrics()).json;
    for (const w of WINDOWS) {
      const r = await c.request("GET", `/metrics/series?window=${w}`);
      assert.equal(r.status, 200, r.text);
      assert.equal(r.json.window, w);
      assert.equal(r.json.bucket_seconds, steps[w]);
      const p = r.json.points;
      assert.ok(p.length >= 1, w);
      const now = Date.now() / 1000;
      for (const point of p) {
        assert.equal(point.t % steps[w], 0, `${w}: ${point.t}`);
        assert.ok(point.t <= now, w);
      }
      const sum = (k) => p.reduce((a, x) => a + x[k], 0);
      assert.equal(sum("requests"), m.total_requests, w);
      assert.equal(sum("failed"), m.failed_requests_total, w);
      assert.ok(Math.abs(sum("cost_usd") - m.total_cost_usd) < 1e-12, w);
      assert.ok(Math.abs(sum("cost_if_always_large_usd") - m.cost_if_always_large_usd) < 1e-12, w);
    }
  });

  it("keeps every shard's totals across restarts (each isolate sends to its own shard)", async () => {
    const before = (await c.metrics()).json;
    for (let round = 0; round < 3; round++) {
      // /metrics sends what this isolate still holds (a batch waits METRICS_BATCH_MS; a
      // stopped process would take it along)
      await c.metrics();
      await gw.stop();
      gw = await startGateway({ vars: vars(), persistTo });
      c = client(gw);
      await traffic();
    }
    const after = (await c.metrics()).json;
    assert.equal(after.total_requests, sent.small + sent.large);
    assert.equal(after.tier_breakdown.small, sent.small);
    assert.equal(after.tier_breakdown.large, sent.large);
    assert.equal(after.failed_requests_total, sent.failed503 + sent.badRequest);
    assert.equal(after.latency_ms.overall.request.count, after.total_requests);
    assert.ok(after.total_cost_usd > before.total_cost_usd);
    for (const w of ["1h", "30d"]) {
      const r = (await c.request("GET", `/metrics?window=${w}`)).json;
      assert.equal(r.total_requests, after.total_requests, w);
      assert.deepEqual(r.outcomes, after.outcomes, w);
    }
  });
});
