"""Document ingestion as a job, in a worker: the same normalisation, chunking, embedding and
idempotent write (domain.documents.service) as a synchronous ingest.

`prepare` chunks a batch (in a thread) and queues each changed document's chunks on the encoder as
a request of its own, then returns at once: the runner writes the batch before while the encoder
works on this one. `settle` waits for the next document's vectors, and the runner writes the
documents that are ready while the encoder goes on with the rest, so a job's counts move by the
document, not by the batch. Asked to stop, it waits no longer: the
documents already fully embedded are written (whole: a document is stored with all its chunks or
not at all) and the encoder drops the rest, which stay pending for whoever resumes the job. So a
SIGTERM costs at most the encoder batch in flight (capped in tokens) and one write, whatever the
size of the documents or of the job's batch."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from dataclasses import dataclass, field
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
from domain.providers.embedding import Embedder, Vectors, embed_each


@dataclass
class _Prepared:
    docs: list[tuple[int, NormalizedDocument]]
    failed: list[ItemResult]
    # ordinal -> (chunks, their vectors to come) for the documents that need embedding; the
    # others are unchanged and written without.
    embedding: dict[int, tuple[list[ChunkText], asyncio.Future[Vectors]]]
    prefix: str
    # The futures (by id) that were done at the last settle: the next settle waits for another.
    written: set[int] = field(default_factory=set)
    # The documents a write has dealt with: stored, failed, dropped, or no longer pending.
    handled: set[int] = field(default_factory=set)


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
        changed = [
            (ordinal, doc)
            for ordinal, doc in docs
            if doc.external_id is None or known.get(doc.external_id) != doc.content_hash
        ]
        # Chunking tokenises every sentence: in a thread, so the event loop keeps writing meanwhile.
        chunked = await asyncio.to_thread(self._chunk_all, changed)
        vectors = embed_each(self.embedder, [[c.search_text for c in chunks] for _, chunks in chunked])
        embedding = {ordinal: (chunks, future) for (ordinal, chunks), future in zip(chunked, vectors, strict=True)}
        return _Prepared(docs, failed, embedding, prefix)

    def _chunk_all(self, changed: list[tuple[int, NormalizedDocument]]) -> list[tuple[int, list[ChunkText]]]:
        return [
            (
                ordinal,
                chunk_document(
                    doc.title,
                    doc.text,
                    max_tokens=self.chunking.max_tokens,
                    overlap_tokens=self.chunking.overlap_tokens,
                    count=self.embedder.count_tokens,
                ),
            )
            for ordinal, doc in changed
        ]

    async def settle(self, prepared: _Prepared, stop: asyncio.Event) -> None:
        """Until a document not written yet has its vectors (so the first write also takes the
        documents that need none), or all have; once `stop` is set, drop the rest."""
        futures = [future for _, future in prepared.embedding.values()]
        running = [f for f in futures if not f.done()]
        fresh = [f for f in futures if f.done() and id(f) not in prepared.written]
        if running and not fresh:
            stopping: asyncio.Future[Any] = asyncio.ensure_future(stop.wait())
            try:
                await asyncio.wait({*running, stopping}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                stopping.cancel()
            if stop.is_set():
                self.discard(prepared)
                with contextlib.suppress(asyncio.CancelledError):
                    await asyncio.gather(*running, return_exceptions=True)
        for future in futures:  # an embedding that failed fails the batch (the queue retries the job)
            if future.done() and not future.cancelled() and future.exception() is not None:
                raise future.exception()  # type: ignore[misc]
        prepared.written.update(id(f) for f in futures if f.done())

    def unsettled(self, prepared: _Prepared) -> bool:
        """Some document is still to be written: embedding, or done after the last write looked."""
        return any(ordinal not in prepared.handled for ordinal in prepared.embedding)

    def discard(self, prepared: _Prepared) -> None:
        """Drop the embedding not done yet: the encoder skips cancelled requests."""
        for _, future in prepared.embedding.values():
            future.cancel()

    async def write(
        self, session: AsyncSession, job: Job, prepared: _Prepared, pending: set[int]
    ) -> tuple[list[ItemResult], int]:
        results = [r for r in prepared.failed if r.ordinal in pending]
        ready: list[tuple[int, documents.ToWrite]] = []
        for ordinal, doc in prepared.docs:
            if ordinal not in pending:
                prepared.handled.add(ordinal)  # stored by an earlier write (or another worker)
                continue
            chunks: list[ChunkText] | None = None
            vectors: Vectors | None = None
            if ordinal in prepared.embedding:
                chunks, future = prepared.embedding[ordinal]
                if not future.done():
                    continue  # its vectors are not ready: the next write takes it
                if future.cancelled():
                    prepared.handled.add(ordinal)  # stopped first: it stays pending for a rerun
                    continue
                vectors = future.result()
            prepared.handled.add(ordinal)
            ready.append((ordinal, documents.ToWrite(doc, chunks, vectors)))
        # Every ready document in one set of statements (documents.write_many), not eight each.
        written = await documents.write_many(session, job.tenant_id, [w for _, w in ready])
        chunks_written = 0
        for (ordinal, todo), outcome in zip(ready, written, strict=True):
            if isinstance(outcome, DomainError):
                path = f"{prepared.prefix}.{ordinal}"
                field = f"{path}.{outcome.field}" if outcome.field else path
                results.append(
                    ItemResult(ordinal, "FAILED", error=ItemError(ordinal, field, str(outcome.code), outcome.message))
                )
                continue
            doc_id, status = outcome
            # What the model embedded for this document (none when its text was already stored).
            embedded = len(todo.chunks) if todo.chunks is not None else 0
            chunks_written += embedded
            results.append(ItemResult(ordinal, status, document_id=doc_id, chunks=embedded))
        return sorted(results, key=lambda r: r.ordinal), chunks_written
