"""A PostgreSQL outage, for real: the app reaches PostgreSQL through a TCP relay on 127.0.0.1
that the test cuts (every open connection dropped, new ones refused) and restores."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest

from domain.providers.embedding import LocalEmbedder
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
