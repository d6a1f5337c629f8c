"""What a job is, as the store keeps it and clients read it."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

# pgqueuer entrypoint names: one per kind of job.
DOCUMENTS_ENTRYPOINT = "ragql.ingest_documents"
FEEDBACK_ENTRYPOINT = "ragql.import_feedback"
# A tenant's recommendation training (domain/jobs/training_job.py): no items, no ingestion_jobs row.
TRAIN_RECS_ENTRYPOINT = "ragql.train_recs"
# The sentence vectors of a finished ingestion job's documents (domain/jobs/sentences_job.py): no
# ingestion_jobs row of its own; the payload is the ingestion job's id.
SENTENCES_ENTRYPOINT = "ragql.embed_sentences"
# The most items (documents or feedback events) one job may hold.
MAX_JOB_ITEMS = 10_000


class JobState(StrEnum):
    QUEUED = "QUEUED"
    RUNNING = "RUNNING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"


TERMINAL_STATES = frozenset({JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED})


class JobKind(StrEnum):
    DOCUMENTS = "DOCUMENTS"
    FEEDBACK = "FEEDBACK"


ENTRYPOINTS = {JobKind.DOCUMENTS: DOCUMENTS_ENTRYPOINT, JobKind.FEEDBACK: FEEDBACK_ENTRYPOINT}


@dataclass(frozen=True)
class Job:
    id: uuid.UUID
    tenant_id: str
    kind: JobKind
    state: JobState
    items_total: int
    items_done: int
    chunks_embedded: int
    created: int
    updated: int
    unchanged: int
    failed: int
    error_code: str | None
    error_message: str | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None

    @property
    def finished(self) -> bool:
        return self.state in TERMINAL_STATES


JOB_COLUMNS = (
    "id, tenant_id, kind, state, items_total, items_done, chunks_embedded, created_count, updated_count, "
    "unchanged_count, failed_count, error_code, error_message, created_at, started_at, finished_at"
)


def job_from_row(row: Any) -> Job:
    values = list(row)
    values[2] = JobKind(values[2])
    values[3] = JobState(values[3])
    return Job(*values)


@dataclass(frozen=True)
class ItemError:
    """One input that was not stored: its position, the input path at fault, and why."""

    index: int
    field: str | None
    code: str
    message: str


@dataclass(frozen=True)
class NewItem:
    """One input of a new job: JSON to process later, or the error that already rules it out."""

    payload: dict[str, Any] | None
    error: ItemError | None = None
