"""Shared pieces of the security tests: a production-mode app with real tokens and keys.

Every secret a test creates is remembered; tests/log_secrets.py scans the log records of the
whole session for them."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
from fastapi import FastAPI
from joserfc import jwt
from joserfc.jwk import ECKey, KeySet, OctKey, RSAKey

from api.app import create_app
from api.settings import Settings
from domain.providers.embedding import Embedder
from tests.conftest import client_for
from tests.log_secrets import remember

TEST_JWT_SECRET = "test-secret-0f3c9a7e5b1d4c2a8e6f0b9d7c5a3e1f"
ISSUER, AUDIENCE = "ragql", "ragql"
remember(TEST_JWT_SECRET)


class Signer:
    """Mints tokens the way an identity provider would: HS256 with the shared secret, RS256 and
    ES256 with keys published in a JWKS file."""

    def __init__(self, directory: Path) -> None:
        self.rsa = RSAKey.generate_key(2048, parameters={"kid": "rsa-1"})
        self.ec = ECKey.generate_key("P-256", parameters={"kid": "ec-1"})
        self.jwks_path = directory / f"jwks-{uuid.uuid4().hex[:6]}.json"
        self.publish([self.rsa, self.ec])

    def publish(self, keys: list[RSAKey | ECKey]) -> None:
        self.jwks_path.write_text(json.dumps(KeySet(list(keys)).as_dict(private=False)))

    def claims(self, tenant: str, roles: list[str], **overrides: Any) -> dict[str, Any]:
        now = int(time.time())
        claims: dict[str, Any] = {
            "sub": f"user-{tenant}",
            "tenant": tenant,
            "roles": roles,
            "iss": ISSUER,
            "aud": AUDIENCE,
            "iat": now,
            "nbf": now,
            "exp": now + 600,
        }
        claims.update(overrides)
        return {k: v for k, v in claims.items() if v is not None}

    def hs256(self, tenant: str, roles: list[str], *, secret: str = TEST_JWT_SECRET, **overrides: Any) -> str:
        claims = self.claims(tenant, roles, **overrides)
        return remember(jwt.encode({"alg": "HS256"}, claims, OctKey.import_key(secret), algorithms=["HS256"]))

    def rs256(self, tenant: str, roles: list[str], *, key: RSAKey | None = None, **overrides: Any) -> str:
        key = key or self.rsa
        header = {"alg": "RS256", "kid": key.kid}
        return remember(jwt.encode(header, self.claims(tenant, roles, **overrides), key, algorithms=["RS256"]))

    def es256(self, tenant: str, roles: list[str], **overrides: Any) -> str:
        header = {"alg": "ES256", "kid": self.ec.kid}
        return remember(jwt.encode(header, self.claims(tenant, roles, **overrides), self.ec, algorithms=["ES256"]))


def production_settings(pg_url: str, tmp_root: Path, signer: Signer, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "env": "production",
        "database_url": pg_url,
        "data_dir": tmp_root,
        "load_demo": False,
        "jwt_secret": TEST_JWT_SECRET,
        "jwt_jwks_file": signer.jwks_path,
        "jwt_jwks_min_refresh_s": 0.0,
    }
    values.update(overrides)
    return Settings(**values)


@asynccontextmanager
async def production_client(
    pg_url: str, tmp_root: Path, embedder: Embedder, signer: Signer, **overrides: Any
) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(production_settings(pg_url, tmp_root, signer, **overrides), embedder=embedder)
    async with client_for(app) as client:
        # For tests that look at the app's own state (its caches); the client is the app's only user.
        client.headers["x-test-app-id"] = str(id(app))
        APPS[str(id(app))] = app
        try:
            yield client
        finally:
            APPS.pop(str(id(app)), None)


APPS: dict[str, FastAPI] = {}


def app_of(client: httpx.AsyncClient) -> FastAPI:
    return APPS[client.headers["x-test-app-id"]]


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def gql(
    client: httpx.AsyncClient,
    query: str,
    variables: dict[str, Any] | None = None,
    headers: dict[str, str] | None = None,
) -> httpx.Response:
    return await client.post("/graphql", json={"query": query, "variables": variables or {}}, headers=headers or {})


def codes(body: dict[str, Any]) -> list[str]:
    return [e.get("extensions", {}).get("code") for e in body.get("errors") or []]
