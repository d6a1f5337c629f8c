"""Every ingestion job leaves its documents' sentence vectors stored: the job that finishes queues a
follow-up job in the same transaction (domain/jobs/sentences_job.py), and a real `ragql worker`
process runs it."""

from __future__ import annotations

import asyncio
import time
import uuid
from pathlib import Path

import pytest
from sqlalchemy import text

from domain.answers.sentence_vectors import split_passage
from domain.documents.service import ChunkingConfig
from domain.jobs.documents_job import DocumentBatches
from domain.jobs.model import SENTENCES_ENTRYPOINT
from domain.jobs.runner import run_job
from domain.jobs.sentences_job import PRIORITY
from domain.persistence.database import Database
from domain.providers.embedding import LocalEmbedder
from schema.common import from_global_id
from tests.conftest import graphql_ok, tenant_client
from tests.jobs_harness import word, workers

pytestmark = pytest.mark.slow

INGEST = """
mutation($docs: [DocumentInput!]!) {
  ingestDocuments(input: {documents: $docs, mode: ASYNC}) { job { id state } errors { field code } }
}
"""


def _docs(n: int, tag: str) -> list[dict[str, str]]:
    return [
        {
            "title": f"{tag} report {i}",
            "text": f"The first finding of report {i} concerns {word(i)}. A second sentence adds detail here. "
            f"The third one closes report {i} of {tag}.",
            "externalId": f"{tag}-{i}",
        }
        for i in range(n)
    ]


async def _job_state(db: Database, tenant: str, job_id: uuid.UUID) -> str:
    async with db.session(tenant) as session:
        state = await session.execute(text("SELECT state FROM ingestion_jobs WHERE id = :i"), {"i": job_id})
        return str(state.scalar_one())


async def _sentence_coverage(db: Database, tenant: str, model: str) -> tuple[int, int, list[tuple[str, list[str]]]]:
    """(chunks, chunks with sentence rows of `model`, each covered chunk's text and stored sentences)."""
    async with db.session(tenant) as session:
        rows = (
            await session.execute(
                text(
                    "SELECT c.text, s.sentences FROM chunks c LEFT JOIN chunk_sentences s "
                    "ON s.tenant_id = c.tenant_id AND s.chunk_id = c.id AND s.model = :m"
                ),
                {"m": model},
            )
        ).all()
    covered = [(str(t), list(s)) for t, s in rows if s is not None]
    return len(rows), len(covered), covered


async def _follow_ups(db: Database, job_id: uuid.UUID) -> list[tuple[str, int, str]]:
    async with db.engine.connect() as conn:  # the owner sees the queue as workers do
        rows = await conn.execute(
            text(
                "SELECT status::text, priority, headers ->> 'ragql_tenant' FROM pgqueuer "
                "WHERE entrypoint = :e AND payload = :p"
            ),
            {"e": SENTENCES_ENTRYPOINT, "p": job_id.bytes},
        )
        return [(str(s), int(p), str(t)) for s, p, t in rows.all()]


async def test_a_finished_ingestion_job_leaves_every_chunk_with_its_sentence_vectors(
    pg_url: str, tmp_root: Path, embedder: LocalEmbedder, db: Database
) -> None:
    # given: a tenant's async ingestion, and no worker yet
    async with tenant_client(pg_url, tmp_root, embedder, load_demo=False) as (http, tenant):
        data = await graphql_ok(http, INGEST, {"docs": _docs(24, "sv")})
    job_id = from_global_id(data["ingestDocuments"]["job"]["id"], expected="IngestionJob")[1]
    assert await _follow_ups(db, job_id) == []  # queued only when the ingestion job finishes
    # when: a real worker process runs the job
    with workers(pg_url, tmp_root, "sentences") as (worker,):
        deadline = time.monotonic() + 240
        while True:
            chunks, covered, stored = await _sentence_coverage(db, tenant, "all-MiniLM-L6-v2")
            state = await _job_state(db, tenant, job_id)
            if state == "SUCCEEDED" and chunks and covered == chunks and not await _follow_ups(db, job_id):
                break
            assert time.monotonic() < deadline, f"{state}: {covered} of {chunks} chunks have sentence vectors"
            await asyncio.sleep(0.1)
        log = worker.output()
    # then: every chunk has the generator's own split stored, and the follow-up ran as its own job
    assert chunks == 24
    assert all(sentences == split_passage(chunk_text) for chunk_text, sentences in stored)
    assert all(len(sentences) == 3 for _, sentences in stored)
    assert f"sentence vectors of job {job_id} (tenant {tenant}): 24 chunks" in log


async def test_the_follow_up_is_queued_with_the_jobs_end_at_low_priority(
    pg_url: str, tmp_root: Path, embedder: LocalEmbedder, db: Database
) -> None:
    # given: a worker that takes the ingestion job but runs no follow-ups (they stay in the queue)
    async with tenant_client(pg_url, tmp_root, embedder, load_demo=False) as (http, tenant):
        data = await graphql_ok(http, INGEST, {"docs": _docs(6, "lp")})
    job_id = from_global_id(data["ingestDocuments"]["job"]["id"], expected="IngestionJob")[1]
    # when: the job runs to its end
    job = await run_job(db, tenant, job_id, DocumentBatches(db, embedder, ChunkingConfig(), 100_000), batch_size=4)
    # then: the job's end and its follow-up are one commit: whoever sees it SUCCEEDED sees the entry
    assert job.state.value == "SUCCEEDED" and job.chunks_embedded == 6
    assert await _follow_ups(db, job_id) == [("queued", PRIORITY, tenant)]
    assert PRIORITY < 0  # ingestion jobs (priority 0) are dequeued first


async def test_a_job_that_embedded_nothing_queues_no_follow_up(
    pg_url: str, tmp_root: Path, embedder: LocalEmbedder, db: Database
) -> None:
    async with tenant_client(pg_url, tmp_root, embedder, load_demo=False) as (http, tenant):
        first = await graphql_ok(http, INGEST, {"docs": _docs(3, "nf")})
        again = await graphql_ok(http, INGEST, {"docs": _docs(3, "nf")})
    batches = DocumentBatches(db, embedder, ChunkingConfig(), 100_000)
    ids = [from_global_id(d["ingestDocuments"]["job"]["id"], expected="IngestionJob")[1] for d in (first, again)]
    await run_job(db, tenant, ids[0], batches)
    unchanged = await run_job(db, tenant, ids[1], batches)
    assert unchanged.unchanged == 3 and unchanged.chunks_embedded == 0
    assert len(await _follow_ups(db, ids[0])) == 1
    assert await _follow_ups(db, ids[1]) == []
