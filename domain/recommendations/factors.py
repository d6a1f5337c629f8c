"""The trained model at request time: which version a tenant serves, the user's vector folded in
from their recent events, and the items that score highest against it (inner product, what ALS
scores with).

A version never changes once it is `ready`, so everything a request needs from it is loaded once
per process and kept: the item factors as one matrix, the Gram matrix YᵀY, and the document → row
index. A request then reads one small row (which version is current, through the tenant's own
row-level security, so another tenant's cached model is never reachable) and does the rest in
numpy: the fold-in's 500 items and the scoring of the whole catalogue are a few hundred
microseconds, where the same through SQL was 500 vector reads and an HNSW scan that had to step
over every seen item. With a metadata filter, the candidates still come from the HNSW index in
SQL, which applies the filter as it scans."""

from __future__ import annotations

import json
import threading
import uuid
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from sqlalchemy.ext.asyncio import AsyncSession

from domain.feedback.profiles import as_vector
from domain.persistence.database import url_key
from domain.recommendations import model
from domain.recommendations.sql import Executor, fetch
from domain.retrieval.filters import CompiledFilter

# Loaded versions kept per process, by the bytes of their factor matrices (10,000 items × 32
# factors is 1.3 MB): the oldest-used is dropped first.
CACHE_BYTES = 256 * 1024 * 1024


@dataclass(frozen=True)
class ActiveModel:
    tenant_id: str
    version: int
    gram: npt.NDArray[np.float64]
    regularization: float
    alpha: float
    damping: float
    ids: list[uuid.UUID]  # row order of `items`
    row: dict[uuid.UUID, int]
    items: npt.NDArray[np.float32]  # documents × factors

    @property
    def nbytes(self) -> int:
        return int(self.items.nbytes + self.gram.nbytes) + 64 * len(self.ids)

    def factors_of(self, ids: list[uuid.UUID]) -> dict[uuid.UUID, npt.NDArray[np.float32]]:
        return {doc: self.items[self.row[doc]] for doc in ids if doc in self.row}


class _Cache:
    def __init__(self, limit_bytes: int) -> None:
        self.limit = limit_bytes
        self.entries: OrderedDict[tuple[str, str, int], ActiveModel] = OrderedDict()
        self.lock = threading.Lock()  # the CLI and tests call from more than one thread

    def get(self, key: tuple[str, str, int]) -> ActiveModel | None:
        with self.lock:
            found = self.entries.get(key)
            if found is not None:
                self.entries.move_to_end(key)
            return found

    def put(self, key: tuple[str, str, int], found: ActiveModel) -> None:
        with self.lock:
            self.entries[key] = found
            while len(self.entries) > 1 and sum(m.nbytes for m in self.entries.values()) > self.limit:
                self.entries.popitem(last=False)

    def clear(self) -> None:
        with self.lock:
            self.entries.clear()


_CACHE = _Cache(CACHE_BYTES)


async def active(session: AsyncSession, tenant_id: str) -> ActiveModel | None:
    """The newest ready version, loaded. The version is read through the session's row-level
    security on every call: a session of another tenant finds no row, so it never reaches this
    tenant's cached model."""
    rows = await fetch(
        session,
        "SELECT version FROM recs_models WHERE tenant_id = :t AND status = 'ready' ORDER BY version DESC LIMIT 1",
        {"t": tenant_id},
    )
    database = url_key((await session.connection()).engine.url)  # what `Database.key` says
    return await loaded(session, tenant_id, int(rows[0][0]) if rows else None, database=database)


async def loaded(conn: Executor, tenant_id: str, version: int | None, *, database: str) -> ActiveModel | None:
    """`version`, loaded (None: no model). The caller read `version` through this connection's
    row-level security, as `active` does (a request reads it with the user's state, in one
    statement), so another tenant's cached model stays out of reach. `database` names the
    database in the cache's key: one process (a test run, an eval) may talk to several."""
    if version is None:
        return None
    key = (database, tenant_id, version)
    found = _CACHE.get(key)
    if found is None:
        found = await _load(conn, tenant_id, key[2])
        _CACHE.put(key, found)
    return found


