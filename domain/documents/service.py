"""Ingest, read, list and delete documents.

Ingest is idempotent per (tenant, externalId): unchanged text does no embedding work, changed
text replaces the chunks atomically. Embedding happens before the write transaction, so no
lock is held while the model runs; each document is written inside its own savepoint, so one
failure never half-writes another."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Literal

import numpy as np
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col, func, select

from domain import paging
from domain.documents.chunking import ChunkText, chunk_document
from domain.documents.error_codes import DocumentErrorCode
from domain.documents.parse_pool import ParsePool
from domain.documents.parsing import ParseBudget
from domain.documents.validation import DocumentInput, NormalizedDocument, normalize, normalize_metadata
from domain.error_codes import CommonErrorCode
from domain.errors import DomainError, InvalidInput, NotFound
from domain.jobs import store as job_store
from domain.jobs.items import document_items
from domain.jobs.model import ItemError, Job, JobKind
from domain.paging import check_first
from domain.persistence.database import Database
from domain.persistence.tables import Document
from domain.providers.embedding import Embedder
from domain.retrieval.cache import SearchCache
from domain.retrieval.filters import MetadataFilter, compile_filter

Status = Literal["CREATED", "UPDATED", "UNCHANGED"]


@dataclass(frozen=True)
class ChunkingConfig:
    max_tokens: int = 200
    overlap_tokens: int = 48


@dataclass
class Ingested:
    index: int
    document: Document
    status: Status


@dataclass
class IngestOutcome:
    documents: list[Ingested]
    errors: list[DomainError]
    chunks_embedded: int
    # Set when the ingest ran as a job (ASYNC): `documents` is empty, a worker stores them.
    job: Job | None = None


# SYNC embeds in the call; ASYNC queues a job; None picks by size (Documents.async_threshold).
IngestMode = Literal["SYNC", "ASYNC"]


ProgressHook = Callable[[int], None]

_UPSERT = text(
    """
    INSERT INTO documents (id, tenant_id, external_id, title, text, content_hash, metadata, genre, tags,
                           rating, year, source, chunk_count)
    VALUES (:id, :tenant_id, :external_id, :title, :text, :content_hash, CAST(:metadata AS jsonb), :genre,
            :tags, :rating, :year, :source, :chunk_count)
    ON CONFLICT (tenant_id, external_id) DO UPDATE SET
        title = EXCLUDED.title, text = EXCLUDED.text, content_hash = EXCLUDED.content_hash,
        metadata = EXCLUDED.metadata, genre = EXCLUDED.genre, tags = EXCLUDED.tags,
        rating = EXCLUDED.rating, year = EXCLUDED.year, source = EXCLUDED.source,
        chunk_count = CASE WHEN :replace_chunks THEN EXCLUDED.chunk_count ELSE documents.chunk_count END,
        updated_at = now()
    RETURNING id
    """
)

# A document's vector is the mean of its chunk vectors; "more like this" and user profiles use it.
_UPSERT_VECTOR = text(
    """
    INSERT INTO document_vectors (document_id, tenant_id, embedding) VALUES (:d, :t, :v)
    ON CONFLICT (document_id) DO UPDATE SET embedding = EXCLUDED.embedding
    """
)

_INSERT_CHUNK = text(
    """
    INSERT INTO chunks (id, tenant_id, document_id, ordinal, text, search_text, token_count, embedding)
    VALUES (:id, :tenant_id, :document_id, :ordinal, :text, :search_text, :token_count, :embedding)
    """
)


def _upsert_params(
    tenant_id: str, doc: NormalizedDocument, doc_id: uuid.UUID, chunk_count: int, replace: bool
) -> dict[str, object]:
    """The bind parameters of `_UPSERT` (one document) and `_UPSERT_MANY` (each row of a write)."""
    return {
        "id": doc_id,
        "tenant_id": tenant_id,
        "external_id": doc.external_id,
        "title": doc.title,
        "text": doc.text,
        "content_hash": doc.content_hash,
        "metadata": json.dumps(doc.metadata),
        "genre": doc.genre,
        "tags": doc.tags,
        "rating": doc.rating,
        "year": doc.year,
        "source": doc.source,
        "chunk_count": chunk_count,
        "replace_chunks": replace,
    }


def _chunk_rows(tenant_id: str, doc_id: uuid.UUID, chunks: list[ChunkText], vectors: Any) -> list[dict[str, Any]]:
    """The bind parameters of `_INSERT_CHUNK` for one document's chunks, each with its vector."""
    return [
        {
            "id": uuid.uuid4(),
            "tenant_id": tenant_id,
            "document_id": doc_id,
            "ordinal": c.ordinal,
            "text": c.text,
            "search_text": c.search_text,
            "token_count": c.token_count,
            "embedding": vectors[i],
        }
        for i, c in enumerate(chunks)
    ]


