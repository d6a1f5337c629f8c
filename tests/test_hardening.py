"""Attack cases from the hardening probe (issue 13), against a production-mode app with real
tokens, its own PostgreSQL and Redis-less limits: each one failed before its fix."""

from __future__ import annotations

import asyncio
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
from api.metrics_server import MetricsServer
from api.settings import DEFAULT_JWT_SECRET
from domain.providers.embedding import LocalEmbedder
from schema import validation
from tests.log_secrets import remember
from tests.pdfs import pdf_file
from tests.security_harness import (
    TEST_JWT_SECRET,
    Signer,
    app_of,
    bearer,
    codes,
    gql,
    production_client,
    production_settings,
)

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


# --- one bad item is that item's error: the rest of the batch is stored ---------------------------

INGEST = """mutation($docs: [DocumentInput!]!) {
  ingestDocuments(input: {documents: $docs}) { documents { title } errors { code field } } }"""
UPLOAD = """mutation($files: [Upload!]!) {
  uploadDocuments(input: {files: $files}) { documents { title } errors { code field } } }"""


def _raw_ingest(docs_json: str) -> str:
    return json.dumps({"query": INGEST})[:-1] + f', "variables": {{"docs": {docs_json}}}}}'


@pytest.mark.parametrize(
    ("bad", "code"),
    [
        ('{"title": "bad", "text": "x", "metadata": {"score": NaN}}', "INVALID_METADATA"),
        ('{"title": "bad", "text": "x", "metadata": {"score": Infinity}}', "INVALID_METADATA"),
        ('{"title": "bad", "text": "x", "metadata": {"score": 1e400}}', "INVALID_METADATA"),
        ('{"title": "bad \\ud800", "text": "x"}', "INVALID_CHARACTER"),
        ('{"title": "bad", "text": "x", "metadata": {"note": "\\udfff"}}', "INVALID_CHARACTER"),
        ('{"title": "bad", "text": "x \\ud83d"}', "INVALID_CHARACTER"),
    ],
    ids=["nan", "infinity", "1e400", "surrogate-title", "surrogate-metadata", "surrogate-text"],
)
async def test_one_bad_document_does_not_lose_the_batch(probe: Probe, bad: str, code: str) -> None:
    good_title = f"good-{uuid.uuid4().hex[:8]}"
    good = json.dumps({"title": good_title, "text": "A calm harbour at dawn."})
    response = await probe.client.post(
        "/graphql",
        content=_raw_ingest(f"[{good}, {bad}]"),
        headers={**probe.headers("editor"), "content-type": "application/json"},
    )
    assert response.status_code == 200, response.text
    payload = response.json()["data"]["ingestDocuments"]
    assert payload["documents"] == [{"title": good_title}]
    assert [(e["code"], e["field"].split(".")[:2]) for e in payload["errors"]] == [(code, ["documents", "1"])]


async def _upload(probe: Probe, files: list[tuple[str, bytes]]) -> dict[str, Any]:
    operations = {"query": UPLOAD, "variables": {"files": [None] * len(files)}}
    mapping = {str(i): [f"variables.files.{i}"] for i in range(len(files))}
    response = await probe.client.post(
        "/graphql",
        data={"operations": json.dumps(operations), "map": json.dumps(mapping)},
        files={str(i): (name, data) for i, (name, data) in enumerate(files)},
        headers=probe.headers("editor"),
    )
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def _pdf_with_stream(content: bytes, *, declared_xref_size: int | None = None) -> bytes:
    """A one-page PDF whose content stream is `content`, Flate-compressed; optionally with an
    xref table that declares more entries than the file could hold."""
    import zlib

    stream = zlib.compress(content, 9)
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R >>",
        b"<< /Length %d /Filter /FlateDecode >>\nstream\n" % len(stream) + stream + b"\nendstream",
    ]
    return pdf_file(objects, declared_xref_size=declared_xref_size)


def _many_pages(count: int) -> bytes:
    import io

    from pypdf import PdfWriter

    writer = PdfWriter()
    for _ in range(count):
        writer.add_blank_page(width=72, height=72)
    buffer = io.BytesIO()
    writer.write(buffer)
    return buffer.getvalue()


