// GET /dashboard in a real browser: Debian's Chromium, headless, driven by puppeteer-core over
// a pipe (no browser download). With LLM_MUX_API_KEYS set, the page asks for a key, keeps it
// in session storage and sends it as the bearer token; after a known set of requests its
// numbers equal /metrics (and the client-side tally), it updates by itself after more
// requests, and it loads with no console error, page error or failed request. A screenshot is
// kept in target/e2e/dashboard.png (the README's is a copy of a good one).
//
// The latency table and the time series are checked against /metrics' `latency_ms` and
// /metrics/series when the gateway serves them, and for a graceful "–" otherwise.
//
// The browser: CHROMIUM_BIN, else /usr/bin/chromium (`apt-get install chromium`; make setup
// installs it where apt-get can).

import { describe, it, before, after } from "node:test";
import assert from "node:assert/strict";
import { existsSync, mkdirSync } from "node:fs";
import path from "node:path";
import puppeteer from "puppeteer-core";

import { startGateway, PROJECT_ROOT } from "./harness.mjs";
import { startMistralStub } from "./mistral-stub.mjs";
import { secret, sleep } from "./helpers.mjs";
import { chatStream } from "./chat-helpers.mjs";

const KEY = secret("dash");
const CHROMIUM = process.env.CHROMIUM_BIN ?? ["/usr/bin/chromium", "/usr/bin/chromium-browser"].find((p) => existsSync(p));
const SCREENSHOT = path.join(PROJECT_ROOT, "target", "e2e", "dashboard.png");
/** The page refreshes every 5 s: a change shows within two refreshes. */
const UPDATE_MS = 15_000;

// The page's number formats (src/dashboard.html), to compare what it shows with /metrics.
const D = "–";
const int = (n) => n.toLocaleString("en-US");
const usd = (x) => "$" + x.toFixed(x < 1 ? 6 : x < 100 ? 4 : 2);
const pct = (x) => (100 * x).toFixed(1) + "%";
const TOTALS = {
  total_requests: int,
  failed_requests_total: int,
  total_cost_usd: usd,
  cost_if_always_large_usd: usd,
  total_savings_usd: usd,
  savings_ratio: pct,
  small_model_ratio: pct,
  tokens_in: int,
  tokens_out: int,
  avg_latency_ms: int,
};
const show = (v, f) => (typeof v === "number" && Number.isFinite(v) ? f(v) : D);

/** What the page shows: totals, bar lists, latency cells, chart bars. */
const shown = (page) =>
  page.evaluate(() => {
    const bars = (id) =>
      Object.fromEntries([...document.querySelectorAll(`#${id} g[data-n]`)].map((g) => [g.dataset.n, g.querySelectorAll("text")[1].textContent]));
    return {
      totals: Object.fromEntries([...document.querySelectorAll("#tot [data-k]")].map((e) => [e.dataset.k, e.textContent])),
      tier: bars("tier"),
      model: bars("model"),
      fail: bars("fail"),
      out: bars("out"),
      outText: document.querySelector("#out").textContent,
      latency: Object.fromEntries(
        [...document.querySelectorAll("#lat tr[data-n]")].map((tr) => [tr.dataset.n, Object.fromEntries([...tr.querySelectorAll("td[data-k]")].map((td) => [td.dataset.k, td.textContent]))]),
      ),
      series: [...document.querySelectorAll("#sreq g[data-t]")].map((g) => ({ t: Number(g.dataset.t), requests: Number(g.dataset.v) })),
      costSeries: [...document.querySelectorAll("#scost g[data-t]")].map((g) => ({ t: Number(g.dataset.t), large: Number(g.dataset.v), title: g.querySelector("title").textContent })),
      seriesText: document.querySelector("#sreq").textContent,
      status: document.querySelector("#st").textContent,
      keyForm: getComputedStyle(document.querySelector("#kf")).display !== "none",
      windowLabel: document.querySelector("#wl").textContent,
    };
  });

