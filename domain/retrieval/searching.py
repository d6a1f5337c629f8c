"""The search area, built once at start: validation, the query embedding, the search and its cache
in one call. The GraphQL resolver and answers both go through it."""

from __future__ import annotations

from dataclasses import dataclass

from domain.persistence.database import Database
from domain.providers.embedding import Embedder
from domain.rerank.service import Reranking
from domain.retrieval.cache import SearchCache
from domain.retrieval.long_query import TermStatistics, embed_any_length
from domain.retrieval.search import SearchOptions, SearchResult, search, validate


@dataclass(frozen=True)
class Searching:
    db: Database
    embedder: Embedder
    keyword_backend: str
    reranking: Reranking
    cache: SearchCache | None = None
    max_query_chars: int = 10_000
    terms: TermStatistics | None = None  # long queries' keyword terms; None keeps every word

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
        vector = await embed_any_length(self.embedder, query) if options.mode != "KEYWORD" else None
        keyword_query = None
        if self.terms is not None and options.mode != "DENSE":
            keyword_query = await self.terms.informative(tenant_id, query)
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
        )
