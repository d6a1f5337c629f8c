"""Recommendation training as a queued job: on demand (`ragql train-recs --tenant T --queue`) and
on the worker's schedule (every `RAGQL_RECS_TRAIN_INTERVAL_S`, for the tenants with feedback since
their last training).

A training job is one pgqueuer entry: the tenant in its headers (as every job, so the queue's
row-level security applies), a fresh job id as its payload, and the dedupe key
`train-recs:<tenant>`, so a tenant has at most one training queued or running however often it is
asked for. The job's body is `training.train_tenant` with that job id: if its worker is killed,
pgqueuer hands the job to another worker once the heartbeat is stale, and the job id makes the
rerun store one version, not two."""

from __future__ import annotations

import uuid
from typing import Any

from pgqueuer.queries import Queries
from sqlalchemy import text

from domain.jobs.model import TRAIN_RECS_ENTRYPOINT
from domain.jobs.store import TENANT_HEADER
from domain.persistence.database import Database
from domain.recommendations.training import DEFAULT_MAX_SIGNALS, TrainReport, train_tenant


def dedupe_key(tenant_id: str) -> str:
    return f"train-recs:{tenant_id}"


async def enqueue(db: Database, tenant_id: str) -> uuid.UUID | None:
    """Queue a training of the tenant; None if one is already queued or running."""
    job_id = uuid.uuid4()
    async with db.session(tenant_id) as session:
        connection = await session.connection()
        raw: Any = await connection.get_raw_connection()
        queries = Queries.from_asyncpg_connection(raw.driver_connection)
        ids = await queries.enqueue(
            TRAIN_RECS_ENTRYPOINT,
            job_id.bytes,
            dedupe_key=dedupe_key(tenant_id),
            headers={TENANT_HEADER: tenant_id},
            on_conflict="skip",
        )
    return job_id if ids and ids[0] is not None else None


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
