"""Answer types: the plain query's `Answer`, and the subscription's event union."""

from __future__ import annotations

from enum import Enum
from typing import Annotated

import strawberry

from schema.common import Node
from schema.documents import Document
from schema.error_codes import ErrorCode
from schema.search import MetadataFilter, RerankInfo, RerankStrategy, SearchHit


@strawberry.enum
class Audience(Enum):
    BEGINNER = "BEGINNER"
    EXPERT = "EXPERT"


@strawberry.input
class AnswerOptions:
    sources: int = strawberry.field(default=5, description="How many retrieved chunks the generator reads.")
    filter: MetadataFilter | None = None
    rerank: RerankStrategy = RerankStrategy.NONE
    selected_text: str | None = strawberry.field(
        default=None, description="Answer only from this passage (what the user selected); nothing is retrieved."
    )
    audience: Audience | None = strawberry.field(
        default=None, description="How the answer explains things (LLM generator; the extractive one ignores it)."
    )
    session_id: strawberry.ID | None = strawberry.field(
        default=None, description="Continue a conversation: earlier turns are condensed into the retrieval query."
    )


@strawberry.type(description="A source the answer cites as [number].")
class Citation:
    number: int
    title: str
    document: Document | None = strawberry.field(description="Null when the source is the selected text.")
    chunk_id: strawberry.ID | None


@strawberry.type
class Usage:
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


@strawberry.type(
    description="A stored answer; `node(id:)` reads it back. Read back (or reused for a repeated question), "
    "its sources keep the score they had and no per-leg breakdown."
)
class Answer(Node):
    id: strawberry.ID = strawberry.field(description="Refer to this answer in submitFeedback(answerId:).")
    session_id: strawberry.ID = strawberry.field(description="Pass as options.sessionId to ask a follow-up.")
    question: str
    retrieval_query: str | None = strawberry.field(description="What was searched, after condensing the session.")
    text: str
    sources: list[SearchHit] = strawberry.field(description="Numbered in order: sources[0] is [1].")
    citations: list[Citation]
    dropped_citations: list[str] = strawberry.field(description="Citations the generator made up; removed.")
    usage: Usage | None
    generator: str
    rerank: RerankInfo | None
    notes: list[str]
    took_ms: float
    first_token_ms: float | None


@strawberry.type(description="First event: the sources the answer will cite, numbered from 1.")
class AnswerSources:
    answer_id: strawberry.ID
    session_id: strawberry.ID
    retrieval_query: str | None
    sources: list[SearchHit]
    rerank: RerankInfo | None


@strawberry.type
class AnswerDelta:
    answer_id: strawberry.ID
    text: str


@strawberry.type
class AnswerDone:
    answer_id: strawberry.ID
    session_id: strawberry.ID
    text: str
    citations: list[Citation]
    dropped_citations: list[str]
    usage: Usage | None
    generator: str
    notes: list[str]
    took_ms: float
    first_token_ms: float | None


@strawberry.type(
    description="Ends a stream that could not finish. Raised before the answer started (bad input), its "
    "answerId names an attempt that was not stored."
)
class AnswerError:
    answer_id: strawberry.ID
    code: Enum = strawberry.field(graphql_type=ErrorCode)
    message: str
    field: str | None


AnswerEvent = Annotated[AnswerSources | AnswerDelta | AnswerDone | AnswerError, strawberry.union("AnswerEvent")]
