// Starts what the SDK tests talk to and prints one JSON line when it is ready:
//   {"mistral": {"url", "stub"}, "mixed": {"url", "openai_stub", "anthropic_stub"}}
// - "mistral": the gateway with its default tiers (small/large Mistral) on the Mistral stand-in;
// - "mixed":   TIERS with an OpenAI-compatible tier ("gpt") and an Anthropic tier ("claude"),
//              each on its stand-in.
// Everything listens on 127.0.0.1. It runs until SIGTERM/SIGINT or until its stdin closes (so
// it never outlives the pytest process that started it), then stops the gateways (whole
// process groups) and the stand-ins.
//
//   node tests/sdk/gateway.mjs          (used by tests/sdk/conftest.py)

import { startGateway } from "../e2e/harness.mjs";
import { startMistralStub } from "../e2e/mistral-stub.mjs";
import { startOpenAiStub } from "../e2e/openai-stub.mjs";
import { startAnthropicStub } from "../e2e/anthropic-stub.mjs";

const MISTRAL_KEY = "sk-sdk-mistral-upstream";
const OPENAI_KEY = "sk-sdk-openai-upstream";
const ANTHROPIC_KEY = "sk-sdk-anthropic-upstream";

const started = [];
let stopping = false;
async function stopAll(code) {
  if (stopping) return;
  stopping = true;
  for (const s of started.reverse()) {
    try {
      await (s.stop ?? s.close).call(s);
    } catch {
      /* best effort */
    }
  }
  process.exit(code);
}
process.on("SIGTERM", () => stopAll(0));
process.on("SIGINT", () => stopAll(0));
process.stdin.on("end", () => stopAll(0));
process.stdin.on("error", () => stopAll(0));
process.stdin.resume();

try {
  const mistral = await startMistralStub({ apiKey: MISTRAL_KEY });
  started.push(mistral);
  const openai = await startOpenAiStub({ apiKey: OPENAI_KEY });
  started.push(openai);
  const anthropic = await startAnthropicStub({ apiKey: ANTHROPIC_KEY });
  started.push(anthropic);
  const tiers = [
    { name: "gpt", backend: "openai", base_url: `${openai.url}/v1`, model: "gpt-4o-mini", prices: { input: 0.15, output: 0.6 } },
    { name: "claude", backend: "anthropic", base_url: anthropic.url, model: "claude-haiku-4-5", min_score: 0.5, prices: { input: 1, output: 5 } },
  ];
  const [gwMistral, gwMixed, gwLimited] = await Promise.all([
    startGateway({ vars: { MISTRAL_API_KEY: MISTRAL_KEY, MISTRAL_BASE_URL: mistral.url } }),
    startGateway({ vars: { TIERS: JSON.stringify(tiers), OPENAI_API_KEY: OPENAI_KEY, ANTHROPIC_API_KEY: ANTHROPIC_KEY } }),
    // Cost control: every client key limited to 2 requests per minute.
    startGateway({
      vars: {
        MISTRAL_API_KEY: MISTRAL_KEY,
        MISTRAL_BASE_URL: mistral.url,
        LLM_MUX_API_KEYS: "sk-sdk-client-limited",
        KEY_POLICIES: JSON.stringify({ "*": { rate_limit_per_minute: 2 } }),
      },
    }),
  ]);
  started.push(gwMistral, gwMixed, gwLimited);
  if (stopping) process.exit(0);
  console.log(
    JSON.stringify({
      mistral: { url: gwMistral.url, stub: mistral.url },
      mixed: { url: gwMixed.url, openai_stub: openai.url, anthropic_stub: anthropic.url },
      limited: { url: gwLimited.url, stub: mistral.url, key: "sk-sdk-client-limited" },
    }),
  );
} catch (e) {
  console.error(`gateway launcher failed: ${e.stack ?? e}`);
  await stopAll(1);
}
