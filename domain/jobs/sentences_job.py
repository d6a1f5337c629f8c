"""Sentence vectors of an ingestion job's chunks, as a follow-up job of its own.

Answers quote sentences, and embed every chunk's sentences unless `chunk_sentences` (migration
0009) holds them. An ingestion job that ends with chunks embedded queues this job **in the
transaction that finishes it** (runner._finish), so an accepted ingestion never ends without its
sentence vectors being on the way: if the worker dies, the queue entry is there for the next one.

It is a job of its own, not part of the ingestion's batches, so the ingestion's chunks/s is not
spent on it: it is queued at a lower pgqueuer priority than ingestion jobs, and its texts go to
the encoder as background work (served after every ingest and query batch). A pgqueuer entry,
like a recommendation training (no ingestion_jobs row): the tenant in its headers, the ingestion
job's id as its payload. Its body is `sentence_vectors.backfill` over that job's documents, which
skips chunks that already have rows: resumable and idempotent, whoever runs it and however often."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

from pgqueuer.queries import Queries
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from domain.answers import sentence_vectors
from domain.jobs.model import SENTENCES_ENTRYPOINT
from domain.jobs.store import TENANT_HEADER
from domain.persistence.database import Database
from domain.providers.embedding import Embedder

# pgqueuer dequeues higher priorities first; ingestion jobs have 0.
PRIORITY = -10
# Chunks per encoder request. The encoder length-sorts the texts of one background request only,
# so a larger pool pads less: on SciFact's sentences 9.3% of the padded slots were padding at 256
# chunks, 2.8% at 1,024 (a simulation of the encoder's packing; 1,890,169 -> 1,763,080 slots).
# A stop drops the request in flight (backfill), so its size does not delay a worker's exit.
BATCH = 1024


def dedupe_key(job_id: uuid.UUID) -> str:
    return f"sentences:{job_id}"


async def enqueue(session: AsyncSession, tenant_id: str, ingestion_job_id: uuid.UUID) -> None:
    """In the caller's transaction; at most one per ingestion job queued or running."""
    connection = await session.connection()
    raw: Any = await connection.get_raw_connection()
    queries = Queries.from_asyncpg_connection(raw.driver_connection)
    await queries.enqueue(
        SENTENCES_ENTRYPOINT,
        ingestion_job_id.bytes,
        priority=PRIORITY,
        dedupe_key=dedupe_key(ingestion_job_id),
        headers={TENANT_HEADER: tenant_id},
        on_conflict="skip",
    )


async def run(
    db: Database, embedder: Embedder, tenant_id: str, ingestion_job_id: uuid.UUID, stop: asyncio.Event
) -> int:
    """Embed and store the sentences of the job's chunks that have none; returns how many chunks.
    Stops between batches once `stop` is set (what is stored stays; a rerun does the rest)."""
    return await sentence_vectors.backfill(db, embedder, tenant_id, batch=BATCH, job_id=ingestion_job_id, stop=stop)


async def pending(db: Database, tenant_id: str, ingestion_job_ids: list[uuid.UUID]) -> int:
    """How many of these jobs' follow-ups are still queued or running (pgqueuer keeps an entry
    until its job is done)."""
    async with db.session(tenant_id) as session:
        count = await session.execute(
            text("SELECT count(*) FROM pgqueuer WHERE entrypoint = :e AND payload = ANY(:p)"),
            {"e": SENTENCES_ENTRYPOINT, "p": [j.bytes for j in ingestion_job_ids]},
        )
        return int(count.scalar_one())
