"""Durable ingestion jobs with real `ragql worker` processes against the real database: a worker
SIGKILLed halfway, SIGTERM, cancel, the progress subscription, tenancy, and bad input."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from gql import Client, GraphQLRequest
from gql.transport.websockets import WebsocketsTransport
from sqlalchemy import text

from api.app import create_app
from api.settings import Settings
from domain.persistence.database import Database
from domain.providers.embedding import LocalEmbedder
from schema.common import from_global_id
from tests.conftest import graphql, graphql_ok, tenant_client
from tests.jobs_harness import WorkerProcess, start_worker, word, workers
from tests.servers import serve_in_thread

pytestmark = pytest.mark.slow

INGEST = """
mutation($docs: [DocumentInput!]!, $mode: IngestMode) {
  ingestDocuments(input: {documents: $docs, mode: $mode}) {
    documents { id }
    errors { field code }
    job { id state documentsTotal documentsDone }
  }
}
"""
JOB = """
query($id: ID!) {
  ingestionJob(id: $id) {
    id state documentsTotal documentsDone documentsCreated documentsFailed chunksEmbedded startedAt finishedAt
    errors { index field code message }
  }
}
"""
NODE = "query($id: ID!) { node(id: $id) { __typename id ... on IngestionJob { documentsTotal } } }"
CANCEL = "mutation($id: ID!) { cancelIngestionJob(input: {id: $id}) { job { state documentsDone } errors { code } } }"


def _docs(n: int, tag: str, *, external_ids: bool = False) -> list[dict[str, Any]]:
    """Small, distinct documents (one chunk each); without externalIds unless asked, so a document
    written twice would show as two rows rather than be absorbed by the upsert."""
    out = []
    for i in range(n):
        doc: dict[str, Any] = {"title": f"{tag} note {i}", "text": f"Observation {i} of batch {tag}: {word(i)}."}
        if external_ids:
            doc["externalId"] = f"{tag}-{i}"
        out.append(doc)
    return out


async def _submit(client: httpx.AsyncClient, docs: list[dict[str, Any]]) -> str:
    data = await graphql_ok(client, INGEST, {"docs": docs, "mode": "ASYNC"})
    payload = data["ingestDocuments"]
    assert payload["documents"] == [] and payload["job"]["state"] == "QUEUED"
    assert payload["job"]["documentsTotal"] == len(docs)
    return str(payload["job"]["id"])


async def _job_row(db: Database, tenant: str, job_id: str) -> dict[str, Any]:
    ident = from_global_id(job_id, expected="IngestionJob")[1]
    async with db.session(tenant) as session:
        row = (
            await session.execute(
                text(
                    "SELECT state, items_done, items_total, worker, chunks_embedded FROM ingestion_jobs WHERE id = :i"
                ),
                {"i": ident},
            )
        ).one()
    return {"state": row[0], "done": row[1], "total": row[2], "worker": row[3], "chunks": row[4]}


async def _wait(db: Database, tenant: str, job_id: str, predicate: Any, timeout_s: float = 240.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    while True:
        row = await _job_row(db, tenant, job_id)
        if predicate(row):
            return row
        assert time.monotonic() < deadline, f"job did not get there in time: {row}"
        await asyncio.sleep(0.05)


async def _stored(db: Database, tenant: str) -> dict[str, int]:
    async with db.session(tenant) as session:
        row = (
            await session.execute(
                text(
                    """
                    SELECT count(*), count(DISTINCT text),
                           count(*) FILTER (WHERE chunk_count = 0
                                            OR NOT EXISTS (SELECT 1 FROM chunks c WHERE c.document_id = d.id)),
                           (SELECT count(*) FROM chunks)
                    FROM documents d
                    """
                )
            )
        ).one()
    return {"documents": row[0], "distinct_texts": row[1], "without_chunks": row[2], "chunks": row[3]}


@pytest.fixture(scope="module")
def pair(pg_url: str, tmp_root: Path, app_client: httpx.AsyncClient) -> Iterator[list[WorkerProcess]]:
    """Two worker processes, shared by the tests of this module (loading the model is the slow part)."""
    with workers(pg_url, tmp_root, "a", "b") as started:
        yield started


@pytest.fixture
async def client(pg_url: str, tmp_root: Path, embedder: LocalEmbedder) -> AsyncIterator[tuple[httpx.AsyncClient, str]]:
    async with tenant_client(pg_url, tmp_root, embedder, load_demo=False) as pair:
        yield pair


# First, before the shared pair starts: with only this worker running, it surely holds the job.
async def test_sigterm_finishes_the_batch_in_hand_and_hands_the_job_back(
    pg_url: str, tmp_root: Path, client: tuple[httpx.AsyncClient, str], db: Database
) -> None:
    http, tenant = client
    solo = start_worker(pg_url, tmp_root, "sigterm")
    try:
        solo.wait_ready()
        job_id = await _submit(http, _docs(120, "term"))
        await _wait(db, tenant, job_id, lambda r: r["done"] >= 8 and r["worker"] == f"{_host()}:{solo.pid}")
        assert solo.terminate() == 0
        row = await _job_row(db, tenant, job_id)
        stored = await _stored(db, tenant)
        assert row["state"] == "QUEUED" and 8 <= row["done"] < 120
        assert stored["documents"] == row["done"] and stored["without_chunks"] == 0
        assert "worker stopped after" in solo.output()
        async with db.engine.connect() as conn:  # the owner sees the queue as workers do
            status = (
                await conn.execute(
                    text("SELECT status::text FROM pgqueuer WHERE payload = :b"),
                    {"b": from_global_id(job_id)[1].bytes},
                )
            ).scalar()
        assert status == "queued"  # handed back: the next worker to dequeue continues it
    finally:
        solo.kill()


def _long_docs(n: int, tag: str) -> list[dict[str, Any]]:
    """Documents of about four chunks each, so embedding a batch of them takes a while."""
    return [
        {
            "title": f"{tag} survey {i}",
            "text": " ".join(
                f"Plot {j} of survey {i} recorded {word(i * 64 + j)} in the tidal zone." for j in range(48)
            ),
        }
        for i in range(n)
    ]


async def test_sigterm_mid_batch_writes_the_embedded_documents_and_hands_back_the_rest(
    pg_url: str, tmp_root: Path, client: tuple[httpx.AsyncClient, str], db: Database
) -> None:
    # given: one batch of 200 long documents, so the batch in hand is the whole job
    http, tenant = client
    solo = start_worker(pg_url, tmp_root, "sigterm-batch", RAGQL_JOB_BATCH_SIZE="200")
    try:
        solo.wait_ready()
        job_id = await _submit(http, _long_docs(200, "halt"))
        await _wait(db, tenant, job_id, lambda r: r["state"] == "RUNNING" and r["worker"] == f"{_host()}:{solo.pid}")
        # when: SIGTERM while the batch is being embedded
        assert solo.terminate() == 0
    finally:
        solo.kill()
    assert "Traceback" not in solo.output()
    # then: it did not finish the batch of 200; what it wrote is whole, and the job is queued again
    row = await _job_row(db, tenant, job_id)
    stored = await _stored(db, tenant)
    assert row["state"] == "QUEUED" and row["done"] < 200
    assert stored["documents"] == row["done"] and stored["without_chunks"] == 0
    async with db.session(tenant) as session:
        partial = (
            await session.execute(
                text(
                    "SELECT count(*) FROM documents d "
                    "WHERE chunk_count <> (SELECT count(*) FROM chunks c WHERE c.document_id = d.id)"
                )
            )
        ).scalar()
    assert partial == 0
    # and the next worker resumes it: every document stored exactly once
    resumer = start_worker(pg_url, tmp_root, "sigterm-resume")
    try:
        resumer.wait_ready()
        final = await _wait(db, tenant, job_id, lambda r: r["state"] in ("SUCCEEDED", "FAILED", "CANCELLED"))
    finally:
        resumer.kill()
    stored = await _stored(db, tenant)
    assert final["state"] == "SUCCEEDED" and final["done"] == 200
    assert stored["documents"] == 200 and stored["distinct_texts"] == 200 and stored["without_chunks"] == 0


async def test_an_async_job_stores_every_valid_document_and_reports_the_bad_ones(
    pair: list[WorkerProcess], client: tuple[httpx.AsyncClient, str], db: Database
) -> None:
    http, tenant = client
    docs = _docs(6, "mixed")
    docs[2]["text"] = "   "
    docs[4]["metadata"] = {"bad key": 1}
    job_id = await _submit(http, docs)
    await _wait(db, tenant, job_id, lambda r: r["state"] in ("SUCCEEDED", "FAILED"))
    job = (await graphql_ok(http, JOB, {"id": job_id}))["ingestionJob"]
    assert job["state"] == "SUCCEEDED" and job["documentsDone"] == 6
    assert job["documentsCreated"] == 4 and job["documentsFailed"] == 2 and job["chunksEmbedded"] == 4
    assert [(e["index"], e["field"], e["code"]) for e in job["errors"]] == [
        (2, "documents.2.text", "INVALID_DOCUMENT"),
        (4, "documents.4.metadata.bad key", "INVALID_METADATA"),
    ]
    assert job["startedAt"] <= job["finishedAt"]
    assert (await _stored(db, tenant))["documents"] == 4


UPLOAD = """
mutation($files: [Upload!]!) {
  uploadDocuments(input: {files: $files, mode: ASYNC}) { documents { id } errors { field code } job { id } }
}
"""


async def test_an_async_upload_is_a_job_with_per_file_errors(
    pair: list[WorkerProcess], client: tuple[httpx.AsyncClient, str], db: Database
) -> None:
    http, tenant = client
    files = [("a.txt", b"Tide pools hold starfish."), ("b.exe", b"MZ\x90"), ("c.md", b"# Reefs\n\nCorals host fish.")]
    operations = {"query": UPLOAD, "variables": {"files": [None] * len(files)}}
    response = await http.post(
        "/graphql",
        data={
            "operations": json.dumps(operations),
            "map": json.dumps({str(i): [f"variables.files.{i}"] for i in range(len(files))}),
        },
        files={str(i): (name, data) for i, (name, data) in enumerate(files)},
    )
    payload = response.json()["data"]["uploadDocuments"]
    assert payload["documents"] == [] and payload["errors"] == [{"field": "files.1", "code": "UNSUPPORTED_FILE_TYPE"}]
    job_id = payload["job"]["id"]
    await _wait(db, tenant, job_id, lambda r: r["state"] in ("SUCCEEDED", "FAILED"))
    job = (await graphql_ok(http, JOB, {"id": job_id}))["ingestionJob"]
    assert (job["state"], job["documentsCreated"], job["documentsFailed"]) == ("SUCCEEDED", 2, 1)
    assert [(e["index"], e["field"], e["code"]) for e in job["errors"]] == [(1, "files.1", "UNSUPPORTED_FILE_TYPE")]


async def test_a_job_whose_every_document_fails_ends_failed(client: tuple[httpx.AsyncClient, str]) -> None:
    http, _ = client
    data = await graphql_ok(
        http, INGEST, {"docs": [{"title": "", "text": "x"}, {"title": "t", "text": ""}], "mode": "ASYNC"}
    )
    payload = data["ingestDocuments"]
    assert payload["job"]["state"] == "FAILED"
    assert [e["code"] for e in payload["errors"]] == ["INVALID_DOCUMENT", "INVALID_DOCUMENT"]
    job = (await graphql_ok(http, JOB, {"id": payload["job"]["id"]}))["ingestionJob"]
    assert job["state"] == "FAILED" and job["finishedAt"] and len(job["errors"]) == 2


async def test_without_mode_a_large_batch_becomes_a_job(pg_url: str, tmp_root: Path, embedder: LocalEmbedder) -> None:
    async with tenant_client(pg_url, tmp_root, embedder, load_demo=False, async_ingest_threshold=3) as (http, _):
        small = (await graphql_ok(http, INGEST, {"docs": _docs(3, "small")}))["ingestDocuments"]
        large = (await graphql_ok(http, INGEST, {"docs": _docs(4, "large")}))["ingestDocuments"]
    assert len(small["documents"]) == 3 and small["job"] is None
    assert large["documents"] == [] and large["job"]["documentsTotal"] == 4


async def test_another_tenants_job_is_not_found(
    pg_url: str, tmp_root: Path, embedder: LocalEmbedder, db: Database, client: tuple[httpx.AsyncClient, str]
) -> None:
    http, owner = client
    job_id = await _submit(http, _docs(2, "mine"))
    async with tenant_client(pg_url, tmp_root, embedder, load_demo=False) as (other, other_tenant):
        body = await graphql(other, JOB, {"id": job_id})
        assert body["data"] is None
        assert [e["extensions"]["code"] for e in body["errors"]] == ["NOT_FOUND"]
        cancel = (await graphql_ok(other, CANCEL, {"id": job_id}))["cancelIngestionJob"]
        assert cancel == {"job": None, "errors": [{"code": "NOT_FOUND"}]}
        listed = await graphql_ok(other, "{ ingestionJobs(first: 50) { edges { node { id } } } }")
        assert job_id not in {e["node"]["id"] for e in listed["ingestionJobs"]["edges"]}
        assert (await graphql_ok(other, NODE, {"id": job_id}))["node"] is None
    mine = await graphql_ok(http, "{ ingestionJobs(first: 50) { edges { node { id } } } }")
    assert job_id in {e["node"]["id"] for e in mine["ingestionJobs"]["edges"]}
    # The job is a Node: its own tenant reads it back through node(id:), like documents and answers.
    node = (await graphql_ok(http, NODE, {"id": job_id}))["node"]
    assert node == {"__typename": "IngestionJob", "id": job_id, "documentsTotal": 2}
    # Beneath the code: the other tenant's transactions see none of the job's rows, nor its queue entry.
    ident = from_global_id(job_id, expected="IngestionJob")[1]
    async with db.session(other_tenant) as session:
        for sql in (
            "SELECT count(*) FROM ingestion_jobs WHERE id = :i",
            "SELECT count(*) FROM ingestion_job_items WHERE job_id = :i",
            "SELECT count(*) FROM pgqueuer WHERE payload = :b",
        ):
            assert (await session.execute(text(sql), {"i": ident, "b": ident.bytes})).scalar() == 0
    async with db.session(owner) as session:
        assert (
            await session.execute(text("SELECT count(*) FROM ingestion_job_items WHERE job_id = :i"), {"i": ident})
        ).scalar() == 2


async def test_cancel_mid_way_keeps_what_is_stored_and_stores_nothing_more(
    pair: list[WorkerProcess], client: tuple[httpx.AsyncClient, str], db: Database
) -> None:
    http, tenant = client
    job_id = await _submit(http, _docs(200, "cancel"))
    await _wait(db, tenant, job_id, lambda r: r["done"] >= 12)
    cancelled = (await graphql_ok(http, CANCEL, {"id": job_id}))["cancelIngestionJob"]
    assert cancelled["errors"] == [] and cancelled["job"]["state"] == "CANCELLED"
    done = cancelled["job"]["documentsDone"]
    assert 12 <= done < 200
    at_cancel = await _stored(db, tenant)
    assert at_cancel["documents"] == done  # every item counted done is stored, and only those
    # Long enough for several more batches, had the worker gone on.
    await asyncio.sleep(3)
    assert await _stored(db, tenant) == at_cancel
    row = await _job_row(db, tenant, job_id)
    assert row["state"] == "CANCELLED" and row["done"] == done
    again = (await graphql_ok(http, CANCEL, {"id": job_id}))["cancelIngestionJob"]
    assert again["errors"] == [{"code": "JOB_FINISHED"}]


PROGRESS = """
subscription($id: ID!) { ingestionProgress(jobId: $id) { state documentsDone chunksEmbedded } }
"""


async def test_progress_subscription_counts_up_and_ends_with_one_final_state(
    pair: list[WorkerProcess], pg_url: str, tmp_root: Path, embedder: LocalEmbedder, db: Database
) -> None:
    tenant = f"t-{uuid.uuid4().hex[:12]}"
    # The fallback poll is far longer than the job: only its NOTIFYs can show it part-way.
    settings = Settings(
        database_url=pg_url, data_dir=tmp_root, load_demo=False, dev_tenant=tenant, job_progress_fallback_s=120
    )
    app = create_app(settings, embedder=embedder)
    with serve_in_thread(app) as address:
        async with httpx.AsyncClient(base_url=f"http://{address}") as http:
            # 60 batches of 4 on the two workers.
            job_id = await _submit(http, _docs(240, "progress"))
        transport = WebsocketsTransport(url=f"ws://{address}/graphql")
        events: list[dict[str, Any]] = []
        async with Client(transport=transport, fetch_schema_from_transport=False) as session:
            request = GraphQLRequest(PROGRESS, variable_values={"id": job_id})
            async for result in session.subscribe(request):
                events.append(result["ingestionProgress"])
        notifications = app.state.services.job_progress.notifications
    states = [e["state"] for e in events]
    assert states[-1] == "SUCCEEDED"
    assert sum(s in ("SUCCEEDED", "FAILED", "CANCELLED") for s in states) == 1
    done = [e["documentsDone"] for e in events]
    chunks = [e["chunksEmbedded"] for e in events]
    assert done == sorted(done) and chunks == sorted(chunks) and done[-1] == 240
    assert len(events) >= 3  # it streamed progress, not only the start and the end
    assert notifications >= len(events) - 1  # each update after the first was woken by a NOTIFY


def _host() -> str:
    import socket

    return socket.gethostname()


async def test_a_sigkilled_workers_job_completes_on_another_worker_exactly_once(
    pair: list[WorkerProcess], client: tuple[httpx.AsyncClient, str], db: Database
) -> None:
    http, tenant = client
    job_id = await _submit(http, _docs(300, "kill"))
    row = await _wait(db, tenant, job_id, lambda r: r["done"] >= 100 and r["worker"])
    victim = next(w for w in pair if row["worker"] == f"{_host()}:{w.pid}")
    survivor = next(w for w in pair if w is not victim)
    victim.kill()
    killed_at_done = (await _job_row(db, tenant, job_id))["done"]
    assert killed_at_done < 300, "the job ended before the kill; make it larger"
    final = await _wait(db, tenant, job_id, lambda r: r["state"] in ("SUCCEEDED", "FAILED", "CANCELLED"))
    assert final["state"] == "SUCCEEDED" and final["done"] == 300
    assert final["worker"] == f"{_host()}:{survivor.pid}"
    stored = await _stored(db, tenant)
    assert stored["documents"] == 300 and stored["distinct_texts"] == 300  # each stored exactly once
    assert stored["without_chunks"] == 0
    job = (await graphql_ok(http, JOB, {"id": job_id}))["ingestionJob"]
    assert job["documentsCreated"] == 300 and job["documentsFailed"] == 0 and job["errors"] == []
    async with db.session(tenant) as session:
        pending = (
            await session.execute(
                text("SELECT count(*) FROM ingestion_job_items WHERE job_id = :i AND outcome IS NULL"),
                {"i": from_global_id(job_id)[1]},
            )
        ).scalar()
    assert pending == 0
