"""The candidate sources for recommendations, each one SQL statement under the same filter and
the same exclusion of seen items:

- `nearest`: documents closest to a vector (the preference profile, the context, or both);
- `co_engaged`: documents liked by people who liked what this user liked (normalised);
- `by_factors` (in `factors.py`): documents the trained model scores highest for this user;
- `popular`: documents with the most (time-decayed) positive feedback in this tenant, or, in a
  tenant with no feedback yet, the best-rated documents.

Only constants from `kinds.py` and the compiled filter's bound fragment reach the SQL text. Each
statement goes through asyncpg on the request's connection (`sql.py`: a third of a request's CPU
was SQLAlchemy's per-statement overhead)."""

from __future__ import annotations

import math
import uuid
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from domain.feedback.kinds import LIKED_AT, weight_sql
from domain.feedback.profiles import LearningConfig, Profile, Vector, as_vector
from domain.recommendations.sql import Executor, fetch
from domain.retrieval.filters import CompiledFilter

_W = weight_sql("f")


@dataclass
class History:
    """What one user has done: every document they reacted to, what they currently like, and
    their signal on each of their most recent documents (for the model's fold-in)."""

    seen: list[uuid.UUID] = field(default_factory=list)
    liked: list[uuid.UUID] = field(default_factory=list)  # most recent first
    signals: dict[uuid.UUID, float] = field(default_factory=dict)  # most recent `fold_in` documents


@dataclass
class UserState:
    """Everything a request needs to know about the user before it looks for candidates."""

    history: History
    profile: Profile | None  # the learned profile (`feedback.profiles`), None before any event
    model_version: int | None  # the tenant's newest ready model (`recs_models`), None before training


# Per (user, document): the latest strong signal if there is one (liking then disliking is a
# dislike), else the strongest weak one (a view). Training reads the same expression, so the
# fold-in at request time solves the very equations training solved.
SIGNAL_SQL = f"""coalesce(
    (array_agg({_W} ORDER BY f.seq DESC) FILTER (WHERE abs({_W}) >= {LIKED_AT}))[1], max({_W}))"""

# One round trip for the three reads that depend only on the user and the tenant: the history
# (per document, newest first, as two parallel arrays), the profile, and the model version. The
# single row comes from `one`, so a user with no profile still gets their history.
_USER_STATE_SQL = f"""
    WITH h AS (
        SELECT f.document_id, max(f.seq) AS last, {SIGNAL_SQL} AS signal
        FROM feedback f
        WHERE f.tenant_id = :t AND f.user_id = :u AND f.document_id IS NOT NULL
        GROUP BY f.document_id
    )
    SELECT (SELECT array_agg(h.document_id ORDER BY h.last DESC) FROM h),
           (SELECT array_agg(h.signal ORDER BY h.last DESC) FROM h),
           p.preference, p.events, p.positives, p.negatives, p.last_seq, p.last_event_at,
           (SELECT m.version FROM recs_models m WHERE m.tenant_id = :t AND m.status = 'ready'
            ORDER BY m.version DESC LIMIT 1)
    FROM (VALUES (1)) AS one (x) LEFT JOIN user_profiles p ON p.tenant_id = :t AND p.user_id = :u
    """


async def user_state(
    conn: Executor, tenant_id: str, user_id: str, *, recent: int = 20, fold_in: int = 500
) -> UserState:
    rows = await fetch(conn, _USER_STATE_SQL, {"t": tenant_id, "u": user_id})
    documents, signals, preference, events, positives, negatives, last_seq, last_event_at, version = rows[0]
    history = History()
    for doc_id, signal in zip(documents or [], signals or [], strict=True):
        history.seen.append(doc_id)
        if signal is not None and signal >= LIKED_AT and len(history.liked) < recent:
            history.liked.append(doc_id)
        if signal and len(history.signals) < fold_in:
            history.signals[doc_id] = float(signal)
    profile = None
    if events is not None:  # a profile row exists
        vector = None if preference is None else as_vector(preference)
        profile = Profile(vector, events, positives, negatives, last_seq, last_event_at)
    return UserState(history, profile, None if version is None else int(version))


