"""Typed domain errors. They carry a stable code and a message that says what to fix; no HTTP."""

from __future__ import annotations


class DomainError(Exception):
    code = "INTERNAL"

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field


class InvalidInput(DomainError):
    """Expected, user-fixable input problems. `code` is set per instance."""

    def __init__(self, code: str, message: str, *, field: str | None = None) -> None:
        super().__init__(message, field=field)
        self.code = code


class NotFound(DomainError):
    code = "NOT_FOUND"


class Unauthenticated(DomainError):
    """No credentials where they are required, or credentials that do not verify."""

    code = "UNAUTHENTICATED"


class Forbidden(DomainError):
    """A verified caller whose roles do not allow the operation."""

    code = "FORBIDDEN"


class RateLimited(DomainError):
    """Over a rate limit or quota. `retry_after_s` says when the caller may try again."""

    code = "RATE_LIMITED"

    def __init__(self, message: str, *, retry_after_s: float) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class StartupError(DomainError):
    """The service cannot start as configured; the message names the fix."""

    code = "STARTUP"


class MissingExtension(StartupError):
    code = "MISSING_EXTENSION"


class EmbeddingModelMismatch(StartupError):
    code = "EMBEDDING_MODEL_MISMATCH"
