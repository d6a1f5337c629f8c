"""`python -m bench jobs` (`make bench-jobs`): how long a SIGKILLed worker's job waits before
another worker takes it over, with the production settings (heartbeat timeout 10 s, poll 5 s).

Two `ragql worker` processes against a throwaway embedded PostgreSQL; a job of small documents;
the worker holding it is killed with SIGKILL once it has stored some; the clock runs until the
other worker has started on the job (its name is in the job row) and until it stores its next
batch."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from sqlalchemy import text

from api import embedded
from api.settings import Settings
from domain.documents.validation import DocumentInput
from domain.jobs import store
from domain.jobs.items import document_items
from domain.jobs.model import JobKind
from domain.persistence.database import Database
from domain.persistence.migrate import migrate
from domain.tenancy import ensure_tenant

REPO = Path(__file__).resolve().parent.parent
TENANT = "bench-jobs"


def _word(i: int) -> str:
    return "zyx" + "".join(chr(97 + (i // 26**k) % 26) for k in range(4)) + "quarantine"


def _worker(url: str, log: Path) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAGQL_")}
    env |= {"RAGQL_DATABASE_URL": url, "RAGQL_METRICS_PORT": "0", "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1"}
    with log.open("wb") as out:
        return subprocess.Popen([sys.executable, "-m", "api.cli", "worker"], cwd=REPO, env=env, stdout=out, stderr=out)


def _wait_ready(log: Path, process: subprocess.Popen[bytes], timeout_s: float = 300) -> None:
    deadline = time.monotonic() + timeout_s
    while "worker ready" not in log.read_text(errors="replace"):
        if process.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"worker did not start:\n{log.read_text(errors='replace')[-2000:]}")
        time.sleep(0.2)


async def _row(db: Database, job_id: object) -> tuple[int, str | None]:
    async with db.session(TENANT) as session:
        done, worker = (
            await session.execute(text("SELECT items_done, worker FROM ingestion_jobs WHERE id = :i"), {"i": job_id})
        ).one()
    return int(done), worker


async def _measure(url: str, root: Path, documents: int) -> None:
    settings = Settings()
    print(
        f"settings: heartbeat timeout {settings.job_heartbeat_timeout_s:.0f} s, poll {settings.job_poll_s:.0f} s, "
        f"batch {settings.job_batch_size}; bound = {settings.job_heartbeat_timeout_s + settings.job_poll_s:.0f} s"
    )
    db = Database(url)
    await migrate(db, embedding_dim=384)
    await ensure_tenant(db, TENANT)
    logs = [root / "worker-1.log", root / "worker-2.log"]
    workers = [_worker(url, log) for log in logs]
    try:
        for process, log in zip(workers, logs, strict=True):
            _wait_ready(log, process)
        # A distinct long word per document keeps them apart for BM25, as real documents are.
        inputs = [DocumentInput(title=f"Note {i}", text=f"Observation {i}: {_word(i)}.") for i in range(documents)]
        job = await store.create(
            db,
            TENANT,
            JobKind.DOCUMENTS,
            document_items(inputs, "documents", max_chars=10_000),
            created_by="bench",
            field_prefix="documents",
        )
        names = {f"{socket.gethostname()}:{p.pid}": p for p in workers}
        while True:
            done, holder = await _row(db, job.id)
            if holder in names and done >= 3 * settings.job_batch_size:
                break
            await asyncio.sleep(0.05)
        victim = names[holder]
        victim.send_signal(signal.SIGKILL)
        victim.wait()
        killed_at, done_at_kill = time.monotonic(), done
        taken = stored = None
        while stored is None:
            done, worker = await _row(db, job.id)
            now = time.monotonic() - killed_at
            if taken is None and worker != holder:
                taken = now
            if taken is not None and done > done_at_kill:
                stored = now
            if now > 120:
                raise RuntimeError("the job was not taken over within 120 s")
            await asyncio.sleep(0.05)
        print(f"SIGKILL at {done_at_kill}/{documents} documents stored")
        print(f"job taken over by the other worker after {taken:.1f} s")
        print(f"its next batch stored after {stored:.1f} s")
    finally:
        for process in workers:
            if process.poll() is None:
                process.send_signal(signal.SIGKILL)
                process.wait()
        await db.dispose()


def run_jobs_bench(documents: int = 600) -> None:
    with embedded.temporary("ragql-bench-jobs-") as (root, url):
        asyncio.run(_measure(url, root, documents))
