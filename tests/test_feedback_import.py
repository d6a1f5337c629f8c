"""importFeedback: historical events as a job, run by the in-process worker of a real app. Events keep
their timestamps, idempotency keys dedupe them, and what is learned ends exactly as if the events had
been submitted one by one, and as `rebuild-profiles` recomputes it from the stored events."""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast

import numpy as np
from sqlalchemy import text

from domain.documents.validation import DocumentInput
from domain.feedback import service as feedback
from domain.feedback.kinds import Kind
from domain.feedback.profiles import LearningConfig
from domain.feedback.rebuild import rebuild_tenant
from domain.persistence.database import Database
from domain.providers.embedding import LocalEmbedder
from domain.tenancy import ensure_tenant
from tests.conftest import graphql_ok, ingest_docs, tenant_client
from tests.test_profiles import TOPICS, _derived

CONFIG = LearningConfig()
START = datetime(2024, 3, 1, 9, 0, tzinfo=UTC)
# (user, document title, kind, rating, days after START): days apart, so decay between events counts.
SCRIPT = [
    ("ann", "Tide pools", "LIKE", None, 0),
    ("ann", "Coral reefs", "WATCHED", None, 3),
    ("bob", "Coral reefs", "LIKE", None, 4),
    ("ann", "Sourdough", "DISLIKE", None, 9),
    ("bob", "Tide pools", "RATING", 5.0, 12),
    ("ann", "Deep sea vents", "RATING", 4.5, 20),
    ("cy", "Sourdough", "LIKE", None, 31),
    ("bob", "Bread crust", "RATING", 1.0, 45),
    ("cy", "Bread crust", "CLICK", None, 60),
]
IMPORT = """
mutation($events: [FeedbackEventInput!]!) {
  importFeedback(input: {events: $events}) { job { id state documentsTotal } errors { code } }
}
"""
JOB = """
query($id: ID!) {
  ingestionJob(id: $id) { state documentsCreated documentsUnchanged documentsFailed errors { index field code } }
}
"""


def _events() -> list[dict[str, Any]]:
    events = [
        {
            "userId": user,
            "kind": kind,
            "documentExternalId": title,
            "rating": rating,
            "occurredAt": (START + timedelta(days=days)).isoformat(),
            "idempotencyKey": f"hist-{i}",
        }
        for i, (user, title, kind, rating, days) in enumerate(SCRIPT)
    ]
    # A retry of the first event (same key, same content) and an event about a document not here.
    return [
        *events,
        dict(events[0]),
        {"userId": "dan", "kind": "LIKE", "documentExternalId": "No such film", "occurredAt": START.isoformat()},
    ]


async def _wait_finished(http: Any, job_id: str, timeout_s: float = 120.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    while True:
        job: dict[str, Any] = (await graphql_ok(http, JOB, {"id": job_id}))["ingestionJob"]
        if job["state"] in ("SUCCEEDED", "FAILED", "CANCELLED"):
            return job
        assert time.monotonic() < deadline, job
        await asyncio.sleep(0.1)


async def test_imported_history_learns_exactly_as_events_sent_one_by_one(
    pg_url: str, tmp_root: Path, embedder: LocalEmbedder, db: Database
) -> None:
    async with tenant_client(pg_url, tmp_root, embedder, load_demo=False, worker_in_process=True) as (http, tenant):
        await ingest_docs(db, embedder, tenant, [DocumentInput(title=t, text=x, external_id=t) for t, x in TOPICS])
        payload = (await graphql_ok(http, IMPORT, {"events": _events()}))["importFeedback"]
        assert payload["errors"] == [] and payload["job"]["documentsTotal"] == len(SCRIPT) + 2
        job = await _wait_finished(http, payload["job"]["id"])
    assert job["state"] == "SUCCEEDED"
    assert (job["documentsCreated"], job["documentsUnchanged"], job["documentsFailed"]) == (len(SCRIPT), 1, 1)
    assert job["errors"] == [{"index": len(SCRIPT) + 1, "field": "events.10.documentExternalId", "code": "NOT_FOUND"}]

    async with db.session(tenant) as session:
        stamps = (
            await session.execute(
                text("SELECT created_at FROM feedback WHERE tenant_id = :t ORDER BY seq"), {"t": tenant}
            )
        ).scalars()
        assert list(stamps) == [START + timedelta(days=d) for *_, d in SCRIPT]  # their own times, in order
    imported_profiles, imported_pairs = await _derived(db, tenant)

    # The same events through submitFeedback's domain path, one by one, in a tenant of its own.
    single = f"t-{uuid.uuid4().hex[:12]}"
    await ensure_tenant(db, single)
    outcome = await ingest_docs(
        db, embedder, single, [DocumentInput(title=t, text=x, external_id=t) for t, x in TOPICS]
    )
    ids = {i.document.title: i.document.id for i in outcome.documents}
    for i, (user, title, kind, rating, days) in enumerate(SCRIPT):
        request = feedback.FeedbackRequest(
            user_id=user,
            kind=cast(Kind, kind),
            document_id=ids[title],
            rating=rating,
            idempotency_key=f"hist-{i}",
            occurred_at=START + timedelta(days=days),
        )
        await feedback.submit(db, single, request, CONFIG)
    single_profiles, single_pairs = await _derived(db, single)

    assert set(imported_profiles) == set(single_profiles) == {"ann", "bob", "cy"}
    for user, imported in imported_profiles.items():
        one_by_one = single_profiles[user]
        assert np.array_equal(imported[0], one_by_one[0]), user  # bit for bit
        # events, positives, negatives, last_event_at (last_seq is a global sequence: not comparable)
        assert imported[1:4] + imported[5:] == one_by_one[1:4] + one_by_one[5:], user
    async with db.session(tenant) as session:
        titles: dict[Any, str] = dict((await session.execute(text("SELECT id, title FROM documents"))).all())
    by_title = {(titles[a], titles[b]): n for (a, b), n in imported_pairs.items()}
    single_titles = {v: k for k, v in ids.items()}
    assert by_title == {(single_titles[a], single_titles[b]): n for (a, b), n in single_pairs.items()}
    assert by_title  # ann and bob share likes: there is co-engagement to compare

    # And rebuild-profiles, replaying the stored events, arrives at the imported state exactly.
    await rebuild_tenant(db, tenant, CONFIG)
    rebuilt_profiles, rebuilt_pairs = await _derived(db, tenant)
    assert rebuilt_pairs == imported_pairs
    for user, imported in imported_profiles.items():
        assert np.array_equal(imported[0], rebuilt_profiles[user][0]) and imported[1:] == rebuilt_profiles[user][1:]


async def test_importing_again_stores_nothing_twice(
    pg_url: str, tmp_root: Path, embedder: LocalEmbedder, db: Database
) -> None:
    async with tenant_client(pg_url, tmp_root, embedder, load_demo=False, worker_in_process=True) as (http, tenant):
        await ingest_docs(db, embedder, tenant, [DocumentInput(title=t, text=x, external_id=t) for t, x in TOPICS])
        events = _events()[: len(SCRIPT)]
        first = (await graphql_ok(http, IMPORT, {"events": events}))["importFeedback"]["job"]["id"]
        await _wait_finished(http, first)
        second = (await graphql_ok(http, IMPORT, {"events": events}))["importFeedback"]["job"]["id"]
        again = await _wait_finished(http, second)
    assert (again["documentsCreated"], again["documentsUnchanged"]) == (0, len(SCRIPT))
    async with db.session(tenant) as session:
        count = (await session.execute(text("SELECT count(*) FROM feedback"))).scalar()
    assert count == len(SCRIPT)
