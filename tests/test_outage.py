"""Outages, for real. PostgreSQL: the app reaches it through a TCP relay on 127.0.0.1 that the
test cuts (every open connection dropped, new ones refused) and restores. Redis: a private
redis-server that the test pauses (CLIENT PAUSE: slow answers), kills and starts again."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
import redis

from api.ratelimit import Bucket, Rate, RateLimiter, redis_client
from domain.providers.embedding import LocalEmbedder
from tests.log_secrets import remember
from tests.redis_fixture import private_redis
from tests.security_harness import Signer, bearer, codes, gql, production_client


class Relay:
    """Forwards 127.0.0.1:<port> to the real server (its unix socket or host:port)."""

    def __init__(self, pg_url: str) -> None:
        parts = urlsplit(pg_url)
        host = parse_qs(parts.query).get("host", [parts.hostname or "127.0.0.1"])[0]
        self.unix = f"{host}/.s.PGSQL.{parts.port or 5432}" if host.startswith("/") else None
        self.target = (host, parts.port or 5432)
        self.user = parts.username or "postgres"
        self.password = parts.password or ""
        self.database = parts.path.lstrip("/")
        self.server: asyncio.Server | None = None
        self.port = 0
        self.pipes: set[asyncio.StreamWriter] = set()

    async def _open(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        if self.unix:
            return await asyncio.open_unix_connection(self.unix)
        return await asyncio.open_connection(*self.target)

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            writer.close()

    async def _handle(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        server_r, server_w = await self._open()
        self.pipes.update({client_w, server_w})
        await asyncio.gather(self._pipe(client_r, server_w), self._pipe(server_r, client_w))
        self.pipes.difference_update({client_w, server_w})

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", self.port)
        self.port = self.server.sockets[0].getsockname()[1]

    async def cut(self) -> None:
        assert self.server is not None
        self.server.close()
        for writer in list(self.pipes):
            writer.transport.abort()
        self.pipes.clear()
        await self.server.wait_closed()

    @property
    def url(self) -> str:
        return f"postgresql://{self.user}:{self.password}@127.0.0.1:{self.port}/{self.database}"


@pytest.fixture
async def relay(pg_url: str) -> AsyncIterator[Relay]:
    relay = Relay(pg_url)
    await relay.start()
    yield relay
    if relay.server is not None:
        relay.server.close()


DOCS = "{ documents(first: 1) { totalCount } }"


async def test_an_outage_is_a_retryable_503_and_readyz_says_so(
    relay: Relay, tmp_root: Path, embedder: LocalEmbedder
) -> None:
    signer = Signer(tmp_root)
    headers = bearer(signer.hs256(f"out-{uuid.uuid4().hex[:8]}", ["reader"]))
    async with production_client(relay.url, tmp_root, embedder, signer) as client:
        before = await gql(client, DOCS, headers=headers)
        assert before.status_code == 200 and before.json()["data"]["documents"]["totalCount"] == 0
        ready_before = (await client.get("/readyz")).json()
        assert ready_before["status"] == "ready" and ready_before["checks"]["database"] == "ok"

        await relay.cut()
        for _ in range(2):  # the first meets dropped connections, the next a refused connect
            response = await gql(client, DOCS, headers=headers)
            assert response.status_code == 503, response.text
            assert codes(response.json()) == ["SERVICE_UNAVAILABLE"]
            assert response.headers["retry-after"] == "1"
        ready = await client.get("/readyz")
        assert ready.status_code == 503
        assert ready.json()["status"] == "unavailable"
        assert ready.json()["checks"]["database"].startswith("failed")

        await relay.start()  # the same port again
        for _ in range(20):
            after = await gql(client, DOCS, headers=headers)
            if after.status_code == 200:
                break
            await asyncio.sleep(0.1)
        assert after.status_code == 200 and after.json()["data"]["documents"]["totalCount"] == 0


# --- Redis: don't trip on one slow call, and report the state the limits are really in ---------


def _admin(url: str) -> redis.Redis:
    return redis.Redis.from_url(url, socket_timeout=5)


def _one_bucket() -> list[Bucket]:
    return [Bucket(f"out:{uuid.uuid4().hex[:8]}", Rate(1000, 60))]


async def test_one_slow_redis_call_does_not_switch_to_local_limits() -> None:
    # Before: any single timeout marked Redis down for 5 s, so one slow call put every replica on
    # its local limits. Now it takes three failures in a row.
    with private_redis() as server, _admin(server.url) as admin:
        limiter = RateLimiter(redis_client(server.url, timeout_s=0.25))
        try:
            buckets = _one_bucket()
            assert (await limiter.check(buckets)).backend == "redis"
            admin.execute_command("CLIENT", "PAUSE", "2000", "ALL")
            slow = await limiter.check(buckets)  # times out: decided locally
            admin.execute_command("CLIENT", "UNPAUSE")
            assert slow.allowed and slow.backend == "local"
            assert limiter.backend == "redis"
            assert (await limiter.check(buckets)).backend == "redis"
        finally:
            await limiter.aclose()


async def test_a_late_answer_after_a_timeout_leaves_the_limiter_on_what_it_reports() -> None:
    # Before: a timeout started a 5 s skip window and a call in flight that then succeeded cleared
    # the reported error but not the window, so serverInfo.rateLimits said "redis" while every
    # check was decided locally.
    with private_redis() as server, _admin(server.url) as admin:
        limiter = RateLimiter(redis_client(server.url, timeout_s=1.0))
        try:
            buckets = _one_bucket()
            assert (await limiter.check(buckets)).backend == "redis"
            admin.execute_command("CLIENT", "PAUSE", "1400", "ALL")
            times_out = asyncio.create_task(limiter.check(buckets))  # gives up at ~1.0 s
            await asyncio.sleep(0.7)
            answered_late = asyncio.create_task(limiter.check(buckets))  # answered at ~1.4 s
            await asyncio.gather(times_out, answered_late)
            after = await limiter.check(buckets)
            assert after.backend == limiter.backend == "redis"
        finally:
            await limiter.aclose()


async def test_a_burst_waits_for_pooled_connections_instead_of_opening_one_each() -> None:
    # Before: the pool was unbounded, so 64 concurrent checks opened 64 connections at once; on a
    # busy machine some missed the connect timeout and marked a healthy Redis down.
    with private_redis() as server, _admin(server.url) as admin:
        limiter = RateLimiter(redis_client(server.url, timeout_s=0.25, max_connections=8))
        try:
            buckets = _one_bucket()
            decisions = await asyncio.gather(*(limiter.check(buckets) for _ in range(64)))
            assert all(d.allowed and d.backend == "redis" for d in decisions)
            assert limiter.backend == "redis"
            clients = admin.info("clients")["connected_clients"]
            assert clients <= 8 + 1, clients  # the pool's connections and the admin's
        finally:
            await limiter.aclose()


RATE_LIMITS = "{ serverInfo { rateLimits } }"
METRICS_TOKEN = remember("outage-metrics-5e2d7c9b1a3f4e6d8c0b2a4f6e8d0c1b")


async def _rate_limits(client: httpx.AsyncClient, headers: dict[str, str]) -> str:
    body = (await gql(client, RATE_LIMITS, headers=headers)).json()
    return str(body["data"]["serverInfo"]["rateLimits"])


async def _redis_up(client: httpx.AsyncClient) -> str:
    scraped = (await client.get("/metrics", headers=bearer(METRICS_TOKEN))).text
    return next(line for line in scraped.splitlines() if line.startswith("ragql_redis_up "))


async def test_a_stopped_redis_is_reported_as_local_with_the_reason_then_as_redis_again(
    pg_url: str, tmp_root: Path, embedder: LocalEmbedder
) -> None:
    signer = Signer(tmp_root)
    headers = bearer(signer.hs256(f"out-{uuid.uuid4().hex[:8]}", ["admin"]))
    with private_redis() as server:
        async with production_client(
            pg_url, tmp_root, embedder, signer, redis_url=server.url, metrics_token=METRICS_TOKEN
        ) as client:
            assert await _rate_limits(client, headers) == "redis"
            assert await _redis_up(client) == "ragql_redis_up 1.0"

            server.kill()
            reported = [await _rate_limits(client, headers) for _ in range(4)]
            # Each request makes several Redis calls: three failures in a row come within the first.
            assert reported[-1] == "local (redis unreachable: ConnectionError)", reported
            assert await _redis_up(client) == "ragql_redis_up 0.0"
            ready = (await client.get("/readyz")).json()
            assert ready["status"] == "ready" and ready["checks"]["redis"].startswith("degraded")

            server.start()  # the same port
            for _ in range(100):  # the next probe comes within RedisLink's 2 s window
                if (now := await _rate_limits(client, headers)) == "redis":
                    break
                await asyncio.sleep(0.1)
            assert now == "redis"
            assert await _redis_up(client) == "ragql_redis_up 1.0"
