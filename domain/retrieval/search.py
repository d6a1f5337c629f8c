"""Hybrid search. Both legs, with the same filters, run in one SQL statement (one round trip);
the chunk scores come back and are grouped per document and fused here, where the fusion
methods are plain, tested functions."""

from __future__ import annotations

import functools
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, Literal

from sqlalchemy.ext.asyncio import AsyncSession

from domain import telemetry
from domain.errors import InvalidInput
from domain.paging import check_first
from domain.persistence.database import Database
from domain.persistence.tables import Document, utcnow
from domain.rerank.service import Reranking, RerankOutcome, Strategy
from domain.retrieval import personal
from domain.retrieval.cache import CachedHit, Resident, SearchCache
from domain.retrieval.error_codes import SearchErrorCode
from domain.retrieval.filters import MetadataFilter, compile_filter
from domain.retrieval.fusion import FusionMethod, fuse, ranks
from domain.retrieval.query_log import QueryLogWriter
from domain.retrieval.reads import RawReads, Reads, SessionReads
from domain.retrieval.snippets import highlight
from domain.retrieval.tenant_index import chunk_partition, keyword_index

Mode = Literal["HYBRID", "DENSE", "KEYWORD"]
MAX_CANDIDATES = 1000
# Chosen on the SciFact *train* split (see README, "Tuning"); the test split only reports.
DEFAULT_FUSION: FusionMethod = "ZSCORE"
DEFAULT_ALPHA: dict[str, float] = {"RRF": 0.4, "RELATIVE_SCORE": 0.5, "ZSCORE": 0.5, "LEARNED": 0.5}


@dataclass(frozen=True)
class SearchOptions:
    mode: Mode = "HYBRID"
    fusion: FusionMethod | None = None
    alpha: float | None = None
    candidates: int = 50
    filter: MetadataFilter | None = None
    rerank: Strategy = "NONE"
    rerank_context: str | None = None  # the user's stated interests, for LLM re-ranking
    personalize: personal.Personalize | None = None
    # Off: hits carry an empty snippet. A client that does not select `snippet` does not pay for
    # it (a pasted paragraph's 100 snippets are about a tenth of its search, issue 18).
    snippets: bool = True


@dataclass
class Hit:
    document: Document
    chunk_id: uuid.UUID
    chunk_text: str
    chunk_ordinal: int
    snippet: str
    score: float
    dense: float | None
    keyword: float | None
    fused: float
    dense_rank: int | None
    keyword_rank: int | None
    fused_rank: int = 0
    rerank: float | None = None
    rank_change: int | None = None  # fused rank minus final rank: positive means the re-ranker lifted it
    personal: float | None = None  # cosine to the user's preference, when the search was personalised


@dataclass
class SearchResult:
    hits: list[Hit]
    total_candidates: int
    query_id: uuid.UUID
    took_ms: float
    fusion: str
    alpha: float
    keyword_backend: str
    options: dict[str, Any] = field(default_factory=dict)
    rerank: RerankOutcome | None = None
    personalized: bool = False


def validate(query: str, first: int, options: SearchOptions, *, max_query_chars: int) -> str:
    q = query.strip()
    if not q:
        raise InvalidInput(SearchErrorCode.EMPTY_QUERY, "query is empty; type some words to search for", field="query")
    if len(q) > max_query_chars:
        raise InvalidInput(
            SearchErrorCode.QUERY_TOO_LONG,
            f"query is {len(q)} characters; shorten it to at most {max_query_chars}",
            field="query",
        )
    check_first(first, hint="; page with `after`")
    if options.alpha is not None and not 0.0 <= options.alpha <= 1.0:
        raise InvalidInput(
            SearchErrorCode.INVALID_ALPHA, f"alpha must be between 0 and 1, got {options.alpha}", field="options.alpha"
        )
    if not 1 <= options.candidates <= MAX_CANDIDATES:
        raise InvalidInput(
            SearchErrorCode.INVALID_CANDIDATES,
            f"candidates must be between 1 and {MAX_CANDIDATES}",
            field="options.candidates",
        )
    if options.personalize is not None:
        if not options.personalize.user_id.strip():
            raise InvalidInput(
                SearchErrorCode.INVALID_PERSONALIZE,
                "personalize.userId is empty; pass the id your app gives the user in feedback",
                field="options.personalize.userId",
            )
        if not 0.0 <= options.personalize.weight <= 1.0:
            raise InvalidInput(
                SearchErrorCode.INVALID_PERSONALIZE,
                f"personalize.weight must be between 0 and 1, got {options.personalize.weight}",
                field="options.personalize.weight",
            )
    return q


