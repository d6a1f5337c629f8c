"""submitFeedback through GraphQL: validation that stores nothing, idempotency (also under
concurrency), answer and click targets, and `node(id:)` for events. Runs as a tenant of its own."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import text

from domain.persistence.database import Database
from domain.providers.embedding import LocalEmbedder
from schema.common import to_global_id
from tests.conftest import catalogue, graphql, graphql_ok, tenant_client

SUBMIT = """
mutation($i: FeedbackInput!) {
  submitFeedback(input: $i) {
    feedback { id kind userId document { title } answerId queryId rating createdAt }
    duplicate
    errors { code field message }
  }
}
"""


@pytest.fixture(scope="module")
async def tenant_app(
    pg_url: str, tmp_root: Path, embedder: LocalEmbedder, db: Database
) -> AsyncIterator[tuple[httpx.AsyncClient, str]]:
    async with tenant_client(pg_url, tmp_root, embedder) as pair:
        yield pair


@pytest.fixture(scope="module")
async def films(tenant_app: tuple[httpx.AsyncClient, str]) -> dict[str, str]:
    return {title: node["id"] for title, node in (await catalogue(tenant_app[0])).items()}


async def submit(client: httpx.AsyncClient, **fields: Any) -> dict[str, Any]:
    data = await graphql_ok(client, SUBMIT, {"i": fields})
    payload: dict[str, Any] = data["submitFeedback"]
    return payload


async def stored(db: Database, tenant: str, user: str) -> int:
    async with db.session(tenant) as session:
        sql = "SELECT count(*) FROM feedback WHERE tenant_id = :t AND user_id = :u"
        return int((await session.execute(text(sql), {"t": tenant, "u": user})).scalar_one())


def user() -> str:
    return f"user-{uuid.uuid4().hex[:8]}"


async def test_like_is_stored_and_resolvable_as_a_node(
    tenant_app: tuple[httpx.AsyncClient, str], films: dict[str, str], db: Database
) -> None:
    client, tenant = tenant_app
    u = user()
    payload = await submit(client, userId=u, documentId=films["Primer"], kind="LIKE")
    assert payload["errors"] == [] and payload["duplicate"] is False
    event = payload["feedback"]
    assert (event["kind"], event["userId"], event["document"]["title"], event["rating"]) == ("LIKE", u, "Primer", None)
    assert await stored(db, tenant, u) == 1
    node = await graphql_ok(
        client,
        "query($id: ID!) { node(id: $id) { id ... on Feedback { kind document { title } } } }",
        {"id": event["id"]},
    )
    assert node["node"] == {"id": event["id"], "kind": "LIKE", "document": {"title": "Primer"}}


async def test_user_defaults_to_the_callers_subject(
    tenant_app: tuple[httpx.AsyncClient, str], films: dict[str, str]
) -> None:
    client, _ = tenant_app
    payload = await submit(client, documentId=films["Heat"], kind="VIEW")
    assert payload["feedback"]["userId"] == "anonymous"


INVALID: list[tuple[str, dict[str, Any], str, str]] = [
    ("rating above 5", {"kind": "RATING", "rating": 5.5}, "RATING_OUT_OF_RANGE", "rating"),
    ("negative rating", {"kind": "RATING", "rating": -1.0}, "RATING_OUT_OF_RANGE", "rating"),
    ("RATING without rating", {"kind": "RATING"}, "RATING_REQUIRED", "rating"),
    ("rating on a LIKE", {"kind": "LIKE", "rating": 4.0}, "RATING_NOT_ALLOWED", "rating"),
    ("answer kind on a document", {"kind": "ANSWER_HELPFUL"}, "KIND_TARGET_MISMATCH", "documentId"),
    ("empty user id", {"kind": "LIKE", "userId": "  "}, "INVALID_USER_ID", "userId"),
    ("over-long user id", {"kind": "LIKE", "userId": "u" * 201}, "INVALID_USER_ID", "userId"),
    ("empty idempotency key", {"kind": "LIKE", "idempotencyKey": ""}, "INVALID_IDEMPOTENCY_KEY", "idempotencyKey"),
    ("malformed query id", {"kind": "CLICK", "queryId": "not-a-uuid"}, "INVALID_ID", "queryId"),
    ("unknown query id", {"kind": "CLICK", "queryId": str(uuid.uuid4())}, "NOT_FOUND", "queryId"),
]


@pytest.mark.parametrize(("case", "fields", "code", "field"), INVALID, ids=[c[0] for c in INVALID])
async def test_invalid_feedback_is_a_coded_error_and_stores_nothing(
    tenant_app: tuple[httpx.AsyncClient, str],
    films: dict[str, str],
    db: Database,
    case: str,
    fields: dict[str, Any],
    code: str,
    field: str,
) -> None:
    client, tenant = tenant_app
    u = user()
    payload = await submit(client, **({"userId": u, "documentId": films["Primer"]} | fields))
    assert payload["feedback"] is None
    assert [(e["code"], e["field"]) for e in payload["errors"]] == [(code, field)], case
    assert payload["errors"][0]["message"]
    assert await stored(db, tenant, u) == 0


async def test_targets_must_exist_in_this_tenant_and_fit_the_kind(
    tenant_app: tuple[httpx.AsyncClient, str], app_client: httpx.AsyncClient, films: dict[str, str], db: Database
) -> None:
    client, tenant = tenant_app
    # A document of another tenant (the shared default tenant's Primer) is not found here.
    other = await graphql_ok(app_client, '{ search(query: "Primer", first: 1) { hits { document { id } } } }')
    foreign_id = other["search"]["hits"][0]["document"]["id"]
    assert foreign_id != films["Primer"]
    cases = [
        ({"kind": "LIKE", "documentId": foreign_id}, "NOT_FOUND", "documentId"),
        ({"kind": "LIKE", "documentId": to_global_id("Document", uuid.uuid4())}, "NOT_FOUND", "documentId"),
        ({"kind": "LIKE", "documentId": "bm9wZQ"}, "INVALID_ID", "documentId"),
        ({"kind": "LIKE"}, "KIND_TARGET_MISMATCH", "documentId"),
        ({"kind": "ANSWER_HELPFUL", "answerId": to_global_id("Answer", uuid.uuid4())}, "NOT_FOUND", "answerId"),
        ({"kind": "LIKE", "answerId": to_global_id("Answer", uuid.uuid4())}, "KIND_TARGET_MISMATCH", "answerId"),
        (
            {"kind": "ANSWER_HELPFUL", "answerId": to_global_id("Answer", uuid.uuid4()), "documentId": films["Heat"]},
            "INVALID_FEEDBACK_TARGET",
            "answerId",
        ),
        ({"kind": "ANSWER_HELPFUL", "answerId": films["Heat"]}, "INVALID_ID", "answerId"),
    ]
    u = user()
    for fields, code, field in cases:
        payload = await submit(client, userId=u, **fields)
        assert [(e["code"], e["field"]) for e in payload["errors"]] == [(code, field)], fields
    assert await stored(db, tenant, u) == 0


async def test_unknown_kind_is_rejected_by_the_schema(tenant_app: tuple[httpx.AsyncClient, str]) -> None:
    client, _ = tenant_app
    body = await graphql(client, SUBMIT, {"i": {"kind": "LOVE", "documentId": "x"}})
    assert body["errors"] and "LOVE" in body["errors"][0]["message"]


async def test_answer_feedback_and_clicks_tied_to_a_search(
    tenant_app: tuple[httpx.AsyncClient, str], films: dict[str, str]
) -> None:
    client, _ = tenant_app
    u = user()
    answer = await graphql_ok(client, '{ answer(question: "What is Primer about?") { id } }')
    helpful = await submit(client, userId=u, answerId=answer["answer"]["id"], kind="ANSWER_HELPFUL")
    assert helpful["errors"] == [] and helpful["feedback"]["answerId"] == answer["answer"]["id"]
    assert helpful["feedback"]["document"] is None

    search = await graphql_ok(client, '{ search(query: "time travel", first: 3) { queryId hits { document { id } } } }')
    query_id = search["search"]["queryId"]
    click = await submit(
        client, userId=u, documentId=search["search"]["hits"][0]["document"]["id"], kind="CLICK", queryId=query_id
    )
    assert click["errors"] == [] and click["feedback"]["queryId"] == query_id
    # A recommendations list has a queryId too, and clicks on it are accepted.
    recs = await graphql_ok(client, '{ recommendations(userId: "x", first: 2) { queryId items { document { id } } } }')
    rec_click = await submit(
        client,
        userId=u,
        documentId=recs["recommendations"]["items"][0]["document"]["id"],
        kind="CLICK",
        queryId=recs["recommendations"]["queryId"],
    )
    assert rec_click["errors"] == []


async def test_idempotency_key_returns_the_first_event_and_refuses_a_different_request(
    tenant_app: tuple[httpx.AsyncClient, str], films: dict[str, str], db: Database
) -> None:
    client, tenant = tenant_app
    u, key = user(), f"key-{uuid.uuid4()}"
    first = await submit(client, userId=u, documentId=films["Heat"], kind="RATING", rating=4.5, idempotencyKey=key)
    again = await submit(client, userId=u, documentId=films["Heat"], kind="RATING", rating=4.5, idempotencyKey=key)
    assert first["duplicate"] is False and again["duplicate"] is True
    assert again["feedback"] == first["feedback"]
    changed = await submit(client, userId=u, documentId=films["Heat"], kind="RATING", rating=1.0, idempotencyKey=key)
    assert [(e["code"], e["field"]) for e in changed["errors"]] == [("IDEMPOTENCY_KEY_REUSED", "idempotencyKey")]
    assert await stored(db, tenant, u) == 1


async def test_parallel_duplicates_store_one_event_and_update_the_profile_once(
    tenant_app: tuple[httpx.AsyncClient, str], films: dict[str, str], db: Database
) -> None:
    client, tenant = tenant_app
    u, key = user(), f"key-{uuid.uuid4()}"
    payloads = await asyncio.gather(
        *[submit(client, userId=u, documentId=films["Primer"], kind="LIKE", idempotencyKey=key) for _ in range(12)]
    )
    assert all(p["errors"] == [] for p in payloads)
    assert len({p["feedback"]["id"] for p in payloads}) == 1
    assert sorted(p["duplicate"] for p in payloads) == [False] + [True] * 11
    assert await stored(db, tenant, u) == 1
    async with db.session(tenant) as session:
        events = (
            await session.execute(
                text("SELECT events FROM user_profiles WHERE tenant_id = :t AND user_id = :u"), {"t": tenant, "u": u}
            )
        ).scalar_one()
    assert events == 1


async def test_parallel_events_of_one_user_are_all_applied(
    tenant_app: tuple[httpx.AsyncClient, str], films: dict[str, str], db: Database
) -> None:
    """Different events of one user at once: none is lost from the profile (they serialise)."""
    client, tenant = tenant_app
    u = user()
    titles = ["Primer", "Looper", "Heat", "Arrival", "Casablanca", "Spirited Away"]
    payloads = await asyncio.gather(*[submit(client, userId=u, documentId=films[t], kind="LIKE") for t in titles])
    assert all(p["errors"] == [] for p in payloads)
    async with db.session(tenant) as session:
        row = (
            await session.execute(
                text("SELECT events, positives FROM user_profiles WHERE tenant_id = :t AND user_id = :u"),
                {"t": tenant, "u": u},
            )
        ).one()
        pairs = (
            await session.execute(
                text(
                    "WITH mine AS (SELECT document_id FROM feedback WHERE tenant_id = :t AND user_id = :u) "
                    "SELECT count(*) FROM co_engagement WHERE tenant_id = :t "
                    "AND item_a IN (SELECT * FROM mine) AND item_b IN (SELECT * FROM mine)"
                ),
                {"t": tenant, "u": u},
            )
        ).scalar_one()
    assert tuple(row) == (6, 6)
    # Six films liked by one user make 6 × 5 ordered pairs (other users may add to their counts).
    assert pairs == 30


PERSONAL = """
query($u: ID!, $q: String!) {
  search(query: $q, first: 20, options: {personalize: {userId: $u, weight: 0.5}}) {
    personalized hits { document { id } scores { personal } }
  }
}"""


async def _profile_norm(db: Database, tenant: str, user: str) -> float | None:
    async with db.session(tenant) as s:
        row = (
            await s.execute(
                text("SELECT vector_norm(preference) FROM user_profiles WHERE tenant_id = :t AND user_id = :u"),
                {"t": tenant, "u": user},
            )
        ).first()
    return None if row is None else float(row[0])


async def test_answer_ratings_lift_and_lower_the_cited_documents_more_weakly_than_a_like(
    tenant_app: tuple[httpx.AsyncClient, str], films: dict[str, str], db: Database
) -> None:
    client, tenant = tenant_app
    answer = (
        await graphql_ok(
            client, '{ answer(question: "What is Primer about?") { id citations { title document { id } } } }'
        )
    )["answer"]
    cited = [c["document"]["id"] for c in answer["citations"] if c["document"]]
    assert cited, answer
    # given one user who found the answer helpful, one who did not, and one who liked the documents
    helped, unhelped, liker = user(), user(), user()
    assert (await submit(client, userId=helped, answerId=answer["id"], kind="ANSWER_HELPFUL"))["errors"] == []
    assert (await submit(client, userId=unhelped, answerId=answer["id"], kind="ANSWER_UNHELPFUL"))["errors"] == []
    for doc in cited:
        assert (await submit(client, userId=liker, documentId=doc, kind="LIKE"))["errors"] == []
    # then the helpful rating pulls the user's profile toward the cited documents, the unhelpful one
    # away from them, each more weakly than likes of the same documents
    for who, sign in ((helped, 1), (unhelped, -1)):
        title = answer["citations"][0]["title"]
        result = (await graphql_ok(client, PERSONAL, {"u": who, "q": title}))["search"]
        assert result["personalized"] is True
        personal = {h["document"]["id"]: h["scores"]["personal"] for h in result["hits"]}
        cited_here = [personal[d] for d in cited if d in personal]
        assert cited_here and all(sign * p > 0 for p in cited_here), (who, cited_here)
    helped_norm, liker_norm = await _profile_norm(db, tenant, helped), await _profile_norm(db, tenant, liker)
    assert helped_norm is not None and liker_norm is not None
    assert 0 < helped_norm < liker_norm


async def test_a_query_id_logged_a_moment_later_by_another_worker_is_accepted(
    tenant_app: tuple[httpx.AsyncClient, str], films: dict[str, str], db: Database
) -> None:
    """The query-log row of a search is written just behind its response, by the process that served
    it: feedback reaching another worker first waits for that row instead of calling it unknown."""
    client, tenant = tenant_app
    query_id = uuid.uuid4()

    async def log_the_search_later() -> None:
        await asyncio.sleep(0.3)
        async with db.session(tenant) as session:
            await session.execute(
                text(
                    "INSERT INTO query_log (id, tenant_id, query, mode, options, result_count, document_ids, "
                    "took_ms, created_at) VALUES (:i, :t, 'primer', 'HYBRID', '{}', 1, ARRAY[]::text[], 1.0, now())"
                ),
                {"i": query_id, "t": tenant},
            )

    writer = asyncio.create_task(log_the_search_later())
    u = user()
    payload = await submit(client, userId=u, kind="CLICK", documentId=films["Primer"], queryId=str(query_id))
    await writer
    assert payload["errors"] == []
    assert payload["feedback"]["queryId"] == str(query_id)
    assert await stored(db, tenant, u) == 1
