"""Training that follows feedback: each process counts the document feedback events it stores per
tenant, and once enough have arrived since the tenant's last check, asks the database (one
statement, in a background task, never on the request's path) whether the tenant's feedback has
grown enough since its last model to queue a training (`training_job.train_if_grown`).

Why a counter and not a check per event: `submitFeedback` costs no statement more. The counter
only decides *when to look*; the decision is the database's, so several API replicas (each
counting its own share) and the worker's import jobs all agree, and the queue's dedupe key keeps
one training per tenant however many of them ask. After a look that finds the tenant not due,
the next look waits for half the events still missing (at least one), so a tenant whose model
needs 100,000 more events is looked at a handful of times on the way, not every few hundred; and
one tenant is looked at no more often than every `MIN_CHECK_S` by one process.

The debounce is the queued job itself: a training asked for within `spacing_s` of the tenant's
last one is queued to start once the spacing has passed (pgqueuer's execute_after), and while it
waits, the dedupe key turns every further ask into a no-op. It reads the feedback when it runs,
so it learns from everything that arrived while it waited.

The trailing edge: once the trigger has queued a training, it also watches for the tenant's
feedback to go quiet (no event for `spacing_s`, at least `MIN_QUIET_S`); then the events still
untrained are trained if there are at least `min_events`, whatever their share. So the last model
of a replay learns from all of it, not from all but its last tenth. It fires once per training
the growth rule queued, so a large tenant with slow traffic still retrains on its growth share
(at most twice as often), not every `min_events`."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import replace

from domain.jobs import training_job
from domain.jobs.model import Job, JobKind
from domain.jobs.training_job import AutoTrainPolicy, Growth
from domain.persistence.database import Database

log = logging.getLogger("ragql.recs.autotrain")
# One process looks at one tenant's growth at most this often.
MIN_CHECK_S = 1.0
# The trailing edge's quiet period is the spacing, and never shorter than this.
MIN_QUIET_S = 5.0
# Import jobs followed at once (their progress counts); an older entry is dropped past this.
MAX_FOLLOWED_JOBS = 1024


class TrainingTrigger:
    """Per process; `note` is synchronous and O(1), for the feedback path."""

    def __init__(self, db: Database, policy: AutoTrainPolicy, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.db = db
        self.policy = policy
        self._clock = clock
        self._counted: dict[str, int] = {}  # events noted since the tenant's last look
        self._look_at: dict[str, int] = {}  # the count that makes the next look
        self._looked: dict[str, float] = {}  # when the last look started
        self._looking: dict[str, asyncio.Task[None]] = {}
        self._last_event: dict[str, float] = {}
        self._trailing: dict[str, asyncio.Task[None]] = {}
        self._jobs_done: dict[object, int] = {}  # an import job's items already noted
        self.checks = 0  # growth looks made (for tests and the log)
        self.trailing_checks = 0  # looks once a tenant went quiet
        self.last: dict[str, Growth] = {}  # what the last look of each tenant found

    def note(self, tenant_id: str, events: int = 1) -> None:
        """`events` document feedback events of the tenant were stored."""
        if not self.policy.enabled or events <= 0:
            return
        counted = self._counted.get(tenant_id, 0) + events
        self._counted[tenant_id] = counted
        self._last_event[tenant_id] = self._clock()
        if counted < self._look_at.get(tenant_id, self.policy.min_events) or tenant_id in self._looking:
            return
        try:
            task = asyncio.get_running_loop().create_task(self._look(tenant_id), name=f"ragql-autotrain-{tenant_id}")
        except RuntimeError:  # no event loop (a synchronous caller): the schedule still trains
            return
        self._looking[tenant_id] = task

    def note_job(self, job: Job) -> None:
        """An import job's progress (the worker's on_progress): its new items count as events."""
        if job.kind is not JobKind.FEEDBACK:
            return
        done = job.created
        before = self._jobs_done.pop(job.id, 0)
        if done < job.items_total - job.failed - job.unchanged:
            if len(self._jobs_done) >= MAX_FOLLOWED_JOBS:
                self._jobs_done.pop(next(iter(self._jobs_done)))
            self._jobs_done[job.id] = done
        self.note(job.tenant_id, done - before)

    async def _look(self, tenant_id: str) -> None:
        try:
            wait = self._looked.get(tenant_id, -MIN_CHECK_S) + MIN_CHECK_S - self._clock()
            if wait > 0:
                await asyncio.sleep(wait)
            self._looked[tenant_id] = self._clock()
            self._counted[tenant_id] = 0
            self.checks += 1
            seen = await training_job.train_if_grown(self.db, tenant_id, self.policy)
            self.last[tenant_id] = seen
            if seen.queued is not None:
                log.info(
                    "tenant %s: %d new feedback events since its last model; training %s queued%s",
                    tenant_id,
                    seen.new_events,
                    seen.queued,
                    f" to start in {seen.delay_s:.0f} s" if seen.delay_s > 0 else "",
                )
            if seen.due:
                # Queued now or already in flight: the next model's own growth is what to watch,
                # and the quiet after this burst.
                self._look_at[tenant_id] = self.policy.min_events
                self._arm_trailing(tenant_id)
            else:
                self._look_at[tenant_id] = max(1, (seen.needed - seen.new_events) // 2)
        except Exception:
            self._look_at[tenant_id] = self.policy.min_events
            log.warning("could not check tenant %s for a recommendation training", tenant_id, exc_info=True)
        finally:
            self._looking.pop(tenant_id, None)

    def _arm_trailing(self, tenant_id: str) -> None:
        if tenant_id not in self._trailing:
            name = f"ragql-autotrain-quiet-{tenant_id}"
            self._trailing[tenant_id] = asyncio.get_running_loop().create_task(self._trail(tenant_id), name=name)

    async def _trail(self, tenant_id: str) -> None:
        """Once the tenant has been quiet for the spacing: train what is left (at least
        `min_events`); while a training is still in flight, wait for it and look again."""
        quiet_s = max(self.policy.spacing_s, MIN_QUIET_S)
        trailing = replace(self.policy, min_growth=0.0)
        try:
            while True:
                wait = self._last_event.get(tenant_id, 0.0) + quiet_s - self._clock()
                if wait > 0:
                    await asyncio.sleep(wait)
                    continue
                self.trailing_checks += 1
                seen = await training_job.train_if_grown(self.db, tenant_id, trailing)
                self.last[tenant_id] = seen
                if seen.queued is not None:
                    log.info(
                        "tenant %s: quiet for %.0f s with %d feedback events untrained; training %s queued",
                        tenant_id,
                        quiet_s,
                        seen.new_events,
                        seen.queued,
                    )
                if seen.training is None:
                    return
                await asyncio.sleep(quiet_s)  # the one in flight may not have read the last events
        except Exception:
            log.warning("could not check tenant %s for a trailing training", tenant_id, exc_info=True)
        finally:
            self._trailing.pop(tenant_id, None)

    async def idle(self) -> None:
        """Wait for the looks in progress (tests, shutdown)."""
        while self._looking:
            await asyncio.gather(*list(self._looking.values()), return_exceptions=True)

    async def aclose(self) -> None:
        tasks = [*self._looking.values(), *self._trailing.values()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._looking.clear()
        self._trailing.clear()
