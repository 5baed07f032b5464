// Judged shadow samples (QUALITY_SAMPLE_RATE): a sampled, automatically routed request is
// also answered by the other tier and graded by the judge, after its response, in the
// QualityStore Durable Object; /metrics shows the quality block and the evaluation spend.
// The Mistral stand-in plays the small tier, the large tier and the judge (its judge grades
// answers of the large model 9 and others 6 unless a marker says otherwise).

import { describe, it, before, after } from "node:test";
import assert from "node:assert/strict";
import { readdirSync, readFileSync, statSync } from "node:fs";
import path from "node:path";
import { startGateway, tempDir } from "./harness.mjs";
import { startMistralStub, isJudgeRequest } from "./mistral-stub.mjs";
import { client, secret, tag, pollUntil, sleep, assertQueryShape, expectedCost, findStubRequests, stubReply } from "./helpers.mjs";

const MISTRAL_KEY = secret("mistral");

async function quality(c) {
  const res = await c.metrics();
  assert.equal(res.status, 200, res.text);
  return res.json;
}

/** The stub's calls for one tagged query: served, shadow and judge calls. */
function callsFor(stub, needle) {
  const all = findStubRequests(stub, needle);
  const judge = all.filter((r) => isJudgeRequest(r.body));
  const other = all.filter((r) => !isJudgeRequest(r.body));
  return { judge, other };
}

function filesUnder(dir) {
  const out = [];
  for (const name of readdirSync(dir)) {
    const p = path.join(dir, name);
    if (statSync(p).isDirectory()) out.push(...filesUnder(p));
    else out.push(p);
  }
  return out;
}