# pg_textsearch scores every row in its index scan and hands the score to
# `bm25_get_current_score()`; the `<@>` expression in a SELECT list is scored again, standalone,
# row by row (issue 18: 17–29 ms for 50 rows of a SciFact query, against 0.4–1.1 ms read from the
# scan; a pasted paragraph's many terms cost more). The helper is right only when the plan is
# that index scan (on a seq scan and sort it returns whatever the backend's last scan left), so
# a search that reads it runs with sorts off (`SCAN_SCORE_SETTINGS`): with no Sort allowed, the
# ORDER BY ... LIMIT is served by the index. Only without a metadata filter, whose join with
# `documents` could read the helper above the scan; `scan_scores_hold` checks what came back.
SCAN_SCORE_SETTINGS = {"enable_sort": "off"}
# pg_textsearch 1.0 gives the ORDER BY the scan's score (instead of scoring every row again) only
# when the statement its parse hook saw last held a BM25 operator: one flag per backend, reset by
# every parse, BEGIN and set_config included. A prepared statement is parsed once and planned
# again at later executions, so in a transaction (or any time after another statement) the legs
# were planned with the flag down and each row's ORDER BY was scored standalone (keyword leg
# 12 ms against 1.2 ms on a SciFact query, here). The scope statement of a search that reads scan
# scores ends with this BM25 expression, a NULL that costs nothing, so the legs that follow are
# planned with the flag up; a pg_textsearch that tracks the flag per statement ignores it.
BM25_PLAN_PRIME = "CAST(NULL AS text) <@> CAST(NULL AS bm25query)"


def _keyword_leg(backend: str, join: str, flt: str, tenant_id: str, *, scan_scores: bool = False) -> str:
    if backend == "bm25":
        # pg_textsearch returns negative BM25: ascending order is best first, and the index is
        # used only with ORDER BY ... LIMIT. Bind the query through to_bm25query (notes, trap 4).
        # The tenant's own partition and BM25 index (migration 0005): their statistics count
        # this tenant's chunks only, so no other tenant's writes move these scores.
        partition, index = chunk_partition(tenant_id), keyword_index(tenant_id)
        score = f"(c.search_text <@> to_bm25query(:qt, '{index}'))"
        selected = "bm25_get_current_score()" if scan_scores and not flt else score
        return (
            f"SELECT c.id, c.document_id, -{selected} AS s FROM {partition} c {join} "
            f"WHERE c.tenant_id = :tenant{flt} ORDER BY {score} LIMIT :k"
        )
    # Built-in full text has no IDF; OR the terms (plainto_tsquery ANDs them) and use ts_rank.
    # ts_rank reads only the chunk and the query, never corpus statistics, so it cannot leak.
    # The OR form is cast back as is: to_tsquery would stem the stems again ('icefall' ->
    # 'icefal' -> 'icef') and miss them.
    tsq = "CAST(replace(CAST(plainto_tsquery('english', :qt) AS text), ' & ', ' | ') AS tsquery)"
    return (
        f"SELECT c.id, c.document_id, ts_rank(c.search_tsv, {tsq}, 1) AS s FROM {chunk_partition(tenant_id)} c {join} "
        f"WHERE c.tenant_id = :tenant AND c.search_tsv @@ {tsq}{flt} ORDER BY s DESC LIMIT :k"
    )


