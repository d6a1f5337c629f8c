"""Attacks on the transport, against a real production-mode server run with `ragql serve`'s own
uvicorn options (api/serving.py): forged X-Forwarded-For, slow request heads, websockets that
never identify themselves, oversized websocket messages."""

from __future__ import annotations

import asyncio
import json
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import websockets
from websockets.typing import Subprotocol

from api.app import create_app
from api.client_address import client_address, networks
from api.serving import uvicorn_options
from api.settings import Settings
from domain.providers.embedding import LocalEmbedder
from tests.security_harness import Signer, production_settings
from tests.servers import serve_in_thread

TRANSPORT_WS = Subprotocol("graphql-transport-ws")
LEGACY_WS = Subprotocol("graphql-ws")
ME = "{ me { tenant } }"


@pytest.fixture(scope="module")
def signer(tmp_root: Path) -> Signer:
    return Signer(tmp_root)


@pytest.fixture(scope="module")
def settings(pg_url: str, tmp_root: Path, signer: Signer, app_client: httpx.AsyncClient) -> Settings:
    return production_settings(
        pg_url,
        tmp_root,
        signer,
        header_timeout_s=1.0,
        websocket_init_timeout_s=1.0,
        max_unidentified_websockets_per_ip=3,
        max_request_bytes=64 * 1024,
        admission_per_ip_per_s=3.0,
    )


@pytest.fixture(scope="module")
def server(settings: Settings, embedder: LocalEmbedder) -> Iterator[str]:
    with serve_in_thread(create_app(settings, embedder=embedder), options=uvicorn_options(settings)) as address:
        yield address


def _token(signer: Signer) -> str:
    return signer.hs256(f"tl-{uuid.uuid4().hex[:8]}", ["reader"])


# --- client addresses ---------------------------------------------------------------------------


def _scope(peer: str, forwarded: str | None = None) -> dict[str, Any]:
    headers = [(b"x-forwarded-for", forwarded.encode())] if forwarded is not None else []
    return {"client": (peer, 1234), "headers": headers}


def test_forwarded_for_is_ignored_unless_the_peer_is_a_trusted_proxy() -> None:
    assert client_address(_scope("203.0.113.9", "198.51.100.1")) == "203.0.113.9"
    trusted = networks(["10.244.0.0/16"])
    assert client_address(_scope("203.0.113.9", "198.51.100.1"), trusted) == "203.0.113.9"
    # From the ingress: the right-most address the trusted proxies did not add.
    assert client_address(_scope("10.244.1.5", "1.2.3.4, 198.51.100.1, 10.244.3.3"), trusted) == "198.51.100.1"


def test_a_junk_forwarded_for_never_becomes_the_address() -> None:
    trusted = networks(["10.244.0.0/16"])
    assert client_address(_scope("10.244.1.5", "x" * 4000), trusted) == "10.244.1.5"
    assert client_address(_scope("10.244.1.5", "not-an-ip"), trusted) == "10.244.1.5"
    assert client_address(_scope("10.244.1.5", "198.51.100.1, <script>"), trusted) == "10.244.1.5"


def test_trusted_proxies_must_be_addresses_or_networks(tmp_root: Path) -> None:
    assert Settings(trusted_proxies="10.0.0.0/8, 192.168.1.1").trusted_proxies == ["10.0.0.0/8", "192.168.1.1/32"]
    assert Settings().trusted_proxies == []
    with pytest.raises(ValueError, match="RAGQL_TRUSTED_PROXIES"):
        Settings(trusted_proxies="ingress.local")


def test_ragql_serve_turns_off_uvicorns_own_proxy_header_trust() -> None:
    options = uvicorn_options(Settings())
    assert options["proxy_headers"] is False
    assert options["limit_concurrency"] == Settings().limit_concurrency
    assert options["ws_max_size"] == Settings().max_request_bytes


async def test_a_forged_forwarded_for_from_loopback_does_not_get_a_fresh_bucket(server: str, signer: Signer) -> None:
    # uvicorn's default trusts X-Forwarded-For from 127.0.0.1: a fresh header per request got a
    # fresh per-IP admission bucket. Behind `ragql serve` with no trusted proxies the peer is the
    # client, so the sixth request in a second is over the 3/s admission rate whatever it claims.
    token = _token(signer)
    statuses = []
    async with httpx.AsyncClient(base_url=f"http://{server}") as client:
        for i in range(6):
            headers = {"Authorization": f"Bearer {token}", "X-Forwarded-For": f"198.51.100.{i + 1}"}
            response = await client.post("/graphql", json={"query": ME}, headers=headers)
            statuses.append(response.status_code)
    assert 429 in statuses, statuses


# --- slow clients -------------------------------------------------------------------------------


def _closed_by_server(sock: socket.socket, within_s: float) -> bool:
    """True once the server closes the connection (recv returns b""); False if it is still open."""
    sock.settimeout(within_s)
    try:
        while True:
            data = sock.recv(4096)
            if not data:
                return True
    except TimeoutError:
        return False


