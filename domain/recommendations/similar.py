""" "More like this": the documents whose vectors are nearest to one document's vector, under a
metadata filter, never the document itself. Each hit shows the chunk of the similar document that
is closest to the source document, so the snippet says why it is similar."""

from __future__ import annotations

import uuid

from sqlalchemy import text
from sqlmodel import col, select

from domain.errors import NotFound
from domain.paging import check_first
from domain.persistence.database import Database
from domain.persistence.tables import Document
from domain.retrieval.filters import MetadataFilter, compile_filter
from domain.retrieval.search import Hit
from domain.retrieval.snippets import highlight


async def similar_documents(
    db: Database, tenant_id: str, document_id: uuid.UUID, first: int, flt: MetadataFilter | None
) -> list[Hit]:
    check_first(first)
    compiled = compile_filter(flt, alias="d", path="filter")
    async with db.session(tenant_id) as session:
        source = (
            await session.execute(
                text("SELECT embedding FROM document_vectors WHERE tenant_id = :t AND document_id = :d"),
                {"t": tenant_id, "d": document_id},
            )
        ).scalar()
        if source is None:
            raise NotFound("no document with that id in this tenant", field="id")
        neighbours = (
            await session.execute(
                text(
                    f"""
                    SELECT v.document_id, 1 - (v.embedding <=> CAST(:q AS vector)) AS s
                    FROM document_vectors v JOIN documents d ON d.id = v.document_id
                    WHERE v.tenant_id = :t AND v.document_id <> :self{compiled.sql}
                    ORDER BY v.embedding <=> CAST(:q AS vector) LIMIT :k
                    """
                ),
                {"t": tenant_id, "self": document_id, "q": source, "k": first, **compiled.params},
            )
        ).all()
        ids = [doc for doc, _ in neighbours]
        if not ids:
            return []
        # Per neighbour, its chunk nearest to the source document.
        chunks = (
            await session.execute(
                text(
                    """
                    SELECT DISTINCT ON (c.document_id) c.document_id, c.id, c.ordinal, c.text
                    FROM chunks c WHERE c.tenant_id = :t AND c.document_id = ANY(CAST(:ids AS uuid[]))
                    ORDER BY c.document_id, c.embedding <=> CAST(:q AS vector)
                    """
                ),
                {"t": tenant_id, "ids": ids, "q": source},
            )
        ).all()
        rows = await session.execute(select(Document).where(col(Document.id).in_(ids)))
        docs = {d.id: d for d in rows.scalars()}
    best = {doc: (chunk_id, ordinal, chunk_text) for doc, chunk_id, ordinal, chunk_text in chunks}
    hits: list[Hit] = []
    for rank, (doc_id, score) in enumerate(neighbours, start=1):
        chunk_id, ordinal, chunk_text = best[doc_id]
        hits.append(
            Hit(
                document=docs[doc_id],
                chunk_id=chunk_id,
                chunk_text=chunk_text,
                chunk_ordinal=ordinal,
                snippet=highlight(chunk_text, ""),  # no query terms: the chunk's opening words, escaped
                score=float(score),
                dense=float(score),
                keyword=None,
                fused=float(score),
                dense_rank=rank,
                keyword_rank=None,
                fused_rank=rank,
            )
        )
    return hits
