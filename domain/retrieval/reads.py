"""What one search reads and writes in its tenant transaction, two ways.

`RawReads` runs on a bare asyncpg connection (`Database.connection`): the hybrid statement and
the documents' lookup are prepared once per connection and their rows are read straight into
`Legs` and `Document`s. Under py-spy (issue 18) SQLAlchemy's per-statement work, the ORM's
loading of ten `Document` rows and the pool's pre-ping were about a quarter of a search's server
CPU; this path skips them and gives the same rows. `SessionReads` is the same on an
`AsyncSession`, for personalised searches, whose profile lookups are ORM code.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Iterable, Sequence
from functools import cache, lru_cache
from typing import Any, Protocol

import asyncpg
from sqlalchemy import insert, text
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import configure_mappers
from sqlalchemy.orm.instrumentation import ClassManager, manager_of_class
from sqlmodel import col, select

from domain.persistence.tables import Document, QueryLog
from domain.retrieval.query_log import insert_log_rows
from domain.retrieval.tenant_index import chunk_partition

# `documents`' columns as the Document row has them (metadata_ is the "metadata" column).
_DOC_FIELDS = (
    "id",
    "tenant_id",
    "external_id",
    "title",
    "text",
    "content_hash",
    "metadata_",
    "genre",
    "tags",
    "rating",
    "year",
    "source",
    "chunk_count",
    "created_at",
    "updated_at",
)
# The same columns by their SQL names, in that order (the ORM's `metadata_` is `metadata`).
_DOC_COLUMNS = tuple("metadata" if f == "metadata_" else f for f in _DOC_FIELDS)
_DOCS_SQL = (
    f"SELECT {', '.join(_DOC_COLUMNS)} FROM documents "  # noqa: S608 (our own column names)
    "WHERE tenant_id = $1 AND id = ANY($2::uuid[])"
)
# A bind parameter `:name`, not a cast (`::jsonb`).
_PARAM = re.compile(r"(?<![:\w]):([A-Za-z_]\w*)")

Row = Sequence[Any]


@lru_cache(maxsize=1024)
def positional(sql: str) -> tuple[str, tuple[str, ...]]:
    """`:name` parameters as asyncpg's `$n`, and the names in order (a name used twice is one
    parameter). The statements are ours (search.build_sql, filters.compile_filter): literals in
    them never hold a colon."""
    names: list[str] = []

    def number(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in names:
            names.append(name)
        return f"${names.index(name) + 1}"

    return _PARAM.sub(number, sql), tuple(names)


@cache
def _document_manager() -> ClassManager:
    # The ORM's attributes work only once the mappers are configured, which the first ORM query
    # does; a process whose searches never run one (this path) must do it itself.
    configure_mappers()
    return manager_of_class(Document)


def document_from_record(record: Row) -> Document:
    """A Document row as the ORM would load it, without the ORM: an instance made by its class
    manager (so SQLAlchemy's state is there), its column values set directly, as a load does.
    About 3 µs, against 95 µs for `Document(**values)` (pydantic and attribute events per field)
    and more through a session's identity map. The values are PostgreSQL's own, already typed."""
    values = dict(zip(_DOC_FIELDS, record, strict=True))
    raw = values["metadata_"]
    values["metadata_"] = json.loads(raw) if isinstance(raw, str) else raw
    values["id"] = uuid.UUID(bytes=values["id"].bytes)  # asyncpg's own UUID type, as uuid.UUID
    doc: Document = _document_manager().new_instance()
    doc.__dict__.update(values)
    # What pydantic's own constructors set (SQLModel's __new__ sets the private attributes).
    object.__setattr__(doc, "__pydantic_fields_set__", set(_DOC_FIELDS))
    object.__setattr__(doc, "__pydantic_extra__", None)
    return doc


Chunks = dict[uuid.UUID, tuple[str, int]]


def _docs_with_chunks_sql(tenant_id: str) -> str:
    """`_DOCS_SQL` and the text and ordinal of each document's shown chunk, in one statement: the
    documents that still have that chunk (the tenant's partition by name, as the legs read it)."""
    columns = ", ".join(f"d.{c}" for c in _DOC_COLUMNS)
    return (
        f"SELECT {columns}, c.id, c.text, c.ordinal FROM documents d "  # noqa: S608 (a derived hex name)
        f"JOIN {chunk_partition(tenant_id)} c ON c.tenant_id = $1 AND c.document_id = d.id "
        "AND c.id = ANY($3::uuid[]) WHERE d.tenant_id = $1 AND d.id = ANY($2::uuid[])"
    )


class Reads(Protocol):
    async def legs(self, sql: str, params: dict[str, Any]) -> list[Row]: ...

    async def documents(self, tenant_id: str, ids: Iterable[uuid.UUID]) -> dict[uuid.UUID, Document]: ...

    async def documents_with(
        self, tenant_id: str, ids: Sequence[uuid.UUID], chunk_ids: Sequence[uuid.UUID]
    ) -> tuple[dict[uuid.UUID, Document], Chunks]: ...

    async def write_log(self, row: dict[str, Any]) -> None: ...


class RawReads:
    def __init__(self, conn: asyncpg.Connection) -> None:
        self.conn = conn

    async def legs(self, sql: str, params: dict[str, Any]) -> list[Row]:
        statement, names = positional(sql)
        rows: list[Row] = await self.conn.fetch(statement, *(params[n] for n in names))
        return rows

    async def documents(self, tenant_id: str, ids: Iterable[uuid.UUID]) -> dict[uuid.UUID, Document]:
        records = await self.conn.fetch(_DOCS_SQL, tenant_id, list(ids))
        docs = (document_from_record(r) for r in records)
        return {d.id: d for d in docs}

    async def documents_with(
        self, tenant_id: str, ids: Sequence[uuid.UUID], chunk_ids: Sequence[uuid.UUID]
    ) -> tuple[dict[uuid.UUID, Document], Chunks]:
        """The documents and their shown chunks' text, in the one round trip `documents` takes."""
        records = await self.conn.fetch(_docs_with_chunks_sql(tenant_id), tenant_id, list(ids), list(chunk_ids))
        n = len(_DOC_FIELDS)
        docs = {d.id: d for d in (document_from_record(r[:n]) for r in records)}
        return docs, {r[n]: (r[n + 1], r[n + 2]) for r in records}  # keyed as the legs key them

    async def write_log(self, row: dict[str, Any]) -> None:
        await insert_log_rows(self.conn, [row])


class SessionReads:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def legs(self, sql: str, params: dict[str, Any]) -> list[Row]:
        return list((await self.session.execute(text(sql), params)).all())

    async def simple(self, sql: str) -> None:
        """One statement of ours through the simple protocol, so that it is parsed on every call
        (a statement through the session is prepared once per connection)."""
        raw = await (await self.session.connection()).get_raw_connection()
        await raw.driver_connection.execute(sql)  # type: ignore[union-attr]

    async def documents(self, tenant_id: str, ids: Iterable[uuid.UUID]) -> dict[uuid.UUID, Document]:
        result = await self.session.execute(select(Document).where(col(Document.id).in_(list(ids))))
        return {d.id: d for d in result.scalars()}

    async def documents_with(
        self, tenant_id: str, ids: Sequence[uuid.UUID], chunk_ids: Sequence[uuid.UUID]
    ) -> tuple[dict[uuid.UUID, Document], Chunks]:
        rows = await self.session.execute(
            text(
                f"SELECT id, text, ordinal FROM {chunk_partition(tenant_id)} "  # noqa: S608 (a derived hex name)
                "WHERE tenant_id = :t AND id = ANY(CAST(:ids AS uuid[]))"
            ),
            {"t": tenant_id, "ids": list(chunk_ids)},
        )
        return await self.documents(tenant_id, ids), {r[0]: (r[1], r[2]) for r in rows.all()}

    async def write_log(self, row: dict[str, Any]) -> None:
        """A Core INSERT, not `session.add`: the same one round trip, without the ORM's unit of
        work at commit (about 5% of a search's server CPU under py-spy, issue 18)."""
        await self.session.execute(insert(QueryLog.__table__), [row])  # type: ignore[attr-defined]
