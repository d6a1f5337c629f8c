"""The GraphQL `ErrorCode` enum: every area's domain codes, wrapped once (as Saleor's
graphql/core/enums.py does). No code is typed here: a new domain member appears in the schema by
itself, and a name two areas both define fails at import instead of shadowing the other."""

from __future__ import annotations

from enum import Enum, StrEnum
from typing import Any

import strawberry

from domain.analytics.error_codes import AnalyticsErrorCode
from domain.answers.error_codes import AnswerErrorCode
from domain.auth.error_codes import ApiKeyErrorCode
from domain.documents.error_codes import DocumentErrorCode
from domain.error_codes import CommonErrorCode
from domain.feedback.error_codes import FeedbackErrorCode
from domain.jobs.error_codes import JobErrorCode
from domain.recommendations.error_codes import RecommendationErrorCode
from domain.retrieval.error_codes import SearchErrorCode

# The areas whose codes reach a client in a payload's `errors` or an AnswerError. Request refusals
# (domain.error_codes.RequestErrorCode) and start-up codes are not among them: they never do.
PAYLOAD_AREAS: tuple[type[StrEnum], ...] = (
    SearchErrorCode,
    DocumentErrorCode,
    AnswerErrorCode,
    FeedbackErrorCode,
    RecommendationErrorCode,
    AnalyticsErrorCode,
    ApiKeyErrorCode,
    JobErrorCode,
    CommonErrorCode,
)


def _merged(areas: tuple[type[StrEnum], ...]) -> Any:
    members: dict[str, str] = {}
    for area in areas:
        for member in area:
            if member.name in members:
                raise TypeError(f"error code {member.name} is defined by two areas; keep it in domain/error_codes.py")
            members[member.name] = member.value
    merged: type[Enum] = Enum("ErrorCode", members)  # type: ignore[misc]
    return strawberry.enum(merged)


ErrorCode = _merged(PAYLOAD_AREAS)


def to_graphql(code: str) -> Any:
    """The GraphQL member for a domain code; INTERNAL for one outside PAYLOAD_AREAS (the test
    tests/test_error_codes.py keeps that from happening to a code the domain raises)."""
    try:
        return ErrorCode(str(code))
    except ValueError:
        return ErrorCode.INTERNAL
