"""The query log, written behind the response in batches.

Every search gets a query-log row (its `queryId`, which feedback and analytics read). The row used
to ride in the search's own transaction: one INSERT more per request, and a commit that waited for
PostgreSQL's WAL flush, on the critical path of every search. Here rows queue and one task writes
them: whatever queued while the previous write was in flight goes into the next, one multi-row
INSERT per tenant inside that tenant's own transaction (so row-level security applies as before).
At low load a row is stored one round trip after its response; under load the batches grow, and
sixteen searches cost one commit.

Never lost silently. A failed write is retried with a backoff; a batch that still fails is written
row by row, so one bad row costs only itself. A row given up on, or refused because the queue is
full (the database has been down for a while), is counted (`ragql_rows_dropped_total{table="query_log"}`)
and logged at ERROR with the number, never skipped quietly. `flush()` waits until every row queued
before it is stored: code in this process that reads `query_log` (feedback naming a `queryId`,
analytics) calls it first, and shutdown calls `aclose()`, which flushes.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

import asyncpg

from domain import telemetry
from domain.persistence.database import Database

log = logging.getLogger("ragql.query_log")
_COLUMNS = ("id", "tenant_id", "query", "mode", "options", "result_count", "document_ids", "took_ms", "created_at")
_INSERT = (
    "INSERT INTO query_log (id, tenant_id, query, mode, options, result_count, document_ids, took_ms, created_at) "
    "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)"
)
RETRY_DELAYS_S = (0.05, 0.5, 2.0)
MAX_PENDING = 50_000


async def insert_log_rows(conn: asyncpg.Connection, rows: list[dict[str, Any]]) -> None:
    """Rows (the columns of `query_log`) in the caller's tenant transaction; asyncpg sends a
    batch as one pipelined exchange."""
    values = [[json.dumps(r[c]) if c == "options" else r[c] for c in _COLUMNS] for r in rows]
    await conn.executemany(_INSERT, values)


class QueryLogWriter:
    def __init__(
        self, db: Database, *, max_pending: int = MAX_PENDING, retry_delays_s: Sequence[float] = RETRY_DELAYS_S
    ) -> None:
        self.db = db
        self.max_pending = max_pending
        self.retry_delays_s = tuple(retry_delays_s)
        self.dropped = 0
        self._pending: list[dict[str, Any]] = []
        self._queued = 0  # rows ever queued
        self._done = 0  # rows ever stored or given up on, in queue order
        self._waiters: list[tuple[int, asyncio.Future[None]]] = []
        self._wake: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None
        self._closed = False

    def add(self, row: dict[str, Any]) -> None:
        """Queue one row (the columns of `query_log`); returns at once."""
        if self._closed:  # a search that finished after shutdown flushed the log
            self._give_up(1, "the server is shutting down; its query log was already flushed")
            return
        if len(self._pending) >= self.max_pending:
            self._give_up(1, f"the queue is full ({self.max_pending} rows waiting; is PostgreSQL reachable?)")
            return
        self._pending.append(row)
        self._queued += 1
        self._ensure_running().set()

    async def flush(self) -> None:
        """Wait until every row queued before this call is stored (or given up on, and logged)."""
        target = self._queued
        if self._done >= target:
            return
        self._ensure_running().set()
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append((target, future))
        await future

    async def aclose(self) -> None:
        await self.flush()
        self._closed = True
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None

    def _ensure_running(self) -> asyncio.Event:
        if self._task is None or self._task.done():
            self._wake = asyncio.Event()
            self._task = asyncio.create_task(self._run(self._wake), name="query-log-writer")
        assert self._wake is not None
        return self._wake

    async def _run(self, wake: asyncio.Event) -> None:
        while True:
            await wake.wait()
            wake.clear()
            while self._pending:
                batch, self._pending = self._pending, []
                await self._write(batch)
                self._done += len(batch)
                self._release_waiters()

    def _release_waiters(self) -> None:
        still = []
        for target, future in self._waiters:
            if self._done >= target:
                if not future.done():
                    future.set_result(None)
            else:
                still.append((target, future))
        self._waiters = still

    async def _write(self, batch: list[dict[str, Any]]) -> None:
        by_tenant: defaultdict[str, list[dict[str, Any]]] = defaultdict(list)
        for row in batch:
            by_tenant[row["tenant_id"]].append(row)
        for tenant_id, rows in by_tenant.items():
            if await self._insert_with_retries(tenant_id, rows):
                continue
            # Still failing: row by row, so that one row the database refuses costs only itself.
            lost = 0
            for row in rows:
                try:
                    await self._insert(tenant_id, [row])
                except Exception:
                    lost += 1
            if lost:
                self._give_up(lost, f"tenant {tenant_id!r}: the database refused them", exc_info=True)

    async def _insert_with_retries(self, tenant_id: str, rows: list[dict[str, Any]]) -> bool:
        for delay in (*self.retry_delays_s, None):
            try:
                await self._insert(tenant_id, rows)
                return True
            except Exception:
                if delay is None:
                    return False
                log.warning("query log: writing %d rows failed; retrying in %.2f s", len(rows), delay, exc_info=True)
                await asyncio.sleep(delay)
        return False

    async def _insert(self, tenant_id: str, rows: list[dict[str, Any]]) -> None:
        async with self.db.connection(tenant_id) as conn:
            await insert_log_rows(conn, rows)

    def _give_up(self, n: int, why: str, *, exc_info: bool = False) -> None:
        self.dropped += n
        telemetry.rows_dropped("query_log", n)
        log.error("query log: %d rows not stored: %s", n, why, exc_info=exc_info)
