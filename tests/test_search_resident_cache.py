"""A result-cache hit this process holds needs no database (domain/retrieval/cache.py, issue 18),
and still gets its own queryId and query-log row; a write makes it unreachable; memory is bounded."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any

import asyncpg
from sqlalchemy import text

from domain.caching.store import LocalStore
from domain.documents.validation import DocumentInput
from domain.persistence.database import Database
from domain.persistence.migrate import keyword_backend
from domain.providers.embedding import LocalEmbedder
from domain.retrieval.cache import CachedHit, SearchCache
from domain.retrieval.query_log import QueryLogWriter
from domain.retrieval.search import SearchOptions, SearchResult, search
from tests.conftest import ingest_docs

DOCS = [
    DocumentInput(title="Lagoon notes", text="A quiet lagoon behind the reef, where herons fish at dawn."),
    DocumentInput(title="Reef survey", text="The reef survey counted corals, herons and one lagoon shark."),
]


class CountingDatabase:
    """The database, counting the tenant transactions a search opens."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self.opened = 0

    @asynccontextmanager
    async def connection(
        self, tenant_id: str, settings: Mapping[str, str] | None = None, extra_select: str | None = None
    ) -> AsyncIterator[asyncpg.Connection]:
        self.opened += 1
        async with self.db.connection(tenant_id, settings, extra_select) as conn:
            yield conn


async def _search(counting: CountingDatabase, tenant: str, vector: Any, cache: SearchCache, **kw: Any) -> SearchResult:
    return await search(
        db=counting,  # type: ignore[arg-type]
        tenant_id=tenant,
        query_vector=vector,
        query="lagoon herons",
        first=5,
        options=SearchOptions(),
        keyword_backend=await keyword_backend(counting.db),
        cache=cache,
        **kw,
    )


async def _logged(db: Database, tenant: str, query_id: uuid.UUID) -> int:
    async with db.session(tenant) as session:
        n = await session.scalar(text("SELECT count(*) FROM query_log WHERE id = :i"), {"i": query_id})
    return int(n or 0)


async def test_a_resident_hit_opens_no_transaction_and_is_still_logged(
    db: Database, embedder: LocalEmbedder, tenant: str
) -> None:
    await ingest_docs(db, embedder, tenant, DOCS)
    vector = (await embedder.embed(["lagoon herons"]))[0]
    counting, cache, writer = CountingDatabase(db), SearchCache(LocalStore(), ttl_s=60), QueryLogWriter(db)
    first = await _search(counting, tenant, vector, cache, log_writer=writer)
    assert counting.opened == 1 and cache.misses == 1
    second = await _search(counting, tenant, vector, cache, log_writer=writer)
    assert counting.opened == 1 and cache.hits == 1  # served from this process: no transaction
    assert [h.document.title for h in second.hits] == [h.document.title for h in first.hits]
    assert {h.document.title for h in second.hits} == {d.title for d in DOCS}
    assert second.query_id != first.query_id
    await writer.flush()
    assert await _logged(db, tenant, first.query_id) == 1
    assert await _logged(db, tenant, second.query_id) == 1
    await writer.aclose()


async def test_without_a_log_writer_a_hit_writes_its_row_in_a_transaction(
    db: Database, embedder: LocalEmbedder, tenant: str
) -> None:
    await ingest_docs(db, embedder, tenant, DOCS)
    vector = (await embedder.embed(["lagoon herons"]))[0]
    counting, cache = CountingDatabase(db), SearchCache(LocalStore(), ttl_s=60)
    await _search(counting, tenant, vector, cache)
    second = await _search(counting, tenant, vector, cache)
    assert counting.opened == 2 and cache.hits == 1
    assert await _logged(db, tenant, second.query_id) == 1


async def test_a_write_makes_resident_entries_unreachable(db: Database, embedder: LocalEmbedder, tenant: str) -> None:
    await ingest_docs(db, embedder, tenant, DOCS)
    vector = (await embedder.embed(["lagoon herons"]))[0]
    counting, cache = CountingDatabase(db), SearchCache(LocalStore(), ttl_s=60)
    await _search(counting, tenant, vector, cache, log=False)
    await ingest_docs(db, embedder, tenant, [DocumentInput(title="Heron lagoon", text="Herons of the lagoon.")])
    await cache.invalidate(tenant)
    fresh = await _search(counting, tenant, vector, cache, log=False)
    assert counting.opened == 2 and cache.misses == 2
    assert "Heron lagoon" in [h.document.title for h in fresh.hits]


def _hit(chars: int) -> CachedHit:
    return CachedHit(uuid.uuid4(), uuid.uuid4(), "x" * chars, 0, "", 1.0, 1.0, None, 1.0, 1, None, 1)


def test_resident_entries_are_bounded_by_count_and_size() -> None:
    cache = SearchCache(LocalStore(), ttl_s=60, resident_entries=2, resident_chars=10_000)
    for key in ("a", "b", "c"):
        cache.keep(key, [_hit(10)], 1, {})
    assert cache.resident("a") is None and cache.resident("b") is not None and cache.resident("c") is not None
    cache.keep("big", [_hit(20_000)], 1, {})  # larger than the whole budget: not kept
    assert cache.resident("big") is None
    cache.keep("d", [_hit(6_000)], 1, {})
    cache.keep("e", [_hit(6_000)], 1, {})  # over the size budget together: the older goes
    assert cache.resident("d") is None and cache.resident("e") is not None


def test_nothing_is_resident_when_the_cache_is_off() -> None:
    cache = SearchCache(LocalStore(), ttl_s=0)
    cache.keep("a", [_hit(10)], 1, {})
    assert cache.resident("a") is None
