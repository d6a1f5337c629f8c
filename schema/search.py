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


@strawberry.type
class ScoreBreakdown:
    dense: float | None
    keyword: float | None
    fused: float
    dense_rank: int | None
    keyword_rank: int | None


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