def build_sql(
    mode: Mode, backend: str, flt_sql: str, tenant_id: str, *, scan_scores: bool = False, with_text: bool = True
) -> str:
    """The legs' statement: rows of (leg, chunk id, document id, score, chunk text, ordinal).
    `scan_scores`: the keyword leg reads its scores from the BM25 index scan; run it only inside
    a transaction with `SCAN_SCORE_SETTINGS`. Without `with_text`, rows stop at the score: a
    search reads the text of the chunks it shows with their documents (`Reads.documents_with`),
    about ten, not of the hundred it ranks."""
    # Every leg reads the tenant's partition by name, never the parent `chunks`: a cached generic
    # plan over the parent would open and lock all partitions (one per tenant) on each execution.
    partition = chunk_partition(tenant_id)
    join = "JOIN documents d ON d.id = c.document_id" if flt_sql else ""
    dense = (
        f"SELECT c.id, c.document_id, 1 - (c.embedding <=> CAST(:qv AS vector)) AS s FROM {partition} c {join} "
        f"WHERE c.tenant_id = :tenant{flt_sql} ORDER BY c.embedding <=> CAST(:qv AS vector) LIMIT :k"
    )
    legs = []
    if mode in ("HYBRID", "DENSE"):
        legs.append(f"SELECT 'dense' AS leg, * FROM ({dense}) dn")
    if mode in ("HYBRID", "KEYWORD"):
        keyword = _keyword_leg(backend, join, flt_sql, tenant_id, scan_scores=scan_scores)
        legs.append(f"SELECT 'keyword' AS leg, * FROM ({keyword}) kw")
    union = " UNION ALL ".join(f"({leg})" for leg in legs)
    if not with_text:
        return f"SELECT l.leg, l.id, l.document_id, l.s FROM ({union}) l"
    return (
        f"SELECT l.leg, l.id, l.document_id, l.s, c.text, c.ordinal FROM ({union}) l "
        f"JOIN {partition} c ON c.tenant_id = :tenant AND c.id = l.id"
    )


@dataclass
class Legs:
    """Per leg, each document's best chunk score and that chunk; plus the chunks' text, when the
    statement returned it."""

    best: dict[str, dict[uuid.UUID, tuple[float, uuid.UUID]]]
    chunks: dict[uuid.UUID, tuple[str, int]]


async def fetch_legs(session: AsyncSession, sql: str, params: dict[str, Any]) -> Legs:
    """The legs through SQLAlchemy (the eval's and benches' tools; searches use `reads`)."""
    return legs_from_rows(await SessionReads(session).legs(sql, params))


def scan_scores_hold(rows: Sequence[Sequence[Any]]) -> bool:
    """Whether keyword scores read from the scan can be trusted: a plan that did not run the BM25
    index scan leaves one stale value on every row, so one row, or rows that all score the same,
    are fetched again with the standalone scores (rare: ties on every row, or a missing index)."""
    first: Any = None
    seen = 0
    for row in rows:
        if row[0] != "keyword":
            continue
        if seen and row[3] != first:
            return True  # two keyword rows that differ: the scan scored them
        first, seen = row[3], seen + 1
    return seen == 0


def legs_from_rows(rows: Iterable[Sequence[Any]]) -> Legs:
    best: dict[str, dict[uuid.UUID, tuple[float, uuid.UUID]]] = {"dense": {}, "keyword": {}}
    chunks: dict[uuid.UUID, tuple[str, int]] = {}
    for row in rows:
        leg, chunk_id, doc_id, score = row[0], row[1], row[2], row[3]
        if leg == "keyword" and score <= 0:
            continue  # no query term in this chunk
        if len(row) > 4:
            chunks[chunk_id] = (row[4], row[5])
        current = best[leg].get(doc_id)
        if current is None or score > current[0]:
            best[leg][doc_id] = (float(score), chunk_id)
    return Legs(best, chunks)


@asynccontextmanager
async def _transaction(
    db: Database, tenant_id: str, *, personal_session: bool, settings: dict[str, str] | None
) -> AsyncIterator[tuple[Reads, AsyncSession | None]]:
    """The search's tenant transaction: a bare asyncpg one, or an ORM session when the search
    is personalised (the profile's lookups are ORM code). With `settings` (scan scores), the
    bare connection's scope statement primes pg_textsearch's planner (BM25_PLAN_PRIME); the
    session's is a prepared statement, parsed once, so its legs are primed just before they run
    (`_leg_rows`)."""
    if personal_session:
        async with db.session(tenant_id, settings) as session:
            yield SessionReads(session), session
    else:
        async with db.connection(tenant_id, settings, BM25_PLAN_PRIME if settings else None) as conn:
            yield RawReads(conn), None


