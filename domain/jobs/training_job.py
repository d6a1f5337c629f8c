"""Recommendation training as a queued job: on demand (`ragql train-recs --tenant T --queue`, the
`trainRecommendations` mutation), when a tenant's feedback has grown enough since its last model
(`train_if_grown`, asked by `training_trigger.TrainingTrigger`), and on the worker's schedule
(every `RAGQL_RECS_TRAIN_INTERVAL_S`, for the tenants with feedback since their last training).

A training job is one pgqueuer entry: the tenant in its headers (as every job, so the queue's
row-level security applies), a fresh job id as its payload, and the dedupe key
`train-recs:<tenant>`, so a tenant has at most one training queued or running however often it is
asked for. The job's body is `training.train_tenant` with that job id: if its worker is killed,
pgqueuer hands the job to another worker once the heartbeat is stale, and the job id makes the
rerun store one version, not two."""

from __future__ import annotations

import math
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from pgqueuer.queries import Queries
from sqlalchemy import text

from domain.jobs.model import TRAIN_RECS_ENTRYPOINT
from domain.jobs.store import TENANT_HEADER
from domain.persistence.database import Database
from domain.recommendations.training import DEFAULT_MAX_SIGNALS, TrainReport, train_tenant


def dedupe_key(tenant_id: str) -> str:
    return f"train-recs:{tenant_id}"


async def enqueue(db: Database, tenant_id: str, *, delay_s: float = 0.0) -> uuid.UUID | None:
    """Queue a training of the tenant, to start no sooner than `delay_s` from now; None if one is
    already queued or running."""
    job_id = uuid.uuid4()
    async with db.session(tenant_id) as session:
        connection = await session.connection()
        raw: Any = await connection.get_raw_connection()
        queries = Queries.from_asyncpg_connection(raw.driver_connection)
        ids = await queries.enqueue(
            TRAIN_RECS_ENTRYPOINT,
            job_id.bytes,
            execute_after=timedelta(seconds=delay_s) if delay_s > 0 else None,
            dedupe_key=dedupe_key(tenant_id),
            headers={TENANT_HEADER: tenant_id},
            on_conflict="skip",
        )
    return job_id if ids and ids[0] is not None else None


@dataclass(frozen=True)
class Training:
    """A training queued or running now (the queue's entry for the tenant)."""

    id: uuid.UUID
    running: bool
    run_after: datetime  # a queued one starts no sooner than this


_IN_FLIGHT_SQL = """
    SELECT payload, status::text = 'picked', execute_after FROM pgqueuer
    WHERE dedupe_key = :k AND status IN ('queued', 'picked')
    """


async def in_flight(db: Database, tenant_id: str) -> Training | None:
    async with db.session(tenant_id) as session:
        row = (await session.execute(text(_IN_FLIGHT_SQL), {"k": dedupe_key(tenant_id)})).first()
    return None if row is None else Training(uuid.UUID(bytes=bytes(row[0])), bool(row[1]), row[2])


async def request(db: Database, tenant_id: str) -> tuple[Training | None, bool]:
    """An on-demand training: queued to start now, or, if one is already queued or running, that
    one, brought forward if it was waiting out the trigger's spacing. Returns (the training, None
    if it already ended in the meantime; whether this call queued it)."""
    job_id = await enqueue(db, tenant_id)
    async with db.session(tenant_id) as session:
        if job_id is None:
            await session.execute(
                text(
                    "UPDATE pgqueuer SET execute_after = now() "
                    "WHERE dedupe_key = :k AND status = 'queued' AND execute_after > now()"
                ),
                {"k": dedupe_key(tenant_id)},
            )
        row = (await session.execute(text(_IN_FLIGHT_SQL), {"k": dedupe_key(tenant_id)})).first()
    training = None if row is None else Training(uuid.UUID(bytes=bytes(row[0])), bool(row[1]), row[2])
    return training, job_id is not None


@dataclass(frozen=True)
class AutoTrainPolicy:
    """When feedback alone queues a training (RAGQL_RECS_AUTOTRAIN_*): at least `min_events` new
    document events since the tenant's last ready model, and at least `min_growth` × the events
    that model learned from (so a big tenant retrains on a share of its history, not every few
    hundred events); the training starts no sooner than `spacing_s` after the last one ended."""

    min_events: int = 200  # 0: the trigger is off
    min_growth: float = 0.1
    spacing_s: float = 60.0

    @property
    def enabled(self) -> bool:
        return self.min_events > 0

    def needed(self, trained_events: int) -> int:
        """New events that make a tenant whose model learned from `trained_events` due."""
        return max(self.min_events, math.ceil(self.min_growth * trained_events))


@dataclass(frozen=True)
class ServedModel:
    """A tenant's newest ready model version."""

    version: int
    algorithm: str
    trained_at: datetime
    events: int  # the feedback events it learned from
    users: int
    items: int
    took_ms: float | None
    job_id: uuid.UUID | None  # the queued training that made it (None: trained in place)


@dataclass(frozen=True)
class Growth:
    """A tenant's feedback since its last ready model, as the trigger sees it (one statement, so
    the model and the count since it agree)."""

    new_events: int  # counted up to `needed` (the count stops there)
    needed: int
    since_trained_s: float | None  # None: no ready model yet
    training: Training | None  # one queued or running now
    model: ServedModel | None = None
    queued: uuid.UUID | None = None  # the training this check queued
    delay_s: float = 0.0

    @property
    def due(self) -> bool:
        return self.new_events >= self.needed


