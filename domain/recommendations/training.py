"""Training a tenant's recommendation model: read the tenant's feedback, fit ALS, compute the
normalised neighbour lists, and store both as a new version.

`train_tenant` is the job's whole body (the CLI runs it now: `ragql train-recs --tenant T`; the
worker's scheduled job calls the same function). Reading happens in one transaction and writing
in another, and the new version only becomes visible, as `ready`, when that second transaction
commits: a training killed half-way leaves no half-written model behind, the previous version
keeps serving, and running the job again is safe. Two trainings of one tenant are serialised by
an advisory lock, so versions are numbered without gaps or races."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass

import numpy as np
import scipy.sparse as sp
from sqlalchemy import text

from domain.persistence.database import Database
from domain.recommendations import model
from domain.recommendations.candidates import SIGNAL_SQL
from domain.recommendations.model import ModelConfig

ALGORITHM = "implicit-als"
KEEP_VERSIONS = 2  # the one served and the one before, for a quick look back
Progress = Callable[[str], None]


@dataclass(frozen=True)
class TrainingData:
    users: list[str]
    items: list[uuid.UUID]
    confidences: sp.csr_matrix  # users × items, signed (see `model.confidence`)
    events: int


@dataclass(frozen=True)
class TrainReport:
    tenant_id: str
    version: int | None  # None: nothing to learn from yet
    events: int
    users: int
    items: int
    neighbour_pairs: int
    fit_ms: float
    took_ms: float


async def read_signals(db: Database, tenant_id: str, alpha: float) -> TrainingData:
    """One signal per (user, document) the tenant has feedback on, the same expression the
    request's fold-in reads, ordered so that the matrix is the same for the same events."""
    sql = f"""
        SELECT f.user_id, f.document_id, {SIGNAL_SQL} AS signal, count(*) AS n
        FROM feedback f JOIN documents d ON d.id = f.document_id
        WHERE f.tenant_id = :t
        GROUP BY f.user_id, f.document_id
        ORDER BY f.user_id, f.document_id
        """
    async with db.session(tenant_id) as session:
        rows = (await session.execute(text(sql), {"t": tenant_id})).all()
    users = sorted({r[0] for r in rows})
    items = sorted({r[1] for r in rows})
    user_index = {u: i for i, u in enumerate(users)}
    item_index = {d: i for i, d in enumerate(items)}
    r, c, v = [], [], []
    for user_id, doc, signal, _n in rows:
        conf = model.confidence(float(signal or 0.0), alpha)
        if conf != 0.0:
            r.append(user_index[user_id])
            c.append(item_index[doc])
            v.append(conf)
    matrix = sp.csr_matrix((v, (r, c)), shape=(len(users), len(items)), dtype=np.float32)
    return TrainingData(users, items, matrix, events=sum(int(row[3]) for row in rows))


def _vector_literal(row: np.ndarray) -> str:
    return "[" + ",".join(f"{x:.7g}" for x in row) + "]"


async def _store(
    db: Database,
    tenant_id: str,
    config: ModelConfig,
    data: TrainingData,
    item_factors: np.ndarray,
    neighbours: tuple[np.ndarray, np.ndarray, np.ndarray],
    stats: dict[str, float],
) -> int:
    a, b, score = neighbours
    async with db.session(tenant_id) as session:
        await session.execute(text("SELECT pg_advisory_xact_lock(hashtextextended(:k, 3))"), {"k": tenant_id})
        version = int(
            (
                await session.execute(
                    text("SELECT coalesce(max(version), 0) + 1 FROM recs_models WHERE tenant_id = :t"), {"t": tenant_id}
                )
            ).scalar_one()
        )
        await session.execute(
            text(
                """
                INSERT INTO recs_models (tenant_id, version, status, algorithm, settings, gram, events, users, items,
                                         took_ms, finished_at)
                VALUES (:t, :v, 'ready', :alg, CAST(:settings AS jsonb), :gram, :events, :users, :items, :took, now())
                """
            ),
            {
                "t": tenant_id,
                "v": version,
                "alg": ALGORITHM,
                "settings": _json(asdict(config)),
                "gram": [float(x) for x in model.gram(item_factors).ravel()],
                "events": data.events,
                "users": len(data.users),
                "items": len(data.items),
                "took": stats["took_ms"],
            },
        )
        await session.execute(
            text(
                """
                INSERT INTO item_factors (tenant_id, version, document_id, factor)
                SELECT :t, :v, doc, CAST(vec AS vector)
                FROM unnest(CAST(:docs AS uuid[]), CAST(:vecs AS text[])) AS x(doc, vec)
                """
            ),
            {"t": tenant_id, "v": version, "docs": data.items, "vecs": [_vector_literal(r) for r in item_factors]},
        )
        await session.execute(
            text(
                """
                INSERT INTO item_neighbours (tenant_id, version, item, neighbour, score)
                SELECT :t, :v, i, n, s
                FROM unnest(CAST(:a AS uuid[]), CAST(:b AS uuid[]), CAST(:s AS real[])) AS x(i, n, s)
                """
            ),
            {
                "t": tenant_id,
                "v": version,
                "a": [data.items[i] for i in a],
                "b": [data.items[i] for i in b],
                "s": [float(x) for x in score],
            },
        )
        await session.execute(
            text("DELETE FROM recs_models WHERE tenant_id = :t AND version <= :old"),
            {"t": tenant_id, "old": version - KEEP_VERSIONS},
        )
    return version


def _json(value: object) -> str:
    import json

    return json.dumps(value, sort_keys=True)


async def train_tenant(
    db: Database, tenant_id: str, config: ModelConfig | None = None, *, progress: Progress | None = None
) -> TrainReport:
    """The job: train on everything the tenant's users did, store it as the next version."""
    config = config or ModelConfig()
    if config.factors != model.STORED_FACTORS:
        raise ValueError(f"item_factors stores {model.STORED_FACTORS} dimensions; got factors={config.factors}")
    started = time.perf_counter()
    say = progress or (lambda _msg: None)
    say("reading feedback")
    data = await read_signals(db, tenant_id, config.alpha)
    if data.confidences.nnz == 0:
        took = (time.perf_counter() - started) * 1000
        return TrainReport(tenant_id, None, data.events, len(data.users), len(data.items), 0, 0.0, took)
    say(f"fitting ALS on {data.confidences.nnz} user-item signals")
    fit_started = time.perf_counter()
    # CPU-bound: off the event loop, so a server or worker stays responsive while it trains.
    _, item_factors = await asyncio.to_thread(model.fit, data.confidences, config)
    neighbours = await asyncio.to_thread(model.neighbours, model.liked_matrix(data.confidences), config)
    fit_ms = (time.perf_counter() - fit_started) * 1000
    say(f"storing {len(data.items)} item factors and {len(neighbours[0])} neighbour pairs")
    stats = {"took_ms": (time.perf_counter() - started) * 1000}
    version = await _store(db, tenant_id, config, data, item_factors, neighbours, stats)
    took = (time.perf_counter() - started) * 1000
    return TrainReport(
        tenant_id, version, data.events, len(data.users), len(data.items), len(neighbours[0]), fit_ms, took
    )
