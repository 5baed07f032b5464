// Metrics events are batched per isolate (METRICS_BATCH_MS): many requests reach the
// Durable Object in one call and one row write, the batch is sent without anyone reading
// /metrics, /metrics sends this isolate's queued events before it reads, and
// METRICS_BATCH_MS=0 sends each event on its own. Observed through /metrics `storage`
// (the object's own counters: events recorded, batches, rows written).

import { describe, it, before, after } from "node:test";
import assert from "node:assert/strict";
import { startGateway } from "./harness.mjs";
import { startMistralStub } from "./mistral-stub.mjs";
import { client, secret, tag, pollUntil, sleep, assertQueryShape } from "./helpers.mjs";

const MISTRAL_KEY = secret("mistral");

async function storage(c) {
  const res = await c.metrics();
  assert.equal(res.status, 200, res.text);
  return { ...res.json.storage, total_requests: res.json.total_requests, failed: res.json.failed_requests_total };
}

/** Rows written for batches: all rows but those of finished time buckets. */
const batchRows = (s) => s.rows_written - s.bucket_rows_written;

describe("metrics batching", () => {
  let stub;
  before(async () => {
    stub = await startMistralStub();
  });
  after(async () => {
    await stub?.close();
  });

  describe("with a 1.5 s window", () => {
    const WINDOW_MS = 1500;
    let gw, c;
    before(async () => {
      gw = await startGateway({
        vars: { MISTRAL_API_KEY: MISTRAL_KEY, MISTRAL_BASE_URL: stub.url, METRICS_BATCH_MS: String(WINDOW_MS) },
      });
      c = client(gw);
    });
    after(async () => {
      await gw?.stop();
    });

    it("concurrent requests reach the Durable Object as one batch, one row write, without a reader", async () => {
      const s0 = await storage(c);
      const N = 24;
      const t0 = Date.now();
      const results = await Promise.all(
        Array.from({ length: N }, (_, i) => c.query({ query: `batch ${i} ${tag()}` })),
      );
      const sentIn = Date.now() - t0;
      for (const r of results) assertQueryShape(r);
      assert.ok(sentIn < WINDOW_MS, `the ${N} requests took ${sentIn} ms, longer than the window: cannot test one batch`);
      // Nobody reads /metrics until the window has passed: only the flusher can send them.
      await sleep(WINDOW_MS + 1500);
      const s1 = await storage(c);
      assert.equal(s1.events - s0.events, N, "every event recorded by the flusher");
      assert.equal(s1.batches - s0.batches, 1, "in one batch");
      // (a time bucket whose 5 minutes or hour ended meanwhile is written once, apart)
      assert.equal(batchRows(s1) - batchRows(s0), 1, "one row written for the whole batch");
      assert.equal(s1.total_requests - s0.total_requests, N);
      assert.equal(s1.duplicates - s0.duplicates, 0);
    });

    it("/metrics sends this isolate's queued events before reading: a client sees its own request at once", async () => {
      const s0 = await storage(c);
      const ok = await c.query({ query: `read your writes ${tag()}` });
      assertQueryShape(ok);
      const bad = await c.query({ nope: true });
      assert.equal(bad.status, 400);
      // Immediately, well within the window.
      const s1 = await storage(c);
      assert.equal(s1.total_requests - s0.total_requests, 1, "the success is counted");
      assert.equal(s1.failed - s0.failed, 1, "the failure is counted");
      assert.equal(s1.events - s0.events, 2);
      // The flusher that was started finds nothing left: nothing is counted twice.
      await sleep(WINDOW_MS + 1000);
      const s2 = await storage(c);
      assert.equal(s2.events, s1.events, "nothing recorded twice or late");
      assert.equal(s2.total_requests, s1.total_requests);
    });

    it("a streamed request is recorded by the same mechanism", async () => {
      const s0 = await storage(c);
      const res = await fetch(`${gw.url}/query`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ query: `stream ${tag()}`, stream: true }),
      });
      assert.equal(res.status, 200);
      const text = await res.text();
      assert.match(text, /data: \[DONE\]/);
      await sleep(WINDOW_MS + 1500);
      const s1 = await storage(c);
      assert.equal(s1.events - s0.events, 1);
      assert.equal(s1.total_requests - s0.total_requests, 1);
    });
  });

  describe("with METRICS_BATCH_MS=0", () => {
    let gw, c;
    before(async () => {
      gw = await startGateway({
        vars: { MISTRAL_API_KEY: MISTRAL_KEY, MISTRAL_BASE_URL: stub.url, METRICS_BATCH_MS: "0" },
      });
      c = client(gw);
    });
    after(async () => {
      await gw?.stop();
    });

    it("each event is sent on its own", async () => {
      const s0 = await storage(c);
      const N = 5;
      for (let i = 0; i < N; i++) assertQueryShape(await c.query({ query: `single ${i} ${tag()}` }));
      const s1 = await pollUntil(() => storage(c), (s) => s.events - s0.events >= N);
      assert.equal(s1.events - s0.events, N);
      assert.equal(s1.batches - s0.batches, N, "one batch per event");
      assert.equal(batchRows(s1) - batchRows(s0), N);
    });
  });

  it("an invalid METRICS_BATCH_MS is a configuration error naming the variable", async () => {
    const gw = await startGateway({
      vars: { MISTRAL_API_KEY: MISTRAL_KEY, MISTRAL_BASE_URL: stub.url, METRICS_BATCH_MS: "soon" },
    });
    try {
      const res = await client(gw).query({ query: "hello" });
      assert.equal(res.status, 500, res.text);
      assert.match(res.json?.error?.message ?? "", /METRICS_BATCH_MS/);
    } finally {
      await gw.stop();
    }
  });
});
