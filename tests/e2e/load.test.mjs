// A bounded load test through the built worker in workerd (issue: load test with restart).
//
// Both runs go to the worker in plain workerd (scripts/selfhost/serve.sh, as `make serve` and
// the Docker image run it; LLM_MUX_E2E_RUNTIME=docker: the image), not through `wrangler
// dev`, whose dev proxy loses a POST now and then under load (LOAD_RUNTIME in harness.mjs).
//
// Run 1: 2,000 requests at concurrency 64, no faults: /query and /v1/chat/completions, whole
// and streamed, forced small, forced large and auto-routed. Afterwards /metrics equals the
// client-side tally: requests per tier, tokens per tier (the Prometheus exposition has them
// by tier), cost per tier and in total (to float summation order), nothing failed, nothing
// counted twice.
//
// Run 2: the same mix, 1,000 requests on a persistent state directory; the
// gateway is stopped (SIGTERM, as `docker stop` would) while 64 requests are in flight, and
// started again on the same state; the rest goes to the new gateway. What "recorded" means: a
// request's metrics event is queued in the isolate after its response and sent to the
// Durable Object in a batch (METRICS_BATCH_MS, 100 ms); it is recorded once the object has
// written it. Checked:
//   - everything a /metrics read showed before the stop is there after the restart (a read
//     sends the isolate's queue first, so it also covers every request answered before it),
//     and no more than was answered or cut before the stop;
//   - every request after the restart is counted exactly once, per tier, tokens and cost;
//   - every request whose answer the client received before the stop is there: serve.sh
//     has the worker drain its batches before workerd stops (POST /_llm-mux/drain).
// Requests cut by the stop (no answer) are sent again; their answer then tells what they
// would have counted (same text, same tier, same tokens), which bounds the totals.

import { describe, it, after } from "node:test";
import assert from "node:assert/strict";
import { rmSync } from "node:fs";

import { startGateway, tempDir, LOAD_RUNTIME } from "./harness.mjs";
import { startMistralStub } from "./mistral-stub.mjs";
import { secret, expectedCost, random, SMALL, LARGE } from "./helpers.mjs";
import { readSse } from "./chat-helpers.mjs";

const CONCURRENCY = 64;
const TIERS = ["small", "large"];

const SIMPLE = ["What is the capital of France?", "Say hello.", "Translate 'cat' to Spanish.", "What is 2 + 2?"];
const HARD = [
  "Prove that there are infinitely many primes, then analyze the complexity of the sieve of Eratosthenes step by step and compare it with trial division.",
  "Design a distributed rate limiter for a multi-region API gateway; explain the consistency trade-offs, failure modes and how you would test it.",
];

/** `n` requests: endpoint (query, chat, stream) x tier (small, large, auto), seeded. */
function plan(n, seed) {
  const rand = random(seed);
  return Array.from({ length: n }, (_, i) => {
    const kind = ["query", "chat", "stream"][Math.floor(rand() * 3)];
    const tier = ["small", "large", "auto"][Math.floor(rand() * 3)];
    const pool = tier === "auto" && rand() < 0.5 ? HARD : SIMPLE;
    const text = `${pool[Math.floor(rand() * pool.length)]} (load ${seed}/${i})`;
    return { i, kind, tier, text };
  });
}

/**
 * Sends one planned request; returns what the gateway answered and billed:
 * {tier, tokensIn, tokensOut, cost}. Throws on a network error or a non-200 answer.
 */
