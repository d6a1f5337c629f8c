"""Ingest under failure and concurrency: nothing half-written, nothing lost, no duplicates."""

from __future__ import annotations

import asyncio
import os
import signal

import numpy as np
import pytest
from sqlalchemy import text

from domain.documents.parse_pool import ParsePool
from domain.documents.validation import DocumentInput
from domain.persistence.database import Database
from domain.providers.embedding import LocalEmbedder, Vectors
from tests.conftest import ingest_docs


class FailingProvider:
    """A provider that dies mid-batch, as a remote embedding API can (it is not our storage)."""

    name = "all-MiniLM-L6-v2"
    dim = 384

    def __init__(self, inner: LocalEmbedder) -> None:
        self.inner = inner

    def count_tokens(self, text_: str) -> int:
        return self.inner.count_tokens(text_)

    async def embed(self, texts: list[str]) -> Vectors:
        raise TimeoutError("embedding provider timed out")

    async def embed_query(self, text_: str) -> Vectors:
        return await self.inner.embed_query(text_)


def docs(prefix: str, n: int, body: str = "Seals nap on a warm rock by the sea.") -> list[DocumentInput]:
    return [
        DocumentInput(title=f"{prefix} {i}", text=f"{body} Item {i}.", external_id=f"{prefix}-{i}") for i in range(n)
    ]


async def counts(db: Database, tenant: str) -> tuple[int, int]:
    async with db.session(tenant) as s:
        d = (await s.execute(text("SELECT count(*) FROM documents WHERE tenant_id = :t"), {"t": tenant})).scalar_one()
        c = (await s.execute(text("SELECT count(*) FROM chunks WHERE tenant_id = :t"), {"t": tenant})).scalar_one()
    return int(d), int(c)


async def test_provider_failure_writes_nothing_and_keeps_old_data(
    db: Database, embedder: LocalEmbedder, tenant: str
) -> None:
    # given stored documents
    await ingest_docs(db, embedder, tenant, docs("keep", 3))
    before = await counts(db, tenant)
    # when a batch that changes them fails in the provider
    with pytest.raises(TimeoutError):
        await ingest_docs(
            db, FailingProvider(embedder), tenant, docs("keep", 3, body="Completely new text.") + docs("new", 2)
        )
    # then the old versions are intact and nothing new was half-written
    assert await counts(db, tenant) == before
    async with db.session(tenant) as s:
        texts = (await s.execute(text("SELECT text FROM documents WHERE tenant_id = :t"), {"t": tenant})).scalars()
        assert all(t.startswith("Seals nap") for t in texts)


async def test_concurrent_reingest_of_one_document_leaves_one_consistent_version(
    db: Database, embedder: LocalEmbedder, tenant: str
) -> None:
    versions = [f"Version {v}: a fox explores a quiet forest at dawn." for v in range(6)]
    batches = [[DocumentInput(title="Fox", text=v, external_id="fox")] for v in versions]
    await asyncio.gather(*(ingest_docs(db, embedder, tenant, b) for b in batches))
    async with db.session(tenant) as s:
        doc = (
            await s.execute(text("SELECT id, text, chunk_count FROM documents WHERE tenant_id = :t"), {"t": tenant})
        ).one()
        result = await s.execute(text("SELECT text FROM chunks WHERE document_id = :d"), {"d": doc.id})
        chunk_texts = list(result.scalars())
    # one document; its chunks are exactly the chunks of the text it holds
    assert doc.text in versions
    assert chunk_texts == [doc.text] and doc.chunk_count == 1


async def test_vectors_are_normalised_and_deterministic(embedder: LocalEmbedder) -> None:
    vectors = await embedder.embed(["a cat sat", "a dog ran"])
    assert vectors.shape == (2, 384)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    again = await embedder.embed(["a cat sat", "a dog ran"])
    assert np.allclose(vectors, again, atol=1e-5)


async def test_the_parse_pool_replaces_a_worker_that_died_while_idle() -> None:
    pool = ParsePool(workers=1)
    try:
        assert await pool.parse("a.txt", b"Herons at dawn.", max_bytes=1000, path="f") == ("a", "Herons at dawn.")
        [idle] = pool._idle
        os.kill(idle.process.pid or 0, signal.SIGKILL)
        idle.process.wait(timeout=10)
        # The next file is read by a new worker, not failed for the dead one.
        assert await pool.parse("b.md", b"# B\nGulls.", max_bytes=1000, path="f") == ("B", "B\nGulls.")
        assert pool.started == 2 and pool.killed == 0
    finally:
        pool.close()
