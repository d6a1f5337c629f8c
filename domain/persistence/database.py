"""The async engine and the unit of work. Transactions commit in one place each: `Database.session()`
(SQLAlchemy), and `Database.connection()` (bare asyncpg, for the search's hot path); both scope
the transaction to one tenant in the same way."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from typing import Any

import asyncpg
from pgvector.asyncpg import register_vector
from sqlalchemy import URL, event, text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, create_async_engine

# Sent in the connection's startup packet, so they cost no round trip per query.
# ef_search >= 100 restores exact-search quality on SciFact, 200 keeps recall@10 >= 0.95 at 100k
# chunks (each transaction of `session()` sets its own, RAGQL_HNSW_EF_SEARCH); iterative scans keep filtered and deep
# (LIMIT > ef_search) queries from silently returning fewer rows.
DEFAULT_EF_SEARCH = 200
SERVER_SETTINGS = {
    "hnsw.ef_search": str(DEFAULT_EF_SEARCH),
    "hnsw.iterative_scan": "relaxed_order",
    "jit": "off",
    "application_name": "ragql",
    # What `_literal` relies on: a backslash in '...' is an ordinary character (PostgreSQL's
    # default since 9.1; pinned here so no server configuration can change it under us).
    "standard_conforming_strings": "on",
}


# The role every request transaction runs as (created by migration 0004): not the tables' owner,
# not a superuser, no BYPASSRLS, so row-level security always applies to it.
APP_ROLE = "ragql_app"


def to_async_url(url: str) -> str:
    for prefix in ("postgresql+asyncpg://", "postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+asyncpg://" + url[len(prefix) :]
    raise ValueError(f"RAGQL_DATABASE_URL must be a postgresql:// URL, got scheme of {url.split(':', 1)[0]!r}")


def _literal(value: str) -> str:
    """A SQL string literal. Safe with standard_conforming_strings on (pinned in SERVER_SETTINGS):
    inside '...' only the quote itself is special, and it is doubled."""
    if "\x00" in value:
        raise ValueError("a NUL character cannot be sent to PostgreSQL")
    return "'" + value.replace("'", "''") + "'"


def scope_statements(
    role: str,
    tenant_id: str,
    ef_search: int,
    settings: Mapping[str, str] | None = None,
    extra_select: str | None = None,
) -> str:
    """BEGIN and the scope `session()` sets (role, tenant, ef_search, and any further
    transaction-local `settings`) as one simple-query message: one round trip, not two, at the
    start of every tenant transaction on the bare connection. The simple protocol takes no
    parameters, so the values go in as literals (`_literal`). `extra_select` is a constant
    expression of ours added to the same SELECT (see search.BM25_PLAN_PRIME). Should the SELECT
    fail after BEGIN, the pool's reset rolls the open transaction back on release."""
    scope = {"role": role, "ragql.tenant_id": tenant_id, "hnsw.ef_search": str(int(ef_search)), **(settings or {})}
    calls = [f"set_config({_literal(name)}, {_literal(value)}, true)" for name, value in scope.items()]
    return f"BEGIN; SELECT {', '.join(calls + ([extra_select] if extra_select else []))}"


async def _rollback_if_open(conn: asyncpg.Connection) -> None:
    """The pool's reset on release: every setting ragql makes is transaction-local, so only a
    transaction left open (a cancelled request) needs ending. asyncpg's default reset (RESET ALL,
    UNLISTEN, CLOSE ALL and advisory unlocks) is one more round trip per request for nothing."""
    if conn.is_in_transaction():
        await conn.execute("ROLLBACK")


def url_key(url: URL) -> str:
    """A database as process-wide caches key it: its URL without the password."""
    return url.render_as_string(hide_password=True)