async def _leg_rows(
    reads: Reads, sql: str, params: dict[str, Any], fallback_sql: Callable[[], str] | None
) -> list[Any]:
    """The legs' rows; with `fallback_sql` (the scores read from the scan), fetched again with
    standalone scores, by the statement it builds, when the scan's cannot be trusted
    (`scan_scores_hold`). Built only then: nearly every search never needs it."""
    if fallback_sql is not None and isinstance(reads, SessionReads):
        # The profile's lookups ran since the scope statement: prime right before the legs.
        await reads.simple(f"SELECT {BM25_PLAN_PRIME}")
    rows = await reads.legs(sql, params)
    if fallback_sql is not None and not scan_scores_hold(rows):
        rows = await reads.legs(fallback_sql(), params)
    return rows


def leg_query(
    mode: Mode,
    keyword_backend: str,
    tenant_id: str,
    query: str,
    query_vector: Any,
    depth: int,
    flt: MetadataFilter | None,
    *,
    scan_scores: bool = False,
    with_text: bool = False,
) -> tuple[Any, dict[str, Any]]:
    """The legs' statement and its parameters. A search reads the shown chunks' text later, so
    the default leaves it out; the eval's tools ask for it (`with_text`)."""
    compiled = compile_filter(flt, alias="d", path="options.filter")
    params: dict[str, Any] = {"tenant": tenant_id, "k": depth, **compiled.params}
    if mode != "KEYWORD":
        params["qv"] = query_vector
    if mode != "DENSE":
        params["qt"] = query
    sql = build_sql(mode, keyword_backend, compiled.sql, tenant_id, scan_scores=scan_scores, with_text=with_text)
    return sql, params


async def search(
    *,
    db: Database,
    tenant_id: str,
    query_vector: Any,
    query: str,
    first: int,
    options: SearchOptions,
    keyword_backend: str,
    reranking: Reranking | None = None,
    log: bool = True,
    cache: SearchCache | None = None,
    keyword_query: str | None = None,
    log_writer: QueryLogWriter | None = None,
) -> SearchResult:
    """`keyword_query` is what the keyword leg and the snippets match (a long query's informative
    terms); it defaults to the query. With a `log_writer`, the query-log row is queued to it
    (written behind the response, domain/retrieval/query_log.py); without one it is written in
    the search's own transaction."""
    started = time.perf_counter()
    terms = keyword_query or query
    fusion: FusionMethod = options.fusion or DEFAULT_FUSION
    alpha = options.alpha if options.alpha is not None else DEFAULT_ALPHA[fusion]
    reranks = options.rerank != "NONE" and reranking is not None
    # A re-ranker sees a deeper head of the fused list than the page it returns.
    pool = max(first, reranking.config.max_candidates) if reranks and reranking else first
    # Each leg returns chunks; several can belong to one document, so dig deeper than the pool.
    depth = min(MAX_CANDIDATES, max(options.candidates, 2 * pool))
    # The keyword scores come from the BM25 scan where that is safe (see SCAN_SCORE_SETTINGS).
    scan_scores = keyword_backend == "bm25" and options.mode != "DENSE" and options.filter is None
    sql, params = leg_query(
        options.mode, keyword_backend, tenant_id, terms, query_vector, depth, options.filter, scan_scores=scan_scores
    )
    fallback_sql = (
        functools.partial(build_sql, options.mode, keyword_backend, "", tenant_id, with_text=False)
        if scan_scores
        else None
    )

    query_id = uuid.uuid4()
    outcome: RerankOutcome | None = None
    # A personalised list is one user's: never shared through the tenant's cache.
    cache = None if options.personalize is not None else cache
    cache_key = (
        await cache.key(
            tenant_id,
            keyword_backend,
            query,
            options.mode,
            fusion,
            alpha,
            depth,
            repr(options.filter),
            pool,
            options.snippets,
        )
        if cache
        else None
    )
    personalized = False
    # Written in the search's own transaction when there is no writer and no re-ranker.
    log_in_transaction = log and log_writer is None and not reranks
    # A hit this process holds with its documents needs no transaction at all (cache.py).
    resident = cache.resident(cache_key) if cache and cache_key else None
    if resident is not None and not log_in_transaction:
        hits, total = _hits_from_resident(resident)
    else:
        cached = await cache.get(cache_key) if cache and cache_key and resident is None else None
        async with _transaction(
            db,
            tenant_id,
            personal_session=options.personalize is not None,
            settings=SCAN_SCORE_SETTINGS if scan_scores else None,
        ) as (reads, session):
            user_vector = None
            if options.personalize is not None and session is not None:
                user_vector = await personal.preference(session, tenant_id, options.personalize.user_id)
                personalized = user_vector is not None
            if resident is not None:
                hits, total = _hits_from_resident(resident)
            elif cached is not None:
                hits, total = await _hits_from_cache(reads, tenant_id, *cached)
                if cache and cache_key:
                    cache.keep(cache_key, cached[0], cached[1], {h.document.id: h.document for h in hits})
            else:
                with telemetry.stage("sql"):
                    legs = legs_from_rows(await _leg_rows(reads, sql, params, fallback_sql))
                hits, total = await _fused_hits(
                    reads, legs, options, fusion, alpha, terms, pool, (tenant_id, user_vector), session
                )
                if cache and cache_key:
                    entry = [_cached(h) for h in hits]
                    await cache.put(cache_key, entry, total)
                    cache.keep(cache_key, entry, total, {h.document.id: h.document for h in hits})
            if log_in_transaction:
                took_ms = (time.perf_counter() - started) * 1000
                logged = _logged(options, fusion, alpha, first, None)
                # No extra round trip: the row rides in the transaction the search had open.
                await reads.write_log(_log_row(query_id, tenant_id, query, options, logged, hits, took_ms))
    if not reranks and not log_in_transaction:
        took_ms = (time.perf_counter() - started) * 1000
        logged = _logged(options, fusion, alpha, first, None)
    if reranks and reranking is not None:
        # Outside the transaction: a slow provider must not hold a database connection.
        texts = [f"{h.document.title}\n{h.chunk_text}" for h in hits]
        with telemetry.stage("rerank"):
            outcome = await reranking.rerank(options.rerank, query, texts, context=options.rerank_context)
        hits = apply_rerank(hits, outcome)[:first]
        took_ms = (time.perf_counter() - started) * 1000
        logged = _logged(options, fusion, alpha, first, outcome)
        if log and log_writer is None:
            async with db.connection(tenant_id) as conn:
                await RawReads(conn).write_log(_log_row(query_id, tenant_id, query, options, logged, hits, took_ms))
    if log and log_writer is not None:
        log_writer.add(_log_row(query_id, tenant_id, query, options, logged, hits, took_ms))
    return SearchResult(
        hits=hits,
        total_candidates=total,
        query_id=query_id,
        took_ms=took_ms,
        fusion=fusion,
        alpha=alpha,
        keyword_backend=keyword_backend,
        options=logged,
        rerank=outcome,
        personalized=personalized,
    )


