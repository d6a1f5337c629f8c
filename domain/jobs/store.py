"""Creating, reading, listing and cancelling jobs. Every call runs in a tenant's transaction, so
row-level security keeps one tenant's jobs from another: a foreign job id is simply not found.

A job row, its items and its queue entry are written in one transaction: once the request that
created a job returns, the job is durable and queued; if anything fails, none of it exists."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from typing import Any

from pgqueuer.queries import Queries
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from domain import paging
from domain.errors import InvalidInput, NotFound
from domain.jobs.error_codes import JobErrorCode
from domain.jobs.model import (
    ENTRYPOINTS,
    JOB_COLUMNS,
    MAX_JOB_ITEMS,
    ItemError,
    Job,
    JobKind,
    JobState,
    NewItem,
    job_from_row,
)
from domain.paging import check_first
from domain.persistence.database import Database

TENANT_HEADER = "ragql_tenant"


def check_size(count: int, field: str, limit: int = MAX_JOB_ITEMS) -> None:
    if count == 0:
        raise InvalidInput(JobErrorCode.EMPTY_JOB, "send at least one item", field=field)
    if count > limit:
        raise InvalidInput(
            JobErrorCode.JOB_TOO_LARGE,
            f"{count} items in one job; a job holds at most {limit}: split the input into several jobs",
            field=field,
        )


async def enqueue(session: AsyncSession, kind: JobKind, job_id: uuid.UUID, tenant_id: str) -> int:
    """Queue the job on the session's own connection, inside its transaction (pgqueuer over the
    asyncpg connection SQLAlchemy holds), so the queue entry commits or rolls back with the job."""
    connection = await session.connection()
    raw: Any = await connection.get_raw_connection()
    queries = Queries.from_asyncpg_connection(raw.driver_connection)
    ids = await queries.enqueue(ENTRYPOINTS[kind], job_id.bytes, headers={TENANT_HEADER: tenant_id})
    return int(ids[0])


async def create(
    db: Database,
    tenant_id: str,
    kind: JobKind,
    items: list[NewItem],
    *,
    created_by: str,
    field_prefix: str,
    fingerprint: str | None = None,
) -> Job:
    check_size(len(items), field_prefix)
    job_id = uuid.uuid4()
    failed = sum(1 for item in items if item.error is not None)
    state = JobState.FAILED if failed == len(items) else JobState.QUEUED
    async with db.session(tenant_id) as session:
        await session.execute(
            text(
                """
                INSERT INTO ingestion_jobs (id, tenant_id, kind, state, items_total, items_done, failed_count,
                                            field_prefix, source_fingerprint, created_by, finished_at)
                VALUES (:id, :t, :kind, :state, :total, :failed, :failed, :prefix, :fp, :by,
                        CASE WHEN :state = 'FAILED' THEN clock_timestamp() END)
                """
            ),
            {
                "id": job_id,
                "t": tenant_id,
                "kind": kind.value,
                "state": state.value,
                "total": len(items),
                "failed": failed,
                "prefix": field_prefix,
                "fp": fingerprint,
                "by": created_by,
            },
        )
        await session.execute(
            text(
                """
                INSERT INTO ingestion_job_items (job_id, tenant_id, ordinal, input, outcome, error_field,
                                                 error_code, error_message)
                VALUES (:j, :t, :o, CAST(:input AS jsonb), :outcome, :ef, :ec, :em)
                """
            ),
            [
                {
                    "j": job_id,
                    "t": tenant_id,
                    "o": i,
                    "input": None if item.error else json.dumps(item.payload),
                    "outcome": "FAILED" if item.error else None,
                    "ef": item.error.field if item.error else None,
                    "ec": item.error.code if item.error else None,
                    "em": item.error.message if item.error else None,
                }
                for i, item in enumerate(items)
            ],
        )
        if state is JobState.QUEUED:
            queue_id = await enqueue(session, kind, job_id, tenant_id)
            await session.execute(
                text("UPDATE ingestion_jobs SET queue_job_id = :q WHERE id = :id"), {"q": queue_id, "id": job_id}
            )
        return await read_in(session, job_id)


async def read_in(session: AsyncSession, job_id: uuid.UUID, *, lock: bool = False) -> Job:
    sql = f"SELECT {JOB_COLUMNS} FROM ingestion_jobs WHERE id = :id" + (" FOR UPDATE" if lock else "")  # noqa: S608
    row = (await session.execute(text(sql), {"id": job_id})).first()
    if row is None:
        raise NotFound("no ingestion job with that id in this tenant", field="id")
    return job_from_row(row)


async def get(db: Database, tenant_id: str, job_id: uuid.UUID) -> Job:
    async with db.session(tenant_id) as session:
        return await read_in(session, job_id)


async def find(db: Database, tenant_id: str, job_id: uuid.UUID) -> Job | None:
    """The job, or None for an unknown id or another tenant's (row-level security hides it)."""
    try:
        return await get(db, tenant_id, job_id)
    except NotFound:
        return None


