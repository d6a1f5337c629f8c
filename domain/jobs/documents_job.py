"""Document ingestion as a job, in a worker: the same normalisation, chunking, embedding and
idempotent write (domain.documents.service) as a synchronous ingest, one batch at a time."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from domain.documents import service as documents
from domain.documents.chunking import ChunkText, chunk_document
from domain.documents.service import ChunkingConfig
from domain.documents.validation import NormalizedDocument, normalize
from domain.errors import DomainError
from domain.jobs.items import document_input, item_error, with_index
from domain.jobs.model import ItemError, Job
from domain.jobs.runner import ItemResult, PendingItem
from domain.persistence.database import Database
from domain.providers.embedding import Embedder


@dataclass
class _Prepared:
    docs: list[tuple[int, NormalizedDocument]]
    failed: list[ItemResult]
    # ordinal -> (chunks, vectors) for the documents that need embedding; others are unchanged.
    embedded: dict[int, tuple[list[ChunkText], Any]]
    prefix: str


@dataclass(frozen=True)
class DocumentBatches:
    """The BatchProcessor of document jobs."""

    db: Database
    embedder: Embedder
    chunking: ChunkingConfig
    max_chars: int

    async def prepare(self, job: Job, prefix: str, items: Sequence[PendingItem]) -> _Prepared:
        docs: list[tuple[int, NormalizedDocument]] = []
        failed: list[ItemResult] = []
        for item in items:
            path = f"{prefix}.{item.ordinal}"
            try:
                docs.append((item.ordinal, normalize(document_input(item.payload), path, max_chars=self.max_chars)))
            except DomainError as exc:  # validated at creation; a changed limit can still refuse it
                failed.append(ItemResult(item.ordinal, "FAILED", error=with_index(item_error(exc, path), item.ordinal)))
        async with self.db.session(job.tenant_id) as session:
            known = await documents._existing_hashes(
                session, job.tenant_id, [d.external_id for _, d in docs if d.external_id]
            )
        to_embed: list[tuple[int, list[ChunkText]]] = []
        for ordinal, doc in docs:
            if doc.external_id is None or known.get(doc.external_id) != doc.content_hash:
                chunks = chunk_document(
                    doc.title,
                    doc.text,
                    max_tokens=self.chunking.max_tokens,
                    overlap_tokens=self.chunking.overlap_tokens,
                    count=self.embedder.count_tokens,
                )
                to_embed.append((ordinal, chunks))
        flat = [c.search_text for _, chunks in to_embed for c in chunks]
        vectors = await self.embedder.embed(flat)
        embedded: dict[int, tuple[list[ChunkText], Any]] = {}
        offset = 0
        for ordinal, chunks in to_embed:
            embedded[ordinal] = (chunks, vectors[offset : offset + len(chunks)])
            offset += len(chunks)
        return _Prepared(docs, failed, embedded, prefix)

    async def write(
        self, session: AsyncSession, job: Job, prepared: _Prepared, pending: set[int]
    ) -> tuple[list[ItemResult], int]:
        results = [r for r in prepared.failed if r.ordinal in pending]
        chunks_written = 0
        for ordinal, doc in prepared.docs:
            if ordinal not in pending:
                continue
            chunks, vectors = prepared.embedded.get(ordinal, (None, None))
            try:
                doc_id, status = await documents._write_one(session, job.tenant_id, doc, chunks, vectors)
            except DomainError as exc:
                path = f"{prepared.prefix}.{ordinal}"
                field = f"{path}.{exc.field}" if exc.field else path
                results.append(
                    ItemResult(ordinal, "FAILED", error=ItemError(ordinal, field, str(exc.code), exc.message))
                )
                continue
            # What the model embedded for this document (none when its text was already stored).
            embedded = len(chunks) if chunks is not None else 0
            chunks_written += embedded
            results.append(ItemResult(ordinal, status, document_id=doc_id, chunks=embedded))
        return sorted(results, key=lambda r: r.ordinal), chunks_written
