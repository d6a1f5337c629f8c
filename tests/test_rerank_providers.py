"""Re-ranking through the real cohere and openai SDKs, against the local wire-level fake. Each
failure mode must leave the fused order in place and say what happened."""

from __future__ import annotations

import re
from typing import Any

import httpx
import pytest

from tests.conftest import COHERE_KEY, graphql_ok
from tests.fakes.providers import Delay, FakeProviders, Malformed, RawJSON, Status

SEARCH = """
query($q: String!, $first: Int!, $s: RerankStrategy!) {
  search(query: $q, first: $first, options: {rerank: $s}) {
    hits { document { title } score scores { fused rerank fusedRank rankChange } }
    rerank { requested applied model fallbackReason tookMs }
  }
}
"""
QUERY = "time travel"


async def _search(client: httpx.AsyncClient, strategy: str, first: int = 5) -> dict[str, Any]:
    data = await graphql_ok(client, SEARCH, {"q": QUERY, "first": first, "s": strategy})
    result: dict[str, Any] = data["search"]
    return result


def _titles(result: dict[str, Any]) -> list[str]:
    return [h["document"]["title"] for h in result["hits"]]


def _passages(request: dict[str, Any]) -> list[str]:
    """The "[n] text" lines of a listwise prompt, in the order the model was shown them."""
    prompt = request["messages"][-1]["content"]
    return [m.group(2) for m in re.finditer(r"^\[(\d+)\] (.*)$", prompt, flags=re.MULTILINE)]


async def test_cohere_reorders_and_reports_scores_and_rank_changes(
    provider_client: httpx.AsyncClient, fake: FakeProviders
) -> None:
    fused = _titles(await _search(provider_client, "NONE", first=8))
    # The provider prefers the three candidates that fusion ranked last.
    lifted = fused[5:8]
    fake.rerank_responder = lambda req: [0.9 if d.split("\n")[0] in lifted else 0.1 for d in req["documents"]]
    result = await _search(provider_client, "COHERE")
    info = result["rerank"]
    assert (info["requested"], info["applied"], info["model"], info["fallbackReason"]) == (
        "COHERE",
        "COHERE",
        "rerank-v3.5",
        None,
    )
    request = [r for r in fake.requests if r.path == "/v2/rerank"][-1]
    assert request.headers["authorization"] == f"Bearer {COHERE_KEY}"
    assert request.json is not None
    assert request.json["query"] == QUERY and request.json["model"] == "rerank-v3.5"
    assert [d.split("\n")[0] for d in request.json["documents"]] == fused  # the candidate cap (8), not the page
    hits = result["hits"]
    # Ties keep their fused order.
    assert _titles(result) == lifted + fused[:2]
    for rank, hit in enumerate(hits, start=1):
        assert hit["scores"]["rerank"] in (0.9, 0.1) and hit["score"] == hit["scores"]["rerank"]
        assert hit["scores"]["rankChange"] == hit["scores"]["fusedRank"] - rank


async def test_cohere_rate_limit_with_retry_after_is_retried(
    provider_client: httpx.AsyncClient, fake: FakeProviders
) -> None:
    fake.script_rerank(Status(429, retry_after=0.2))
    result = await _search(provider_client, "COHERE")
    assert result["rerank"]["applied"] == "COHERE"
    assert len([r for r in fake.requests if r.path == "/v2/rerank"]) == 2


@pytest.mark.parametrize(
    ("behaviours", "reason"),
    [
        ([Status(500), Status(500)], "failed (unavailable: HTTP 500)"),  # the SDK retries once
        ([Status(429, retry_after=0.1), Status(429, retry_after=0.1)], "failed (rate_limited"),
        ([Delay(5.0)], "timed out after 1.5s"),
        ([Malformed()], "failed (bad_response"),
        ([RawJSON({"id": "x", "results": [{"index": 99, "relevance_score": 1.0}], "meta": {}})], "no usable scores"),
    ],
    ids=["500-twice", "429-twice", "timeout", "malformed-json", "out-of-range-indexes"],
)
async def test_cohere_failures_keep_the_fused_order(
    provider_client: httpx.AsyncClient, fake: FakeProviders, behaviours: list[Any], reason: str
) -> None:
    fused = await _search(provider_client, "NONE")
    for behaviour in behaviours:
        fake.script_rerank(behaviour)
    result = await _search(provider_client, "COHERE")
    info = result["rerank"]
    assert info["requested"] == "COHERE" and info["applied"] == "NONE"
    assert reason in info["fallbackReason"]
    assert _titles(result) == _titles(fused)
    assert all(h["scores"]["rerank"] is None and h["scores"]["rankChange"] is None for h in result["hits"])


async def test_llm_listwise_windows_slide_from_the_tail(
    provider_client: httpx.AsyncClient, fake: FakeProviders
) -> None:
    fused = await _search(provider_client, "NONE", first=8)

    def alphabetical(request: dict[str, Any]) -> str:
        passages = _passages(request)
        order = sorted(range(len(passages)), key=lambda i: passages[i].lower())
        return "Ranking: " + " > ".join(f"[{i + 1}]" for i in order)

    fake.chat_responder = alphabetical
    result = await _search(provider_client, "LLM", first=3)
    assert result["rerank"]["applied"] == "LLM" and result["rerank"]["model"] == "fake-llm"
    # 8 candidates, window 5, step 3: windows [3, 8) then [0, 5). After the last window the top
    # `step` places are globally right, whatever the incoming order.
    assert _titles(result) == sorted(_titles(fused), key=str.lower)[:3]
    calls = [r for r in fake.requests if r.path == "/v1/chat/completions"]
    assert [len(_passages(c.json or {})) for c in calls] == [5, 5]
    assert all(QUERY in (c.json or {})["messages"][-1]["content"] for c in calls)
    assert [h["scores"]["rerank"] for h in result["hits"]] == [1.0, 7 / 8, 6 / 8]


async def test_llm_permutation_with_repeats_and_gaps(provider_client: httpx.AsyncClient, fake: FakeProviders) -> None:
    fake.chat_responder = lambda _req: "Sure. [2] > [2] > [1], and the rest do not matter."
    result = await _search(provider_client, "LLM", first=6)
    assert result["rerank"]["applied"] == "LLM"
    # Window [3, 8): fused ranks 5, 4 first, the rest in order -> 1 2 3 5 4 6 7 8; window [0, 5)
    # then puts its 2nd before its 1st -> 2 1 3 5 4 6 7 8.
    assert [h["scores"]["fusedRank"] for h in result["hits"]] == [2, 1, 3, 5, 4, 6]


@pytest.mark.parametrize(
    ("reply", "behaviour", "reason"),
    [
        ("I would rank [42] > [0], then banana.", None, "no readable ranking"),
        ("", Delay(5.0), "timed out"),
        ("", Status(503), "failed (unavailable: HTTP 503)"),
        ("", Malformed(), "failed (bad_response"),
    ],
    ids=["garbage-ids", "timeout", "503", "malformed-json"],
)
async def test_llm_failures_keep_the_fused_order(
    provider_client: httpx.AsyncClient, fake: FakeProviders, reply: str, behaviour: Any, reason: str
) -> None:
    fused = await _search(provider_client, "NONE")
    fake.chat_responder = lambda _req: reply
    if behaviour is not None:
        fake.script_chat(behaviour)
    result = await _search(provider_client, "LLM")
    assert result["rerank"]["applied"] == "NONE" and reason in result["rerank"]["fallbackReason"]
    assert _titles(result) == _titles(fused)
