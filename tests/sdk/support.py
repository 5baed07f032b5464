"""Helpers of the SDK tests: what the stand-ins recorded, and the gateway's /metrics."""

import json
import time
import urllib.request


def stub_requests(stub_url):
    """The requests a stand-in recorded (its /__stub/requests control endpoint)."""
    with urllib.request.urlopen(f"{stub_url}/__stub/requests", timeout=10) as res:
        return json.load(res)


def upstream_request(stub_url, needle):
    """The one recorded upstream request whose body contains `needle`."""
    hits = [r for r in stub_requests(stub_url) if needle in (r.get("rawBody") or "")]
    assert len(hits) == 1, f"expected one upstream request with {needle!r}, got {len(hits)}"
    return hits[0]


def metrics(gateway_url):
    with urllib.request.urlopen(f"{gateway_url}/metrics", timeout=10) as res:
        return json.load(res)


def metrics_until(gateway_url, pred, timeout_s=15.0):
    """Polls /metrics until pred(m) holds (events are recorded after the response)."""
    deadline = time.monotonic() + timeout_s
    while True:
        m = metrics(gateway_url)
        if pred(m) or time.monotonic() > deadline:
            return m
        time.sleep(0.1)


def tag():
    """A short unique marker to find one request again among the recorded ones."""
    import secrets

    return "t" + secrets.token_hex(5)