async function send(url, r) {
  const signal = AbortSignal.timeout(30_000);
  const post = (path, body) => fetch(url + path, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body), signal });
  if (r.kind === "query") {
    const res = await post("/query", { query: r.text, ...(r.tier === "auto" ? {} : { tier: r.tier }) });
    const text = await res.text();
    if (res.status !== 200) throw Object.assign(new Error(`HTTP ${res.status}: ${text.slice(0, 200)}`), { http: res.status });
    const b = JSON.parse(text);
    return { tier: b.routing.tier, tokensIn: b.metrics.tokens_in, tokensOut: b.metrics.tokens_out, cost: b.metrics.cost_usd };
  }
  const body = { model: r.tier, messages: [{ role: "user", content: r.text }] };
  if (r.kind === "chat") {
    const res = await post("/v1/chat/completions", body);
    const text = await res.text();
    if (res.status !== 200) throw Object.assign(new Error(`HTTP ${res.status}: ${text.slice(0, 200)}`), { http: res.status });
    const b = JSON.parse(text);
    const cost = Number(res.headers.get("x-llm-mux-cost-usd"));
    // the header has 8 decimals: the exact cost from the price table, checked against it
    const tier = res.headers.get("x-llm-mux-tier");
    const exact = expectedCost(b.model, tier === "small" ? SMALL : LARGE, b.usage.prompt_tokens, b.usage.completion_tokens);
    assert.ok(Math.abs(exact - cost) < 1e-8, `cost header ${cost} vs price table ${exact}`);
    return { tier, tokensIn: b.usage.prompt_tokens, tokensOut: b.usage.completion_tokens, cost: exact };
  }
  const res = await post("/v1/chat/completions", { ...body, stream: true, stream_options: { include_usage: true } });
  if (res.status !== 200) throw Object.assign(new Error(`HTTP ${res.status}: ${(await res.text()).slice(0, 200)}`), { http: res.status });
  const tier = res.headers.get("x-llm-mux-tier");
  const sse = await readSse(res);
  if (sse.error) throw sse.error;
  const data = sse.events.map((e) => e.data);
  if (data.at(-1) !== "[DONE]") throw new Error(`stream did not end with [DONE]: ${sse.raw.slice(-200)}`);
  const last = data.slice(0, -1).map((d) => JSON.parse(d)).findLast((c) => c.usage);
  if (!last) throw new Error("stream without usage");
  const { prompt_tokens: tokensIn, completion_tokens: tokensOut } = last.usage;
  return { tier, tokensIn, tokensOut, cost: expectedCost(last.model, tier === "small" ? SMALL : LARGE, tokensIn, tokensOut) };
}

/** Per-tier sums of answers. */
function tally(answers) {
  const t = { requests: 0, tokensIn: 0, tokensOut: 0, cost: 0, tiers: {} };
  for (const a of answers) {
    const x = (t.tiers[a.tier] ??= { requests: 0, tokensIn: 0, tokensOut: 0, cost: 0 });
    for (const s of [t, x]) {
      s.requests++;
      s.tokensIn += a.tokensIn;
      s.tokensOut += a.tokensOut;
      s.cost += a.cost;
    }
  }
  return t;
}

/** /metrics (JSON) and the per-tier tokens and cost of the Prometheus exposition. */
async function snapshot(url) {
  const m = await (await fetch(`${url}/metrics`, { signal: AbortSignal.timeout(10_000) })).json();
  const text = await (await fetch(`${url}/metrics/prometheus`, { signal: AbortSignal.timeout(10_000) })).text();
  const tiers = {};
  for (const tier of TIERS) tiers[tier] = { requests: m.tier_breakdown?.[tier] ?? 0, tokensIn: 0, tokensOut: 0, cost: 0 };
  for (const line of text.split("\n")) {
    let g = /^llm_mux_tokens_total\{direction="(in|out)",tier="(\w+)"\} (\d+)$/.exec(line);
    if (g) tiers[g[2]][g[1] === "in" ? "tokensIn" : "tokensOut"] += Number(g[3]);
    g = /^llm_mux_cost_usd_total\{tier="(\w+)",model="[^"]*"\} (\S+)$/.exec(line);
    if (g) tiers[g[1]].cost += Number(g[2]);
  }
  return { m, tiers };
}

/** A snapshot's figures as a tally (the shape `tally` returns). */
function snapshotTally({ m, tiers }) {
  return { requests: m.total_requests, tokensIn: m.tokens_in, tokensOut: m.tokens_out, cost: m.total_cost_usd, tiers };
}

