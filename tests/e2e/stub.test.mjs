// Unit tests of the Mistral stand-in itself (no worker needed).

import { describe, it, before, after } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { fileURLToPath } from "node:url";
import { startMistralStub, expectedCompletion, countTokens } from "./mistral-stub.mjs";

const KEY = "stub-test-key";

describe("mistral stub", () => {
  let stub;
  before(async () => {
    stub = await startMistralStub({ port: 0 });
  });
  after(async () => {
    await stub.close();
  });

  const chat = async (body, { key = KEY, raw, stream = false } = {}) => {
    const headers = { "content-type": "application/json" };
    if (key) headers.authorization = `Bearer ${key}`;
    const res = await fetch(`${stub.url}/v1/chat/completions`, {
      method: "POST",
      headers,
      body: raw ?? JSON.stringify(body),
      signal: AbortSignal.timeout(10_000),
    });
    const text = await res.text();
    let json;
    if (!stream) {
      try {
        json = JSON.parse(text);
      } catch {
        /* not JSON */
      }
    }
    return { status: res.status, headers: res.headers, text, json };
  };
  const user = (content, model = "mistral-small-latest") => ({ model, messages: [{ role: "user", content }] });

  it("listens on 127.0.0.1 and records requests with headers and parsed body", async () => {
    assert.match(stub.url, /^http:\/\/127\.0\.0\.1:\d+$/);
    stub.reset();
    const res = await chat(user("hello"));
    assert.equal(res.status, 200);
    const [r] = stub.chatRequests();
    assert.equal(r.headers.authorization, `Bearer ${KEY}`);
    assert.deepEqual(r.body, user("hello"));
    assert.equal(r.response.status, 200);
  });

  it("answers in Mistral's format with dated model ids and deterministic usage", async () => {
    const body = { model: "mistral-small-latest", messages: [{ role: "system", content: "Be brief." }, { role: "user", content: "What is the capital of France?" }] };
    const res = await chat(body);
    assert.equal(res.status, 200);
    const j = res.json;
    assert.equal(j.object, "chat.completion");
    assert.equal(typeof j.id, "string");
    assert.equal(typeof j.created, "number");
    assert.equal(j.model, "mistral-small-2603");
    assert.equal(j.choices.length, 1);
    assert.deepEqual(Object.keys(j.choices[0]).sort(), ["finish_reason", "index", "message"]);
    assert.equal(j.choices[0].message.role, "assistant");
    assert.equal(j.choices[0].message.tool_calls, null);
    assert.equal(j.choices[0].finish_reason, "stop");
    const chars = "Be brief.".length + "What is the capital of France?".length;
    assert.equal(j.usage.prompt_tokens, Math.ceil(chars / 4));
    assert.equal(j.usage.completion_tokens, countTokens(j.choices[0].message.content));
    assert.equal(j.usage.total_tokens, j.usage.prompt_tokens + j.usage.completion_tokens);
    assert.deepEqual(expectedCompletion(body).usage, j.usage);
    // deterministic
    const again = await chat(body);
    assert.equal(again.json.choices[0].message.content, j.choices[0].message.content);

    assert.equal((await chat(user("x", "mistral-large-latest"))).json.model, "mistral-large-2512");
    assert.equal((await chat(user("x", "open-mistral-nemo"))).json.model, "open-mistral-nemo");
  });

  it("requires a bearer key (401 in Mistral's error shape)", async () => {
    const res = await chat(user("hi"), { key: null });
    assert.equal(res.status, 401);
    assert.equal(res.json.object, "error");
    assert.equal(typeof res.json.message, "string");
    assert.ok("type" in res.json && "param" in res.json && "code" in res.json);
  });

  it("checks an exact key when configured", async () => {
    const strict = await startMistralStub({ apiKey: "right" });
    try {
      const post = (k) =>
        fetch(`${strict.url}/v1/chat/completions`, {
          method: "POST",
          headers: { authorization: `Bearer ${k}`, "content-type": "application/json" },
          body: JSON.stringify(user("hi")),
        });
      assert.equal((await post("wrong")).status, 401);
      assert.equal((await post("right")).status, 200);
    } finally {
      await strict.close();
    }
  });

  it("validates like Mistral: unknown fields -> 422 extra_forbidden, model/messages required", async () => {
    for (const field of ["seed", "max_completion_tokens", "stream_options"]) {
      const res = await chat({ ...user("hi"), [field]: 1 });
      assert.equal(res.status, 422, field);
      assert.ok(Array.isArray(res.json.detail), field);
      const d = res.json.detail.find((e) => e.type === "extra_forbidden");
      assert.deepEqual(d.loc, ["body", field]);
    }
    let res = await chat({ messages: [{ role: "user", content: "hi" }] });
    assert.equal(res.status, 422);
    assert.deepEqual(res.json.detail[0].loc, ["body", "model"]);
    res = await chat({ model: "mistral-small-latest" });
    assert.equal(res.status, 422);
    assert.deepEqual(res.json.detail[0].loc, ["body", "messages"]);
    res = await chat({ model: "m", messages: [{ role: "wizard", content: "hi" }] });
    assert.equal(res.status, 422);
    res = await chat({ ...user("hi"), temperature: 3 });
    assert.equal(res.status, 422);
    res = await chat(null, { raw: "{nope" });
    assert.equal(res.status, 422);
    // documented optional fields are accepted
    res = await chat({ ...user("hi"), temperature: 0.2, max_tokens: 10, random_seed: 1, stream: false, safe_prompt: false });
    assert.equal(res.status, 200);
  });

  it("[[stub:status=N]] answers N with the documented error body; 429 has Retry-After", async () => {
    for (const status of [400, 401, 500, 503]) {
      const res = await chat(user(`boom [[stub:status=${status}]]`));
      assert.equal(res.status, status);
      assert.equal(res.json.object, "error");
      assert.equal(typeof res.json.message, "string");
      assert.equal(res.json.param, null);
      assert.ok("type" in res.json && "code" in res.json);
    }
    const res = await chat(user("slow down [[stub:status=429]] [[stub:retry-after=2]]"));
    assert.equal(res.status, 429);
    assert.equal(res.headers.get("retry-after"), "2");
    const d = await chat(user("x [[stub:status=422]] [[stub:error-body=detail]]"));
    assert.equal(d.status, 422);
    assert.equal(typeof d.json.detail, "string");
  });

  it("[[stub:fail-first=N]] fails N times then succeeds", async () => {
    const body = user("flaky one [[stub:fail-first=2]] [[stub:status=503]]");
    assert.equal((await chat(body)).status, 503);
    assert.equal((await chat(body)).status, 503);
    assert.equal((await chat(body)).status, 200);
  });

  it("[[stub:echo-key]] puts the received Authorization header in the error message", async () => {
    const res = await chat(user("x [[stub:status=500]] [[stub:echo-key]]"));
    assert.match(res.json.message, new RegExp(`Bearer ${KEY}`));
    const bare = await chat(user("x [[stub:status=429]] [[stub:echo-key=bare]]"));
    assert.match(bare.json.message, new RegExp(`key ${KEY} `));
  });

  it("[[stub:garbage]], [[stub:bad-shape]], [[stub:no-usage]]", async () => {
    let res = await chat(user("x [[stub:garbage]]"));
    assert.equal(res.status, 200);
    assert.equal(res.json, undefined);
    res = await chat(user("x [[stub:bad-shape]]"));
    assert.equal(res.status, 200);
    assert.ok(res.json && !("choices" in res.json));
    res = await chat(user("x [[stub:no-usage]]"));
    assert.equal(res.status, 200);
    assert.ok(res.json.choices && !("usage" in res.json));
  });

  it("[[stub:answer=...]], [[stub:tokens=IN,OUT]], [[stub:model=ID]], [[stub:finish=R]]", async () => {
    const res = await chat(user("x [[stub:answer=Forty-two.]] [[stub:tokens=1000,2000]] [[stub:model=mistral-large-2699]] [[stub:finish=length]]"));
    assert.equal(res.json.choices[0].message.content, "Forty-two.");
    assert.deepEqual(res.json.usage, { prompt_tokens: 1000, completion_tokens: 2000, total_tokens: 3000 });
    assert.equal(res.json.model, "mistral-large-2699");
    assert.equal(res.json.choices[0].finish_reason, "length");
  });

  it("[[stub:delay=MS]] delays the answer", async () => {
    const t0 = Date.now();
    const res = await chat(user("x [[stub:delay=300]]"));
    assert.equal(res.status, 200);
    assert.ok(Date.now() - t0 >= 290);
  });

  it("streams SSE chunks: role first, usage on the last content chunk, then [DONE]", async () => {
    const body = { ...user("Tell me a story about a tiny robot"), stream: true };
    const res = await chat(body, { stream: true });
    assert.equal(res.status, 200);
    assert.match(res.headers.get("content-type"), /text\/event-stream/);
    const events = res.text.split("\n\n").filter(Boolean);
    for (const e of events) assert.match(e, /^data: /);
    assert.equal(events.at(-1), "data: [DONE]");
    const chunks = events.slice(0, -1).map((e) => JSON.parse(e.slice(6)));
    assert.equal(chunks[0].object, "chat.completion.chunk");
    assert.equal(chunks[0].choices[0].delta.role, "assistant");
    const last = chunks.at(-1);
    assert.equal(last.choices[0].finish_reason, "stop");
    assert.ok(typeof last.choices[0].delta.content === "string" && last.choices[0].delta.content.length > 0);
    for (const c of chunks.slice(0, -1)) {
      assert.ok(!c.usage, "usage only on the last chunk");
      assert.equal(c.choices[0].finish_reason, null);
    }
    const text = chunks.map((c) => c.choices[0].delta.content ?? "").join("");
    const exp = expectedCompletion(body);
    assert.equal(text, exp.answer);
    assert.deepEqual(last.usage, exp.usage);
    assert.equal(last.model, "mistral-small-2603");
  });

  it("[[stub:stream-cut]] ends the stream without usage or [DONE]", async () => {
    const res = await chat({ ...user("x [[stub:stream-cut]]"), stream: true }, { stream: true });
    assert.equal(res.status, 200);
    assert.ok(!res.text.includes("[DONE]"));
    assert.ok(!res.text.includes('"usage"'));
  });

  it("is fast: 500 requests in a few seconds", async () => {
    const t0 = Date.now();
    const all = await Promise.all(Array.from({ length: 500 }, (_, i) => chat(user(`q${i}`))));
    assert.ok(all.every((r) => r.status === 200));
    assert.ok(Date.now() - t0 < 10_000, `took ${Date.now() - t0} ms`);
  });

  it("runs as a CLI and prints its URL", async () => {
    const script = fileURLToPath(new URL("./mistral-stub.mjs", import.meta.url));
    const child = spawn(process.execPath, [script, "--port", "0"], { stdio: ["ignore", "pipe", "pipe"] });
    try {
      const url = await new Promise((resolve, reject) => {
        let out = "";
        const timer = setTimeout(() => reject(new Error(`no URL printed: ${out}`)), 10_000);
        child.stdout.on("data", (d) => {
          out += d;
          const m = /(http:\/\/127\.0\.0\.1:\d+)/.exec(out);
          if (m) {
            clearTimeout(timer);
            resolve(m[1]);
          }
        });
      });
      const res = await fetch(`${url}/v1/chat/completions`, {
        method: "POST",
        headers: { authorization: "Bearer k", "content-type": "application/json" },
        body: JSON.stringify(user("cli")),
      });
      assert.equal(res.status, 200);
      const recorded = await (await fetch(`${url}/__stub/requests`)).json();
      assert.equal(recorded.length, 1);
    } finally {
      child.kill("SIGTERM");
      await new Promise((r) => child.once("exit", r));
    }
  });
});
