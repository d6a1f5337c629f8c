"""Who is calling: a JWT, an API key, or (development mode only) nobody.

Credentials arrive as `Authorization: Bearer <token or key>` or `X-API-Key: <key>` on HTTP and
on the websocket upgrade, or in the `connection_init` payload (`{"authorization": "Bearer …"}`,
`{"token": …}` or `{"apiKey": …}`). A string with the API-key prefix is a key; anything else
is a JWT. A credential that is present but wrong is always refused, in development too:
silently downgrading a bad token to the anonymous developer would hide the bug.
"""

from __future__ import annotations

import re
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

from api.auth.tokens import JwtVerifier
from domain import telemetry
from domain.auth import apikeys
from domain.auth.apikeys import ROLES as ROLE_ORDER
from domain.auth.apikeys import KeyMatch
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


class KeyCache:
    """API-key lookups kept for `ttl_s`, by the key's hash (never the secret). Used only while
    `trusted()` says this replica hears every revocation (api/revocation.py); a revocation drops
    the key here at once."""

    def __init__(self, *, ttl_s: float, trusted: Callable[[], bool], max_entries: int = 10_000) -> None:
        self.ttl_s = ttl_s
        self.trusted = trusted
        self.max_entries = max_entries
        self._entries: OrderedDict[str, tuple[float, KeyMatch]] = OrderedDict()

    def get(self, digest: str) -> KeyMatch | None:
        if self.ttl_s <= 0 or not self.trusted():
            return None
        entry = self._entries.get(digest)
        if entry is None or entry[0] < time.monotonic():
            self._entries.pop(digest, None)
            telemetry.cache_lookup("apikey", False)
            return None
        telemetry.cache_lookup("apikey", True)
        return entry[1]

    def put(self, digest: str, match: KeyMatch) -> None:
        if self.ttl_s <= 0 or not self.trusted():
            return
        self._entries[digest] = (time.monotonic() + self.ttl_s, match)
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)

    def drop(self, key_id: str) -> None:
        for digest in [d for d, (_, m) in self._entries.items() if str(m.id) == key_id]:
            del self._entries[digest]

    def clear(self) -> None:
        self._entries.clear()


class Authenticator:
    def __init__(
        self,
        *,
        db: Database,
        verifier: JwtVerifier,
        development: bool,
        dev_tenant: str,
        key_cache: KeyCache | None = None,
    ) -> None:
        self.db = db
        self.verifier = verifier
        self.development = development
        self.dev_tenant = dev_tenant
        self.key_cache = key_cache or KeyCache(ttl_s=0, trusted=lambda: False)
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

    async def _api_key(self, secret: str, *, fresh: bool = False) -> Principal:
        digest = apikeys.hash_secret(secret)
        match = None if fresh else self.key_cache.get(digest)
        if match is None:
            match = await apikeys.find(self.db, secret)
            if match is not None:
                self.key_cache.put(digest, match)
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

    async def recheck(self, credential: str) -> Principal:
        """Authenticate again from the source (PostgreSQL for keys): for long-lived websockets."""
        if credential.startswith(API_KEY_MARK):
            return await self._api_key(credential, fresh=True)
        return await self._jwt(credential)

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
