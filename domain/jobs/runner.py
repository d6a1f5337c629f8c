"""Running one job: its pending items in small batches until none is left, it is cancelled, or the
worker is asked to stop.

Each batch is prepared outside any transaction (for documents: chunked, and queued on the
encoder), then written as its items become ready (for documents: as each one's vectors arrive),
the items ready at that moment in one transaction. Batches overlap: the
next batch is read and prepared while this one is embedded and written, so the encoder always
has work queued and never waits for chunking or for the database. The write first locks the job
row and the batch's item rows:
- a batch committed before a cancel stays; one that meets a cancelled job is rolled back, so
  nothing is stored after `cancelIngestionJob` returns;
- an item is written at most once even if two workers ever hold the same job (the second finds
  its items no longer pending and skips them);
- the item outcomes and the job's counters commit with the documents, so a job resumed after a
  crash starts at the first item that was not stored, and counts only ever grow."""

from __future__ import annotations

import asyncio
import inspect
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from domain.jobs import sentences_job
from domain.jobs.model import ItemError, Job, JobKind, JobState
from domain.jobs.store import read_in
from domain.persistence.database import Database

DEFAULT_BATCH = 16


@dataclass(frozen=True)
class PendingItem:
    ordinal: int
    payload: dict[str, Any]


@dataclass(frozen=True)
class ItemResult:
    ordinal: int
    outcome: str  # CREATED, UPDATED, UNCHANGED or FAILED
    document_id: uuid.UUID | None = None
    chunks: int = 0
    error: ItemError | None = None


class BatchProcessor(Protocol):
    """One kind of job's work. `prepare` runs outside a transaction and may leave slow work
    (embedding) running; `settle` waits until some of it is done (at least one more item can be
    written, or all of it), or, once `stop` is set, stops waiting and drops what is not done;
    `unsettled` says whether any of it is still running; `discard` drops a prepared batch that will
    not be written. `write` runs inside a transaction and returns one result per item it stored or
    failed; an item without a result (its work not done yet) stays pending for the next write."""

    async def prepare(self, job: Job, prefix: str, items: Sequence[PendingItem]) -> Any: ...

    async def settle(self, prepared: Any, stop: asyncio.Event) -> None: ...

    def unsettled(self, prepared: Any) -> bool: ...

    def discard(self, prepared: Any) -> None: ...

    async def write(
        self, session: AsyncSession, job: Job, prepared: Any, pending: set[int]
    ) -> tuple[list[ItemResult], int]: ...


class Interrupted(Exception):
    """The worker was asked to stop; what was ready is written and the job goes back to the queue."""


# May return an awaitable (the search-cache version bump goes to Redis).
Progress = Callable[[Job], Awaitable[None] | None]


async def _lock_job(session: AsyncSession, job_id: uuid.UUID) -> Job:
    return await read_in(session, job_id, lock=True)


async def _start(db: Database, tenant_id: str, job_id: uuid.UUID, worker: str) -> Job:
    async with db.session(tenant_id) as session:
        job = await _lock_job(session, job_id)
        if job.finished:
            return job
        await session.execute(
            text(
                "UPDATE ingestion_jobs SET state = 'RUNNING', started_at = coalesce(started_at, clock_timestamp()), "
                "worker = :w, updated_at = clock_timestamp() WHERE id = :id"
            ),
            {"id": job_id, "w": worker},
        )
        return await read_in(session, job_id)


async def _pending(
    db: Database, tenant_id: str, job_id: uuid.UUID, limit: int, after: int
) -> tuple[Job, str, list[PendingItem]]:
    async with db.session(tenant_id) as session:
        job = await read_in(session, job_id)
        prefix = (
            await session.execute(text("SELECT field_prefix FROM ingestion_jobs WHERE id = :id"), {"id": job_id})
        ).scalar_one()
        rows = await session.execute(
            text(
                "SELECT ordinal, input FROM ingestion_job_items WHERE job_id = :id AND outcome IS NULL "
                "AND ordinal > :after ORDER BY ordinal LIMIT :n"
            ),
            {"id": job_id, "n": limit, "after": after},
        )
        items = [PendingItem(int(o), dict(p)) for o, p in rows.all()]
    return job, str(prefix), items