/** The snapshot `b` minus the snapshot `a` (what was counted between them), as a snapshot. */
function difference(b, a) {
  const m = {};
  for (const k of ["total_requests", "tokens_in", "tokens_out", "total_cost_usd"]) m[k] = b.m[k] - a.m[k];
  const tiers = {};
  for (const tier of TIERS) {
    tiers[tier] = {};
    for (const k of ["requests", "tokensIn", "tokensOut", "cost"]) tiers[tier][k] = b.tiers[tier][k] - a.tiers[tier][k];
  }
  return { m, tiers };
}

/** Asserts the snapshot's per-tier and total figures equal the tally `t` (cost to 1e-9). */
function assertEqualsTally(snap, t, what) {
  const { m, tiers } = snap;
  assert.equal(m.total_requests, t.requests, `${what}: total_requests`);
  assert.equal(m.tokens_in, t.tokensIn, `${what}: tokens_in`);
  assert.equal(m.tokens_out, t.tokensOut, `${what}: tokens_out`);
  assert.ok(Math.abs(m.total_cost_usd - t.cost) < 1e-9, `${what}: total_cost_usd ${m.total_cost_usd} vs ${t.cost}`);
  for (const tier of TIERS) {
    const want = t.tiers[tier] ?? { requests: 0, tokensIn: 0, tokensOut: 0, cost: 0 };
    assert.equal(tiers[tier].requests, want.requests, `${what}: ${tier} requests`);
    assert.equal(tiers[tier].tokensIn, want.tokensIn, `${what}: ${tier} tokens in`);
    assert.equal(tiers[tier].tokensOut, want.tokensOut, `${what}: ${tier} tokens out`);
    assert.ok(Math.abs(tiers[tier].cost - want.cost) < 1e-9, `${what}: ${tier} cost ${tiers[tier].cost} vs ${want.cost}`);
  }
}

/** Asserts lo <= snapshot <= hi for every figure (tallies of answered, answered + cut). */
function assertBetween(snap, lo, hi, what) {
  const { m, tiers } = snap;
  const within = (v, a, b, name) => assert.ok(v >= a - 1e-9 && v <= b + 1e-9, `${what}: ${name} ${v} not in [${a}, ${b}]`);
  within(m.total_requests, lo.requests, hi.requests, "total_requests");
  within(m.tokens_in, lo.tokensIn, hi.tokensIn, "tokens_in");
  within(m.tokens_out, lo.tokensOut, hi.tokensOut, "tokens_out");
  within(m.total_cost_usd, lo.cost, hi.cost, "total_cost_usd");
  const zero = { requests: 0, tokensIn: 0, tokensOut: 0, cost: 0 };
  for (const tier of TIERS) {
    const [a, b] = [lo.tiers[tier] ?? zero, hi.tiers[tier] ?? zero];
    for (const k of Object.keys(zero)) within(tiers[tier][k], a[k], b[k], `${tier} ${k}`);
  }
}

/** Runs `items` through `CONCURRENCY` workers; `pause()` may return a promise that holds
 * every worker before its next request (for the restart); `abort()` stops them. */
async function drive(items, { url, onAnswer, onCut, pause = () => null, abort = () => false }) {
  const queue = [...items];
  async function worker() {
    for (;;) {
      const held = pause();
      if (held) await held;
      if (abort()) return;
      const r = queue.shift();
      if (!r) return;
      try {
        onAnswer(r, await send(url(), r));
      } catch (e) {
        if (e.http) throw e; // the gateway answered an error: a real failure
        onCut(r, e);
        queue.push(r); // never answered: sent again (as a new request)
      }
    }
  }
  await Promise.all(Array.from({ length: CONCURRENCY }, worker));
}

