"""createApiKey, revokeApiKey and apiKeys (admin only; enforced on the root fields)."""

from __future__ import annotations

from typing import Annotated

import strawberry

from domain.auth import apikeys
from schema.apikeys import ApiKey, CreateApiKeyInput, CreateApiKeyPayload, RevokeApiKeyInput, RevokeApiKeyPayload, Role
from schema.common import from_global_id, to_global_id
from schema.context import Context


def to_api_key(key: apikeys.ApiKey) -> ApiKey:
    return ApiKey(
        id=to_global_id("ApiKey", key.id),
        name=key.name,
        prefix=key.display_prefix,
        roles=[Role(r) for r in key.roles],
        created_by=key.created_by,
        created_at=key.created_at,
        expires_at=key.expires_at,
        revoked_at=key.revoked_at,
        last_used_at=key.last_used_at,
    )


async def create_api_key(info: strawberry.Info[Context], input: CreateApiKeyInput) -> CreateApiKeyPayload:
    ctx = info.context
    created = await apikeys.create(
        ctx.services.db,
        ctx.tenant_id,
        name=input.name,
        roles=[r.value for r in input.roles],
        expires_at=input.expires_at,
        created_by=ctx.principal.subject,
        prefix=ctx.services.api_key_prefix,
    )
    return CreateApiKeyPayload(api_key=to_api_key(created.key), secret=created.secret)


async def revoke_api_key(info: strawberry.Info[Context], input: RevokeApiKeyInput) -> RevokeApiKeyPayload:
    ctx = info.context
    key_id = from_global_id(input.id, expected="ApiKey")[1]
    key = await apikeys.revoke(ctx.services.db, ctx.tenant_id, key_id)
    # Every replica drops the key from its lookup cache and closes the websockets made with it.
    await ctx.services.revocations.revoked(str(key.id))
    return RevokeApiKeyPayload(api_key=to_api_key(key))


async def api_keys(
    info: strawberry.Info[Context],
    include_revoked: Annotated[bool, strawberry.argument(description="Also list revoked keys.")] = False,
) -> list[ApiKey]:
    keys = await apikeys.list_keys(info.context.services.db, info.context.tenant_id, include_revoked=include_revoked)
    return [to_api_key(k) for k in keys]
