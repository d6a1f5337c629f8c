"""What one recommendation request costs the database, counted on the wire (asyncpg's query
logger), like Django's assertNumQueries: a fixed number of statements whatever the history's
length, with the user's history, profile and model version read together. Plus the `:name` to
`$n` rewriting the hot path's statements go through (`domain.retrieval.reads.positional`)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event

from domain.feedback.profiles import LearningConfig
from domain.persistence.database import Database
from domain.providers.embedding import LocalEmbedder
from domain.recommendations.service import Recommender, RecommendRequest
from domain.recommendations.training import train_tenant
from domain.rerank.service import Reranking
from domain.retrieval.reads import positional
from tests.conftest import catalogue, tenant_client
from tests.test_recommendations import feedback

# Transaction control, the same for every request: the bare connection's scope statement (BEGIN
# and the tenant settings, one message) and COMMIT; a session's BEGIN and pool ping (ROLLBACK).
_PLUMBING = ("BEGIN", "COMMIT", "ROLLBACK", "", "SELECT 1")
# The tenant settings, the user (history, profile, model version), three candidate sources
# (content, co-engagement, popularity), the candidates' vectors, the rows shown, the query log.
STATEMENTS_PER_REQUEST = 8


@pytest.mark.parametrize(
    ("sql", "expected", "names"),
    [
        ("SELECT :a, :b", "SELECT $1, $2", ("a", "b")),
        ("WHERE x = :t AND y = :t", "WHERE x = $1 AND y = $1", ("t",)),  # one name, one parameter
        ("SELECT CAST(:q AS vector), x::text", "SELECT CAST($1 AS vector), x::text", ("q",)),  # casts untouched
        ("make_interval(days => :window)", "make_interval(days => $1)", ("window",)),
        ("ANY(CAST(:ids AS uuid[])) AND :f0 AND :f1", "ANY(CAST($1 AS uuid[])) AND $2 AND $3", ("ids", "f0", "f1")),
    ],
)
def test_named_parameters_become_positional(sql: str, expected: str, names: tuple[str, ...]) -> None:
    assert positional(sql) == (expected, names)


@pytest.fixture
async def counted(pg_url: str, db: Database) -> AsyncIterator[tuple[Database, list[str]]]:
    """A pool whose every statement is recorded, whichever layer sends it."""
    seen: list[str] = []
    database = Database(pg_url)
    await database.enable_vector_codec()

    # Statements sent through SQLAlchemy go through prepared statements, which asyncpg's logger
    # does not see; those sent to asyncpg directly bypass SQLAlchemy's events. Both are counted.
    @event.listens_for(database.engine.sync_engine, "connect")
    def _log_driver(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.driver_connection.add_query_logger(lambda q: seen.append(q.query.strip()))

    @event.listens_for(database.engine.sync_engine, "before_cursor_execute")
    def _log_sqlalchemy(_conn: Any, _cursor: Any, statement: str, *_rest: Any) -> None:
        seen.append(statement.strip())

    # A request's bare tenant transaction (`Database.connection`): asyncpg's logger on each.
    database.on_raw_connect.append(lambda conn: conn.add_query_logger(lambda q: seen.append(q.query.strip())))

    yield database, seen
    await database.dispose()


async def test_a_recommendation_costs_a_fixed_number_of_statements(
    counted: tuple[Database, list[str]], db: Database, pg_url: str, tmp_root: Path, embedder: LocalEmbedder
) -> None:
    # given: a trained tenant, a user with one like and one with thirty ratings
    database, seen = counted
    async with tenant_client(pg_url, tmp_root, embedder) as (client, tenant_id):
        films = sorted((await catalogue(client)).values(), key=lambda f: f["title"])
        for u in range(6):
            for film in films[u : u + 4]:
                await feedback(client, f"fan-{u}", film["id"], "LIKE")
        for film in films[10:40]:  # a long history: still one statement for all of it
            await feedback(client, "long", film["id"], "RATING", rating=4.5)
        await feedback(client, "short", films[0]["id"], "LIKE")
        await train_tenant(db, tenant_id)
        recommender = Recommender(db=database, embedder=embedder, reranking=Reranking(), learning=LearningConfig())
        await recommender.recommend(tenant_id, RecommendRequest(user_id="short"))  # loads the model once

        # when
        counts = {}
        for user in ("short", "long", "nobody"):
            seen.clear()
            result = await recommender.recommend(tenant_id, RecommendRequest(user_id=user))
            assert result.items
            counts[user] = [q for q in seen if q.rstrip(";").upper() not in _PLUMBING]
    # then
    assert len(counts["short"]) == len(counts["long"]) == STATEMENTS_PER_REQUEST, counts
    assert len(counts["nobody"]) <= STATEMENTS_PER_REQUEST, counts  # no profile, no likes: fewer sources
    for statements in counts.values():
        assert sum("user_profiles" in q for q in statements) == 1  # history, profile and model: one statement
        assert not any("recs_models" in q for q in statements if "user_profiles" not in q)
