"""Repeated searches answered from a kept response (api/replay.py, issue 18): the same bytes as
GraphQL would send but for the per-request values, each with its own queryId, query-log row and
charge; never for another tenant or a principal with other roles; never after a write."""

from __future__ import annotations

import json
import secrets
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client import REGISTRY
from sqlalchemy import text

from api.app import create_app
from api.auth.tokens import JwtVerifier
from api.bootstrap import jwt_config
from api.replay import ResponseReplay
from api.settings import Settings
from domain.documents.validation import DocumentInput
from domain.persistence.database import Database
from domain.providers.embedding import LocalEmbedder
from domain.runtime import Services
from domain.tenancy import ensure_tenant
from tests.conftest import client_for, ingest_docs

SEARCH = (
    "query Replayed($q: String!) { search(query: $q, first: 5) { queryId tookMs totalCandidates "
    "hits { score snippet document { id title } scores { fused fusedRank } } } }"
)
LAGOON = [
    DocumentInput(title="Lagoon notes", text="A quiet lagoon behind the reef, where herons fish at dawn."),
    DocumentInput(title="Reef survey", text="The reef survey counted corals, herons and one lagoon shark."),
]
OTHER = [DocumentInput(title="Harbour log", text="Herons over the lagoon of the other harbour, every evening.")]


def body(query: str = SEARCH, q: str = "lagoon herons", name: str | None = "Replayed") -> bytes:
    request: dict[str, Any] = {"query": query, "variables": {"q": q}}
    if name is not None:
        request["operationName"] = name
    return json.dumps(request).encode()


@dataclass
class Server:
    client: httpx.AsyncClient
    replay: ResponseReplay
    verifier: JwtVerifier
    services: Services

    def token(self, tenant: str, roles: list[str], subject: str = "reader-1") -> dict[str, str]:
        jwt = self.verifier.issue(subject=subject, tenant=tenant, roles=roles, ttl_s=600)
        return {"authorization": f"Bearer {jwt}", "content-type": "application/json"}

    async def post(self, headers: dict[str, str], content: bytes = b"") -> httpx.Response:
        return await self.client.post("/graphql", content=content or body(), headers=headers)


@pytest.fixture
async def tenants(db: Database, embedder: LocalEmbedder) -> tuple[str, str]:
    a, b = f"t-{uuid.uuid4().hex[:12]}", f"t-{uuid.uuid4().hex[:12]}"
    for tenant, docs in ((a, LAGOON), (b, OTHER)):
        await ensure_tenant(db, tenant)
        await ingest_docs(db, embedder, tenant, docs)
    return a, b


async def _server(pg_url: str, tmp_root: Path, embedder: LocalEmbedder, **overrides: Any) -> AsyncIterator[Server]:
    secret = secrets.token_urlsafe(48)
    values: dict[str, Any] = {
        "env": "production",
        "jwt_secret": secret,
        "database_url": pg_url,
        "data_dir": tmp_root,
        "load_demo": False,
        "search_cache_ttl_s": 300,
        # Buckets that refill too slowly to show within a test: each charge shows whole.
        "rate_period_s": 10**7,
        **overrides,
    }
    settings = Settings(**values)
    app = create_app(settings, embedder=embedder)
    async with client_for(app) as client:
        yield Server(client, app.state.replay, JwtVerifier(jwt_config(settings)), app.state.services)


@pytest.fixture
async def server(pg_url: str, tmp_root: Path, embedder: LocalEmbedder) -> AsyncIterator[Server]:
    async for s in _server(pg_url, tmp_root, embedder):
        yield s


async def _logged(db: Database, tenant: str, query_id: str) -> int:
    async with db.session(tenant) as session:
        n = await session.scalar(text("SELECT count(*) FROM query_log WHERE id = :i"), {"i": uuid.UUID(query_id)})
    return int(n or 0)


