"""The official `mistralai` Python SDK drives the gateway by changing only its server URL:
non-streaming, streaming, a tool-call round trip, and errors raised as the SDK's exceptions."""

import json
import re

import pytest
from mistralai.client import Mistral
from mistralai.client import errors

from support import metrics, metrics_until, stub_requests, tag, upstream_request

WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather in a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}
MISTRAL_ID = re.compile(r"^[a-zA-Z0-9]{9}$")


@pytest.fixture(scope="module")
def mistral(mistral_gateway):
    return Mistral(api_key="sk-client-not-checked", server_url=mistral_gateway["url"], timeout_ms=30_000)


@pytest.fixture(scope="module")
def mixed(mixed_gateway):
    return Mistral(api_key="sk-client-not-checked", server_url=mixed_gateway["url"], timeout_ms=30_000)


def test_complete(mistral, mistral_gateway):
    t = tag()
    res = mistral.chat.complete(
        model="auto",
        messages=[
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": f"What is the capital of France? {t}"},
        ],
        temperature=0.2,
        top_p=0.9,
        max_tokens=64,
        random_seed=7,
        safe_prompt=False,
        stop=["END"],
        response_format={"type": "text"},
    )
    assert res.object == "chat.completion"
    assert res.model in ("mistral-small-2603", "mistral-large-2512")  # routed by the default router
    assert res.choices[0].message.content.startswith(f"Stub answer from {res.model} to: What is the capital")
    assert res.choices[0].finish_reason == "stop"
    assert res.usage.prompt_tokens > 0 and res.usage.completion_tokens > 0
    up = upstream_request(mistral_gateway["stub"], t)
    assert up["response"]["status"] == 200
    assert up["body"]["random_seed"] == 7 and up["body"]["max_tokens"] == 64
    assert up["body"]["model"] == {"mistral-small-2603": "mistral-small-latest", "mistral-large-2512": "mistral-large-latest"}[res.model]


def test_complete_large_tier_and_model_id(mistral, mistral_gateway):
    for model, dated in [("large", "mistral-large-2512"), ("mistral-large-latest", "mistral-large-2512"), ("small", "mistral-small-2603")]:
        res = mistral.chat.complete(model=model, messages=[{"role": "user", "content": "hi"}])
        assert res.model == dated, model


def test_stream(mistral, mistral_gateway):
    t = tag()
    before = metrics(mistral_gateway["url"])
    events = mistral.chat.stream(
        model="small",
        messages=[{"role": "user", "content": f"Stream it {t} [[stub:chunk-delay=20]] [[stub:tokens=77,22]]"}],
    )
    chunks = [e.data for e in events]
    assert len(chunks) >= 3
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text.startswith("Stub answer from mistral-small-2603 to: Stream it")
    assert chunks[-1].choices[0].finish_reason == "stop"
    assert chunks[-1].usage.prompt_tokens == 77 and chunks[-1].usage.completion_tokens == 22
    assert upstream_request(mistral_gateway["stub"], t)["body"]["stream"] is True
    m = metrics_until(mistral_gateway["url"], lambda m: m["total_requests"] > before["total_requests"])
    assert m["tokens_in"] - before["tokens_in"] == 77
    assert m["tokens_out"] - before["tokens_out"] == 22


def test_tool_call_round_trip(mistral, mistral_gateway):
    t = tag()
    messages = [
        {"role": "user", "content": f'Weather in Paris? {t} [[stub:tool-call=get_weather]] [[stub:tool-args={{"city":"Paris"}}]]'}
    ]
    first = mistral.chat.complete(model="small", messages=messages, tools=[WEATHER_TOOL], tool_choice="any")
    choice = first.choices[0]
    assert choice.finish_reason == "tool_calls"
    call = choice.message.tool_calls[0]
    assert MISTRAL_ID.match(call.id)
    assert call.function.name == "get_weather"
    assert json.loads(call.function.arguments) == {"city": "Paris"}
    messages.append(choice.message)
    messages.append({"role": "tool", "tool_call_id": call.id, "name": "get_weather", "content": "18C and sunny"})
    final = mistral.chat.complete(model="small", messages=messages, tools=[WEATHER_TOOL])
    assert final.choices[0].finish_reason == "stop"
    assert "with tool result: 18C and sunny" in final.choices[0].message.content
    up = [r for r in stub_requests(mistral_gateway["stub"]) if t in r["rawBody"]][-1]
    assert up["body"]["messages"][1]["tool_calls"][0]["id"] == call.id


def test_streamed_tool_call(mistral):
    events = mistral.chat.stream(
        model="large",
        messages=[{"role": "user", "content": 'Weather? [[stub:tool-call=get_weather]] [[stub:tool-args={"city":"Oslo"}]]'}],
        tools=[WEATHER_TOOL],
    )
    chunks = [e.data for e in events]
    calls = [tc for c in chunks if c.choices for tc in (c.choices[0].delta.tool_calls or [])]
    assert len(calls) == 1 and MISTRAL_ID.match(calls[0].id)
    assert json.loads(calls[0].function.arguments) == {"city": "Oslo"}
    assert chunks[-1].choices[0].finish_reason == "tool_calls"


def test_unknown_model_raises(mistral):
    with pytest.raises(errors.SDKError) as err:
        mistral.chat.complete(model="mistral-nonexistent", messages=[{"role": "user", "content": "hi"}])
    assert err.value.status_code == 400
    body = json.loads(err.value.body)
    assert body["error"]["code"] == "model_not_found"


def test_upstream_failure_raises(mistral):
    # A refused request is the client's 400; a server error after the fallback is 502.
    with pytest.raises(errors.SDKError) as err:
        mistral.chat.complete(model="small", messages=[{"role": "user", "content": "fail [[stub:status=400]]"}])
    assert err.value.status_code == 400
    with pytest.raises(errors.SDKError) as err:
        mistral.chat.complete(model="small", messages=[{"role": "user", "content": "fail [[stub:status=500]]"}])
    assert err.value.status_code == 502


def test_mistral_sdk_against_other_backends(mixed):
    """A Mistral application pointed at tiers served by OpenAI and Anthropic backends."""
    res = mixed.chat.complete(model="gpt", messages=[{"role": "user", "content": "hello"}], random_seed=3, safe_prompt=True)
    assert res.model == "gpt-4o-mini-2024-07-18"
    res = mixed.chat.complete(model="claude", messages=[{"role": "system", "content": "x"}, {"role": "user", "content": "hello"}], max_tokens=50)
    assert res.model == "claude-haiku-4-5-20251001"
    chunks = [e.data for e in mixed.chat.stream(model="claude", messages=[{"role": "user", "content": "stream"}])]
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices).startswith("Stub answer from claude")
