"""Per-tenant analytics over a time window [start, end), computed in SQL.

Four read-only statements run in one transaction, so every figure comes from the same snapshot:

- `searches`: query_log counts, latency percentiles, zero-result counts, and search clicks;
- `top_queries`: the most frequent normalised queries, and those most often without results;
- `feedback`: feedback events per kind;
- `answers`: answers per status and token sums.

Each WHERE starts with `tenant_id = :t AND created_at >= :start AND created_at < :end`, so the
(tenant_id, created_at) indexes bound the work to the window, not to the tenant's whole history.
Only constants (the kinds and modes below) are interpolated into the SQL; every input is bound."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import text

from domain.analytics.error_codes import AnalyticsErrorCode
from domain.errors import InvalidInput
from domain.feedback.kinds import KINDS, Kind
from domain.persistence.database import Database

DEFAULT_DAYS = 30
MAX_DAYS = 366
MAX_TOP = 50
SEARCH_MODES = ("HYBRID", "DENSE", "KEYWORD")
RECOMMEND_MODE = "RECOMMEND"
ANSWER_STATUSES = ("done", "error", "cancelled")

_WINDOW = "tenant_id = :t AND created_at >= :start AND created_at < :end"
_SEARCH_MODES_SQL = "(" + ", ".join(f"'{m}'" for m in SEARCH_MODES) + ")"


@dataclass(frozen=True)
class QueryCount:
    query: str
    count: int


@dataclass(frozen=True)
class KindCount:
    kind: Kind
    count: int


@dataclass(frozen=True)
class TokenUsage:
    prompt: int
    completion: int

    @property
    def total(self) -> int:
        return self.prompt + self.completion


@dataclass(frozen=True)
class AnalyticsReport:
    start: datetime
    end: datetime
    search_count: int
    recommendation_count: int
    latency_p50_ms: float | None
    latency_p95_ms: float | None
    zero_result_count: int
    zero_result_rate: float | None
    top_queries: list[QueryCount]
    top_zero_result_queries: list[QueryCount]
    search_clicks: int
    clicked_searches: int
    click_through_rate: float | None
    feedback_counts: list[KindCount]
    answer_count: int
    answers_by_status: dict[str, int]
    helpful_answers: int
    unhelpful_answers: int
    answer_helpfulness_rate: float | None
    tokens: TokenUsage


# Clicks are counted per search by a lateral subquery rather than a join: each search in the window
# is one probe of the partial index feedback_query (tenant_id, query_id), so the cost follows the
# window's searches, never the tenant's whole click history. (A plain join lets the planner hash the
# tenant's clicks instead.) A click may come after the window closes; it still belongs to the search
# that showed the result, so feedback.created_at is not used. The mode test inside the subquery is a
# one-time filter: recommendations get 0 clicks without touching feedback.
_SEARCHES_SQL = f"""
    SELECT count(*) FILTER (WHERE q.mode IN {_SEARCH_MODES_SQL}) AS searches,
           count(*) FILTER (WHERE q.mode = '{RECOMMEND_MODE}') AS recommendations,
           percentile_cont(ARRAY[0.5, 0.95]) WITHIN GROUP (ORDER BY q.took_ms)
               FILTER (WHERE q.mode IN {_SEARCH_MODES_SQL}) AS latency,
           count(*) FILTER (WHERE q.mode IN {_SEARCH_MODES_SQL} AND q.result_count = 0) AS zero_results,
           coalesce(sum(c.clicks), 0) AS clicks,
           count(*) FILTER (WHERE c.clicks > 0) AS clicked
    FROM query_log q
    CROSS JOIN LATERAL (
        SELECT count(*) AS clicks FROM feedback f
        WHERE f.tenant_id = q.tenant_id AND f.query_id = q.id AND f.query_id IS NOT NULL AND f.kind = 'CLICK'
          AND q.mode IN {_SEARCH_MODES_SQL}
    ) c
    WHERE q.tenant_id = :t AND q.created_at >= :start AND q.created_at < :end
"""

# Both top lists come from one grouping: each normalised query is ranked twice, and a row is kept
# if it makes either list. Ties break on the query text so the order is stable.
_TOP_QUERIES_SQL = f"""
    SELECT query, searches, zero_results, by_count, by_zero
    FROM (
        SELECT query, searches, zero_results,
               row_number() OVER (ORDER BY searches DESC, query) AS by_count,
               row_number() OVER (ORDER BY zero_results DESC, query) AS by_zero
        FROM (
            SELECT lower(btrim(query)) AS query, count(*) AS searches,
                   count(*) FILTER (WHERE result_count = 0) AS zero_results
            FROM query_log
            WHERE {_WINDOW} AND mode IN {_SEARCH_MODES_SQL}
            GROUP BY 1
        ) grouped
    ) ranked
    WHERE by_count <= :top OR (zero_results > 0 AND by_zero <= :top)
