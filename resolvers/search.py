"""The search resolver, and the conversions from search results that answers reuse."""

from __future__ import annotations

import strawberry
from strawberry.types.nodes import SelectedField, Selection

from domain.rerank.service import Reranking, RerankOutcome
from domain.retrieval import search as retrieval
from domain.retrieval.personal import Personalize
from resolvers.filters import to_domain_filter
from schema.context import Context
from schema.documents import Chunk, Document
from schema.search import (
    FusionMethod,
    RerankInfo,
    RerankStrategy,
    ScoreBreakdown,
    SearchHit,
    SearchOptions,
    SearchResult,
)


def to_search_hit(h: retrieval.Hit) -> SearchHit:
    return SearchHit(
        document=Document.from_row(h.document),
        chunk=Chunk.build(h.chunk_id, h.chunk_ordinal, h.chunk_text),
        snippet=h.snippet,
        score=h.score,
        scores=ScoreBreakdown(
            dense=h.dense,
            keyword=h.keyword,
            fused=h.fused,
            rerank=h.rerank,
            dense_rank=h.dense_rank,
            keyword_rank=h.keyword_rank,
            fused_rank=h.fused_rank,
            rank_change=h.rank_change,
            personal=h.personal,
        ),
    )


def to_rerank_info(outcome: RerankOutcome | None, reranking: Reranking) -> RerankInfo:
    if outcome is None:
        return RerankInfo(
            requested=RerankStrategy.NONE, applied=RerankStrategy.NONE, model=None, fallback_reason=None, took_ms=0.0
        )
    return RerankInfo(
        requested=RerankStrategy(outcome.requested),
        applied=RerankStrategy(outcome.applied),
        model=reranking.model(outcome.applied),
        fallback_reason=outcome.fallback_reason,
        took_ms=outcome.took_ms,
    )


def selects(selections: list[Selection], path: tuple[str, ...]) -> bool:
    """Whether the selection reaches the field at `path` (through fragments; a field under
    @skip or @include counts as selected, which only costs the work it saves)."""
    for selection in selections:
        if not isinstance(selection, SelectedField):
            if selects(selection.selections, path):
                return True
        elif selection.name == path[0] and (len(path) == 1 or selects(selection.selections, path[1:])):
            return True
    return False


async def search(
    info: strawberry.Info[Context], query: str, first: int = 10, options: SearchOptions | None = None
) -> SearchResult:
    s = info.context.services
    opts = options or SearchOptions()
    domain_opts = retrieval.SearchOptions(
        mode=opts.mode.value,
        fusion=opts.fusion.value if opts.fusion else None,
        alpha=opts.alpha,
        candidates=opts.candidates,
        filter=to_domain_filter(opts.filter),
        rerank=opts.rerank.value,
        personalize=Personalize(str(opts.personalize.user_id), opts.personalize.weight) if opts.personalize else None,
        # The field's own nodes (under whatever alias): does any of them select its hits' snippet?
        snippets=any(selects(field.selections, ("hits", "snippet")) for field in info.selected_fields),
    )
    result = await s.searching.search(info.context.tenant_id, query, first, domain_opts)
    return SearchResult(
        hits=[to_search_hit(h) for h in result.hits],
        total_candidates=result.total_candidates,
        query_id=strawberry.ID(str(result.query_id)),
        took_ms=result.took_ms,
        fusion=FusionMethod(result.fusion),
        alpha=result.alpha,
        rerank=to_rerank_info(result.rerank, s.reranking),
        personalized=result.personalized,
    )
