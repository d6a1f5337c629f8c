"""Two real `ragql serve` processes (production mode) on one PostgreSQL of their own and one
private redis-server, all on this machine: they agree.

- B searches, A ingests, B searches again at once and finds the new document (index version in Redis).
- A revokes an API key: B refuses it on its next request, and B's open websocket made with it
  closes with 4401 (the pub/sub broadcast; the periodic recheck is set far out so it can't help).
- The websocket cap per caller is held by both replicas together.
- Redis stops mid-test: both keep answering correctly (caches off), and a write on A is still
  seen by B at once.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import websockets
from websockets.typing import Subprotocol

from api import embedded
from tests.log_secrets import remember
from tests.redis_fixture import PrivateRedis, _free_port
from tests.security_harness import TEST_JWT_SECRET, Signer

ROOT = Path(__file__).resolve().parent.parent
STARTUP_TIMEOUT_S = 240.0
# Production serves /metrics on the API port only with this bearer token.
METRICS_TOKEN = remember("replica-metrics-0d9b8c7a6e5f4d3c2b1a0f9e8d7c6b5a")
CAP = 2
pytestmark = pytest.mark.slow


class Replica:
    def __init__(self, name: str, root: Path, db_url: str, redis_url: str) -> None:
        self.name, self.port = name, _free_port()
        self.log = root / f"{name}.log"
        env = {k: v for k, v in os.environ.items() if not k.startswith("RAGQL_")}
        env.update(
            PYTHONPATH=str(ROOT),
            HF_HUB_OFFLINE="1",
            TRANSFORMERS_OFFLINE="1",
            RAGQL_ENV="production",
            RAGQL_HOST="127.0.0.1",
            RAGQL_PORT=str(self.port),
            RAGQL_DATABASE_URL=db_url,
            RAGQL_REDIS_URL=redis_url,
            RAGQL_JWT_SECRET=TEST_JWT_SECRET,
            RAGQL_DATA_DIR=str(root / name),
            RAGQL_LOAD_DEMO="false",
            RAGQL_MAX_WEBSOCKETS_PER_PRINCIPAL=str(CAP),
            RAGQL_WEBSOCKET_RECHECK_S="3600",
            RAGQL_LOG_LEVEL="info",
            RAGQL_METRICS_TOKEN=METRICS_TOKEN,
        )
        with self.log.open("wb") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "api.cli", "serve"], cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT
            )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def metrics(self) -> str:
        response = httpx.get(self.url + "/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"})
        assert response.status_code == 200, response.text
        return response.text

    def wait_ready(self) -> None:
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"{self.name} exited: {self.log.read_text()[-3000:]}")
            try:
                if httpx.get(self.url + "/healthz", timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.5)
        raise AssertionError(f"{self.name} did not start: {self.log.read_text()[-3000:]}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)

    def gql(self, query: str, variables: dict[str, Any] | None = None, *, credential: str) -> httpx.Response:
        headers = {"Authorization": f"Bearer {credential}"}
        return httpx.post(self.url + "/graphql", json={"query": query, "variables": variables or {}}, headers=headers)


@pytest.fixture(scope="module")
def cluster(tmp_root: Path) -> Iterator[tuple[Replica, Replica, PrivateRedis]]:
    import pgserver

    root = Path(tempfile.mkdtemp(prefix="ragql-replicas-"))
    pgdata = root / "pg" / "pgdata"
    db_url = embedded.start(pgdata, cleanup_mode="delete")
    redis = PrivateRedis(root)
    redis.start()
    # A first, alone: it runs the migrations; then B on the migrated database.
    a = Replica("a", root, db_url, redis.url)
    replicas = [a]
    try:
        a.wait_ready()
        b = Replica("b", root, db_url, redis.url)
        replicas.append(b)
        b.wait_ready()
        yield a, b, redis
    finally:
        for replica in replicas:
            replica.stop()
        redis.stop()
        pgserver.get_server(pgdata).cleanup()
        shutil.rmtree(root, ignore_errors=True)


SEARCH = "query($q: String!) { search(query: $q, first: 10) { hits { document { title } } } }"
INGEST = (
    "mutation($d: [DocumentInput!]!) { ingestDocuments(input: {documents: $d}) "
    "{ documents { title } errors { code } } }"
)
ME = "{ me { tenant } }"


def _titles(response: httpx.Response) -> list[str]:
    body = response.json()
    assert response.status_code == 200 and "errors" not in body, body
    return [h["document"]["title"] for h in body["data"]["search"]["hits"]]


def _ingest(replica: Replica, token: str, title: str) -> None:
    docs = [{"title": title, "text": f"{title} is a film about a quiet heron lagoon at dawn."}]
    body = replica.gql(INGEST, {"d": docs}, credential=token).json()
    assert body["data"]["ingestDocuments"]["errors"] == [], body


def test_two_replicas_agree(cluster: tuple[Replica, Replica, PrivateRedis], tmp_path: Path) -> None:
    a, b, redis = cluster
    signer = Signer(tmp_path)
    tenant = f"rep-{uuid.uuid4().hex[:6]}"
    editor = signer.hs256(tenant, ["reader", "editor", "admin"])
    query = {"q": "heron lagoon at dawn"}

    # 1. B caches a search, A writes, B sees the write on its very next search.
    _ingest(a, editor, "First Heron")
    assert _titles(b.gql(SEARCH, query, credential=editor)) == ["First Heron"]
    assert _titles(b.gql(SEARCH, query, credential=editor)) == ["First Heron"]  # from the cache
    _ingest(a, editor, "Second Heron")
    assert sorted(_titles(b.gql(SEARCH, query, credential=editor))) == ["First Heron", "Second Heron"]
    scraped = b.metrics()
    assert 'ragql_cache_requests_total{cache="search",result="hit"} 1.0' in scraped

    # 2. A key used on B (so B caches its lookup), with a websocket open on B; A revokes it.
    created = a.gql(
        'mutation { createApiKey(input: {name: "sync", roles: [READER]}) { apiKey { id } secret } }',
        credential=editor,
    ).json()["data"]["createApiKey"]
    key = remember(created["secret"])
    assert b.gql(ME, credential=key).json()["data"]["me"]["tenant"] == tenant
    assert b.gql(ME, credential=key).status_code == 200

    async def revoke_while_open() -> tuple[int, str, float]:
        async with websockets.connect(
            f"ws://127.0.0.1:{b.port}/graphql", subprotocols=[Subprotocol("graphql-transport-ws")]
        ) as ws:
            await ws.send(json.dumps({"type": "connection_init", "payload": {"apiKey": key}}))
            assert json.loads(await ws.recv())["type"] == "connection_ack"
            revoke = "mutation($id: ID!) { revokeApiKey(input: {id: $id}) { apiKey { revokedAt } } }"
            started = time.monotonic()
            reply = await asyncio.to_thread(a.gql, revoke, {"id": created["apiKey"]["id"]}, credential=editor)
            assert reply.json()["data"]["revokeApiKey"]["apiKey"]["revokedAt"]
            with pytest.raises(websockets.ConnectionClosed) as closed:
                await asyncio.wait_for(ws.recv(), 10)
            assert closed.value.rcvd is not None
            return closed.value.rcvd.code, closed.value.rcvd.reason, time.monotonic() - started

    code, reason, seconds = asyncio.run(revoke_while_open())
    assert code == 4401 and "revoked" in reason, (code, reason)
    assert seconds < 5, seconds
    refused = b.gql(ME, credential=key)
    assert refused.status_code == 401, refused.text

    # 3. The websocket cap is held by both replicas together: one socket on each, a third is refused.
    async def cap() -> list[str]:
        outcomes: list[str] = []
        sockets = []
        try:
            for replica in (a, b, a):
                ws = await websockets.connect(
                    f"ws://127.0.0.1:{replica.port}/graphql", subprotocols=[Subprotocol("graphql-transport-ws")]
                )
                sockets.append(ws)
                await ws.send(json.dumps({"type": "connection_init", "payload": {"authorization": f"Bearer {editor}"}}))
                try:
                    outcomes.append(json.loads(await asyncio.wait_for(ws.recv(), 5))["type"])
                except websockets.ConnectionClosed as exc:
                    outcomes.append(f"closed {exc.rcvd.code if exc.rcvd else None}")
        finally:
            for ws in sockets:
                await ws.close()
        return outcomes

    assert asyncio.run(cap()) == ["connection_ack", "connection_ack", "closed 4403"]

    # 4. Redis stops: both replicas keep answering, correctly, and still agree after a write.
    redis.kill()
    assert sorted(_titles(b.gql(SEARCH, query, credential=editor))) == ["First Heron", "Second Heron"]
    _ingest(a, editor, "Third Heron")
    for replica in (a, b):
        titles = _titles(replica.gql(SEARCH, query, credential=editor))
        assert sorted(titles) == ["First Heron", "Second Heron", "Third Heron"], replica.name
    assert b.gql(ME, credential=key).status_code == 401
    ready = httpx.get(b.url + "/readyz")
    assert ready.status_code == 200 and ready.json()["checks"]["redis"].startswith("degraded"), ready.text
    assert "ragql_redis_up 0.0" in a.metrics()