def _centroid_params(tenant_id: str, doc_id: uuid.UUID, chunks: list[ChunkText], vectors: Any) -> dict[str, Any]:
    """The bind parameters of `_UPSERT_VECTOR`: the mean of the document's chunk vectors."""
    return {"d": doc_id, "t": tenant_id, "v": np.asarray(vectors[: len(chunks)], dtype=np.float32).mean(axis=0)}


async def _existing_hashes(session: AsyncSession, tenant_id: str, external_ids: list[str]) -> dict[str, str]:
    if not external_ids:
        return {}
    rows = await session.execute(
        select(Document.external_id, Document.content_hash).where(
            Document.tenant_id == tenant_id, col(Document.external_id).in_(external_ids)
        )
    )
    return {str(ext): str(h) for ext, h in rows.all()}


async def _write_one(
    session: AsyncSession,
    tenant_id: str,
    doc: NormalizedDocument,
    chunks: list[ChunkText] | None,
    vectors: Any,
) -> tuple[uuid.UUID, Status]:
    """Upsert one document inside a savepoint; replace its chunks if `chunks` is given."""
    async with session.begin_nested():
        previous: str | None = None
        if doc.external_id is not None:
            # Serialise writers of the same externalId so concurrent re-ingests cannot interleave.
            await session.execute(
                text("SELECT pg_advisory_xact_lock(hashtextextended(:k, 0))"),
                {"k": f"{tenant_id}\x1f{doc.external_id}"},
            )
            previous = (
                await session.execute(
                    text("SELECT content_hash FROM documents WHERE tenant_id = :t AND external_id = :e"),
                    {"t": tenant_id, "e": doc.external_id},
                )
            ).scalar()
        if chunks is None and previous != doc.content_hash:
            # Another writer changed the text after we decided no embedding was needed.
            raise InvalidInput(
                CommonErrorCode.CONFLICT,
                "the document changed while this batch was being processed; send it again",
                field="externalId",
            )
        replace = chunks is not None and previous != doc.content_hash
        doc_id = (
            await session.execute(
                _UPSERT,
                _upsert_params(tenant_id, doc, uuid.uuid4(), len(chunks or []), replace),
            )
        ).scalar_one()
        if replace and chunks is not None:
            # Naming the tenant lets the planner look in its partition only (migration 0005).
            await session.execute(
                text("DELETE FROM chunks WHERE tenant_id = :t AND document_id = :d"), {"t": tenant_id, "d": doc_id}
            )
            await session.execute(_INSERT_CHUNK, _chunk_rows(tenant_id, doc_id, chunks, vectors))
            if chunks:
                await session.execute(_UPSERT_VECTOR, _centroid_params(tenant_id, doc_id, chunks, vectors))
    if previous is None:
        return doc_id, "CREATED"
    return doc_id, "UNCHANGED" if previous == doc.content_hash else "UPDATED"


# The statements of `write_many`: each runs once for all the documents of a write, not once per
# document.
_LOCK_MANY = text("SELECT pg_advisory_xact_lock(hashtextextended(k, 0)) FROM unnest(CAST(:keys AS text[])) AS k")
_PREVIOUS_MANY = text(
    "SELECT external_id, id, content_hash FROM documents WHERE tenant_id = :t AND external_id = ANY(:e)"
)
_UPSERT_MANY = text(_UPSERT.text.replace("RETURNING id", ""))
_DELETE_CHUNKS_MANY = text("DELETE FROM chunks WHERE tenant_id = :t AND document_id = ANY(:d)")


