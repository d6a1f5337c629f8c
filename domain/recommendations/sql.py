"""The statements of a recommendation request, sent through asyncpg itself on the session's own
connection.

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

from collections.abc import Mapping
from typing import Any

from asyncpg import Record
from sqlalchemy.ext.asyncio import AsyncSession

# The same `:name` → `$n` rewriting search's bare-connection reads use.
from domain.retrieval.reads import positional


async def fetch(session: AsyncSession, sql: str, params: Mapping[str, Any]) -> list[Record]:
    statement, names = positional(sql)
    connection = await (await session.connection()).get_raw_connection()
    driver = connection.driver_connection
    assert driver is not None  # a checked-out connection always has one
    rows: list[Record] = await driver.fetch(statement, *(params[name] for name in names))
    return rows
