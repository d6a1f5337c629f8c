"""Who is calling: a JWT, an API key, or (development mode only) nobody.

Credentials arrive as `Authorization: Bearer <token or key>` or `X-API-Key: <key>` on HTTP and
on the websocket upgrade, or in the `connection_init` payload (`{"authorization": "Bearer …"}`,
`{"token": …}` or `{"apiKey": …}`). A string with the API-key prefix is a key; anything else
is a JWT. A credential that is present but wrong is always refused, in development too:
silently downgrading a bad token to the anonymous developer would hide the bug.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from api.auth.tokens import JwtVerifier
from domain.auth import apikeys
from domain.auth.apikeys import ROLES as ROLE_ORDER
from domain.auth.principal import Principal
from domain.errors import Unauthenticated
from domain.persistence.database import Database
from domain.tenancy import ensure_tenant

API_KEY_MARK = "rgq_"
TENANT_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
MAX_CREDENTIAL_CHARS = 8192


def credential_from_headers(headers: Mapping[str, str]) -> str | None:
    key = headers.get("x-api-key")
    if key:
        return key.strip()
    auth = headers.get("authorization")
    if not auth:
        return None
    scheme, _, value = auth.strip().partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        raise Unauthenticated("Authorization must be 'Bearer <token or API key>'")
    return value.strip()


def credential_from_params(params: Mapping[str, Any] | None) -> str | None:
    """The credential in a websocket `connection_init` payload, if any."""
    if not params:
        return None
    lowered = {str(k).lower(): v for k, v in params.items()}
    for name in ("authorization", "token", "apikey", "x-api-key"):
        value = lowered.get(name)
        if isinstance(value, str) and value.strip():
            return credential_from_headers(
                {"authorization": value} if name == "authorization" else {"x-api-key": value}
            )
    return None


class Authenticator:
    def __init__(self, *, db: Database, verifier: JwtVerifier, development: bool, dev_tenant: str) -> None:
        self.db = db
        self.verifier = verifier
        self.development = development
        self.dev_tenant = dev_tenant
        self._known_tenants: set[str] = {dev_tenant}

    async def authenticate(self, credential: str | None) -> Principal:
        if credential is None:
            if self.development:
                return Principal(self.dev_tenant, "anonymous", list(ROLE_ORDER), authenticated=False)
            raise Unauthenticated(
                "authentication required: send 'Authorization: Bearer <JWT>' or 'X-API-Key: <key>' "
                "(for local use: ragql dev-token --tenant T --role reader)"
            )
        if len(credential) > MAX_CREDENTIAL_CHARS:
            raise Unauthenticated("credential too long")
        if credential.startswith(API_KEY_MARK):
            return await self._api_key(credential)
        return await self._jwt(credential)

    async def _api_key(self, secret: str) -> Principal:
        match = await apikeys.find(self.db, secret)
        if match is None:
            raise Unauthenticated("unknown API key")
        if match.revoked_at is not None:
            raise Unauthenticated("this API key was revoked; ask an admin of the tenant for a new one")
        if match.expires_at is not None and match.expires_at <= datetime.now(UTC):
            raise Unauthenticated("this API key has expired; ask an admin of the tenant for a new one")
        return Principal(
            match.tenant_id,
            f"apikey:{match.name}",
            _known_roles(match.roles),
            authenticated=True,
            method="api_key",
            api_key_id=str(match.id),
            expires_at=match.expires_at.timestamp() if match.expires_at else None,
        )

    async def _jwt(self, token: str) -> Principal:
        verified = await self.verifier.verify(token)
        # fullmatch: `$` would let "acme\n" through as a tenant of its own.
        if not TENANT_ID.fullmatch(verified.tenant):
            raise Unauthenticated("the token's tenant claim must be 1..64 letters, digits, '.', '_' or '-'")
        await self._provision(verified.tenant)
        return Principal(
            verified.tenant,
            verified.subject,
            _known_roles(verified.roles),
            authenticated=True,
            method="jwt",
            expires_at=verified.expires_at,
        )

    async def _provision(self, tenant: str) -> None:
        """A tenant named by a verified token exists from its first request on."""
        if tenant not in self._known_tenants:
            await ensure_tenant(self.db, tenant)
            self._known_tenants.add(tenant)


def _known_roles(roles: list[str]) -> list[str]:
    return [r for r in ROLE_ORDER if r in roles]
