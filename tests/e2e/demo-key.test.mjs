// `make demo` with .dev.vars copied from .dev.vars.example (issue 11, defect 1): the
// placeholder key must not be taken as a real one (the demo then uses the local stand-in).
// Pure Node, no worker: the key choice of scripts/demo-key.mjs over temp project dirs.
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { copyFileSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";

import { PROJECT_ROOT } from "./harness.mjs";
import { demoKey, dotenvValue, isPlaceholderKey } from "../../scripts/demo-key.mjs";

const EXAMPLE = dotenvValue(path.join(PROJECT_ROOT, ".dev.vars.example"), "MISTRAL_API_KEY");

function projectWith(devVars) {
  const dir = mkdtempSync(path.join(os.tmpdir(), "llm-mux-demo-key-"));
  copyFileSync(path.join(PROJECT_ROOT, ".dev.vars.example"), path.join(dir, ".dev.vars.example"));
  if (devVars !== undefined) writeFileSync(path.join(dir, ".dev.vars"), devVars);
  return dir;
}

describe("demo key choice", () => {
  it(".dev.vars.example has a MISTRAL_API_KEY placeholder to compare with", () => {
    assert.ok(EXAMPLE && EXAMPLE.length > 0);
    assert.equal(isPlaceholderKey(EXAMPLE, EXAMPLE), true);
  });

  it("cp .dev.vars.example .dev.vars: the placeholder is skipped, the stand-in is used", () => {
    const dir = projectWith(undefined);
    try {
      copyFileSync(path.join(dir, ".dev.vars.example"), path.join(dir, ".dev.vars"));
      const choice = demoKey(dir, {});
      assert.equal(choice.key, undefined);
      assert.equal(choice.placeholder.value, EXAMPLE);
      assert.match(choice.placeholder.source, /\.dev\.vars/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it("obvious placeholders are recognised, keys are not", () => {
    for (const p of ["", "  ", "your-mistral-api-key", "YOUR_KEY_HERE", "change-me-1", "changeme",
      "<your key>", "<MISTRAL_API_KEY>", "xxxx", "...", "placeholder", "replace-me"]) {
      assert.equal(isPlaceholderKey(p, EXAMPLE), true, JSON.stringify(p));
    }
    for (const k of ["sk-live-9f8e7d6c", "Ab3dEf6hIj9kLm2nOp5qRs8tUv1wXy4z", "demo-key-for-the-local-stand-in",
      "yourself123"]) {
      assert.equal(isPlaceholderKey(k, EXAMPLE), false, k);
    }
  });

  it("a real key in .dev.vars is used, quotes removed; the environment wins over .dev.vars", () => {
    const dir = projectWith('MISTRAL_API_KEY="abc123realkey"\n');
    try {
      assert.deepEqual(demoKey(dir, {}), { key: "abc123realkey", source: "MISTRAL_API_KEY in .dev.vars" });
      assert.equal(demoKey(dir, { MISTRAL_API_KEY: "envkey42" }).key, "envkey42");
      // A placeholder in the environment falls through to the real key in .dev.vars.
      assert.equal(demoKey(dir, { MISTRAL_API_KEY: "your-key" }).key, "abc123realkey");
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it("no key anywhere: the stand-in, with no placeholder to report", () => {
    const dir = projectWith(undefined);
    try {
      assert.deepEqual(demoKey(dir, {}), { key: undefined, placeholder: undefined });
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
