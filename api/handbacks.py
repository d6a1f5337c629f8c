"""A stopping worker's hand-backs, kept apart from a job's attempts (migration 0014).

pgqueuer re-queues a handed-back job (RetryRequested) the way it re-queues a failed one: with its
`attempts` one higher. Its retry executor gives a job up once `attempts` reaches the limit, so
graceful stops (rolling deploys, scale-downs) used up the retries meant for real failures. The
worker records each hand-back in `job_handbacks`, and `HandbackAwareRetries` runs the job with
`attempts` less its hand-backs: only failures count toward the limit."""

from __future__ import annotations

import dataclasses
import logging
from datetime import timedelta

import asyncpg
from pgqueuer.errors import RetryRequested
from pgqueuer.executors import DatabaseRetryEntrypointExecutor
from pgqueuer.models import Context
from pgqueuer.models import Job as QueueJob

log = logging.getLogger("ragql.worker")


class HandBack(RetryRequested):
    """The worker is stopping: the job goes back to the queue at once, and it is not a failure."""

    def __init__(self) -> None:
        super().__init__(delay=timedelta(0), reason="worker stopped")


class HandbackLedger:
    """Hand-backs per pgqueuer job id, on the worker's own (owner) pool. Best effort: a ledger that
    cannot be read or written counts a hand-back as an attempt, as pgqueuer alone would."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def count(self, queue_job_id: int) -> int:
        try:
            found = await self._pool.fetchval(
                "SELECT handbacks FROM job_handbacks WHERE queue_job_id = $1", queue_job_id
            )
        except (OSError, asyncpg.PostgresError):
            log.warning("could not read job %s's hand-backs; counting them as attempts", queue_job_id, exc_info=True)
            return 0
        return int(found or 0)

    async def add(self, queue_job_id: int) -> None:
        try:
            await self._pool.execute(
                "INSERT INTO job_handbacks (queue_job_id, handbacks) VALUES ($1, 1) ON CONFLICT (queue_job_id) "
                "DO UPDATE SET handbacks = job_handbacks.handbacks + 1, updated = now()",
                queue_job_id,
            )
        except (OSError, asyncpg.PostgresError):
            log.warning("could not record job %s's hand-back; it counts as an attempt", queue_job_id, exc_info=True)

    async def prune(self) -> None:
        """Drop the counts of queue entries that are gone without running to an end here (a tenant
        dropped with its queue rows, an entry deleted by hand): each worker does it as it starts."""
        try:
            await self._pool.execute(
                "DELETE FROM job_handbacks h WHERE NOT EXISTS (SELECT 1 FROM pgqueuer q WHERE q.id = h.queue_job_id)"
            )
        except (OSError, asyncpg.PostgresError):
            log.warning("could not prune the hand-back counts", exc_info=True)

    async def forget(self, queue_job_id: int) -> None:
        try:
            await self._pool.execute("DELETE FROM job_handbacks WHERE queue_job_id = $1", queue_job_id)
        except (OSError, asyncpg.PostgresError):
            log.warning("could not drop job %s's hand-back count", queue_job_id, exc_info=True)


@dataclasses.dataclass
class HandbackAwareRetries(DatabaseRetryEntrypointExecutor):
    """pgqueuer's database retries (backoff, a limit on attempts), where a hand-back is no attempt."""

    ledger: HandbackLedger | None = None

    async def execute(self, job: QueueJob, context: Context) -> None:
        ledger = self.ledger
        given_back = await ledger.count(job.id) if ledger is not None and job.attempts else 0
        # The handler sees the same count (api/worker.py marks the job FAILED on its last attempt).
        counted = job.model_copy(update={"attempts": max(0, job.attempts - given_back)}) if given_back else job
        # Cancelled (not an Exception), the count stays: a job cancelled for good leaves the queue
        # and the next worker to start prunes its count; one a dying loop cancelled resumes with it.
        try:
            await super().execute(counted, context)
        except HandBack:
            if ledger is not None:
                await ledger.add(job.id)
            raise
        except RetryRequested:
            raise  # a failure to retry: its hand-backs still count for the next attempt
        except Exception:
            if given_back and ledger is not None:
                await ledger.forget(job.id)  # the last attempt failed: the job ends here
            raise
        if given_back and ledger is not None:
            await ledger.forget(job.id)
