"""recommendations and similarDocuments."""

from __future__ import annotations

import strawberry

from domain.recommendations.service import RecommendRequest
from domain.recommendations.similar import similar_documents as find_similar
from resolvers.filters import to_domain_filter
from resolvers.search import to_rerank_info, to_search_hit
from schema.common import from_global_id
from schema.context import Context
from schema.documents import Document
from schema.recommendations import (
    Recommendation,
    RecommendationOptions,
    RecommendationResult,
    RecommendationSource,
)
from schema.search import MetadataFilter, SearchHit


async def recommendations(
    info: strawberry.Info[Context],
    user_id: strawberry.ID | None = None,
    context: str | None = None,
    first: int = 10,
    options: RecommendationOptions | None = None,
) -> RecommendationResult:
    s = info.context.services
    opts = options or RecommendationOptions()
    request = RecommendRequest(
        user_id=str(user_id) if user_id is not None else info.context.principal.subject,
        context=context,
        first=first,
        exclude_seen=opts.exclude_seen,
        diversity=opts.diversity,
        filter=to_domain_filter(opts.filter),
        rerank=opts.rerank.value,
        strategy=opts.strategy.value,
    )
    result = await s.recommender.recommend(info.context.tenant_id, request)
    return RecommendationResult(
        items=[
            Recommendation(
                document=Document.from_row(item.document),
                score=item.score,
                reasons=item.reasons,
                sources=[RecommendationSource(x) for x in item.sources],
            )
            for item in result.items
        ],
        strategy=result.strategy,
        sources=[RecommendationSource(x) for x in result.sources],
        query_id=strawberry.ID(str(result.query_id)),
        took_ms=result.took_ms,
        rerank=to_rerank_info(result.rerank, s.reranking),
    )


async def similar_documents(
    info: strawberry.Info[Context], id: strawberry.ID, first: int = 10, filter: MetadataFilter | None = None
) -> list[SearchHit]:
    _, document_id = from_global_id(id, expected="Document")
    hits = await find_similar(
        info.context.services.db, info.context.tenant_id, document_id, first, to_domain_filter(filter)
    )
    return [to_search_hit(h) for h in hits]
