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
too); they become asyncpg's `$n` here, and only bound values ever reach the server."""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from typing import Any

from asyncpg import Record
from sqlalchemy.ext.asyncio import AsyncSession

# `:name`, but not the second colon of a `::type` cast.
_NAMED = re.compile(r"(?<![:\w]):([A-Za-z_]\w*)")


@functools.lru_cache(maxsize=256)
def positional(sql: str) -> tuple[str, tuple[str, ...]]:
    """`sql` with each `:name` as `$n`, and the names in `$n` order (a name used twice is one `$n`)."""
    names: list[str] = []

    def number(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in names:
            names.append(name)
        return f"${names.index(name) + 1}"

    return _NAMED.sub(number, sql), tuple(names)


async def fetch(session: AsyncSession, sql: str, params: Mapping[str, Any]) -> list[Record]:
    statement, names = positional(sql)
    connection = await (await session.connection()).get_raw_connection()
    driver = connection.driver_connection
    assert driver is not None  # a checked-out connection always has one
    rows: list[Record] = await driver.fetch(statement, *(params[name] for name in names))
    return rows
