"""A job's counts move by the document, not by the batch: the runner writes the documents whose
vectors are ready while the encoder goes on with the rest of the batch (domain/jobs/runner.py)."""

from __future__ import annotations

import concurrent.futures
import uuid

import numpy as np

from domain.documents.service import ChunkingConfig
from domain.documents.validation import DocumentInput
from domain.jobs import store
from domain.jobs.documents_job import DocumentBatches
from domain.jobs.items import document_items
from domain.jobs.model import Job, JobKind
from domain.jobs.runner import run_job
from domain.persistence.database import Database
from domain.providers.embedding import LocalEmbedder, Vectors
from domain.tenancy import ensure_tenant
from tests.jobs_harness import word


class OneRequestAtATime:
    """The real model behind a request queue, as the ONNX encoder has one: each request (one
    document's chunks) is answered on its own, in order, by one thread."""

    def __init__(self, inner: LocalEmbedder) -> None:
        self.inner, self.name, self.dim = inner, inner.name, inner.dim
        self._pool = concurrent.futures.ThreadPoolExecutor(1)
        self._order = 0

    def submit(
        self, texts: list[str], *, order: int | None = None, background: bool = False
    ) -> concurrent.futures.Future[Vectors]:
        return self._pool.submit(self.inner._encode, texts)

    def next_order(self) -> int:
        self._order += 1
        return self._order

    async def embed(self, texts: list[str]) -> Vectors:
        return self.inner._encode(texts) if texts else np.zeros((0, self.dim), dtype=np.float32)

    async def embed_query(self, text: str) -> Vectors:
        return await self.inner.embed_query(text)

    def count_tokens(self, text: str) -> int:
        return self.inner.count_tokens(text)


async def test_documents_done_advances_within_a_batch(db: Database, embedder: LocalEmbedder) -> None:
    # given: a job of 48 documents, written in batches of 16
    tenant = f"t-{uuid.uuid4().hex[:12]}"
    await ensure_tenant(db, tenant)
    docs = [
        DocumentInput(title=f"Note {i}", text=f"Observation {i}: {word(i)}. " * 20, external_id=f"n-{i}")
        for i in range(48)
    ]
    job = await store.create(
        db,
        tenant,
        JobKind.DOCUMENTS,
        document_items(docs, "documents", max_chars=100_000),
        created_by="test",
        field_prefix="documents",
    )
    seen: list[int] = []

    def progress(current: Job) -> None:
        seen.append(current.items_done)

    # when: it runs with an encoder that answers one document at a time
    batches = DocumentBatches(db, OneRequestAtATime(embedder), ChunkingConfig(), 100_000)
    done = await run_job(db, tenant, job.id, batches, batch_size=16, on_progress=progress)
    # then: every document is stored, and the count went up in more, smaller steps than the batches
    assert done.state.value == "SUCCEEDED" and done.created == 48
    steps = [b - a for a, b in zip([0, *seen], seen, strict=False)]
    assert seen == sorted(seen) and seen[-1] == 48
    assert len([s for s in steps if s > 0]) > 48 // 16, seen
    assert max(steps) < 16, seen
