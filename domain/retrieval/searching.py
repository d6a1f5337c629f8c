"""The search area, built once at start: validation, the query embedding, the search and its cache
in one call. The GraphQL resolver and answers both go through it."""

from __future__ import annotations

import asyncio
import hashlib
from dataclasses import dataclass
from typing import Any

import numpy as np

from domain import telemetry
from domain.caching.store import CacheStore
from domain.persistence.database import Database
from domain.providers.embedding import Embedder
from domain.rerank.service import Reranking
from domain.retrieval.cache import SearchCache
from domain.retrieval.long_query import TermStatistics, embed_any_length
from domain.retrieval.query_log import QueryLogWriter
from domain.retrieval.search import SearchOptions, SearchResult, search, validate


async def _none() -> None:
    return None


@dataclass(frozen=True)
class Searching:
    db: Database
    embedder: Embedder
    keyword_backend: str
    reranking: Reranking
    cache: SearchCache | None = None
    max_query_chars: int = 10_000
    terms: TermStatistics | None = None  # long queries' keyword terms; None keeps every word
    # Query vectors, keyed by model, backend and text (no tenant: the same text has the same vector).
    embeddings: CacheStore | None = None
    embedding_ttl_s: float = 24 * 3600.0
    # Query-log rows written behind the response, in batches (None: in the search's transaction).
    log_writer: QueryLogWriter | None = None

    async def search(self, tenant_id: str, query: str, first: int, options: SearchOptions) -> SearchResult:
        """A user's search: validated, logged (for feedback and analytics), cached per tenant."""
        q = validate(query, first, options, max_query_chars=self.max_query_chars)
        return await self._run(tenant_id, q, first, options, log=True, cache=self.cache)

    async def retrieve(self, tenant_id: str, query: str, first: int, options: SearchOptions) -> SearchResult:
        """Retrieval on behalf of another area (answers): its caller validated the text, and it is
        neither logged as a user's search nor cached."""
        return await self._run(tenant_id, query, first, options, log=False, cache=None)

    async def _run(
        self, tenant_id: str, query: str, first: int, options: SearchOptions, *, log: bool, cache: SearchCache | None
    ) -> SearchResult:
        # The embedding (CPU, off the loop) and a long query's term selection (two round trips to
        # PostgreSQL) do not depend on each other: run them at once, so a pasted paragraph waits
        # for the slower of the two rather than their sum.
        embedding = self.query_vector(query) if options.mode != "KEYWORD" else _none()
        selects = self.terms is not None and options.mode != "DENSE" and self.terms.selects_terms(query)
        if selects and self.terms is not None:
            vector, keyword_query = await asyncio.gather(embedding, self.terms.informative(tenant_id, query))
        else:
            # A typed query keeps every word: no second task to schedule (a repeated search's
            # whole server time is a millisecond or two; two tasks and a gather were a few percent).
            vector, keyword_query = await embedding, None
        return await search(
            db=self.db,
            tenant_id=tenant_id,
            query_vector=vector,
            query=query,
            first=first,
            options=options,
            keyword_backend=self.keyword_backend,
            reranking=self.reranking,
            log=log,
            cache=cache,
            keyword_query=keyword_query,
            log_writer=self.log_writer,
        )

    async def flush_log(self) -> None:
        """Wait until this process's queued query-log rows are stored: call before reading
        `query_log` (a feedback event naming a queryId, analytics)."""
        if self.log_writer is not None:
            await self.log_writer.flush()

    async def query_vector(self, query: str) -> Any:
        if self.embeddings is None or self.embedding_ttl_s <= 0:
            with telemetry.stage("embed"):
                return await embed_any_length(self.embedder, query)
        backend = getattr(self.embedder, "backend", "remote")
        digest = hashlib.sha256(query.encode()).hexdigest()
        key = f"embedding:{self.embedder.name}:{backend}:{self.embedder.dim}:{digest}"
        raw = await self.embeddings.get(key)
        if raw is not None and len(raw) == 4 * self.embedder.dim:
            telemetry.cache_lookup("embedding", True)
            return np.frombuffer(raw, dtype=np.float32).copy()
        telemetry.cache_lookup("embedding", False)
        with telemetry.stage("embed"):
            vector = await embed_any_length(self.embedder, query)
        await self.embeddings.set(key, np.asarray(vector, dtype=np.float32).tobytes(), self.embedding_ttl_s)
        return vector
