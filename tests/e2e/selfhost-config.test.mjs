// The self-hosted config (scripts/selfhost/): the workerd config generated from wrangler.toml
// carries its Durable Objects, compatibility date and vars; every variable the worker's
// configuration reads gets a binding; serve.sh composes the environment as documented
// (environment > .dev.vars > wrangler.toml [vars]) and binds only what is set. No build needed.

import { describe, it, after } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { mkdirSync, readFileSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import path from "node:path";
import { PROJECT_ROOT, tempDir } from "./harness.mjs";
import { CONFIG_VARS, generate, parseToml } from "../../scripts/selfhost/workerd-config.mjs";

const wrangler = parseToml(readFileSync(path.join(PROJECT_ROOT, "wrangler.toml"), "utf8"));

describe("workerd config generated from wrangler.toml", () => {
  const out = generate(wrangler);

  it("has wrangler.toml's compatibility date, Durable Objects (SQLite) and modules", () => {
    assert.match(out.capnp, new RegExp(`compatibilityDate = "${wrangler.compatibility_date}"`));
    const objects = wrangler.durable_objects.bindings;
    assert.ok(objects.length >= 2, "METRICS and QUALITY at least");
    for (const o of objects) {
      assert.match(out.objectBindings, new RegExp(`name = "${o.name}", durableObjectNamespace = "${o.class_name}"`));
      assert.match(out.capnp, new RegExp(`className = "${o.class_name}", uniqueKey = "[^"]+", enableSql = true`));
    }
    assert.match(out.capnp, /esModule = embed "index.js"/);
    assert.match(out.capnp, /wasm = embed "index_bg.wasm"/);
    assert.match(out.capnp, /durableObjectStorage = \(localDisk = "state"\)/);
  });

  it("keeps wrangler.toml's [vars] as defaults, shell-quoted", () => {
    for (const [k, v] of Object.entries(wrangler.vars)) {
      assert.ok(out.defaults.includes(`${k}='${v}'\n`), `${k} in defaults`);
    }
    assert.match(generate({ ...wrangler, vars: { A_B: "it's" } }).defaults, /A_B='it'\\''s'/);
  });

  it("says what it switches off", () => {
    assert.ok(out.notices.some((n) => n.includes("[observability]")));
    const queues = generate({ ...wrangler, queues: { producers: [{ binding: "Q", queue: "q" }] } });
    assert.ok(queues.notices.some((n) => n.startsWith("[queues]") && n.includes("switched off")));
  });

  it("binds every variable the worker's configuration reads", () => {
    const dir = path.join(PROJECT_ROOT, "crates/core/src/config");
    const read = new Set();
    for (const f of readdirSync(dir).filter((f) => f.endsWith(".rs"))) {
      const code = readFileSync(path.join(dir, f), "utf8").split("#[cfg(test)]")[0];
      for (const m of code.matchAll(/"([A-Z][A-Z0-9_]{2,})"/g)) read.add(m[1]);
    }
    // and what the shell reads directly
    for (const f of readdirSync(path.join(PROJECT_ROOT, "src"), { recursive: true }).filter((f) => f.endsWith(".rs"))) {
      const code = readFileSync(path.join(PROJECT_ROOT, "src", f), "utf8");
      for (const m of code.matchAll(/env\.(?:var|secret)\("([A-Z][A-Z0-9_]*)"\)/g)) read.add(m[1]);
    }
    assert.ok(read.has("MISTRAL_API_KEY") && read.has("QUALITY_TARGET"), [...read].join(" "));
    const missing = [...read].filter((n) => !CONFIG_VARS.includes(n) && !(n in wrangler.vars));
    assert.deepEqual(missing, [], "add these to CONFIG_VARS in scripts/selfhost/workerd-config.mjs");
  });

  it("pins the workerd that wrangler runs (package.json = wrangler's dependency)", () => {
    const pkg = JSON.parse(readFileSync(path.join(PROJECT_ROOT, "package.json"), "utf8"));
    const lock = JSON.parse(readFileSync(path.join(PROJECT_ROOT, "package-lock.json"), "utf8"));
    const wranglerDep = lock.packages["node_modules/wrangler"].dependencies.workerd;
    assert.equal(pkg.devDependencies.workerd, wranglerDep);
    assert.equal(lock.packages["node_modules/workerd"].version, wranglerDep);
  });

  it("refuses TOML it does not understand", () => {
    assert.throws(() => parseToml("a = { inline = 1 }"), /unsupported value/);
    assert.throws(() => parseToml("what"), /cannot read/);
  });
});

describe("serve.sh composes the environment", () => {
  const dir = tempDir("llm-mux-selfhost-");
  after(() => rmSync(dir, { recursive: true, force: true }));

  function dryRun(env, devVars) {
    const build = path.join(dir, "build");
    mkdirSync(build, { recursive: true });
    const gen = spawnSync(process.execPath, [path.join(PROJECT_ROOT, "scripts/selfhost/workerd-config.mjs"), "--out", build, "--quiet"], { encoding: "utf8" });
    assert.equal(gen.status, 0, gen.stderr);
    const devFile = path.join(dir, "dev.vars");
    writeFileSync(devFile, devVars ?? "");
    const res = spawnSync("sh", [path.join(PROJECT_ROOT, "scripts/selfhost/serve.sh")], {
      encoding: "utf8",
      env: {
        PATH: process.env.PATH,
        LLM_MUX_DRY_RUN: "1",
        LLM_MUX_CONFIG: path.join(build, "llm-mux.capnp"),
        LLM_MUX_STATE_DIR: path.join(dir, "state"),
        LLM_MUX_DEV_VARS: devVars === undefined ? "" : devFile,
        ...env,
      },
    });
    assert.equal(res.status, 0, res.stderr);
    const values = Object.fromEntries(
      res.stdout
        .split("\n")
        .filter((l) => /^[A-Za-z_][A-Za-z0-9_]*=/.test(l))
        .map((l) => [l.slice(0, l.indexOf("=")), l.slice(l.indexOf("=") + 1)]),
    );
    return { values, bindings: res.stdout, stderr: res.stderr };
  }

  it("binds only what is set: the Durable Objects, wrangler.toml's vars and the environment", () => {
    const { values, bindings } = dryRun({ MISTRAL_API_KEY: "k1", ROUTER: "heuristic" });
    assert.match(bindings, /name = "METRICS", durableObjectNamespace = "MetricsStore"/);
    assert.match(bindings, /name = "QUALITY", durableObjectNamespace = "QualityStore"/);
    assert.equal(values.MISTRAL_API_KEY, "k1");
    assert.equal(values.ROUTER, "heuristic");
    assert.equal(values.MISTRAL_BASE_URL, wrangler.vars.MISTRAL_BASE_URL);
    assert.ok(!("QUALITY_TARGET" in values), "an unset variable is not bound (it would be null)");
  });

  it("environment > .dev.vars > wrangler.toml; dotenv quoting; *_API_KEY and extra names", () => {
    const devVars = [
      "# a comment",
      'MISTRAL_API_KEY="dev \\"key\\""',
      "export SMALL_MODEL=dev-small # trailing comment",
      "LARGE_MODEL='dev large'",
      "MY_TIER_API_KEY=tier-key",
      "",
    ].join("\n");
    const { values } = dryRun({ SMALL_MODEL: "env-small", CUSTOM_NAME: "x", LLM_MUX_EXTRA_VARS: "CUSTOM_NAME" }, devVars);
    assert.equal(values.MISTRAL_API_KEY, 'dev "key"');
    assert.equal(values.SMALL_MODEL, "env-small");
    assert.equal(values.LARGE_MODEL, "dev large");
    assert.equal(values.MY_TIER_API_KEY, "tier-key");
    assert.equal(values.CUSTOM_NAME, "x");
    assert.equal(values.UPSTREAM_TIMEOUT_MS, wrangler.vars.UPSTREAM_TIMEOUT_MS);
  });
});
