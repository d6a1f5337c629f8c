"""Answers read back from the answers table: for `node(id:)` (Answer is a Relay Node) and for the
answer cache, which keeps only an answer's id and reads the rest here.

The table keeps each source's document, chunk and score, not the per-leg scores or the re-rank
details of the moment it was answered: a stored answer's sources carry the score it had then and
no breakdown (dense/keyword null), which the schema documents."""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass

from sqlalchemy import text
from sqlmodel import col, select

from domain import telemetry
from domain.answers.sources import Source
from domain.caching.store import CacheStore
from domain.documents.service import get_many
from domain.persistence.database import Database
from domain.persistence.tables import Answer
from domain.retrieval.cache import index_scope
from domain.retrieval.search import Hit
from domain.retrieval.snippets import highlight


@dataclass
class StoredAnswer:
    record: Answer
    sources: list[Source]

    @property
    def citations(self) -> list[Source]:
        by_number = {s.number: s for s in self.sources}
        return [by_number[n] for n in self.record.citations if n in by_number]


async def load(db: Database, tenant_id: str, answer_id: uuid.UUID) -> StoredAnswer | None:
    """A finished answer of this tenant, with its sources as they are stored; None otherwise."""
    async with db.session(tenant_id) as session:
        record = (
            await session.execute(select(Answer).where(col(Answer.id) == answer_id, col(Answer.tenant_id) == tenant_id))
        ).scalar_one_or_none()
        if record is None or record.status != "done":
            return None
        chunk_ids = [uuid.UUID(s["chunkId"]) for s in record.sources if "chunkId" in s]
        chunks = {}
        if chunk_ids:
            rows = await session.execute(
                text("SELECT id, text, ordinal FROM chunks WHERE tenant_id = :t AND id = ANY(:ids)"),
                {"t": tenant_id, "ids": chunk_ids},
            )
            chunks = {r[0]: (r[1], r[2]) for r in rows.all()}
    doc_ids = [uuid.UUID(s["documentId"]) for s in record.sources if "documentId" in s]
    docs = await get_many(db=db, tenant_id=tenant_id, ids=doc_ids) if doc_ids else {}
    sources: list[Source] = []
    for raw in record.sources:
        number, title = int(raw["n"]), str(raw["title"])
        if "selection" in raw:
            sources.append(Source(number, title, str(raw["selection"])))
            continue
        doc, chunk_id = docs.get(uuid.UUID(raw["documentId"])), uuid.UUID(raw["chunkId"])
        if doc is None or chunk_id not in chunks:
            continue  # deleted since: the answer still reads, without that source
        chunk_text, ordinal = chunks[chunk_id]
        score = float(raw.get("score", 0.0))
        hit = Hit(
            document=doc,
            chunk_id=chunk_id,
            chunk_text=chunk_text,
            chunk_ordinal=ordinal,
            snippet=highlight(chunk_text or doc.title, record.retrieval_query or record.question),
            score=score,
            dense=None,
            keyword=None,
            fused=score,
            dense_rank=None,
            keyword_rank=None,
            fused_rank=number,
        )
        sources.append(Source(number, title, chunk_text or title, hit))
    return StoredAnswer(record, sources)


@dataclass(frozen=True)
class AnswerCache:
    """Answers to repeated questions: tenant, question, options and the tenant's index version map
    to the id of the answer given before. A write to the tenant changes the version, so an answer
    is never reused after its sources could have changed. Follow-ups (a session) and answers from a
    selection are not cached: their text depends on more than the question."""

    store: CacheStore
    ttl_s: float = 300.0

    async def key(self, tenant_id: str, *parts: object) -> str | None:
        if self.ttl_s <= 0:
            return None
        version = await self.store.version(index_scope(tenant_id))
        if version is None:
            return None
        digest = hashlib.sha256(repr(parts).encode()).hexdigest()[:32]
        return f"answer:{tenant_id}:{version}:{digest}"

    async def get(self, key: str) -> uuid.UUID | None:
        raw = await self.store.get(key)
        telemetry.cache_lookup("answer", raw is not None)
        try:
            return uuid.UUID(raw.decode()) if raw else None
        except ValueError:
            return None

    async def put(self, key: str, answer_id: uuid.UUID) -> None:
        await self.store.set(key, str(answer_id).encode(), self.ttl_s)
