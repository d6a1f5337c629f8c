"""Training that follows feedback, and the admin's `trainRecommendations` / `recommendationModel`,
through the GraphQL API of a production-mode app on the real database and queue: feedback past the
threshold queues a training that the in-process worker runs; the next one waits out the spacing;
the mutation is for admins, acts on the caller's tenant only, and a real `ragql worker` runs what
it queues; no tenant's recommendations ever use another tenant's model."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from domain.jobs import training_job
from domain.persistence.database import Database
from domain.providers.embedding import LocalEmbedder
from domain.tenancy import ensure_tenant
from tests.jobs_harness import workers
from tests.security_harness import Signer, app_of, bearer, codes, gql, production_client

pytestmark = pytest.mark.slow

MIN_EVENTS = 20
SPACING_S = 10.0  # long enough that the next 20 events arrive well inside it, even under load
DOCS = 16

INGEST = """
mutation($docs: [DocumentInput!]!) {
  ingestDocuments(input: {documents: $docs}) { documents { id } errors { code message } }
}
"""
LIKE = """
mutation($u: ID!, $d: ID!, $r: Float!) {
  submitFeedback(input: {userId: $u, documentId: $d, kind: RATING, rating: $r}) { errors { code message } }
}
"""
MODEL = """
{ recommendationModel { version trainedAt events trainedBy eventsSince eventsNeeded training { id state runAfter } } }
"""
TRAIN = "mutation { trainRecommendations { queued training { id state runAfter } errors { code } } }"
RECOMMEND = """
query($u: ID!) { recommendations(userId: $u, first: 5, options: {strategy: COLLABORATIVE}) {
  items { document { id } } sources } }
