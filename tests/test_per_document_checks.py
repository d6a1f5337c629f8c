"""Checks made once per parsed document (the token limit in the parse, the input guard's walk)
still refuse every request that breaks them, however often the same document is sent."""

from __future__ import annotations

import pytest

from schema.root import QueryLimits, RagqlSchema, build_schema

SEARCH = "query($q: String!) { search(query: $q) { tookMs } }"


@pytest.fixture(scope="module")
def schema() -> RagqlSchema:
    return build_schema(QueryLimits(max_tokens=50, suggestions=False))


async def _codes(schema: RagqlSchema, query: str, variables: dict[str, object] | None = None) -> list[str]:
    result = await schema.execute(query, variables)
    return [str((e.extensions or {}).get("code")) for e in result.errors or []]


async def test_the_token_limit_holds_for_a_document_sent_again(schema: RagqlSchema) -> None:
    huge = "{ " + " ".join(f"a{i}: me {{ tenant }}" for i in range(30)) + " }"
    for _ in range(3):
        assert await _codes(schema, huge) == ["GRAPHQL_VALIDATION_FAILED"]


async def test_a_nul_in_a_literal_is_refused_every_time(schema: RagqlSchema) -> None:
    query = '{ search(query: "lagoon\\u0000") { tookMs } }'
    for _ in range(3):
        assert await _codes(schema, query) == ["INVALID_CHARACTER"]


async def test_variables_are_checked_on_every_request_of_a_known_document(schema: RagqlSchema) -> None:
    await schema.execute(SEARCH, {"q": "fine"})  # the document's walk is remembered from here
    for bad in ("lagoon\x00", "lone \ud800 surrogate"):
        assert await _codes(schema, SEARCH, {"q": bad}) == ["INVALID_CHARACTER"]


async def test_an_unknown_fragment_is_refused_every_time(schema: RagqlSchema) -> None:
    for _ in range(2):
        assert await _codes(schema, "{ ...Missing }") == ["GRAPHQL_VALIDATION_FAILED"]
