"""analytics(from, to): every figure checked against a small hand-built fixture, the validation,
the GraphQL surface, and the query plans on a quarter's worth of generated data."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import text

from domain.analytics import service
from domain.analytics.service import AnalyticsReport, KindCount, QueryCount
from domain.errors import InvalidInput
from domain.feedback.kinds import KINDS
from domain.persistence.database import Database
from domain.tenancy import ensure_tenant
from tests.conftest import error_codes, graphql, graphql_ok

START = datetime(2024, 3, 1, tzinfo=UTC)
END = datetime(2024, 3, 31, tzinfo=UTC)
INSIDE = START + timedelta(days=10)


def at(minutes: int) -> datetime:
    """A moment inside the window, a few minutes apart so rows are distinct but all counted."""
    return INSIDE + timedelta(minutes=minutes)


async def insert_searches(db: Database, tenant: str, rows: list[dict[str, Any]]) -> None:
    async with db.session(tenant) as session:
        await session.execute(
            text(
                "INSERT INTO query_log (id, tenant_id, query, mode, result_count, took_ms, created_at) "
                "VALUES (:id, :t, :query, :mode, :rc, :took, :at)"
            ),
            [{"t": tenant, **r} for r in rows],
        )


async def insert_feedback(db: Database, tenant: str, rows: list[dict[str, Any]]) -> None:
    async with db.session(tenant) as session:
        await session.execute(
            text(
                "INSERT INTO feedback (id, tenant_id, user_id, kind, document_id, answer_id, query_id, rating, "
                "created_at) VALUES (:id, :t, 'u1', :kind, :doc, :answer, :query, :rating, :at)"
            ),
            [
                {"t": tenant, "id": uuid.uuid4(), "doc": None, "answer": None, "query": None, "rating": None, **r}
                for r in rows
            ],
        )


async def insert_answers(db: Database, tenant: str, rows: list[dict[str, Any]]) -> None:
    async with db.session(tenant) as session:
        await session.execute(
            text(
                "INSERT INTO answers (id, tenant_id, session_id, question, generator, status, prompt_tokens, "
                "completion_tokens, took_ms, created_at) "
                "VALUES (:id, :t, :id, 'q?', 'extractive', :status, :pt, :ct, 5, :at)"
            ),
            [{"t": tenant, **r} for r in rows],
        )


def search(query: str, took: float, rc: int, when: datetime, mode: str = "HYBRID") -> dict[str, Any]:
    return {"id": uuid.uuid4(), "query": query, "mode": mode, "rc": rc, "took": took, "at": when}


def doc_event(kind: str, when: datetime, query: uuid.UUID | None = None, rating: float | None = None) -> dict[str, Any]:
    return {"kind": kind, "doc": uuid.uuid4(), "query": query, "rating": rating, "at": when}


def answer_event(kind: str, answer: uuid.UUID, when: datetime) -> dict[str, Any]:
    return {"kind": kind, "answer": answer, "at": when}


@pytest.fixture
async def other_tenant(db: Database) -> str:
    tenant_id = f"t-{uuid.uuid4().hex[:12]}"
    await ensure_tenant(db, tenant_id)
    return tenant_id


@pytest.fixture
async def filled(db: Database, tenant: str, other_tenant: str) -> str:
    """The hand-built fixture. Window [START, END); the expected figures are derived in the test."""
    # Seven searches in the window; took_ms 10..70; three with zero results (s2, s4, s5).
    s1 = search("Alien", 10, 5, START)  # exactly at START: the window includes its start
    s2 = search("  alien ", 20, 0, at(1), "DENSE")
    s3 = search("ALIEN", 30, 3, at(2), "KEYWORD")
    s4 = search("heat", 40, 0, at(3))
    s5 = search("Heat ", 50, 0, at(4))
    s6 = search("brazil", 60, 2, at(5), "DENSE")
    s7 = search("Casablanca", 70, 4, at(6), "KEYWORD")
    rec1 = search("", 1000, 0, at(7), "RECOMMEND")
    rec2 = search("", 2000, 3, at(8), "RECOMMEND")
    before = search("alien", 5000, 0, START - timedelta(seconds=1))
    at_end = search("alien", 5000, 0, END)  # exactly at END: excluded
    await insert_searches(db, tenant, [s1, s2, s3, s4, s5, s6, s7, rec1, rec2, before, at_end])
    foreign = search("alien", 1, 0, at(9))
    await insert_searches(db, other_tenant, [foreign])

    a1, a2, a3, a4, a_before = (uuid.uuid4() for _ in range(5))
    await insert_answers(
        db,
        tenant,
        [
            {"id": a1, "status": "done", "pt": 100, "ct": 20, "at": at(10)},
            {"id": a2, "status": "done", "pt": 200, "ct": 30, "at": at(11)},
            {"id": a3, "status": "error", "pt": 50, "ct": 0, "at": at(12)},
            {"id": a4, "status": "cancelled", "pt": 70, "ct": 5, "at": at(13)},
            {"id": a_before, "status": "done", "pt": 1000, "ct": 1000, "at": START - timedelta(days=1)},
        ],
    )
    await insert_answers(db, other_tenant, [{"id": uuid.uuid4(), "status": "done", "pt": 9, "ct": 9, "at": at(10)}])

    await insert_feedback(
        db,
        tenant,
        [
            doc_event("CLICK", at(20), s1["id"]),  # search click
            doc_event("CLICK", at(21), s1["id"]),  # second click on the same search
            doc_event("CLICK", END + timedelta(days=1), s6["id"]),  # click after the window: still s6's
            doc_event("VIEW", at(22), s4["id"]),  # not a click
            doc_event("CLICK", at(23), rec1["id"]),  # a recommendation's click, not a search click
            doc_event("CLICK", at(24), before["id"]),  # its search is outside the window
            doc_event("LIKE", at(25)),
            doc_event("RATING", at(26), rating=4.5),
            answer_event("ANSWER_HELPFUL", a1, at(27)),
            answer_event("ANSWER_HELPFUL", a2, at(28)),
            answer_event("ANSWER_UNHELPFUL", a1, at(29)),
            answer_event("ANSWER_HELPFUL", a_before, START - timedelta(hours=1)),  # before the window
            doc_event("DISLIKE", END),  # exactly at END: excluded
        ],
    )
    await insert_feedback(db, other_tenant, [doc_event("CLICK", at(20), foreign["id"])])
    return tenant


async def test_every_figure_matches_the_hand_computed_values(db: Database, filled: str) -> None:
    report = await service.analytics(db, filled, START, END)

    assert (report.start, report.end) == (START, END)
    # s1..s7 are searches; rec1, rec2 are recommendations; `before`, `at_end` and the other
    # tenant's row are outside.
    assert report.search_count == 7
    assert report.recommendation_count == 2
    # percentile_cont over [10, 20, 30, 40, 50, 60, 70]: p50 at position 0.5 * 6 = 3 -> 40;
    # p95 at position 0.95 * 6 = 5.7 -> 60 + 0.7 * (70 - 60) = 67. Recommendations (1000, 2000) don't count.
    assert report.latency_p50_ms == pytest.approx(40.0)
    assert report.latency_p95_ms == pytest.approx(67.0)
    # Zero results: s2, s4, s5 -> 3 / 7 (rec1 has zero results too but is not a search).
    assert report.zero_result_count == 3
    assert report.zero_result_rate == pytest.approx(3 / 7)
    # lower(btrim(...)): alien = s1, s2, s3; heat = s4, s5; brazil and casablanca once each, tie broken by text.
    assert report.top_queries == [
        QueryCount("alien", 3),
        QueryCount("heat", 2),
        QueryCount("brazil", 1),
        QueryCount("casablanca", 1),
    ]
    # Zero-result searches: heat = s4, s5; alien = s2.
    assert report.top_zero_result_queries == [QueryCount("heat", 2), QueryCount("alien", 1)]
    # Clicks on the window's searches: two on s1, one on s6 (made after END) = 3, on 2 searches.
    # Not counted: the VIEW on s4, the click on rec1, the click on `before`, the other tenant's click.
    assert report.search_clicks == 3
    assert report.clicked_searches == 2
    assert report.click_through_rate == pytest.approx(2 / 7)
    # Created in the window: CLICK = s1 x2 + rec1 + before = 4 (s6's click came after END);
    # VIEW 1, LIKE 1, RATING 1, ANSWER_HELPFUL a1 + a2 = 2 (a_before's is earlier), ANSWER_UNHELPFUL 1;
    # DISLIKE at END and WATCHED: 0.
    expected_kinds = {"VIEW": 1, "CLICK": 4, "LIKE": 1, "RATING": 1, "ANSWER_HELPFUL": 2, "ANSWER_UNHELPFUL": 1}
    assert report.feedback_counts == [KindCount(k, expected_kinds.get(k, 0)) for k in KINDS]
    # Answers a1..a4 (a_before and the other tenant's are outside): done 2, error 1, cancelled 1.
    assert report.answer_count == 4
    assert report.answers_by_status == {"done": 2, "error": 1, "cancelled": 1}
    # helpful 2, unhelpful 1 -> 2 / (2 + 1).
    assert (report.helpful_answers, report.unhelpful_answers) == (2, 1)
    assert report.answer_helpfulness_rate == pytest.approx(2 / 3)
    # prompt 100 + 200 + 50 + 70 = 420; completion 20 + 30 + 0 + 5 = 55; total 475.
    assert (report.tokens.prompt, report.tokens.completion, report.tokens.total) == (420, 55, 475)


async def test_top_limits_both_lists(db: Database, filled: str) -> None:
    report = await service.analytics(db, filled, START, END, top=3)
    # The tie between brazil and casablanca (1 each) is broken by the text: brazil comes first.
    assert report.top_queries == [QueryCount("alien", 3), QueryCount("heat", 2), QueryCount("brazil", 1)]
    report = await service.analytics(db, filled, START, END, top=1)
    assert report.top_queries == [QueryCount("alien", 3)]
    assert report.top_zero_result_queries == [QueryCount("heat", 2)]


async def test_naive_datetimes_are_utc(db: Database, filled: str) -> None:
    naive = await service.analytics(db, filled, START.replace(tzinfo=None), END.replace(tzinfo=None))
    aware = await service.analytics(db, filled, START, END)
    assert naive == aware


async def test_an_empty_window_has_zeros_and_no_rates(db: Database, tenant: str) -> None:
    report = await service.analytics(db, tenant, START, END)
    assert (report.search_count, report.recommendation_count, report.search_clicks, report.answer_count) == (0, 0, 0, 0)
    assert report.latency_p50_ms is None and report.latency_p95_ms is None
    assert report.zero_result_rate is None and report.click_through_rate is None
    assert report.answer_helpfulness_rate is None
    assert report.top_queries == [] and report.top_zero_result_queries == []
    assert report.feedback_counts == [KindCount(k, 0) for k in KINDS]
    assert report.answers_by_status == {"done": 0, "error": 0, "cancelled": 0}
    assert report.tokens.total == 0


def test_defaults_are_the_last_30_days() -> None:
    now = datetime(2024, 6, 1, 12, tzinfo=UTC)
    assert service.resolve_window(None, None, top=10, now=now) == (now - timedelta(days=30), now)
    assert service.resolve_window(None, END, top=10, now=now) == (END - timedelta(days=30), END)
    assert service.resolve_window(START, None, top=10, now=now) == (START, now)


@pytest.mark.parametrize(
    ("start", "end", "top", "field"),
    [
        pytest.param(END, START, 10, "from", id="inverted"),
        pytest.param(START, START, 10, "from", id="empty"),
        pytest.param(END - timedelta(days=367), END, 10, "from", id="longer-than-366-days"),
        pytest.param(START, END, 0, "top", id="top-0"),
        pytest.param(START, END, 51, "top", id="top-51"),
    ],
)
async def test_invalid_input(db: Database, tenant: str, start: datetime, end: datetime, top: int, field: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        await service.analytics(db, tenant, start, end, top=top)
    assert (caught.value.code, caught.value.field) == ("INVALID_RANGE", field)


def test_366_days_is_allowed() -> None:
    assert service.resolve_window(END - timedelta(days=366), END, top=50) == (END - timedelta(days=366), END)


ANALYTICS_QUERY = """
query ($from: DateTime, $to: DateTime) {
  analytics(from: $from, to: $to, top: 5) {
    from to searchCount recommendationCount latencyP50Ms latencyP95Ms zeroResultRate
    topQueries { query count } topZeroResultQueries { query count }
    searchClicks clickedSearches clickThroughRate
    feedbackCounts { kind count }
    answerCount answersByStatus { done error cancelled }
    helpfulAnswers unhelpfulAnswers answerHelpfulnessRate
    tokens { prompt completion total }
  }
}
"""


async def test_graphql_shape_and_invalid_range(app_client: httpx.AsyncClient) -> None:
    # given a window long before any data
    variables = {"from": "2001-01-01T00:00:00Z", "to": "2001-02-01T00:00:00Z"}
    # when
    data = (await graphql_ok(app_client, ANALYTICS_QUERY, variables))["analytics"]
    # then
    assert datetime.fromisoformat(data["from"]) == datetime(2001, 1, 1, tzinfo=UTC)
    assert datetime.fromisoformat(data["to"]) == datetime(2001, 2, 1, tzinfo=UTC)
    assert data["searchCount"] == 0 and data["latencyP50Ms"] is None and data["clickThroughRate"] is None
    assert data["topQueries"] == [] and data["topZeroResultQueries"] == []
    assert data["feedbackCounts"] == [{"kind": k, "count": 0} for k in KINDS]
    assert data["answersByStatus"] == {"done": 0, "error": 0, "cancelled": 0}
    assert data["tokens"] == {"prompt": 0, "completion": 0, "total": 0}

    # The defaults (the last 30 days) work too.
    await graphql_ok(app_client, ANALYTICS_QUERY)

    inverted = await graphql(app_client, ANALYTICS_QUERY, {"from": variables["to"], "to": variables["from"]})
    assert inverted["data"] is None
    assert error_codes(inverted) == ["INVALID_RANGE"]
    assert inverted["errors"][0]["extensions"]["field"] == "from"


# ~A quarter of data for four tenants, interleaved the way concurrent tenants write. Ids are derived
# from a per-run salt so feedback can point at searches of the same tenant without a round trip.
# Modes, kinds and statuses step with g / 2 or g / 4 (or modulo 9) so every tenant gets all of them.
GENERATE_SEARCHES = """
    INSERT INTO query_log (id, tenant_id, query, mode, result_count, took_ms, created_at)
    SELECT md5(:salt || 'q' || g)::uuid, (CAST(:tenants AS text[]))[1 + g % 4], 'query ' || (g % 500),
           CASE WHEN g % 9 = 0 THEN 'RECOMMEND' ELSE (ARRAY['HYBRID', 'DENSE', 'KEYWORD'])[1 + g % 3] END,
           g % 7, (g % 1000)::double precision, CAST(:base AS timestamptz) + (g / 60000.0) * interval '90 days'
    FROM generate_series(1, 60000) g
