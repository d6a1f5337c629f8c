"""Following a job as it runs: PostgreSQL LISTEN/NOTIFY, with a slow poll as the backstop.

Every change of a job's state or counts NOTIFYs `ragql_job_progress` with the job id (a trigger,
migration 0010, so it holds for every writer: any worker, replica, cancel or failure). The
notification is sent at commit, so a reader woken by it sees the change. One LISTEN connection per
process serves every follower; the payload is only the id, and each follower then reads the job
in its own tenant's transaction, so row-level security still decides what it sees.

A notification can be lost (the listening connection drops, or it is not up yet): each wait
therefore also ends after `fallback_s`, and the follower reads the row anyway."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import asyncpg

from domain.persistence.database import SERVER_SETTINGS

log = logging.getLogger("ragql.jobs")
CHANNEL = "ragql_job_progress"


@dataclass
class Watch:
    """One follower's wake-up: set by a notification for its job, or by nothing for fallback_s."""

    event: asyncio.Event
    fallback_s: float

    async def next(self) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.event.wait(), timeout=self.fallback_s)
        # Cleared before the caller reads the row: a change committed during that read sets it again.
        self.event.clear()


class JobProgress:
    def __init__(self, url: str, *, fallback_s: float = 2.0) -> None:
        self._dsn = url.replace("postgresql+asyncpg://", "postgresql://", 1)
        self.fallback_s = fallback_s
        self._waiters: dict[uuid.UUID, set[asyncio.Event]] = {}
        self._conn: Any = None
        self._lock = asyncio.Lock()
        self._retry_at = 0.0
        self.notifications = 0

    @contextlib.asynccontextmanager
    async def watch(self, job_id: uuid.UUID) -> AsyncIterator[Watch]:
        """Register before the first read of the job, so no change between that read and the
        first wait is missed."""
        event = asyncio.Event()
        self._waiters.setdefault(job_id, set()).add(event)
        try:
            await self._listen()
            yield Watch(event, self.fallback_s)
        finally:
            waiters = self._waiters.get(job_id)
            if waiters is not None:
                waiters.discard(event)
                if not waiters:
                    del self._waiters[job_id]

    async def _listen(self) -> None:
        if self._conn is not None and not self._conn.is_closed():
            return
        async with self._lock:
            if (self._conn is not None and not self._conn.is_closed()) or time.monotonic() < self._retry_at:
                return
            try:
                conn = await asyncpg.connect(self._dsn, server_settings=SERVER_SETTINGS, timeout=5)
                await conn.add_listener(CHANNEL, self._on_notify)
            except (OSError, TimeoutError, asyncpg.PostgresError) as exc:
                # Followers still see progress, at the fallback pace; the next watch tries again.
                self._retry_at = time.monotonic() + self.fallback_s
                log.warning("cannot LISTEN for job progress (%s); polling every %g s", exc, self.fallback_s)
                return
            conn.add_termination_listener(self._on_lost)
            self._conn = conn

    def _on_notify(self, _conn: Any, _pid: int, _channel: str, payload: str) -> None:
        try:
            job_id = uuid.UUID(payload)
        except ValueError:
            return
        waiters = self._waiters.get(job_id, ())
        if waiters:
            self.notifications += 1  # that woke someone: the tests read it
        for event in waiters:
            event.set()

    def _on_lost(self, _conn: Any) -> None:
        log.warning("the job progress LISTEN connection closed; following by polling until it is back")
        self._conn = None
        # Wake every follower: it reads its job now, and its next watch reconnects.
        for waiters in self._waiters.values():
            for event in waiters:
                event.set()

    async def aclose(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None and not conn.is_closed():
            with contextlib.suppress(OSError, asyncpg.PostgresError):
                await conn.close(timeout=5)
