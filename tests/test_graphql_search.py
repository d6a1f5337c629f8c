"""Search through GraphQL over HTTP, against the demo catalogue loaded at start."""

from __future__ import annotations

import asyncio
import json
import uuid

import httpx
import pytest
from sqlalchemy import text

from domain.persistence.database import Database
from tests.conftest import error_codes, graphql, graphql_ok

SEARCH = """
query Search($q: String!, $first: Int, $options: SearchOptions) {
  search(query: $q, first: $first, options: $options) {
    queryId tookMs totalCandidates fusion alpha
    hits {
      score snippet
      document { id title genre year tags }
      chunk { id text ordinal }
      scores { dense keyword fused denseRank keywordRank }
    }
  }
}"""

FILMS = [json.loads(line) for line in open("domain/demo/films.jsonl")]


async def test_hybrid_search_finds_time_travel_films(app_client: httpx.AsyncClient) -> None:
    result = (await graphql_ok(app_client, SEARCH, {"q": "time travel paradox", "first": 5}))["search"]
    titles = [h["document"]["title"] for h in result["hits"]]
    time_travel = {f["title"] for f in FILMS if "time travel" in f["metadata"]["tags"]}
    assert len(titles) == 5
    assert sum(t in time_travel for t in titles) >= 4, titles
    top = result["hits"][0]
    assert top["scores"]["denseRank"] is not None and top["scores"]["keywordRank"] is not None
    assert top["scores"]["fused"] == pytest.approx(top["score"])
    assert "<mark>" in top["snippet"]
    assert result["fusion"] == "ZSCORE"
    scores = [h["score"] for h in result["hits"]]
    assert scores == sorted(scores, reverse=True)


@pytest.mark.parametrize("mode", ["DENSE", "KEYWORD"])
async def test_single_leg_modes(app_client: httpx.AsyncClient, mode: str) -> None:
    result = (await graphql_ok(app_client, SEARCH, {"q": "heist crew steals", "first": 5, "options": {"mode": mode}}))[
        "search"
    ]
    assert result["hits"]
    for hit in result["hits"]:
        if mode == "DENSE":
            assert hit["scores"]["keyword"] is None and hit["scores"]["dense"] is not None
        else:
            assert hit["scores"]["dense"] is None and hit["scores"]["keyword"] > 0


@pytest.mark.parametrize("fusion", ["RRF", "RELATIVE_SCORE", "ZSCORE"])
async def test_fusion_methods_and_alpha(app_client: httpx.AsyncClient, fusion: str) -> None:
    result = (
        await graphql_ok(
            app_client,
            SEARCH,
            {"q": "haunted house", "first": 3, "options": {"fusion": fusion, "alpha": 0.7}},
        )
    )["search"]
    assert result["fusion"] == fusion and result["alpha"] == pytest.approx(0.7)
    assert len(result["hits"]) == 3


async def test_selective_filter_still_fills_the_page(app_client: httpx.AsyncClient) -> None:
    # given a filter that matches few documents, none of them about the query
    westerns = [f for f in FILMS if f["metadata"]["genre"] == "Western"]
    options = {"filter": {"all": [{"field": "genre", "op": "EQ", "value": "Western"}]}, "candidates": 5}
    # when searching for something else entirely
    result = (await graphql_ok(app_client, SEARCH, {"q": "robots in outer space", "first": 6, "options": options}))[
        "search"
    ]
    # then the page is still full, and only with matches
    assert len(result["hits"]) == min(6, len(westerns))
    assert {h["document"]["genre"] for h in result["hits"]} == {"Western"}


