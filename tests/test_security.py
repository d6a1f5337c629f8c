"""Attack tests against a production-mode app: forged and stale tokens, revoked keys, cross-tenant
ids, query bombs, injection strings, role escalation, and what errors give away.

Two tenants, A and B, each with their own films, share one database; every request below is
made with real credentials of one of them."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from joserfc.jwk import RSAKey
from sqlalchemy import text

from domain.persistence.database import Database
from domain.providers.embedding import LocalEmbedder
from schema.common import from_global_id
from tests.log_secrets import KEPT, SECRETS, leaks, remember
from tests.security_harness import (
    Signer,
    app_of,
    bearer,
    codes,
    gql,
    production_client,
)

INGEST = """mutation($docs: [DocumentInput!]!) {
  ingestDocuments(input: {documents: $docs}) { documents { id title } errors { code message } } }"""
SEARCH = "query($q: String!) { search(query: $q, first: 5) { hits { document { id title } } } }"
ME = "{ me { tenant subject roles authenticated method } }"


class World:
    def __init__(self, client: httpx.AsyncClient, signer: Signer, a: str, b: str) -> None:
        self.client, self.signer, self.a, self.b = client, signer, a, b
        self.docs: dict[str, list[dict[str, str]]] = {}

    def headers(self, tenant: str, *roles: str) -> dict[str, str]:
        return bearer(self.signer.hs256(tenant, list(roles)))

    async def call(self, query: str, variables: dict[str, Any] | None = None, *, tenant: str, role: str) -> Any:
        response = await gql(self.client, query, variables, self.headers(tenant, role))
        return response.json()


@pytest.fixture(scope="module")
async def world(pg_url: str, tmp_root: Path, embedder: LocalEmbedder) -> AsyncIterator[World]:
    signer = Signer(tmp_root)
    salt = uuid.uuid4().hex[:8]
    async with production_client(pg_url, tmp_root, embedder, signer) as client:
        w = World(client, signer, f"sec-a-{salt}", f"sec-b-{salt}")
        for tenant, titles in ((w.a, ["Alpha Station", "Apple Orchard"]), (w.b, ["Beta Harbour", "Blue Lagoon"])):
            docs = [
                {"title": t, "text": f"{t} is a film kept by tenant {tenant} about a secret lagoon."} for t in titles
            ]
            body = await w.call(INGEST, {"docs": docs}, tenant=tenant, role="editor")
            assert body["data"]["ingestDocuments"]["errors"] == [], body
            w.docs[tenant] = body["data"]["ingestDocuments"]["documents"]
        yield w


# --- identity -----------------------------------------------------------------------------------


async def test_no_credentials_in_production_is_unauthenticated(world: World) -> None:
    response = await gql(world.client, ME)
    assert response.status_code == 401
    assert codes(response.json()) == ["UNAUTHENTICATED"]
    assert "dev-token" in response.json()["errors"][0]["message"]  # the error names the fix


async def test_a_valid_token_identifies_tenant_subject_and_roles(world: World) -> None:
    for token, method in (
        (world.signer.hs256(world.a, ["editor"]), "jwt"),
        (world.signer.rs256(world.a, ["editor"]), "jwt"),
        (world.signer.es256(world.a, ["editor"]), "jwt"),
    ):
        body = (await gql(world.client, ME, headers=bearer(token))).json()
        me = body["data"]["me"]
        assert (me["tenant"], me["roles"], me["authenticated"], me["method"]) == (
            world.a,
            ["editor"],
            True,
            method,
        )


def _forged(signer: Signer, a: str) -> str:
    return signer.hs256(a, ["admin"], secret="not-the-server-secret-but-long-enough-00")


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _compact(header: dict[str, Any], claims: dict[str, Any], sign: Any) -> str:
    signing_input = f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(claims).encode())}"
    return remember(f"{signing_input}.{_b64(sign(signing_input.encode()))}")


def _alg_none(signer: Signer, a: str) -> str:
    return _compact({"alg": "none", "typ": "JWT"}, signer.claims(a, ["admin"]), lambda _: b"")


def _hs256_with_public_key(signer: Signer, a: str) -> str:
    # The classic key-confusion attack: HS256 keyed with the RSA *public* key, which is public.
    # (joserfc won't even sign this; we do it by hand.)
    public_pem = signer.rsa.as_pem(private=False)
    return _compact(
        {"alg": "HS256", "kid": "rsa-1"},
        signer.claims(a, ["admin"]),
        lambda data: hmac.new(public_pem, data, hashlib.sha256).digest(),
    )


def _unknown_rsa_key(signer: Signer, a: str) -> str:
    stranger = RSAKey.generate_key(2048, parameters={"kid": "rsa-1"})  # same kid, other key
    return signer.rs256(a, ["admin"], key=stranger)


BAD_TOKENS = {
    "forged (wrong key)": _forged,
    "alg none": _alg_none,
    "expired": lambda s, a: s.hs256(a, ["admin"], exp=int(time.time()) - 120, iat=int(time.time()) - 900),
    "not yet valid": lambda s, a: s.hs256(a, ["admin"], nbf=int(time.time()) + 600),
    "wrong audience": lambda s, a: s.hs256(a, ["admin"], aud="someone-else"),
    "wrong issuer": lambda s, a: s.hs256(a, ["admin"], iss="https://evil.example"),
    "no expiry": lambda s, a: s.hs256(a, ["admin"], exp=None),
    "HS256 signed with the RSA public key": _hs256_with_public_key,
    "RS256 by a key not in the JWKS": _unknown_rsa_key,
    "garbage": lambda s, a: remember("not.a.jwt"),
}


@pytest.mark.parametrize("case", sorted(BAD_TOKENS))
async def test_bad_tokens_are_unauthenticated(world: World, case: str) -> None:
    token = BAD_TOKENS[case](world.signer, world.a)
    response = await gql(world.client, ME, headers=bearer(token))
    assert response.status_code == 401, case
    body = response.json()
    assert codes(body) == ["UNAUTHENTICATED"], (case, body)
    assert body["data"] is None


async def test_expiry_within_leeway_is_accepted(world: World) -> None:
    # Clocks drift: 10 s past exp is inside the 30 s leeway.
    token = world.signer.hs256(world.a, ["reader"], exp=int(time.time()) - 10, iat=int(time.time()) - 300)
    body = (await gql(world.client, ME, headers=bearer(token))).json()
    assert body["data"]["me"]["tenant"] == world.a


async def test_a_rotated_jwks_key_is_picked_up(world: World) -> None:
    rotated = RSAKey.generate_key(2048, parameters={"kid": f"rsa-{uuid.uuid4().hex[:6]}"})
    token = world.signer.rs256(world.a, ["reader"], key=rotated)
    assert (await gql(world.client, ME, headers=bearer(token))).status_code == 401  # not published yet
    world.signer.publish([world.signer.rsa, world.signer.ec, rotated])
    body = (await gql(world.client, ME, headers=bearer(token))).json()
    assert body["data"]["me"]["tenant"] == world.a


# --- roles ---------------------------------------------------------------------------------------

ESCALATIONS = [
    ("reader", 'mutation { ingestDocuments(input: {documents: [{title: "x", text: "y"}]}) { errors { code } } }'),
    (
        "reader",
        'mutation { deleteDocument(input: {id: "RG9jdW1lbnQ6MDAwMDAwMDAtMDAwMC0wMDAwLTAwMDAtMDAwMDAwMDAwMDAw"})'
        " { deletedId } }",
    ),
    ("reader", 'mutation { createApiKey(input: {name: "mine", roles: [ADMIN]}) { secret } }'),
    ("reader", "{ analytics { searchCount } }"),
    ("reader", "{ apiKeys { id } }"),
    ("editor", 'mutation { createApiKey(input: {name: "mine", roles: [ADMIN]}) { secret } }'),
    (
        "editor",
        'mutation { revokeApiKey(input: {id: "QXBpS2V5OjAwMDAwMDAwLTAwMDAtMDAwMC0wMDAwLTAwMDAwMDAwMDAwMA"})'
        " { errors { code } } }",
    ),
    ("editor", "{ analytics { searchCount } }"),
    ("", '{ search(query: "lagoon") { hits { document { title } } } }'),
]


@pytest.mark.parametrize(("role", "query"), ESCALATIONS)
async def test_roles_below_the_field_get_forbidden(world: World, role: str, query: str) -> None:
    roles = [role] if role else []
    body = (await gql(world.client, query, headers=world.headers(world.a, *roles))).json()
    assert codes(body) == ["FORBIDDEN"], body
    assert body["data"] is None


async def test_roles_are_ordered(world: World) -> None:
    body = await world.call("{ analytics { searchCount } apiKeys { id } }", tenant=world.a, role="admin")
    assert "errors" not in body, body
    body = await world.call(SEARCH, {"q": "lagoon"}, tenant=world.a, role="admin")
    assert body["data"]["search"]["hits"]


# --- API keys ------------------------------------------------------------------------------------

CREATE_KEY = """mutation($name: String!, $roles: [Role!]!, $exp: DateTime) {
  createApiKey(input: {name: $name, roles: $roles, expiresAt: $exp}) {
    secret apiKey { id name prefix roles expiresAt lastUsedAt revokedAt } errors { code field message } } }"""
REVOKE_KEY = "mutation($id: ID!) { revokeApiKey(input: {id: $id}) { apiKey { revokedAt } errors { code } } }"


async def _new_key(world: World, tenant: str, roles: list[str], **extra: Any) -> tuple[str, str]:
    variables = {"name": f"key-{uuid.uuid4().hex[:6]}", "roles": roles, **extra}
    body = await world.call(CREATE_KEY, variables, tenant=tenant, role="admin")
    payload = body["data"]["createApiKey"]
    assert payload["errors"] == [], payload
    return remember(payload["secret"]), payload["apiKey"]["id"]


async def test_api_key_is_shown_once_with_a_scannable_prefix_and_stored_hashed(world: World, db: Database) -> None:
    secret, key_id = await _new_key(world, world.a, ["READER"])
    assert secret.startswith("rgq_live_") and len(secret) > 40
    async with db.engine.connect() as conn:
        stored = (await conn.execute(text("SELECT * FROM api_keys WHERE tenant_id = :t"), {"t": world.a})).mappings()
        rows = [dict(r) for r in stored]
    assert rows and all(secret not in str(v) for row in rows for v in row.values())  # only its hash is kept
    listing = await world.call("{ apiKeys { id prefix roles lastUsedAt } }", tenant=world.a, role="admin")
    mine = [k for k in listing["data"]["apiKeys"] if k["id"] == key_id]
    assert mine and secret.startswith(mine[0]["prefix"]) and mine[0]["roles"] == ["READER"]
    assert "secret" not in str(listing)


async def test_api_key_authenticates_by_header_and_bearer_and_records_use(world: World) -> None:
    secret, key_id = await _new_key(world, world.a, ["READER"])
    for headers in ({"X-API-Key": secret}, bearer(secret)):
        body = (await gql(world.client, ME, headers=headers)).json()
        assert body["data"]["me"]["tenant"] == world.a and body["data"]["me"]["method"] == "api_key"
    listing = await world.call("{ apiKeys { id lastUsedAt } }", tenant=world.a, role="admin")
    assert [k["lastUsedAt"] for k in listing["data"]["apiKeys"] if k["id"] == key_id] != [None]


async def test_a_revoked_key_stops_on_the_next_request(world: World) -> None:
    secret, key_id = await _new_key(world, world.a, ["READER"])
    assert (await gql(world.client, SEARCH, {"q": "lagoon"}, {"X-API-Key": secret})).status_code == 200
    body = await world.call(REVOKE_KEY, {"id": key_id}, tenant=world.a, role="admin")
    assert body["data"]["revokeApiKey"]["apiKey"]["revokedAt"]
    response = await gql(world.client, SEARCH, {"q": "lagoon"}, {"X-API-Key": secret})
    assert response.status_code == 401
    assert codes(response.json()) == ["UNAUTHENTICATED"] and "revoked" in response.json()["errors"][0]["message"]


async def test_an_expired_key_is_refused(world: World, db: Database) -> None:
    tomorrow = (datetime.now(UTC) + timedelta(days=1)).isoformat()
    secret, key_id = await _new_key(world, world.a, ["READER"], exp=tomorrow)
    raw_id = from_global_id(key_id)[1]
    async with db.engine.begin() as conn:  # as the owner: let the key's day pass
        sql = "UPDATE api_keys SET expires_at = now() - interval '1 second' WHERE id = :i"
        await conn.execute(text(sql), {"i": raw_id})
    response = await gql(world.client, ME, headers={"X-API-Key": secret})
    assert response.status_code == 401 and "expired" in response.json()["errors"][0]["message"]


async def test_unknown_and_malformed_keys_are_refused(world: World) -> None:
    for secret in ("rgq_live_" + "A" * 43, "rgq_", "rgq_live_' OR '1'='1"):
        response = await gql(world.client, ME, headers={"X-API-Key": remember(secret)})
        assert response.status_code == 401 and codes(response.json()) == ["UNAUTHENTICATED"]


async def test_key_validation_errors_are_coded(world: World) -> None:
    cases = [
        ({"name": "", "roles": ["READER"]}, "INVALID_NAME"),
        ({"name": "x" * 101, "roles": ["READER"]}, "INVALID_NAME"),
        ({"name": "k", "roles": []}, "INVALID_ROLES"),
        ({"name": "k", "roles": ["READER"], "exp": "2001-01-01T00:00:00Z"}, "INVALID_EXPIRY"),
        ({"name": "k", "roles": ["READER"], "exp": "2999-01-01T00:00:00Z"}, "INVALID_EXPIRY"),
    ]
    for variables, code in cases:
        body = await world.call(CREATE_KEY, variables, tenant=world.a, role="admin")
        payload = body["data"]["createApiKey"]
        assert payload["secret"] is None and [e["code"] for e in payload["errors"]] == [code], (variables, body)


async def test_a_key_of_tenant_a_never_reaches_tenant_b(world: World) -> None:
    secret, _ = await _new_key(world, world.a, ["EDITOR"])
    b_doc = world.docs[world.b][0]["id"]
    headers = {"X-API-Key": secret}
    read = (await gql(world.client, "query($id: ID!) { document(id: $id) { title } }", {"id": b_doc}, headers)).json()
    assert read["data"]["document"] is None
    delete = (
        await gql(
            world.client,
            "mutation($id: ID!) { deleteDocument(input: {id: $id}) { deletedId errors { code } } }",
            {"id": b_doc},
            headers,
        )
    ).json()
    assert delete["data"]["deleteDocument"]["deletedId"] is None
    assert [e["code"] for e in delete["data"]["deleteDocument"]["errors"]] == ["NOT_FOUND"]
    still = await world.call(
        "query($id: ID!) { document(id: $id) { title } }", {"id": b_doc}, tenant=world.b, role="reader"
    )
    assert still["data"]["document"]["title"] == world.docs[world.b][0]["title"]
    # B's key ids can't be revoked from A either.
    _, b_key = await _new_key(world, world.b, ["READER"])
    body = (await gql(world.client, REVOKE_KEY, {"id": b_key}, bearer(world.signer.hs256(world.a, ["admin"])))).json()
    assert [e["code"] for e in body["data"]["revokeApiKey"]["errors"]] == ["NOT_FOUND"]


async def test_global_id_tampering_returns_null(world: World) -> None:
    b_doc = world.docs[world.b][0]["id"]
    body = await world.call(
        "query($id: ID!) { node(id: $id) { id ... on Document { title } } "
        "similarDocuments(id: $id) { document { id } } }",
        {"id": b_doc},
        tenant=world.a,
        role="reader",
    )
    assert body["data"] is None or body["data"]["node"] is None
    assert world.docs[world.b][0]["title"] not in str(body)


async def test_search_sees_only_the_callers_tenant_and_its_cache_is_per_tenant(world: World) -> None:
    cache = app_of(world.client).state.services.search_cache
    query = {"q": f"film kept by tenant about a secret lagoon {uuid.uuid4().hex[:6]}"}
    seen: dict[str, list[list[str]]] = {world.a: [], world.b: []}
    for tenant in (world.a, world.b, world.a, world.b):
        hits_before, misses_before = cache.hits, cache.misses
        body = await world.call(SEARCH, query, tenant=tenant, role="reader")
        seen[tenant].append([h["document"]["title"] for h in body["data"]["search"]["hits"]])
        first_time = len(seen[tenant]) == 1
        # Each tenant's first search is a miss, even right after the other tenant ran the same
        # query text; its second is served from the cache.
        assert (cache.misses - misses_before, cache.hits - hits_before) == ((1, 0) if first_time else (0, 1))
    for tenant in (world.a, world.b):
        assert set(seen[tenant][0]) == {d["title"] for d in world.docs[tenant]}
        assert seen[tenant][1] == seen[tenant][0]


async def test_a_write_drops_the_tenants_cached_searches(world: World) -> None:
    cache = app_of(world.client).state.services.search_cache
    query = {"q": f"harbour lagoon {uuid.uuid4().hex[:6]}"}
    await world.call(SEARCH, query, tenant=world.b, role="reader")
    title = f"Bright Lagoon {uuid.uuid4().hex[:4]}"
    docs = [{"title": title, "text": f"{title} is a harbour lagoon film of tenant B."}]
    assert (await world.call(INGEST, {"docs": docs}, tenant=world.b, role="editor"))["data"]["ingestDocuments"]
    misses = cache.misses
    body = await world.call(SEARCH, query, tenant=world.b, role="reader")
    assert cache.misses == misses + 1  # recomputed, not served stale
    assert title in [h["document"]["title"] for h in body["data"]["search"]["hits"]]


# --- query bombs ----------------------------------------------------------------------------------


BOMBS = {
    "depth": '{ search(query: "x") { hits { document { chunks { document { chunks { document { chunks { document {'
    " chunks { document { chunks { document { chunks { id } } } } } } } } } } } } } } }",
    "aliases": "{ " + " ".join(f"a{i}: serverInfo {{ version }}" for i in range(1000)) + " }",
    "fragment cycle": "query { ...A } fragment A on Query { me { tenant } ...B } fragment B on Query { ...A }",
    "cost": "{ documents(first: 100) { edges { node { chunks { id } } } } "
    + " ".join(f's{i}: search(query: "q", first: 100) {{ hits {{ document {{ id }} }} }}' for i in range(20))
    + " }",
}


@pytest.mark.parametrize("bomb", sorted(BOMBS))
async def test_query_bombs_are_rejected_before_execution(world: World, db: Database, bomb: str) -> None:
    before = await _search_count(db, world.a)
    response = await gql(world.client, BOMBS[bomb], headers=world.headers(world.a, "reader"))
    body = response.json()
    assert body.get("data") is None and body["errors"], body
    assert set(codes(body)) <= {"GRAPHQL_VALIDATION_FAILED", "QUERY_TOO_COSTLY"}, body
    assert await _search_count(db, world.a) == before  # nothing ran


async def test_cached_documents_are_checked_again_on_every_request(world: World) -> None:
    """Parsed and validated documents are cached (schema/root.py): a refused document stays refused
    when sent again, and the per-request checks on variables still run for a cached document."""
    headers = world.headers(world.a, "reader")
    for bomb in ("depth", "aliases"):
        for _ in range(2):
            body = (await gql(world.client, BOMBS[bomb], headers=headers)).json()
            assert body.get("data") is None and set(codes(body)) == {"GRAPHQL_VALIDATION_FAILED"}, body
    ok = (await gql(world.client, SEARCH, {"q": "lagoon"}, headers)).json()
    assert "errors" not in ok, ok
    nul = (await gql(world.client, SEARCH, {"q": "lagoon\x00"}, headers)).json()
    assert nul.get("data") is None and nul["errors"], nul


async def test_a_batch_of_a_thousand_operations_is_refused(world: World) -> None:
    batch = [{"query": ME} for _ in range(1000)]
    response = await world.client.post("/graphql", json=batch, headers=world.headers(world.a, "reader"))
    assert response.status_code == 400
    assert "batch" in response.text.lower()


async def test_a_huge_body_is_refused_before_parsing(world: World) -> None:
    query = "{ me { tenant } }" + " " * (2 * 1024 * 1024)
    response = await gql(world.client, query, headers=world.headers(world.a, "reader"))
    assert response.status_code == 413
    assert codes(response.json()) == ["REQUEST_TOO_LARGE"]


async def test_introspection_is_off_in_production(world: World) -> None:
    body = (await gql(world.client, "{ __schema { types { name } } }", headers=world.headers(world.a, "admin"))).json()
    assert body.get("data") is None and set(codes(body)) == {"GRAPHQL_VALIDATION_FAILED"}
    assert "introspection" in body["errors"][0]["message"].lower()


async def test_cost_is_reported_in_extensions(world: World) -> None:
    body = await world.call(SEARCH, {"q": "lagoon"}, tenant=world.a, role="reader")
    cost = body["extensions"]["cost"]
    assert cost["requestedQueryCost"] > 10 and cost["maximumQueryCost"] == 2000
    assert 0 <= cost["throttleStatus"]["currentlyAvailable"] < cost["throttleStatus"]["maximumAvailable"]


async def _search_count(db: Database, tenant: str) -> int:
    async with db.engine.connect() as conn:
        return int(
            (
                await conn.execute(text("SELECT count(*) FROM query_log WHERE tenant_id = :t"), {"t": tenant})
            ).scalar_one()
        )


# --- injection -----------------------------------------------------------------------------------

INJECTIONS = [
    "' OR '1'='1",
    "'; DROP TABLE documents; --",
    "\\'; SELECT pg_sleep(5); --",
    '" OR ""="',
    "1) UNION SELECT id, tenant_id, title FROM documents --",
    "$$; DELETE FROM chunks; $$",
    "%' AND 1=0 UNION ALL SELECT current_setting('ragql.tenant_id') --",
    "\x00",
]


@pytest.mark.parametrize("payload", INJECTIONS)
async def test_injection_strings_in_every_string_argument(world: World, db: Database, payload: str) -> None:
    operations: list[tuple[str, dict[str, Any]]] = [
        (SEARCH, {"q": payload}),
        ("query($q: String!) { answer(question: $q) { text } }", {"q": payload}),
        (
            "query($q: String!) { recommendations(userId: $q, context: $q) { items { document { title } } } }",
            {"q": payload},
        ),
        ("query($q: ID!) { node(id: $q) { id } document(id: $q) { title } }", {"q": payload}),
        ("query($q: String!) { documents(after: $q) { edges { node { title } } } }", {"q": payload}),
        (
            'query($f: String!, $v: JSON!) { search(query: "lagoon", options: {filter: {all: [{field: $f, op: EQ, '
            "value: $v}]}}) { hits { document { title } } } }",
            {"f": payload, "v": payload},
        ),
        (
            'query($v: JSON!) { documents(filter: {any: [{field: "genre", op: IN, value: [$v]}, {field: "title",'
            " op: CONTAINS, value: $v}]}) { edges { node { title } } } }",
            {"v": payload},
        ),
        (
            "mutation($q: String!) { submitFeedback(input: {kind: VIEW, userId: $q, documentId: $q, "
            "idempotencyKey: $q}) { errors { code } } }",
            {"q": payload},
        ),
    ]
    for query, variables in operations:
        response = await gql(world.client, query, variables, world.headers(world.a, "editor"))
        assert response.status_code < 500, (query, response.text)
        body = response.json()
        assert "INTERNAL_SERVER_ERROR" not in codes(body), (query, body)
        assert world.docs[world.b][0]["title"] not in response.text  # nothing of tenant B leaks
    async with db.engine.connect() as conn:
        for sql in (
            "SELECT count(*) FROM documents WHERE tenant_id = :t",
            "SELECT count(*) FROM chunks WHERE tenant_id = :t",
        ):
            count = await conn.execute(text(sql), {"t": world.b})
            assert count.scalar_one() >= 2  # nothing was dropped or deleted


# --- logs ----------------------------------------------------------------------------------------


async def test_refusals_are_logged_without_the_credentials(world: World) -> None:
    before = len(KEPT.lines)
    token = world.signer.hs256(world.a, ["admin"], aud="someone-else")
    key = remember("rgq_live_" + uuid.uuid4().hex + uuid.uuid4().hex)
    for headers in (bearer(token), {"X-API-Key": key}):
        assert (await gql(world.client, ME, headers=headers)).status_code == 401
    refusals = [line for line in KEPT.lines[before:] if "refused request" in line]
    assert len(refusals) == 2  # the refusals were logged, with what was wrong ...
    assert any("aud" in line for line in refusals) and any("unknown API key" in line for line in refusals)
    assert token in SECRETS and key in SECRETS
    assert leaks() == []  # ... and no secret of this session so far reached any log line
