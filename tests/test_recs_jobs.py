"""Recommendation training as a queued job, with real `ragql worker` processes on the real database
and queue: a worker SIGKILLed mid-training leaves the job to another, which completes it with
exactly one ready version; a job run twice stores one version; the schedule queues a training only
for tenants with feedback since their last one, and one at a time."""

from __future__ import annotations

import asyncio
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sqlalchemy import text

from domain.feedback import service as feedback
from domain.feedback.profiles import LearningConfig
from domain.jobs import training_job
from domain.persistence.database import Database
from domain.recommendations.training import train_tenant
from tests.jobs_harness import workers

pytestmark = pytest.mark.slow

ITEMS = 2_000
USERS = 400
EVENTS_PER_USER = 100


async def _synthetic_tenant(db: Database, tenant: str, *, users: int = USERS, per_user: int = EVENTS_PER_USER) -> None:
    """Documents and rated events written in bulk: enough signals that the fit takes seconds,
    so a worker can be killed in the middle of it."""
    rng = np.random.default_rng(5)
    ids = [uuid.uuid4() for _ in range(ITEMS)]
    popularity = 1.0 / np.arange(1, ITEMS + 1) ** 0.8
    rows: list[tuple[str, uuid.UUID, float]] = []
    for u in range(users):
        picks = rng.choice(ITEMS, size=per_user, replace=False, p=popularity / popularity.sum())
        rows += [(f"user-{u}", ids[i], float(rng.integers(1, 11)) / 2) for i in picks]
    async with db.session(tenant) as session:
        await session.execute(text("INSERT INTO tenants (id, name) VALUES (:t, :t)"), {"t": tenant})
        await session.execute(
            text(
                """
                INSERT INTO documents (id, tenant_id, title, text, content_hash, chunk_count)
                SELECT id, :t, 'item ' || n, 'text ' || n, md5(id::text), 1
                FROM unnest(CAST(:ids AS uuid[])) WITH ORDINALITY AS x(id, n)
                """
            ),
            {"t": tenant, "ids": ids},
        )
        await session.execute(
            text(
                """
                INSERT INTO feedback (id, tenant_id, user_id, kind, document_id, rating)
                SELECT gen_random_uuid(), :t, u, 'RATING', d, r
                FROM unnest(CAST(:users AS text[]), CAST(:docs AS uuid[]), CAST(:ratings AS float8[])) AS x(u, d, r)
                """
            ),
            {"t": tenant, "users": [r[0] for r in rows], "docs": [r[1] for r in rows], "ratings": [r[2] for r in rows]},
        )


async def _models(db: Database, tenant: str) -> list[dict[str, Any]]:
    async with db.session(tenant) as session:
        rows = await session.execute(
            text("SELECT version, status, job_id, worker FROM recs_models ORDER BY version"),
        )
        return [{"version": v, "status": s, "job": j, "worker": w} for v, s, j, w in rows.all()]


async def _wait_for(db: Database, tenant: str, predicate: Any, timeout_s: float = 300.0) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout_s
    while True:
        models = await _models(db, tenant)
        if predicate(models):
            return models
        assert time.monotonic() < deadline, f"the training did not get there in time: {models}"
        await asyncio.sleep(0.05)


async def _queued(db: Database, tenant: str, job_id: uuid.UUID) -> int:
    async with db.session(tenant) as session:
        rows = await session.execute(text("SELECT count(*) FROM pgqueuer WHERE payload = :b"), {"b": job_id.bytes})
        return int(rows.scalar_one())


def _host() -> str:
    import socket

    return socket.gethostname()