@dataclass(frozen=True)
class ToWrite:
    """One document of a write: its chunks and their vectors when it needs new ones (None: its
    text is already stored, nothing to embed)."""

    doc: NormalizedDocument
    chunks: list[ChunkText] | None
    vectors: Any


Written = tuple[uuid.UUID, Status] | DomainError


async def write_many(session: AsyncSession, tenant_id: str, docs: Sequence[ToWrite]) -> list[Written]:
    """What `_write_one` does for each document, in six statements for all of them (locks,
    previous hashes, upsert, delete of replaced chunks, chunk insert, centroids) instead of eight
    round trips each (SciFact: ~41k statements fewer; PostgreSQL's CPU in an ingest fell 10-19%,
    the ingest process's 10%, with the sentence changes, in one A/B). One result per document, in
    order: its id and status, or the DomainError that refused it (the others are written).

    The same guarantees: writers of one externalId are serialised by its advisory lock (taken in
    sorted order, so two writers of overlapping batches cannot deadlock); a document refused (its
    text changed meanwhile) is refused before anything is written; a database error propagates, as
    one from `_write_one` did, and the caller's transaction leaves nothing of the write (a job's
    write is then retried)."""
    if not docs:
        return []
    return await _write_many(session, tenant_id, docs)


async def _write_many(session: AsyncSession, tenant_id: str, docs: Sequence[ToWrite]) -> list[Written]:
    external = [d.doc.external_id for d in docs if d.doc.external_id is not None]
    previous: dict[str, tuple[uuid.UUID, str]] = {}
    if external:
        keys = sorted({f"{tenant_id}\x1f{e}" for e in external})
        await session.execute(_LOCK_MANY, {"keys": keys})
        rows = await session.execute(_PREVIOUS_MANY, {"t": tenant_id, "e": external})
        previous = {str(e): (i, str(h)) for e, i, h in rows.all()}
    out: list[Written] = []
    upserts: list[dict[str, Any]] = []
    replaced: list[uuid.UUID] = []
    chunk_rows: list[dict[str, Any]] = []
    centroids: list[dict[str, Any]] = []
    for d in docs:
        doc = d.doc
        before = previous.get(doc.external_id) if doc.external_id is not None else None
        prev_hash = before[1] if before else None
        if d.chunks is None and prev_hash != doc.content_hash:
            out.append(
                InvalidInput(
                    CommonErrorCode.CONFLICT,
                    "the document changed while this batch was being processed; send it again",
                    field="externalId",
                )
            )
            continue
        replace = d.chunks is not None and prev_hash != doc.content_hash
        # Under the lock the row cannot change, so its id is the one the upsert keeps.
        doc_id = before[0] if before else uuid.uuid4()
        upserts.append(_upsert_params(tenant_id, doc, doc_id, len(d.chunks or []), replace))
        if replace and d.chunks is not None:
            if before is not None:
                replaced.append(doc_id)
            chunk_rows.extend(_chunk_rows(tenant_id, doc_id, d.chunks, d.vectors))
            if d.chunks:
                centroids.append(_centroid_params(tenant_id, doc_id, d.chunks, d.vectors))
        if before is None:
            out.append((doc_id, "CREATED"))
        else:
            out.append((doc_id, "UNCHANGED" if prev_hash == doc.content_hash else "UPDATED"))
    # asyncpg sends each executemany as one pipelined batch: one round trip, not one per row.
    if upserts:
        await session.execute(_UPSERT_MANY, upserts)
    if replaced:
        await session.execute(_DELETE_CHUNKS_MANY, {"t": tenant_id, "d": replaced})
    if chunk_rows:
        await session.execute(_INSERT_CHUNK, chunk_rows)
    if centroids:
        await session.execute(_UPSERT_VECTOR, centroids)
    return out