async def _finish(db: Database, tenant_id: str, job_id: uuid.UUID) -> Job:
    async with db.session(tenant_id) as session:
        job = await _lock_job(session, job_id)
        if job.state is JobState.RUNNING:
            # Every item failed: the job failed. Some stored: it succeeded, with per-item errors.
            state = JobState.FAILED if job.failed >= job.items_total else JobState.SUCCEEDED
            await session.execute(
                text(
                    "UPDATE ingestion_jobs SET state = :s, finished_at = clock_timestamp(), "
                    "updated_at = clock_timestamp() WHERE id = :id"
                ),
                {"s": state.value, "id": job_id},
            )
            if job.kind is JobKind.DOCUMENTS and job.chunks_embedded > 0:
                # In this transaction: a job that ends with chunks stored has its sentences queued.
                await sentences_job.enqueue(session, tenant_id, job_id)
        return await read_in(session, job_id)


async def requeued(db: Database, tenant_id: str, job_id: uuid.UUID) -> None:
    """A worker that stops gracefully hands the job back: it is QUEUED again, its counts kept."""
    async with db.session(tenant_id) as session:
        await session.execute(
            text(
                "UPDATE ingestion_jobs SET state = 'QUEUED', updated_at = clock_timestamp() "
                "WHERE id = :id AND state = 'RUNNING'"
            ),
            {"id": job_id},
        )


async def fail(db: Database, tenant_id: str, job_id: uuid.UUID, code: str, message: str) -> None:
    """The job itself could not run (after the queue's retries): it ends FAILED, saying why."""
    async with db.session(tenant_id) as session:
        await session.execute(
            text(
                "UPDATE ingestion_jobs SET state = 'FAILED', error_code = :c, error_message = :m, "
                "finished_at = clock_timestamp(), updated_at = clock_timestamp() "
                "WHERE id = :id AND state IN ('QUEUED', 'RUNNING')"
            ),
            {"c": code, "m": message, "id": job_id},
        )


_COUNTERS = {"CREATED": "created", "UPDATED": "updated", "UNCHANGED": "unchanged", "FAILED": "failed"}


async def _write_batch(
    db: Database,
    tenant_id: str,
    job_id: uuid.UUID,
    processor: BatchProcessor,
    prepared: Any,
    ordinals: list[int],
) -> Job | None:
    """None when the job was cancelled meanwhile (the batch is discarded)."""
    async with db.session(tenant_id) as session:
        job = await _lock_job(session, job_id)
        if job.state is not JobState.RUNNING:
            return None
        rows = await session.execute(
            text(
                "SELECT ordinal FROM ingestion_job_items WHERE job_id = :id AND ordinal = ANY(:o) "
                "AND outcome IS NULL FOR UPDATE"
            ),
            {"id": job_id, "o": ordinals},
        )
        pending = {int(r[0]) for r in rows.all()}
        # Called even with nothing pending: the processor learns that its items are all dealt with.
        results, chunks = await processor.write(session, job, prepared, pending)
        if not results:
            return await read_in(session, job_id)  # stopped before any of them was ready
        await session.execute(
            text(
                "UPDATE ingestion_job_items SET outcome = :outcome, document_id = :d, chunks = :c, input = NULL, "
                "error_field = :ef, error_code = :ec, error_message = :em WHERE job_id = :id AND ordinal = :o"
            ),
            [
                {
                    "outcome": r.outcome,
                    "d": r.document_id,
                    "c": r.chunks,
                    "ef": r.error.field if r.error else None,
                    "ec": r.error.code if r.error else None,
                    "em": r.error.message if r.error else None,
                    "id": job_id,
                    "o": r.ordinal,
                }
                for r in results
            ],
        )
        counts = {name: 0 for name in _COUNTERS.values()}
        for r in results:
            counts[_COUNTERS[r.outcome]] += 1
        await session.execute(
            text(
                """
                UPDATE ingestion_jobs SET items_done = items_done + :n, chunks_embedded = chunks_embedded + :k,
                    created_count = created_count + :created, updated_count = updated_count + :updated,
                    unchanged_count = unchanged_count + :unchanged, failed_count = failed_count + :failed,
                    updated_at = clock_timestamp()
                WHERE id = :id
                """
            ),
            {"n": len(results), "k": chunks, "id": job_id, **counts},
        )
        return await read_in(session, job_id)


