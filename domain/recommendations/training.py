"""Training a tenant's recommendation model: read the tenant's feedback, fit ALS, compute the
normalised neighbour lists, and store both as a new version.

`train_tenant` is the job's whole body: the worker runs it for a queued training (on demand,
`ragql train-recs --tenant T --queue`, or on the schedule, `domain/jobs/training_job.py`), and
`ragql train-recs --tenant T` runs it in place. One training of a tenant at a time: a session
advisory lock is held for the whole run, on a connection of its own, and it goes with that
connection, so a worker killed mid-training frees it at once. Steps:
1. under the lock, a `training` row reserves the next version (committed, so an operator, or a
   test, sees the training in progress and which worker runs it); `training` rows left by a
   killed run are removed first, since nobody else can be training while we hold the lock;
2. the fit, off the event loop;
3. factors and neighbours are written and the row turns `ready` in one transaction: a training
   killed before that leaves no half-written model, and the previous version keeps serving.
A queued training carries a job id, stored with its version (unique per tenant): the same job run
again after its worker died past step 3 finds its version and stores no second one.

Tenant limits: at most `max_signals` (user, document) signals are read, the most recent first,
so one tenant's training is bounded in memory and time whatever its history."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import asdict, dataclass

import numpy as np
import scipy.sparse as sp
from sqlalchemy import text

from domain.persistence.database import Database
from domain.recommendations import model
from domain.recommendations.candidates import SIGNAL_SQL
from domain.recommendations.model import ModelConfig

log = logging.getLogger("ragql.recs.training")

ALGORITHM = "weighted-als"  # ALS with popularity-weighted missing entries (`model.fit_weighted`)
UNIFORM_ALGORITHM = "implicit-als"  # a config with uniform missing weights: the `implicit` package
KEEP_VERSIONS = 2  # the one served and the one before, for a quick look back
Progress = Callable[[str], None]


# (user, document) signals one training reads at most, newest first (RAGQL_RECS_TRAIN_MAX_SIGNALS).
DEFAULT_MAX_SIGNALS = 2_000_000
_LOCK_SQL = "hashtextextended(:k, 3)"


@dataclass(frozen=True)
class TrainingData:
    users: list[str]
    items: list[uuid.UUID]
    confidences: sp.csr_matrix  # users × items, signed (see `model.confidence`)
    events: int
    last_seq: int  # the newest feedback event read


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
    reused: bool = False  # this job's version was already stored (a rerun after a kill)


async def read_signals(
    db: Database, tenant_id: str, alpha: float, max_signals: int = DEFAULT_MAX_SIGNALS
) -> TrainingData:
    """One signal per (user, document) the tenant has feedback on, the same expression the
    request's fold-in reads; the `max_signals` most recent, ordered so that the matrix is the
    same for the same events."""
    sql = f"""
        SELECT f.user_id, f.document_id, {SIGNAL_SQL} AS signal, count(*) AS n, max(f.seq) AS last
        FROM feedback f JOIN documents d ON d.id = f.document_id
        WHERE f.tenant_id = :t
        GROUP BY f.user_id, f.document_id
        ORDER BY last DESC LIMIT :cap
        """
    async with db.session(tenant_id) as session:
        fetched = (await session.execute(text(sql), {"t": tenant_id, "cap": max_signals})).all()
    rows = sorted(fetched, key=lambda r: (r[0], r[1]))
    users = sorted({r[0] for r in rows})
    items = sorted({r[1] for r in rows})
    user_index = {u: i for i, u in enumerate(users)}
    item_index = {d: i for i, d in enumerate(items)}
    r, c, v = [], [], []
    for user_id, doc, signal, _n, _last in rows:
        conf = model.confidence(float(signal or 0.0), alpha)
        if conf != 0.0:
            r.append(user_index[user_id])
            c.append(item_index[doc])
            v.append(conf)
    matrix = sp.csr_matrix((v, (r, c)), shape=(len(users), len(items)), dtype=np.float32)
    last_seq = max((int(row[4]) for row in rows), default=0)
    return TrainingData(users, items, matrix, events=sum(int(row[3]) for row in rows), last_seq=last_seq)


def _vector_literal(row: np.ndarray) -> str:
    return "[" + ",".join(f"{x:.7g}" for x in row) + "]"


async def _reserve(
    db: Database, tenant_id: str, config: ModelConfig, job_id: uuid.UUID | None, worker: str
) -> tuple[int, bool]:
    """(version, already stored). Called with the tenant's training lock held."""
    async with db.session(tenant_id) as session:
        if job_id is not None:
            done = (
                await session.execute(
                    text("SELECT version FROM recs_models WHERE tenant_id = :t AND job_id = :j AND status = 'ready'"),
                    {"t": tenant_id, "j": job_id},
                )
            ).scalar()
            if done is not None:
                return int(done), True
        # Left by a run that died: with the lock held, no one else is training this tenant.
        await session.execute(
            text("DELETE FROM recs_models WHERE tenant_id = :t AND status = 'training'"), {"t": tenant_id}
        )
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
                INSERT INTO recs_models (tenant_id, version, status, algorithm, settings, job_id, worker)
                VALUES (:t, :v, 'training', :alg, CAST(:settings AS jsonb), :j, :w)
                """
            ),
            {
                "t": tenant_id,
                "v": version,
                "alg": UNIFORM_ALGORITHM if config.uniform else ALGORITHM,
                "settings": _json(asdict(config)),
                "j": job_id,
                "w": worker,
            },
        )
    return version, False


async def _store(
    db: Database,
    tenant_id: str,
    version: int,
    data: TrainingData,
    item_factors: np.ndarray,
    neighbours: tuple[np.ndarray, np.ndarray, np.ndarray],
    took_ms: float,
    missing: np.ndarray | None = None,
) -> None:
    a, b, score = neighbours
    async with db.session(tenant_id) as session:
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
        # One row per item (0012): the pairs go over flat, each item's best first as
        # `model.neighbours` returns them, and are grouped here in that order.
        await session.execute(
            text(
                """
                INSERT INTO item_neighbour_lists (tenant_id, version, item, neighbours, scores)
                SELECT :t, :v, i, array_agg(n ORDER BY o), array_agg(s ORDER BY o)
                FROM unnest(CAST(:a AS uuid[]), CAST(:b AS uuid[]), CAST(:s AS real[])) WITH ORDINALITY AS x(i, n, s, o)
                GROUP BY i
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
        updated = await session.execute(
            text(
                """
                UPDATE recs_models SET status = 'ready', gram = :gram, events = :events, users = :users,
                       items = :items, took_ms = :took, last_seq = :last, finished_at = now()
                WHERE tenant_id = :t AND version = :v AND status = 'training'
                """
            ),
            {
                "t": tenant_id,
                "v": version,
                "gram": [float(x) for x in model.gram(item_factors, missing).ravel()],
                "events": data.events,
                "users": len(data.users),
                "items": len(data.items),
                "took": took_ms,
                "last": data.last_seq,
            },
        )
        if getattr(updated, "rowcount", 1) != 1:
            raise RuntimeError(f"training row {tenant_id} v{version} vanished while training")
        await session.execute(
            text("DELETE FROM recs_models WHERE tenant_id = :t AND version <= :old"),
            {"t": tenant_id, "old": version - KEEP_VERSIONS},
        )


