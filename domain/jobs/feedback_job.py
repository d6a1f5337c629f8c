"""Bulk feedback import as a job: historical events, each stored and learned from exactly as
`submitFeedback` does it (domain.feedback.service.record), in the order given, with the event's
own timestamp. So profiles and co-engagement end as if the events had been sent one by one, and
`ragql rebuild-profiles` (which replays the stored events) arrives at the same state.

Events with an idempotencyKey already stored (by an earlier import or a live submit) count as
UNCHANGED and change nothing."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from domain.errors import DomainError, InvalidInput, NotFound
from domain.feedback.error_codes import FeedbackErrorCode
from domain.feedback.kinds import Kind
from domain.feedback.profiles import LearningConfig
from domain.feedback.service import FeedbackRequest, record, validate
from domain.jobs.error_codes import JobErrorCode
from domain.jobs.model import ItemError, Job, NewItem
from domain.jobs.runner import ItemResult, PendingItem

# A placeholder target for validating an event that names its document by externalId.
_SOME_DOCUMENT = uuid.UUID(int=0)


@dataclass(frozen=True)
class FeedbackEventInput:
    user_id: str
    kind: str
    document_id: uuid.UUID | None = None
    document_external_id: str | None = None
    answer_id: uuid.UUID | None = None
    query_id: uuid.UUID | None = None
    rating: float | None = None
    idempotency_key: str | None = None
    occurred_at: datetime | None = None


def _payload(event: FeedbackEventInput) -> dict[str, Any]:
    return {
        "userId": event.user_id,
        "kind": event.kind,
        "documentId": str(event.document_id) if event.document_id else None,
        "documentExternalId": event.document_external_id,
        "answerId": str(event.answer_id) if event.answer_id else None,
        "queryId": str(event.query_id) if event.query_id else None,
        "rating": event.rating,
        "idempotencyKey": event.idempotency_key,
        "occurredAt": event.occurred_at.isoformat() if event.occurred_at else None,
    }


def _uuid(value: Any) -> uuid.UUID | None:
    return uuid.UUID(str(value)) if value else None


def _request(payload: dict[str, Any], document_id: uuid.UUID | None) -> FeedbackRequest:
    at = payload.get("occurredAt")
    kind: Kind = payload["kind"]
    return FeedbackRequest(
        user_id=str(payload["userId"]),
        kind=kind,
        document_id=document_id,
        answer_id=_uuid(payload.get("answerId")),
        query_id=_uuid(payload.get("queryId")),
        rating=payload.get("rating"),
        idempotency_key=payload.get("idempotencyKey"),
        occurred_at=datetime.fromisoformat(at) if at else None,
    )


def _item_error(index: int, prefix: str, exc: DomainError) -> ItemError:
    path = f"{prefix}.{index}"
    return ItemError(index, f"{path}.{exc.field}" if exc.field else path, str(exc.code), exc.message)


def feedback_items(events: Sequence[FeedbackEventInput], prefix: str = "events") -> list[NewItem]:
    items: list[NewItem] = []
    for i, event in enumerate(events):
        payload = _payload(event)
        try:
            if event.document_id is not None and event.document_external_id is not None:
                raise InvalidInput(
                    FeedbackErrorCode.INVALID_FEEDBACK_TARGET,
                    "give documentId or documentExternalId, not both",
                    field="documentExternalId",
                )
            if event.occurred_at is not None and event.occurred_at.tzinfo is None:
                raise InvalidInput(
                    JobErrorCode.INVALID_TIMESTAMP,
                    "occurredAt needs a time zone (for example 2024-05-01T12:00:00Z)",
                    field="occurredAt",
                )
            target = event.document_id or (_SOME_DOCUMENT if event.document_external_id else None)
            validate(_request(payload, target))
        except DomainError as exc:
            items.append(NewItem(None, _item_error(i, prefix, exc)))
            continue
        items.append(NewItem(payload))
    return items


@dataclass(frozen=True)
class FeedbackBatches:
    """The BatchProcessor of feedback import jobs: nothing to prepare, all work in the write."""

    learning: LearningConfig
    prefix: str = "events"

    async def prepare(self, job: Job, prefix: str, items: Sequence[PendingItem]) -> Sequence[PendingItem]:
        return items

    async def settle(self, prepared: Sequence[PendingItem], stop: asyncio.Event) -> None:
        return None

    def unsettled(self, prepared: Sequence[PendingItem]) -> bool:
        return False

    def discard(self, prepared: Sequence[PendingItem]) -> None:
        return None

    async def write(
        self, session: AsyncSession, job: Job, prepared: Sequence[PendingItem], pending: set[int]
    ) -> tuple[list[ItemResult], int]:
        results: list[ItemResult] = []
        for item in prepared:
            if item.ordinal not in pending:
                continue
            try:
                async with session.begin_nested():
                    document_id = await _document_id(session, job.tenant_id, item.payload)
                    submitted = await record(session, job.tenant_id, _request(item.payload, document_id), self.learning)
            except DomainError as exc:
                results.append(ItemResult(item.ordinal, "FAILED", error=_item_error(item.ordinal, self.prefix, exc)))
                continue
            results.append(ItemResult(item.ordinal, "UNCHANGED" if submitted.duplicate else "CREATED"))
        return results, 0


async def _document_id(session: AsyncSession, tenant_id: str, payload: dict[str, Any]) -> uuid.UUID | None:
    external = payload.get("documentExternalId")
    if not external:
        return _uuid(payload.get("documentId"))
    found = (
        await session.execute(
            text("SELECT id FROM documents WHERE tenant_id = :t AND external_id = :e"), {"t": tenant_id, "e": external}
        )
    ).scalar()
    if found is None:
        raise NotFound(f"no document with externalId {external!r} in this tenant", field="documentExternalId")
    return uuid.UUID(str(found))
