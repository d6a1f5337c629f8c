"""submitFeedback."""

from __future__ import annotations

import uuid

import strawberry

from domain.error_codes import CommonErrorCode
from domain.errors import InvalidInput
from domain.feedback import service as feedback
from schema.common import from_global_id, to_global_id
from schema.context import Context
from schema.documents import Document
from schema.feedback import Feedback, FeedbackInput, FeedbackKind, SubmitFeedbackPayload


def _query_id(raw: str | None) -> uuid.UUID | None:
    if raw is None:
        return None
    try:
        return uuid.UUID(str(raw))
    except ValueError as exc:
        raise InvalidInput(
            CommonErrorCode.INVALID_ID, "queryId must be the queryId a search returned", field="queryId"
        ) from exc


def _request(input: FeedbackInput, subject: str) -> feedback.FeedbackRequest:
    document_id = answer_id = None
    if input.document_id is not None:
        document_id = from_global_id(input.document_id, expected="Document", field="documentId")[1]
    if input.answer_id is not None:
        answer_id = from_global_id(input.answer_id, expected="Answer", field="answerId")[1]
    return feedback.FeedbackRequest(
        user_id=str(input.user_id) if input.user_id is not None else subject,
        kind=input.kind.value,
        document_id=document_id,
        answer_id=answer_id,
        query_id=_query_id(input.query_id),
        rating=input.rating,
        idempotency_key=input.idempotency_key,
    )


async def submit_feedback(info: strawberry.Info[Context], input: FeedbackInput) -> SubmitFeedbackPayload:
    s = info.context.services
    tenant = info.context.tenant_id
    if input.query_id is not None:
        await s.searching.flush_log()  # this process's searches' queryIds are stored before the check
    submitted = await feedback.submit(
        s.db,
        tenant,
        _request(input, info.context.principal.subject),
        s.learning,
        on_stored=s.training.note if s.training else None,
    )
    return SubmitFeedbackPayload(feedback=await to_feedback(info, submitted.event), duplicate=submitted.duplicate)


async def to_feedback(info: strawberry.Info[Context], event: feedback.FeedbackEvent) -> Feedback:
    document = None
    if event.document_id is not None:
        row = await info.context.services.documents.get(info.context.tenant_id, event.document_id)
        document = Document.from_row(row) if row else None
    return Feedback(
        id=to_global_id("Feedback", event.id),
        kind=FeedbackKind(event.kind),
        user_id=strawberry.ID(event.user_id),
        document=document,
        answer_id=to_global_id("Answer", event.answer_id) if event.answer_id else None,
        query_id=strawberry.ID(str(event.query_id)) if event.query_id else None,
        rating=event.rating,
        created_at=event.created_at,
    )
