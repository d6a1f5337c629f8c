"""API keys for server-to-server callers.

A key is `<prefix><43 random url-safe characters>`, e.g. `rgq_live_…`: the prefix makes a
leaked key easy for secret scanners to find. Only the SHA-256 of the whole key is stored. A
key carries 256 random bits, so a fast hash is enough (no password stretching needed), and
it lets authentication find the row by an index lookup. The secret is returned once, at
creation, and can't be recovered afterwards.
"""

from __future__ import annotations

import hashlib
import secrets
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import text
from sqlalchemy.engine import RowMapping

from domain.auth.error_codes import ApiKeyErrorCode
from domain.errors import InvalidInput, NotFound
from domain.persistence.database import Database

# Ordered: each role includes the ones before it (an admin is also an editor and a reader).
ROLES = ("reader", "editor", "admin")
MAX_NAME_CHARS = 100
MAX_LIFETIME = timedelta(days=3 * 366)
_COLUMNS = "id, name, display_prefix, roles, created_by, created_at, expires_at, revoked_at, last_used_at"


@dataclass(frozen=True)
class ApiKey:
    id: uuid.UUID
    name: str
    display_prefix: str
    roles: list[str]
    created_by: str
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None
    last_used_at: datetime | None

    @classmethod
    def from_row(cls, row: RowMapping) -> ApiKey:
        return cls(**{k: row[k] for k in _COLUMNS.split(", ")})


@dataclass(frozen=True)
class CreatedKey:
    key: ApiKey
    secret: str


@dataclass(frozen=True)
class KeyMatch:
    """What authentication learns from a presented key."""

    id: uuid.UUID
    tenant_id: str
    name: str
    roles: list[str]
    expires_at: datetime | None
    revoked_at: datetime | None


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def new_secret(prefix: str) -> str:
    return prefix + secrets.token_urlsafe(32)


def validate(name: str, roles: list[str], expires_at: datetime | None, *, now: datetime) -> str:
    name = name.strip()
    if not name or len(name) > MAX_NAME_CHARS:
        raise InvalidInput(ApiKeyErrorCode.INVALID_NAME, f"name must be 1..{MAX_NAME_CHARS} characters", field="name")
    if not roles:
        raise InvalidInput(
            ApiKeyErrorCode.INVALID_ROLES, "give the key at least one role: READER, EDITOR or ADMIN", field="roles"
        )
    unknown = sorted(set(roles) - set(ROLES))
    if unknown:
        raise InvalidInput(
            ApiKeyErrorCode.INVALID_ROLES, f"unknown roles {unknown}; use reader, editor or admin", field="roles"
        )
    if expires_at is not None:
        if expires_at.tzinfo is None:
            raise InvalidInput(
                ApiKeyErrorCode.INVALID_EXPIRY,
                "expiresAt needs a time zone, e.g. 2027-01-01T00:00:00Z",
                field="expiresAt",
            )
        if expires_at <= now:
            raise InvalidInput(ApiKeyErrorCode.INVALID_EXPIRY, "expiresAt must be in the future", field="expiresAt")
        if expires_at > now + MAX_LIFETIME:
            raise InvalidInput(
                ApiKeyErrorCode.INVALID_EXPIRY, "expiresAt may be at most 3 years ahead; rotate keys", field="expiresAt"
            )
    return name


async def create(
    db: Database,
    tenant_id: str,
    *,
    name: str,
    roles: list[str],
    expires_at: datetime | None,
    created_by: str,
    prefix: str,
) -> CreatedKey:
    name = validate(name, roles, expires_at, now=datetime.now(UTC))
    secret = new_secret(prefix)
    async with db.session(tenant_id) as session:
        row = (
            (
                await session.execute(
                    text(
                        "INSERT INTO api_keys (id, tenant_id, name, display_prefix, secret_hash, roles, created_by, "
                        "expires_at) VALUES (:id, :t, :n, :p, :h, :r, :by, :exp) RETURNING " + _COLUMNS
                    ),
                    {
                        "id": uuid.uuid4(),
                        "t": tenant_id,
                        "n": name,
                        # Enough to recognise a key in a listing, far too little to guess the rest.
                        "p": secret[: len(prefix) + 4],
                        "h": hash_secret(secret),
                        "r": sorted(set(roles), key=ROLES.index),
                        "by": created_by,
                        "exp": expires_at,
                    },
                )
            )
            .mappings()
            .one()
        )
    return CreatedKey(ApiKey.from_row(row), secret)


async def revoke(db: Database, tenant_id: str, key_id: uuid.UUID) -> ApiKey:
    """Idempotent: revoking a revoked key returns it with its first revocation time."""
    async with db.session(tenant_id) as session:
        row = (
            (
                await session.execute(
                    text(
                        "UPDATE api_keys SET revoked_at = coalesce(revoked_at, now()) "
                        "WHERE id = :id AND tenant_id = :t RETURNING " + _COLUMNS
                    ),
                    {"id": key_id, "t": tenant_id},
                )
            )
            .mappings()
            .first()
        )
    if row is None:
        raise NotFound("no API key with this id in this tenant", field="id")
    return ApiKey.from_row(row)


async def list_keys(db: Database, tenant_id: str, *, include_revoked: bool) -> list[ApiKey]:
    async with db.session(tenant_id) as session:
        rows = (
            await session.execute(
                text(
                    "SELECT " + _COLUMNS + " FROM api_keys WHERE tenant_id = :t "
                    "AND (:all OR revoked_at IS NULL) ORDER BY created_at, id"
                ),
                {"t": tenant_id, "all": include_revoked},
            )
        ).mappings()
        return [ApiKey.from_row(r) for r in rows]


async def find(db: Database, secret: str) -> KeyMatch | None:
    """The key with this secret, in whatever tenant, through the SECURITY DEFINER function of
    migration 0004 (it finds one key by its hash and nothing else). One statement in autocommit:
    a single round trip, since this runs before every request made with a key."""
    async with db.lookups.connect() as conn:
        result = await conn.execute(text("SELECT * FROM ragql_find_api_key(:h)"), {"h": hash_secret(secret)})
        row = result.mappings().first()
    if row is None:
        return None
    return KeyMatch(
        id=row["id"],
        tenant_id=row["tenant_id"],
        name=row["name"],
        roles=list(row["roles"]),
        expires_at=row["expires_at"],
        revoked_at=row["revoked_at"],
    )
