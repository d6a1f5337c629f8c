"""Every error leaves with `extensions.code`. Expected domain errors keep their message and
field; anything else is masked, and carries the request id that the log line also has."""

from __future__ import annotations

import logging
from collections.abc import Iterator

from graphql import GraphQLError
from strawberry.extensions import SchemaExtension

from domain.error_codes import RequestErrorCode
from domain.errors import DomainError, RateLimited, retry_after_seconds
from domain.persistence.availability import database_unavailable

log = logging.getLogger("ragql.errors")


def _code(error: GraphQLError, *, validation: bool) -> str | None:
    original = error.original_error
    if isinstance(original, DomainError):
        return original.code
    if original is None or isinstance(original, GraphQLError):
        # Parse errors, validation errors and variable coercion (a wrong enum value, a missing field).
        return "GRAPHQL_VALIDATION_FAILED" if validation or original is not None else "BAD_REQUEST"
    return None


UNAVAILABLE_MESSAGE = "The database is unreachable right now; retry in a few seconds."


def mark_unavailable(error: GraphQLError, request_id: str) -> None:
    """An outage, not a bug: a coded, retryable error (logged once, without a traceback)."""
    log.warning("database unavailable request_id=%s: %s", request_id, type(error.original_error).__name__)
    error.message = UNAVAILABLE_MESSAGE
    error.extensions = {
        **(error.extensions or {}),
        "code": RequestErrorCode.SERVICE_UNAVAILABLE.value,
        "retryable": True,
        "requestId": request_id,
    }


def _mark_http_503(context: object) -> None:
    # Plain HTTP: FastAPI's sub-response, whose status the router copies onto the reply.
    response = getattr(context, "response", None)
    if response is not None and hasattr(response, "status_code"):
        response.status_code = 503
        response.headers["Retry-After"] = "1"


def mask(error: GraphQLError, request_id: str, context: object = None) -> None:
    """An unexpected error: logged whole with the request id, sent as a bare code and that id.
    A database outage is not one: it becomes SERVICE_UNAVAILABLE (and HTTP 503)."""
    if database_unavailable(error.original_error):
        mark_unavailable(error, request_id)
        _mark_http_503(context)
        return
    log.error("unexpected error request_id=%s path=%s", request_id, error.path, exc_info=error.original_error)
    error.message = f"Internal server error. Quote request id {request_id} when reporting it."
    error.extensions = {**(error.extensions or {}), "code": "INTERNAL_SERVER_ERROR", "requestId": request_id}


class ErrorCodes(SchemaExtension):
    def on_operation(self) -> Iterator[None]:
        yield
        ctx = self.execution_context
        request_id = getattr(ctx.context, "request_id", "-")
        result = ctx.result
        seen: set[int] = set()
        groups = [(ctx.pre_execution_errors or [], True), ((result.errors if result else None) or [], False)]
        for errors, validation in groups:
            for error in errors:
                if id(error) in seen:
                    continue
                seen.add(id(error))
                extensions = dict(error.extensions or {})
                if "code" in extensions:  # set where it was raised (permissions, limits): keep it
                    extensions.setdefault("requestId", request_id)
                    error.extensions = extensions
                    continue
                code = _code(error, validation=validation)
                if code is None:
                    mask(error, request_id, ctx.context)
                    continue
                extensions["code"] = code
                original = error.original_error
                if isinstance(original, DomainError) and original.field:
                    extensions["field"] = original.field
                if isinstance(original, RateLimited):
                    extensions["retryAfter"] = retry_after_seconds(original.retry_after_s)
                extensions["requestId"] = request_id
                error.extensions = extensions