@pytest.mark.parametrize(
    ("name", "data", "code"),
    [
        # pypdf raises LimitReachedError (it was INTERNAL for the whole batch).
        ("limit.pdf", _pdf_with_stream(b"BT ET", declared_xref_size=10**9), "UNREADABLE_FILE"),
        ("pages.pdf", _many_pages(2_001), "FILE_TOO_LARGE"),
        ("marked.html", b"<![" * 5_000, None),
    ],
    ids=["pdf-bomb", "pages", "bs4-rejected-markup"],
)
async def test_one_bad_file_does_not_lose_the_upload(probe: Probe, name: str, data: bytes, code: str | None) -> None:
    good = f"good-{uuid.uuid4().hex[:8]}"
    body = await _upload(probe, [(f"{good}.txt", b"A calm harbour at dawn."), (name, data)])
    payload = body["data"]["uploadDocuments"]
    assert {"title": good} in payload["documents"]
    if code is None:
        # bs4 raised ParserRejectedMarkup on `<![`; Lexbor reads it as (empty) text.
        assert all(e["code"] in ("EMPTY_FILE",) for e in payload["errors"]), payload
    else:
        assert [(e["code"], e["field"]) for e in payload["errors"]] == [(code, "files.1")]


@pytest.mark.parametrize(
    ("name", "data"),
    [
        ("brackets.md", b"[" * 60_000),
        ("anchors.html", b"<a " * 15_000),
        ("runon.txt", b"word" * 75_000),
    ],
)
async def test_pathological_files_are_read_each_on_its_own(probe: Probe, name: str, data: bytes) -> None:
    # The probe's stallers: each is now read by a linear-time parser in a worker thread, and ends
    # as one stored document or one coded error for its file.
    body = await _upload(probe, [(name, data)])
    payload = body["data"]["uploadDocuments"]
    assert len(payload["documents"]) + len(payload["errors"]) == 1, payload


def test_the_markdown_link_pattern_is_linear() -> None:
    from domain.documents.parsing import _LINK, parse_upload

    # The old pattern `!?\[([^\]]*)\]\([^)]*\)` rescans to the end from every `[`: quadratic.
    assert _LINK.pattern.count("{0,") == 2
    data = b"# T\nsee [the docs](https://x.test) and ![img](i.png)"
    title, text = parse_upload("a.md", data, max_bytes=1000, path="f")
    assert (title, text.strip()) == ("T", "T\nsee the docs and img")


def _pdf_of_text_operators(count: int) -> bytes:
    """One page with `count` text-showing operators: pypdf extracts it in one uninterrupted call,
    about 30 µs per operator, so a 17 KB file keeps it busy for half a minute."""
    import zlib

    content = b"BT /F1 12 Tf " + b"(a) Tj 1 0 Td " * count + b"ET"
    stream = zlib.compress(content, 9)
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R"
        b" /Resources << /Font << /F1 5 0 R >> >> >>",
        b"<< /Length %d /Filter /FlateDecode >>\nstream\n" % len(stream) + stream + b"\nendstream",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    return pdf_file(objects)


UPLOAD_WITH_MESSAGES = """mutation($files: [Upload!]!) {
  uploadDocuments(input: {files: $files}) { documents { title } errors { code field message } } }"""


