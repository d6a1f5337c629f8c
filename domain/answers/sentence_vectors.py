"""Sentence vectors of chunks, kept in `chunk_sentences` (migration 0009) so that the extractive
generator embeds each chunk's sentences once for every replica and restart, not once per process.

The split is the generator's own (`split_passage`), so a stored row and a freshly computed one are
the same thing. Rows are tagged with the embedding model; a row of another model is ignored."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from sqlalchemy import bindparam, text
from sqlalchemy.dialects.postgresql import ARRAY, BYTEA, TEXT, UUID

from domain.documents.chunking import split_sentences
from domain.persistence.database import Database
from domain.providers.embedding import Embedder, QueuedEmbedder, Vectors

# On the bare asyncpg tenant transaction (`Database.connection()`), like the search's reads.
_LOAD = (
    "SELECT chunk_id, sentences, vectors FROM chunk_sentences "
    "WHERE tenant_id = $1 AND chunk_id = ANY($2::uuid[]) AND model = $3"
)
_SAVE = text(
    "INSERT INTO chunk_sentences (chunk_id, tenant_id, model, sentences, vectors) "
    "SELECT r.id, :tenant, :model, string_to_array(r.s, chr(31)), r.v "
    "FROM unnest(:ids, :sentences, :vectors) AS r(id, s, v) "
    "JOIN chunks c ON c.tenant_id = :tenant AND c.id = r.id "  # a chunk deleted meanwhile is skipped
    # A row of another embedding model is replaced; one of this model is never stale.
    "ON CONFLICT (tenant_id, chunk_id) DO UPDATE SET model = EXCLUDED.model, sentences = EXCLUDED.sentences, "
    "vectors = EXCLUDED.vectors WHERE chunk_sentences.model <> EXCLUDED.model"
).bindparams(
    bindparam("ids", type_=ARRAY(UUID(as_uuid=True))),
    bindparam("sentences", type_=ARRAY(TEXT)),
    bindparam("vectors", type_=ARRAY(BYTEA)),
)
_MISSING = text(
    "SELECT c.id, c.text FROM chunks c LEFT JOIN chunk_sentences s "
    "ON s.tenant_id = c.tenant_id AND s.chunk_id = c.id AND s.model = :model "
    "WHERE c.tenant_id = :tenant AND s.chunk_id IS NULL AND c.id > :after ORDER BY c.id LIMIT :n"
)
# The same, for the documents one ingestion job stored (its follow-up job, domain/jobs/sentences_job.py).
_MISSING_OF_JOB = text(
    "SELECT c.id, c.text, c.document_id FROM ingestion_job_items i "
    "JOIN chunks c ON c.tenant_id = i.tenant_id AND c.document_id = i.document_id "
    "LEFT JOIN chunk_sentences s ON s.tenant_id = c.tenant_id AND s.chunk_id = c.id AND s.model = :model "
    "WHERE i.job_id = :job AND i.tenant_id = :tenant AND c.tenant_id = :tenant AND s.chunk_id IS NULL "
    # Document by document, so that a document's overlapping chunks share a batch (embed_passages
    # embeds a sentence they share once).
    "AND (c.document_id, c.id) > (:after_document, :after) ORDER BY c.document_id, c.id LIMIT :n"
)
# A text[] per row cannot go through unnest() of a 2-D array (rows differ in length), so each
# row's sentences travel as one string joined by a separator no sentence contains.
_SEP = "\x1f"


@dataclass(frozen=True)
class PassageVectors:
    sentences: list[str]
    vectors: Vectors


def split_passage(passage: str) -> list[str]:
    """The sentences worth quoting: three words or more (the whole passage if none is)."""
    return [s for s in split_sentences(passage) if len(s.split()) >= 3] or [passage]


async def embed_passages(
    embedder: Embedder, passages: Sequence[str], *, background: bool = False
) -> list[PassageVectors]:
    """All passages' sentences in one embedding call, so the encoder batches them together.
    `background`: work nobody waits for (ahead-of-time vectors), served after ingests and queries
    by an encoder with a queue of its own."""
    split = [split_passage(p) for p in passages]
    # Each distinct sentence once: chunks overlap (chunking carries sentences into the next chunk),
    # so a document's neighbouring chunks share some; on SciFact 13.5% of them repeat.
    flat = list(dict.fromkeys(s for sentences in split for s in sentences))
    if not flat:
        vectors = np.zeros((0, embedder.dim), dtype=np.float32)
    elif background and isinstance(embedder, QueuedEmbedder):
        vectors = await asyncio.wrap_future(embedder.submit(flat, background=True))
    else:
        vectors = await embedder.embed(flat)
    row = {s: i for i, s in enumerate(flat)}
    return [PassageVectors(sentences, vectors[[row[s] for s in sentences]]) for sentences in split]


class SentenceVectorStore:
    """Reads are coalesced per tenant: the chunks asked for while a read is in flight are read
    together in the next one (one transaction, one query), as answers' rows are written
    (writer.py). Alone, a read goes at once. Under 16 concurrent answers each read's own
    transaction was about 6% of the server's CPU (py-spy, issue 18), mostly loopback round trips;
    it now runs on the bare asyncpg connection (no SQLAlchemy statement work, no pre-ping)."""

    def __init__(self, db: Database, model: str, dim: int) -> None:
        self._db, self._model, self._dim = db, model, dim
        self._queued: dict[str, list[tuple[list[uuid.UUID], asyncio.Future[dict[uuid.UUID, PassageVectors]]]]] = {}
        self._reading: dict[str, asyncio.Task[None]] = {}

    async def load(self, tenant_id: str, chunk_ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, PassageVectors]:
        if not chunk_ids:
            return {}
        found: asyncio.Future[dict[uuid.UUID, PassageVectors]] = asyncio.get_running_loop().create_future()
        self._queued.setdefault(tenant_id, []).append((list(chunk_ids), found))
        if tenant_id not in self._reading:
            self._reading[tenant_id] = asyncio.create_task(self._read_queued(tenant_id))
        rows = await found
        return {i: rows[i] for i in chunk_ids if i in rows}

    async def _read_queued(self, tenant_id: str) -> None:
        try:
            while batch := self._queued.pop(tenant_id, None):
                ids = list(dict.fromkeys(i for wanted, _ in batch for i in wanted))
                try:
                    rows = await self._read(tenant_id, ids)
                except BaseException as exc:
                    for _, found in batch:
                        if not found.done():
                            found.set_exception(exc)
                    if not isinstance(exc, Exception):
                        raise  # cancelled (shutting down)
                    continue
                for _, found in batch:
                    if not found.done():  # its answer may have gone away meanwhile
                        found.set_result(rows)
        finally:
            del self._reading[tenant_id]

    async def _read(self, tenant_id: str, chunk_ids: list[uuid.UUID]) -> dict[uuid.UUID, PassageVectors]:
        async with self._db.connection(tenant_id) as conn:
            rows = await conn.fetch(_LOAD, tenant_id, chunk_ids, self._model)
        out = {}
        for chunk_id, sentences, blob in rows:
            vectors = np.frombuffer(blob, dtype=np.float32).reshape(len(sentences), self._dim)
            out[chunk_id] = PassageVectors(list(sentences), vectors)
        return out

    async def save(self, tenant_id: str, rows: dict[uuid.UUID, PassageVectors]) -> None:
        if not rows:
            return
        # A passage holding the separator itself is not stored: it is only recomputed when asked.
        ids = [i for i, row in rows.items() if not any(_SEP in sentence for sentence in row.sentences)]
        if not ids:
            return
        async with self._db.session(tenant_id) as s:
            await s.execute(
                _SAVE,
                {
                    "tenant": tenant_id,
                    "model": self._model,
                    "ids": ids,
                    "sentences": [_SEP.join(rows[i].sentences) for i in ids],
                    "vectors": [np.ascontiguousarray(rows[i].vectors, dtype=np.float32).tobytes() for i in ids],
                },
            )


async def backfill(
    db: Database,
    embedder: Embedder,
    tenant_id: str,
    *,
    batch: int = 256,
    progress: Callable[[int], None] | None = None,
    job_id: uuid.UUID | None = None,
    stop: asyncio.Event | None = None,
) -> int:
    """Embed and store the sentences of every chunk of the tenant that has none yet (`ragql
    embed-sentences`), or of the documents of one ingestion job (`job_id`, its follow-up job, as
    background encoder work): ahead of time, so that no answer pays for it. Resumable; returns
    the count. Once `stop` is set it returns at once: the batch being embedded is dropped (the
    encoder skips a cancelled request's texts not yet run) and left for a rerun, so a large
    `batch` (more texts pooled per request, less padding) does not delay a worker's exit."""
    store = SentenceVectorStore(db, embedder.name, embedder.dim)
    done, after, after_document = 0, uuid.UUID(int=0), uuid.UUID(int=0)
    while stop is None or not stop.is_set():
        async with db.session(tenant_id) as s:
            params: dict[str, object] = {"model": embedder.name, "tenant": tenant_id, "after": after, "n": batch}
            if job_id is None:
                rows = (await s.execute(_MISSING, params)).all()
            else:
                params |= {"job": job_id, "after_document": after_document}
                rows = (await s.execute(_MISSING_OF_JOB, params)).all()
                if rows:
                    after_document = rows[-1][2]
        if not rows:
            return done
        embedding = asyncio.ensure_future(embed_passages(embedder, [r[1] for r in rows], background=job_id is not None))
        if stop is not None:
            stopping = asyncio.ensure_future(stop.wait())
            await asyncio.wait({embedding, stopping}, return_when=asyncio.FIRST_COMPLETED)
            stopping.cancel()
            if not embedding.done():
                embedding.cancel()
                return done
        passages = await embedding
        await store.save(tenant_id, {r[0]: p for r, p in zip(rows, passages, strict=True)})
        done, after = done + len(rows), rows[-1][0]
        if progress is not None:
            progress(len(rows))
    return done
