"""Shared GraphQL types: Node, global ids, UserError, paging."""

from __future__ import annotations

import base64
import binascii
import uuid
from enum import Enum

import strawberry

from domain.error_codes import CommonErrorCode
from domain.errors import DomainError, InvalidInput
from schema.error_codes import ErrorCode, to_graphql


@strawberry.type(description="An expected failure: `field` is the input path, `code` is stable.")
class UserError:
    field: str | None
    message: str
    code: Enum = strawberry.field(graphql_type=ErrorCode)

    @classmethod
    def from_domain(cls, exc: DomainError) -> UserError:
        return cls(field=exc.field, message=exc.message, code=to_graphql(exc.code))


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
        raise InvalidInput(
            CommonErrorCode.INVALID_ID, f"{global_id!r} is not an id issued by this API", field=field
        ) from exc
    if expected is not None and type_name != expected:
        raise InvalidInput(CommonErrorCode.INVALID_ID, f"expected a {expected} id, got a {type_name} id", field=field)
    return type_name, ident
