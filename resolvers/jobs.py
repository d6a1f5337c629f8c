"""Resolvers for ingestion jobs: read, list, cancel, follow, and bulk feedback import. Each makes
one call into domain.jobs; a DomainError becomes the payload's errors (schema/payload_errors.py),
or for a query its GraphQL error (an unknown or foreign id: NOT_FOUND)."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncGenerator
from contextlib import AbstractAsyncContextManager
from typing import Any

import strawberry

from domain.jobs import store
from domain.jobs.feedback_job import FeedbackEventInput as DomainEvent
from domain.jobs.feedback_job import feedback_items
from domain.jobs.model import ItemError, JobKind, JobState, NewItem
from domain.jobs.model import Job as JobRow
from domain.jobs.progress import JobProgress, Watch
from schema.common import PageInfo, from_global_id
from schema.context import Context
from schema.jobs import (
    CancelIngestionJobInput,
    CancelIngestionJobPayload,
    ImportFeedbackInput,
    ImportFeedbackPayload,
    IngestionJob,
    IngestionJobConnection,
    IngestionJobEdge,
    IngestionJobError,
    IngestionJobState,
)

# How often a progress subscription reads its job row when nothing notifies it (no LISTEN feed).
PROGRESS_POLL_S = 2.0


def _job_id(raw: str, field: str = "id") -> uuid.UUID:
    return from_global_id(raw, expected="IngestionJob", field=field)[1]


async def ingestion_job(info: strawberry.Info[Context], id: strawberry.ID) -> IngestionJob:
    job = await store.get(info.context.services.db, info.context.tenant_id, _job_id(id))
    return IngestionJob.from_row(job)


async def ingestion_jobs(
    info: strawberry.Info[Context],
    first: int = 20,
    after: str | None = None,
    state: IngestionJobState | None = None,
) -> IngestionJobConnection:
    page = await store.list_page(
        info.context.services.db,
        info.context.tenant_id,
        first=first,
        after=after,
        state=JobState(state.value) if state else None,
    )
    edges = [IngestionJobEdge(cursor=store.encode_cursor(j), node=IngestionJob.from_row(j)) for j in page.jobs]
    return IngestionJobConnection(
        edges=edges,
        page_info=PageInfo(
            has_next_page=page.has_next,
            has_previous_page=after is not None,
            start_cursor=edges[0].cursor if edges else None,
            end_cursor=edges[-1].cursor if edges else None,
        ),
    )


async def cancel_ingestion_job(
    info: strawberry.Info[Context], input: CancelIngestionJobInput
) -> CancelIngestionJobPayload:
    job = await store.cancel(info.context.services.db, info.context.tenant_id, _job_id(input.id))
    return CancelIngestionJobPayload(job=IngestionJob.from_row(job))


async def ingestion_progress(
    info: strawberry.Info[Context], job_id: strawberry.ID
) -> AsyncGenerator[IngestionJob, None]:
    """The job now, then each time its counts or state change, ending with its final state. It
    wakes on the job's NOTIFY (domain/jobs/progress.py), whichever worker or replica runs the job,
    and reads the row at least every fallback interval in case a notification was lost."""
    services, tenant = info.context.services, info.context.tenant_id
    ident = _job_id(job_id, field="jobId")
    async with _watch(services.job_progress, ident) as watch:
        job = await store.get(services.db, tenant, ident)
        yield IngestionJob.from_row(job)
        last = (job.state, job.items_done, job.chunks_embedded)
        while not job.finished:
            await watch.next()
            job = await store.get(services.db, tenant, ident)
            now = (job.state, job.items_done, job.chunks_embedded)
            if now != last:
                last = now
                yield IngestionJob.from_row(job)


def _watch(feed: JobProgress | None, job_id: uuid.UUID) -> AbstractAsyncContextManager[Watch]:
    if feed is None:
        return contextlib.nullcontext(Watch(asyncio.Event(), PROGRESS_POLL_S))
    return feed.watch(job_id)


async def job_errors(info: strawberry.Info[Any], row: JobRow, first: int) -> list[IngestionJobError]:
    found = await store.errors(info.context.services.db, row.tenant_id, row.id, first=first)
    return [IngestionJobError.from_domain(e) for e in found]


async def import_feedback(info: strawberry.Info[Context], input: ImportFeedbackInput) -> ImportFeedbackPayload:
    parsed = [event.to_domain(i) for i, event in enumerate(input.events)]
    placeholder = DomainEvent(user_id="", kind="")
    checked = feedback_items([p if isinstance(p, DomainEvent) else placeholder for p in parsed])
    items = [NewItem(None, p) if isinstance(p, ItemError) else item for item, p in zip(checked, parsed, strict=True)]
    job = await store.create(
        info.context.services.db,
        info.context.tenant_id,
        JobKind.FEEDBACK,
        items,
        created_by=info.context.principal.subject,
        field_prefix="events",
    )
    return ImportFeedbackPayload(job=IngestionJob.from_row(job))