/**
 * Asserts the page state `s` shows exactly the /metrics body `m` and the /metrics/series body
 * `series` (null: the gateway has none). The parts of the data contract that today's /metrics
 * may lack (window, latency_ms, outcomes, series) are checked when present, and for "–" when
 * absent.
 */
function assertShows(s, m, series) {
  for (const [k, f] of Object.entries(TOTALS)) assert.equal(s.totals[k], show(m[k], f), `${k}: page vs /metrics ${m[k]}`);
  const split = (o) => {
    const sum = Object.values(o ?? {}).reduce((a, n) => a + n, 0);
    return Object.fromEntries(Object.entries(o ?? {}).map(([k, n]) => [k, `${int(n)} · ${pct(n / sum)}`]));
  };
  assert.deepEqual(s.tier, split(m.tier_breakdown), "tier split");
  assert.deepEqual(s.model, split(m.model_breakdown), "model split");
  assert.deepEqual(s.fail, split(m.failed_requests), "failures by reason");
  assert.equal(s.windowLabel, m.window ? `· ${m.window}` : "· all time", "window shown");
  // contract: `outcomes`
  if (m.outcomes) assert.deepEqual(s.out, split(m.outcomes), "outcomes");
  else assert.equal(s.outText, D, "no outcomes in /metrics: shown as –");
  // contract: `latency_ms`
  const cell = (q) => (q && q.count ? [q.p50, q.p95, q.p99].map((v) => show(v, String)).join(" · ") : D);
  const kinds = ["request", "upstream", "overhead", "ttfb"];
  if (m.latency_ms) {
    const L = m.latency_ms;
    const rows = { overall: L.overall, ...(L.by_tier ?? {}), ...(L.by_model ?? {}) };
    assert.deepEqual(Object.keys(s.latency).sort(), Object.keys(rows).sort(), "one latency row per scope");
    for (const [n, p] of Object.entries(rows)) {
      for (const k of kinds) assert.equal(s.latency[n][k], cell(p?.[k]), `latency ${n} ${k}`);
    }
  } else {
    assert.deepEqual(Object.keys(s.latency), ["overall"], "no latency_ms in /metrics: one row");
    for (const k of kinds) assert.equal(s.latency.overall[k], D, `latency ${k} shown as –`);
  }
  // contract: /metrics/series
  if (series) {
    assert.deepEqual(s.series, series.points.map((p) => ({ t: p.t, requests: p.requests })), "one bar per bucket with its requests");
    assert.deepEqual(
      s.costSeries.map(({ t, large }) => ({ t, large })),
      series.points.map((p) => ({ t: p.t, large: p.cost_if_always_large_usd })),
      "one cost bar per bucket",
    );
    for (const [i, p] of series.points.entries()) {
      assert.ok(s.costSeries[i].title.includes(`cost_usd ${usd(p.cost_usd)}`), `bucket ${p.t} cost: ${s.costSeries[i].title}`);
    }
  } else {
    assert.equal(s.series.length, 0);
    assert.equal(s.seriesText, D, "no series: shown as –");
  }
}