@dataclass(frozen=True)
class IngestContext:
    """What every ingest of a process shares: built once at start."""

    db: Database
    embedder: Embedder
    chunking: ChunkingConfig = ChunkingConfig()
    max_batch: int = 256
    max_chars: int = 2_000_000


@dataclass(frozen=True)
class IngestRequest:
    tenant_id: str
    inputs: Sequence[DocumentInput]
    # Where error fields point: "documents" for ingestDocuments, "files" for uploadDocuments.
    field_prefix: str = "documents"


def check_batch_size(count: int, max_batch: int, field: str) -> None:
    """The one batch-size rule, for documents and for uploaded files (checked before any is read)."""
    if count > max_batch:
        raise InvalidInput(
            DocumentErrorCode.BATCH_TOO_LARGE,
            f"{count} documents in one call; send at most {max_batch} per call (RAGQL_MAX_DOCUMENTS_PER_BATCH)",
            field=field,
        )


async def ingest(ctx: IngestContext, request: IngestRequest) -> IngestOutcome:
    db, embedder, chunking = ctx.db, ctx.embedder, ctx.chunking
    tenant_id, inputs, field_prefix, max_chars = request.tenant_id, request.inputs, request.field_prefix, ctx.max_chars
    if not inputs:
        raise InvalidInput(DocumentErrorCode.EMPTY_BATCH, "send at least one document", field=field_prefix)
    check_batch_size(len(inputs), ctx.max_batch, field_prefix)
    errors: list[DomainError] = []
    valid: list[tuple[int, NormalizedDocument]] = []
    seen_ids: set[str] = set()
    for i, raw in enumerate(inputs):
        path = f"{field_prefix}.{i}"
        try:
            doc = normalize(raw, path, max_chars=max_chars)
        except DomainError as exc:
            errors.append(exc)
            continue
        if doc.external_id is not None:
            if doc.external_id in seen_ids:
                errors.append(
                    InvalidInput(
                        DocumentErrorCode.DUPLICATE_EXTERNAL_ID,
                        "externalId appears twice in this batch",
                        field=f"{path}.externalId",
                    )
                )
                continue
            seen_ids.add(doc.external_id)
        valid.append((i, doc))

    async with db.session(tenant_id) as session:
        known = await _existing_hashes(session, tenant_id, [d.external_id for _, d in valid if d.external_id])

    # Only new or changed documents are chunked and embedded. Chunking tokenises every text: in a
    # worker thread, so a long document never stalls the event loop.
    changed = [
        (i, doc) for i, doc in valid if doc.external_id is None or known.get(doc.external_id) != doc.content_hash
    ]

    def chunk_all() -> list[tuple[int, NormalizedDocument, list[ChunkText]]]:
        return [
            (
                i,
                doc,
                chunk_document(
                    doc.title,
                    doc.text,
                    max_tokens=chunking.max_tokens,
                    overlap_tokens=chunking.overlap_tokens,
                    count=embedder.count_tokens,
                ),
            )
            for i, doc in changed
        ]

    to_embed = await asyncio.to_thread(chunk_all)
    flat = [c.search_text for _, _, chunks in to_embed for c in chunks]
    vectors = await embedder.embed(flat)

    per_doc: dict[int, tuple[list[ChunkText] | None, Any]] = {}
    offset = 0
    for i, _, chunks in to_embed:
        per_doc[i] = (chunks, vectors[offset : offset + len(chunks)])
        offset += len(chunks)

    written: list[tuple[int, uuid.UUID, Status]] = []
    async with db.session(tenant_id) as session:
        todo = [ToWrite(doc, *per_doc.get(i, (None, None))) for i, doc in valid]
        for (i, _), outcome in zip(valid, await write_many(session, tenant_id, todo), strict=True):
            if isinstance(outcome, DomainError):
                outcome.field = f"{field_prefix}.{i}.{outcome.field}" if outcome.field else f"{field_prefix}.{i}"
                errors.append(outcome)
                continue
            written.append((i, *outcome))
        rows = await session.execute(select(Document).where(col(Document.id).in_([d for _, d, _ in written])))
        by_id = {row.id: row for row in rows.scalars()}
    ingested = [Ingested(i, by_id[doc_id], status) for i, doc_id, status in written]
    return IngestOutcome(documents=ingested, errors=errors, chunks_embedded=len(flat))