async def find_unfinished(db: Database, tenant_id: str, fingerprint: str) -> Job | None:
    """The newest unfinished job made from the same input, which a rerun continues."""
    async with db.session(tenant_id) as session:
        row = (
            await session.execute(
                text(
                    f"SELECT {JOB_COLUMNS} FROM ingestion_jobs "  # noqa: S608
                    "WHERE source_fingerprint = :fp AND state IN ('QUEUED', 'RUNNING') "
                    "ORDER BY created_at DESC LIMIT 1"
                ),
                {"fp": fingerprint},
            )
        ).first()
    return None if row is None else job_from_row(row)


async def cancel(db: Database, tenant_id: str, job_id: uuid.UUID) -> Job:
    """Stop a queued or running job. The row lock is the one a worker takes to write a batch, so a
    batch either committed before the cancel (its documents stay) or is discarded after it."""
    async with db.session(tenant_id) as session:
        job = await read_in(session, job_id, lock=True)
        if job.finished:
            raise InvalidInput(
                JobErrorCode.JOB_FINISHED,
                f"the job already ended ({job.state.value}); only QUEUED or RUNNING jobs can be cancelled",
                field="id",
            )
        await session.execute(
            text(
                "UPDATE ingestion_jobs SET state = 'CANCELLED', finished_at = clock_timestamp(), "
                "updated_at = clock_timestamp() WHERE id = :id"
            ),
            {"id": job_id},
        )
        return await read_in(session, job_id)


async def errors(db: Database, tenant_id: str, job_id: uuid.UUID, *, first: int = 100) -> list[ItemError]:
    check_first(first)
    async with db.session(tenant_id) as session:
        job = await read_in(session, job_id)
        rows = await session.execute(
            text(
                "SELECT ordinal, error_field, error_code, error_message FROM ingestion_job_items "
                "WHERE job_id = :id AND outcome = 'FAILED' ORDER BY ordinal LIMIT :n"
            ),
            {"id": job_id, "n": first},
        )
        out = [ItemError(int(o), f, str(c), str(m)) for o, f, c, m in rows.all()]
    if job.error_code and len(out) < first:
        out.append(ItemError(-1, None, job.error_code, job.error_message or ""))
    return out


@dataclass
class JobPage:
    jobs: list[Job]
    has_next: bool


def encode_cursor(job: Job) -> str:
    return paging.encode_cursor(job.created_at, job.id)


async def list_page(db: Database, tenant_id: str, *, first: int, after: str | None, state: JobState | None) -> JobPage:
    """Newest first."""
    check_first(first)
    where = "tenant_id = :t"
    params: dict[str, Any] = {"t": tenant_id, "lim": first + 1}
    if state is not None:
        where += " AND state = :state"
        params["state"] = state.value
    if after:
        created, ident = paging.decode_cursor(after)
        where += " AND (created_at, id) < (:ac, :ai)"
        params |= {"ac": created, "ai": ident}
    async with db.session(tenant_id) as session:
        rows = await session.execute(
            text(
                f"SELECT {JOB_COLUMNS} FROM ingestion_jobs WHERE {where} "  # noqa: S608
                "ORDER BY created_at DESC, id DESC LIMIT :lim"
            ),
            params,
        )
        jobs = [job_from_row(r) for r in rows.all()]
    return JobPage(jobs[:first], has_next=len(jobs) > first)
