"""The candidate sources for recommendations, each one SQL statement under the same filter and
the same exclusion of seen items:

- `nearest`: documents closest to a vector (the preference profile, the context, or both);
- `co_engaged`: documents liked by people who liked what this user liked;
- `popular`: documents with the most (time-decayed) positive feedback in this tenant, or, in a
  tenant with no feedback yet, the best-rated documents.

Only constants from `kinds.py` and the compiled filter's bound fragment reach the SQL text."""

from __future__ import annotations

import math
import uuid
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from domain.feedback.kinds import LIKED_AT, weight_sql
from domain.feedback.profiles import LearningConfig, Vector, unit
from domain.retrieval.filters import CompiledFilter

_W = weight_sql("f")


@dataclass
class History:
    """What one user has done: every document they reacted to, and what they currently like."""

    seen: list[uuid.UUID] = field(default_factory=list)
    liked: list[uuid.UUID] = field(default_factory=list)  # most recent first


async def history(session: AsyncSession, tenant_id: str, user_id: str, *, recent: int = 20) -> History:
    # A document's verdict is the user's latest strong signal on it: liking then disliking is a dislike.
    sql = f"""
        SELECT f.document_id, max(f.seq) AS last,
               (array_agg({_W} ORDER BY f.seq DESC) FILTER (WHERE abs({_W}) >= {LIKED_AT}))[1] AS verdict
        FROM feedback f
        WHERE f.tenant_id = :t AND f.user_id = :u AND f.document_id IS NOT NULL
        GROUP BY f.document_id ORDER BY last DESC
        """
    out = History()
    for doc_id, _last, verdict in (await session.execute(text(sql), {"t": tenant_id, "u": user_id})).all():
        out.seen.append(doc_id)
        if verdict is not None and verdict > 0 and len(out.liked) < recent:
            out.liked.append(doc_id)
    return out


def _params(tenant_id: str, flt: CompiledFilter, exclude: list[uuid.UUID], k: int) -> dict[str, Any]:
    return {"t": tenant_id, "exclude": exclude, "k": k, **flt.params}


_NOT_EXCLUDED = "NOT (d.id = ANY(CAST(:exclude AS uuid[])))"


async def nearest(
    session: AsyncSession, tenant_id: str, vector: Vector, flt: CompiledFilter, exclude: list[uuid.UUID], k: int
) -> list[uuid.UUID]:
    """Ids only: the caller scores every candidate, from any source, against the same vectors."""
    sql = f"""
        SELECT v.document_id
        FROM document_vectors v JOIN documents d ON d.id = v.document_id
        WHERE v.tenant_id = :t AND {_NOT_EXCLUDED}{flt.sql}
        ORDER BY v.embedding <=> CAST(:q AS vector) LIMIT :k
        """
    rows = await session.execute(text(sql), _params(tenant_id, flt, exclude, k) | {"q": vector})
    return [doc for (doc,) in rows.all()]


@dataclass
class CoEngaged:
    score: float  # users who liked one of the seeds and this, summed over the seeds
    because: uuid.UUID  # the seed that shares the most users with it


async def co_engaged(
    session: AsyncSession,
    tenant_id: str,
    seeds: list[uuid.UUID],
    flt: CompiledFilter,
    exclude: list[uuid.UUID],
    k: int,
) -> dict[uuid.UUID, CoEngaged]:
    if not seeds:
        return {}
    sql = f"""
        SELECT c.item_b, sum(c.users) AS s, (array_agg(c.item_a ORDER BY c.users DESC, c.item_a))[1] AS because
        FROM co_engagement c JOIN documents d ON d.id = c.item_b
        WHERE c.tenant_id = :t AND c.item_a = ANY(CAST(:seeds AS uuid[])) AND {_NOT_EXCLUDED}{flt.sql}
        GROUP BY c.item_b ORDER BY s DESC, c.item_b LIMIT :k
        """
    rows = await session.execute(text(sql), _params(tenant_id, flt, exclude, k) | {"seeds": seeds})
    return {doc: CoEngaged(float(s), because) for doc, s, because in rows.all()}


@dataclass
class Popular:
    scores: dict[uuid.UUID, float]
    by_feedback: bool  # False: the tenant has no recent feedback, so these are the best-rated documents


async def popular(
    session: AsyncSession,
    tenant_id: str,
    flt: CompiledFilter,
    exclude: list[uuid.UUID],
    k: int,
    config: LearningConfig,
) -> Popular:
    decay = math.log(2) / (config.popularity_half_life_days * 86400.0)
    sql = f"""
        SELECT d.id, sum({_W} * exp(-CAST(:decay AS double precision) * extract(epoch FROM now() - f.created_at))) AS s
        FROM feedback f JOIN documents d ON d.id = f.document_id
        WHERE f.tenant_id = :t AND f.created_at >= now() - make_interval(days => :window)
          AND {_NOT_EXCLUDED}{flt.sql}
        GROUP BY d.id HAVING sum({_W}) > 0 ORDER BY s DESC, d.id LIMIT :k
        """
    params = _params(tenant_id, flt, exclude, k) | {"decay": decay, "window": int(config.popularity_window_days)}
    rows = (await session.execute(text(sql), params)).all()
    if rows:
        return Popular({doc: float(s) for doc, s in rows}, by_feedback=True)
    fallback = f"""
        SELECT d.id, d.rating FROM documents d
        WHERE d.tenant_id = :t AND {_NOT_EXCLUDED}{flt.sql}
        ORDER BY d.rating DESC NULLS LAST, d.created_at DESC, d.id LIMIT :k
        """
    rows = (await session.execute(text(fallback), _params(tenant_id, flt, exclude, k))).all()
    # Scored by position, so unrated documents still rank (newest first) and still count as a source.
    return Popular({doc: (len(rows) - i) / len(rows) for i, (doc, _) in enumerate(rows)}, by_feedback=False)


async def vectors(session: AsyncSession, tenant_id: str, ids: list[uuid.UUID]) -> dict[uuid.UUID, Vector]:
    if not ids:
        return {}
    rows = await session.execute(
        text(
            "SELECT document_id, embedding FROM document_vectors "
            "WHERE tenant_id = :t AND document_id = ANY(CAST(:ids AS uuid[]))"
        ),
        {"t": tenant_id, "ids": ids},
    )
    out: dict[uuid.UUID, Vector] = {}
    for doc, emb in rows.all():
        out[doc] = unit(emb)
    return out
