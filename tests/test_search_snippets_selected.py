"""Snippets are computed only for searches whose selection asks for them (issue 18): a client that
selects `hits { document { id } }` does not pay for highlighting, and a later search that does
select `snippet` is never answered from a snippet-less cached result."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from strawberry.types.nodes import FragmentSpread, InlineFragment, SelectedField

from domain.retrieval import search as retrieval
from resolvers.search import selects
from tests.conftest import graphql_ok

WITHOUT = "query($q: String!) { search(query: $q, first: 5) { hits { score document { id title } } } }"
WITH = "query($q: String!) { search(query: $q, first: 5) { hits { score snippet document { id title } } } }"
FRAGMENT = """
query($q: String!) { found: search(query: $q, first: 5) { hits { ...Shown } } }
fragment Shown on SearchHit { snippet document { id } }
"""


def _field(name: str, *selections: Any) -> SelectedField:
    return SelectedField(name=name, directives={}, arguments={}, selections=list(selections))


def test_selects_follows_fields_and_fragments() -> None:
    hits_with = _field("search", _field("hits", _field("score"), _field("snippet")))
    hits_without = _field("search", _field("hits", _field("score"), _field("document", _field("snippet"))))
    spread = FragmentSpread(name="F", type_condition="SearchHit", directives={}, selections=[_field("snippet")])
    inline = InlineFragment(type_condition=None, selections=[_field("hits", spread)], directives={})
    path = ("search", "hits", "snippet")
    assert selects([hits_with], path)
    assert not selects([hits_without], path)  # a `snippet` elsewhere is not the hits' own
    assert selects([_field("search", inline)], path)


@pytest.fixture
def highlights(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Counts the real highlighter's calls from the search (it still does the work)."""
    calls: list[str] = []
    real = retrieval.highlight

    def counted(text: str, query: str, *, width: int = 40) -> str:
        calls.append(query)
        return real(text, query, width=width)

    monkeypatch.setattr(retrieval, "highlight", counted)
    return calls


async def test_a_search_without_snippet_computes_none(app_client: httpx.AsyncClient, highlights: list[str]) -> None:
    data = await graphql_ok(app_client, WITHOUT, {"q": "submarine crew under the ice"})
    assert len(data["search"]["hits"]) == 5
    assert highlights == []


async def test_snippet_after_a_snippetless_search_of_the_same_query_is_highlighted(
    app_client: httpx.AsyncClient, highlights: list[str]
) -> None:
    query = {"q": "detective in a rainy city"}
    first = await graphql_ok(app_client, WITHOUT, query)
    second = await graphql_ok(app_client, WITH, query)  # within the result cache's TTL
    ids = [h["document"]["id"] for h in first["search"]["hits"]]
    assert [h["document"]["id"] for h in second["search"]["hits"]] == ids
    assert len(highlights) == 5
    assert any("<mark>" in h["snippet"] for h in second["search"]["hits"])


async def test_a_snippet_selected_through_a_fragment_is_computed(
    app_client: httpx.AsyncClient, highlights: list[str]
) -> None:
    data = await graphql_ok(app_client, FRAGMENT, {"q": "dragons and a lost kingdom"})
    assert all(h["snippet"] for h in data["found"]["hits"])
    assert len(highlights) == len(data["found"]["hits"]) == 5
