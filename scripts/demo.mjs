// `make demo`: sends ~20 queries of varied complexity to a gateway and prints a table
// (query, tier, score, latency, tokens, cost) and the /metrics summary.
//
// Which gateway:
// - GATEWAY_URL set: that running gateway (LLM_MUX_TOKEN is sent as the bearer token).
// - else, with a Mistral key (MISTRAL_API_KEY in the environment or in .dev.vars): starts
//   `wrangler dev` on a free port with that key, calling the real Mistral API.
// - else (no key, or a placeholder such as .dev.vars.example's `your-mistral-api-key`):
//   starts the local Mistral stand-in and a gateway pointed at it; the answers, tokens and
//   costs are SIMULATED, and the demo says so.
import { startGateway, PROJECT_ROOT } from "../tests/e2e/harness.mjs";
import { startMistralStub } from "../tests/e2e/mistral-stub.mjs";
import { demoKey } from "./demo-key.mjs";

const QUERIES = [
  "Hi there!",
  "What is the capital of Japan?",
  "Translate 'good morning' into Spanish.",
  "What's 15% of 80?",
  "Give me a synonym for happy.",
  "Who wrote Pride and Prejudice?",
  "Convert 5 miles to kilometers.",
  "Name three primary colors.",
  "What year did the Berlin Wall fall?",
  "Write a haiku about autumn rain.",
  "Summarize the plot of Romeo and Juliet in two sentences.",
  "Explain why the sky is blue.",
  "Compare TCP and UDP: what are the trade-offs for a real-time multiplayer game?",
  "Write a Python function that returns the longest palindromic substring of a string, and explain its time complexity.",
  "Prove that the square root of 2 is irrational, step by step.",
  "A train leaves at 3pm at 60 km/h; another leaves the same station at 4pm at 90 km/h on the same track. When and where does the second catch up? Show your reasoning.",
  "Design a rate limiter for a distributed API gateway. Compare token bucket and sliding window approaches, discuss consistency across regions, and give pseudocode.",
  "Analyze the causes of the 2008 financial crisis and evaluate which policy responses were most effective, with evidence.",
  "Debug this Rust code and explain the borrow checker error: fn main() { let mut v = vec![1]; let first = &v[0]; v.push(2); println!(\"{}\", first); }",
  "Derive the closed form of the sum of the first n squares and prove it by induction; then explain how it generalizes to cubes.",
];

function pad(text, width) {
  const s = String(text);
  return s.length > width ? s.slice(0, width - 1) + "…" : s.padEnd(width);
}

async function main() {
  let url = process.env.GATEWAY_URL?.replace(/\/$/, "");
  const token = process.env.LLM_MUX_TOKEN;
  const cleanups = [];
  let simulated = false;
  if (url) {
    console.log(`Using the running gateway at ${url}.`);
  } else {
    const { key, source, placeholder } = demoKey(PROJECT_ROOT);
    const vars = {};
    if (key) {
      vars.MISTRAL_API_KEY = key;
      console.log(`Starting a local gateway (wrangler dev) that calls the real Mistral API (${source}).`);
    } else {
      if (placeholder) {
        console.log(
          `${placeholder.source} is a placeholder (${JSON.stringify(placeholder.value)}), not a key: ` +
            "put your Mistral key there to call the real API.",
        );
      }
      const stub = await startMistralStub({ port: 0 });
      cleanups.push(() => stub.close());
      vars.MISTRAL_API_KEY = "demo-key-for-the-local-stand-in";
      vars.MISTRAL_BASE_URL = stub.url;
      simulated = true;
      console.log(
        `${placeholder ? "No real" : "No"} MISTRAL_API_KEY found (environment or .dev.vars): using the LOCAL STAND-IN for Mistral.\n` +
          "*** Answers, token counts and costs below are SIMULATED, not from Mistral. ***",
      );
    }
    const gateway = await startGateway({ vars });
    cleanups.push(() => gateway.stop());
    url = gateway.url;
  }

  const headers = { "content-type": "application/json" };
  if (token) headers.authorization = `Bearer ${token}`;
  try {
    console.log("");
    console.log(
      `${pad("query", 52)} ${pad("tier", 5)} ${pad("score", 5)} ${pad("latency", 8)} ${pad("tok in", 6)} ${pad("tok out", 7)} cost USD`,
    );
    console.log("-".repeat(100));
    for (const query of QUERIES) {
      const res = await fetch(`${url}/query`, { method: "POST", headers, body: JSON.stringify({ query }) });
      const body = await res.json();
      if (!res.ok) {
        console.log(`${pad(query, 52)} error ${res.status}: ${body?.error?.message}`);
        continue;
      }
      const m = body.metrics;
      console.log(
        `${pad(query, 52)} ${pad(body.routing.tier, 5)} ${pad(body.routing.score.toFixed(2), 5)} ${pad(m.latency_ms + " ms", 8)} ${pad(m.tokens_in, 6)} ${pad(m.tokens_out, 7)} ${m.cost_usd.toFixed(6)}`,
      );
    }
    // Metrics are recorded after each response (waitUntil): give the last ones a moment.
    await new Promise((r) => setTimeout(r, 500));
    const metrics = await (await fetch(`${url}/metrics`, { headers })).json();
    console.log("\n/metrics summary:");
    for (const k of [
      "total_requests",
      "total_cost",
      "avg_latency_ms",
      "cost_savings_vs_always_large",
      "small_model_usage_percent",
      "model_breakdown",
      "failed_requests",
    ]) {
      console.log(`  ${pad(k, 30)} ${JSON.stringify(metrics[k])}`);
    }
    if (simulated) console.log("\n(SIMULATED answers from the local stand-in: set MISTRAL_API_KEY for real ones.)");
  } finally {
    for (const cleanup of cleanups.reverse()) await cleanup();
  }
}

main().catch((e) => {
  console.error(`demo failed: ${e.message}`);
  process.exit(1);
});
