"""Analytics types: one tenant's usage over a time window."""

from __future__ import annotations

from datetime import datetime

import strawberry

from domain.analytics.service import AnalyticsReport


@strawberry.type(description="A normalised query (trimmed, lower-cased) and how many searches used it.")
class QueryCount:
    query: str
    count: int


@strawberry.type(description="Feedback events of one kind created in the window.")
class FeedbackCount:
    kind: str = strawberry.field(description="A feedback kind, e.g. CLICK or ANSWER_HELPFUL.")
    count: int


@strawberry.type(description="Answers created in the window, by final status.")
class AnswersByStatus:
    done: int
    error: int
    cancelled: int


@strawberry.type(description="Tokens spent by answers created in the window.")
class TokenUsage:
    prompt: int
    completion: int
    total: int = strawberry.field(description="prompt + completion.")


@strawberry.type(
    description="One tenant's usage in the window [from, to). Searches are HYBRID, DENSE and KEYWORD "
    "queries; rates are null when their denominator is zero."
)
class Analytics:
    from_: datetime = strawberry.field(name="from", description="Start of the window, inclusive.")
    to: datetime = strawberry.field(description="End of the window, exclusive.")
    search_count: int = strawberry.field(description="Searches run in the window.")
    recommendation_count: int = strawberry.field(description="Recommendation requests in the window.")
    latency_p50_ms: float | None = strawberry.field(description="Median search latency (interpolated).")
    latency_p95_ms: float | None = strawberry.field(description="95th percentile search latency (interpolated).")
    zero_result_rate: float | None = strawberry.field(description="Searches with no results / searches.")
    top_queries: list[QueryCount] = strawberry.field(description="Most frequent queries; ties by query text.")
    top_zero_result_queries: list[QueryCount] = strawberry.field(
        description="Queries that most often returned no results; the count is of those searches."
    )
    search_clicks: int = strawberry.field(
        description="CLICK events on the window's searches, whenever the click happened."
    )
    clicked_searches: int = strawberry.field(description="The window's searches with at least one click.")
    click_through_rate: float | None = strawberry.field(description="Searches with at least one click / searches.")
    feedback_counts: list[FeedbackCount] = strawberry.field(
        description="Feedback events created in the window, one entry per kind, zeros included."
    )
    answer_count: int = strawberry.field(description="Answers created in the window.")
    answers_by_status: AnswersByStatus
    helpful_answers: int = strawberry.field(description="ANSWER_HELPFUL events created in the window.")
    unhelpful_answers: int = strawberry.field(description="ANSWER_UNHELPFUL events created in the window.")
    answer_helpfulness_rate: float | None = strawberry.field(
        description="helpfulAnswers / (helpfulAnswers + unhelpfulAnswers)."
    )
    tokens: TokenUsage

    @classmethod
    def from_report(cls, r: AnalyticsReport) -> Analytics:
        return cls(
            from_=r.start,
            to=r.end,
            search_count=r.search_count,
            recommendation_count=r.recommendation_count,
            latency_p50_ms=r.latency_p50_ms,
            latency_p95_ms=r.latency_p95_ms,
            zero_result_rate=r.zero_result_rate,
            top_queries=[QueryCount(query=q.query, count=q.count) for q in r.top_queries],
            top_zero_result_queries=[QueryCount(query=q.query, count=q.count) for q in r.top_zero_result_queries],
            search_clicks=r.search_clicks,
            clicked_searches=r.clicked_searches,
            click_through_rate=r.click_through_rate,
            feedback_counts=[FeedbackCount(kind=k.kind, count=k.count) for k in r.feedback_counts],
            answer_count=r.answer_count,
            answers_by_status=AnswersByStatus(
                done=r.answers_by_status["done"],
                error=r.answers_by_status["error"],
                cancelled=r.answers_by_status["cancelled"],
            ),
            helpful_answers=r.helpful_answers,
            unhelpful_answers=r.unhelpful_answers,
            answer_helpfulness_rate=r.answer_helpfulness_rate,
            tokens=TokenUsage(prompt=r.tokens.prompt, completion=r.tokens.completion, total=r.tokens.total),
        )
