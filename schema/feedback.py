"""Feedback types, input and payload."""

from __future__ import annotations

from datetime import datetime
from enum import Enum

import strawberry

from schema.common import Node, UserError
from schema.documents import Document


@strawberry.enum(
    description="VIEW, CLICK, LIKE, DISLIKE, RATING and WATCHED are about a document; ANSWER_HELPFUL and "
    "ANSWER_UNHELPFUL are about an answer."
)
class FeedbackKind(Enum):
    VIEW = "VIEW"
    CLICK = "CLICK"
    LIKE = "LIKE"
    DISLIKE = "DISLIKE"
    RATING = "RATING"
    WATCHED = "WATCHED"
    ANSWER_HELPFUL = "ANSWER_HELPFUL"
    ANSWER_UNHELPFUL = "ANSWER_UNHELPFUL"


@strawberry.input
class FeedbackInput:
    kind: FeedbackKind
    user_id: strawberry.ID | None = strawberry.field(
        default=None, description="Your app's id for the end user; defaults to the caller's subject."
    )
    document_id: strawberry.ID | None = strawberry.field(default=None, description="The document reacted to.")
    answer_id: strawberry.ID | None = strawberry.field(default=None, description="The answer rated (ANSWER_* kinds).")
    query_id: strawberry.ID | None = strawberry.field(
        default=None, description="The `queryId` of the search or recommendations that showed the document."
    )
    rating: float | None = strawberry.field(default=None, description="0..5, only with kind RATING.")
    idempotency_key: str | None = strawberry.field(
        default=None, description="Retries with the same key store nothing new and return the first event."
    )


@strawberry.type(description="One feedback event. Events are never changed; profiles are derived from them.")
class Feedback(Node):
    kind: FeedbackKind
    user_id: strawberry.ID
    document: Document | None = strawberry.field(description="Null for answer feedback, or if since deleted.")
    answer_id: strawberry.ID | None
    query_id: strawberry.ID | None
    rating: float | None
    created_at: datetime


@strawberry.type
class SubmitFeedbackPayload:
    feedback: Feedback | None = None
    duplicate: bool = strawberry.field(
        default=False, description="True when the idempotency key had already stored this event."
    )
    errors: list[UserError] = strawberry.field(default_factory=list)
