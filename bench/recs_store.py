"""Bulk writes for the recommendation benches that skip ingest and `submitFeedback`: a catalogue of
documents with their content vectors, and rated events in the order they happened. What follows
them (profiles, popularity, the trained model) is rebuilt by the product's own code."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from sqlalchemy import text

from domain.persistence.database import Database


@dataclass(frozen=True)
class BulkDocument:
    external_id: str
    title: str
    text: str
    genre: str


@dataclass(frozen=True)
class BulkRating:
    user_id: str
    document_id: uuid.UUID
    rating: float


async def insert_documents(
    db: Database, tenant_id: str, docs: Sequence[BulkDocument], vectors: npt.NDArray[np.float64], seed: int
) -> list[uuid.UUID]:
    """One statement for the documents, one for their vectors (unit rows of `vectors`)."""
    rng = np.random.default_rng(seed)
    ids = [uuid.UUID(int=int(rng.integers(0, 2**63)) << 64 | i) for i in range(len(docs))]
    async with db.session(tenant_id) as session:
        await session.execute(
            text(
                """
                INSERT INTO documents (id, tenant_id, external_id, title, text, content_hash, genre, chunk_count)
                SELECT id, :t, ext, title, body, md5(body), genre, 1
                FROM unnest(CAST(:ids AS uuid[]), CAST(:ext AS text[]), CAST(:titles AS text[]),
                            CAST(:texts AS text[]), CAST(:genres AS text[])) AS x(id, ext, title, body, genre)
                """
            ),
            {
                "t": tenant_id,
                "ids": ids,
                "ext": [d.external_id for d in docs],
                "titles": [d.title for d in docs],
                "texts": [d.text for d in docs],
                "genres": [d.genre for d in docs],
            },
        )
        await session.execute(
            text(
                """
                INSERT INTO document_vectors (document_id, tenant_id, embedding)
                SELECT id, :t, CAST(vec AS vector)
                FROM unnest(CAST(:ids AS uuid[]), CAST(:vecs AS text[])) AS x(id, vec)
                """
            ),
            {"t": tenant_id, "ids": ids, "vecs": ["[" + ",".join(f"{x:.5f}" for x in v) + "]" for v in vectors]},
        )
    return ids


async def insert_ratings(
    db: Database, tenant_id: str, ratings: Sequence[BulkRating], spacing_ms: float, *, clicks: bool = False
) -> None:
    """RATING events (or, with `clicks`, CLICK events, their ratings dropped), oldest first: their
    `seq` follows the list's order (profiles replay by it), and `created_at` steps `spacing_ms`
    apart up to now, as a live replay of them would stamp them."""
    async with db.session(tenant_id) as session:
        await session.execute(
            text(
                """
                INSERT INTO feedback (id, tenant_id, user_id, kind, document_id, rating, created_at)
                SELECT gen_random_uuid(), :t, u, :kind, d, CASE WHEN :kind = 'RATING' THEN r END,
                       now() - make_interval(secs => (:n - k) * :spacing / 1000.0)
                FROM unnest(CAST(:users AS text[]), CAST(:docs AS uuid[]), CAST(:ratings AS float8[]))
                     WITH ORDINALITY AS x(u, d, r, k)
                ORDER BY k
                """
            ),
            {
                "t": tenant_id,
                "kind": "CLICK" if clicks else "RATING",
                "n": len(ratings),
                "spacing": spacing_ms,
                "users": [r.user_id for r in ratings],
                "docs": [r.document_id for r in ratings],
                "ratings": [r.rating for r in ratings],
            },
        )