"""

_FEEDBACK_SQL = (
    "SELECT " + ", ".join(f"count(*) FILTER (WHERE kind = '{k}')" for k in KINDS) + f" FROM feedback WHERE {_WINDOW}"
)

_ANSWERS_SQL = (
    "SELECT count(*), "
    + "".join(f"count(*) FILTER (WHERE status = '{s}'), " for s in ANSWER_STATUSES)
    + "coalesce(sum(prompt_tokens), 0), coalesce(sum(completion_tokens), 0)"
    + f" FROM answers WHERE {_WINDOW}"
)

ANALYTICS_STATEMENTS: dict[str, str] = {
    "searches": _SEARCHES_SQL,
    "top_queries": _TOP_QUERIES_SQL,
    "feedback": _FEEDBACK_SQL,
    "answers": _ANSWERS_SQL,
}


def statements(
    tenant_id: str, start: datetime, end: datetime, *, top: int = 10
) -> dict[str, tuple[str, dict[str, Any]]]:
    """Each statement with its bound parameters (the service runs these; tests EXPLAIN them)."""
    window = {"t": tenant_id, "start": start, "end": end}
    return {
        name: (sql, {**window, "top": top} if name == "top_queries" else dict(window))
        for name, sql in ANALYTICS_STATEMENTS.items()
    }


def _aware(value: datetime) -> datetime:
    # A timestamp without a zone is read as UTC, the zone the log is written in.
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value


EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
LATEST = datetime(9000, 1, 1, tzinfo=UTC)


def resolve_window(
    start: datetime | None, end: datetime | None, *, top: int, now: datetime | None = None
) -> tuple[datetime, datetime]:
    """Fill in the defaults (the last 30 days up to now) and check the window and `top`."""
    for value, name in ((start, "from"), (end, "to")):
        # Dates near year 1 or 9999 overflow once shifted to UTC or by the default 30 days.
        if value is not None and not EARLIEST.year <= value.year <= LATEST.year:
            raise InvalidInput(
                AnalyticsErrorCode.INVALID_RANGE,
                f"`{name}` must be between {EARLIEST.year} and {LATEST.year}",
                field=name,
            )
    resolved_end = _aware(end) if end is not None else _aware(now or datetime.now(UTC))
    resolved_start = _aware(start) if start is not None else resolved_end - timedelta(days=DEFAULT_DAYS)
    if resolved_start >= resolved_end:
        raise InvalidInput(
            AnalyticsErrorCode.INVALID_RANGE,
            f"`from` ({resolved_start.isoformat()}) must be earlier than `to` ({resolved_end.isoformat()})",
            field="from",
        )
    if resolved_end - resolved_start > timedelta(days=MAX_DAYS):
        raise InvalidInput(
            AnalyticsErrorCode.INVALID_RANGE,
            f"the range spans {(resolved_end - resolved_start).days} days; ask for at most {MAX_DAYS} at a time",
            field="from",
        )
    if not 1 <= top <= MAX_TOP:
        raise InvalidInput(
            AnalyticsErrorCode.INVALID_RANGE, f"top must be between 1 and {MAX_TOP}, got {top}", field="top"
        )
    return resolved_start, resolved_end


def _rate(part: int, whole: int) -> float | None:
    return part / whole if whole else None


def _top_lists(rows: Sequence[Any], top: int) -> tuple[list[QueryCount], list[QueryCount]]:
    """Split the ranked rows into the two lists: a row may be in both, or in just one."""
    by_count = sorted((r for r in rows if r.by_count <= top), key=lambda r: r.by_count)
    by_zero = sorted((r for r in rows if r.zero_results > 0 and r.by_zero <= top), key=lambda r: r.by_zero)
    return [QueryCount(r.query, r.searches) for r in by_count], [QueryCount(r.query, r.zero_results) for r in by_zero]


async def analytics(
    db: Database,
    tenant_id: str,
    start: datetime | None,
    end: datetime | None,
    *,
    top: int = 10,
    now: datetime | None = None,
) -> AnalyticsReport:
    start, end = resolve_window(start, end, top=top, now=now)
    sql = statements(tenant_id, start, end, top=top)
    async with db.session(tenant_id) as session:
        results = {name: await session.execute(text(q), params) for name, (q, params) in sql.items()}
        searches = results["searches"].one()
        ranked = results["top_queries"].all()
        kinds = results["feedback"].one()
        answers = results["answers"].one()

    top_queries, zero_queries = _top_lists(ranked, top)
    latency = searches.latency or [None, None]
    feedback = dict(zip(KINDS, kinds, strict=True))
    helpful, unhelpful = feedback["ANSWER_HELPFUL"], feedback["ANSWER_UNHELPFUL"]
    answer_count, *by_status, prompt_tokens, completion_tokens = answers
    return AnalyticsReport(
        start=start,
        end=end,
        search_count=searches.searches,
        recommendation_count=searches.recommendations,
        latency_p50_ms=latency[0],
        latency_p95_ms=latency[1],
        zero_result_count=searches.zero_results,
        zero_result_rate=_rate(searches.zero_results, searches.searches),
        top_queries=top_queries,
        top_zero_result_queries=zero_queries,
        search_clicks=int(searches.clicks),
        clicked_searches=searches.clicked,
        click_through_rate=_rate(searches.clicked, searches.searches),
        feedback_counts=[KindCount(k, feedback[k]) for k in KINDS],
        answer_count=answer_count,
        answers_by_status=dict(zip(ANSWER_STATUSES, by_status, strict=True)),
        helpful_answers=helpful,
        unhelpful_answers=unhelpful,
        answer_helpfulness_rate=_rate(helpful, helpful + unhelpful),
        tokens=TokenUsage(prompt=int(prompt_tokens), completion=int(completion_tokens)),
    )


async def explain(
    db: Database, tenant_id: str, start: datetime, end: datetime, *, top: int = 10
) -> dict[str, dict[str, Any]]:
    """The planner's JSON plan of each statement for one window, to check index use."""
    plans: dict[str, dict[str, Any]] = {}
    async with db.session(tenant_id) as session:
        for name, (sql, params) in statements(tenant_id, start, end, top=top).items():
            result = await session.execute(text("EXPLAIN (FORMAT JSON) " + sql), params)
            plans[name] = result.scalar_one()[0]
    return plans
