"""Rate limits and quotas through the app: 429 with Retry-After, limits shared by replicas through
a private Redis, the fallback when Redis dies, and the per-IP admission line."""

from __future__ import annotations

import logging
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest

from domain.providers.embedding import LocalEmbedder
from tests.redis_fixture import private_redis
from tests.security_harness import Signer, bearer, codes, gql, production_client

SEARCH = 'query { search(query: "lagoon", first: 2) { hits { document { title } } } }'


def _cost_of(body: dict[str, Any]) -> int:
    return int(body["extensions"]["cost"]["requestedQueryCost"])


async def _until_limited(
    client: httpx.AsyncClient, headers: dict[str, str], attempts: int
) -> tuple[int, httpx.Response]:
    for done in range(attempts):
        response = await gql(client, SEARCH, headers=headers)
        if response.status_code == 429:
            return done, response
    raise AssertionError(f"never limited in {attempts} requests")


@pytest.fixture
def signer(tmp_root: Path) -> Signer:
    return Signer(tmp_root)


async def test_over_the_user_limit_is_429_with_retry_after(
    pg_url: str, tmp_root: Path, embedder: LocalEmbedder, signer: Signer, redis_url: str
) -> None:
    tenant = f"lim-{uuid.uuid4().hex[:8]}"
    headers = bearer(signer.hs256(tenant, ["reader"]))
    async with production_client(pg_url, tmp_root, embedder, signer, redis_url=redis_url, rate_per_user=60) as client:
        first = (await gql(client, SEARCH, headers=headers)).json()
        cost = _cost_of(first)
        allowed, limited = await _until_limited(client, headers, attempts=60)
        # The first request plus `allowed` more fit in 60 units; the next did not.
        assert (1 + allowed) * cost <= 60 < (2 + allowed) * cost
        body = limited.json()
        assert codes(body) == ["RATE_LIMITED"] and body["data"] is None
        retry = int(limited.headers["Retry-After"])
        assert retry >= 1 and body["errors"][0]["extensions"]["retryAfter"] == retry
        info = (await gql(client, "{ serverInfo { rateLimits } }", headers=headers)).json()
        assert info["data"]["serverInfo"]["rateLimits"] == "redis"
        # Another user of the same tenant is not affected.
        other = bearer(signer.hs256(tenant, ["reader"], sub="someone-else"))
        assert (await gql(client, SEARCH, headers=other)).status_code == 200


async def test_the_limit_is_shared_by_replicas_through_redis(
    pg_url: str, tmp_root: Path, embedder: LocalEmbedder, signer: Signer, redis_url: str
) -> None:
    tenant = f"lim-{uuid.uuid4().hex[:8]}"
    headers = bearer(signer.hs256(tenant, ["reader"]))
    settings: dict[str, Any] = {"redis_url": redis_url, "rate_per_user": 100}
    async with (
        production_client(pg_url, tmp_root, embedder, signer, **settings) as one,
        production_client(pg_url, tmp_root, embedder, signer, **settings) as two,
    ):
        cost = _cost_of((await gql(one, SEARCH, headers=headers)).json())
        statuses = [(await gql(client, SEARCH, headers=headers)).status_code for client in [one, two] * 8]
    # Alternating replicas: together they allow what one user may spend, not twice that.
    assert statuses.count(200) == 100 // cost - 1
    assert statuses.count(429) == len(statuses) - statuses.count(200)


async def test_the_tenant_quota_binds_all_its_users(
    pg_url: str, tmp_root: Path, embedder: LocalEmbedder, signer: Signer, redis_url: str
) -> None:
    tenant = f"lim-{uuid.uuid4().hex[:8]}"
    async with production_client(pg_url, tmp_root, embedder, signer, redis_url=redis_url, tenant_quota=80) as client:
        statuses = [
            (await gql(client, SEARCH, headers=bearer(signer.hs256(tenant, ["reader"], sub=f"u{i}")))).status_code
            for i in range(8)
        ]
    assert 200 in statuses and statuses[-1] == 429


async def test_a_redis_outage_falls_back_to_local_limits_and_says_so(
    pg_url: str, tmp_root: Path, embedder: LocalEmbedder, signer: Signer, caplog: pytest.LogCaptureFixture
) -> None:
    tenant = f"lim-{uuid.uuid4().hex[:8]}"
    headers = bearer(signer.hs256(tenant, ["reader"]))
    with private_redis(password="redis-test-pass-123") as server:
        async with production_client(
            pg_url, tmp_root, embedder, signer, redis_url=server.url, rate_per_user=60
        ) as client:
            assert (await gql(client, SEARCH, headers=headers)).status_code == 200
            server.kill()
            # The limiter shares the app's Redis health (api/redis_health.py), which logs as ragql.redis.
            with caplog.at_level(logging.WARNING, logger="ragql.redis"):
                # Requests are still served, and still limited: by this replica, at the same rate.
                allowed, limited = await _until_limited(client, headers, attempts=60)
            assert allowed >= 1 and codes(limited.json()) == ["RATE_LIMITED"]
            fresh = bearer(signer.hs256(tenant, ["reader"], sub="x"))
            info = (await gql(client, "{ serverInfo { rateLimits } }", headers=fresh)).json()
            assert info["data"]["serverInfo"]["rateLimits"].startswith("local (redis unreachable")
    warnings = [r for r in caplog.records if r.name == "ragql.redis" and r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "redis-test-pass-123" not in warnings[0].getMessage()


async def test_admission_refuses_a_flood_from_one_address_before_parsing(
    pg_url: str, tmp_root: Path, embedder: LocalEmbedder, signer: Signer
) -> None:
    async with production_client(pg_url, tmp_root, embedder, signer, admission_per_ip_per_s=5) as client:
        # Not even valid GraphQL, and no credentials: admission comes first.
        statuses = [(await client.post("/graphql", content=b"{{{")).status_code for _ in range(12)]
    assert statuses[:5] == [401] * 5 and statuses[5] == 429