def _params(tenant_id: str, flt: CompiledFilter, exclude: list[uuid.UUID], k: int) -> dict[str, Any]:
    return {"t": tenant_id, "exclude": exclude, "k": k, **flt.params}


_NOT_EXCLUDED = "NOT (d.id = ANY(CAST(:exclude AS uuid[])))"


async def nearest(
    conn: Executor, tenant_id: str, vector: Vector, flt: CompiledFilter, exclude: list[uuid.UUID], k: int
) -> list[uuid.UUID]:
    """Ids only: the caller scores every candidate, from any source, against the same vectors.
    A document's vector goes with it (ON DELETE CASCADE), so `documents` is joined only for a
    filter: the join cost a lookup per row the HNSW scan returned (3.3 ms against 1.0 ms for 150
    candidates on SciFact's 5,183 documents, EXPLAIN ANALYZE)."""
    joined = "JOIN documents d ON d.id = v.document_id" if flt.sql else ""
    sql = f"""
        SELECT v.document_id
        FROM document_vectors v {joined}
        WHERE v.tenant_id = :t AND NOT (v.document_id = ANY(CAST(:exclude AS uuid[]))){flt.sql}
        ORDER BY v.embedding <=> CAST(:q AS vector) LIMIT :k
        """
    rows = await fetch(conn, sql, _params(tenant_id, flt, exclude, k) | {"q": vector})
    return [doc for (doc,) in rows]


@dataclass
class CoEngaged:
    score: float  # normalised co-engagement with the seeds, summed over the seeds
    because: uuid.UUID  # the seed it is most strongly co-engaged with


async def co_engaged(
    conn: Executor,
    tenant_id: str,
    seeds: list[uuid.UUID],
    flt: CompiledFilter,
    exclude: list[uuid.UUID],
    k: int,
    *,
    model_version: int | None = None,
    damping: float = 0.8,
    shrink: float = 5.0,
) -> dict[uuid.UUID, CoEngaged]:
    """With a trained model: its precomputed neighbour lists (`item_neighbour_lists`). Before the first
    training: the live pair counts, normalised the same way (`model.neighbours`), users(a, b) /
    (likers_a^(1-d) · likers_b^d) · users/(users + shrink), so a blockbuster does not top every
    list merely by being everywhere, nor a pair seen once by a single user."""
    if not seeds:
        return {}
    params = _params(tenant_id, flt, exclude, k) | {"seeds": seeds}
    if model_version is not None:
        # One list per seed. A neighbour deleted since training is still in its lists; it has no
        # document vector, and the request drops candidates without one, so documents is joined
        # only for a filter.
        joined = "JOIN documents d ON d.id = n.neighbour" if flt.sql else ""
        sql = f"""
            SELECT n.neighbour, sum(n.score) AS s, (array_agg(l.item ORDER BY n.score DESC, l.item))[1]
            FROM item_neighbour_lists l CROSS JOIN LATERAL unnest(l.neighbours, l.scores) AS n(neighbour, score)
            {joined}
            WHERE l.tenant_id = :t AND l.version = :v AND l.item = ANY(CAST(:seeds AS uuid[]))
              AND NOT (n.neighbour = ANY(CAST(:exclude AS uuid[]))){flt.sql}
            GROUP BY n.neighbour ORDER BY s DESC, n.neighbour LIMIT :k
            """
        params["v"] = model_version
    else:
        # Pair rows go with both their documents (ON DELETE CASCADE): joined only for a filter.
        pairs_joined = "JOIN documents d ON d.id = c.item_b" if flt.sql else ""
        sql = f"""
            WITH scored AS (
                SELECT c.item_a, c.item_b,
                       c.users / (power(greatest(pa.likers, 1), 1 - CAST(:dmp AS float8))
                                  * power(greatest(pb.likers, 1), CAST(:dmp AS float8)))
                       * c.users / (c.users + CAST(:shrink AS float8)) AS s
                FROM co_engagement c
                JOIN item_popularity pa ON pa.tenant_id = c.tenant_id AND pa.document_id = c.item_a
                JOIN item_popularity pb ON pb.tenant_id = c.tenant_id AND pb.document_id = c.item_b
                WHERE c.tenant_id = :t AND c.item_a = ANY(CAST(:seeds AS uuid[]))
            )
            SELECT c.item_b, sum(c.s) AS s, (array_agg(c.item_a ORDER BY c.s DESC, c.item_a))[1] AS because
            FROM scored c {pairs_joined}
            WHERE NOT (c.item_b = ANY(CAST(:exclude AS uuid[]))){flt.sql}
            GROUP BY c.item_b ORDER BY s DESC, c.item_b LIMIT :k
            """
        params["dmp"] = damping
        params["shrink"] = shrink
    rows = await fetch(conn, sql, params)
    return {doc: CoEngaged(float(s), because) for doc, s, because in rows}