"""


class Tenant:
    def __init__(self, client: httpx.AsyncClient, signer: Signer, name: str) -> None:
        self.client, self.signer, self.name = client, signer, name
        self.docs: list[str] = []

    async def call(self, query: str, variables: dict[str, Any] | None = None, role: str = "admin") -> dict[str, Any]:
        token = self.signer.hs256(self.name, [role])
        body: dict[str, Any] = (await gql(self.client, query, variables, headers=bearer(token))).json()
        return body

    async def ok(self, query: str, variables: dict[str, Any] | None = None, role: str = "admin") -> dict[str, Any]:
        body = await self.call(query, variables, role)
        assert "errors" not in body, body
        data: dict[str, Any] = body["data"]
        return data

    async def model(self) -> dict[str, Any]:
        status: dict[str, Any] = (await self.ok(MODEL))["recommendationModel"]
        return status

    async def ingest(self) -> None:
        docs = [{"title": f"{self.name} film {i}", "text": f"Film number {i} of {self.name}."} for i in range(DOCS)]
        payload = (await self.ok(INGEST, {"docs": docs}, role="editor"))["ingestDocuments"]
        assert payload["errors"] == []
        self.docs = [d["id"] for d in payload["documents"]]

    async def rate(self, count: int, start: int = 0) -> None:
        """`count` ratings, spread over five users and the catalogue, numbered from `start`."""
        for n in range(start, start + count):
            user, doc = f"u{n % 5}", self.docs[(n * 7 + n // 5) % len(self.docs)]
            body = await self.ok(LIKE, {"u": user, "d": doc, "r": 5.0 if n % 3 else 2.0}, role="reader")
            assert body["submitFeedback"]["errors"] == []

    async def wait_for(self, predicate: Any, timeout_s: float = 90.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout_s
        while True:
            status = await self.model()
            if predicate(status):
                return status
            assert time.monotonic() < deadline, f"{self.name}: not there in time: {status}"
            await asyncio.sleep(0.2)


@asynccontextmanager
async def tenants(
    pg_url: str, tmp_root: Path, embedder: LocalEmbedder, db: Database, count: int, **settings: Any
) -> AsyncIterator[list[Tenant]]:
    signer = Signer(tmp_root)
    names = [f"auto-{uuid.uuid4().hex[:8]}" for _ in range(count)]
    for name in names:
        await ensure_tenant(db, name)
    async with production_client(pg_url, tmp_root, embedder, signer, **settings) as client:
        found = [Tenant(client, signer, n) for n in names]
        for t in found:
            await t.ingest()
        yield found


def _at(value: str) -> float:
    return datetime.fromisoformat(value).timestamp()


async def test_feedback_past_the_threshold_trains_and_the_next_training_waits_out_the_spacing(
    pg_url: str, tmp_root: Path, embedder: LocalEmbedder, db: Database
) -> None:
    settings = {
        "worker_in_process": True,
        "job_poll_s": 0.5,
        "recs_autotrain_min_events": MIN_EVENTS,
        "recs_autotrain_min_growth": 1.5,
        "recs_autotrain_spacing_s": SPACING_S,
    }
    async with tenants(pg_url, tmp_root, embedder, db, 1, **settings) as (a,):
        trigger = app_of(a.client).state.services.training
        # given: one event short of the threshold
        await a.rate(MIN_EVENTS - 1)
        await trigger.idle()
        await asyncio.sleep(1.0)
        before = await a.model()
        assert (before["version"], before["training"]) == (None, None)
        assert (before["eventsSince"], before["eventsNeeded"]) == (MIN_EVENTS - 1, MIN_EVENTS)
        # Below the threshold the trigger never looked: submitFeedback cost no statement for it.
        assert trigger.checks == 0
        # when: the event that reaches it
        await a.rate(1, start=MIN_EVENTS - 1)
        # then: a training is queued, and the in-process worker runs it
        first = await a.wait_for(lambda m: m["version"] is not None)
        assert first["trainedBy"] is not None  # made by a queued job, not in place
        assert first["events"] == MIN_EVENTS and first["eventsSince"] == 0
        assert first["eventsNeeded"] == 30  # max(20, 1.5 × 20): the growth share now rules
        assert trigger.checks == 1
        # when: enough again right after it, well inside the spacing
        await a.rate(30, start=MIN_EVENTS)
        waiting = await a.wait_for(lambda m: m["training"] is not None or m["version"] != first["version"])
        # then: it is queued to start once the spacing has passed, not before
        assert waiting["training"]["state"] == "QUEUED"
        assert _at(waiting["training"]["runAfter"]) >= _at(first["trainedAt"]) + SPACING_S - 0.05
        second = await a.wait_for(lambda m: m["version"] not in (None, first["version"]))
        assert _at(second["trainedAt"]) - _at(first["trainedAt"]) >= SPACING_S
        assert second["events"] == MIN_EVENTS + 30
        assert second["trainedBy"] not in (None, first["trainedBy"])


async def test_train_recommendations_is_for_admins_of_their_own_tenant_and_a_worker_runs_it(
    pg_url: str, tmp_root: Path, embedder: LocalEmbedder, db: Database
) -> None:
    # No in-process worker: what the mutation queues stays queued until a real worker runs it.
    async with tenants(pg_url, tmp_root, embedder, db, 2, recs_autotrain_min_events=0) as (a, b):
        await a.rate(30)
        await b.rate(30)
        for role in ("reader", "editor"):
            for query in (TRAIN, MODEL):
                body = await a.call(query, role=role)
                assert codes(body) == ["FORBIDDEN"], body
        assert (await a.model())["training"] is None
        # A training the trigger queued to wait out its spacing is brought forward on demand.
        delayed = await training_job.enqueue(db, a.name, delay_s=600)
        assert delayed is not None
        asked = (await a.ok(TRAIN))["trainRecommendations"]
        assert asked["queued"] is False  # one per tenant: the one already queued is returned
        assert asked["training"]["state"] == "QUEUED"
        assert _at(asked["training"]["runAfter"]) <= time.time() + 1
        a_model = await a.model()
        assert a_model["training"]["id"] == asked["training"]["id"]
        assert a_model["eventsNeeded"] is None  # the trigger is off here
        # Tenant-scoped: the other tenant has nothing in flight, and its own ask is its own job.
        assert (await b.model())["training"] is None
        b_asked = (await b.ok(TRAIN))["trainRecommendations"]
        assert b_asked["queued"] is True and b_asked["training"]["id"] != asked["training"]["id"]
        with workers(pg_url, tmp_root, "autotrain"):
            a_done = await a.wait_for(lambda m: m["version"] is not None and m["training"] is None)
            b_done = await b.wait_for(lambda m: m["version"] is not None and m["training"] is None)
        assert a_done["trainedBy"] == asked["training"]["id"]
        assert b_done["trainedBy"] == b_asked["training"]["id"]
        assert a_done["events"] == b_done["events"] == 30


async def test_no_tenant_is_served_another_tenants_model(
    pg_url: str, tmp_root: Path, embedder: LocalEmbedder, db: Database
) -> None:
    """Same user ids, same history shape, same version number in one process: each tenant's
    lists come from its own model and catalogue; a tenant with no model gets no MODEL source."""
    async with tenants(pg_url, tmp_root, embedder, db, 3, recs_autotrain_min_events=0) as (a, b, c):
        for t in (a, b, c):
            await t.rate(40)
        for t in (a, b):
            await training_job.run(db, t.name, uuid.uuid4(), worker="test")
            assert (await t.model())["version"] == 1
        assert (await c.model())["version"] is None
        for t in (a, b, c):
            for user in ("u0", "u1", "u2"):
                result = (await t.ok(RECOMMEND, {"u": user}, role="reader"))["recommendations"]
                ids = {item["document"]["id"] for item in result["items"]}
                assert ids <= set(t.docs), (t.name, user, result)
                assert ids or t is c  # a tenant without a model may have nothing collaborative yet
                assert ("MODEL" in result["sources"]) is (t is not c), (t.name, result["sources"])


IMPORT = """
mutation($events: [FeedbackEventInput!]!) {
  importFeedback(input: {events: $events}) { job { id } errors { code } }
}
"""


async def test_an_import_past_the_threshold_trains_too(
    pg_url: str, tmp_root: Path, embedder: LocalEmbedder, db: Database
) -> None:
    """The import job's events count as its batches are written (by the worker, not a request)."""
    settings = {"worker_in_process": True, "job_poll_s": 0.5, "recs_autotrain_min_events": MIN_EVENTS}
    async with tenants(pg_url, tmp_root, embedder, db, 1, **settings) as (a,):
        events = [
            {"userId": f"u{n % 5}", "documentId": a.docs[(n * 3) % DOCS], "kind": "RATING", "rating": 4.5}
            for n in range(MIN_EVENTS + 5)
        ]
        payload = (await a.ok(IMPORT, {"events": events}))["importFeedback"]
        assert payload["errors"] == []
        done = await a.wait_for(lambda m: m["version"] is not None)
        assert done["trainedBy"] is not None and done["events"] >= MIN_EVENTS


async def test_the_events_left_after_a_burst_are_trained_once_feedback_goes_quiet(
    pg_url: str, tmp_root: Path, embedder: LocalEmbedder, db: Database
) -> None:
    """Growth 2.0: after a model of 10 events the rule wants 20 more; 12 arrive and then nothing.
    Once the tenant has been quiet for the spacing, those 12 (≥ min_events) are trained anyway."""
    settings = {
        "worker_in_process": True,
        "job_poll_s": 0.5,
        "recs_autotrain_min_events": 10,
        "recs_autotrain_min_growth": 2.0,
        "recs_autotrain_spacing_s": 1.0,  # the quiet period is then MIN_QUIET_S (5 s)
    }
    async with tenants(pg_url, tmp_root, embedder, db, 1, **settings) as (a,):
        await a.rate(10)
        first = await a.wait_for(lambda m: m["version"] is not None)
        assert first["events"] == 10 and first["eventsNeeded"] == 20
        await a.rate(12, start=10)
        last_event = time.time()
        second = await a.wait_for(lambda m: m["version"] not in (None, first["version"]), timeout_s=60)
        assert second["events"] == 22 and second["trainedBy"] is not None
        assert _at(second["trainedAt"]) >= last_event + 5.0  # not before the quiet period
