"""The official `openai` Python SDK drives the gateway by changing only its base URL:
non-streaming, streaming, a tool-call round trip, errors raised as the SDK's exceptions —
against the default Mistral tiers and against OpenAI-compatible and Anthropic backends."""

import json
import re

import openai
import pytest
from openai import OpenAI

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


def client(gateway):
    # The API key is the gateway's (none configured here); the upstream keys stay in the gateway.
    return OpenAI(base_url=gateway["url"] + "/v1", api_key="sk-client-not-checked", max_retries=0, timeout=30)


@pytest.fixture(scope="module")
def mistral(mistral_gateway):
    return client(mistral_gateway)


@pytest.fixture(scope="module")
def mixed(mixed_gateway):
    return client(mixed_gateway)


def test_models_list(mistral):
    ids = [m.id for m in mistral.models.list()]
    assert ids == ["auto", "small", "large", "mistral-small-latest", "mistral-large-latest"]


def test_models_retrieve(mistral):
    listed = {m.id: m for m in mistral.models.list()}
    for model_id in ["auto", "large", "mistral-small-latest"]:
        model = mistral.models.retrieve(model_id)
        assert model.id == model_id
        assert model.object == "model"
        assert model == listed[model_id]
    with pytest.raises(openai.NotFoundError) as err:
        mistral.models.retrieve("gpt-4o")
    assert err.value.status_code == 404
    assert err.value.code == "model_not_found"


def test_non_streaming_completion_with_routing_headers(mistral, mistral_gateway):
    t = tag()
    raw = mistral.chat.completions.with_raw_response.create(
        model="auto",
        messages=[
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": f"What is the capital of France? {t}"},
        ],
        temperature=0.3,
        top_p=0.9,
        seed=42,
        max_completion_tokens=64,
        stop=["END"],
        presence_penalty=0.1,
        frequency_penalty=0.1,
        n=1,
        user="sdk-user",
    )
    completion = raw.parse()
    # Routed by the default router: whichever tier it picked, the headers and answer agree.
    tier = raw.headers["x-llm-mux-tier"]
    assert tier in ("small", "large")
    dated = {"small": "mistral-small-2603", "large": "mistral-large-2512"}[tier]
    assert raw.headers["x-llm-mux-model"] == f"mistral-{tier}-latest"
    assert completion.object == "chat.completion"
    assert completion.model == dated
    assert completion.choices[0].message.role == "assistant"
    assert completion.choices[0].message.content.startswith(f"Stub answer from {dated}")
    assert completion.choices[0].finish_reason == "stop"
    assert completion.usage.prompt_tokens > 0 and completion.usage.completion_tokens > 0
    assert 0 <= float(raw.headers["x-llm-mux-score"]) <= 1
    assert float(raw.headers["x-llm-mux-cost-usd"]) > 0
    up = upstream_request(mistral_gateway["stub"], t)["body"]
    assert up["random_seed"] == 42 and up["max_tokens"] == 64
    assert "seed" not in up and "max_completion_tokens" not in up and "user" not in up


