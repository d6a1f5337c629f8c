"""Queries of any length ("find passages like this one").

Dense leg: the model reads 256 word pieces and silently drops the rest, so a longer query is cut
into windows that each fit, and the windows' unit vectors are averaged (then normalised again).
Keyword leg: a pasted paragraph ORs hundreds of terms, most of them common; it keeps the
`cap` rarest terms, rarity estimated from a sample of the tenant's chunks (cached per tenant)."""

from __future__ import annotations

import asyncio
import functools
import itertools
import logging
import math
import re
import time
from dataclasses import dataclass, field

import numpy as np
from sqlalchemy import text

from domain.persistence.database import Database
from domain.providers.embedding import Embedder, Vectors
from domain.providers.query_lru import QueryVectorLRU
from domain.retrieval.tenant_index import chunk_partition

log = logging.getLogger("ragql.search")
_WORD = re.compile(r"\w+", re.UNICODE)
KEYWORD_TERM_CAP = 48
SAMPLE_CHUNKS = 2000


def _sample_sql(tenant_id: str) -> str:
    # The tenant's own partition by name (tenant_index.py); the name is derived hex, not input.
    # ts_stat takes its query as text.
    partition = chunk_partition(tenant_id)
    return f"SELECT to_tsvector('english', search_text) FROM {partition} LIMIT {SAMPLE_CHUNKS}"  # noqa: S608


STATS_TTL_S = 600.0


# A pasted paragraph's pooled vector is kept in the embedder's own memory of query vectors
# (`query_cache`, off with RAGQL_EMBEDDING_CACHE_TTL_S=0), under a key no typed query can have:
# the same text's `embed_query` vector is its first window only.
_POOLED_KEY = "\x00pooled windows\x00"