def _without_per_request(doc: dict[str, Any]) -> dict[str, Any]:
    search = {k: v for k, v in doc["data"]["search"].items() if k not in ("queryId", "tookMs")}
    cost = {k: v for k, v in doc["extensions"]["cost"].items() if k != "throttleStatus"}
    return {"data": {"search": search}, "extensions": {"cost": cost}}


def _operations(name: str) -> float:
    labels = {"operation": name, "type": "query", "status": "ok"}
    value = REGISTRY.get_sample_value("ragql_graphql_operations_total", labels)
    return value or 0.0


async def test_a_repeated_search_is_replayed_with_its_own_query_id_log_row_and_charge(
    server: Server, tenants: tuple[str, str], db: Database
) -> None:
    # given: a computed search (kept resident), then the same search answered by GraphQL from it
    tenant, _ = tenants
    reader = server.token(tenant, ["reader"])
    computed, recorded = await server.post(reader), await server.post(reader)
    assert server.replay.served == 0
    counted = _operations("Replayed")
    # when
    replayed = await server.post(reader)
    # then
    assert server.replay.served == 1
    assert replayed.status_code == recorded.status_code == 200
    assert replayed.headers["content-type"] == recorded.headers["content-type"]
    docs = [r.json() for r in (computed, recorded, replayed)]
    assert {h["document"]["title"] for h in docs[2]["data"]["search"]["hits"]} == {d.title for d in LAGOON}
    assert _without_per_request(docs[2]) == _without_per_request(docs[1]) == _without_per_request(docs[0])
    ids = [d["data"]["search"]["queryId"] for d in docs]
    assert len(set(ids)) == 3
    assert docs[2]["data"]["search"]["tookMs"] < 100
    # Charged like the others: the bucket went down by the operation's cost once more.
    cost = docs[2]["extensions"]["cost"]
    left = [d["extensions"]["cost"]["throttleStatus"]["currentlyAvailable"] for d in docs]
    assert left[1] - left[2] == cost["requestedQueryCost"] == left[0] - left[1]
    assert _operations("Replayed") == counted + 1
    await server.services.searching.flush_log()
    for query_id in ids:
        assert await _logged(db, tenant, query_id) == 1, query_id


async def test_the_replayed_bytes_are_graphql_s_but_for_the_per_request_values(
    server: Server, tenants: tuple[str, str]
) -> None:
    tenant, _ = tenants
    reader = server.token(tenant, ["reader"])
    await server.post(reader)
    recorded = await server.post(reader)
    replayed = await server.post(reader)
    assert server.replay.served == 1
    # Put the recorded values into the replayed text: what is left must be the very same bytes.
    a, b = recorded.json(), replayed.json()
    text_b = replayed.text
    for key in ("queryId", "tookMs"):
        text_b = text_b.replace(json.dumps(b["data"]["search"][key]), json.dumps(a["data"]["search"][key]), 1)
    throttle = json.dumps(b["extensions"]["cost"]["throttleStatus"], separators=(",", ":"))
    text_b = text_b.replace(throttle, json.dumps(a["extensions"]["cost"]["throttleStatus"], separators=(",", ":")))
    assert text_b == recorded.text


async def test_another_tenant_and_other_roles_never_get_the_kept_response(
    server: Server, tenants: tuple[str, str]
) -> None:
    tenant, other_tenant = tenants
    reader = server.token(tenant, ["reader"])
    for _ in range(3):
        await server.post(reader)
    assert server.replay.served == 1
    # The same request bytes from another tenant: its own documents.
    other = (await server.post(server.token(other_tenant, ["reader"]))).json()
    assert [h["document"]["title"] for h in other["data"]["search"]["hits"]] == ["Harbour log"]
    # A caller of the same tenant without the reader role is refused, as without any replay.
    nobody = (await server.post(server.token(tenant, [], subject="no-roles"))).json()
    assert nobody["data"] is None
    assert nobody["errors"][0]["extensions"]["code"] == "FORBIDDEN"
    assert server.replay.served == 1


