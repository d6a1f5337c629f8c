"""Recommendation types and options."""

from __future__ import annotations

from enum import Enum

import strawberry

from schema.documents import Document
from schema.search import MetadataFilter, RerankInfo, RerankStrategy


@strawberry.enum(description="Which candidate sources to use. BLENDED (the default) uses them all.")
class RecommendationStrategy(Enum):
    BLENDED = "BLENDED"
    CONTENT = "CONTENT"
    COLLABORATIVE = "COLLABORATIVE"
    POPULAR = "POPULAR"


@strawberry.enum(description="Where a recommendation came from.")
class RecommendationSource(Enum):
    PROFILE = "PROFILE"
    CONTEXT = "CONTEXT"
    MODEL = "MODEL"
    CO_ENGAGEMENT = "CO_ENGAGEMENT"
    POPULAR = "POPULAR"


@strawberry.input
class RecommendationOptions:
    exclude_seen: bool = strawberry.field(
        default=True, description="Leave out documents this user has any feedback on."
    )
    diversity: float = strawberry.field(
        default=0.3, description="0 = pure relevance, 1 = maximal diversity (MMR over document vectors)."
    )
    filter: MetadataFilter | None = None
    rerank: RerankStrategy = strawberry.field(
        default=RerankStrategy.NONE, description="Re-rank the list; the LLM sees the user's likes and context."
    )
    strategy: RecommendationStrategy = RecommendationStrategy.BLENDED


@strawberry.type
class Recommendation:
    document: Document
    score: float = strawberry.field(description="The blended score before diversification (higher is better).")
    reasons: list[str] = strawberry.field(description="Why it is here, most important first.")
    sources: list[RecommendationSource]


@strawberry.type
class RecommendationResult:
    items: list[Recommendation]
    strategy: str = strawberry.field(
        description="The strategy and the sources that contributed, e.g. 'blended: profile+popular'."
    )
    sources: list[RecommendationSource]
    query_id: strawberry.ID = strawberry.field(
        description="Pass as submitFeedback(queryId:) for clicks on these items."
    )
    took_ms: float
    rerank: RerankInfo