# One statement: the last ready model, the queue's entry, and the new events counted only up to
# what is needed (`feedback (tenant_id, seq)` reads them from the index, at most `needed` rows).
_GROWTH_SQL = """
    WITH m AS (
        SELECT version, algorithm, finished_at, events, users, items, took_ms, job_id, last_seq FROM recs_models
        WHERE tenant_id = :t AND status = 'ready' ORDER BY version DESC LIMIT 1
    ), need AS (
        SELECT greatest(
            CAST(:min AS bigint),
            CAST(ceil(CAST(:growth AS float8) * coalesce((SELECT events FROM m), 0)) AS bigint)) AS n
    )
    SELECT
        (SELECT count(*) FROM (
            SELECT 1 FROM feedback f
            WHERE f.tenant_id = :t AND f.document_id IS NOT NULL
              AND f.seq > coalesce((SELECT last_seq FROM m), 0)
            LIMIT (SELECT n FROM need)) AS x),
        (SELECT n FROM need),
        extract(epoch FROM clock_timestamp() - m.finished_at),
        q.payload, q.status::text = 'picked', q.execute_after,
        m.version, m.algorithm, m.finished_at, m.events, m.users, m.items, m.took_ms, m.job_id
    FROM (SELECT 1) AS one
    LEFT JOIN m ON true
    LEFT JOIN pgqueuer q ON q.dedupe_key = :k AND q.status IN ('queued', 'picked')
    """


async def growth(db: Database, tenant_id: str, policy: AutoTrainPolicy) -> Growth:
    async with db.session(tenant_id) as session:
        row = (
            await session.execute(
                text(_GROWTH_SQL),
                {"t": tenant_id, "k": dedupe_key(tenant_id), "min": policy.min_events, "growth": policy.min_growth},
            )
        ).one()
    new, needed, since, payload, picked, after, version, algorithm, at, events, users, items, took, job = row
    training = None if payload is None else Training(uuid.UUID(bytes=bytes(payload)), bool(picked), after)
    model = None
    if version is not None:
        model = ServedModel(
            int(version),
            str(algorithm),
            at,
            int(events),
            int(users),
            int(items),
            None if took is None else float(took),
            job,
        )
    return Growth(int(new), int(needed), None if since is None else float(since), training, model)


async def train_if_grown(db: Database, tenant_id: str, policy: AutoTrainPolicy) -> Growth:
    """The trigger's check: queue a training if the tenant's feedback has grown enough since its
    last ready model and none is queued or running; it starts once `spacing_s` has passed since
    that model was made (at once for a tenant with none)."""
    seen = await growth(db, tenant_id, policy)
    if not seen.due or seen.training is not None:
        return seen
    delay = 0.0 if seen.since_trained_s is None else max(0.0, policy.spacing_s - seen.since_trained_s)
    job_id = await enqueue(db, tenant_id, delay_s=delay)
    return Growth(seen.new_events, seen.needed, seen.since_trained_s, seen.training, seen.model, job_id, delay)


async def due(db: Database, tenants: list[str] | None = None) -> list[str]:
    """Tenants with a feedback event newer than what their latest ready model learned from (or with
    feedback and no model). Read as the owner, across tenants, as the worker reads its queue."""
    sql = """
        SELECT t.id FROM tenants t
        WHERE (CAST(:only AS text[]) IS NULL OR t.id = ANY(CAST(:only AS text[])))
          AND EXISTS (
            SELECT 1 FROM feedback f
            WHERE f.tenant_id = t.id AND f.document_id IS NOT NULL
              AND f.seq > coalesce((SELECT max(m.last_seq) FROM recs_models m
                                    WHERE m.tenant_id = t.id AND m.status = 'ready'), 0))
        ORDER BY t.id
        """
    async with db.engine.connect() as conn:
        rows = await conn.execute(text(sql), {"only": tenants})
        return [str(r[0]) for r in rows]


async def schedule_due(db: Database, tenants: list[str] | None = None) -> list[str]:
    """One scheduler tick: queue a training for every due tenant. Returns the tenants queued now
    (not those whose training was already queued or running)."""
    queued = []
    for tenant_id in await due(db, tenants):
        if await enqueue(db, tenant_id) is not None:
            queued.append(tenant_id)
    return queued


async def run(
    db: Database, tenant_id: str, job_id: uuid.UUID, *, worker: str, max_signals: int = DEFAULT_MAX_SIGNALS
) -> TrainReport:
    """The job's body, run by a worker."""
    return await train_tenant(db, tenant_id, job_id=job_id, worker=worker, max_signals=max_signals)


@dataclass(frozen=True)
class ModelStatus:
    """A tenant's served model (the newest ready version) and its training in flight."""

    model: ServedModel | None  # None: never trained
    new_events: int  # document events since, counted up to `needed` (or up to STATUS_COUNT_CAP when off)
    needed: int | None  # what makes the trigger queue the next one (None: the trigger is off)
    training: Training | None


# Off, the status still says how many events wait; counted up to this, as an index read.
STATUS_COUNT_CAP = 1_000_000


async def status(db: Database, tenant_id: str, policy: AutoTrainPolicy) -> ModelStatus:
    counting = policy if policy.enabled else AutoTrainPolicy(min_events=STATUS_COUNT_CAP, min_growth=0.0)
    seen = await growth(db, tenant_id, counting)
    return ModelStatus(seen.model, seen.new_events, seen.needed if policy.enabled else None, seen.training)
