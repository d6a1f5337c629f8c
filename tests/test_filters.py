"""Table-driven tests of filter compilation: fields are allow-listed or bound, never interpolated."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import pytest

from domain.errors import InvalidInput
from domain.retrieval.filters import Condition, MetadataFilter, compile_filter


@pytest.mark.parametrize(
    ("cond", "sql", "params"),
    [
        (Condition("genre", "EQ", "Drama"), " AND d.genre = :f0", {"f0": "Drama"}),
        (Condition("genre", "NE", "Drama"), " AND d.genre IS DISTINCT FROM :f0", {"f0": "Drama"}),
        (Condition("genre", "IN", ["A", "B"]), " AND d.genre = ANY(:f0)", {"f0": ["A", "B"]}),
        (Condition("genre", "CONTAINS", "50%_x"), " AND d.genre ILIKE :f0", {"f0": "%50\\%\\_x%"}),
        (Condition("rating", "GTE", 4), " AND d.rating >= :f0", {"f0": 4}),
        (Condition("year", "LT", 2000), " AND d.year < :f0", {"f0": 2000}),
        (Condition("tags", "CONTAINS", "heist"), " AND d.tags @> :f0", {"f0": ["heist"]}),
        (Condition("tags", "IN", ["a", "b"]), " AND d.tags && :f0", {"f0": ["a", "b"]}),
        (Condition("tags", "EXISTS", True), " AND cardinality(d.tags) > 0", {}),
        (Condition("source", "EXISTS", False), " AND NOT (d.source IS NOT NULL)", {}),
        (
            Condition("createdAt", "GT", "2024-01-01T00:00:00+00:00"),
            " AND d.created_at > :f0",
            {"f0": datetime.fromisoformat("2024-01-01T00:00:00+00:00")},
        ),
        (
            Condition("director", "EQ", "Nolan"),
            " AND (d.metadata -> :f0) = CAST(:f1 AS jsonb)",
            {"f0": "director", "f1": '"Nolan"'},
        ),
        (
            Condition("runtimeMinutes", "GT", 120),
            " AND (jsonb_typeof((d.metadata -> :f0)) = jsonb_typeof(CAST(:f1 AS jsonb)) AND (d.metadata -> :f0) > "
            "CAST(:f1 AS jsonb))",
            {"f0": "runtimeMinutes", "f1": "120"},
        ),
        (Condition("director", "EXISTS", None), " AND (d.metadata -> :f0) IS NOT NULL", {"f0": "director"}),
    ],
)
def test_compile_condition(cond: Condition, sql: str, params: dict[str, Any]) -> None:
    compiled = compile_filter(MetadataFilter(all=(cond,)), alias="d")
    assert compiled.sql == sql
    assert compiled.params == params


def test_all_and_any_combine() -> None:
    flt = MetadataFilter(
        all=(Condition("year", "GTE", 1990),),
        any=(Condition("genre", "EQ", "A"), Condition("genre", "EQ", "B")),
    )
    compiled = compile_filter(flt, alias="d")
    assert compiled.sql == " AND d.year >= :f0 AND (d.genre = :f1 OR d.genre = :f2)"
    assert compiled.params == {"f0": 1990, "f1": "A", "f2": "B"}


def test_empty_filter_compiles_to_nothing() -> None:
    assert compile_filter(None, alias="d").sql == ""
    assert compile_filter(MetadataFilter(), alias="d").sql == ""


@pytest.mark.parametrize(
    ("cond", "code"),
    [
        (Condition("rating", "GT", "high"), "INVALID_FILTER_VALUE"),
        (Condition("year", "EQ", 1999.5), "INVALID_FILTER_VALUE"),
        (Condition("year", "EQ", True), "INVALID_FILTER_VALUE"),
        (Condition("genre", "IN", "Drama"), "INVALID_FILTER_VALUE"),
        (Condition("genre", "GT", "Drama"), "INVALID_FILTER_VALUE"),
        (Condition("createdAt", "GT", "yesterday"), "INVALID_FILTER_VALUE"),
        (Condition("rating", "CONTAINS", 3), "INVALID_FILTER_VALUE"),
        (Condition("director", "GT", {"a": 1}), "INVALID_FILTER_VALUE"),
        (Condition("genre", "LIKE", "x"), "UNKNOWN_FILTER_OPERATOR"),
        (Condition("genre'; DROP TABLE documents; --", "EQ", "x"), "INVALID_FILTER_FIELD"),
        (Condition("a b", "EQ", "x"), "INVALID_FILTER_FIELD"),
    ],
)
def test_bad_conditions_are_coded(cond: Condition, code: str) -> None:
    with pytest.raises(InvalidInput) as info:
        compile_filter(MetadataFilter(all=(cond,)), alias="d", path="options.filter")
    assert info.value.code == code
    assert info.value.field is not None and info.value.field.startswith("options.filter.all.0")


def test_injection_in_values_is_only_ever_bound() -> None:
    evil = "x'); DELETE FROM documents; --"
    compiled = compile_filter(
        MetadataFilter(all=(Condition("genre", "EQ", evil), Condition("note", "EQ", evil))), alias="d"
    )
    assert evil not in compiled.sql
    assert evil in compiled.params.values()


def test_too_many_conditions() -> None:
    flt = MetadataFilter(all=tuple(Condition("year", "GT", i) for i in range(40)))
    with pytest.raises(InvalidInput) as info:
        compile_filter(flt, alias="d")
    assert info.value.code == "FILTER_TOO_COMPLEX"