async def get(*, db: Database, tenant_id: str, document_id: uuid.UUID) -> Document | None:
    async with db.session(tenant_id) as session:
        row = await session.execute(select(Document).where(Document.id == document_id, Document.tenant_id == tenant_id))
        return row.scalar_one_or_none()


async def get_many(*, db: Database, tenant_id: str, ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, Document]:
    async with db.session(tenant_id) as session:
        rows = await session.execute(
            select(Document).where(col(Document.id).in_(list(ids)), Document.tenant_id == tenant_id)
        )
        return {d.id: d for d in rows.scalars()}


async def delete(*, db: Database, tenant_id: str, document_id: uuid.UUID) -> Document:
    async with db.session(tenant_id) as session:
        row = (
            await session.execute(
                select(Document).where(Document.id == document_id, Document.tenant_id == tenant_id).with_for_update()
            )
        ).scalar_one_or_none()
        if row is None:
            raise NotFound("no document with that id in this tenant", field="id")
        await session.execute(text("DELETE FROM documents WHERE id = :d"), {"d": document_id})
        return row


@dataclass
class DocumentPage:
    documents: list[Document]
    has_next: bool
    total: int


def encode_cursor(doc: Document) -> str:
    return paging.encode_cursor(doc.created_at, doc.id)


async def list_page(
    *, db: Database, tenant_id: str, first: int, after: str | None, flt: MetadataFilter | None
) -> DocumentPage:
    check_first(first)
    compiled = compile_filter(flt, alias="d")
    where = f"d.tenant_id = :tenant {compiled.sql}"
    params: dict[str, Any] = {"tenant": tenant_id, **compiled.params}
    async with db.session(tenant_id) as session:
        total = (await session.execute(text(f"SELECT count(*) FROM documents d WHERE {where}"), params)).scalar_one()
        page_where = where
        if after:
            created, ident = paging.decode_cursor(after)
            page_where += " AND (d.created_at, d.id) > (:after_created, :after_id)"
            params |= {"after_created": created, "after_id": ident}
        ids = (
            (
                await session.execute(
                    text(f"SELECT d.id FROM documents d WHERE {page_where} ORDER BY d.created_at, d.id LIMIT :lim"),
                    params | {"lim": first + 1},
                )
            )
            .scalars()
            .all()
        )
        rows = await session.execute(select(Document).where(col(Document.id).in_(ids[:first])))
        by_id = {d.id: d for d in rows.scalars()}
    return DocumentPage([by_id[i] for i in ids[:first]], has_next=len(ids) > first, total=int(total))


async def count(*, db: Database, tenant_id: str) -> int:
    async with db.session(tenant_id) as session:
        return int(
            (
                await session.execute(select(func.count()).select_from(Document).where(Document.tenant_id == tenant_id))
            ).scalar_one()
        )