def test_streaming_completion(mistral, mistral_gateway):
    t = tag()
    before = metrics(mistral_gateway["url"])
    stream = mistral.chat.completions.create(
        model="large",
        messages=[{"role": "user", "content": f"Stream me an answer {t} [[stub:chunk-delay=20]] [[stub:tokens=120,30]]"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    assert len(chunks) >= 3
    assert all(c.object == "chat.completion.chunk" for c in chunks)
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text.startswith("Stub answer from mistral-large-2512 to: Stream me an answer")
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finishes == ["stop"]
    usage = [c.usage for c in chunks if c.usage]
    assert usage and usage[-1].prompt_tokens == 120 and usage[-1].completion_tokens == 30
    up = upstream_request(mistral_gateway["stub"], t)["body"]
    assert up["stream"] is True and "stream_options" not in up
    m = metrics_until(mistral_gateway["url"], lambda m: m["total_requests"] > before["total_requests"])
    assert m["tokens_in"] - before["tokens_in"] == 120
    assert m["tokens_out"] - before["tokens_out"] == 30


def test_tool_call_round_trip(mistral, mistral_gateway):
    t = tag()
    messages = [
        {"role": "user", "content": f'Weather in Paris? {t} [[stub:tool-call=get_weather]] [[stub:tool-args={{"city":"Paris"}}]]'}
    ]
    first = mistral.chat.completions.create(model="small", messages=messages, tools=[WEATHER_TOOL], tool_choice="auto")
    choice = first.choices[0]
    assert choice.finish_reason == "tool_calls"
    call = choice.message.tool_calls[0]
    assert MISTRAL_ID.match(call.id)
    assert call.type == "function" and call.function.name == "get_weather"
    assert json.loads(call.function.arguments) == {"city": "Paris"}

    messages.append(choice.message.model_dump(exclude_none=True))
    messages.append({"role": "tool", "tool_call_id": call.id, "content": "18C and sunny"})
    final = mistral.chat.completions.create(model="small", messages=messages, tools=[WEATHER_TOOL])
    assert final.choices[0].finish_reason == "stop"
    assert "with tool result: 18C and sunny" in final.choices[0].message.content


def test_tool_call_with_openai_style_ids_is_rewritten_for_mistral(mistral, mistral_gateway):
    """An application that kept OpenAI ids (call_...) in its history still works on Mistral."""
    t = tag()
    history = [
        {"role": "user", "content": f"Weather in Rome? {t}"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [{"id": "call_Ab12Cd34Ef56Gh78Ij90Kl12", "type": "function", "function": {"name": "get_weather", "arguments": '{"city":"Rome"}'}}],
        },
        {"role": "tool", "tool_call_id": "call_Ab12Cd34Ef56Gh78Ij90Kl12", "content": "24C"},
    ]
    final = mistral.chat.completions.create(model="small", messages=history, tools=[WEATHER_TOOL])
    assert "with tool result: 24C" in final.choices[0].message.content
    up = upstream_request(mistral_gateway["stub"], t)["body"]
    sent_id = up["messages"][1]["tool_calls"][0]["id"]
    assert MISTRAL_ID.match(sent_id) and up["messages"][2]["tool_call_id"] == sent_id


def test_streamed_tool_call(mistral):
    stream = mistral.chat.completions.create(
        model="small",
        messages=[{"role": "user", "content": 'Weather? [[stub:tool-call=get_weather]] [[stub:tool-args={"city":"Oslo"}]]'}],
        tools=[WEATHER_TOOL],
        stream=True,
    )
    calls = [tc for c in stream if c.choices for tc in (c.choices[0].delta.tool_calls or [])]
    assert len(calls) == 1 and MISTRAL_ID.match(calls[0].id)
    assert json.loads(calls[0].function.arguments) == {"city": "Oslo"}


def test_unknown_model_raises_bad_request(mistral):
    with pytest.raises(openai.BadRequestError) as err:
        mistral.chat.completions.create(model="gpt-9-turbo", messages=[{"role": "user", "content": "hi"}])
    assert err.value.status_code == 400
    assert err.value.code == "model_not_found"
    assert err.value.param == "model"
    assert "gpt-9-turbo" in err.value.message


def test_invalid_parameter_raises_bad_request(mistral):
    with pytest.raises(openai.BadRequestError) as err:
        mistral.chat.completions.create(model="auto", messages=[{"role": "user", "content": "hi"}], temperature=5)
    assert err.value.param == "temperature"


def test_upstream_refusal_raises_bad_request(mistral):
    with pytest.raises(openai.BadRequestError) as err:
        mistral.chat.completions.create(model="small", messages=[{"role": "user", "content": "fail [[stub:status=400]]"}])
    assert err.value.status_code == 400
    assert err.value.code == "upstream_400"
    assert "Invalid request (stub)" in err.value.message


def test_upstream_server_error_raises_internal_server_error(mistral):
    with pytest.raises(openai.InternalServerError) as err:
        mistral.chat.completions.create(model="small", messages=[{"role": "user", "content": "fail [[stub:status=500]]"}])
    assert err.value.status_code == 502
    assert err.value.code == "upstream_error"


def test_rate_limit_raises_rate_limit_error_without_multiplying_retries(mistral_gateway):
    """Upstream 429 on both tiers: the SDK raises RateLimitError. With the SDK's own default
    retries (2), the upstream sees the gateway's worst case only: 2 attempts x 2 tiers = 4
    calls, because the gateway answers `x-should-retry: false` (README: upstream calls per
    client request)."""
    retrying = OpenAI(base_url=mistral_gateway["url"] + "/v1", api_key="sk-client", timeout=30)
    assert retrying.max_retries == 2
    t = tag()
    with pytest.raises(openai.RateLimitError) as err:
        retrying.chat.completions.create(
            model="small", messages=[{"role": "user", "content": f"limited {t} [[stub:status=429]] [[stub:retry-after=0]]"}]
        )
    assert err.value.status_code == 429
    assert err.value.response.headers.get("retry-after") is not None
    calls = [r for r in stub_requests(mistral_gateway["stub"]) if t in (r.get("rawBody") or "")]
    assert len(calls) == 4, [r["body"]["model"] for r in calls]
    # A refused request is sent once: no retry anywhere.
    t = tag()
    with pytest.raises(openai.BadRequestError):
        retrying.chat.completions.create(model="small", messages=[{"role": "user", "content": f"refused {t} [[stub:status=422]]"}])
    assert len([r for r in stub_requests(mistral_gateway["stub"]) if t in (r.get("rawBody") or "")]) == 1


def test_gateway_rate_limit_raises_rate_limit_error_and_never_reaches_the_upstream(limited_gateway):
    """The gateway's own limit (KEY_POLICIES rate_limit_per_minute: 2): the third request in a
    minute raises RateLimitError with the limit's code, Retry-After and the key id, and only
    the admitted requests reach the upstream."""
    sdk = OpenAI(base_url=limited_gateway["url"] + "/v1", api_key=limited_gateway["key"], max_retries=0, timeout=30)
    t = tag()
    for i in range(2):
        sdk.chat.completions.create(model="small", messages=[{"role": "user", "content": f"hi {t} {i}"}])
    with pytest.raises(openai.RateLimitError) as err:
        sdk.chat.completions.create(model="small", messages=[{"role": "user", "content": f"hi {t} 2"}])
    assert err.value.status_code == 429
    assert err.value.code == "rate_limited"
    assert 1 <= int(err.value.response.headers["retry-after"]) <= 60
    assert re.fullmatch(r"[0-9a-f]{12}", err.value.body["key_id"])
    assert limited_gateway["key"] not in err.value.response.text
    calls = [r for r in stub_requests(limited_gateway["stub"]) if t in (r.get("rawBody") or "")]
    assert len(calls) == 2


def test_a_cut_stream_raises_instead_of_ending_short(mistral):
    stream = mistral.chat.completions.create(
        model="small", messages=[{"role": "user", "content": "cut [[stub:stream-abort]]"}], stream=True
    )
    with pytest.raises(openai.APIError) as err:
        for _ in stream:
            pass
    assert "broke off" in str(err.value)


def test_openai_backend_non_streaming_and_streaming(mixed, mixed_gateway):
    t = tag()
    completion = mixed.chat.completions.create(model="gpt", messages=[{"role": "user", "content": f"hello gpt {t}"}], seed=9)
    assert completion.model == "gpt-4o-mini-2024-07-18"
    assert completion.system_fingerprint == "fp_stub0001"
    assert upstream_request(mixed_gateway["openai_stub"], t)["body"]["seed"] == 9
    stream = mixed.chat.completions.create(model="gpt", messages=[{"role": "user", "content": "stream gpt"}], stream=True)
    chunks = list(stream)
    # Code that reads choices[0] of every chunk must not break: no usage-only chunk unasked.
    text = "".join(c.choices[0].delta.content or "" for c in chunks)
    assert text.startswith("Stub answer from gpt-4o-mini-2024-07-18")
    asked = list(
        mixed.chat.completions.create(
            model="gpt", messages=[{"role": "user", "content": "stream gpt"}], stream=True, stream_options={"include_usage": True}
        )
    )
    assert asked[-1].choices == [] and asked[-1].usage.completion_tokens > 0


def test_anthropic_backend_round_trip(mixed, mixed_gateway):
    t = tag()
    messages = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": f'Weather in Oslo? {t} [[stub:tool-call=get_weather]] [[stub:tool-args={{"city":"Oslo"}}]]'},
    ]
    first = mixed.chat.completions.create(model="claude", messages=messages, tools=[WEATHER_TOOL])
    assert first.model == "claude-haiku-4-5-20251001"
    assert first.choices[0].finish_reason == "tool_calls"
    call = first.choices[0].message.tool_calls[0]
    assert json.loads(call.function.arguments) == {"city": "Oslo"}
    messages.append(first.choices[0].message.model_dump(exclude_none=True))
    messages.append({"role": "tool", "tool_call_id": call.id, "content": "-3C"})
    final = mixed.chat.completions.create(model="claude", messages=messages, tools=[WEATHER_TOOL])
    assert "with tool result: -3C" in final.choices[0].message.content
    stream = mixed.chat.completions.create(model="claude", messages=[{"role": "user", "content": "stream claude"}], stream=True)
    chunks = list(stream)
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices).startswith("Stub answer from claude-haiku-4-5-20251001")
    assert any(c.usage and c.usage.completion_tokens > 0 for c in chunks)


def test_anthropic_backend_error_raises(mixed):
    with pytest.raises(openai.BadRequestError) as err:
        mixed.chat.completions.create(model="claude", messages=[{"role": "user", "content": "fail [[stub:status=400]]"}])
    assert err.value.status_code == 400
