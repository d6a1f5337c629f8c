"""Codes shared by every area. Each area owns an Enum of its own codes in `<area>/error_codes.py`
(as Saleor's `product/error_codes.py`); schema/error_codes.py wraps them once for GraphQL.

StrEnum, so a code still compares equal to its name (`exc.code == "NOT_FOUND"`) and logs as text."""

from __future__ import annotations

from enum import StrEnum


class CommonErrorCode(StrEnum):
    """Payload codes that more than one area raises."""

    INVALID_ID = "INVALID_ID"
    INVALID_CURSOR = "INVALID_CURSOR"
    FIRST_OUT_OF_RANGE = "FIRST_OUT_OF_RANGE"
    INVALID_USER_ID = "INVALID_USER_ID"
    NOT_FOUND = "NOT_FOUND"
    CONFLICT = "CONFLICT"
    INTERNAL = "INTERNAL"


class RequestErrorCode(StrEnum):
    """Refusals of the whole request. They travel as GraphQL errors (`extensions.code`), never in a
    payload's `errors`, so the GraphQL ErrorCode enum does not carry them."""

    UNAUTHENTICATED = "UNAUTHENTICATED"
    FORBIDDEN = "FORBIDDEN"
    RATE_LIMITED = "RATE_LIMITED"
    # A dependency (PostgreSQL) is unreachable: retry later. HTTP 503 for plain HTTP.
    SERVICE_UNAVAILABLE = "SERVICE_UNAVAILABLE"


class StartupErrorCode(StrEnum):
    """The service cannot start as configured; printed by the CLI, never sent to a client."""

    STARTUP = "STARTUP"
    MISSING_EXTENSION = "MISSING_EXTENSION"
    EMBEDDING_MODEL_MISMATCH = "EMBEDDING_MODEL_MISMATCH"
    MODEL_EXPORT_FAILED = "MODEL_EXPORT_FAILED"