describe("judged shadow samples", () => {
  let stub;
  before(async () => {
    stub = await startMistralStub();
  });
  after(async () => {
    await stub?.close();
  });

  describe("every automatically routed request sampled (QUALITY_SAMPLE_RATE=1)", () => {
    let gw, c, state;
    before(async () => {
      state = tempDir("llm-mux-quality-");
      gw = await startGateway({
        persistTo: state,
        vars: {
          MISTRAL_API_KEY: MISTRAL_KEY,
          MISTRAL_BASE_URL: stub.url,
          QUALITY_SAMPLE_RATE: "1",
          ROUTING_THRESHOLD: "1", // every auto request is served by the small tier
          METRICS_BATCH_MS: "0",
        },
      });
      c = client(gw);
    });
    after(async () => {
      await gw?.stop();
    });

    it("the other tier and the judge are called once per sample, grades reach the store, /metrics shows the quality block and the evaluation spend", async () => {
      const before = await quality(c);
      const tags = [tag(), tag(), tag()];
      const served = [];
      for (const t of tags) {
        const res = await c.query({ query: `What is the capital of Peru? ${t} [[stub:judge-small=6]] [[stub:judge-large=9]]` });
        served.push(assertQueryShape(res));
        assert.equal(res.json.model_used, "mistral-small-latest");
      }
      const m = await pollUntil(() => quality(c), (m) => m.quality.samples_judged >= before.quality.samples_judged + tags.length, { timeoutMs: 30_000 });
      assert.equal(m.quality.samples_judged - before.quality.samples_judged, tags.length, JSON.stringify(m.quality));
      assert.equal(m.quality.samples_failed, 0);
      assert.equal(m.quality.samples_pending, 0);
      let evaluation = 0;
      for (const t of tags) {
        const { judge, other } = callsFor(stub, t);
        assert.equal(judge.length, 1, `one judge call for ${t}`);
        const small = other.filter((r) => r.body.model === "mistral-small-latest");
        const large = other.filter((r) => r.body.model === "mistral-large-latest");
        assert.equal(small.length, 1, "the served call");
        assert.equal(large.length, 1, "one shadow call by the other (top) tier");
        assert.notEqual(large[0].body.stream, true, "the shadow call is not streamed");
        assert.equal(judge[0].body.model, "mistral-large-latest", "the top tier judges by default");
        assert.deepEqual(judge[0].body.response_format, { type: "json_object" });
        const user = judge[0].body.messages[1].content;
        assert.ok(user.includes("mistral-small-2603") && user.includes("mistral-large-2512"), "both answers go to the judge");
        for (const call of [large[0], judge[0]]) {
          const r = stubReply(call);
          evaluation += expectedCost(r.model, call.body.model, r.usage.prompt_tokens, r.usage.completion_tokens);
        }
      }
      // Every sample was served by the small tier (graded 6) and the top tier's answer got
      // 9; a grade g is quality (g - 1) / 9, so quality retained is 5/8.
      if (before.quality.samples_judged === 0) {
        assert.ok(Math.abs(m.quality.estimated_quality_retained - 5 / 8) < 1e-9, JSON.stringify(m.quality));
        const [low, high] = m.quality.confidence_interval_95;
        assert.ok(low <= 5 / 8 + 1e-9 && 5 / 8 - 1e-9 <= high, `interval ${low}..${high}`);
      }
      const spent = m.quality.evaluation_cost_usd - before.quality.evaluation_cost_usd;
      assert.ok(Math.abs(spent - evaluation) < 1e-12, `evaluation spend ${spent} vs ${evaluation}`);
      assert.ok(Math.abs(m.evaluation_cost_usd - m.quality.evaluation_cost_usd) < 1e-15);
      // The totals include the evaluation spend; savings are net of it.
      const serving = m.total_cost_usd - m.evaluation_cost_usd;
      assert.ok(serving > 0 && m.evaluation_cost_usd > 0);
      assert.ok(Math.abs(m.savings_ratio - (1 - m.total_cost_usd / m.cost_if_always_large_usd)) < 1e-12);
      assert.equal(m.quality.threshold, 1);
      assert.equal(m.quality.threshold_source, "configured");
      assert.equal(m.quality.target, null);
    });

    it("no prompt or answer text is kept once judged", async () => {
      const t = tag();
      const res = await c.query({ query: `Name a prime number ${t} secretword${t}` });
      assertQueryShape(res);
      const m = await pollUntil(() => quality(c), (m) => m.quality.samples_pending === 0 && callsFor(stub, t).judge.length === 1, { timeoutMs: 30_000 });
      assert.equal(m.quality.samples_pending, 0);
      await sleep(500);
      // Nothing in the gateway's persisted state (the Durable Objects' SQLite files) holds
      // the query's text any more.
      const hits = filesUnder(state).filter((f) => readFileSync(f).includes(`secretword${t}`));
      assert.deepEqual(hits, [], "prompt text left in the state");
    });

    it("requests forced to a tier are not sampled", async () => {
      const t = tag();
      const res = await c.query({ query: `Forced ${t}`, tier: "large" });
      assertQueryShape(res);
      await sleep(1500);
      const { judge, other } = callsFor(stub, t);
      assert.equal(judge.length, 0);
      assert.equal(other.length, 1);
    });

    it("judge garbage and judge failures are counted, the sample dropped, and retried calls bounded", async () => {
      const before = await quality(c);
      const garbage = tag();
      const failing = tag();
      const flaky = tag();
      for (const q of [
        `Garbage ${garbage} [[stub:judge=garbage]]`,
        `Failing ${failing} [[stub:judge-status=500]]`,
        `Flaky ${flaky} [[stub:judge-fail-first=2]]`,
      ]) {
        assertQueryShape(await c.query({ query: q }));
      }
      const m = await pollUntil(
        () => quality(c),
        (m) => m.quality.samples_pending === 0 && m.quality.samples_judged + m.quality.samples_failed >= before.quality.samples_judged + before.quality.samples_failed + 3,
        { timeoutMs: 45_000, intervalMs: 500 },
      );
      const failed = (r) => (m.quality.samples_failed_by_reason[r] ?? 0) - (before.quality.samples_failed_by_reason[r] ?? 0);
      assert.equal(failed("judge_unparseable"), 1, JSON.stringify(m.quality));
      assert.equal(failed("judge_call_failed"), 1, JSON.stringify(m.quality));
      assert.equal(m.quality.samples_judged - before.quality.samples_judged, 1, "the flaky judge's sample is judged on a retry");
      // Garbage: one judge call, no retry. Failing: 3 job attempts x 2 attempts per call.
      assert.equal(callsFor(stub, garbage).judge.length, 1);
      assert.equal(callsFor(stub, failing).judge.length, 6);
      // Flaky: the first job attempt's two judge calls fail, the retry's succeeds; the
      // other tier was called once (its answer is kept for the retry).
      assert.equal(callsFor(stub, flaky).judge.length, 3);
      assert.equal(callsFor(stub, flaky).other.filter((r) => r.body.model === "mistral-large-latest").length, 1);
      // The spend of failed samples is still counted.
      assert.ok(m.quality.evaluation_cost_usd > before.quality.evaluation_cost_usd);
    });

    it("a streamed answer is sampled too, and the stream is relayed unchanged", async () => {
      const t = tag();
      const res = await fetch(`${gw.url}/v1/chat/completions`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ model: "auto", stream: true, messages: [{ role: "user", content: `Stream me ${t}` }] }),
      });
      assert.equal(res.status, 200);
      const text = await res.text();
      assert.ok(text.trimEnd().endsWith("data: [DONE]"), text);
      await pollUntil(() => callsFor(stub, t).judge.length, (n) => n === 1, { timeoutMs: 30_000 });
      const { judge } = callsFor(stub, t);
      assert.equal(judge.length, 1);
      assert.ok(judge[0].body.messages[1].content.includes("Stub answer from mistral-small-2603"), "the streamed answer reached the judge");
    });
  });

  it("a job whose text was lost with a restart of the store is counted, not forgotten", async () => {
    const state = tempDir("llm-mux-quality-restart-");
    const vars = { MISTRAL_API_KEY: MISTRAL_KEY, MISTRAL_BASE_URL: stub.url, QUALITY_SAMPLE_RATE: "1", ROUTING_THRESHOLD: "1" };
    let gw = await startGateway({ persistTo: state, vars });
    try {
      const t = tag();
      // The other tier fails: the job waits 1 s, then 4 s, for its retries.
      assertQueryShape(await client(gw).query({ query: `Lost ${t} [[stub:fail-model=mistral-large-latest]]` }));
      await pollUntil(() => callsFor(stub, t).other.filter((r) => r.body.model === "mistral-large-latest").length, (n) => n >= 2, { timeoutMs: 10_000 });
      await gw.stop();
      gw = await startGateway({ persistTo: state, vars });
      const c = client(gw);
      const m = await pollUntil(() => quality(c), (m) => m.quality.samples_pending === 0, { timeoutMs: 20_000, intervalMs: 500 });
      assert.equal(m.quality.samples_pending, 0);
      assert.equal(m.quality.samples_failed_by_reason.lost_on_restart, 1, JSON.stringify(m.quality));
      assert.equal(m.quality.samples_judged, 0);
    } finally {
      await gw.stop();
    }
  });

  it("with QUALITY_TARGET the controller moves the threshold once it has enough samples, and the worker routes with it", async () => {
    const state = tempDir("llm-mux-quality-controller-");
    const vars = {
      MISTRAL_API_KEY: MISTRAL_KEY,
      MISTRAL_BASE_URL: stub.url,
      QUALITY_SAMPLE_RATE: "1",
      QUALITY_TARGET: "0.95",
      QUALITY_MAX_SAMPLES_PER_HOUR: "1000",
      ROUTING_THRESHOLD: "1",
    };
    let gw = await startGateway({ persistTo: state, vars });
    try {
      const c = client(gw);
      const run = tag();
      // The small tier's answers grade 6 and the top tier's 9: quality retained with every
      // request on the small tier is (6-1)/(9-1) = 0.625, far below the target.
      const first = await c.query({ query: `Controller ${run} first [[stub:judge-small=6]]` });
      assert.equal(first.json.routing.threshold, 1);
      const N = 170;
      for (let i = 0; i < N; i += 17) {
        await Promise.all(Array.from({ length: 17 }, (_, j) => c.query({ query: `Controller ${run} q${i + j} [[stub:judge-small=6]]` })));
      }
      const m = await pollUntil(() => quality(c), (m) => m.quality.threshold_source === "controller", { timeoutMs: 60_000, intervalMs: 1000 });
      assert.equal(m.quality.threshold_source, "controller", JSON.stringify(m.quality));
      assert.ok(m.quality.samples_judged >= 150, JSON.stringify(m.quality));
      assert.ok(m.quality.threshold < 1, `threshold ${m.quality.threshold}`);
      assert.equal(m.quality.target, 0.95);
      assert.equal(m.quality.target_kind, "quality_retained");
      // Reading /metrics refreshed this isolate: the next request routes with the new one.
      const after = await c.query({ query: `Controller ${run} after` });
      assertQueryShape(after);
      assert.ok(Math.abs(after.json.routing.threshold - m.quality.threshold) < 1e-12, `${after.json.routing.threshold} vs ${m.quality.threshold}`);
      // A fresh isolate (the gateway restarted on the same state) routes its very first
      // request with the controller's threshold: it refreshes before routing.
      await gw.stop();
      gw = await startGateway({ persistTo: state, vars });
      const c2 = client(gw);
      const first2 = await c2.query({ query: `Controller ${run} fresh isolate` });
      assertQueryShape(first2);
      const m2 = await quality(c2);
      assert.equal(m2.quality.threshold_source, "controller");
      assert.ok(first2.json.routing.threshold < 1, `fresh isolate routed with ${first2.json.routing.threshold}`);
      assert.ok(Math.abs(first2.json.routing.threshold - m2.quality.threshold) < 0.05, `${first2.json.routing.threshold} vs ${m2.quality.threshold}`);
    } finally {
      await gw.stop();
    }
  });

  describe("sampling off, a share, and the hourly cap", () => {
    it("the client's body and headers are the same with sampling on and off", async () => {
      const vars = { MISTRAL_API_KEY: MISTRAL_KEY, MISTRAL_BASE_URL: stub.url, ROUTING_THRESHOLD: "1" };
      const off = await startGateway({ vars });
      const on = await startGateway({ vars: { ...vars, QUALITY_SAMPLE_RATE: "1" } });
      try {
        const q = `Same answer please ${tag()}`;
        const a = await client(off).query({ query: q });
        const b = await client(on).query({ query: q });
        assertQueryShape(a);
        assertQueryShape(b);
        const strip = (j) => ({ ...j, metrics: { ...j.metrics, latency_ms: 0 } });
        assert.deepEqual(strip(b.json), strip(a.json));
        const headers = (r) => [...r.headers].filter(([k]) => !["x-request-id", "date"].includes(k));
        assert.deepEqual(headers(b), headers(a));
        await sleep(1000);
        assert.equal(callsFor(stub, q).judge.length, 1, "only the sampling gateway judged");
        const m = await quality(client(off));
        assert.equal(m.quality.samples_judged, 0);
        assert.equal(m.quality.evaluation_cost_usd, 0);
        assert.equal(m.evaluation_cost_usd, 0);
      } finally {
        await off.stop();
        await on.stop();
      }
    });

    it("QUALITY_SAMPLE_RATE is honoured and QUALITY_MAX_SAMPLES_PER_HOUR caps the samples", async () => {
      const gw = await startGateway({
        vars: { MISTRAL_API_KEY: MISTRAL_KEY, MISTRAL_BASE_URL: stub.url, QUALITY_SAMPLE_RATE: "0.3", QUALITY_MAX_SAMPLES_PER_HOUR: "1000" },
      });
      const capped = await startGateway({
        vars: { MISTRAL_API_KEY: MISTRAL_KEY, MISTRAL_BASE_URL: stub.url, QUALITY_SAMPLE_RATE: "1", QUALITY_MAX_SAMPLES_PER_HOUR: "2" },
      });
      try {
        const c = client(gw);
        const run = tag();
        const N = 100;
        for (let i = 0; i < N; i += 10) {
          await Promise.all(Array.from({ length: 10 }, (_, j) => c.query({ query: `Share ${run} ${i + j}` })));
        }
        const m = await pollUntil(() => quality(c), (m) => m.quality.samples_pending === 0, { timeoutMs: 30_000, intervalMs: 500 });
        const judged = m.quality.samples_judged;
        // Binomial(100, 0.3): mean 30, sd 4.6; 14..46 is beyond 3.4 sd either way.
        assert.ok(judged >= 14 && judged <= 46, `sampled ${judged} of ${N} at rate 0.3`);
        assert.equal(findStubRequests(stub, run).filter((r) => isJudgeRequest(r.body)).length, judged);

        const cc = client(capped);
        const capRun = tag();
        for (let i = 0; i < 5; i++) assertQueryShape(await cc.query({ query: `Capped ${capRun} ${i}` }));
        const mc = await pollUntil(() => quality(cc), (m) => m.quality.samples_pending === 0 && m.quality.samples_judged >= 2, { timeoutMs: 30_000, intervalMs: 500 });
        assert.equal(mc.quality.samples_judged, 2);
        assert.equal(mc.quality.samples_capped, 3);
        assert.equal(findStubRequests(stub, capRun).filter((r) => isJudgeRequest(r.body)).length, 2);
      } finally {
        await gw.stop();
        await capped.stop();
      }
    });
  });
});