@dataclass
class _Batch:
    job: Job
    items: list[PendingItem]
    prepared: Any = None


async def _next_batch(
    db: Database, tenant_id: str, job_id: uuid.UUID, processor: BatchProcessor, batch_size: int, after: int
) -> _Batch:
    job, prefix, items = await _pending(db, tenant_id, job_id, batch_size, after)
    batch = _Batch(job, items)
    if items and job.state is JobState.RUNNING:
        batch.prepared = await processor.prepare(job, prefix, items)
    return batch


async def run_job(
    db: Database,
    tenant_id: str,
    job_id: uuid.UUID,
    processor: BatchProcessor,
    *,
    batch_size: int = DEFAULT_BATCH,
    stop: asyncio.Event | None = None,
    on_progress: Progress | None = None,
    worker: str = "",
) -> Job:
    """Process the job to its end and return it; raises Interrupted once `stop` is set, after
    writing what was ready (for documents: every document already fully embedded)."""
    stop = stop or asyncio.Event()
    job = await _start(db, tenant_id, job_id, worker)
    if job.finished:
        return job
    ahead: asyncio.Task[_Batch] | None = asyncio.create_task(
        _next_batch(db, tenant_id, job_id, processor, batch_size, -1)
    )
    try:
        while ahead is not None:
            if stop.is_set():
                break
            batch = await ahead
            ahead = None
            if batch.job.state is not JobState.RUNNING:
                return await _read_job(db, tenant_id, job_id)  # cancelled (or ended elsewhere)
            if not batch.items:
                return await _finish(db, tenant_id, job_id)
            if not stop.is_set():
                # The next batch is read, chunked and queued on the encoder while this one is written.
                after = batch.items[-1].ordinal
                ahead = asyncio.create_task(_next_batch(db, tenant_id, job_id, processor, batch_size, after))
            # What is ready is written, in one transaction, while the rest is embedded: a job's
            # counts move per document (as documents finish), and a slow write only groups more
            # documents into the next one, so the encoder never waits for it.
            while True:
                await processor.settle(batch.prepared, stop)
                written = await _write_batch(
                    db, tenant_id, job_id, processor, batch.prepared, [i.ordinal for i in batch.items]
                )
                if written is None:
                    return await _read_job(db, tenant_id, job_id)
                if on_progress:
                    outcome = on_progress(written)
                    if inspect.isawaitable(outcome):
                        await outcome
                if not processor.unsettled(batch.prepared):
                    break
    finally:
        if ahead is not None:
            await _drop(ahead, processor)
    await requeued(db, tenant_id, job_id)
    raise Interrupted(str(job_id))


async def _drop(ahead: asyncio.Task[_Batch], processor: BatchProcessor) -> None:
    """The prepared batch that will not be written: its embedding is cancelled."""
    if not ahead.done():
        ahead.cancel()
    try:
        batch = await ahead
    except (asyncio.CancelledError, Exception):  # it is being thrown away
        return
    if batch.prepared is not None:
        processor.discard(batch.prepared)


async def _read_job(db: Database, tenant_id: str, job_id: uuid.UUID) -> Job:
    async with db.session(tenant_id) as session:
        return await read_in(session, job_id)
