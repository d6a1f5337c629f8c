"""The trained model at request time: which version a tenant serves, the factors of a few items,
the user's vector folded in from their recent events, and the items nearest to it in the HNSW
index (inner product, what ALS scores with).

A version never changes once it is `ready`, so its Gram matrix is cached per (tenant, version):
a request reads one small row to learn the version and the factors of the user's own items."""

from __future__ import annotations

import uuid
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from domain.feedback.profiles import as_vector
from domain.recommendations import model
from domain.retrieval.filters import CompiledFilter


@dataclass(frozen=True)
class ActiveModel:
    version: int
    gram: npt.NDArray[np.float64]
    regularization: float
    alpha: float
    damping: float


_CACHE: OrderedDict[tuple[str, int], ActiveModel] = OrderedDict()
_CACHE_SIZE = 256


async def active(session: AsyncSession, tenant_id: str) -> ActiveModel | None:
    row = (
        await session.execute(
            text(
                "SELECT version FROM recs_models WHERE tenant_id = :t AND status = 'ready' "
                "ORDER BY version DESC LIMIT 1"
            ),
            {"t": tenant_id},
        )
    ).first()
    if row is None:
        return None
    key = (tenant_id, int(row[0]))
    if key in _CACHE:
        _CACHE.move_to_end(key)
        return _CACHE[key]
    gram, settings = (
        await session.execute(
            text("SELECT gram, settings FROM recs_models WHERE tenant_id = :t AND version = :v"),
            {"t": tenant_id, "v": key[1]},
        )
    ).one()
    k = int(settings["factors"])
    found = ActiveModel(
        version=key[1],
        gram=np.asarray(gram, dtype=np.float64).reshape(k, k),
        regularization=float(settings["regularization"]),
        alpha=float(settings["alpha"]),
        damping=float(settings["neighbour_damping"]),
    )
    _CACHE[key] = found
    while len(_CACHE) > _CACHE_SIZE:
        _CACHE.popitem(last=False)
    return found


async def of_items(
    session: AsyncSession, tenant_id: str, version: int, ids: list[uuid.UUID]
) -> dict[uuid.UUID, npt.NDArray[np.float32]]:
    if not ids:
        return {}
    rows = await session.execute(
        text(
            "SELECT document_id, factor FROM item_factors "
            "WHERE tenant_id = :t AND version = :v AND document_id = ANY(CAST(:ids AS uuid[]))"
        ),
        {"t": tenant_id, "v": version, "ids": ids},
    )
    return {doc: as_vector(vec) for doc, vec in rows.all()}


def user_vector(
    active_model: ActiveModel, signals: dict[uuid.UUID, float], item_factors: dict[uuid.UUID, npt.NDArray[np.float32]]
) -> npt.NDArray[np.float64] | None:
    """The ALS fold-in over the user's documents that have factors; None if none has."""
    known = [doc for doc in signals if doc in item_factors]
    if not known:
        return None
    vectors = np.stack([item_factors[doc] for doc in known])
    conf = np.array([model.confidence(signals[doc], active_model.alpha) for doc in known])
    x = model.fold_in(active_model.gram, vectors, conf, active_model.regularization)
    return x if float(np.abs(x).sum()) > 0 else None


async def nearest(
    session: AsyncSession,
    tenant_id: str,
    version: int,
    user: npt.NDArray[np.float64],
    flt: CompiledFilter,
    exclude: list[uuid.UUID],
    k: int,
) -> dict[uuid.UUID, npt.NDArray[np.float32]]:
    """The `k` unseen documents with the highest inner product with `user`, and their factors.
    Iterative index scans let the HNSW index keep going past excluded or filtered rows."""
    await session.execute(text("SET LOCAL hnsw.iterative_scan = relaxed_order"))
    sql = f"""
        SELECT f.document_id, f.factor
        FROM item_factors f JOIN documents d ON d.id = f.document_id
        WHERE f.tenant_id = :t AND f.version = :v AND NOT (d.id = ANY(CAST(:exclude AS uuid[]))){flt.sql}
        ORDER BY f.factor <#> CAST(:q AS vector) LIMIT :k
        """
    params = {"t": tenant_id, "v": version, "exclude": exclude, "k": k, "q": user.astype(np.float32), **flt.params}
    rows = await session.execute(text(sql), params)
    return {doc: as_vector(vec) for doc, vec in rows.all()}