async def test_a_training_killed_mid_fit_completes_on_another_worker_with_one_version(
    pg_url: str, tmp_root: Path, db: Database
) -> None:
    tenant = f"train-kill-{uuid.uuid4().hex[:8]}"
    await _synthetic_tenant(db, tenant)
    with workers(pg_url, tmp_root, "train-a", "train-b") as pair:
        job_id = await training_job.enqueue(db, tenant)
        assert job_id is not None
        assert await training_job.enqueue(db, tenant) is None  # one training per tenant at a time
        running = await _wait_for(db, tenant, lambda ms: any(m["status"] == "training" for m in ms))
        holder = running[0]["worker"]
        victim = next(w for w in pair if holder == f"{_host()}:{w.pid}")
        survivor = next(w for w in pair if w is not victim)
        victim.kill()
        at_kill = await _models(db, tenant)
        assert [m["status"] for m in at_kill] == ["training"], "the training ended before the kill; make it larger"
        done = await _wait_for(db, tenant, lambda ms: any(m["status"] == "ready" for m in ms))
        # The worker tells the queue once the version has committed: the entry goes soon after.
        deadline = time.monotonic() + 60
        for _ in range(600):
            if not await _queued(db, tenant, job_id) or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.1)
    # Exactly one version, ready, made by this job on the surviving worker; no leftover rows.
    assert [(m["version"], m["status"], m["job"]) for m in done] == [(1, "ready", job_id)]
    assert done[0]["worker"] == f"{_host()}:{survivor.pid}"
    async with db.session(tenant) as session:
        factors = (await session.execute(text("SELECT count(*) FROM item_factors"))).scalar()
        items = (await session.execute(text("SELECT items FROM recs_models"))).scalar_one()
    assert factors == items and items > 1_000
    assert await _queued(db, tenant, job_id) == 0  # the queue entry is gone: the job completed


async def test_a_training_job_run_twice_stores_one_version(db: Database) -> None:
    """Its worker died after the commit, before the queue heard: the rerun finds its version."""
    tenant = f"train-twice-{uuid.uuid4().hex[:8]}"
    await _synthetic_tenant(db, tenant, users=30, per_user=20)
    job_id = uuid.uuid4()
    first = await train_tenant(db, tenant, job_id=job_id)
    again = await train_tenant(db, tenant, job_id=job_id)
    assert (first.version, first.reused) == (1, False)
    assert (again.version, again.reused) == (1, True)
    assert [(m["version"], m["status"]) for m in await _models(db, tenant)] == [(1, "ready")]
    other = await train_tenant(db, tenant)  # an on-demand training is a new version
    assert other.version == 2 and not other.reused


async def test_the_schedule_queues_tenants_with_new_feedback_once(db: Database) -> None:
    tenant, idle = (f"train-due-{uuid.uuid4().hex[:8]}" for _ in range(2))
    await _synthetic_tenant(db, tenant, users=30, per_user=20)
    await _synthetic_tenant(db, idle, users=30, per_user=20)
    await train_tenant(db, idle)
    both = [tenant, idle]
    assert await training_job.due(db, both) == [tenant]  # idle has learned everything it has
    assert await training_job.schedule_due(db, both) == [tenant]
    assert await training_job.schedule_due(db, both) == []  # already queued: not twice
    async with db.session(tenant) as session:
        rows = await session.execute(text("SELECT payload FROM pgqueuer WHERE entrypoint = 'ragql.train_recs'"))
        (payload,) = rows.one()
    # What the worker then runs, and after it the tenant is no longer due.
    await training_job.run(db, tenant, uuid.UUID(bytes=bytes(payload)), worker="test")
    async with db.engine.begin() as conn:  # as the worker would, once the job is done
        await conn.execute(text("DELETE FROM pgqueuer WHERE payload = :b"), {"b": payload})
    assert await training_job.due(db, both) == []
    # One new event makes the tenant due again.
    async with db.session(idle) as session:
        doc = (await session.execute(text("SELECT id FROM documents LIMIT 1"))).scalar_one()
    like = feedback.FeedbackRequest(user_id="new", kind="LIKE", document_id=doc)
    await feedback.submit(db, idle, like, LearningConfig())
    assert await training_job.due(db, both) == [idle]
