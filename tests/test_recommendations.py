"""The learning loop end to end through GraphQL, in a tenant of its own: a new user gets popular
items; likes shift the list toward their taste; a dislike pushes that item's neighbours down; seen
items never come back. Plus context, filters, validation, "more like this" and re-ranking."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from domain.persistence.database import Database
from domain.providers.embedding import LocalEmbedder
from tests.conftest import catalogue, error_codes, graphql, graphql_ok, provider_values, tenant_client
from tests.fakes.providers import FakeProviders

RECS = """
query($u: ID, $c: String, $first: Int!, $o: RecommendationOptions) {
  recommendations(userId: $u, context: $c, first: $first, options: $o) {
    items { document { id title genre tags } score reasons sources }
    strategy sources queryId tookMs
    rerank { requested applied fallbackReason }
  }
}
"""
SUBMIT = "mutation($i: FeedbackInput!) { submitFeedback(input: $i) { errors { code message } } }"
SIMILAR = """
query($id: ID!, $first: Int!, $f: MetadataFilter) {
  similarDocuments(id: $id, first: $first, filter: $f) { document { id title genre } score snippet scores { dense } }
}
"""
TIME_TRAVEL = ["Primer", "Looper", "12 Monkeys"]


@pytest.fixture(scope="module")
async def tenant_app(
    pg_url: str, tmp_root: Path, embedder: LocalEmbedder, db: Database, fake_providers: FakeProviders
) -> AsyncIterator[httpx.AsyncClient]:
    async with tenant_client(pg_url, tmp_root, embedder, **provider_values(fake_providers)) as (client, _):
        yield client


@pytest.fixture(scope="module")
async def films(tenant_app: httpx.AsyncClient) -> dict[str, dict[str, Any]]:
    return await catalogue(tenant_app)


async def recommend(client: httpx.AsyncClient, user: str | None, first: int = 10, **extra: Any) -> dict[str, Any]:
    data = await graphql_ok(client, RECS, {"u": user, "first": first, **extra})
    result: dict[str, Any] = data["recommendations"]
    return result


async def feedback(client: httpx.AsyncClient, user: str, document_id: str, kind: str, **extra: Any) -> None:
    data = await graphql_ok(client, SUBMIT, {"i": {"userId": user, "documentId": document_id, "kind": kind, **extra}})
    assert data["submitFeedback"]["errors"] == []


def titles(result: dict[str, Any]) -> list[str]:
    return [item["document"]["title"] for item in result["items"]]


def genres(result: dict[str, Any]) -> list[str]:
    return [item["document"]["genre"] for item in result["items"]]


def rank_of(result: dict[str, Any], title: str) -> int:
    """1-based rank, or one past the end when absent."""
    names = titles(result)
    return names.index(title) + 1 if title in names else len(names) + 1


async def test_the_learning_loop(tenant_app: httpx.AsyncClient, films: dict[str, dict[str, Any]]) -> None:
    client = tenant_app
    # Three other users make Casablanca the tenant's most liked film.
    for other in ("fan-1", "fan-2", "fan-3"):
        await feedback(client, other, films["Casablanca"]["id"], "LIKE")

    cold = await recommend(client, "newcomer")
    assert cold["sources"] == ["POPULAR"] and cold["strategy"] == "blended: popular"
    assert titles(cold)[0] == "Casablanca"
    assert "popular in Romance" in cold["items"][0]["reasons"]
    sci_fi_before = genres(cold).count("Sci-Fi")

    for title in TIME_TRAVEL:
        await feedback(client, "newcomer", films[title]["id"], "LIKE")
    warm = await recommend(client, "newcomer")
    assert "PROFILE" in warm["sources"]
    assert genres(warm).count("Sci-Fi") >= 5 > sci_fi_before
    assert not set(TIME_TRAVEL) & set(titles(warm)), "liked (seen) films came back"
    liked_reasons = [r for item in warm["items"] for r in item["reasons"] if "which you liked" in r]
    assert any(f"*{t}*" in r for r in liked_reasons for t in TIME_TRAVEL)

    # Dislike the top recommendation: it leaves (seen), and its nearest unseen neighbour drops.
    disliked = titles(warm)[0]
    similar = await graphql_ok(client, SIMILAR, {"id": films[disliked]["id"], "first": 10})
    seen = {*TIME_TRAVEL, disliked}
    neighbour = next(h["document"]["title"] for h in similar["similarDocuments"] if h["document"]["title"] not in seen)
    before = await recommend(client, "newcomer", first=30)
    await feedback(client, "newcomer", films[disliked]["id"], "DISLIKE")
    after = await recommend(client, "newcomer", first=30)
    assert disliked not in titles(after)
    assert rank_of(after, neighbour) > rank_of(before, neighbour), (neighbour, titles(before), titles(after))

    # A view is enough to count as seen.
    viewed = titles(after)[0]
    await feedback(client, "newcomer", films[viewed]["id"], "VIEW")
    assert viewed not in titles(await recommend(client, "newcomer", first=30))
    kept = await recommend(client, "newcomer", first=100, o={"excludeSeen": False})
    assert viewed in titles(kept)


async def test_co_engagement_recommends_what_similar_users_liked(
    tenant_app: httpx.AsyncClient, films: dict[str, dict[str, Any]]
) -> None:
    client = tenant_app
    # Two users liked both a western and a documentary: unrelated by text, related by people.
    pair = ("Unforgiven", "Man on Wire")
    for user in ("pair-a", "pair-b"):
        for title in pair:
            await feedback(client, user, films[title]["id"], "LIKE")
    await feedback(client, "pair-c", films["Unforgiven"]["id"], "LIKE")
    result = await recommend(client, "pair-c", o={"strategy": "COLLABORATIVE"})
    assert titles(result)[0] == "Man on Wire"
    assert result["sources"] == ["CO_ENGAGEMENT"] and result["strategy"] == "collaborative: co-engagement"
    assert "people who liked *Unforgiven* also liked this" in result["items"][0]["reasons"]
    blended = await recommend(client, "pair-c")
    assert "CO_ENGAGEMENT" in blended["sources"]
    assert "Man on Wire" in titles(blended)


async def test_context_steers_a_new_user(tenant_app: httpx.AsyncClient) -> None:
    result = await recommend(tenant_app, "stranger", c="I love sci-fi movies with time travel")
    assert "CONTEXT" in result["sources"]
    assert genres(result).count("Sci-Fi") >= 6
    reasons = [r for item in result["items"] for r in item["reasons"]]
    assert any("'time travel'" in r for r in reasons)


async def test_filter_and_diversity(tenant_app: httpx.AsyncClient) -> None:
    comedy = await recommend(
        tenant_app,
        "stranger-2",
        c="time travel",
        o={"filter": {"all": [{"field": "genre", "op": "EQ", "value": "Comedy"}]}},
    )
    assert comedy["items"] and set(genres(comedy)) == {"Comedy"}
    focused = await recommend(tenant_app, "stranger-2", c="time travel", o={"diversity": 0.0})
    varied = await recommend(tenant_app, "stranger-2", c="time travel", o={"diversity": 0.9})
    assert len(set(genres(varied))) > len(set(genres(focused)))


@pytest.mark.parametrize(
    ("variables", "code"),
    [
        ({"first": 0}, "FIRST_OUT_OF_RANGE"),
        ({"first": 101}, "FIRST_OUT_OF_RANGE"),
        ({"first": 5, "o": {"diversity": 1.5}}, "INVALID_DIVERSITY"),
        ({"first": 5, "u": " "}, "INVALID_USER_ID"),
        ({"first": 5, "c": "x" * 10_001}, "CONTEXT_TOO_LONG"),
        ({"first": 5, "o": {"filter": {"all": [{"field": "a b", "op": "EQ", "value": 1}]}}}, "INVALID_FILTER_FIELD"),
    ],
)
async def test_invalid_requests_are_coded_errors(
    tenant_app: httpx.AsyncClient, variables: dict[str, Any], code: str
) -> None:
    body = await graphql(tenant_app, RECS, {"u": "v", **variables})
    assert error_codes(body) == [code]


async def test_similar_documents(tenant_app: httpx.AsyncClient, films: dict[str, dict[str, Any]]) -> None:
    primer = films["Primer"]["id"]
    data = await graphql_ok(tenant_app, SIMILAR, {"id": primer, "first": 5})
    hits = data["similarDocuments"]
    assert len(hits) == 5 and primer not in [h["document"]["id"] for h in hits]
    scores = [h["score"] for h in hits]
    assert scores == sorted(scores, reverse=True) and all(h["scores"]["dense"] == h["score"] for h in hits)
    assert {h["document"]["genre"] for h in hits[:3]} == {"Sci-Fi"}
    assert all(h["snippet"] for h in hits)
    westerns = await graphql_ok(
        tenant_app,
        SIMILAR,
        {"id": primer, "first": 3, "f": {"all": [{"field": "genre", "op": "EQ", "value": "Western"}]}},
    )
    assert [h["document"]["genre"] for h in westerns["similarDocuments"]] == ["Western"] * 3
    missing = await graphql(
        tenant_app, SIMILAR, {"id": "RG9jdW1lbnQ6MDAwMDAwMDAtMDAwMC0wMDAwLTAwMDAtMDAwMDAwMDAwMDAw", "first": 3}
    )
    assert error_codes(missing) == ["NOT_FOUND"]


async def test_cohere_rerank_reorders_recommendations(
    tenant_app: httpx.AsyncClient, films: dict[str, dict[str, Any]], fake: FakeProviders
) -> None:
    plain = await recommend(tenant_app, "reranked", first=5, c="space exploration")
    last = titles(plain)[4]
    fake.rerank_responder = lambda req: [0.9 if d.split("\n")[0] == last else 0.1 for d in req["documents"]]
    result = await recommend(tenant_app, "reranked", first=5, c="space exploration", o={"rerank": "COHERE"})
    assert result["rerank"] == {"requested": "COHERE", "applied": "COHERE", "fallbackReason": None}
    assert titles(result)[0] == last
    request = [r for r in fake.requests if r.path == "/v2/rerank"][-1]
    assert request.json is not None and request.json["query"] == "space exploration"


async def test_llm_rerank_sees_the_users_taste(
    tenant_app: httpx.AsyncClient, films: dict[str, dict[str, Any]], fake: FakeProviders
) -> None:
    await feedback(tenant_app, "llm-user", films["Arrival"]["id"], "LIKE")
    fake.chat_responder = lambda req: "[3] > [1] > [2]"
    result = await recommend(tenant_app, "llm-user", first=3, o={"rerank": "LLM"})
    assert result["rerank"]["applied"] == "LLM"
    prompt = " ".join(str(m["content"]) for m in (fake.requests[-1].json or {})["messages"])
    assert "Arrival" in prompt