describe("GET /dashboard in headless Chromium", { skip: !CHROMIUM && "no Chromium (apt-get install chromium)" }, () => {
  let stub, gw, browser, page;
  const problems = []; // console errors, page errors, failed requests, HTTP errors
  const dataCalls = []; // URLs the page fetched
  const tally = { ok: 0, failed: 0, tiers: {}, tokensIn: 0, tokensOut: 0 };

  const auth = { authorization: `Bearer ${KEY}` };
  async function metrics(query = "") {
    const res = await fetch(`${gw.url}/metrics${query}`, { headers: auth, signal: AbortSignal.timeout(10_000) });
    assert.equal(res.status, 200, await res.clone().text());
    return res.json();
  }
  async function query(q, tier) {
    const res = await fetch(`${gw.url}/query`, {
      method: "POST",
      headers: { "content-type": "application/json", ...auth },
      body: JSON.stringify({ query: q, tier }),
      signal: AbortSignal.timeout(30_000),
    });
    const body = await res.json();
    if (res.status === 200) {
      tally.ok++;
      tally.tiers[body.routing.tier] = (tally.tiers[body.routing.tier] ?? 0) + 1;
      tally.tokensIn += body.metrics.tokens_in;
      tally.tokensOut += body.metrics.tokens_out;
    } else tally.failed++;
    return res.status;
  }
  /** Waits until the page shows `total` completed and `failed` failed requests. */
  async function waitForTotals(total, failed) {
    const deadline = Date.now() + UPDATE_MS;
    let s;
    for (;;) {
      s = await shown(page);
      if (s.totals.total_requests === int(total) && s.totals.failed_requests_total === int(failed)) return s;
      if (Date.now() > deadline) assert.fail(`page shows ${JSON.stringify(s.totals)}, expected ${total} requests and ${failed} failed`);
      await sleep(200);
    }
  }
  /** Asserts the page shows exactly what /metrics holds (fetched now). */
  async function assertShowsMetrics(s) {
    const m = await metrics(`?window=24h`);
    // /metrics/series is served by gateways whose /metrics has windows (the data contract).
    const res = await fetch(`${gw.url}/metrics/series?window=24h`, { headers: auth });
    const series = res.status === 200 ? await res.json() : null;
    if (!series) {
      await res.arrayBuffer();
      assert.equal(res.status, 404, "no /metrics/series yet");
    }
    assertShows(s, m, series);
    if (series) {
      const sum = (k) => series.points.reduce((a, p) => a + p[k], 0);
      assert.equal(sum("requests"), m.total_requests, "series requests = completed requests");
      assert.equal(sum("failed"), m.failed_requests_total, "series failures");
      assert.ok(Math.abs(sum("cost_usd") - m.total_cost_usd) < 1e-9, "series cost = total cost");
    }
    return m;
  }

  before(async () => {
    stub = await startMistralStub({ port: 0 });
    gw = await startGateway({ vars: { MISTRAL_API_KEY: secret("mistral"), MISTRAL_BASE_URL: stub.url, LLM_MUX_API_KEYS: `${secret("other")},${KEY}` } });
    browser = await puppeteer.launch({
      executablePath: CHROMIUM,
      headless: true,
      pipe: true,
      args: ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run", "--disable-extensions"],
    });
    page = await browser.newPage();
    await page.setViewport({ width: 1280, height: 900 });
    page.on("console", (msg) => {
      if (msg.type() === "error" || msg.type() === "warn") problems.push(`console.${msg.type()}: ${msg.text()}`);
    });
    page.on("pageerror", (e) => problems.push(`page error: ${e.message}`));
    page.on("requestfailed", (r) => problems.push(`request failed: ${r.url()} ${r.failure()?.errorText}`));
    page.on("response", (r) => {
      if (r.status() >= 400) problems.push(`HTTP ${r.status()}: ${r.url()}`);
    });
    page.on("request", (r) => {
      if (r.url().startsWith("data:")) return;
      if (!r.url().startsWith(gw.url)) problems.push(`request outside the gateway: ${r.url()}`);
      else if (r.url() !== `${gw.url}/dashboard`) dataCalls.push({ url: r.url().slice(gw.url.length), authorization: r.headers().authorization });
    });
  });
  after(async () => {
    await browser?.close();
    await gw?.stop();
    await stub?.close();
  });

  it("serves one small self-contained page without authentication", async () => {
    const res = await fetch(`${gw.url}/dashboard`);
    const html = await res.text();
    assert.equal(res.status, 200);
    assert.equal(res.headers.get("content-type"), "text/html; charset=utf-8");
    const csp = res.headers.get("content-security-policy");
    assert.match(csp, /default-src 'none'/);
    assert.match(csp, /connect-src 'self'/);
    assert.doesNotMatch(csp, /unsafe-inline|unsafe-eval/);
    assert.ok(Buffer.byteLength(html) <= 9 * 1024, `page is ${Buffer.byteLength(html)} bytes`);
    assert.doesNotMatch(html, /https?:\/\//, "no external URL");
    assert.match(html, /<html data-auth/, "keys are set: the page asks for one first");
    assert.equal((await fetch(`${gw.url}/dashboard`, { method: "POST" })).status, 405);
    // The data stays protected.
    const data = await fetch(`${gw.url}/metrics`);
    await data.arrayBuffer();
    assert.equal(data.status, 401);
  });

  it("asks for the key, keeps it in session storage and shows the empty totals", async () => {
    await page.goto(`${gw.url}/dashboard`, { waitUntil: "load" });
    await page.waitForSelector("#kf:not([hidden])", { timeout: 5_000 });
    assert.equal(dataCalls.length, 0, "no data call before a key is given");
    await page.type("#ki", KEY);
    await page.click("#kf button");
    const s = await waitForTotals(0, 0);
    assert.equal(s.keyForm, false, "the key form is hidden once the key works");
    assert.equal(await page.evaluate(() => sessionStorage.getItem("llm-mux-key")), KEY, "key in session storage");
    assert.ok(dataCalls.length >= 1 && dataCalls.every((c) => c.authorization === `Bearer ${KEY}`), `bearer token on every data call: ${JSON.stringify(dataCalls)}`);
    assert.ok(dataCalls.some((c) => c.url === "/metrics?window=24h"), "24h is the default window");
    await assertShowsMetrics(s);
  });

  it("shows /metrics after a known set of requests (mixed tiers, streamed, one failure)", async () => {
    const statuses = [];
    for (let i = 0; i < 4; i++) statuses.push(await query(`small question ${i} ${"word ".repeat(i)}`, "small"));
    for (let i = 0; i < 2; i++) statuses.push(await query(`large question ${i} [[stub:tokens=${1200 + i},${800 + i}]]`, "large"));
    statuses.push(await query("this one fails [[stub:status=500]]", "small"));
    const stream = await chatStream(gw, { model: "large", messages: [{ role: "user", content: "a streamed answer" }] }, { headers: auth });
    assert.equal(stream.status, 200);
    tally.ok++;
    tally.tiers.large = (tally.tiers.large ?? 0) + 1;
    assert.deepEqual(statuses, [200, 200, 200, 200, 200, 200, 502]);

    const s = await waitForTotals(tally.ok, tally.failed);
    const m = await assertShowsMetrics(s);
    // ... and /metrics is the known set.
    assert.equal(m.total_requests, 7);
    assert.deepEqual(m.tier_breakdown, { small: 4, large: 3 });
    assert.deepEqual(m.failed_requests, { upstream_error: 1 });
    assert.ok(m.tokens_in >= tally.tokensIn + 1 && m.tokens_out > tally.tokensOut, "tokens include the stream's");
    assert.ok(m.total_cost_usd > 0 && m.total_cost_usd < m.cost_if_always_large_usd, "the small tier saved money");
  });

  it("updates by itself after more requests", async () => {
    const before = tally.ok;
    for (let i = 0; i < 3; i++) await query(`one more ${i}`, "small");
    await query("refused upstream [[stub:status=400]]", "large");
    assert.equal(tally.ok, before + 3);
    const s = await waitForTotals(tally.ok, tally.failed);
    const m = await assertShowsMetrics(s);
    assert.equal(m.tier_breakdown.small, 7);
    assert.equal(Object.values(m.failed_requests).reduce((a, n) => a + n, 0), 2);
  });

  it("the window selector drives both data calls", async () => {
    const from = dataCalls.length;
    await page.click('#wn button[data-w="1h"]');
    const deadline = Date.now() + 5_000;
    while (!dataCalls.slice(from).some((c) => c.url === "/metrics?window=1h") && Date.now() < deadline) await sleep(50);
    assert.ok(dataCalls.slice(from).some((c) => c.url === "/metrics?window=1h"), `calls: ${JSON.stringify(dataCalls.slice(from))}`);
    assert.equal(await page.evaluate(() => location.hash), "#1h");
    assert.equal(await page.$eval("#wn .on", (b) => b.dataset.w), "1h");
    const m = await metrics("?window=1h");
    if (m.window) {
      // Guarded: a windowed /metrics also has /metrics/series, fetched for the same window.
      while (!dataCalls.slice(from).some((c) => c.url === "/metrics/series?window=1h") && Date.now() < deadline) await sleep(50);
      assert.ok(dataCalls.slice(from).some((c) => c.url === "/metrics/series?window=1h"));
      await sleep(300);
      assert.equal((await shown(page)).windowLabel, "· 1h");
    } else {
      assert.ok(!dataCalls.some((c) => c.url.startsWith("/metrics/series")), "no series call to a server without windows");
    }
    // back to 24h for the screenshot
    await page.click('#wn button[data-w="24h"]');
    await waitForTotals(tally.ok, tally.failed);
  });

  it("a reload keeps the key (session storage); no console errors; screenshot", async () => {
    await page.reload({ waitUntil: "load" });
    const s = await waitForTotals(tally.ok, tally.failed);
    assert.equal(s.keyForm, false, "no key asked after a reload");
    await sleep(300);
    mkdirSync(path.dirname(SCREENSHOT), { recursive: true });
    await page.screenshot({ path: SCREENSHOT, fullPage: true });
    console.log(`dashboard: screenshot in ${path.relative(PROJECT_ROOT, SCREENSHOT)}`);
    assert.deepEqual(problems, [], "no console error, page error or failed request");
  });

  it("draws every field of the data contract (windowed /metrics with latency and outcomes, /metrics/series) given as fixtures", async () => {
    // The page as the worker serves it (its CSP included); the data calls answered with
    // contract-shaped bodies built on the real /metrics, so this runs whatever the gateway
    // serves today.
    const real = await metrics();
    const hour = Math.floor(Date.now() / 3_600_000) * 3600;
    const q = (count, p50, p95, p99) => ({ count, p50: count ? p50 : null, p95: count ? p95 : null, p99: count ? p99 : null });
    const P = (r, u, o, t) => ({ request: r, upstream: u, overhead: o, ...(t ? { ttfb: t } : {}) });
    const m = {
      ...real,
      window: "24h",
      latency_ms: {
        overall: P(q(12, 410.5, 1210, 2050.2), q(12, 380, 1150.5, 1990), q(12, 9.5, 21, 40.1), q(3, 120, 300, 300)),
        by_tier: { small: P(q(8, 300, 700, 800), q(8, 280, 650, 760), q(8, 8, 15, 19)), large: P(q(4, 900, 2000, 2050.2), q(4, 850, 1900, 1990), q(4, 12, 40, 40.1), q(0)) },
        by_model: { "mistral-small-latest": P(q(8, 300, 700, 800), q(8, 280, 650, 760), q(8, 8, 15, 19)) },
      },
      outcomes: { ok: 12, upstream_error_503: 2, upstream_timeout: 1, incomplete_client_disconnected: 1 },
    };
    const series = {
      window: "24h",
      bucket_seconds: 3600,
      points: [
        { t: hour - 20 * 3600, requests: 4, failed: 1, cost_usd: 0.0012, cost_if_always_large_usd: 0.004 },
        { t: hour - 5 * 3600, requests: 9, failed: 0, cost_usd: 0.003, cost_if_always_large_usd: 0.0071 },
        { t: hour - 3600, requests: 2, failed: 2, cost_usd: 0, cost_if_always_large_usd: 0 },
        { t: hour, requests: 6, failed: 1, cost_usd: 0.0021, cost_if_always_large_usd: 0.0052 },
      ],
    };
    const fx = await browser.newPage();
    const errors = [];
    const calls = [];
    fx.on("console", (msg) => ["error", "warn"].includes(msg.type()) && errors.push(msg.text()));
    fx.on("pageerror", (e) => errors.push(`page error: ${e.message}`));
    try {
      await fx.setViewport({ width: 1280, height: 900 });
      await fx.setRequestInterception(true);
      fx.on("request", (r) => {
        const u = new URL(r.url());
        if (!u.pathname.startsWith("/metrics")) return r.continue();
        calls.push(u.pathname + u.search);
        const body = u.pathname === "/metrics/series" ? series : m;
        r.respond({ status: 200, contentType: "application/json", body: JSON.stringify(body) });
      });
      await fx.goto(`${gw.url}/dashboard`, { waitUntil: "load" });
      await fx.type("#ki", KEY);
      await fx.click("#kf button");
      await fx.waitForFunction(() => document.querySelectorAll("#sreq g[data-t]").length > 0, { timeout: 5_000 });
      assert.deepEqual(calls.slice(0, 2), ["/metrics?window=24h", "/metrics/series?window=24h"]);
      const s = await shown(fx);
      assertShows(s, m, series);
      assert.equal(s.latency.small.ttfb, D, "a kind absent: –");
      assert.equal(s.latency.large.ttfb, D, "count 0: –");
      assert.equal(s.latency.overall.request, "410.5 · 1210 · 2050.2");
      // bars sit in time order left to right, inside the chart
      const xs = await fx.$$eval("#sreq g[data-t] rect:first-child", (r) => r.map((e) => Number(e.getAttribute("x"))));
      assert.deepEqual([...xs].sort((a, b) => a - b), xs);
      assert.ok(xs[0] >= 60 && xs.at(-1) <= 1000, `bar positions ${xs}`);
      await fx.screenshot({ path: SCREENSHOT.replace(/\.png$/, "-contract.png"), fullPage: true });
      assert.deepEqual(errors, [], "no console error or page error");
    } finally {
      await fx.close();
    }
  });

  it("a wrong key is refused and asked for again", async () => {
    const other = await browser.newPage(); // its own session storage
    const errors = [];
    other.on("console", (msg) => msg.type() === "error" && errors.push(msg.text()));
    other.on("pageerror", (e) => errors.push(`page error: ${e.message}`));
    try {
      await other.goto(`${gw.url}/dashboard`, { waitUntil: "load" });
      await other.waitForSelector("#kf:not([hidden])", { timeout: 5_000 });
      await other.type("#ki", "sk-wrong");
      await other.click("#kf button");
      await other.waitForFunction(() => document.querySelector("#ke").textContent === "key refused", { timeout: 5_000 });
      assert.equal(await other.$eval("#kf", (f) => f.hidden), false);
      assert.equal(await other.$eval("[data-k=total_requests]", (e) => e.textContent).catch(() => null), null, "no data shown");
      // The browser logs the 401 itself; nothing else.
      assert.ok(errors.every((e) => /status of 401/.test(e)), `only the 401 logged: ${JSON.stringify(errors)}`);
    } finally {
      await other.close();
    }
  });
});

describe("GET /dashboard without API keys", () => {
  let stub, gw;
  before(async () => {
    stub = await startMistralStub({ port: 0 });
    gw = await startGateway({ vars: { MISTRAL_API_KEY: secret("mistral"), MISTRAL_BASE_URL: stub.url } });
  });
  after(async () => {
    await gw?.stop();
    await stub?.close();
  });
  it("serves the page that does not ask for a key; HEAD has no body", async () => {
    const res = await fetch(`${gw.url}/dashboard`);
    const html = await res.text();
    assert.equal(res.status, 200);
    assert.match(html, /^<!doctype html><html lang=en>/);
    assert.doesNotMatch(html, /<html data-auth/);
    const head = await fetch(`${gw.url}/dashboard`, { method: "HEAD" });
    assert.equal(head.status, 200);
    assert.equal((await head.arrayBuffer()).byteLength, 0);
  });
});
