// Cost control (issue 12): per-key rate limits, spend budgets held by the ledger Durable
// Object under concurrency, BUDGET_ACTION=downgrade, allowed tiers, key ids in errors and
// /metrics, and floods of refused requests that cost no row per request.

import { describe, it, before, after } from "node:test";
import assert from "node:assert/strict";
import { rmSync } from "node:fs";
import { startGateway, tempDir } from "./harness.mjs";
import { startMistralStub } from "./mistral-stub.mjs";
import { client, secret, tag, assertError, assertNoSecrets, findStubRequests, pollUntil, PRICES, keyId } from "./helpers.mjs";


/** Picodollars of a cost as the ledger counts them (rounded per request). */
const pico = (usd) => BigInt(Math.round(usd * 1e12));

describe("rate limits per key and floods", () => {
  const MISTRAL_KEY = secret("mistral");
  const A = secret("clientA");
  const B = secret("clientB");
  let stub, gw, a, b, anon;
  before(async () => {
    stub = await startMistralStub();
    gw = await startGateway({
      vars: {
        MISTRAL_API_KEY: MISTRAL_KEY,
        MISTRAL_BASE_URL: stub.url,
        LLM_MUX_API_KEYS: `${A},${B}`,
        KEY_POLICIES: JSON.stringify({ [keyId(A)]: { rate_limit_per_minute: 3, allowed_tiers: ["small"] } }),
      },
    });
    a = client(gw, { token: A });
    b = client(gw, { token: B });
    anon = client(gw);
  });
  after(async () => {
    await gw?.stop();
    await stub?.close();
  });

  it("over the limit: 429 with Retry-After and the key id, nothing sent upstream", async () => {
    const t = tag();
    for (let i = 0; i < 3; i++) {
      const ok = await a.query({ query: `hello ${t} ${i}` });
      assert.equal(ok.status, 200, ok.text);
      assert.equal(ok.headers.get("x-llm-mux-key-id"), keyId(A));
    }
    const limited = await a.query({ query: `hello ${t} 4` });
    const error = assertError(limited, 429, "4th request in a minute");
    assert.equal(error.type, "rate_limit_error");
    assert.equal(error.key_id, keyId(A));
    assert.match(error.message, /3 requests per minute/);
    const retry = Number(limited.headers.get("retry-after"));
    assert.ok(retry >= 1 && retry <= 60, `Retry-After ${retry}`);
    // The OpenAI-compatible path answers in OpenAI's error format.
    const chat = await a.request("POST", "/v1/chat/completions", {
      body: { model: "auto", messages: [{ role: "user", content: `hi ${t}` }] },
    });
    assert.equal(chat.status, 429, chat.text);
    assert.equal(chat.json.error.type, "rate_limit_error");
    assert.equal(chat.json.error.code, "rate_limited");
    assert.equal(chat.json.error.key_id, keyId(A));
    assert.ok(chat.headers.get("retry-after"));
    assert.equal(findStubRequests(stub, t).length, 3, "the limited requests never reached the upstream");
    // The refusal is logged with the key id, never the key. Log output reaches wrangler's
    // stdout asynchronously (it failed once when read at once): wait for the line.
    const refusal = new RegExp(`429 key ${keyId(A)}: rate limit reached`);
    assert.match(await pollUntil(() => gw.logs(), (l) => refusal.test(l)), refusal);
    // Another key has its own (unlimited) budget of requests.
    for (let i = 0; i < 5; i++) assert.equal((await b.query({ query: `hello ${t} b${i}` })).status, 200);
  });

  it("allowed_tiers: a named tier outside them is 403, before any ledger call (native tests: auto routing moves inside them)", async () => {
    const t = tag();
    // Key A is over its rate limit from the test above: the tier check comes first (no
    // ledger call), so this is a 403, not a 429.
    const refused = await a.query({ query: `hello ${t}`, tier: "large" });
    const error = assertError(refused, 403, "tier outside allowed_tiers");
    assert.match(error.message, /allowed_tiers/);
    assert.equal(findStubRequests(stub, t).length, 0);
  });

  it("a flood of unauthorized and limited requests is counted in aggregate, not a row each", async () => {
    const before = (await b.metrics()).json;
    const t = tag();
    const flood = [];
    for (let i = 0; i < 200; i++) flood.push(anon.query({ query: `nope ${t}` }));
    for (let i = 0; i < 100; i++) flood.push(a.query({ query: `over ${t} ${i}` }));
    const answers = await Promise.all(flood);
    assert.equal(answers.filter((r) => r.status === 401).length, 200);
    const limited = answers.filter((r) => r.status === 429).length;
    assert.ok(limited >= 97, `${limited} of 100 limited`);
    const after = (await b.metrics()).json;
    assert.equal(after.failed_requests.unauthorized - (before.failed_requests.unauthorized ?? 0), 200);
    assert.equal(
      after.failed_requests.rate_limited - (before.failed_requests.rate_limited ?? 0),
      limited,
    );
    assert.equal(after.keys[keyId(A)].rate_limited - before.keys[keyId(A)].rate_limited, limited);
    const rows = after.storage.rows_written - before.storage.rows_written;
    assert.ok(rows <= 20, `${rows} metrics rows written for 300 refused requests`);
    assert.equal(findStubRequests(stub, t).length, 100 - limited);
  });

  it("/metrics shows usage per key id, never a key", async () => {
    const m = await b.metrics();
    assert.equal(m.status, 200);
    const usage = m.json.keys[keyId(B)];
    assert.ok(usage.requests >= 5, JSON.stringify(usage));
    assert.ok(usage.tokens_in > 0 && usage.cost_usd > 0);
    assert.ok(m.json.budgets[`key:${keyId(A)}`], "key A's rate limit is listed");
    assert.equal(m.json.budgets[`key:${keyId(A)}`].rate_limit_per_minute, 3);
    assertNoSecrets([...a.seen, ...b.seen, ...anon.seen, gw.logs()], [A, B, MISTRAL_KEY], "responses and logs");
  });
});

