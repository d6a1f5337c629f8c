"""The keyword leg reads its BM25 scores from pg_textsearch's index scan
(`bm25_get_current_score()`) instead of scoring each returned row a second time. Those scores must
be the standalone scores exactly, on a tenant small enough that the planner would rather sort, and
a plan without the index scan (whose helper returns one stale value) must not leak into a ranking."""

from __future__ import annotations

import uuid
from typing import Any

import asyncpg
import pytest
from sqlalchemy import text

from domain.documents.validation import DocumentInput
from domain.persistence.database import APP_ROLE, SERVER_SETTINGS, Database, scope_statements
from domain.persistence.migrate import keyword_backend
from domain.providers.embedding import LocalEmbedder
from domain.retrieval import search as searching
from domain.retrieval.reads import RawReads, SessionReads, positional
from domain.retrieval.search import SCAN_SCORE_SETTINGS, SearchOptions, build_sql, scan_scores_hold
from domain.retrieval.tenant_index import keyword_index
from tests.conftest import ingest_docs

TOPICS = ["volcano eruption lava", "coral reef fish", "desert camel caravan", "glacier ice melt", "rainforest frogs"]
QUERIES = ["volcano lava", "coral fish reef", "glacier", "camel desert caravan frogs", "ice melt lava fish"]


async def _corpus(db: Database, embedder: LocalEmbedder, tenant: str) -> None:
    tag = uuid.uuid4().hex[:6]
    docs = [
        DocumentInput(
            title=f"Field note {i}",
            text=f"Notes {tag} on {TOPICS[i % 5]}, seen {i % 4 + 1} times: {' '.join([TOPICS[i % 5]] * (i % 3 + 1))}.",
        )
        for i in range(25)
    ]
    await ingest_docs(db, embedder, tenant, docs)


def _params(tenant: str, query: str, vector: Any) -> dict[str, Any]:
    return {"tenant": tenant, "k": 20, "qt": query, "qv": vector}


def _keyword(rows: list[Any]) -> dict[uuid.UUID, float]:
    """Per matching chunk, its keyword score (a sort over every row also returns the rest, at 0)."""
    return {row[1]: float(row[3]) for row in rows if row[0] == "keyword" and row[3] > 0}


def _best_by_document(rows: list[Any]) -> dict[uuid.UUID, float]:
    best: dict[uuid.UUID, float] = {}
    for row in rows:
        if row[0] == "keyword" and row[3] > 0:
            best[row[2]] = max(best.get(row[2], float("-inf")), float(row[3]))
    return best


async def test_scores_read_from_the_scan_are_the_standalone_scores(
    db: Database, embedder: LocalEmbedder, tenant: str
) -> None:
    await _corpus(db, embedder, tenant)
    scan_sql = build_sql("HYBRID", "bm25", "", tenant, scan_scores=True)
    classic_sql = build_sql("HYBRID", "bm25", "", tenant)
    for query in QUERIES:
        vector = await embedder.embed_query(query)
        async with db.connection(tenant, SCAN_SCORE_SETTINGS) as conn:
            plan = "\n".join(r[0] for r in await conn.fetch(*_explain(scan_sql, _params(tenant, query, vector))))
            scanned = await RawReads(conn).legs(scan_sql, _params(tenant, query, vector))
        async with db.connection(tenant) as conn:
            standalone = await RawReads(conn).legs(classic_sql, _params(tenant, query, vector))
        # The settings make the plan the BM25 index scan even on 25 documents.
        assert f"Index Scan using {keyword_index(tenant)}" in plan, plan
        got, want = _keyword(scanned), _keyword(standalone)
        assert got and set(got) == set(want), query
        # Equal up to float4 summation order (the scan adds the terms' parts in its own order).
        assert all(got[chunk] == pytest.approx(want[chunk], rel=1e-5) for chunk in want), query
        assert scan_scores_hold(scanned)


async def _search(
    db: Database, embedder: LocalEmbedder, tenant: str, query: str, mode: Any, first: int, backend: str
) -> searching.SearchResult:
    return await searching.search(
        db=db,
        tenant_id=tenant,
        query_vector=await embedder.embed_query(query),
        query=query,
        first=first,
        options=SearchOptions(mode=mode),
        keyword_backend=backend,
        log=False,
    )


def _explain(sql: str, params: dict[str, Any]) -> tuple[Any, ...]:
    statement, names = positional(sql)
    return ("EXPLAIN " + statement, *(params[n] for n in names))