def query_windows(query: str, tokens: int, limit: int, lanes: int = 1) -> list[str]:
    """A query of more than `limit` word pieces as windows that each fit, of equal word counts.
    Word pieces per word vary, so windows are sized from this query's own ratio, with a margin.
    Their number is rounded up to a multiple of the encoder's `lanes` (cores): the windows run
    side by side, one per lane, so 3 windows on 2 lanes take two rounds of full windows, and 4
    smaller ones two rounds of three-quarter windows (the encoder's cost follows the pieces)."""
    words = query.split()
    per_window = max(1, int(len(words) * limit / tokens * 0.9))
    count = math.ceil(len(words) / per_window)
    if lanes > 1 and count % lanes:
        count += lanes - count % lanes
    count = min(count, len(words))
    # Window i holds words [i·n/count, (i+1)·n/count): `count` windows, none empty, sizes differing by one.
    bounds = [len(words) * i // count for i in range(count + 1)]
    return [" ".join(words[a:b]) for a, b in itertools.pairwise(bounds)]


async def embed_any_length(embedder: Embedder, query: str) -> Vectors:
    limit = int(getattr(embedder, "max_tokens", 0)) - 2  # [CLS] and [SEP]
    if limit <= 0:
        return await embedder.embed_query(query)
    tokens = embedder.count_tokens(query)
    if tokens <= limit:
        return await embedder.embed_query(query)

    async def pooled() -> Vectors:
        return await pool_windows(embedder, query_windows(query, tokens, limit, int(getattr(embedder, "lanes", 1))))

    # Like a typed query's: paging and refinement repeat a pasted paragraph.
    memory: QueryVectorLRU | None = getattr(embedder, "query_cache", None)
    return await memory.recall(_POOLED_KEY + query, pooled) if memory is not None else await pooled()


async def pool_windows(embedder: Embedder, windows: list[str]) -> Vectors:
    """The windows' unit vectors averaged, then normalised again."""
    # The ONNX encoder serves large requests as bulk work, after any ingest's queued batches; a
    # query's windows are a user waiting, so they go first where the embedder can tell the two apart.
    embed = getattr(embedder, "embed_interactive", embedder.embed)
    pooled = (await embed(windows)).mean(axis=0)
    norm = float(np.linalg.norm(pooled))
    return (pooled / norm if norm > 0 else pooled).astype(np.float32)


WARM_WINDOWS = 8  # the most full windows the ONNX encoder runs in one batch (2,048 tokens)


async def warm_up(embedder: Embedder) -> None:
    """Run the model once on a batch of full windows at start. The first batch of a new size pays
    for allocating its buffers (onnxruntime's arena, torch's kernels); without this the first
    pasted paragraph after a start paid it, and was the slowest query of the process."""
    limit = int(getattr(embedder, "max_tokens", 0))
    if limit <= 0:
        return  # a remote provider: nothing local to warm
    await embedder.embed([" ".join(["word"] * limit)] * WARM_WINDOWS)


@dataclass
class _Stats:
    chunks: int
    df: dict[str, int]
    at: float


@dataclass
class TermStatistics:
    """Document frequencies of stemmed terms over a sample of each tenant's chunks."""

    db: Database
    cap: int = KEYWORD_TERM_CAP
    _cache: dict[str, _Stats] = field(default_factory=dict)
    _refreshing: dict[str, asyncio.Task[_Stats]] = field(default_factory=dict)

    async def _stats(self, tenant_id: str) -> _Stats:
        hit = self._cache.get(tenant_id)
        if hit is None:
            return await self._load(tenant_id)
        if time.monotonic() - hit.at >= STATS_TTL_S and tenant_id not in self._refreshing:
            # Expired: refreshed in the background while this query uses the old sample, so only
            # a tenant's very first long query waits for the sample.
            task = asyncio.create_task(self._load(tenant_id))
            self._refreshing[tenant_id] = task
            task.add_done_callback(functools.partial(self._refreshed, tenant_id))
        return hit

    def _refreshed(self, tenant_id: str, task: asyncio.Task[_Stats]) -> None:
        self._refreshing.pop(tenant_id, None)
        if not task.cancelled() and task.exception() is not None:
            log.warning("refreshing the keyword-term sample of a tenant failed: %s", task.exception())

    async def _load(self, tenant_id: str) -> _Stats:
        async with self.db.session(tenant_id) as s:
            sample = _sample_sql(tenant_id)
            n = int((await s.execute(text(f"SELECT count(*) FROM ({sample}) x"))).scalar_one())  # noqa: S608
            rows = (await s.execute(text("SELECT word, ndoc FROM ts_stat(:q)"), {"q": sample})).all()
        stats = _Stats(n, {w: int(d) for w, d in rows}, time.monotonic())
        self._cache[tenant_id] = stats
        return stats

    async def _lexemes(self, tenant_id: str, words: list[str]) -> dict[str, str]:
        async with self.db.session(tenant_id) as s:
            rows = (
                await s.execute(
                    text(
                        "SELECT w, array_to_string(tsvector_to_array(to_tsvector('english', w)), ' ') "
                        "FROM unnest(CAST(:words AS text[])) w"
                    ),
                    {"words": words},
                )
            ).all()
        return {w: lex for w, lex in rows}

    def selects_terms(self, query: str) -> bool:
        """Whether `informative` would pick terms: more than `cap` distinct words."""
        return len(self._words(query)) > self.cap

    @staticmethod
    def _words(query: str) -> list[str]:
        return list(dict.fromkeys(w.lower() for w in _WORD.findall(query)))

    async def informative(self, tenant_id: str, query: str) -> str:
        """The query itself when it has at most `cap` distinct words; else its `cap` rarest words
        in their original order."""
        words = self._words(query)
        if len(words) <= self.cap:
            return query
        # The sample (cold once per tenant) and the query's lexemes are two independent reads.
        stats, lexeme = await asyncio.gather(self._stats(tenant_id), self._lexemes(tenant_id, words))

        def idf(word: str) -> float:
            lex = lexeme.get(word) or ""
            if not lex:
                return -1.0  # a stop word: the index ignores it anyway
            df = stats.df.get(lex, 0)
            return math.log((stats.chunks - df + 0.5) / (df + 0.5) + 1.0)

        keep = set(sorted(words, key=lambda w: -idf(w))[: self.cap])
        return " ".join(w for w in words if w in keep and idf(w) >= 0)
