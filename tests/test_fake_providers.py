"""The fake OpenAI/Cohere server, checked through the real SDKs so later tests can trust what it simulates."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator

import cohere
import httpx
import openai
import pytest
from cohere.errors import TooManyRequestsError
from openai.types.chat import ChatCompletionMessageParam

from tests.fakes.providers import (
    DEFAULT_ANSWER,
    CutStream,
    Delay,
    FakeProviders,
    Malformed,
    RawJSON,
    Reply,
    SlowStream,
    Status,
)

MESSAGES: list[ChatCompletionMessageParam] = [{"role": "user", "content": "What is the answer?"}]


@pytest.fixture
async def oai(fake: FakeProviders) -> AsyncIterator[openai.AsyncOpenAI]:
    async with openai.AsyncOpenAI(api_key="test-key", base_url=fake.url + "/v1", max_retries=0, timeout=2.0) as client:
        yield client


@pytest.fixture
async def co(fake: FakeProviders) -> AsyncIterator[cohere.AsyncClientV2]:
    async with cohere.AsyncClientV2(api_key="test-key", base_url=fake.url, max_retries=0, timeout=2.0) as client:
        yield client


async def test_chat_default_reply_and_recording(fake: FakeProviders, oai: openai.AsyncOpenAI) -> None:
    completion = await oai.chat.completions.create(model="gpt-test", messages=MESSAGES)

    assert completion.choices[0].message.content == DEFAULT_ANSWER
    assert completion.choices[0].finish_reason == "stop"
    assert completion.model == "gpt-test"
    assert completion.usage is not None and completion.usage.total_tokens > 0
    [request] = fake.requests
    assert (request.method, request.path) == ("POST", "/v1/chat/completions")
    assert request.headers["authorization"] == "Bearer test-key"
    assert request.json["messages"] == MESSAGES


async def test_chat_scripted_reply_usage_and_responder(fake: FakeProviders, oai: openai.AsyncOpenAI) -> None:
    fake.script_chat(Reply("Scripted.", usage=(3, 4)))
    fake.chat_responder = lambda request: f"echo: {request['messages'][-1]['content']}"

    first = await oai.chat.completions.create(model="m", messages=MESSAGES)
    second = await oai.chat.completions.create(model="m", messages=MESSAGES)

    assert first.choices[0].message.content == "Scripted."
    assert first.usage is not None
    assert (first.usage.prompt_tokens, first.usage.completion_tokens, first.usage.total_tokens) == (3, 4, 7)
    # The script is one-shot; afterwards the responder answers.
    assert second.choices[0].message.content == "echo: What is the answer?"


async def test_chat_stream_deltas_and_usage_chunk(fake: FakeProviders, oai: openai.AsyncOpenAI) -> None:
    fake.script_chat(Reply("Paris is the capital [1].", usage=(9, 6)))
    stream = await oai.chat.completions.create(
        model="m",
        messages=MESSAGES,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = [chunk async for chunk in stream]

    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "Paris is the capital [1]."
    assert len([c for c in chunks if c.choices and c.choices[0].delta.content]) > 1
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    assert chunks[-1].choices == []
    assert chunks[-1].usage is not None and chunks[-1].usage.total_tokens == 15
    assert fake.completed_streams == 1
    assert not fake.closed_early.is_set()


async def test_chat_stream_without_include_usage_has_no_usage_chunk(oai: openai.AsyncOpenAI) -> None:
    stream = await oai.chat.completions.create(model="m", messages=MESSAGES, stream=True)
    chunks = [chunk async for chunk in stream]

    assert all(c.choices and c.usage is None for c in chunks)
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == DEFAULT_ANSWER


async def test_rate_limit_maps_to_rate_limit_error_with_retry_after(
    fake: FakeProviders, oai: openai.AsyncOpenAI
) -> None:
    fake.script_chat(Status(429, retry_after=2))

    with pytest.raises(openai.RateLimitError) as caught:
        await oai.chat.completions.create(model="m", messages=MESSAGES)

    assert caught.value.status_code == 429
    assert caught.value.response.headers["retry-after"] == "2"
    assert caught.value.code == "rate_limit_exceeded"


async def test_server_error_maps_to_internal_server_error(fake: FakeProviders, oai: openai.AsyncOpenAI) -> None:
    fake.script_chat(Status(500))

    with pytest.raises(openai.InternalServerError):
        await oai.chat.completions.create(model="m", messages=MESSAGES)


async def test_delay_beyond_timeout_is_api_timeout_error(fake: FakeProviders, oai: openai.AsyncOpenAI) -> None:
    fake.script_chat(Delay(1.5))
    started = time.monotonic()

    with pytest.raises(openai.APITimeoutError):
        await oai.with_options(timeout=0.3).chat.completions.create(model="m", messages=MESSAGES)

    assert time.monotonic() - started < 1.5


async def test_delay_then_behaviour(fake: FakeProviders, oai: openai.AsyncOpenAI) -> None:
    fake.script_chat(Delay(0.2, then=Reply("late but fine")))
    started = time.monotonic()

    completion = await oai.chat.completions.create(model="m", messages=MESSAGES)

    assert completion.choices[0].message.content == "late but fine"
    assert time.monotonic() - started >= 0.2


async def test_malformed_body_raises_json_decode_error(fake: FakeProviders, oai: openai.AsyncOpenAI) -> None:
    # The SDK does not wrap this: response.json() raises straight through.
    fake.script_chat(Malformed())
    with pytest.raises(json.JSONDecodeError):
        await oai.chat.completions.create(model="m", messages=MESSAGES)

    fake.script_chat(Malformed())
    stream = await oai.chat.completions.create(model="m", messages=MESSAGES, stream=True)
    with pytest.raises(json.JSONDecodeError):
        async for _ in stream:
            pass


async def test_cut_stream_raises_connection_error_after_first_pieces(
    fake: FakeProviders, oai: openai.AsyncOpenAI
) -> None:
    fake.script_chat(CutStream(after_pieces=2))
    stream = await oai.chat.completions.create(model="m", messages=MESSAGES, stream=True)
    received: list[str] = []

    with pytest.raises(openai.APIConnectionError) as caught:
        async for chunk in stream:
            received.append(chunk.choices[0].delta.content or "")

    assert received == ["This ", "is "]
    assert "incomplete chunked read" in str(caught.value.__cause__)  # httpx2.RemoteProtocolError underneath
    assert fake.completed_streams == 0


async def test_cut_non_stream_raises_connection_error(fake: FakeProviders, oai: openai.AsyncOpenAI) -> None:
    fake.script_chat(CutStream(after_pieces=0))
    with pytest.raises(openai.APIConnectionError):
        await oai.chat.completions.create(model="m", messages=MESSAGES)


async def test_client_closing_slow_stream_is_detected(fake: FakeProviders, oai: openai.AsyncOpenAI) -> None:
    fake.script_chat(SlowStream("one two three four five six seven eight", interval=1.0))
    stream = await oai.chat.completions.create(model="m", messages=MESSAGES, stream=True)
    async with stream:
        first = await stream.__anext__()
        assert first.choices[0].delta.content == "one "
        closed_at = time.monotonic()

    assert fake.wait_closed_early(5)
    # Noticed while waiting for the next word, not only when the next write fails.
    assert time.monotonic() - closed_at < 0.9
    assert fake.completed_streams == 0


async def test_rerank_default_word_overlap_ordering(fake: FakeProviders, co: cohere.AsyncClientV2) -> None:
    documents = ["green pear", "Red apple pie.", "a red car", "apple"]

    response = await co.rerank(model="rerank-v3.5", query="red apple", documents=documents, top_n=3)

    assert [r.index for r in response.results] == [1, 2, 3]
    assert [r.relevance_score for r in response.results] == [1.0, 0.5, 0.5]
    [request] = fake.requests
    assert request.path == "/v2/rerank"
    assert request.json["top_n"] == 3 and request.json["documents"] == documents


async def test_rerank_responder_and_no_top_n(fake: FakeProviders, co: cohere.AsyncClientV2) -> None:
    fake.rerank_responder = lambda request: [0.1 * i for i in range(len(request["documents"]))]

    response = await co.rerank(model="rerank-v3.5", query="q", documents=["a", "b", "c"])

    assert [r.index for r in response.results] == [2, 1, 0]


async def test_rerank_rate_limit_maps_to_too_many_requests(fake: FakeProviders, co: cohere.AsyncClientV2) -> None:
    fake.script_rerank(Status(429, retry_after=1))

    with pytest.raises(TooManyRequestsError) as caught:
        await co.rerank(model="rerank-v3.5", query="q", documents=["a"])

    assert caught.value.status_code == 429
    assert caught.value.headers is not None and caught.value.headers["retry-after"] == "1"
    assert caught.value.body == {"message": "fake provider error 429"}


async def test_rerank_delay_is_httpx_read_timeout(fake: FakeProviders) -> None:
    # cohere does not wrap transport errors: a timeout surfaces as the raw httpx exception.
    fake.script_rerank(Delay(1.0))
    async with cohere.AsyncClientV2(api_key="k", base_url=fake.url, max_retries=0, timeout=0.3) as co:
        with pytest.raises(httpx.ReadTimeout):
            await co.rerank(model="rerank-v3.5", query="q", documents=["a"])


async def test_raw_json_passthrough(fake: FakeProviders, oai: openai.AsyncOpenAI, co: cohere.AsyncClientV2) -> None:
    completion = {
        "id": "chatcmpl-raw",
        "object": "chat.completion",
        "created": 1,
        "model": "m",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "zebra [9] ]["}, "finish_reason": "stop"}],
    }
    fake.script_chat(RawJSON(completion))
    fake.script_rerank(RawJSON({"id": "r", "results": [{"index": 42, "relevance_score": 0.9}], "meta": {}}))

    chat = await oai.chat.completions.create(model="m", messages=MESSAGES)
    rerank = await co.rerank(model="rerank-v3.5", query="q", documents=["a"])

    assert chat.id == "chatcmpl-raw" and chat.choices[0].message.content == "zebra [9] ]["
    assert chat.usage is None
    assert [(r.index, r.relevance_score) for r in rerank.results] == [(42, 0.9)]


async def test_scripts_are_fifo_per_route(fake: FakeProviders, oai: openai.AsyncOpenAI) -> None:
    fake.script_chat(Reply("first"))
    fake.script_chat(Status(500))
    fake.script_rerank(Status(500))  # another route's queue is untouched by chat requests

    first = await oai.chat.completions.create(model="m", messages=MESSAGES)
    with pytest.raises(openai.InternalServerError):
        await oai.chat.completions.create(model="m", messages=MESSAGES)
    third = await oai.chat.completions.create(model="m", messages=MESSAGES)

    assert first.choices[0].message.content == "first"
    assert third.choices[0].message.content == DEFAULT_ANSWER
    assert len(fake.requests) == 3


def test_unknown_route_is_404_and_server_is_loopback_only() -> None:
    with FakeProviders() as server:
        assert server.url.startswith("http://127.0.0.1:")
        response = httpx.get(server.url + "/v1/models")
        assert response.status_code == 404
        assert "error" in response.json()
        assert [r.path for r in server.requests] == ["/v1/models"]