async def test_a_delete_or_an_ingest_ends_the_replay(server: Server, tenants: tuple[str, str]) -> None:
    tenant, _ = tenants
    reader, editor = server.token(tenant, ["reader"]), server.token(tenant, ["editor"], subject="editor-1")
    first = None
    for _ in range(3):
        first = (await server.post(reader)).json()
    assert first is not None and server.replay.served == 1
    gone = next(h["document"] for h in first["data"]["search"]["hits"] if h["document"]["title"] == "Reef survey")
    deleted = await server.client.post(
        "/graphql",
        json={
            "query": "mutation($id: ID!) { deleteDocument(input: {id: $id}) { deletedId errors { code } } }",
            "variables": {"id": gone["id"]},
        },
        headers=editor,
    )
    assert deleted.json()["data"]["deleteDocument"]["deletedId"] == gone["id"]
    after = (await server.post(reader)).json()
    assert server.replay.served == 1
    assert [h["document"]["title"] for h in after["data"]["search"]["hits"]] == ["Lagoon notes"]
    # The new list is kept and replayed in its turn; an ingest ends that one too.
    await server.post(reader)
    assert (await server.post(reader)).json()["data"]["search"]["hits"][0]["document"]["title"] == "Lagoon notes"
    assert server.replay.served == 2
    ingest = (
        "mutation($docs: [DocumentInput!]!) { ingestDocuments(input: {documents: $docs, mode: SYNC}) "
        "{ errors { code } } }"
    )
    added = [{"title": "Lagoon birds", "text": "Herons and egrets of the lagoon, counted at dawn."}]
    variables = {"docs": added}
    response = await server.client.post("/graphql", json={"query": ingest, "variables": variables}, headers=editor)
    assert response.json()["data"]["ingestDocuments"]["errors"] == []
    titles = {h["document"]["title"] for h in (await server.post(reader)).json()["data"]["search"]["hits"]}
    assert "Lagoon birds" in titles
    assert server.replay.served == 2


async def test_over_its_rate_limit_a_caller_is_refused_as_without_replay(
    pg_url: str, tmp_root: Path, embedder: LocalEmbedder, tenants: tuple[str, str]
) -> None:
    tenant, _ = tenants
    async for server in _server(pg_url, tmp_root, embedder, rate_per_user=100, rate_period_s=3600):
        # One caller warms the entry and the template; another, with its own bucket, is replayed
        # until that bucket is empty, then refused with a 429 like any over-limit request.
        warm = server.token(tenant, ["reader"], subject="warm")
        await server.post(warm)
        await server.post(warm)
        caller = server.token(tenant, ["reader"], subject="caller")
        statuses = []
        for _ in range(12):
            response = await server.post(caller)
            statuses.append(response.status_code)
            if response.status_code == 429:
                assert response.json()["errors"][0]["extensions"]["code"] == "RATE_LIMITED"
                assert "retry-after" in response.headers
                break
        assert server.replay.served >= 1
        assert statuses[-1] == 429 and set(statuses[:-1]) == {200}


@pytest.mark.parametrize(
    "query",
    [
        # A fragment, a directive, a second root field: GraphQL answers these every time.
        "query Replayed($q: String!) { search(query: $q, first: 5) { ...R } } "
        "fragment R on SearchResult { queryId hits { document { title } } }",
        "query Replayed($q: String!) { search(query: $q, first: 5) { queryId @include(if: true) "
        "hits { document { title } } } }",
        "query Replayed($q: String!) { search(query: $q, first: 5) { hits { document { title } } } me { tenant } }",
    ],
)
async def test_documents_outside_the_plain_shape_are_never_replayed(
    server: Server, tenants: tuple[str, str], query: str
) -> None:
    tenant, _ = tenants
    reader = server.token(tenant, ["reader"])
    for _ in range(4):
        response = await server.post(reader, body(query))
        assert response.status_code == 200 and "errors" not in response.json(), response.text
        titles = {h["document"]["title"] for h in response.json()["data"]["search"]["hits"]}
        assert titles == {d.title for d in LAGOON}
    assert server.replay.served == 0
