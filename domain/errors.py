"""Typed domain errors. They carry a stable code and a message that says what to fix; no HTTP.

Codes are Enum members, never bare strings: each area owns its Enum (`<area>/error_codes.py`), and
tests/test_error_codes.py fails when one the domain can raise has no GraphQL member."""

from __future__ import annotations

import math
from enum import StrEnum

from domain.error_codes import CommonErrorCode, RequestErrorCode, StartupErrorCode


class DomainError(Exception):
    code: StrEnum = CommonErrorCode.INTERNAL

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field


class InvalidInput(DomainError):
    """Expected, user-fixable input problems. `code` is set per instance, from its area's Enum."""

    def __init__(self, code: StrEnum, message: str, *, field: str | None = None) -> None:
        super().__init__(message, field=field)
        self.code = code


class NotFound(DomainError):
    code = CommonErrorCode.NOT_FOUND


class Unauthenticated(DomainError):
    """No credentials where they are required, or credentials that do not verify."""

    code = RequestErrorCode.UNAUTHENTICATED


class Forbidden(DomainError):
    """A verified caller whose roles do not allow the operation."""

    code = RequestErrorCode.FORBIDDEN


class RateLimited(DomainError):
    """Over a rate limit or quota. `retry_after_s` says when the caller may try again."""

    code = RequestErrorCode.RATE_LIMITED

    def __init__(self, message: str, *, retry_after_s: float) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


def retry_after_seconds(seconds: float) -> int:
    """A wait as the whole seconds a client is told (Retry-After, extensions.retryAfter): rounded
    up, never 0 (a client told 0 would retry at once and fail again), 1 when not finite."""
    if not math.isfinite(seconds):
        return 1
    return max(1, math.ceil(seconds))


class StartupError(DomainError):
    """The service cannot start as configured; the message names the fix."""

    code = StartupErrorCode.STARTUP


class MissingExtension(StartupError):
    code = StartupErrorCode.MISSING_EXTENSION


class EmbeddingModelMismatch(StartupError):
    code = StartupErrorCode.EMBEDDING_MODEL_MISMATCH
