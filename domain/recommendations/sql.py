"""The statements of a recommendation request, sent through asyncpg itself: on the request's bare
tenant transaction (`Database.connection`), or on an ORM session's own connection.

Why not `session.execute(text(...))`: a request makes about eight reads and one write, and under
load one server process is bound by its Python CPU. py-spy on `make bench`'s `recommendations`
showed each statement through SQLAlchemy costing about 0.3 ms of Python (building the clause,
parsing it for bind names, the adapter's cursor, the greenlet hop, wrapping the rows): about a
third of the request's CPU. asyncpg's `fetch` does the same work in a fraction of that, and keeps
its own prepared statements per connection.

Nothing else changes: the connection is the session's, inside its transaction, so the tenant's
row-level security, the app role and `hnsw.ef_search` set by `Database.session` apply as before.
The SQL keeps SQLAlchemy's `:name` parameters (the metadata filter's compiled fragment uses them
too); they become asyncpg's `$n` (`domain.retrieval.reads.positional`), and only bound values
ever reach the server."""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from typing import Any, TypeAlias

import asyncpg
from asyncpg import Record
from sqlalchemy.ext.asyncio import AsyncSession

from domain.persistence.tables import Document

# The same `:name` → `$n` rewriting, and the same document reads, as search's bare connection.
from domain.retrieval.reads import RawReads, positional

# Where a request's statements go: a served request's bare tenant transaction
# (`Database.connection`, asyncpg's pooled connection), or an ORM session's connection (the
# training job, tools and tests that hold a session).
# (A pool's connection is asyncpg's proxy, typed as the connection it forwards to, as
# `Database.connection` yields it.)
Executor: TypeAlias = AsyncSession | asyncpg.Connection


async def driver(on: Executor) -> asyncpg.Connection:
    if not isinstance(on, AsyncSession):
        return on
    connection = await (await on.connection()).get_raw_connection()
    raw: asyncpg.Connection | None = connection.driver_connection
    assert raw is not None  # a checked-out connection always has one
    return raw


async def documents_by_id(on: Executor, tenant_id: str, ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, Document]:
    """Document rows as search reads them (`RawReads.documents`: one statement, no ORM load)."""
    return await RawReads(await driver(on)).documents(tenant_id, ids)


async def fetch(on: Executor, sql: str, params: Mapping[str, Any]) -> list[Record]:
    statement, names = positional(sql)
    rows: list[Record] = await (await driver(on)).fetch(statement, *(params[name] for name in names))
    return rows
