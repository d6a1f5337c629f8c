"""Personalised search through GraphQL: a user's likes lift their genre for an ambiguous query, for
them only; a user without a profile gets the plain ranking and `personalized: false`."""

from __future__ import annotations

from pathlib import Path

from domain.providers.embedding import LocalEmbedder
from tests.conftest import catalogue, error_codes, graphql, graphql_ok, tenant_client

SEARCH = """
query($q: String!, $o: SearchOptions) {
  search(query: $q, first: 10, options: $o) {
    personalized
    hits { document { title genre } scores { fused personal } }
  }
}"""
SUBMIT = "mutation($i: FeedbackInput!) { submitFeedback(input: $i) { errors { code message } } }"
# Fits films of many genres: the query alone does not say which the user wants.
AMBIGUOUS = "a night that changes everything for a small group of people"


def count_genre(result: dict, genre: str, top: int = 5) -> int:
    return sum(h["document"]["genre"] == genre for h in result["hits"][:top])


async def test_likes_lift_their_genre_for_that_user_only(pg_url: str, tmp_root: Path, embedder: LocalEmbedder) -> None:
    async with tenant_client(pg_url, tmp_root, embedder) as (client, _):
        films = await catalogue(client)
        horror = [f for f in films.values() if f["genre"] == "Horror"]
        plain = (await graphql_ok(client, SEARCH, {"q": AMBIGUOUS}))["search"]
        assert plain["personalized"] is False
        # given a user who liked three horror films
        for film in horror[:3]:
            done = await graphql_ok(client, SUBMIT, {"i": {"userId": "fan", "documentId": film["id"], "kind": "LIKE"}})
            assert done["submitFeedback"]["errors"] == []
        # when they and another user (no feedback) search with the same ambiguous query
        options = {"personalize": {"userId": "fan", "weight": 0.5}}
        fan = (await graphql_ok(client, SEARCH, {"q": AMBIGUOUS, "o": options}))["search"]
        other = (
            await graphql_ok(
                client, SEARCH, {"q": AMBIGUOUS, "o": {"personalize": {"userId": "stranger", "weight": 0.5}}}
            )
        )["search"]
        # then horror ranks higher for the fan than in the plain ranking
        assert fan["personalized"] is True
        assert count_genre(fan, "Horror") > count_genre(plain, "Horror"), (fan["hits"], plain["hits"])
        assert all(h["scores"]["personal"] is not None for h in fan["hits"])
        # and the other user gets the plain ranking, unpersonalised
        assert other["personalized"] is False
        assert [h["document"]["title"] for h in other["hits"]] == [h["document"]["title"] for h in plain["hits"]]
        assert all(h["scores"]["personal"] is None for h in other["hits"])


async def test_a_weight_outside_0_to_1_is_a_coded_error(pg_url: str, tmp_root: Path, embedder: LocalEmbedder) -> None:
    async with tenant_client(pg_url, tmp_root, embedder, load_demo=False) as (client, _):
        body = await graphql(client, SEARCH, {"q": "x", "o": {"personalize": {"userId": "u", "weight": 1.5}}})
        assert error_codes(body) == ["INVALID_PERSONALIZE"]