@dataclass(frozen=True)
class Documents:
    """The documents area, built once at start: ingest, upload, delete, read, list. A write drops
    the tenant's cached search results here, so no caller has to remember to."""

    ingesting: IngestContext
    search_cache: SearchCache
    max_upload_bytes: int = 10 * 1024 * 1024
    # Calls that leave out `mode` run as a job above this many documents.
    async_threshold: int = 256
    parse_budget: ParseBudget = field(default_factory=ParseBudget)
    # Worker processes that read uploads under a hard time limit; None reads them in a thread
    # (the budget then holds only between parse steps).
    parse_pool: ParsePool | None = None

    @property
    def db(self) -> Database:
        return self.ingesting.db

    async def ingest(
        self,
        tenant_id: str,
        inputs: Sequence[DocumentInput],
        *,
        early_errors: Sequence[DomainError] = (),
        mode: IngestMode | None = None,
        created_by: str = "",
    ) -> IngestOutcome:
        if self._runs_async(mode, len(inputs)):
            return await self._enqueue(tenant_id, list(inputs), "documents", created_by)
        return await self._ingest(IngestRequest(tenant_id, inputs), early_errors)

    async def upload(
        self,
        tenant_id: str,
        files: Sequence[object],
        metadata: Any,
        *,
        mode: IngestMode | None = None,
        created_by: str = "",
    ) -> IngestOutcome:
        from domain.documents.uploads import read_uploads

        normalized = normalize_metadata(metadata, "metadata")
        asynchronous = self._runs_async(mode, len(files))
        if not asynchronous:
            check_batch_size(len(files), self.ingesting.max_batch, "files")
        job_store.check_size(len(files), "files")
        parsed, errors = await read_uploads(
            files,
            metadata=normalized,
            max_bytes=self.max_upload_bytes,
            budget=self.parse_budget,
            **({"parse": self.parse_pool.parse} if self.parse_pool else {}),
        )
        if asynchronous:
            return await self._enqueue(tenant_id, _in_file_order(len(files), parsed, errors), "files", created_by)
        return await self._ingest(IngestRequest(tenant_id, parsed, field_prefix="files"), errors)

    def _runs_async(self, mode: IngestMode | None, count: int) -> bool:
        return mode == "ASYNC" if mode is not None else count > self.async_threshold

    async def _enqueue(
        self, tenant_id: str, entries: list[DocumentInput | ItemError], prefix: str, created_by: str
    ) -> IngestOutcome:
        """Validate now, store later: on return the job, its inputs and its queue entry are durable.
        Inputs refused now are in the outcome's errors and in the job's."""
        items = document_items(entries, prefix, max_chars=self.ingesting.max_chars)
        job = await job_store.create(
            self.db, tenant_id, JobKind.DOCUMENTS, items, created_by=created_by, field_prefix=prefix
        )
        refused: list[DomainError] = [_refused(i.error) for i in items if i.error is not None]
        return IngestOutcome(documents=[], errors=refused, chunks_embedded=0, job=job)

    async def _ingest(self, request: IngestRequest, early_errors: Sequence[DomainError]) -> IngestOutcome:
        if not request.inputs:
            # Nothing left to write (no documents, or every file failed to read): report what failed.
            return IngestOutcome(documents=[], errors=list(early_errors), chunks_embedded=0)
        outcome = await ingest(self.ingesting, request)
        await self.search_cache.invalidate(request.tenant_id)
        outcome.errors = [*early_errors, *outcome.errors]
        return outcome

    async def delete(self, tenant_id: str, document_id: uuid.UUID) -> Document:
        deleted = await delete(db=self.db, tenant_id=tenant_id, document_id=document_id)
        await self.search_cache.invalidate(tenant_id)
        return deleted

    async def get(self, tenant_id: str, document_id: uuid.UUID) -> Document | None:
        return await get(db=self.db, tenant_id=tenant_id, document_id=document_id)

    async def list_page(
        self, tenant_id: str, *, first: int, after: str | None, flt: MetadataFilter | None
    ) -> DocumentPage:
        return await list_page(db=self.db, tenant_id=tenant_id, first=first, after=after, flt=flt)


def _in_file_order(
    count: int, parsed: list[DocumentInput], errors: list[DomainError]
) -> list[DocumentInput | ItemError]:
    """Each file's document, or why it could not be read, at the file's position (upload errors
    name their file as `files.<i>`)."""
    failed = {int((e.field or "").split(".")[1]): e for e in errors if (e.field or "").startswith("files.")}
    documents = iter(parsed)
    return [
        ItemError(i, failed[i].field, failed[i].code, failed[i].message) if i in failed else next(documents)
        for i in range(count)
    ]


def _refused(error: ItemError) -> InvalidInput:
    # Items refused at creation keep the Enum member their validation raised.
    code = error.code if isinstance(error.code, StrEnum) else CommonErrorCode.INTERNAL
    return InvalidInput(code, error.message, field=error.field)