@pytest.mark.parametrize(
    ("flt", "predicate"),
    [
        ({"all": [{"field": "year", "op": "GTE", "value": 2010}]}, lambda m: m["year"] >= 2010),
        ({"all": [{"field": "rating", "op": "LT", "value": 3}]}, lambda m: m["rating"] < 3),
        (
            {"all": [{"field": "tags", "op": "CONTAINS", "value": "time travel"}]},
            lambda m: "time travel" in m["tags"],
        ),
        (
            {
                "any": [
                    {"field": "genre", "op": "EQ", "value": "Horror"},
                    {"field": "genre", "op": "EQ", "value": "Comedy"},
                ]
            },
            lambda m: m["genre"] in ("Horror", "Comedy"),
        ),
        (
            {"all": [{"field": "runtimeMinutes", "op": "GT", "value": 150}]},
            lambda m: m["runtimeMinutes"] > 150,
        ),
        (
            {"all": [{"field": "director", "op": "IN", "value": ["Christopher Nolan", "Rian Johnson"]}]},
            lambda m: m["director"] in ("Christopher Nolan", "Rian Johnson"),
        ),
    ],
)
async def test_filters_match_the_catalogue(app_client: httpx.AsyncClient, flt: dict, predicate: object) -> None:
    expected = {f["title"] for f in FILMS if predicate(f["metadata"])}  # type: ignore[operator]
    assert expected, "the fixture should match something"
    result = (
        await graphql_ok(
            app_client, SEARCH, {"q": "a story", "first": 100, "options": {"filter": flt, "candidates": 200}}
        )
    )["search"]
    got = {h["document"]["title"] for h in result["hits"]}
    assert got <= expected
    assert got == expected or len(got) == 100


async def test_every_search_is_logged(app_client: httpx.AsyncClient, db: Database) -> None:
    q = f"lonely robot {uuid.uuid4().hex[:6]}"
    result = (await graphql_ok(app_client, SEARCH, {"q": q, "first": 3}))["search"]
    row = None
    for _ in range(100):  # the row is written behind the response (domain/retrieval/query_log.py)
        async with db.session("default") as s:
            row = (
                await s.execute(
                    text("SELECT query, mode, result_count, document_ids FROM query_log WHERE id = :i"),
                    {"i": uuid.UUID(result["queryId"])},
                )
            ).one_or_none()
        if row is not None:
            break
        await asyncio.sleep(0.05)
    assert row is not None, "the search's query-log row was never stored"
    assert row.query == q and row.mode == "HYBRID" and row.result_count == len(result["hits"])
    assert len(row.document_ids) == len(result["hits"])


@pytest.mark.parametrize(
    ("variables", "code", "field"),
    [
        ({"q": ""}, "EMPTY_QUERY", "query"),
        ({"q": "   \n\t "}, "EMPTY_QUERY", "query"),
        ({"q": "x" * 10_001}, "QUERY_TOO_LONG", "query"),
        ({"q": "ok", "first": 101}, "FIRST_OUT_OF_RANGE", "first"),
        ({"q": "ok", "first": 0}, "FIRST_OUT_OF_RANGE", "first"),
        ({"q": "ok", "options": {"alpha": 1.5}}, "INVALID_ALPHA", "options.alpha"),
        ({"q": "ok", "options": {"alpha": -0.1}}, "INVALID_ALPHA", "options.alpha"),
        (
            {"q": "ok", "options": {"filter": {"all": [{"field": "rating", "op": "GT", "value": "high"}]}}},
            "INVALID_FILTER_VALUE",
            "options.filter.all.0.value",
        ),
        (
            {"q": "ok", "options": {"filter": {"all": [{"field": "bad field!", "op": "EQ", "value": 1}]}}},
            "INVALID_FILTER_FIELD",
            "options.filter.all.0.field",
        ),
    ],
)
async def test_bad_search_input_is_a_coded_error(
    app_client: httpx.AsyncClient, db: Database, variables: dict, code: str, field: str
) -> None:
    async with db.session("default") as s:
        before = (await s.execute(text("SELECT count(*) FROM query_log"))).scalar_one()
    body = await graphql(app_client, SEARCH, variables)
    assert body["data"] is None
    assert error_codes(body) == [code]
    error = body["errors"][0]
    assert error["extensions"]["field"] == field
    assert "Traceback" not in json.dumps(body) and len(error["message"]) > 10
    async with db.session("default") as s:
        after = (await s.execute(text("SELECT count(*) FROM query_log"))).scalar_one()
    assert after == before  # a rejected search writes nothing


async def test_unknown_filter_operator_is_rejected_by_the_schema(app_client: httpx.AsyncClient) -> None:
    body = await graphql(
        app_client,
        SEARCH,
        {"q": "ok", "options": {"filter": {"all": [{"field": "genre", "op": "LIKE", "value": "x"}]}}},
    )
    assert error_codes(body) == ["GRAPHQL_VALIDATION_FAILED"]
    assert "ConditionOp" in body["errors"][0]["message"]


async def test_malformed_graphql_gets_a_code(app_client: httpx.AsyncClient) -> None:
    body = await graphql(app_client, "{ search(query: ")
    assert error_codes(body) == ["GRAPHQL_VALIDATION_FAILED"]