async def _load(conn: Executor, tenant_id: str, version: int) -> ActiveModel:
    params = {"t": tenant_id, "v": version}
    (gram, settings), *_ = await fetch(
        conn, "SELECT gram, settings FROM recs_models WHERE tenant_id = :t AND version = :v", params
    )
    if isinstance(settings, str):  # jsonb without a codec arrives as its text
        settings = json.loads(settings)
    factors_sql = "SELECT document_id, factor FROM item_factors WHERE tenant_id = :t AND version = :v"
    rows = await fetch(conn, factors_sql, params)
    k = int(settings["factors"])
    ids = [doc for doc, _ in rows]
    items = np.stack([as_vector(vec) for _, vec in rows]) if rows else np.zeros((0, k), np.float32)
    return ActiveModel(
        tenant_id=tenant_id,
        version=version,
        gram=np.asarray(gram, dtype=np.float64).reshape(k, k),
        regularization=float(settings["regularization"]),
        alpha=float(settings["alpha"]),
        damping=float(settings["neighbour_damping"]),
        ids=ids,
        row={doc: i for i, doc in enumerate(ids)},
        items=items.astype(np.float32),
    )


def user_vector(active_model: ActiveModel, signals: dict[uuid.UUID, float]) -> npt.NDArray[np.float64] | None:
    """The ALS fold-in over the user's documents that have factors; None if none has."""
    rows = [active_model.row[doc] for doc in signals if doc in active_model.row]
    if not rows:
        return None
    known = [doc for doc in signals if doc in active_model.row]
    conf = np.array([model.confidence(signals[doc], active_model.alpha) for doc in known])
    x = model.fold_in(active_model.gram, active_model.items[rows], conf, active_model.regularization)
    return x if float(np.abs(x).sum()) > 0 else None


def _scores(
    active_model: ActiveModel, user: npt.NDArray[np.float64], exclude: list[uuid.UUID]
) -> npt.NDArray[np.float64]:
    """Every document's inner product with `user` (one matrix-vector product), -inf for `exclude`."""
    scores = active_model.items.astype(np.float64) @ user
    seen = [active_model.row[doc] for doc in exclude if doc in active_model.row]
    scores[seen] = -np.inf
    return scores


def _best_first(scores: npt.NDArray[np.float64], k: int) -> npt.NDArray[np.intp]:
    """The rows of the `k` highest finite scores, best first; ties broken by row, so the order is
    the same on every call."""
    k = min(k, int(np.isfinite(scores).sum()))
    if k <= 0:
        return np.zeros(0, dtype=np.intp)
    top = np.argpartition(-scores, k - 1)[:k] if k < len(scores) else np.arange(len(scores))
    top = top[np.isfinite(scores[top])]
    return top[np.lexsort((top, -scores[top]))]


def top_scored(
    active_model: ActiveModel, user: npt.NDArray[np.float64], exclude: list[uuid.UUID], k: int
) -> list[uuid.UUID]:
    """The `k` unseen documents with the highest inner product with `user`, best first: one
    matrix-vector product over the catalogue, exact (no index recall to lose)."""
    if k <= 0 or not active_model.ids:
        return []
    return [active_model.ids[i] for i in _best_first(_scores(active_model, user, exclude), k)]


# The first round of `nearest_filtered` checks this many of the best-scored documents (at least
# 4 x k); each further round checks four times as many, so a filter that passes one document in
# a thousand costs a handful of statements, not one per document.
_FIRST_ROUND = 256


async def nearest_filtered(
    conn: Executor,
    active_model: ActiveModel,
    user: npt.NDArray[np.float64],
    flt: CompiledFilter,
    exclude: list[uuid.UUID],
    k: int,
) -> list[uuid.UUID]:
    """`top_scored` under a metadata filter, exact as well: the catalogue is scored in memory, and
    the filter is applied in SQL to the best-scored documents, a growing round at a time, until
    `k` pass or every document was checked. (An HNSW index over every tenant's factors did this
    until migration 0013: its scan visits other tenants' and versions' rows too, and stops after
    `hnsw.max_scan_tuples`, so a small tenant or a selective filter got fewer than `k`.)"""
    if k <= 0 or not active_model.ids:
        return []
    scores = _scores(active_model, user, exclude)
    finite = int(np.isfinite(scores).sum())
    passed: list[uuid.UUID] = []
    start, size = 0, max(_FIRST_ROUND, 4 * k)
    while start < finite and len(passed) < k:
        # Only as much of the order as this round needs: a partition, then a sort of its part.
        ids = [active_model.ids[i] for i in _best_first(scores, start + size)[start:]]
        sql = f"""
            SELECT d.id
            FROM unnest(CAST(:ids AS uuid[])) WITH ORDINALITY AS r(id, o)
            JOIN documents d ON d.id = r.id
            WHERE d.tenant_id = :t{flt.sql}
            ORDER BY r.o
            LIMIT :k
            """
        rows = await fetch(conn, sql, {"ids": ids, "t": active_model.tenant_id, "k": k - len(passed), **flt.params})
        passed.extend(doc for (doc,) in rows)
        start, size = start + size, 4 * size
    return passed
