"""Index versions shared by the processes of one host without Redis (api/host_versions.py): a
write through one `ragql serve` process ends the other's cached (and replayed) searches at once."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from api.auth.tokens import JwtVerifier
from api.bootstrap import jwt_config
from api.host_versions import HostStore
from api.settings import Settings
from tests.redis_fixture import _free_port
from tests.security_harness import TEST_JWT_SECRET

ROOT = Path(__file__).resolve().parent.parent
STARTUP_TIMEOUT_S = 240.0
BUMPS = 300
BUMPER = """
import asyncio, sys
from pathlib import Path
from api.auth.tokens import JwtVerifier
from api.bootstrap import jwt_config
from api.host_versions import HostStore
from api.settings import Settings
store = HostStore(Path(sys.argv[1]))
async def main():
    for _ in range(int(sys.argv[2])):
        await store.bump("index:shared")
asyncio.run(main())
"""


def test_bumps_from_several_processes_are_never_lost(tmp_path: Path) -> None:
    path = tmp_path / "cache-versions"
    store = HostStore(path)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    procs = [
        subprocess.Popen([sys.executable, "-c", BUMPER, str(path), str(BUMPS)], env=env, cwd=ROOT) for _ in range(3)
    ]

    async def bump_here() -> None:
        for _ in range(BUMPS):
            await store.bump("index:shared")

    asyncio.run(bump_here())
    assert all(p.wait(timeout=120) == 0 for p in procs)
    assert asyncio.run(store.version("index:shared")) == 4 * BUMPS
    # A process that maps the file later reads the same counters.
    assert asyncio.run(HostStore(path).version("index:shared")) == 4 * BUMPS
    other = next(f"index:t{i}" for i in range(100) if store._offset(f"index:t{i}") != store._offset("index:shared"))
    assert asyncio.run(store.version(other)) == 0


class Process:
    """`ragql serve` in production mode, without Redis, with a data dir it may share."""

    def __init__(self, name: str, root: Path, data_dir: Path, db_url: str) -> None:
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
            RAGQL_JWT_SECRET=TEST_JWT_SECRET,
            RAGQL_DATA_DIR=str(data_dir),
            RAGQL_LOAD_DEMO="false",
            RAGQL_SEARCH_CACHE_TTL_S="300",
            RAGQL_WORKERS="1",
        )
        with self.log.open("wb") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "api.cli", "serve"], cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT
            )

    def wait_ready(self) -> None:
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"{self.name} exited: {self.log.read_text()[-3000:]}")
            try:
                if httpx.get(f"http://127.0.0.1:{self.port}/readyz", timeout=2).status_code == 200:
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

    def gql(self, query: str, variables: dict[str, Any], token: str) -> dict[str, Any]:
        response = httpx.post(
            f"http://127.0.0.1:{self.port}/graphql",
            json={"query": query, "variables": variables},
            headers={"Authorization": f"Bearer {token}"},
            timeout=60,
        )
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        assert "errors" not in body, body
        return body["data"]


@pytest.fixture
def pair(pg_url: str, tmp_path: Path) -> Iterator[tuple[Process, Process]]:
    shared = tmp_path / "data"
    a = Process("a", tmp_path, shared, pg_url)
    procs = [a]
    try:
        a.wait_ready()
        b = Process("b", tmp_path, shared, pg_url)
        procs.append(b)
        b.wait_ready()
        yield a, b
    finally:
        for p in procs:
            p.stop()


SEARCH = "query($q: String!) { search(query: $q, first: 10) { queryId hits { document { id title } } } }"
INGEST = (
    "mutation($d: [DocumentInput!]!) { ingestDocuments(input: {documents: $d, mode: SYNC}) "
    "{ documents { id title } errors { code } } }"
)
DELETE = "mutation($id: ID!) { deleteDocument(input: {id: $id}) { deletedId errors { code } } }"


def _titles(data: dict[str, Any]) -> list[str]:
    return [h["document"]["title"] for h in data["search"]["hits"]]


@pytest.mark.slow
def test_a_write_through_one_process_ends_the_other_s_cached_searches(pair: tuple[Process, Process]) -> None:
    a, b = pair
    tenant = f"t-{uuid.uuid4().hex[:12]}"
    settings = Settings(env="production", jwt_secret=TEST_JWT_SECRET, database_url="postgresql://x@127.0.0.1/x")
    verifier = JwtVerifier(jwt_config(settings))
    editor = verifier.issue(subject="editor", tenant=tenant, roles=["editor"], ttl_s=600)
    reader = verifier.issue(subject="reader", tenant=tenant, roles=["reader"], ttl_s=600)
    first = a.gql(INGEST, {"d": [{"title": "Heron lagoon", "text": "Herons fish in the quiet lagoon."}]}, editor)
    assert first["ingestDocuments"]["errors"] == []
    q = {"q": "herons in the lagoon"}
    # B computes, keeps and then replays the search (three times the same request).
    seen = [_titles(b.gql(SEARCH, q, reader)) for _ in range(3)]
    assert seen == [["Heron lagoon"]] * 3
    # A writes: B's very next answers see it.
    a.gql(INGEST, {"d": [{"title": "Egret lagoon", "text": "Egrets and herons share the lagoon."}]}, editor)
    assert sorted(_titles(b.gql(SEARCH, q, reader))) == ["Egret lagoon", "Heron lagoon"]
    for _ in range(2):
        b.gql(SEARCH, q, reader)
    gone = first["ingestDocuments"]["documents"][0]["id"]
    assert a.gql(DELETE, {"id": gone}, editor)["deleteDocument"]["deletedId"] == gone
    assert _titles(b.gql(SEARCH, q, reader)) == ["Egret lagoon"]