"""
# Feedback event g concerns search 2g (same tenant: 2g % 4 picks it) and follows it by a minute.
GENERATE_FEEDBACK = """
    INSERT INTO feedback (id, tenant_id, user_id, kind, document_id, answer_id, query_id, rating, created_at)
    SELECT gen_random_uuid(), (CAST(:tenants AS text[]))[1 + (2 * g) % 4], 'u' || (g % 100), kind,
           CASE WHEN kind NOT LIKE 'ANSWER%' THEN md5(:salt || 'd' || (g % 1000))::uuid END,
           CASE WHEN kind LIKE 'ANSWER%' THEN md5(:salt || 'a' || (g % 6000))::uuid END,
           CASE WHEN kind IN ('CLICK', 'VIEW') THEN md5(:salt || 'q' || (2 * g))::uuid END,
           CASE WHEN kind = 'RATING' THEN (g % 6)::double precision END,
           CAST(:base AS timestamptz) + (2 * g / 60000.0) * interval '90 days' + interval '1 minute'
    FROM (SELECT g, (CAST(:kinds AS text[]))[1 + (g / 2) % 8] AS kind FROM generate_series(1, 30000) g) k
"""
GENERATE_ANSWERS = """
    INSERT INTO answers (id, tenant_id, session_id, question, generator, status, prompt_tokens,
                         completion_tokens, took_ms, created_at)
    SELECT md5(:salt || 'a' || g)::uuid, (CAST(:tenants AS text[]))[1 + g % 4], gen_random_uuid(), 'question',
           'llm', (ARRAY['done', 'done', 'error', 'cancelled'])[1 + (g / 4) % 4], 100 + g % 50, g % 300, 5,
           CAST(:base AS timestamptz) + (g / 6000.0) * interval '90 days'
    FROM generate_series(1, 6000) g