class Database:
    def __init__(self, url: str, *, pool_size: int = 10, hnsw_ef_search: int = DEFAULT_EF_SEARCH) -> None:
        self.url = to_async_url(url)
        self.pool_size = pool_size
        self.hnsw_ef_search = hnsw_ef_search
        self._raw_pool: asyncpg.Pool | None = None
        self._raw_lock = asyncio.Lock()
        self.engine: AsyncEngine = create_async_engine(
            self.url,
            pool_size=pool_size,
            max_overflow=pool_size,
            pool_pre_ping=True,
            connect_args={"server_settings": SERVER_SETTINGS},
        )
        # Single-statement lookups before a request (finding an API key): autocommit on its own
        # small pool, so each is one round trip with no BEGIN/COMMIT and no per-use reset.
        self.lookups: AsyncEngine = create_async_engine(
            self.url,
            isolation_level="AUTOCOMMIT",
            pool_size=2,
            max_overflow=pool_size,
            pool_pre_ping=True,
            connect_args={"server_settings": SERVER_SETTINGS},
        )
        self._vector_codec = False
        # Called with every new connection of the bare pool (`connection()`): a test counts the
        # statements a request sends with it (asyncpg's query logger), as it does through the
        # engine's events for sessions.
        self.on_raw_connect: list[Callable[[asyncpg.Connection], None]] = []

    @property
    def key(self) -> str:
        """This database, as process-wide caches key it (`url_key`)."""
        return url_key(self.engine.url)

    async def enable_vector_codec(self) -> None:
        """Register pgvector's binary codec on every new connection. It can only be registered once
        the extension exists, so connections opened before (by the migration) are dropped."""
        if self._vector_codec:
            return
        self._vector_codec = True
        await self.engine.dispose()

        @event.listens_for(self.engine.sync_engine, "connect")
        def _register(dbapi_connection: Any, _record: Any) -> None:
            dbapi_connection.run_async(register_vector)

    @asynccontextmanager
    async def session(self, tenant_id: str, settings: Mapping[str, str] | None = None) -> AsyncIterator[AsyncSession]:
        """A transaction scoped to one tenant: it commits on success and rolls back on error.

        The transaction runs as the app role and carries the tenant as a transaction-local
        setting; the row-level security policies compare every row with it, so a query that
        forgets `WHERE tenant_id` still sees only this tenant. `hnsw.ef_search`, and any further
        planner `settings` the caller names, ride in the same statement (no extra round trip).
        All end with the transaction, so a pooled connection never carries them into the next
        request."""
        scope = {"role": APP_ROLE, "ragql.tenant_id": tenant_id, "hnsw.ef_search": str(self.hnsw_ef_search)}
        scope.update(settings or {})
        names = list(scope)
        calls = ", ".join(f"set_config(:n{i}, :v{i}, true)" for i in range(len(names)))
        params = {**{f"n{i}": n for i, n in enumerate(names)}, **{f"v{i}": scope[n] for i, n in enumerate(names)}}
        async with AsyncSession(self.engine, expire_on_commit=False) as session, session.begin():
            await session.execute(text(f"SELECT {calls}"), params)
            yield session

    @asynccontextmanager
    async def connection(
        self, tenant_id: str, settings: Mapping[str, str] | None = None, extra_select: str | None = None
    ) -> AsyncIterator[asyncpg.Connection]:
        """The same tenant-scoped transaction as `session()` (app role, tenant setting,
        ef_search; commit on success, rollback on error), on a bare asyncpg connection for the
        hot read paths (search). It skips SQLAlchemy's per-statement work and the pool's
        pre-ping round trip; asyncpg prepares each distinct statement once per connection.
        Its own pool: connections that only ever run tenant transactions."""
        pool = self._raw_pool or await self._open_raw_pool()
        async with pool.acquire() as conn:
            await conn.execute(scope_statements(APP_ROLE, tenant_id, self.hnsw_ef_search, settings, extra_select))
            try:
                yield conn
            except BaseException:
                # Cancelled or failed: end the transaction here when the connection can; the pool's
                # reset (`_rollback_if_open`) ends it on release if this could not run.
                if not conn.is_closed() and conn.is_in_transaction():
                    try:
                        await conn.execute("ROLLBACK")
                    except Exception:
                        pass
                raise
            await conn.execute("COMMIT")

    async def _init_raw(self, conn: asyncpg.Connection) -> None:
        await register_vector(conn)  # pgvector's binary codec: vectors go as numpy arrays
        for hook in self.on_raw_connect:
            hook(conn)

    async def _open_raw_pool(self) -> asyncpg.Pool:
        async with self._raw_lock:
            if self._raw_pool is None:
                self._raw_pool = await asyncpg.create_pool(
                    "postgresql://" + self.url.removeprefix("postgresql+asyncpg://"),
                    min_size=0,
                    max_size=self.pool_size,
                    server_settings=SERVER_SETTINGS,
                    init=self._init_raw,
                    reset=_rollback_if_open,
                    # Each tenant's search reads its own partition by name: one statement per
                    # tenant and mode, so keep more than asyncpg's default 100 prepared.
                    statement_cache_size=1024,
                )
            return self._raw_pool

    async def dispose(self) -> None:
        if self._raw_pool is not None:
            await self._raw_pool.close()
            self._raw_pool = None
        await self.engine.dispose()
        await self.lookups.dispose()