async def test_a_parse_over_its_budget_is_killed_and_coded_while_healthz_answers(
    pg_url: str, tmp_root: Path, embedder: LocalEmbedder, signer: Signer
) -> None:
    # Before: the budget was checked between parse steps, in a thread, so one long step (a page
    # pypdf reads for half a minute) ran to its end. Now it runs in a worker process that is
    # killed at the budget (1 s here); the upload answers long before the parse could finish.
    spinner = _pdf_of_text_operators(1_000_000)
    good = [f"good-{uuid.uuid4().hex[:8]}" for _ in range(2)]
    files = [(f"{good[0]}.txt", b"A calm harbour at dawn."), ("spin.pdf", spinner), (f"{good[1]}.md", b"Gulls.")]
    async with production_client(pg_url, tmp_root, embedder, signer, parse_timeout_s=1.0) as client:
        probe = Probe(client, signer)
        pool = app_of(client).state.services.documents.parse_pool
        operations = {"query": UPLOAD_WITH_MESSAGES, "variables": {"files": [None] * len(files)}}
        upload = asyncio.create_task(
            client.post(
                "/graphql",
                data={
                    "operations": json.dumps(operations),
                    "map": json.dumps(
                        {"0": ["variables.files.0"], "1": ["variables.files.1"], "2": ["variables.files.2"]}
                    ),
                },
                files={str(i): (name, data) for i, (name, data) in enumerate(files)},
                headers=probe.headers("editor"),
                timeout=60,
            )
        )
        health_checks = 0
        async with asyncio.timeout(25):  # the parse alone would take ~30 s (more on a busy machine)
            while not upload.done():
                assert (await client.get("/healthz")).status_code == 200
                health_checks += 1
                await asyncio.sleep(0.05)
            response = await upload
        payload = response.json()["data"]["uploadDocuments"]
        assert sorted(d["title"] for d in payload["documents"]) == sorted(good)
        [error] = payload["errors"]
        assert (error["code"], error["field"]) == ("UNREADABLE_FILE", "files.1")
        assert "took over 1 s" in error["message"]
        assert health_checks > 0 and pool.killed == 1
        # The pool recovers: the next upload is read by a new worker.
        again = await _upload(probe, [(f"{good[0]}-again.md", b"# Again\nHerons.")])
        assert again["data"]["uploadDocuments"]["documents"] == [{"title": "Again"}]
        assert pool.killed == 1


# --- lone surrogates are INVALID_CHARACTER, like NUL ----------------------------------------------


SURROGATE_QUERY = "query($q: String!) { search(query: $q) { tookMs } }"
SURROGATE_FILTER = 'query($f: MetadataFilter) { search(query: "x", options: {filter: $f}) { tookMs } }'


@pytest.mark.parametrize(
    ("query", "variables"),
    [
        (SURROGATE_QUERY, '{"q": "lagoon \\ud800"}'),
        (SURROGATE_FILTER, '{"f": {"all": [{"field": "genre", "op": "EQ", "value": "\\udc00"}]}}'),
    ],
    ids=["query", "filter"],
)
async def test_a_lone_surrogate_in_a_search_is_invalid_character(probe: Probe, query: str, variables: str) -> None:
    content = json.dumps({"query": query})[:-1] + f', "variables": {variables}}}'
    response = await probe.client.post(
        "/graphql", content=content, headers={**probe.headers("reader"), "content-type": "application/json"}
    )
    assert codes(response.json()) == ["INVALID_CHARACTER"], response.text


def test_a_lone_surrogate_in_connection_init_closes_the_socket_cleanly(
    pg_url: str, tmp_root: Path, embedder: LocalEmbedder, signer: Signer
) -> None:
    settings = production_settings(pg_url, tmp_root, signer)
    with TestClient(create_app(settings, embedder=embedder)) as client:
        with client.websocket_connect("/graphql", subprotocols=["graphql-ws"]) as ws:
            ws.send_text('{"type": "connection_init", "payload": {"authorization": "Bearer \\ud800"}}')
            reply = ws.receive_json()
            assert reply["type"] == "connection_error"
            assert reply["payload"]["code"] == "INVALID_CHARACTER"
        with client.websocket_connect("/graphql", subprotocols=["graphql-transport-ws"]) as ws:
            ws.send_text('{"type": "connection_init", "payload": {"token": "\\udfff"}}')
            with pytest.raises(WebSocketDisconnect) as closed:
                ws.receive_json()
            assert closed.value.code == 4403


# --- what production shows strangers ------------------------------------------------------------


async def test_validation_errors_suggest_no_field_names_in_production(probe: Probe) -> None:
    response = await probe.post("{ apiKey { id } }", None, "reader")
    message = response.json()["errors"][0]["message"]
    assert "Cannot query field 'apiKey'" in message
    assert "Did you mean" not in message and "apiKeys" not in message