def test_a_request_head_dripped_slowly_is_cut_off(server: str) -> None:
    host, port = server.split(":")
    with socket.create_connection((host, int(port))) as sock:
        sock.sendall(b"POST /graphql HTTP/1.1\r\nHost: x\r\n")  # never finishes its headers
        assert _closed_by_server(sock, within_s=10.0)
    # A normal request on a new connection is still served.
    with socket.create_connection((host, int(port))) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        sock.settimeout(10.0)
        assert sock.recv(4096).startswith(b"HTTP/1.1 200")


def _read_response(sock: socket.socket, ends_with: bytes) -> bytes:
    sock.settimeout(10.0)
    received = b""
    while not received.endswith(ends_with):
        chunk = sock.recv(4096)
        assert chunk, f"closed before the whole response arrived: {received!r}"
        received += chunk
    return received


def test_a_keep_alive_follow_up_head_dripped_slowly_is_cut_off(server: str) -> None:
    # The head deadline used to be armed for a connection's first request only; uvicorn's
    # keep-alive timer stops at the first byte, so a follow-up head dripped after one
    # request held the connection for as long as the client liked.
    host, port = server.split(":")
    with socket.create_connection((host, int(port))) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        assert _read_response(sock, b'{"status":"ok"}').startswith(b"HTTP/1.1 200")
        sock.sendall(b"GET /healthz HTTP/1.1\r\n")
        for header in (b"Host: x\r\n", b"X-Drip: 1\r\n"):
            sock.sendall(header)  # bytes keep coming, but the head never ends
        assert _closed_by_server(sock, within_s=10.0)


def test_a_request_head_over_the_limit_is_refused_before_it_ends(server: str, settings: Settings) -> None:
    # uvicorn's httptools protocol (llhttp) buffers a head of any size; h11 had a limit, and
    # `ragql serve` keeps it (RAGQL_MAX_HEADER_BYTES) with the faster parser.
    host, port = server.split(":")
    with socket.create_connection((host, int(port))) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        filler = b"X-Filler: " + b"a" * 1000 + b"\r\n"
        try:
            for _ in range(settings.max_header_bytes // len(filler) + 2):
                sock.sendall(filler)  # the head never ends, and grows past the limit
        except (BrokenPipeError, ConnectionResetError):
            pass  # refused and closed while we were still sending
        sock.settimeout(10.0)
        try:
            reply = sock.recv(4096)
        except ConnectionResetError:
            reply = b""
        assert reply == b"" or reply.startswith(b"HTTP/1.1 400")
        assert _closed_by_server(sock, within_s=0.5)


def test_keep_alive_follow_ups_that_arrive_in_time_are_served(server: str) -> None:
    host, port = server.split(":")
    with socket.create_connection((host, int(port))) as sock:
        for _ in range(3):
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            assert _read_response(sock, b'{"status":"ok"}').startswith(b"HTTP/1.1 200")


@pytest.mark.parametrize("protocol", [TRANSPORT_WS, LEGACY_WS])
async def test_a_websocket_that_never_sends_connection_init_is_closed(server: str, protocol: Subprotocol) -> None:
    async with websockets.connect(f"ws://{server}/graphql", subprotocols=[protocol]) as ws:
        with pytest.raises(websockets.ConnectionClosed) as closed:
            async with asyncio.timeout(10):
                await ws.recv()
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 4408


async def test_unidentified_websockets_are_counted_per_address(server: str, signer: Signer) -> None:
    url = f"ws://{server}/graphql"
    idle = [await websockets.connect(url, subprotocols=[LEGACY_WS]) for _ in range(3)]
    try:
        with pytest.raises(websockets.InvalidStatus) as refused:
            await websockets.connect(url, subprotocols=[LEGACY_WS])
        assert refused.value.response.status_code == 403
    finally:
        for ws in idle:
            await ws.close()
    # Identified sockets do not count: once the idle ones are gone, new ones are let in again.
    await asyncio.sleep(0.2)
    async with websockets.connect(url, subprotocols=[TRANSPORT_WS]) as ws:
        await ws.send(json.dumps({"type": "connection_init", "payload": {"authorization": f"Bearer {_token(signer)}"}}))
        assert json.loads(await ws.recv())["type"] == "connection_ack"


# --- the same size limit on every transport -----------------------------------------------------


@pytest.mark.parametrize("protocol", [TRANSPORT_WS, LEGACY_WS])
async def test_a_websocket_message_over_the_body_limit_closes_the_socket(
    server: str, signer: Signer, protocol: Subprotocol
) -> None:
    async with websockets.connect(f"ws://{server}/graphql", subprotocols=[protocol], max_size=None) as ws:
        await ws.send(json.dumps({"type": "connection_init", "payload": {"authorization": f"Bearer {_token(signer)}"}}))
        assert json.loads(await ws.recv())["type"] == "connection_ack"
        # 100 KiB > the 64 KiB limit: an HTTP body this size gets 413.
        big = {"query": ME, "variables": {"pad": "x" * 100_000}}
        start = "subscribe" if protocol == TRANSPORT_WS else "start"
        await ws.send(json.dumps({"id": "1", "type": start, "payload": big}))
        with pytest.raises(websockets.ConnectionClosed) as closed:
            async with asyncio.timeout(10):
                while True:
                    await ws.recv()
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1009
