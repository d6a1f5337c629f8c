"""The bench-only JSON search route (api/bench_route.py): off by default, and when `make bench`
turns it on it answers like GraphQL's `search`, behind the same identity checks."""

from __future__ import annotations

import secrets
import uuid
from pathlib import Path

import httpx

from api.app import create_app
from api.auth.tokens import JwtVerifier
from api.bench_route import BENCH_SEARCH_PATH
from api.bootstrap import jwt_config
from api.settings import Settings
from domain.providers.embedding import LocalEmbedder
from schema.common import to_global_id
from tests.conftest import client_for, graphql_ok, tenant_client

SEARCH = "query($q: String!) { search(query: $q, first: 5) { hits { document { id } } } }"


async def test_the_route_is_not_mounted_by_default(app_client: httpx.AsyncClient) -> None:
    response = await app_client.post(BENCH_SEARCH_PATH, json={"query": "time travel"})
    assert response.status_code == 404


async def test_it_makes_the_same_search_call_as_graphql(pg_url: str, tmp_root: Path, embedder: LocalEmbedder) -> None:
    async with tenant_client(pg_url, tmp_root, embedder, bench_route=True) as (client, _tenant):
        bare = await client.post(BENCH_SEARCH_PATH, json={"query": "a heist that goes wrong", "first": 5})
        assert bare.status_code == 200, bare.text
        data = await graphql_ok(client, SEARCH, {"q": "a heist that goes wrong"})
    graphql_ids = [h["document"]["id"] for h in data["search"]["hits"]]
    bare_ids = [h["id"] for h in bare.json()["hits"]]
    assert len(graphql_ids) == 5
    # GraphQL ids are global Node ids: the same documents, in the same order.
    assert graphql_ids == [to_global_id("Document", uuid.UUID(b)) for b in bare_ids]


async def test_in_production_it_needs_a_credential_and_stays_in_its_tenant(
    pg_url: str, tmp_root: Path, embedder: LocalEmbedder
) -> None:
    # The demo films live in a development tenant of their own; production callers of another
    # tenant must see none of them.
    async with tenant_client(pg_url, tmp_root, embedder) as (_, films_tenant):
        pass
    secret = secrets.token_urlsafe(48)
    settings = Settings(
        env="production", jwt_secret=secret, database_url=pg_url, data_dir=tmp_root, load_demo=False, bench_route=True
    )
    verifier = JwtVerifier(jwt_config(settings))
    async with client_for(create_app(settings, embedder=embedder)) as client:
        anonymous = await client.post(BENCH_SEARCH_PATH, json={"query": "a heist"})
        assert anonymous.status_code == 401
        own = verifier.issue(subject="u", tenant=films_tenant, roles=["reader"], ttl_s=60)
        other = verifier.issue(subject="u", tenant="bench-route-other", roles=["reader"], ttl_s=60)
        seen = await client.post(
            BENCH_SEARCH_PATH, json={"query": "a heist"}, headers={"authorization": f"Bearer {own}"}
        )
        unseen = await client.post(
            BENCH_SEARCH_PATH, json={"query": "a heist"}, headers={"authorization": f"Bearer {other}"}
        )
    assert seen.status_code == 200 and len(seen.json()["hits"]) > 0
    assert unseen.status_code == 200 and unseen.json()["hits"] == []
