"""The LISTEN/NOTIFY feed behind ingestionProgress: a committed change of a job wakes its
followers, other jobs' changes do not, and a lost LISTEN connection wakes everyone and is opened
again by the next watch."""

from __future__ import annotations

import asyncio
import uuid

from sqlalchemy import text

from domain.documents.validation import DocumentInput
from domain.jobs import store
from domain.jobs.items import document_items
from domain.jobs.model import JobKind
from domain.jobs.progress import JobProgress
from domain.persistence.database import Database
from domain.tenancy import ensure_tenant


async def _job(db: Database, tenant: str) -> uuid.UUID:
    items = document_items([DocumentInput(title="t", text="a note")], "documents", max_chars=1000)
    job = await store.create(db, tenant, JobKind.DOCUMENTS, items, created_by="test", field_prefix="documents")
    return job.id


async def _bump(db: Database, tenant: str, job_id: uuid.UUID) -> None:
    async with db.session(tenant) as session:
        await session.execute(
            text("UPDATE ingestion_jobs SET items_done = items_done + 1 WHERE id = :i"), {"i": job_id}
        )


async def test_a_committed_change_wakes_its_followers_only(db: Database) -> None:
    tenant = f"t-{uuid.uuid4().hex[:12]}"
    await ensure_tenant(db, tenant)
    mine, other = await _job(db, tenant), await _job(db, tenant)
    feed = JobProgress(db.url, fallback_s=60)
    try:
        async with feed.watch(mine) as watch:
            await _bump(db, tenant, other)
            await asyncio.sleep(0.3)
            assert not watch.event.is_set()  # another job's change
            await _bump(db, tenant, mine)
            await asyncio.wait_for(watch.next(), timeout=30)  # far below the 60 s fallback
            assert feed.notifications == 1
            async with db.session(tenant) as session:  # a change that touches no count: no wake-up
                await session.execute(text("UPDATE ingestion_jobs SET worker = 'w' WHERE id = :i"), {"i": mine})
            await asyncio.sleep(0.3)
            assert not watch.event.is_set()
    finally:
        await feed.aclose()


async def test_a_lost_listen_connection_wakes_followers_and_is_reopened(db: Database) -> None:
    tenant = f"t-{uuid.uuid4().hex[:12]}"
    await ensure_tenant(db, tenant)
    job_id = await _job(db, tenant)
    feed = JobProgress(db.url, fallback_s=60)
    try:
        async with feed.watch(job_id) as watch:
            pid = feed._conn.get_server_pid()
            async with db.engine.connect() as conn:
                await conn.execute(text("SELECT pg_terminate_backend(:p)"), {"p": pid})
            await asyncio.wait_for(watch.next(), timeout=30)  # woken by the loss, not the fallback
        async with feed.watch(job_id) as watch:
            assert feed._conn is not None and feed._conn.get_server_pid() != pid
            await _bump(db, tenant, job_id)
            await asyncio.wait_for(watch.next(), timeout=30)
    finally:
        await feed.aclose()