describe("spend budgets", () => {
  const MISTRAL_KEY = secret("mistral");
  let stub;
  before(async () => {
    stub = await startMistralStub();
  });
  after(async () => {
    await stub?.close();
  });

  // One request's worst case on the small tier: every byte of the upstream body a prompt
  // token, and max_tokens of completion.
  const MAX_TOKENS = 400;
  // The stub reports 100 prompt tokens (under the ~150 bytes of the upstream body) and 400
  // completion tokens: each request costs just under its worst case.
  const body = (t, i) => ({ query: `Say hello number ${i} (${t}). [[stub:tokens=100,400]]`, tier: "small", max_tokens: MAX_TOKENS });
  const worstSmall = (upstreamBytes) =>
    (upstreamBytes * PRICES["mistral-small-latest"].input + MAX_TOKENS * PRICES["mistral-small-latest"].output) / 1e6;

  it("200 concurrent requests against a budget for about 50: no overshoot, spend equals the recorded costs", async (t0) => {
    // The upstream body of one request is ~150 bytes: about 50 worst cases fit.
    const cap = Number((50 * worstSmall(150)).toPrecision(6));
    const gw = await startGateway({
      vars: { MISTRAL_API_KEY: MISTRAL_KEY, MISTRAL_BASE_URL: stub.url, GLOBAL_DAILY_BUDGET_USD: String(cap) },
    });
    try {
      const c = client(gw);
      const t = tag();
      const answers = await Promise.all(Array.from({ length: 200 }, (_, i) => c.query(body(t, i))));
      const ok = answers.filter((r) => r.status === 200);
      const refused = answers.filter((r) => r.status === 429);
      assert.equal(ok.length + refused.length, 200, answers.filter((r) => r.status !== 200 && r.status !== 429).map((r) => r.text).join("\n"));
      assert.ok(ok.length >= 40 && ok.length <= 60, `${ok.length} admitted`);
      for (const r of refused) {
        const e = assertError(r, 429, "over budget");
        assert.match(e.message, /daily budget of all traffic .* resets at \d{4}-\d\d-\d\dT00:00:00Z/);
        assert.ok(Number(r.headers.get("retry-after")) >= 1);
        assert.equal(r.headers.get("x-should-retry"), "false");
      }
      assert.equal(findStubRequests(stub, t).length, ok.length, "refused requests never reached the upstream");
      // Whatever the burst left (reservations of refused requests' neighbours settled
      // below their worst case), one request at a time takes until one no longer fits.
      let more = 0;
      for (;;) {
        // /metrics sends this isolate's settlements first: nothing is left in flight.
        await c.metrics();
        const r = await c.query(body(t, 1000 + more));
        if (r.status !== 200) {
          assertError(r, 429, "sequential, over budget");
          refused.push(r);
          break;
        }
        ok.push(r);
        more += 1;
        assert.ok(more < 50, "the budget never ran out");
      }
      const recorded = ok.reduce((sum, r) => sum + pico(r.json.metrics.cost_usd), 0n);
      const m = (await c.metrics()).json;
      const global = m.budgets.global;
      assert.equal(BigInt(global.daily_spent_picousd), recorded, "ledger spend = sum of recorded costs");
      assert.equal(global.reserved_usd, 0, "every reservation settled");
      // No overshoot at all (each request cost less than its reservation), well within the
      // bound of one request's worst case.
      assert.ok(global.daily_spent_usd <= cap, `spent ${global.daily_spent_usd} of ${cap}`);
      // Refused with nothing in flight: the next worst case (upstream body < 200 bytes) did
      // not fit.
      assert.ok(global.daily_spent_usd + worstSmall(200) > cap, `spent ${global.daily_spent_usd} of ${cap}`);
      assert.equal(m.failed_requests.budget_exceeded, refused.length);
      t0.diagnostic(
        `budget $${cap}: ${ok.length - more} of 200 concurrent admitted, ${more} more one by one; ` +
          `spent $${global.daily_spent_usd} (${global.daily_spent_picousd} pUSD = sum of recorded costs)`,
      );
    } finally {
      await gw.stop();
    }
  });

  it("BUDGET_ACTION=downgrade: a request only the cheaper tier fits goes there, and says so", async () => {
    // Room for a small worst case (~$0.0003) but not a large one (~$0.0007).
    const gw = await startGateway({
      vars: {
        MISTRAL_API_KEY: MISTRAL_KEY,
        MISTRAL_BASE_URL: stub.url,
        GLOBAL_MONTHLY_BUDGET_USD: "0.0005",
        BUDGET_ACTION: "downgrade",
        ROUTING_THRESHOLD: "0",
      },
    });
    try {
      const c = client(gw);
      const t = tag();
      const r = await c.query({ query: `Explain ${t} [[stub:tokens=100,400]]`, max_tokens: MAX_TOKENS });
      assert.equal(r.status, 200, r.text);
      assert.equal(r.json.model_used, "mistral-small-latest");
      assert.match(r.json.routing_decision, /moved from LARGE \(budget\)/);
      assert.deepEqual(r.json.routing.downgrade, { from: "large", reason: "budget" });
      assert.equal(r.headers.get("x-llm-mux-budget"), "downgraded from large");
      // Spend grows until not even the small tier fits: then 429 naming the monthly budget.
      let last;
      for (let i = 0; i < 20; i++) {
        last = await c.query({ query: `Explain ${t} ${i} [[stub:tokens=100,400]]`, max_tokens: MAX_TOKENS });
        if (last.status !== 200) break;
      }
      const e = assertError(last, 429, "monthly budget spent");
      assert.match(e.message, /monthly budget of all traffic/);
    } finally {
      await gw.stop();
    }
  });

  it("settled spend survives a restart of the gateway; the budget still holds after it", async () => {
    const persistTo = tempDir("llm-mux-budget-");
    const vars = { MISTRAL_API_KEY: MISTRAL_KEY, MISTRAL_BASE_URL: stub.url, GLOBAL_DAILY_BUDGET_USD: "0.0006" };
    try {
      let gw = await startGateway({ vars, persistTo });
      const t = tag();
      let before;
      try {
        const c = client(gw);
        const r = await c.query(body(t, 1));
        assert.equal(r.status, 200, r.text);
        before = (await c.metrics()).json.budgets.global;
        assert.equal(BigInt(before.daily_spent_picousd), pico(r.json.metrics.cost_usd));
      } finally {
        await gw.stop();
      }
      gw = await startGateway({ vars, persistTo });
      try {
        const c = client(gw);
        const after = (await c.metrics()).json.budgets.global;
        assert.equal(after.daily_spent_picousd, before.daily_spent_picousd, "spend kept across the restart");
        // $0.0006 fits two requests' worst case (~$0.00026 each): one more is admitted,
        // then the persisted spend makes the next one not fit.
        assert.equal((await c.query(body(t, 2))).status, 200);
        await c.metrics();
        assertError(await c.query(body(t, 3)), 429, "over the budget after the restart");
      } finally {
        await gw.stop();
      }
    } finally {
      rmSync(persistTo, { recursive: true, force: true });
    }
  });

  it("a streamed request settles its real cost when the stream ends", async () => {
    const gw = await startGateway({
      vars: { MISTRAL_API_KEY: MISTRAL_KEY, MISTRAL_BASE_URL: stub.url, GLOBAL_DAILY_BUDGET_USD: "1" },
    });
    try {
      const c = client(gw);
      const t = tag();
      const r = await c.request("POST", "/v1/chat/completions", {
        body: { model: "small", stream: true, stream_options: { include_usage: true }, messages: [{ role: "user", content: `Stream ${t}` }] },
      });
      assert.equal(r.status, 200, r.text);
      const usage = r.text.split("\n").filter((l) => l.startsWith("data: {")).map((l) => JSON.parse(l.slice(6))).find((e) => e.usage)?.usage;
      assert.ok(usage, r.text);
      const cost = (usage.prompt_tokens * PRICES["mistral-small-latest"].input + usage.completion_tokens * PRICES["mistral-small-latest"].output) / 1e6;
      // The settlement runs after the stream; /metrics reads the ledger.
      let global;
      for (let i = 0; i < 50; i++) {
        global = (await c.metrics()).json.budgets.global;
        if (global.daily_spent_picousd > 0 && global.reserved_usd === 0) break;
        await new Promise((res) => setTimeout(res, 100));
      }
      assert.equal(BigInt(global.daily_spent_picousd), pico(cost));
      assert.equal(global.reserved_usd, 0);
      // The gateway capped the completion it reserved for (BUDGET_MAX_COMPLETION_TOKENS).
      const sent = findStubRequests(stub, t)[0].body;
      assert.equal(sent.max_tokens, 4096);
    } finally {
      await gw.stop();
    }
  });
});
