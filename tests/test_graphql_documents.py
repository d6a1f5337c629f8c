"""Documents through GraphQL over HTTP, like a client."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import httpx
from sqlalchemy import text

from domain.persistence.database import Database
from tests.conftest import graphql, graphql_ok
from tests.pdfs import pdf_file

INGEST = """
mutation Ingest($input: IngestDocumentsInput!) {
  ingestDocuments(input: $input) {
    documents { id externalId title genre tags rating year metadata chunkCount }
    results { index status document { id } }
    chunksEmbedded
    errors { field message code }
  }
}"""

FILMS = [json.loads(line) for line in Path("domain/demo/films.jsonl").read_text().splitlines()]

DELETE = """
mutation Delete($id: ID!) { deleteDocument(input: {id: $id}) { deletedId errors { field code message } } }"""

DOCUMENT = "query Doc($id: ID!) { document(id: $id) { id title text } }"
NODE = "query Node($id: ID!) { node(id: $id) { id ... on Document { title } } }"

LIST = """
query List($first: Int!, $after: String, $filter: MetadataFilter) {
  documents(first: $first, after: $after, filter: $filter) {
    totalCount
    edges { cursor node { externalId } }
    pageInfo { hasNextPage endCursor }
  }
}"""


def doc(ext: str, text_: str = "A quiet lighthouse keeper befriends a stranded whale.", **meta: object) -> dict:
    return {"title": f"Title {ext}", "text": text_, "externalId": ext, "metadata": {"source": "test", **meta}}


async def chunk_rows(db: Database, ext: str) -> list[str]:
    async with db.session("default") as s:
        rows = await s.execute(
            text(
                "SELECT c.text FROM chunks c JOIN documents d ON d.id = c.document_id "
                "WHERE d.tenant_id = 'default' AND d.external_id = :e ORDER BY c.ordinal"
            ),
            {"e": ext},
        )
        return [r[0] for r in rows.all()]


async def test_ingest_is_idempotent_and_replaces_changed_text(app_client: httpx.AsyncClient, db: Database) -> None:
    ext = f"idem-{uuid.uuid4().hex[:8]}"
    # given a new document
    first = await graphql_ok(app_client, INGEST, {"input": {"documents": [doc(ext, genre="Drama", year=2001)]}})
    payload = first["ingestDocuments"]
    assert payload["errors"] == []
    assert payload["results"][0]["status"] == "CREATED"
    assert payload["chunksEmbedded"] >= 1
    assert payload["documents"][0]["genre"] == "Drama" and payload["documents"][0]["year"] == 2001

    # when it is sent again unchanged, nothing is embedded
    again = await graphql_ok(app_client, INGEST, {"input": {"documents": [doc(ext, genre="Drama", year=2001)]}})
    assert again["ingestDocuments"]["chunksEmbedded"] == 0
    assert again["ingestDocuments"]["results"][0]["status"] == "UNCHANGED"
    assert again["ingestDocuments"]["documents"][0]["id"] == payload["documents"][0]["id"]

    # when only metadata changes, it is updated without embedding
    meta = await graphql_ok(app_client, INGEST, {"input": {"documents": [doc(ext, genre="Comedy", year=2001)]}})
    assert meta["ingestDocuments"]["chunksEmbedded"] == 0
    assert meta["ingestDocuments"]["documents"][0]["genre"] == "Comedy"

    # when the text changes, the chunks are replaced
    new_text = "An astronaut repairs a broken satellite while orbiting Jupiter."
    changed = await graphql_ok(app_client, INGEST, {"input": {"documents": [doc(ext, new_text)]}})
    assert changed["ingestDocuments"]["results"][0]["status"] == "UPDATED"
    assert changed["ingestDocuments"]["chunksEmbedded"] >= 1
    assert await chunk_rows(db, ext) == [new_text]


async def test_batch_with_bad_documents_stores_the_good_ones(app_client: httpx.AsyncClient, db: Database) -> None:
    good_a, good_b = f"good-{uuid.uuid4().hex[:8]}", f"good-{uuid.uuid4().hex[:8]}"
    bad_year, bad_meta, empty = (f"bad-{uuid.uuid4().hex[:8]}" for _ in range(3))
    docs = [
        doc(good_a),
        doc(bad_year, year="nineteen"),
        {"title": "T", "text": "x", "externalId": bad_meta, "metadata": "{not json"},
        {"title": "T", "text": "   ", "externalId": empty},
        doc(good_b, rating=4.5, tags=["sea", "friendship"]),
    ]
    payload = (await graphql_ok(app_client, INGEST, {"input": {"documents": docs}}))["ingestDocuments"]
    assert sorted(r["index"] for r in payload["results"]) == [0, 4]
    errors = {e["field"]: e["code"] for e in payload["errors"]}
    assert errors == {
        "documents.1.metadata.year": "INVALID_METADATA",
        "documents.2.metadata": "INVALID_METADATA",
        "documents.3.text": "INVALID_DOCUMENT",
    }
    assert all(e["message"] for e in payload["errors"])
    async with db.session("default") as s:
        stored = (
            (
                await s.execute(
                    text("SELECT external_id FROM documents WHERE external_id = ANY(:e)"),
                    {"e": [good_a, good_b, bad_year, bad_meta, empty]},
                )
            )
            .scalars()
            .all()
        )
    assert sorted(stored) == sorted([good_a, good_b])


async def test_duplicate_external_ids_in_one_batch(app_client: httpx.AsyncClient) -> None:
    ext = f"dup-{uuid.uuid4().hex[:8]}"
    payload = (await graphql_ok(app_client, INGEST, {"input": {"documents": [doc(ext), doc(ext)]}}))["ingestDocuments"]
    assert [r["index"] for r in payload["results"]] == [0]
    assert [(e["field"], e["code"]) for e in payload["errors"]] == [("documents.1.externalId", "DUPLICATE_EXTERNAL_ID")]


async def test_document_node_delete(app_client: httpx.AsyncClient, db: Database) -> None:
    ext = f"del-{uuid.uuid4().hex[:8]}"
    payload = (await graphql_ok(app_client, INGEST, {"input": {"documents": [doc(ext)]}}))["ingestDocuments"]
    doc_id = payload["documents"][0]["id"]

    assert (await graphql_ok(app_client, DOCUMENT, {"id": doc_id}))["document"]["title"] == f"Title {ext}"
    assert (await graphql_ok(app_client, NODE, {"id": doc_id}))["node"]["title"] == f"Title {ext}"

    deleted = (await graphql_ok(app_client, DELETE, {"id": doc_id}))["deleteDocument"]
    assert deleted == {"deletedId": doc_id, "errors": []}
    assert (await graphql_ok(app_client, DOCUMENT, {"id": doc_id}))["document"] is None
    assert await chunk_rows(db, ext) == []

    again = (await graphql_ok(app_client, DELETE, {"id": doc_id}))["deleteDocument"]
    assert again["deletedId"] is None and again["errors"][0]["code"] == "NOT_FOUND"
    garbage = (await graphql_ok(app_client, DELETE, {"id": "not-an-id"}))["deleteDocument"]
    assert garbage["errors"][0]["code"] == "INVALID_ID"


async def test_documents_connection_pages_with_cursors(app_client: httpx.AsyncClient) -> None:
    flt = {
        "all": [
            {"field": "source", "op": "EQ", "value": "ragql-demo"},
            {"field": "genre", "op": "EQ", "value": "Sci-Fi"},
        ]
    }
    seen: list[str] = []
    after = None
    total = None
    while True:
        page = (await graphql_ok(app_client, LIST, {"first": 7, "after": after, "filter": flt}))["documents"]
        total = page["totalCount"]
        seen.extend(e["node"]["externalId"] for e in page["edges"])
        if not page["pageInfo"]["hasNextPage"]:
            break
        after = page["pageInfo"]["endCursor"]
    expected = {f["externalId"] for f in FILMS if f["metadata"]["genre"] == "Sci-Fi"}
    assert total == len(expected)
    assert sorted(seen) == sorted(expected)  # every item once, none twice


async def test_documents_first_over_limit_and_bad_cursor(app_client: httpx.AsyncClient) -> None:
    body = await graphql(app_client, LIST, {"first": 101})
    assert body["errors"][0]["extensions"]["code"] == "FIRST_OUT_OF_RANGE"
    body = await graphql(app_client, LIST, {"first": 5, "after": "garbage!"})
    assert body["errors"][0]["extensions"]["code"] == "INVALID_CURSOR"


UPLOAD = """
mutation Upload($files: [Upload!]!) {
  uploadDocuments(input: {files: $files, metadata: {source: "upload"}}) {
    documents { title text source }
    errors { field code message }
  }
}"""


async def upload(client: httpx.AsyncClient, files: list[tuple[str, bytes]]) -> dict:
    operations = {"query": UPLOAD, "variables": {"files": [None] * len(files)}}
    mapping = {str(i): [f"variables.files.{i}"] for i in range(len(files))}
    response = await client.post(
        "/graphql",
        data={"operations": json.dumps(operations), "map": json.dumps(mapping)},
        files={str(i): (name, data) for i, (name, data) in enumerate(files)},
    )
    assert response.status_code == 200, response.text
    body: dict = response.json()
    return body


async def test_upload_text_markdown_html(app_client: httpx.AsyncClient) -> None:
    tag = uuid.uuid4().hex[:8]
    body = await upload(
        app_client,
        [
            (f"notes-{tag}.txt", b"Plain notes about tidal energy."),
            (f"guide-{tag}.md", b"# Solar Guide\n\nPanels convert **sunlight** into [power](http://x)."),
            (
                f"page-{tag}.html",
                b"<html><head><title>Wind Page</title><script>evil()</script></head>"
                b"<body><p>Turbines spin.</p></body></html>",
            ),
        ],
    )
    payload = body["data"]["uploadDocuments"]
    assert payload["errors"] == []
    by_title = {d["title"]: d for d in payload["documents"]}
    assert set(by_title) == {f"notes-{tag}", "Solar Guide", "Wind Page"}
    assert "sunlight" in by_title["Solar Guide"]["text"] and "**" not in by_title["Solar Guide"]["text"]
    assert by_title["Wind Page"]["text"] == "Turbines spin."
    assert all(d["source"] == "upload" for d in payload["documents"])


async def test_upload_rejects_unsupported_and_oversized_files(app_client: httpx.AsyncClient, db: Database) -> None:
    tag = uuid.uuid4().hex[:8]
    body = await upload(
        app_client,
        [
            (f"tool-{tag}.exe", b"MZ\x90\x00"),
            (f"huge-{tag}.txt", b"a " * 40_000),  # the test app allows 64 KiB
            (f"ok-{tag}.txt", b"A small valid file."),
        ],
    )
    payload = body["data"]["uploadDocuments"]
    assert {(e["field"], e["code"]) for e in payload["errors"]} == {
        ("files.0", "UNSUPPORTED_FILE_TYPE"),
        ("files.1", "FILE_TOO_LARGE"),
    }
    assert [d["title"] for d in payload["documents"]] == [f"ok-{tag}"]
    async with db.session("default") as s:
        stored = (
            await s.execute(
                text("SELECT count(*) FROM documents WHERE title IN (:a, :b)"),
                {"a": f"tool-{tag}", "b": f"huge-{tag}"},
            )
        ).scalar_one()
    assert stored == 0


async def test_server_info_reports_backends(app_client: httpx.AsyncClient) -> None:
    data = await graphql_ok(
        app_client,
        "{ serverInfo { embeddingModel embeddingDim keywordBackend database pgvectorVersion auth rateLimits "
        "introspection } me { method roles } }",
    )
    info, me = data["serverInfo"], data["me"]
    assert info["embeddingModel"] == "all-MiniLM-L6-v2" and info["embeddingDim"] == 384
    assert info["keywordBackend"] == "BM25"
    assert info["database"] == "external"  # the tests hand the app a URL
    assert info["pgvectorVersion"].startswith("0.8")
    # Development mode says so, and that anonymous callers act as the dev tenant's admin.
    assert info["auth"].startswith("development") and "'default'" in info["auth"]
    assert me == {"method": "development", "roles": ["reader", "editor", "admin"]}
    assert info["rateLimits"] == "local" and info["introspection"] is True


def minimal_pdf(text_: str) -> bytes:
    """A one-page PDF with one line of text, built by hand so the test needs no PDF writer."""
    stream = f"BT /F1 12 Tf 72 720 Td ({text_}) Tj ET".encode()
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R "
        b"/Resources << /Font << /F1 5 0 R >> >> >>",
        b"<< /Length %d >>\nstream\n" % len(stream) + stream + b"\nendstream",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    return pdf_file(objects)


async def test_upload_pdf_and_reject_a_damaged_one(app_client: httpx.AsyncClient) -> None:
    tag = uuid.uuid4().hex[:8]
    body = await upload(
        app_client,
        [
            (f"paper-{tag}.pdf", minimal_pdf("Geothermal wells heat the town library")),
            (f"broken-{tag}.pdf", b"%PDF-1.4 this is not really a pdf"),
        ],
    )
    payload = body["data"]["uploadDocuments"]
    assert [d["title"] for d in payload["documents"]] == [f"paper-{tag}"]
    assert "Geothermal wells heat the town library" in payload["documents"][0]["text"]
    assert [(e["field"], e["code"]) for e in payload["errors"]] in (
        [("files.1", "UNREADABLE_FILE")],
        [("files.1", "EMPTY_FILE")],
    )
