"""Attack cases from the hardening probe (issue 13), against a production-mode app with real
tokens, its own PostgreSQL and Redis-less limits: each one failed before its fix."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.testclient import TestClient
from starlette.websockets import WebSocketDisconnect

from api.app import create_app
from domain.providers.embedding import LocalEmbedder
from tests.security_harness import Signer, bearer, codes, gql, production_client, production_settings

ME = "{ me { tenant } }"


class Probe:
    def __init__(self, client: httpx.AsyncClient, signer: Signer) -> None:
        self.client, self.signer = client, signer
        self.tenant = f"hard-{uuid.uuid4().hex[:8]}"

    def headers(self, *roles: str, tenant: str | None = None) -> dict[str, str]:
        return bearer(self.signer.hs256(tenant or self.tenant, list(roles or ("editor",))))

    async def post(self, query: str, variables: dict[str, Any] | None = None, *roles: str) -> httpx.Response:
        return await gql(self.client, query, variables, self.headers(*roles))


@pytest.fixture(scope="module")
def signer(tmp_root: Path) -> Signer:
    return Signer(tmp_root)


@pytest.fixture(scope="module")
async def probe(pg_url: str, tmp_root: Path, embedder: LocalEmbedder, signer: Signer) -> AsyncIterator[Probe]:
    async with production_client(pg_url, tmp_root, embedder, signer, max_request_bytes=64 * 1024) as client:
        yield Probe(client, signer)


# --- identity -----------------------------------------------------------------------------------


@pytest.mark.parametrize("tenant", ["acme\n", "acme\n\n", "\nacme"])
async def test_a_tenant_claim_with_a_newline_is_refused(probe: Probe, tenant: str) -> None:
    response = await gql(probe.client, ME, headers=probe.headers("reader", tenant=tenant))
    assert response.status_code == 401
    assert codes(response.json()) == ["UNAUTHENTICATED"]


# --- the same limits on every transport ---------------------------------------------------------


def test_the_websocket_message_limit_is_the_app_s_own(
    pg_url: str, tmp_root: Path, embedder: LocalEmbedder, signer: Signer
) -> None:
    # Without uvicorn in front (its ws_max_size is a second line): the app closes with 1009.
    settings = production_settings(pg_url, tmp_root, signer, max_request_bytes=16 * 1024)
    token = signer.hs256(f"hard-{uuid.uuid4().hex[:8]}", ["editor"])
    with TestClient(create_app(settings, embedder=embedder)) as client:
        with client.websocket_connect("/graphql", subprotocols=["graphql-transport-ws"]) as ws:
            ws.send_json({"type": "connection_init", "payload": {"authorization": f"Bearer {token}"}})
            assert ws.receive_json()["type"] == "connection_ack"
            ws.send_text(json.dumps({"id": "1", "type": "subscribe", "payload": {"query": ME, "x": "y" * 20_000}}))
            with pytest.raises(WebSocketDisconnect) as closed:
                ws.receive_json()
        assert closed.value.code == 1009
