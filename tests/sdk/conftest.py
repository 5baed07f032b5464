"""Fixtures of the SDK tests: the built worker in workerd (through the e2e harness) with
local stand-ins for Mistral, OpenAI and Anthropic, started once per session by
tests/sdk/gateway.mjs and stopped at the end (the launcher also exits when our end of its
stdin closes, so it never outlives pytest)."""

import json
import os
import shutil
import subprocess
import tempfile
import threading
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LAUNCHER = ROOT / "tests" / "sdk" / "gateway.mjs"
START_TIMEOUT_S = 120


def _read_first_line(proc, timeout):
    box = {}

    def read():
        box["line"] = proc.stdout.readline()

    t = threading.Thread(target=read, daemon=True)
    t.start()
    t.join(timeout)
    return box.get("line")


@pytest.fixture(scope="session")
def gateways():
    """{"mistral": {"url", "stub"}, "mixed": {"url", "openai_stub", "anthropic_stub"}}."""
    node = shutil.which("node")
    if node is None:
        pytest.fail("node is not on PATH: the SDK tests run the worker through wrangler")
    if not (ROOT / "build" / "index.js").exists():
        pytest.fail("build/index.js is missing: run `make build` first")
    env = {k: v for k, v in os.environ.items() if not k.endswith("_API_KEY")}
    log = tempfile.TemporaryFile(mode="w+")
    proc = subprocess.Popen(
        [node, str(LAUNCHER)],
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=log,
        text=True,
        env=env,
    )
    try:
        line = _read_first_line(proc, START_TIMEOUT_S)
        if not line:
            log.seek(0)
            pytest.fail(f"gateway launcher did not start within {START_TIMEOUT_S} s:\n{log.read()[-4000:]}")
        yield json.loads(line)
    finally:
        try:
            proc.stdin.close()
        except OSError:
            pass
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
        log.close()


@pytest.fixture(scope="session")
def mistral_gateway(gateways):
    """The gateway with its default Mistral tiers."""
    return gateways["mistral"]


@pytest.fixture(scope="session")
def limited_gateway(gateways):
    """The gateway whose client key is limited to 2 requests per minute (KEY_POLICIES)."""
    return gateways["limited"]


@pytest.fixture(scope="session")
def mixed_gateway(gateways):
    """The gateway whose tiers are an OpenAI-compatible and an Anthropic backend."""
    return gateways["mixed"]
