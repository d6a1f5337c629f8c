"""Search types and inputs."""

from __future__ import annotations

from enum import Enum

import strawberry
from strawberry.scalars import JSON

from schema.documents import Chunk, Document


@strawberry.enum
class SearchMode(Enum):
    HYBRID = "HYBRID"
    DENSE = "DENSE"
    KEYWORD = "KEYWORD"


@strawberry.enum
class FusionMethod(Enum):
    RRF = "RRF"
    RELATIVE_SCORE = "RELATIVE_SCORE"
    ZSCORE = "ZSCORE"
    LEARNED = strawberry.enum_value(
        "LEARNED", description="A logistic model over both legs' scores and ranks, fitted on SciFact train."
    )


@strawberry.enum(
    description="How candidates are re-ordered after fusion. An unavailable or failing re-ranker falls back "
    "to the fused order, and `RerankInfo` says so."
)
class RerankStrategy(Enum):
    NONE = "NONE"
    COHERE = "COHERE"
    LLM = "LLM"


@strawberry.enum
class ConditionOp(Enum):
    EQ = "EQ"
    NE = "NE"
    IN = "IN"
    GT = "GT"
    GTE = "GTE"
    LT = "LT"
    LTE = "LTE"
    CONTAINS = "CONTAINS"
    EXISTS = "EXISTS"


@strawberry.input
class Condition:
    field: str
    op: ConditionOp
    value: JSON | None = None


@strawberry.input(description="Documents must match every `all` condition and at least one `any` condition.")
class MetadataFilter:
    all: list[Condition] | None = None
    any: list[Condition] | None = None


@strawberry.input
class SearchOptions:
    mode: SearchMode = SearchMode.HYBRID
    fusion: FusionMethod | None = strawberry.field(default=None, description="Default: ZSCORE (tuned on train).")
    alpha: float | None = strawberry.field(default=None, description="Weight of the dense leg, 0..1.")
    candidates: int = strawberry.field(default=50, description="Depth of each leg before fusion.")
    filter: MetadataFilter | None = None
    rerank: RerankStrategy = RerankStrategy.NONE
    personalize: PersonalizeInput | None = strawberry.field(
        default=None, description="Blend the user's learned profile (from feedback) into the ranking."
    )


@strawberry.input
class PersonalizeInput:
    user_id: strawberry.ID = strawberry.field(description="The id your app gives the user in feedback.")
    weight: float = strawberry.field(default=0.3, description="Weight of the profile against the query, 0..1.")


@strawberry.type
class ScoreBreakdown:
    dense: float | None
    keyword: float | None
    fused: float
    rerank: float | None = strawberry.field(description="Null unless a re-ranker ran and scored this hit.")
    dense_rank: int | None
    keyword_rank: int | None
    fused_rank: int = strawberry.field(description="Rank after fusion, before any re-ranking (1 = best).")
    rank_change: int | None = strawberry.field(
        description="Fused rank minus final rank: positive means the re-ranker moved the hit up."
    )
    personal: float | None = strawberry.field(
        default=None, description="Cosine to the user's profile; null unless the search was personalised."
    )


@strawberry.type(description="What re-ranking was asked for, what actually ran, and why not if it did not.")
class RerankInfo:
    requested: RerankStrategy
    applied: RerankStrategy
    model: str | None
    fallback_reason: str | None
    took_ms: float


@strawberry.type
class SearchHit:
    document: Document
    chunk: Chunk
    snippet: str = strawberry.field(description="HTML-escaped excerpt; query terms wrapped in <mark>.")
    score: float
    scores: ScoreBreakdown


@strawberry.type
class SearchResult:
    hits: list[SearchHit]
    total_candidates: int
    query_id: strawberry.ID
    took_ms: float
    fusion: FusionMethod
    alpha: float
    rerank: RerankInfo
    personalized: bool = strawberry.field(
        default=False, description="False when personalisation was asked for but the user has no profile yet."
    )
