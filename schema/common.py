"""Shared GraphQL types: Node, global ids, UserError, paging."""

from __future__ import annotations

import base64
import binascii
import uuid
from enum import Enum

import strawberry

from domain.errors import DomainError, InvalidInput


@strawberry.enum
class ErrorCode(Enum):
    EMPTY_QUERY = "EMPTY_QUERY"
    QUERY_TOO_LONG = "QUERY_TOO_LONG"
    FIRST_OUT_OF_RANGE = "FIRST_OUT_OF_RANGE"
    INVALID_ALPHA = "INVALID_ALPHA"
    INVALID_CANDIDATES = "INVALID_CANDIDATES"
    UNKNOWN_FILTER_OPERATOR = "UNKNOWN_FILTER_OPERATOR"
    INVALID_FILTER_VALUE = "INVALID_FILTER_VALUE"
    INVALID_FILTER_FIELD = "INVALID_FILTER_FIELD"
    FILTER_TOO_COMPLEX = "FILTER_TOO_COMPLEX"
    INVALID_METADATA = "INVALID_METADATA"
    INVALID_DOCUMENT = "INVALID_DOCUMENT"
    DOCUMENT_TOO_LARGE = "DOCUMENT_TOO_LARGE"
    DUPLICATE_EXTERNAL_ID = "DUPLICATE_EXTERNAL_ID"
    EMPTY_BATCH = "EMPTY_BATCH"
    BATCH_TOO_LARGE = "BATCH_TOO_LARGE"
    UNSUPPORTED_FILE_TYPE = "UNSUPPORTED_FILE_TYPE"
    FILE_TOO_LARGE = "FILE_TOO_LARGE"
    UNREADABLE_FILE = "UNREADABLE_FILE"
    EMPTY_FILE = "EMPTY_FILE"
    INVALID_ID = "INVALID_ID"
    INVALID_CURSOR = "INVALID_CURSOR"
    EMPTY_QUESTION = "EMPTY_QUESTION"
    QUESTION_TOO_LONG = "QUESTION_TOO_LONG"
    INVALID_SOURCES = "INVALID_SOURCES"
    EMPTY_SELECTED_TEXT = "EMPTY_SELECTED_TEXT"
    SELECTED_TEXT_TOO_LONG = "SELECTED_TEXT_TOO_LONG"
    SESSION_NOT_FOUND = "SESSION_NOT_FOUND"
    PROVIDER_ERROR = "PROVIDER_ERROR"
    INVALID_USER_ID = "INVALID_USER_ID"
    INVALID_FEEDBACK_KIND = "INVALID_FEEDBACK_KIND"
    INVALID_FEEDBACK_TARGET = "INVALID_FEEDBACK_TARGET"
    KIND_TARGET_MISMATCH = "KIND_TARGET_MISMATCH"
    RATING_REQUIRED = "RATING_REQUIRED"
    RATING_OUT_OF_RANGE = "RATING_OUT_OF_RANGE"
    RATING_NOT_ALLOWED = "RATING_NOT_ALLOWED"
    INVALID_IDEMPOTENCY_KEY = "INVALID_IDEMPOTENCY_KEY"
    IDEMPOTENCY_KEY_REUSED = "IDEMPOTENCY_KEY_REUSED"
    INVALID_DIVERSITY = "INVALID_DIVERSITY"
    CONTEXT_TOO_LONG = "CONTEXT_TOO_LONG"
    INVALID_RANGE = "INVALID_RANGE"
    NOT_FOUND = "NOT_FOUND"
    INVALID_NAME = "INVALID_NAME"
    INVALID_ROLES = "INVALID_ROLES"
    INVALID_EXPIRY = "INVALID_EXPIRY"
    INVALID_UPLOAD = "INVALID_UPLOAD"
    CONFLICT = "CONFLICT"
    INTERNAL = "INTERNAL"


@strawberry.type(description="An expected failure: `field` is the input path, `code` is stable.")
class UserError:
    field: str | None
    message: str
    code: ErrorCode

    @classmethod
    def from_domain(cls, exc: DomainError) -> UserError:
        try:
            code = ErrorCode(exc.code)
        except ValueError:
            code = ErrorCode.INTERNAL
        return cls(field=exc.field, message=exc.message, code=code)


@strawberry.interface(description="An object with a global id, resolvable through `node(id:)`.")
class Node:
    id: strawberry.ID


@strawberry.type
class PageInfo:
    has_next_page: bool
    has_previous_page: bool
    start_cursor: str | None
    end_cursor: str | None


def to_global_id(type_name: str, ident: uuid.UUID) -> strawberry.ID:
    return strawberry.ID(base64.urlsafe_b64encode(f"{type_name}:{ident}".encode()).decode().rstrip("="))


def from_global_id(global_id: str, *, expected: str | None = None, field: str = "id") -> tuple[str, uuid.UUID]:
    try:
        padded = global_id + "=" * (-len(global_id) % 4)
        type_name, raw = base64.urlsafe_b64decode(padded.encode()).decode().split(":", 1)
        ident = uuid.UUID(raw)
    except (ValueError, UnicodeDecodeError, binascii.Error) as exc:
        raise InvalidInput("INVALID_ID", f"{global_id!r} is not an id issued by this API", field=field) from exc
    if expected is not None and type_name != expected:
        raise InvalidInput("INVALID_ID", f"expected a {expected} id, got a {type_name} id", field=field)
    return type_name, ident
