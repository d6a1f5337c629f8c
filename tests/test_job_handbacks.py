"""A stopping worker's hand-backs are not attempts (migration 0014, api/handbacks.py): a job that
lived through more graceful stops than its retry limit still gets every retry for a real failure,
and real failures still end it FAILED at the limit. The worker is the real one (pgqueuer's queue on
the test database, the real encoder), run in this process so that it can be stopped at a batch
boundary; the failure is the encoder's, as a provider's outage would be."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable

import pytest
from sqlalchemy import text

from api.worker import Worker, WorkerConfig, WorkerDeps
from domain.documents.service import ChunkingConfig
from domain.documents.validation import DocumentInput
from domain.feedback.profiles import LearningConfig
from domain.jobs import store as job_store
from domain.jobs.items import document_items
from domain.jobs.model import Job, JobKind
from domain.persistence.database import Database
from domain.providers.embedding import LocalEmbedder, Vectors
from domain.tenancy import ensure_tenant
from tests.jobs_harness import word

MAX_ATTEMPTS = 2  # the executor gives a job up after one retry


class FlakyEmbedder:
    """The real encoder, made to fail its next `failures` batches (an outage of the model host)."""

    def __init__(self, inner: LocalEmbedder) -> None:
        self.inner, self.failures = inner, 0
        self.name, self.dim = inner.name, inner.dim

    async def embed(self, texts: list[str]) -> Vectors:
        if self.failures > 0:
            self.failures -= 1
            raise RuntimeError("the encoder is unavailable")
        return await self.inner.embed(texts)

    async def embed_query(self, text: str) -> Vectors:
        return await self.inner.embed_query(text)

    def count_tokens(self, text: str) -> int:
        return self.inner.count_tokens(text)


async def _job(db: Database, tenant: str, n: int) -> Job:
    await ensure_tenant(db, tenant)
    docs = [DocumentInput(title=f"Note {i}", text=f"Observation {i}: {word(i)}.") for i in range(n)]
    items = document_items(docs, "documents", max_chars=100_000)
    return await job_store.create(db, tenant, JobKind.DOCUMENTS, items, created_by="test", field_prefix="documents")


def _worker(db: Database, embedder: FlakyEmbedder, on_progress: Callable[[Job], None] | None = None) -> Worker:
    deps = WorkerDeps(
        db=db,
        embedder=embedder,
        chunking=ChunkingConfig(),
        max_chars=100_000,
        learning=LearningConfig(),
        on_progress=on_progress,
    )
    config = WorkerConfig(concurrency=1, heartbeat_timeout_s=2.0, poll_s=0.2, batch_size=1, max_attempts=MAX_ATTEMPTS)
    return Worker(deps, config)


async def _stopped_after_one_batch(db: Database, embedder: FlakyEmbedder) -> None:
    """One worker that stops gracefully once its first batch is written (a rolling deploy)."""
    worker: Worker

    def progress(job: Job) -> None:
        worker.stop()

    worker = _worker(db, embedder, progress)
    await asyncio.wait_for(worker.run(), timeout=120)


async def _until_finished(db: Database, embedder: FlakyEmbedder, tenant: str, job_id: uuid.UUID) -> Job:
    worker = _worker(db, embedder)
    running = asyncio.create_task(worker.run())
    deadline = time.monotonic() + 120
    try:
        while not (job := await job_store.get(db, tenant, job_id)).finished:
            assert time.monotonic() < deadline, f"job still {job.state} after 120 s"
            assert not running.done(), "the worker exited"
            await asyncio.sleep(0.1)
        return job
    finally:
        worker.stop()
        await asyncio.wait_for(running, timeout=60)


async def _queue_id(db: Database, tenant: str, job_id: uuid.UUID) -> int:
    async with db.session(tenant) as session:
        found = await session.execute(text("SELECT queue_job_id FROM ingestion_jobs WHERE id = :i"), {"i": job_id})
        return int(found.scalar_one())


async def _handbacks(db: Database, queue_job_id: int) -> int | None:
    async with db.engine.connect() as conn:  # the owner, as workers connect
        found = await conn.execute(
            text("SELECT handbacks FROM job_handbacks WHERE queue_job_id = :q"), {"q": queue_job_id}
        )
        return found.scalar()


async def _attempts(db: Database, queue_job_id: int) -> int:
    async with db.engine.connect() as conn:
        found = await conn.execute(text("SELECT attempts FROM pgqueuer WHERE id = :q"), {"q": queue_job_id})
        return int(found.scalar_one())


@pytest.mark.slow
async def test_a_job_handed_back_past_its_retry_limit_still_gets_its_retry(
    db: Database, embedder: LocalEmbedder
) -> None:
    # given: a job stopped gracefully three times, more than its limit of two attempts
    flaky = FlakyEmbedder(embedder)
    tenant = f"t-{uuid.uuid4().hex[:12]}"
    job = await _job(db, tenant, 5)
    queue_id = await _queue_id(db, tenant, job.id)
    for done in range(1, 4):
        await _stopped_after_one_batch(db, flaky)
        current = await job_store.get(db, tenant, job.id)
        assert (current.state.value, current.items_done) == ("QUEUED", done)
    # pgqueuer counted each hand-back as an attempt; the ledger knows they were hand-backs
    assert await _attempts(db, queue_id) == 3
    assert await _handbacks(db, queue_id) == 3
    # when: the encoder then fails once, a real failure
    flaky.failures = 1
    final = await _until_finished(db, flaky, tenant, job.id)
    # then: that failure was retried, and the job completed with every document
    assert flaky.failures == 0
    assert (final.state.value, final.items_done, final.created) == ("SUCCEEDED", 5, 5)
    assert await _handbacks(db, queue_id) is None  # forgotten with its job


@pytest.mark.slow
async def test_a_starting_worker_drops_the_counts_of_queue_entries_that_are_gone(
    db: Database, embedder: LocalEmbedder
) -> None:
    gone = -42  # no pgqueuer entry has a negative id
    async with db.engine.begin() as conn:
        await conn.execute(text("INSERT INTO job_handbacks (queue_job_id, handbacks) VALUES (:q, 2)"), {"q": gone})
    assert await _handbacks(db, gone) == 2
    worker = _worker(db, FlakyEmbedder(embedder))
    worker.stop()  # stops as soon as it is set up
    await asyncio.wait_for(worker.run(), timeout=60)
    assert await _handbacks(db, gone) is None


@pytest.mark.slow
async def test_real_failures_still_end_a_job_failed_at_the_limit(db: Database, embedder: LocalEmbedder) -> None:
    flaky = FlakyEmbedder(embedder)
    flaky.failures = 10**6  # the encoder stays down
    tenant = f"t-{uuid.uuid4().hex[:12]}"
    job = await _job(db, tenant, 2)
    final = await _until_finished(db, flaky, tenant, job.id)
    assert final.state.value == "FAILED"
    assert final.error_message is not None and f"could not run after {MAX_ATTEMPTS} attempts" in final.error_message
