"""`ragql worker`, and the same worker inside `ragql serve` (embedded mode) and `ragql ingest`.

The queue is pgqueuer's (PostgreSQL, asyncpg-native; see the README for why). A worker:
- dequeues with FOR UPDATE SKIP LOCKED, so any number of replicas share one queue;
- runs up to `concurrency` jobs at once;
- keeps a heartbeat on each job it holds; a job whose heartbeat is older than
  `heartbeat_timeout_s` (its worker was killed) is picked up by the next dequeue of any worker,
  which happens within `poll_s` (at once when a NOTIFY arrives). Heartbeats go out every half
  timeout, so a SIGKILLed worker's job resumes between heartbeat_timeout_s / 2 and
  heartbeat_timeout_s + poll_s after the kill (5 to 15 s with the defaults; `make bench-jobs`);
- on SIGTERM/SIGINT stops taking jobs and stops embedding: the documents already fully embedded
  are written (each whole), the others dropped from the encoder's queue; each job goes back to
  the queue (pgqueuer RetryRequested: queued again at once) and the worker exits;
- retries a job that raised (a lost database, say) with backoff (pgqueuer's
  DatabaseRetryEntrypointExecutor); after the last attempt the job ends FAILED with the reason.
  Hand-backs are not attempts: they are counted apart (api/handbacks.py), so a job that outlives
  any number of graceful stops keeps all its retries for real failures;
- runs recommendation trainings (`domain/jobs/training_job.py`), and every `train_interval_s`
  queues one for each tenant with feedback since its last training. A training is one step, not
  batches: SIGTERM lets it finish; SIGKILL leaves it to the next worker, as any job.

The worker connects as the configured database user (the tables' owner), which row-level
security does not bind, so it can dequeue every tenant's jobs; each job then runs in its own
tenant's transactions (Database.session), as a request would."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import timedelta

import asyncpg
from pgqueuer.executors import EntrypointExecutorParameters
from pgqueuer.models import Job as QueueJob
from pgqueuer.qm import QueueManager
from pgqueuer.queries import Queries
from pgqueuer.types import QueueExecutionMode
from prometheus_client import Gauge, Histogram

from api.handbacks import HandBack, HandbackAwareRetries, HandbackLedger
from domain.documents.service import ChunkingConfig
from domain.feedback.profiles import LearningConfig
from domain.jobs import sentences_job, training_job
from domain.jobs.documents_job import DocumentBatches
from domain.jobs.error_codes import JobErrorCode
from domain.jobs.feedback_job import FeedbackBatches
from domain.jobs.model import (
    DOCUMENTS_ENTRYPOINT,
    FEEDBACK_ENTRYPOINT,
    SENTENCES_ENTRYPOINT,
    TRAIN_RECS_ENTRYPOINT,
    Job,
)
from domain.jobs.runner import BatchProcessor, Interrupted, fail, run_job
from domain.jobs.store import TENANT_HEADER
from domain.persistence.database import SERVER_SETTINGS, Database
from domain.providers.embedding import Embedder

log = logging.getLogger("ragql.worker")
# The worker's half of deploy/metrics.md (served on RAGQL_METRICS_PORT by `ragql worker`, and on the
# API's /metrics by an in-process worker).
JOB_DURATION = Histogram(
    "ragql_job_duration_seconds",
    "Time from a job's start to its end (done or failed), by job kind.",
    ["kind"],
    buckets=(1, 5, 15, 60, 300, 900, 3600, 4 * 3600),
)
QUEUE_DEPTH = Gauge("ragql_job_queue_depth", "Jobs waiting to be picked up, per queue.", ["queue"])
QUEUES = {
    DOCUMENTS_ENTRYPOINT: "documents",
    FEEDBACK_ENTRYPOINT: "feedback",
    TRAIN_RECS_ENTRYPOINT: "train_recs",
    SENTENCES_ENTRYPOINT: "sentences",
}
WORKER_NAME = f"{socket.gethostname()}:{os.getpid()}"


@dataclass(frozen=True)
class WorkerConfig:
    concurrency: int = 2
    heartbeat_timeout_s: float = 10.0
    poll_s: float = 5.0
    batch_size: int = 16
    max_attempts: int = 5
    train_interval_s: float = 0.0  # 0: no scheduled trainings
    train_max_signals: int = 2_000_000


@dataclass
class WorkerDeps:
    db: Database
    embedder: Embedder
    chunking: ChunkingConfig
    max_chars: int
    learning: LearningConfig
    # Called after each written batch with the job: the API process drops the tenant's cached searches.
    on_progress: Callable[[Job], Awaitable[None] | None] | None = None


def plain_dsn(url: str) -> str:
    return url.replace("postgresql+asyncpg://", "postgresql://", 1)


@dataclass
class Worker:
    deps: WorkerDeps
    config: WorkerConfig = field(default_factory=WorkerConfig)
    stopping: bool = False
    _qm: QueueManager | None = None
    _slots: asyncio.Semaphore | None = None
    _ledger: HandbackLedger | None = None
    jobs_run: int = 0
    _stop: asyncio.Event = field(default_factory=asyncio.Event)

    def stop(self) -> None:
        """Graceful: write the documents already embedded, hand the job back, exit."""
        if not self.stopping:
            log.info("worker stopping: writing the documents already embedded, then handing each job back")
        self.stopping = True
        self._stop.set()
        if self._qm is not None:
            self._qm.shutdown.set()

    def _processor(self, entrypoint: str) -> BatchProcessor:
        if entrypoint == FEEDBACK_ENTRYPOINT:
            return FeedbackBatches(self.deps.learning)
        return DocumentBatches(self.deps.db, self.deps.embedder, self.deps.chunking, self.deps.max_chars)

    async def handle(self, queued: QueueJob) -> None:
        assert queued.payload is not None and queued.headers is not None
        job_id = uuid.UUID(bytes=bytes(queued.payload))
        tenant_id = str(queued.headers[TENANT_HEADER])
        if str(queued.entrypoint) == TRAIN_RECS_ENTRYPOINT:
            await self._train(tenant_id, job_id)
            return
        if str(queued.entrypoint) == SENTENCES_ENTRYPOINT:
            await self._sentences(tenant_id, job_id)
            return
        assert self._slots is not None
        async with self._slots:
            started = time.monotonic()
            try:
                job = await run_job(
                    self.deps.db,
                    tenant_id,
                    job_id,
                    self._processor(str(queued.entrypoint)),
                    batch_size=self.config.batch_size,
                    stop=self._stop,
                    on_progress=self.deps.on_progress,
                    worker=WORKER_NAME,
                )
            except Interrupted as exc:
                # Back in the queue at once, for another worker or this one after a restart.
                raise HandBack() from exc
            except Exception as exc:
                if queued.attempts + 1 >= self.config.max_attempts:
                    await fail(
                        self.deps.db,
                        tenant_id,
                        job_id,
                        JobErrorCode.JOB_ABORTED,
                        f"the job could not run after {self.config.max_attempts} attempts: {type(exc).__name__}",
                    )
                raise
        if job.finished:
            JOB_DURATION.labels(QUEUES.get(str(queued.entrypoint), "other")).observe(time.monotonic() - started)
        self.jobs_run += 1
        log.info(
            "job %s (tenant %s) ended %s: %d/%d items", job_id, tenant_id, job.state, job.items_done, job.items_total
        )

    async def _train(self, tenant_id: str, job_id: uuid.UUID) -> None:
        assert self._slots is not None
        async with self._slots:
            started = time.monotonic()
            log.info("training recommendations for tenant %s (job %s)", tenant_id, job_id)
            report = await training_job.run(
                self.deps.db, tenant_id, job_id, worker=WORKER_NAME, max_signals=self.config.train_max_signals
            )
            JOB_DURATION.labels(QUEUES[TRAIN_RECS_ENTRYPOINT]).observe(time.monotonic() - started)
        self.jobs_run += 1
        log.info(
            "training of tenant %s (job %s) ended: version %s from %d events%s in %.1f s",
            tenant_id,
            job_id,
            report.version,
            report.events,
            " (already stored by an earlier run)" if report.reused else "",
            report.took_ms / 1000,
        )

    async def _sentences(self, tenant_id: str, job_id: uuid.UUID) -> None:
        """The sentence vectors of ingestion job `job_id`'s documents; on SIGTERM it stops after the
        batch in hand and goes back to the queue (the rows stored stay, a rerun skips them)."""
        assert self._slots is not None
        async with self._slots:
            started = time.monotonic()
            chunks = await sentences_job.run(self.deps.db, self.deps.embedder, tenant_id, job_id, self._stop)
            if self._stop.is_set():
                raise HandBack()
            JOB_DURATION.labels(QUEUES[SENTENCES_ENTRYPOINT]).observe(time.monotonic() - started)
        self.jobs_run += 1
        log.info(
            "sentence vectors of job %s (tenant %s): %d chunks in %.1f s",
            job_id,
            tenant_id,
            chunks,
            time.monotonic() - started,
        )

    async def _schedule_training(self) -> None:
        """Every `train_interval_s`: queue a training for each tenant with feedback since its last
        one. Every replica runs this; the queue's dedupe key keeps one training per tenant."""
        while not self.stopping:
            await asyncio.sleep(self.config.train_interval_s)
            if self.stopping:
                return
            try:
                queued = await training_job.schedule_due(self.deps.db)
            except Exception:
                log.warning("could not schedule recommendation trainings; trying again next interval", exc_info=True)
                continue
            if queued:
                log.info("queued recommendation training for %d tenant(s): %s", len(queued), ", ".join(queued))

    def _executor(self, params: EntrypointExecutorParameters) -> HandbackAwareRetries:
        # attempts counts retries already made (hand-backs taken off); the executor gives up when
        # it reaches max_attempts - 1.
        return HandbackAwareRetries(
            parameters=params,
            max_attempts=max(0, self.config.max_attempts - 1),
            initial_delay=timedelta(seconds=1),
            max_delay=timedelta(seconds=30),
            ledger=self._ledger,
        )

    async def run(self, *, drain: bool = False) -> None:
        """Work until stop() (or, with drain, until the queue is empty)."""
        self._slots = asyncio.Semaphore(max(1, self.config.concurrency))
        pool = await asyncpg.create_pool(
            plain_dsn(self.deps.db.url), min_size=2, max_size=4, server_settings=SERVER_SETTINGS
        )
        depth: asyncio.Task[None] | None = None
        schedule: asyncio.Task[None] | None = None
        try:
            qm = QueueManager(Queries.from_asyncpg_pool(pool))
            self._qm = qm
            self._ledger = HandbackLedger(pool)
            await self._ledger.prune()
            for entrypoint in (DOCUMENTS_ENTRYPOINT, FEEDBACK_ENTRYPOINT, TRAIN_RECS_ENTRYPOINT, SENTENCES_ENTRYPOINT):
                qm.entrypoint(entrypoint, executor_factory=self._executor)(self.handle)
            if self.stopping:
                return
            depth = asyncio.create_task(self._watch_queue_depth(pool), name="ragql-queue-depth")
            if self.config.train_interval_s > 0:
                schedule = asyncio.create_task(self._schedule_training(), name="ragql-train-schedule")
            log.info(
                "worker ready: %d concurrent jobs, heartbeat timeout %g s, poll %g s",
                self.config.concurrency,
                self.config.heartbeat_timeout_s,
                self.config.poll_s,
            )
            await qm.run(
                dequeue_timeout=timedelta(seconds=self.config.poll_s),
                batch_size=1,
                # pgqueuer needs room for two batches; the semaphore above holds it to `concurrency`.
                max_concurrent_tasks=max(2, self.config.concurrency),
                mode=QueueExecutionMode.drain if drain else QueueExecutionMode.continuous,
                heartbeat_timeout=timedelta(seconds=self.config.heartbeat_timeout_s),
                log_aggregation_interval=timedelta(0),
            )
        finally:
            self._qm = None
            for task in (depth, schedule):
                if task is not None:
                    task.cancel()
            await pool.close()

    async def _watch_queue_depth(self, pool: asyncpg.Pool) -> None:
        while not self.stopping:
            try:
                rows = await pool.fetch(
                    "SELECT entrypoint, count(*) AS n FROM pgqueuer WHERE status = 'queued' GROUP BY entrypoint"
                )
            except (OSError, asyncpg.PostgresError):
                log.warning("could not read the queue depth; retrying", exc_info=True)
                rows = None
            if rows is not None:
                counts = {str(r["entrypoint"]): int(r["n"]) for r in rows}
                for entrypoint, queue in QUEUES.items():
                    QUEUE_DEPTH.labels(queue).set(counts.get(entrypoint, 0))
            await asyncio.sleep(self.config.poll_s)


def install_signal_handlers(worker: Worker) -> None:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, worker.stop)


@dataclass
class BackgroundWorker:
    """A worker as a task of a running event loop (the API process, the CLI)."""

    worker: Worker
    task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self.task = asyncio.create_task(self.worker.run(), name="ragql-worker")

    async def stop(self, timeout_s: float = 60.0) -> None:
        self.worker.stop()
        if self.task is None:
            return
        try:
            await asyncio.wait_for(asyncio.shield(self.task), timeout=timeout_s)
        except TimeoutError:
            self.task.cancel()
        except Exception:
            log.exception("the in-process worker ended with an error")