def _logged(
    options: SearchOptions, fusion: str, alpha: float, first: int, outcome: RerankOutcome | None
) -> dict[str, Any]:
    return {
        "first": first,
        "fusion": fusion,
        "alpha": alpha,
        "candidates": options.candidates,
        "filtered": options.filter is not None,
        "rerank": outcome.applied if outcome else "NONE",
        "personalized": options.personalize is not None,
    }


def _log_row(
    query_id: uuid.UUID,
    tenant_id: str,
    query: str,
    options: SearchOptions,
    logged: dict[str, Any],
    hits: list[Hit],
    took_ms: float,
) -> dict[str, Any]:
    """The columns of one `query_log` row (a plain dict: no model to build on the hot path)."""
    return {
        "id": query_id,
        "tenant_id": tenant_id,
        "query": query,
        "mode": options.mode,
        "options": logged,
        "result_count": len(hits),
        "document_ids": [str(h.document.id) for h in hits],
        "took_ms": took_ms,
        "created_at": utcnow(),
    }


async def _fused_hits(
    reads: Reads,
    legs: Legs,
    options: SearchOptions,
    fusion: FusionMethod,
    alpha: float,
    query: str,
    pool: int,
    user: tuple[str, Any],
    session: AsyncSession | None = None,
) -> tuple[list[Hit], int]:
    """`user` is (tenant, preference vector or None): with a vector (and the session it was read
    in), the head is personalised."""
    best, chunks = legs.best, legs.chunks
    dense = {d: s for d, (s, _) in best["dense"].items()}
    keyword = {d: s for d, (s, _) in best["keyword"].items()}
    with telemetry.stage("fusion"):
        if options.mode == "DENSE":
            fused = dict(dense)
        elif options.mode == "KEYWORD":
            fused = dict(keyword)
        else:
            fused = fuse(dense, keyword, method=fusion, alpha=alpha)
        dense_ranks, keyword_ranks = ranks(dense), ranks(keyword)
        ordered = sorted(fused, key=lambda d: -fused[d])
    affinity: dict[uuid.UUID, float] = {}
    tenant_id, user_vector = user
    if user_vector is not None and options.personalize is not None and session is not None:
        head = ordered[: max(pool, personal.HEAD)]
        affinity = await personal.affinities(session, tenant_id, user_vector, head)
        blended = personal.blend({d: fused[d] for d in head}, affinity, options.personalize.weight)
        ordered = sorted(head, key=lambda d: -blended[d])
        fused = {**fused, **blended}
    top = ordered[:pool]
    # The chunk shown is the keyword leg's best where both matched: it holds the query terms.
    shown = {doc_id: (best["keyword"].get(doc_id) or best["dense"][doc_id])[1] for doc_id in top}
    unread = [chunk_id for chunk_id in shown.values() if chunk_id not in chunks]
    if unread:
        docs, texts = await reads.documents_with(tenant_id, top, unread)
        chunks = {**chunks, **texts}
    else:
        docs = await reads.documents(tenant_id, top) if top else {}
    hits: list[Hit] = []
    for doc_id in top:
        chunk_id = shown[doc_id]
        if doc_id not in docs or chunk_id not in chunks:
            continue  # deleted or re-ingested since the legs were read
        chunk_text, ordinal = chunks[chunk_id]
        hits.append(
            Hit(
                document=docs[doc_id],
                chunk_id=chunk_id,
                chunk_text=chunk_text,
                chunk_ordinal=ordinal,
                snippet=highlight(chunk_text or docs[doc_id].title, query) if options.snippets else "",
                score=fused[doc_id],
                dense=dense.get(doc_id),
                keyword=keyword.get(doc_id),
                fused=fused[doc_id],
                dense_rank=dense_ranks.get(doc_id),
                keyword_rank=keyword_ranks.get(doc_id),
                fused_rank=len(hits) + 1,
                personal=affinity.get(doc_id),
            )
        )
    return hits, len(fused)


