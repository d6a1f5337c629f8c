"""A stop ends a sentence backfill at once, dropping the batch being embedded (real PostgreSQL, the
real int8 encoder): so the follow-up job can embed large batches without delaying a worker's exit."""

from __future__ import annotations

import asyncio

from sqlalchemy import text

from api.settings import Settings
from domain.answers.sentence_vectors import backfill
from domain.documents.validation import DocumentInput
from domain.persistence.database import Database
from domain.providers.embedding import LocalEmbedder
from domain.providers.onnx_embedder import OnnxEmbedder
from domain.providers.onnx_export import ensure_exported
from tests.conftest import ingest_docs

LONG = " ".join(f"Sentence {i} of a long text about tides, moons and the shape of coastlines." for i in range(12))


async def _stored(db: Database, tenant: str) -> int:
    async with db.session(tenant) as s:
        rows = await s.execute(text("SELECT count(*) FROM chunk_sentences WHERE tenant_id = :t"), {"t": tenant})
        return int(rows.scalar_one())


async def test_a_stop_drops_the_batch_being_embedded_and_a_rerun_does_it(
    db: Database, embedder: LocalEmbedder, tenant: str
) -> None:
    # given: stored chunks without sentence vectors, and an encoder busy with earlier bulk work
    docs = [DocumentInput(title=f"Tide {i}", text=f"The tide turns at {i}. Moons pull the sea.") for i in range(12)]
    await ingest_docs(db, embedder, tenant, docs)
    encoder = OnnxEmbedder(ensure_exported(Settings().model_cache_dir, "onnx-int8"), threads=1)
    busy = encoder.submit([f"{LONG} {i}" for i in range(2000)])
    stop = asyncio.Event()
    running = asyncio.create_task(backfill(db, encoder, tenant, batch=1024, stop=stop))
    await asyncio.sleep(0.5)  # its sentences are queued behind the bulk work
    # when: the worker is asked to stop
    stop.set()
    done = await asyncio.wait_for(running, timeout=10)
    # then: it returned before the encoder got to its batch, having stored nothing of it
    assert not busy.done()
    assert done == 0 and await _stored(db, tenant) == 0
    # and: a rerun embeds and stores every chunk's sentences
    busy.cancel()
    assert await backfill(db, encoder, tenant, batch=1024) == 12
    assert await _stored(db, tenant) == 12