async def test_production_validates_a_document_once_and_a_refused_one_every_time(
    probe: Probe, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Validation was a fifth of the server's CPU under search load in production (issue 18).
    calls: list[object] = []
    real = validation.validate

    def counting(*args: Any, **kwargs: Any) -> Any:
        calls.append(args[1])
        return real(*args, **kwargs)

    monkeypatch.setattr(validation, "validate", counting)
    valid = f"{{ me {{ tenant }} t{uuid.uuid4().hex[:6]}: __typename }}"
    for _ in range(3):
        response = await probe.post(valid, None, "reader")
        assert response.json()["data"]["me"]["tenant"]
    assert len(calls) == 1
    invalid = f"{{ apiKey_{uuid.uuid4().hex[:6]} {{ id }} }}"
    for _ in range(2):
        errors = (await probe.post(invalid, None, "reader")).json()["errors"]
        assert "Cannot query field" in errors[0]["message"]
    assert len(calls) == 3  # errors carry each request's id: never shared from a cache


async def test_validation_errors_still_suggest_in_development(app_client: httpx.AsyncClient) -> None:
    response = await app_client.post("/graphql", json={"query": "{ apiKey { id } }"})
    assert "Did you mean 'apiKeys'?" in response.json()["errors"][0]["message"]


@pytest.mark.parametrize("path", ["/docs", "/redoc", "/openapi.json"])
async def test_fastapi_docs_pages_are_off_in_production(probe: Probe, path: str) -> None:
    assert (await probe.client.get(path)).status_code == 404


async def test_fastapi_docs_pages_are_served_in_development(app_client: httpx.AsyncClient) -> None:
    assert (await app_client.get("/openapi.json")).status_code == 200


# --- /metrics ------------------------------------------------------------------------------------

METRICS_TOKEN = remember("metrics-" + "7c1e9a4f0b3d5e8a2c6f1b9d4e7a0c3f")


async def test_metrics_are_not_on_the_api_port_in_production_without_a_token(probe: Probe) -> None:
    response = await probe.client.get("/metrics")
    assert response.status_code == 404
    assert "ragql_" not in response.text
    # Not with a credential that opens /graphql either.
    assert (await probe.client.get("/metrics", headers=probe.headers("admin"))).status_code == 404


async def test_metrics_need_the_token_on_the_api_port_and_on_the_metrics_port(
    pg_url: str, tmp_root: Path, embedder: LocalEmbedder, signer: Signer
) -> None:
    async with production_client(
        pg_url, tmp_root, embedder, signer, metrics_token=METRICS_TOKEN, metrics_port=0
    ) as client:
        token = {"Authorization": f"Bearer {METRICS_TOKEN}"}
        for headers in (
            {},
            {"Authorization": "Bearer wrong"},
            {"Authorization": METRICS_TOKEN},
            bearer(TEST_JWT_SECRET),
        ):
            refused = await client.get("/metrics", headers=headers)
            assert refused.status_code == 401 and refused.headers["www-authenticate"].startswith("Bearer")
            assert "ragql_" not in refused.text
        served = await client.get("/metrics", headers=token)
        assert served.status_code == 200 and "ragql_redis_up" in served.text
        # The separate port (RAGQL_METRICS_PORT=0: any free one), bound to RAGQL_HOST.
        port = app_of(client).state.metrics_server.port
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as side:
            assert (await side.get("/metrics")).status_code == 401
            assert "ragql_redis_up" in (await side.get("/metrics", headers=token)).text
            assert (await side.get("/healthz")).status_code == 200  # the worker's probes: no token
    # Closed with the app.
    async with httpx.AsyncClient() as after:
        with pytest.raises(httpx.ConnectError):
            await after.get(f"http://127.0.0.1:{port}/healthz", timeout=2)


async def test_a_metrics_port_without_a_token_serves_only_metrics() -> None:
    server = MetricsServer("127.0.0.1", 0, None)
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{server.port}") as side:
            assert "ragql_redis_up" in (await side.get("/metrics")).text
    finally:
        server.close()


async def test_metrics_stay_open_in_development(app_client: httpx.AsyncClient) -> None:
    assert "ragql_redis_up" in (await app_client.get("/metrics")).text


@pytest.mark.parametrize("token", ["short-token", TEST_JWT_SECRET, DEFAULT_JWT_SECRET])
def test_production_refuses_a_weak_metrics_token(pg_url: str, tmp_root: Path, signer: Signer, token: str) -> None:
    with pytest.raises(ValueError, match="RAGQL_METRICS_TOKEN"):
        production_settings(pg_url, tmp_root, signer, metrics_token=token)


INFO = "{ serverInfo { database databaseVersion pgvectorVersion } }"


@pytest.mark.parametrize(("role", "shown"), [("reader", False), ("editor", False), ("admin", True)])
async def test_server_versions_are_for_admins_only_in_production(probe: Probe, role: str, shown: bool) -> None:
    info = (await probe.post(INFO, None, role)).json()["data"]["serverInfo"]
    assert info["database"]  # what kind of database stays public
    assert (info["databaseVersion"] != "hidden", info["pgvectorVersion"] != "hidden") == (shown, shown)
    if shown:
        assert info["pgvectorVersion"].startswith("0.")


# --- bounded request JSON -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        '{"query": "{ me { tenant } }", "variables": {"x": ' + "[" * 900 + "]" * 900 + "}}",
        '{"query": "{ me { tenant } }", "variables": {"x": ' + "[" * 990 + "]" * 990 + "}}",
        '{"query": "{ me { tenant } }", "variables": {"x": ' + "9" * 5000 + "}}",
    ],
    ids=["900-deep", "990-deep", "5000-digits"],
)
async def test_hostile_json_is_a_coded_400(probe: Probe, body: str) -> None:
    response = await probe.client.post(
        "/graphql", content=body, headers={**probe.headers("reader"), "content-type": "application/json"}
    )
    assert response.status_code == 400, response.text
    assert codes(response.json()) == ["BAD_REQUEST"]


