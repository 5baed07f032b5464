// GET /metrics/prometheus (issue 13): the Prometheus text exposition (0.0.4), read by the
// reference parser (prometheus_client), with the same numbers as the JSON /metrics; a
// scraper's Accept header on /metrics gets it too; the API key is needed when keys are set.

import { describe, it, before, after } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { existsSync, writeFileSync } from "node:fs";
import path from "node:path";
import { startGateway, PROJECT_ROOT, tempDir } from "./harness.mjs";
import { startMistralStub } from "./mistral-stub.mjs";
import { client, secret, tag } from "./helpers.mjs";

const PYTHON = path.join(PROJECT_ROOT, ".venv", "bin", "python");
const PROMETHEUS_ACCEPT =
  "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";

/** Parses with prometheus_client (tests/prometheus/parse_check.py): the families it read. */
function parse(text, families) {
  const file = path.join(tempDir("llm-mux-prom-"), "metrics.txt");
  writeFileSync(file, text);
  const out = execFileSync(PYTHON, [path.join(PROJECT_ROOT, "tests", "prometheus", "parse_check.py"), file, ...families], {
    encoding: "utf8",
  });
  return out;
}

/** Sample values by `name{labels}` from the text (after the parser accepted it). */
function samples(text) {
  const out = {};
  for (const line of text.split("\n")) {
    if (!line || line.startsWith("#")) continue;
    const i = line.lastIndexOf(" ");
    out[line.slice(0, i)] = Number(line.slice(i + 1));
  }
  return out;
}

describe("Prometheus exposition", () => {
  const KEY = secret("client");
  const MISTRAL_KEY = secret("mistral");
  let stub, gw, c;
  before(async () => {
    assert.ok(existsSync(PYTHON), ".venv is missing: make setup");
    stub = await startMistralStub();
    gw = await startGateway({ vars: { MISTRAL_API_KEY: MISTRAL_KEY, MISTRAL_BASE_URL: stub.url, LLM_MUX_API_KEYS: KEY } });
    c = client(gw, { token: KEY });
  });
  after(async () => {
    await gw?.stop();
    await stub?.close();
  });

  it("parses with the reference parser and matches /metrics", async () => {
    const t = tag();
    for (const tier of ["small", "small", "large"]) {
      assert.equal((await c.query({ query: `q ${t}`, tier })).status, 200);
    }
    assert.equal((await c.query({ query: `boom ${t} [[stub:status=500]]`, tier: "small" })).status, 502);
    const json = (await c.metrics()).json;
    const r = await c.request("GET", "/metrics/prometheus");
    assert.equal(r.status, 200, r.text);
    assert.match(r.headers.get("content-type"), /^text\/plain; version=0\.0\.4/);
    const parsed = parse(r.text, [
      "llm_mux_requests",
      "llm_mux_cost_usd",
      "llm_mux_cost_if_always_large_usd",
      "llm_mux_tokens",
      "llm_mux_request_duration_ms",
    ]);
    assert.match(parsed, /llm_mux_request_duration_ms/);
    const s = samples(r.text);
    assert.equal(s['llm_mux_requests_total{tier="small",model="mistral-small-latest",outcome="ok"}'], json.tier_breakdown.small);
    assert.equal(s['llm_mux_requests_total{tier="large",model="mistral-large-latest",outcome="ok"}'], json.tier_breakdown.large);
    assert.equal(s['llm_mux_requests_total{tier="",model="",outcome="upstream_error_500"}'], json.failed_requests.upstream_error);
    assert.equal(json.outcomes.upstream_error_500, json.failed_requests.upstream_error);
    const cost = Object.entries(s).filter(([k]) => k.startsWith("llm_mux_cost_usd_total")).reduce((a, [, v]) => a + v, 0);
    assert.ok(Math.abs(cost - json.total_cost_usd) < 1e-12, `${cost} vs ${json.total_cost_usd}`);
    assert.equal(s.llm_mux_cost_if_always_large_usd_total, json.cost_if_always_large_usd);
    const tokensIn = Object.entries(s).filter(([k]) => k.startsWith('llm_mux_tokens_total{direction="in"')).reduce((a, [, v]) => a + v, 0);
    assert.equal(tokensIn, json.tokens_in);
    assert.equal(s['llm_mux_request_duration_ms_count{tier="small"}'], json.tier_breakdown.small);
    assert.equal(s['llm_mux_request_duration_ms_bucket{tier="small",le="+Inf"}'], json.tier_breakdown.small);
    assert.ok(!r.text.includes(KEY) && !r.text.includes(MISTRAL_KEY));
  });

  it("GET /metrics gives a scraper the text format and everyone else JSON", async () => {
    const scrape = await c.request("GET", "/metrics", { headers: { accept: PROMETHEUS_ACCEPT } });
    assert.match(scrape.headers.get("content-type"), /^text\/plain; version=0\.0\.4/);
    parse(scrape.text, ["llm_mux_requests"]);
    for (const accept of ["*/*", "application/json", "text/html,application/xhtml+xml,*/*;q=0.8"]) {
      const r = await c.request("GET", "/metrics", { headers: { accept } });
      assert.match(r.headers.get("content-type"), /application\/json/, accept);
      assert.equal(typeof r.json.total_requests, "number");
    }
  });

  it("needs the API key when keys are set", async () => {
    const anon = client(gw);
    assert.equal((await anon.request("GET", "/metrics/prometheus")).status, 401);
    assert.equal((await anon.request("GET", "/metrics", { headers: { accept: PROMETHEUS_ACCEPT } })).status, 401);
  });
});
