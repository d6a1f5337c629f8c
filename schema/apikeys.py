"""API keys: types, inputs and payloads."""

from __future__ import annotations

from datetime import datetime
from enum import Enum

import strawberry

from schema.common import Node, UserError


@strawberry.enum(description="Roles are ordered: an ADMIN is also an EDITOR, and an EDITOR is also a READER.")
class Role(Enum):
    READER = "reader"
    EDITOR = "editor"
    ADMIN = "admin"


@strawberry.type(description="A server-to-server credential of this tenant. The secret itself is never shown again.")
class ApiKey(Node):
    name: str
    prefix: str = strawberry.field(description="The key's first characters, to recognise it in logs and scanners.")
    roles: list[Role]
    created_by: str
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None
    last_used_at: datetime | None = strawberry.field(description="Updated at most once a minute.")


@strawberry.input
class CreateApiKeyInput:
    name: str = strawberry.field(description="What the key is for, e.g. 'catalogue sync job'.")
    roles: list[Role]
    expires_at: datetime | None = strawberry.field(default=None, description="Optional; at most 3 years ahead.")


@strawberry.type
class CreateApiKeyPayload:
    api_key: ApiKey | None = None
    secret: str | None = strawberry.field(
        default=None,
        description="The key to send as 'X-API-Key' or 'Authorization: Bearer'. Shown only here, only once.",
    )
    errors: list[UserError] = strawberry.field(default_factory=list)


@strawberry.input
class RevokeApiKeyInput:
    id: strawberry.ID


@strawberry.type
class RevokeApiKeyPayload:
    api_key: ApiKey | None = None
    errors: list[UserError] = strawberry.field(default_factory=list)