async def test_a_plan_without_the_index_scan_falls_back_to_standalone_scores(
    db: Database, embedder: LocalEmbedder, tenant: str
) -> None:
    await _corpus(db, embedder, tenant)
    scan_sql = build_sql("KEYWORD", "bm25", "", tenant, scan_scores=True)
    classic_sql = build_sql("KEYWORD", "bm25", "", tenant)
    params = {"tenant": tenant, "k": 20, "qt": "volcano lava fish"}
    built: list[str] = []

    def fallback() -> str:
        built.append(classic_sql)
        return classic_sql

    async with db.connection(tenant) as conn:
        want = _keyword(await RawReads(conn).legs(classic_sql, params))
    # The index scan ran: its scores are used, and the standalone statement is never even built.
    async with db.connection(tenant, SCAN_SCORE_SETTINGS, searching.BM25_PLAN_PRIME) as conn:
        trusted = await searching._leg_rows(RawReads(conn), scan_sql, params, fallback)
    assert built == [] and _keyword(trusted) == pytest.approx(want)
    # No index scans at all: the keyword leg becomes a sequential scan and a sort.
    async with db.connection(tenant, {"enable_indexscan": "off", "enable_bitmapscan": "off"}) as conn:
        stale = await RawReads(conn).legs(scan_sql, params)
        rows = await searching._leg_rows(RawReads(conn), scan_sql, params, fallback)
    # Without the guard, every row would carry the one value the helper had left.
    assert len({row[3] for row in stale if row[0] == "keyword"}) == 1 and not scan_scores_hold(stale)
    assert _keyword(rows) == pytest.approx(want) and built == [classic_sql]


def test_scores_that_cannot_be_told_apart_are_not_trusted() -> None:
    chunk = uuid.uuid4
    assert scan_scores_hold([("dense", chunk(), chunk(), 0.5), ("dense", chunk(), chunk(), 0.5)])
    assert scan_scores_hold([("keyword", chunk(), chunk(), 2.0), ("keyword", chunk(), chunk(), 1.5)])
    assert not scan_scores_hold([("keyword", chunk(), chunk(), 2.0)])
    assert not scan_scores_hold([("keyword", chunk(), chunk(), 2.0), ("keyword", chunk(), chunk(), 2.0)])
    # Dense rows between keyword rows do not count as a second keyword score.
    mixed = [("keyword", chunk(), chunk(), 2.0), ("dense", chunk(), chunk(), 0.5), ("keyword", chunk(), chunk(), 2.0)]
    assert not scan_scores_hold(mixed)
    assert scan_scores_hold([*mixed, ("keyword", chunk(), chunk(), 1.0)])


async def test_a_search_ranks_by_the_standalone_scores(db: Database, embedder: LocalEmbedder, tenant: str) -> None:
    """End to end through `search`: each hit's keyword score is its chunk's standalone BM25."""
    await _corpus(db, embedder, tenant)
    backend = await keyword_backend(db)
    classic_sql = build_sql("KEYWORD", "bm25", "", tenant)
    for query in QUERIES:
        result = await _search(db, embedder, tenant, query, "KEYWORD", 10, backend)
        async with db.connection(tenant) as conn:
            want = _best_by_document(await RawReads(conn).legs(classic_sql, {"tenant": tenant, "k": 20, "qt": query}))
        assert result.hits, query
        for hit in result.hits:
            assert hit.keyword == pytest.approx(want[hit.document.id], rel=1e-5), query


async def _standalone_scorings(db: Database, tenant: str, *, primed: bool) -> list[int]:
    """Per search transaction, how often the standalone BM25 function ran. A bare connection as
    the owner, so it may count function calls; the scope statement is the search's own."""
    sql = build_sql("KEYWORD", "bm25", "", tenant, scan_scores=True)
    params = {"tenant": tenant, "k": 20, "qt": "volcano lava fish"}
    url = "postgresql://" + db.url.removeprefix("postgresql+asyncpg://")
    conn = await asyncpg.connect(url, server_settings={**SERVER_SETTINGS, "track_functions": "all"})
    counted = []
    try:
        for _ in range(3):  # the first parses the statement; the next two reuse it, as a pool does
            prime = searching.BM25_PLAN_PRIME if primed else None
            await conn.execute(scope_statements(APP_ROLE, tenant, db.hnsw_ef_search, SCAN_SCORE_SETTINGS, prime))
            # The view's counts are those not yet reported, which may span transactions: a delta.
            before = await conn.fetchval(_STANDALONE_CALLS.text)
            assert _keyword(await RawReads(conn).legs(sql, params))
            counted.append(int(await conn.fetchval(_STANDALONE_CALLS.text)) - int(before))
            await conn.execute("COMMIT")
    finally:
        await conn.close()
    return counted


