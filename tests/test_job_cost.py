"""Limits apply to job-creating mutations: their cost follows the document (or event) count and the
text size, is charged to the rate limits, and yet does not hit the per-operation maximum."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import graphql

from domain.providers.embedding import LocalEmbedder
from schema.cost import estimate, ingest_cost
from tests.conftest import graphql as post
from tests.conftest import graphql_ok, tenant_client

INGEST = """
mutation($d: [DocumentInput!]!, $m: IngestMode) {
  ingestDocuments(input: {documents: $d, mode: $m}) { job { id } errors { code } }
}
"""
IMPORT = "mutation($e: [FeedbackEventInput!]!) { importFeedback(input: {events: $e}) { job { id } } }"


def _docs(n: int, chars: int = 10) -> list[dict[str, Any]]:
    return [{"title": f"t{i}", "text": "x" * chars} for i in range(n)]


def _estimate(query: str, variables: dict[str, Any]) -> tuple[int, int]:
    est = estimate(graphql.parse(query), None, variables)
    return est.immediate, est.deferred


def _text_units(docs: list[dict[str, Any]]) -> int:
    return sum(len(d["title"]) + len(d["text"]) for d in docs) // 4096


def test_an_async_ingest_is_charged_by_count_and_size_as_deferred_work() -> None:
    # Immediate: ingestDocuments 1 + job 1 + errors 1 = 3. Deferred: 1 per document + 1 per 4 KiB.
    many = _docs(10_000)
    assert _estimate(INGEST, {"d": many, "m": "ASYNC"}) == (3, 10_000 + _text_units(many))
    big = _docs(100, chars=8192)
    assert _text_units(big) == 200
    assert _estimate(INGEST, {"d": big, "m": "ASYNC"}) == (3, 100 + 200)
    # Without a mode, above the threshold it is a job; at or below, a synchronous ingest, charged
    # by `ingest_cost` (5 each plus 1 per started 1,000 characters: cost follows work).
    assert _estimate(INGEST, {"d": _docs(300)}) == (3, 300 + _text_units(_docs(300)))
    assert _estimate(INGEST, {"d": _docs(256)}) == (3 + ingest_cost(_docs(256)), 0)
    assert ingest_cost(_docs(256)) > 5 * 256
    assert _estimate(INGEST, {"d": _docs(300), "m": "SYNC"}) == (3 + ingest_cost(_docs(300)), 0)


def test_uploads_and_feedback_imports_follow_their_counts() -> None:
    upload = (
        "mutation($f: [Upload!]!, $m: IngestMode) { uploadDocuments(input: {files: $f, mode: $m}) { chunksEmbedded } }"
    )
    assert _estimate(upload, {"f": [None] * 4}) == (50 + 1 + 5 * 4, 0)
    assert _estimate(upload, {"f": [None] * 4, "m": "ASYNC"}) == (50 + 1, 4)
    events = [{"userId": "u", "kind": "LIKE"}] * 700
    assert _estimate(IMPORT, {"e": events}) == (20 + 1 + 1, 700)


async def test_a_large_job_is_admitted_yet_counts_against_the_rate_limit(
    pg_url: str, tmp_root: Path, embedder: LocalEmbedder
) -> None:
    limits = {"rate_per_ip": 1500, "rate_per_user": 1500, "rate_per_api_key": 1500, "tenant_quota": 1500}
    async with tenant_client(pg_url, tmp_root, embedder, load_demo=False, **limits) as (http, _):
        first = await post(http, INGEST, {"d": _docs(1000), "m": "ASYNC"})
        assert "errors" not in first, first.get("errors")  # over RAGQL_MAX_QUERY_COST (2000)? no: deferred
        assert first["extensions"]["cost"]["deferredCost"] == 1000 + _text_units(_docs(1000))
        second = await http.post("/graphql", json={"query": INGEST, "variables": {"d": _docs(1000), "m": "ASYNC"}})
        assert second.status_code == 429
        assert [e["extensions"]["code"] for e in second.json()["errors"]] == ["RATE_LIMITED"]
        # Nobody should spend CPU on this job later in the session.
        job_id = first["data"]["ingestDocuments"]["job"]["id"]
        await graphql_ok(
            http, "mutation($id: ID!) { cancelIngestionJob(input: {id: $id}) { job { state } } }", {"id": job_id}
        )
