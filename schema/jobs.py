"""Ingestion job types: IngestionJob, its connection, cancel, progress, and feedback import."""

from __future__ import annotations

from datetime import datetime
from enum import Enum

import strawberry

from domain.errors import DomainError
from domain.jobs.feedback_job import FeedbackEventInput as DomainEvent
from domain.jobs.model import ItemError
from domain.jobs.model import Job as JobRow
from schema.common import Node, PageInfo, UserError, from_global_id, to_global_id
from schema.error_codes import ErrorCode, to_graphql
from schema.feedback import FeedbackKind


@strawberry.enum
class IngestionJobState(Enum):
    QUEUED = "QUEUED"
    RUNNING = "RUNNING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"


@strawberry.enum
class IngestionJobKind(Enum):
    DOCUMENTS = "DOCUMENTS"
    FEEDBACK = "FEEDBACK"


@strawberry.type(description="One input that was not stored: its position, the input path at fault, and why.")
class IngestionJobError:
    index: int | None = strawberry.field(description="Position in the job's input; null for the job as a whole.")
    field: str | None
    code: Enum = strawberry.field(graphql_type=ErrorCode)
    message: str

    @classmethod
    def from_domain(cls, error: ItemError) -> IngestionJobError:
        return cls(
            index=error.index if error.index >= 0 else None,
            field=error.field,
            code=to_graphql(error.code),
            message=error.message,
        )


@strawberry.type(
    description="A durable ingestion job. For FEEDBACK jobs (importFeedback) the documents* counts count events."
)
class IngestionJob(Node):
    kind: IngestionJobKind
    state: IngestionJobState
    documents_total: int
    documents_done: int = strawberry.field(description="Stored, unchanged or failed so far; never decreases.")
    documents_created: int
    documents_updated: int
    documents_unchanged: int
    documents_failed: int
    chunks_embedded: int
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    row: strawberry.Private[JobRow]

    @strawberry.field(description="Inputs that were not stored, in input order (the first `first`).")
    async def errors(self, info: strawberry.Info, first: int = 100) -> list[IngestionJobError]:
        from resolvers.jobs import job_errors

        return await job_errors(info, self.row, first)

    @classmethod
    def from_row(cls, row: JobRow) -> IngestionJob:
        return cls(
            id=to_global_id("IngestionJob", row.id),
            kind=IngestionJobKind(row.kind.value),
            state=IngestionJobState(row.state.value),
            documents_total=row.items_total,
            documents_done=row.items_done,
            documents_created=row.created,
            documents_updated=row.updated,
            documents_unchanged=row.unchanged,
            documents_failed=row.failed,
            chunks_embedded=row.chunks_embedded,
            created_at=row.created_at,
            started_at=row.started_at,
            finished_at=row.finished_at,
            row=row,
        )


@strawberry.type
class IngestionJobEdge:
    cursor: str
    node: IngestionJob


@strawberry.type
class IngestionJobConnection:
    edges: list[IngestionJobEdge]
    page_info: PageInfo


@strawberry.input
class CancelIngestionJobInput:
    id: strawberry.ID


@strawberry.type
class CancelIngestionJobPayload:
    job: IngestionJob | None = None
    errors: list[UserError] = strawberry.field(default_factory=list)


@strawberry.input(description="One historical feedback event; it keeps its own `occurredAt`.")
class FeedbackEventInput:
    user_id: strawberry.ID
    kind: FeedbackKind
    occurred_at: datetime | None = strawberry.field(default=None, description="When it happened (default: now).")
    document_id: strawberry.ID | None = None
    document_external_id: str | None = strawberry.field(
        default=None, description="The document by its externalId, instead of documentId."
    )
    answer_id: strawberry.ID | None = None
    rating: float | None = None
    idempotency_key: str | None = strawberry.field(
        default=None, description="An event whose key is already stored is skipped (counted as unchanged)."
    )

    def to_domain(self, index: int) -> DomainEvent | ItemError:
        """The domain event, or (an id that is not this API's) the error for its input path."""
        try:
            document = (
                from_global_id(self.document_id, expected="Document", field="documentId") if self.document_id else None
            )
            answer = from_global_id(self.answer_id, expected="Answer", field="answerId") if self.answer_id else None
        except DomainError as exc:
            return ItemError(index, f"events.{index}.{exc.field}", str(exc.code), exc.message)
        return DomainEvent(
            user_id=str(self.user_id),
            kind=self.kind.value,
            document_id=document[1] if document else None,
            document_external_id=self.document_external_id,
            answer_id=answer[1] if answer else None,
            rating=self.rating,
            idempotency_key=self.idempotency_key,
            occurred_at=self.occurred_at,
        )


@strawberry.input
class ImportFeedbackInput:
    events: list[FeedbackEventInput]


@strawberry.type
class ImportFeedbackPayload:
    job: IngestionJob | None = None
    errors: list[UserError] = strawberry.field(default_factory=list)