@dataclass
class Popular:
    scores: dict[uuid.UUID, float]
    by_feedback: bool  # False: the tenant has no recent feedback, so these are the best-rated documents


async def popular(
    conn: Executor,
    tenant_id: str,
    flt: CompiledFilter,
    exclude: list[uuid.UUID],
    k: int,
    config: LearningConfig,
) -> Popular:
    """Kept per document by every event (`feedback.coengagement.record_popularity`), with a key
    whose order is the decayed score's at any instant (migration 0008): the index on it hands
    over the most popular unseen documents by reading about `k` rows. The documents table is
    joined only when a filter needs its columns (popularity rows go with their document)."""
    joined = "JOIN documents d ON d.id = p.document_id" if flt.sql else ""
    sql = f"""
        SELECT p.document_id, p.score * exp(-CAST(:decay AS double precision)
                                   * greatest(extract(epoch FROM now() - p.updated_at), 0)) AS s
        FROM item_popularity p {joined}
        WHERE p.tenant_id = :t AND p.rank_key IS NOT NULL AND p.updated_at >= now() - make_interval(days => :window)
          AND NOT (p.document_id = ANY(CAST(:exclude AS uuid[]))){flt.sql}
        ORDER BY p.rank_key DESC, p.document_id LIMIT :k
        """
    decay = math.log(2) / (config.popularity_half_life_days * 86400.0)
    params = _params(tenant_id, flt, exclude, k) | {"decay": decay, "window": int(config.popularity_window_days)}
    rows = await fetch(conn, sql, params)
    if rows:
        return Popular({doc: float(s) for doc, s in rows}, by_feedback=True)
    fallback = f"""
        SELECT d.id, d.rating FROM documents d
        WHERE d.tenant_id = :t AND {_NOT_EXCLUDED}{flt.sql}
        ORDER BY d.rating DESC NULLS LAST, d.created_at DESC, d.id LIMIT :k
        """
    rows = await fetch(conn, fallback, _params(tenant_id, flt, exclude, k))
    # Scored by position, so unrated documents still rank (newest first) and still count as a source.
    return Popular({doc: (len(rows) - i) / len(rows) for i, (doc, _) in enumerate(rows)}, by_feedback=False)


async def vectors(conn: Executor, tenant_id: str, ids: list[uuid.UUID]) -> dict[uuid.UUID, Vector]:
    """Unit-length document vectors, decoded and normalised as one matrix. They are read in
    pgvector's binary form (`vector_send`: a 4-byte header, then big-endian float32s) as plain
    bytes: decoding ~150 vectors one by one through the driver's codec was a fifth of a request's
    CPU, and one `frombuffer` over all of them costs next to nothing."""
    if not ids:
        return {}
    rows = await fetch(
        conn,
        "SELECT document_id, vector_send(embedding) FROM document_vectors "
        "WHERE tenant_id = :t AND document_id = ANY(CAST(:ids AS uuid[]))",
        {"t": tenant_id, "ids": ids},
    )
    if not rows:
        return {}
    width = len(rows[0][1])  # one dimension per column, so every row has the same length
    packed = np.frombuffer(b"".join(raw for _, raw in rows), dtype=np.uint8).reshape(len(rows), width)
    matrix = np.ascontiguousarray(packed[:, _VECTOR_HEADER:]).view(">f4").astype(np.float32)
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    matrix /= np.where(norms > 0, norms, 1.0)
    return {doc: matrix[i] for i, (doc, _) in enumerate(rows)}


_VECTOR_HEADER = 4  # vector_send: dimension (int16) and an unused int16