describe("load: 2,000 requests at concurrency 64, then a restart mid-run", () => {
  const runtime = LOAD_RUNTIME; // plain workerd (or the Docker image): see the top of the file
  const started = [];
  after(async () => {
    for (const x of started) await x.stop?.();
  });

  it("run 1: /metrics equals the client-side tally per tier (count, tokens, cost)", async () => {
    const stub = await startMistralStub({ port: 0, maxRecorded: 100 });
    started.push({ stop: () => stub.close() });
    const gw = await startGateway({ vars: { MISTRAL_API_KEY: secret("load"), MISTRAL_BASE_URL: stub.url }, runtime });
    started.unshift(gw);
    const answers = [];
    const t0 = Date.now();
    try {
      await drive(plan(2_000, 1), {
        url: () => gw.url,
        onAnswer: (_, a) => answers.push(a),
        onCut: (r, e) => assert.fail(`request ${r.i} cut without a fault: ${e.message}`),
      });
    } catch (e) {
      // what the runtime printed tells why (a reload, a crash)
      e.message += `\n--- gateway log (end) ---\n${gw.logs().slice(-8000)}`;
      throw e;
    }
    const seconds = (Date.now() - t0) / 1000;
    const t = tally(answers);
    console.log(`load run 1 (${runtime}): ${answers.length} requests in ${seconds.toFixed(1)} s (${(answers.length / seconds).toFixed(0)}/s), tiers ${JSON.stringify(Object.fromEntries(Object.entries(t.tiers).map(([k, v]) => [k, v.requests])))}`);
    assert.equal(answers.length, 2_000);
    assert.ok(t.tiers.small?.requests > 300 && t.tiers.large?.requests > 300, "both tiers loaded");

    const snap = await snapshot(gw.url);
    assertEqualsTally(snap, t, "run 1");
    assert.equal(snap.m.failed_requests_total, 0, `failures: ${JSON.stringify(snap.m.failed_requests)}`);
    assert.equal(snap.m.storage.duplicates, 0, "no event counted twice");
    await gw.stop();
    started.shift();
  });

  // Run 2 in plain workerd (scripts/selfhost/serve.sh, as `make serve` and the Docker image run
  // it), whose SIGTERM is a graceful stop: it stops listening and lets the requests in flight
  // finish. (`wrangler dev` has no graceful stop: on SIGTERM it kills its workerd with
  // SIGKILL.) LLM_MUX_E2E_RUNTIME=docker runs it against the image instead.
  const run2 = {};
  it("run 2: a restart mid-run loses nothing recorded before it; everything after it counts exactly", async () => {
    const stub = await startMistralStub({ port: 0, maxRecorded: 100 });
    started.push({ stop: () => stub.close() });
    const persistTo = tempDir("llm-mux-load-");
    started.push({ stop: async () => rmSync(persistTo, { recursive: true, force: true }) });
    const vars = { MISTRAL_API_KEY: secret("load"), MISTRAL_BASE_URL: stub.url, METRICS_BATCH_MS: process.env.LLM_MUX_LOAD_BATCH_MS };
    let gw = await startGateway({ vars, persistTo, runtime });
    started.unshift(gw);

    const TOTAL = 1_000;
    const RESTART_AFTER = 500;
    const answers = []; // every answer, in arrival order, with its time
    const answerOf = new Map(); // plan index -> answer (a request sent again gets the same one)
    const cut = []; // requests that got no answer (then sent again)
    let stopping = false;
    let resume;
    const held = new Promise((r) => (resume = r));
    let restart;
    const at = {}; // answers counted at each step of the restart
    let read, afterRestart;
    const t0 = Date.now();

    let failed;
    async function restartMidRun() {
      try {
        await restartSteps();
      } catch (e) {
        failed = e;
        throw e;
      } finally {
        resume();
      }
    }
    async function restartSteps() {
      // A /metrics read while requests are in flight: it sends the isolate's queue first, so
      // it holds at least every request answered before it was sent.
      at.readSent = answers.length;
      read = await snapshot(gw.url);
      // Stop with requests in flight; new ones are held back until the restart.
      stopping = true;
      at.stopSent = answers.length;
      at.sigterm = Date.now();
      await gw.stop(); // SIGTERM; SIGKILL only if still running after 10 s
      at.stopMs = Date.now() - at.sigterm;
      at.stopped = answers.length;
      started.shift();
      gw = await startGateway({ vars, persistTo, runtime });
      started.unshift(gw);
      afterRestart = await snapshot(gw.url);
    }

    await drive(plan(TOTAL, 2), {
      url: () => gw.url,
      onAnswer: (r, a) => {
        a.at = Date.now();
        answers.push(a);
        answerOf.set(r.i, a);
        if (answers.length === RESTART_AFTER) {
          restart = restartMidRun();
          restart.catch(() => {}); // awaited after the run
        }
      },
      onCut: (r, e) => cut.push({ r, why: e.cause?.code ?? e.message }),
      pause: () => (stopping && !afterRestart ? held : null),
      abort: () => Boolean(failed),
    });
    await restart;
    const end = await snapshot(gw.url);
    const seconds = (Date.now() - t0) / 1000;
    const inLast = (ms) => answers.filter((a) => a.at <= at.sigterm && a.at > at.sigterm - ms).length;
    console.log(
      `load run 2 (${runtime}, METRICS_BATCH_MS ${vars.METRICS_BATCH_MS ?? "default"}): ${answers.length} answered in ${seconds.toFixed(1)} s; ` +
        `answered before the read ${at.readSent}, before SIGTERM ${at.stopSent} (${inLast(100)} in its last 100 ms), ` +
        `until the gateway was gone ${at.stopped} (stop took ${at.stopMs} ms); ${cut.length} cut by the stop ` +
        `(${[...new Set(cut.map((c) => c.why))].join(", ")}); /metrics read before the stop ${read.m.total_requests}, ` +
        `after the restart ${afterRestart.m.total_requests}, at the end ${end.m.total_requests}`,
    );
    Object.assign(run2, { at, read, afterRestart, end, answers, cut, answerOf });

    // 1. The read before the stop held every request answered before it was sent.
    assert.ok(read.m.total_requests >= at.readSent, `the read holds the ${at.readSent} requests answered before it: ${read.m.total_requests}`);
    // 2. Nothing recorded before the stop is lost: the restarted gateway shows at least what
    //    the read showed, per tier, for tokens and for cost; and no more than was answered
    //    or cut before the stop.
    const hiBefore = tally([...answers.slice(0, at.stopped), ...cut.map(({ r }) => answerOf.get(r.i))]);
    assertBetween(afterRestart, snapshotTally(read), hiBefore, "after the restart");
    // 3. After the restart: every request counted exactly once (no gateway stop there).
    const after = tally(answers.slice(at.stopped));
    assert.equal(after.requests, TOTAL - at.stopped);
    assertEqualsTally(difference(end, afterRestart), after, "requests after the restart");
    assert.equal(end.m.failed_requests_total, 0, `failures: ${JSON.stringify(end.m.failed_requests)}`);
    assert.equal(end.m.storage.duplicates, 0, "no event counted twice");
  });

  // What a graceful stop also keeps: the metrics of every request answered before the
  // gateway went away. Those are queued in the isolate for METRICS_BATCH_MS (100 ms) and sent
  // from the `waitUntil` of the request that started the batch; workerd's drain on SIGTERM
  // finishes the requests in flight but not that pending send (before the drain request:
  // 34 to 68 of ~640 answered were lost in three runs). serve.sh therefore asks the worker
  // to drain first: batches go out at once, and the drain request, which workerd waits
  // for, ends only when nothing is being served or sent.
  it("run 2: every request answered before a graceful stop is recorded", () => {
    const { at, afterRestart, cut } = run2;
    assert.ok(at, "run 2 ran");
    const answeredBeforeStop = tally(run2.answers.slice(0, at.stopped));
    const lost = answeredBeforeStop.requests - afterRestart.m.total_requests;
    assert.ok(
      lost <= 0,
      `${lost} of the ${at.stopped} requests answered before the stop are missing after the restart ` +
        `(${cut.length} cut by the stop; the read ${at.stopped - at.readSent} answers earlier showed ${run2.read.m.total_requests})`,
    );
    assertBetween(afterRestart, answeredBeforeStop, tally([...run2.answers.slice(0, at.stopped), ...cut.map(({ r }) => run2.answerOf.get(r.i))]), "after the restart");
  });
});