async def test_the_search_transaction_plans_the_legs_without_scoring_rows_again(
    db: Database, embedder: LocalEmbedder, tenant: str
) -> None:
    """pg_textsearch hands the ORDER BY the scan's scores only when its parse hook saw a BM25
    operator last; the scope statement's prime makes that true for a reused prepared statement."""
    await _corpus(db, embedder, tenant)
    assert await _standalone_scorings(db, tenant, primed=True) == [0, 0, 0]
    # Without the prime, a reused statement scores every returned row a second time.
    unprimed = await _standalone_scorings(db, tenant, primed=False)
    assert unprimed[0] == 0 and unprimed[1] > 0 and unprimed[2] > 0


async def test_a_personalised_search_primes_its_legs_right_before_they_run(
    db: Database, embedder: LocalEmbedder, tenant: str
) -> None:
    """The session's scope statement is a prepared statement, parsed once per connection, and the
    profile's lookups run after it: `_leg_rows` primes the planner just before the legs."""
    await _corpus(db, embedder, tenant)
    scan_sql = build_sql("KEYWORD", "bm25", "", tenant, scan_scores=True)
    classic_sql = build_sql("KEYWORD", "bm25", "", tenant)
    params = {"tenant": tenant, "k": 20, "qt": "volcano lava fish"}
    async with db.engine.connect() as owner:
        name = await owner.scalar(text("SELECT current_database()"))
    # Function calls are counted only when track_functions is on, which the app role may not set:
    # the database's default, read by the fresh connections of a Database of this test's own.
    async with db.engine.begin() as owner:
        await owner.execute(text(f"ALTER DATABASE \"{name}\" SET track_functions = 'all'"))
    counting = Database(db.url, hnsw_ef_search=db.hnsw_ef_search)
    try:
        await counting.enable_vector_codec()
        primed: list[int] = []
        unprimed: list[int] = []
        for _ in range(3):
            for prime, out in ((True, primed), (False, unprimed)):
                async with counting.session(tenant, SCAN_SCORE_SETTINGS) as session:
                    before = int((await session.execute(_STANDALONE_CALLS)).scalar_one())  # a delta, as above
                    await session.execute(text("SELECT count(*) FROM documents"))  # as the profile's lookups
                    reads = SessionReads(session)
                    fallback = (lambda: classic_sql) if prime else None
                    assert _keyword(await searching._leg_rows(reads, scan_sql, params, fallback))
                    out.append(int((await session.execute(_STANDALONE_CALLS)).scalar_one()) - before)
    finally:
        await counting.dispose()
        async with db.engine.begin() as owner:
            await owner.execute(text(f'ALTER DATABASE "{name}" RESET track_functions'))
    assert primed == [0, 0, 0], (primed, unprimed)
    assert all(calls > 0 for calls in unprimed[1:])  # the same legs, planned with the flag down


_STANDALONE_CALLS = text(
    "SELECT coalesce(sum(calls), 0) FROM pg_stat_xact_user_functions WHERE funcname = 'bm25_text_bm25query_score'"
)


async def test_a_hit_shows_its_own_chunk_read_with_its_document(
    db: Database, embedder: LocalEmbedder, tenant: str
) -> None:
    """The legs return scores only; the shown chunks' text and ordinal come with the documents."""
    await _corpus(db, embedder, tenant)
    backend = await keyword_backend(db)
    for mode in ("HYBRID", "DENSE", "KEYWORD"):
        result = await _search(db, embedder, tenant, "glacier ice melt", mode, 5, backend)
        assert len(result.hits) == 5, mode
        async with db.session(tenant) as session:
            stored = {
                row[0]: (row[1], row[2], row[3])
                for row in await session.execute(
                    text("SELECT id, document_id, text, ordinal FROM chunks WHERE tenant_id = :t"), {"t": tenant}
                )
            }
        for hit in result.hits:
            assert stored[hit.chunk_id] == (hit.document.id, hit.chunk_text, hit.chunk_ordinal), mode
