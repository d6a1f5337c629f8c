"""Websocket authentication against a real production-mode server on 127.0.0.1: the credential in
`connection_init`, refusals, the Origin check, per-caller socket limits, and expiry."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import websockets
from websockets.typing import Origin, Subprotocol

from api.app import create_app
from domain.providers.embedding import LocalEmbedder
from tests.log_secrets import remember
from tests.security_harness import Signer, production_settings
from tests.servers import serve_in_thread

TRANSPORT_WS = Subprotocol("graphql-transport-ws")
LEGACY_WS = Subprotocol("graphql-ws")
ALLOWED = "http://app.example.test"
CREATE_KEY = 'mutation { createApiKey(input: {name: "ws", roles: [READER]}) { apiKey { id } secret } }'
ME = {"query": 'subscription { answerStream(question: "What is a lagoon?") { __typename } }'}


@pytest.fixture(scope="module")
def signer(tmp_root: Path) -> Signer:
    return Signer(tmp_root)


@pytest.fixture(scope="module")
def server(
    pg_url: str, tmp_root: Path, embedder: LocalEmbedder, signer: Signer, app_client: httpx.AsyncClient
) -> Iterator[str]:
    settings = production_settings(pg_url, tmp_root, signer, cors_origins=[ALLOWED], max_websockets_per_principal=2)
    with serve_in_thread(create_app(settings, embedder=embedder)) as address:
        yield address


def _tenant() -> str:
    return f"ws-{uuid.uuid4().hex[:8]}"


async def _init(ws: Any, payload: dict[str, Any] | None) -> dict[str, Any]:
    await ws.send(json.dumps({"type": "connection_init", "payload": payload or {}}))
    return dict(json.loads(await ws.recv()))


async def test_a_valid_token_in_connection_init_is_acknowledged(server: str, signer: Signer) -> None:
    tenant = _tenant()
    async with websockets.connect(f"ws://{server}/graphql", subprotocols=[TRANSPORT_WS]) as ws:
        ack = await _init(ws, {"authorization": f"Bearer {signer.hs256(tenant, ['reader'])}"})
        assert ack == {"type": "connection_ack", "payload": {"tenant": tenant, "subject": f"user-{tenant}"}}
        await ws.send(json.dumps({"id": "1", "type": "subscribe", "payload": ME}))
        first = json.loads(await ws.recv())
        assert first["type"] == "next" and first["payload"]["data"]["answerStream"]["__typename"] == "AnswerSources"


@pytest.mark.parametrize(
    "payload",
    [None, {"authorization": "Bearer not.a.token"}, {"token": "rgq_live_unknownkey"}, {"authorization": "Basic abc"}],
    ids=["none", "garbage jwt", "unknown key", "wrong scheme"],
)
async def test_connection_init_without_a_valid_credential_is_refused(
    server: str, payload: dict[str, Any] | None
) -> None:
    async with websockets.connect(f"ws://{server}/graphql", subprotocols=[TRANSPORT_WS]) as ws:
        await ws.send(json.dumps({"type": "connection_init", "payload": payload or {}}))
        with pytest.raises(websockets.ConnectionClosed) as closed:
            await ws.recv()
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 4403


async def test_legacy_protocol_gets_a_connection_error(server: str, signer: Signer) -> None:
    forged = signer.hs256(_tenant(), ["reader"], secret="a-different-secret-of-enough-length-000")
    async with websockets.connect(f"ws://{server}/graphql", subprotocols=[LEGACY_WS]) as ws:
        reply = await _init(ws, {"authorization": f"Bearer {forged}"})
    assert reply["type"] == "connection_error"
    assert reply["payload"]["code"] == "UNAUTHENTICATED"


async def test_subscribing_before_connection_init_is_refused(server: str) -> None:
    async with websockets.connect(f"ws://{server}/graphql", subprotocols=[TRANSPORT_WS]) as ws:
        await ws.send(json.dumps({"id": "1", "type": "subscribe", "payload": ME}))
        with pytest.raises(websockets.ConnectionClosed) as closed:
            await ws.recv()
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 4401


async def test_a_disallowed_origin_is_refused_at_the_handshake(server: str) -> None:
    with pytest.raises(websockets.InvalidStatus) as refused:
        async with websockets.connect(
            f"ws://{server}/graphql", origin=Origin("http://evil.example"), subprotocols=[TRANSPORT_WS]
        ):
            pass
    assert refused.value.response.status_code == 403


async def test_open_websockets_are_limited_per_caller(server: str, signer: Signer) -> None:
    tenant = _tenant()
    token = {"authorization": f"Bearer {signer.hs256(tenant, ['reader'])}"}
    url = f"ws://{server}/graphql"
    async with (
        websockets.connect(url, subprotocols=[TRANSPORT_WS]) as one,
        websockets.connect(url, subprotocols=[TRANSPORT_WS]) as two,
    ):
        assert (await _init(one, token))["type"] == "connection_ack"
        assert (await _init(two, token))["type"] == "connection_ack"
        async with websockets.connect(url, subprotocols=[TRANSPORT_WS]) as three:
            await three.send(json.dumps({"type": "connection_init", "payload": token}))
            with pytest.raises(websockets.ConnectionClosed):
                await three.recv()
        # Another caller is not affected.
        other = {"authorization": f"Bearer {signer.hs256(tenant, ['reader'], sub='other')}"}
        async with websockets.connect(url, subprotocols=[TRANSPORT_WS]) as four:
            assert (await _init(four, other))["type"] == "connection_ack"
    # Closed sockets give their slots back.
    async with websockets.connect(url, subprotocols=[TRANSPORT_WS]) as again:
        assert (await _init(again, token))["type"] == "connection_ack"


async def test_a_token_that_expires_ends_the_connection_with_4401(server: str, signer: Signer) -> None:
    expires = int(time.time()) + 2
    token = signer.hs256(_tenant(), ["reader"], exp=expires)
    async with websockets.connect(f"ws://{server}/graphql", subprotocols=[TRANSPORT_WS]) as ws:
        assert (await _init(ws, {"authorization": f"Bearer {token}"}))["type"] == "connection_ack"
        with pytest.raises(websockets.ConnectionClosed) as closed:
            async with asyncio.timeout(10):
                while True:
                    await ws.recv()
    assert closed.value.rcvd is not None
    assert closed.value.rcvd.code == 4401 and "expired" in closed.value.rcvd.reason.lower()


@pytest.mark.parametrize("protocol", [TRANSPORT_WS, LEGACY_WS], ids=["graphql-transport-ws", "graphql-ws"])
async def test_revoking_a_key_closes_its_open_websockets_with_4401(
    server: str, signer: Signer, protocol: Subprotocol
) -> None:
    """Issue 13, failure 2: before, an open socket kept running operations after revokeApiKey."""
    tenant = _tenant()
    admin = {"Authorization": f"Bearer {signer.hs256(tenant, ['reader', 'editor', 'admin'])}"}
    async with httpx.AsyncClient(base_url=f"http://{server}") as client:
        created = (
            await client.post(
                "/graphql",
                json={
                    "query": 'mutation { createApiKey(input: {name: "ws", roles: [READER]}) { apiKey { id } secret } }'
                },
                headers=admin,
            )
        ).json()["data"]["createApiKey"]
        key = remember(created["secret"])
        async with websockets.connect(f"ws://{server}/graphql", subprotocols=[protocol]) as ws:
            assert (await _init(ws, {"apiKey": key}))["type"] == "connection_ack"
            revoke = "mutation($id: ID!) { revokeApiKey(input: {id: $id}) { apiKey { revokedAt } } }"
            reply = await client.post(
                "/graphql", json={"query": revoke, "variables": {"id": created["apiKey"]["id"]}}, headers=admin
            )
            assert reply.json()["data"]["revokeApiKey"]["apiKey"]["revokedAt"]
            with pytest.raises(websockets.ConnectionClosed) as closed:
                while True:  # legacy graphql-ws may send keep-alives first
                    await asyncio.wait_for(ws.recv(), 5)
    assert closed.value.rcvd is not None
    assert closed.value.rcvd.code == 4401 and "revoked" in closed.value.rcvd.reason.lower()