def _cached(hit: Hit) -> CachedHit:
    return CachedHit(
        document_id=hit.document.id,
        chunk_id=hit.chunk_id,
        chunk_text=hit.chunk_text,
        chunk_ordinal=hit.chunk_ordinal,
        snippet=hit.snippet,
        score=hit.score,
        dense=hit.dense,
        keyword=hit.keyword,
        fused=hit.fused,
        dense_rank=hit.dense_rank,
        keyword_rank=hit.keyword_rank,
        fused_rank=hit.fused_rank,
    )


def _hits_from_resident(entry: Resident) -> tuple[list[Hit], int]:
    """Fresh hits (a re-ranker changes its own) over the documents this process holds for the entry."""
    return [Hit(**fields) for fields in entry.hit_fields], entry.total


async def _hits_from_cache(reads: Reads, tenant_id: str, cached: list[CachedHit], total: int) -> tuple[list[Hit], int]:
    """The cached list with its documents read now (one indexed lookup): the version in the key
    guarantees none was written since, and nothing but ids and scores is kept outside PostgreSQL."""
    ids = [h.document_id for h in cached]
    docs = await reads.documents(tenant_id, ids) if ids else {}
    hits = [
        Hit(document=docs[h.document_id], **{k: v for k, v in h.__dict__.items() if k != "document_id"})
        for h in cached
        if h.document_id in docs
    ]
    return hits, total


def apply_rerank(hits: list[Hit], outcome: RerankOutcome) -> list[Hit]:
    """Reorder by the outcome. `score` becomes the re-rank score where there is one; the fused score
    stays in `fused`, and the rank change is recorded either way."""
    reordered = [hits[i] for i in outcome.order]
    for final_rank, hit in enumerate(reordered, start=1):
        position = hit.fused_rank - 1
        if outcome.applied != "NONE":
            hit.rank_change = hit.fused_rank - final_rank
            hit.rerank = outcome.scores.get(position)
            if hit.rerank is not None:
                hit.score = hit.rerank
    return reordered