# --- queries and mutations over legacy graphql-ws -------------------------------------------------


def test_a_query_over_legacy_graphql_ws_is_answered(
    pg_url: str, tmp_root: Path, embedder: LocalEmbedder, signer: Signer
) -> None:
    settings = production_settings(pg_url, tmp_root, signer)
    tenant = f"hard-{uuid.uuid4().hex[:8]}"
    token = signer.hs256(tenant, ["editor"])
    with TestClient(create_app(settings, embedder=embedder)) as client:
        with client.websocket_connect("/graphql", subprotocols=["graphql-ws"]) as ws:
            ws.send_json({"type": "connection_init", "payload": {"authorization": f"Bearer {token}"}})
            assert ws.receive_json()["type"] == "connection_ack"
            ws.send_json({"id": "1", "type": "start", "payload": {"query": ME}})
            data = ws.receive_json()
            assert data["type"] == "data" and data["payload"]["data"] == {"me": {"tenant": tenant}}
            assert ws.receive_json() == {"type": "complete", "id": "1"}
            mutation = 'mutation { deleteDocument(input: {id: "RG9jdW1lbnQ6MDAwMA=="}) { errors { code } } }'
            ws.send_json({"id": "2", "type": "start", "payload": {"query": mutation}})
            data = ws.receive_json()
            assert data["type"] == "data"
            assert data["payload"]["data"]["deleteDocument"]["errors"][0]["code"] in ("NOT_FOUND", "INVALID_ID")


# --- refusals are charged -------------------------------------------------------------------------


async def test_unknown_key_refusals_drain_the_address_bucket(
    pg_url: str, tmp_root: Path, embedder: LocalEmbedder, signer: Signer
) -> None:
    # 25 units per minute per address; a refusal costs 10: two 401s, then 429 with Retry-After.
    async with production_client(pg_url, tmp_root, embedder, signer, rate_per_ip=25) as client:
        statuses = []
        for i in range(3):
            response = await gql(client, ME, headers={"Authorization": f"Bearer rgq_live_{'x' * 30}{i}"})
            statuses.append(response.status_code)
        assert statuses == [401, 401, 429]
        assert codes(response.json()) == ["RATE_LIMITED"] and int(response.headers["retry-after"]) >= 1