# A training replaces a version's rows wholesale, faster than autovacuum notices. Until it does,
# the planner takes a new tenant's lists for one row and joins a filtered request's documents by
# the wrong index: 1 s instead of 2 ms for a 500-event user (`python -m bench recs-scale`).
_TRAINED_TABLES = ("item_neighbour_lists", "item_factors")


async def _refresh_statistics(db: Database) -> None:
    """ANALYZE the tables a training wrote (as their owner: the tenant role may not), a sample
    of 30,000 rows each whatever their size. Best effort: stale statistics cost time, not data."""
    try:
        async with db.engine.connect() as conn:
            for table in _TRAINED_TABLES:
                await conn.execute(text(f"ANALYZE {table}"))
            await conn.commit()
    except Exception:
        log.warning("could not refresh the planner's statistics after training", exc_info=True)


@asynccontextmanager
async def _training_lock(db: Database, tenant_id: str) -> AsyncIterator[None]:
    """A session advisory lock on a connection of its own, for the whole training: released when
    the training ends, and by PostgreSQL when its connection dies with a killed worker."""
    async with db.engine.connect() as conn:
        await conn.execute(text(f"SELECT pg_advisory_lock({_LOCK_SQL})"), {"k": tenant_id})
        await conn.commit()
        try:
            yield
        finally:
            await conn.execute(text(f"SELECT pg_advisory_unlock({_LOCK_SQL})"), {"k": tenant_id})
            await conn.commit()


def _json(value: object) -> str:
    import json

    return json.dumps(value, sort_keys=True)


async def train_tenant(
    db: Database,
    tenant_id: str,
    config: ModelConfig | None = None,
    *,
    progress: Progress | None = None,
    job_id: uuid.UUID | None = None,
    worker: str = "",
    max_signals: int = DEFAULT_MAX_SIGNALS,
) -> TrainReport:
    """The job: train on the tenant's users' signals (at most `max_signals`, newest first), store
    it as the next version."""
    config = config or ModelConfig()
    if config.factors != model.STORED_FACTORS:
        raise ValueError(f"item_factors stores {model.STORED_FACTORS} dimensions; got factors={config.factors}")
    started = time.perf_counter()
    say = progress or (lambda _msg: None)
    async with _training_lock(db, tenant_id):
        say("reading feedback")
        data = await read_signals(db, tenant_id, config.alpha, max_signals)
        if data.confidences.nnz == 0:
            took = (time.perf_counter() - started) * 1000
            return TrainReport(tenant_id, None, data.events, len(data.users), len(data.items), 0, 0.0, took)
        version, reused = await _reserve(db, tenant_id, config, job_id, worker)
        if reused:
            took = (time.perf_counter() - started) * 1000
            return TrainReport(tenant_id, version, data.events, len(data.users), len(data.items), 0, 0.0, took, True)
        say(f"fitting ALS on {data.confidences.nnz} user-item signals")
        fit_started = time.perf_counter()
        # CPU-bound: off the event loop, so a server or worker stays responsive (and keeps its
        # queue heartbeats going) while it trains.
        _, item_factors = await asyncio.to_thread(model.fit, data.confidences, config)
        neighbours = await asyncio.to_thread(model.neighbours, model.liked_matrix(data.confidences), config)
        fit_ms = (time.perf_counter() - fit_started) * 1000
        say(f"storing {len(data.items)} item factors and {len(neighbours[0])} neighbour pairs")
        # The fold-in's Gram carries the same missing-entry weights training used.
        missing = None if config.uniform else model.missing_weights(data.confidences, config)
        took_ms = (time.perf_counter() - started) * 1000
        await _store(db, tenant_id, version, data, item_factors, neighbours, took_ms, missing)
        await _refresh_statistics(db)
    took = (time.perf_counter() - started) * 1000
    return TrainReport(
        tenant_id, version, data.events, len(data.users), len(data.items), len(neighbours[0]), fit_ms, took
    )