"""
ANALYTICS_TABLES = {"query_log", "feedback", "answers"}


def plan_nodes(node: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield node
    for child in node.get("Plans", []):
        yield from plan_nodes(child)


async def test_no_statement_scans_a_whole_table(db: Database) -> None:
    # given four fresh tenants sharing a quarter of data
    salt = uuid.uuid4().hex[:8]
    tenants = [f"plan-{salt}-{i}" for i in range(4)]
    for t in tenants:
        await ensure_tenant(db, t)
    base = datetime(2023, 1, 1, tzinfo=UTC)
    params = {"salt": salt, "tenants": tenants, "kinds": list(KINDS), "base": base}
    # (rows of four tenants at once: written as the owner, which row-level security lets through)
    async with db.engine.begin() as conn:
        for sql in (GENERATE_SEARCHES, GENERATE_FEEDBACK, GENERATE_ANSWERS):
            await conn.execute(text(sql), params)
        await conn.execute(text("ANALYZE query_log, feedback, answers"))

    # when one tenant asks for a 30-day window in the middle
    start = base + timedelta(days=30)
    plans = await service.explain(db, tenants[0], start, start + timedelta(days=30))

    # then every statement reads through an index
    assert set(plans) == set(service.ANALYTICS_STATEMENTS)
    for name, plan in plans.items():
        nodes = list(plan_nodes(plan["Plan"]))
        scans = [(n["Node Type"], n.get("Relation Name"), n.get("Index Name")) for n in nodes if "Relation Name" in n]
        assert {rel for _, rel, _ in scans} & ANALYTICS_TABLES, (name, scans)
        assert not [s for s in scans if s[0] == "Seq Scan" and s[1] in ANALYTICS_TABLES], (name, scans)


async def test_report_is_a_plain_dataclass(db: Database, tenant: str) -> None:
    report = await service.analytics(db, tenant, None, None, now=END)
    assert isinstance(report, AnalyticsReport)
    assert (report.start, report.end) == (END - timedelta(days=30), END)
