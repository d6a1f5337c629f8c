"""Queries of any length, through GraphQL against the demo catalogue: a pasted paragraph works in
every mode, and a key term beyond the model's 256 word pieces still finds its document."""

from __future__ import annotations

import json

import httpx
import pytest

from domain.providers.embedding import LocalEmbedder
from domain.retrieval.long_query import query_windows
from tests.conftest import graphql_ok

SEARCH = """
query Search($q: String!, $first: Int, $options: SearchOptions) {
  search(query: $q, first: $first, options: $options) {
    hits { snippet document { title } scores { dense keyword } }
  }
}"""

FILMS = [json.loads(line) for line in open("domain/demo/films.jsonl")]
# Words that say nothing about any film: they fill a query without pointing anywhere.
FILLER = "the people in this place were doing some things on that day and then they went on with it " * 14


@pytest.mark.parametrize("mode", ["HYBRID", "DENSE", "KEYWORD"])
async def test_a_9000_character_query_works_in_every_mode(app_client: httpx.AsyncClient, mode: str) -> None:
    # given a paragraph of about 9,000 characters pasted from several film descriptions
    text = ""
    for film in FILMS:
        text += film["text"] + " "
        if len(text) >= 9000:
            break
    query = text[:9000]
    assert len(query) == 9000
    # when searching with it
    hits = (await graphql_ok(app_client, SEARCH, {"q": query, "first": 10, "options": {"mode": mode}}))["search"][
        "hits"
    ]
    # then the films it was pasted from come back
    sources = {f["title"] for f in FILMS if f["text"] in text[:9000]}
    assert hits and sources
    assert sources.intersection(h["document"]["title"] for h in hits), [h["document"]["title"] for h in hits]


@pytest.mark.parametrize("mode", ["HYBRID", "DENSE"])
async def test_a_key_passage_after_256_word_pieces_still_finds_its_document(
    app_client: httpx.AsyncClient, embedder: LocalEmbedder, mode: str
) -> None:
    # given a query whose only informative part comes after the model's first 256 word pieces
    target = next(f for f in FILMS if f["externalId"] == "film-primer-2004")
    key = "engineers in a suburban garage build a box that folds time, spawning doubles and overlapping timelines"
    query = FILLER + key
    assert embedder.count_tokens(FILLER) > 256
    # when searching with it
    hits = (await graphql_ok(app_client, SEARCH, {"q": query, "first": 5, "options": {"mode": mode}}))["search"]["hits"]
    # then the document the key passage describes is among the first results (the filler's
    # "day" matches other titles in the keyword leg, so hybrid gets five places)
    top = 3 if mode == "DENSE" else 5
    assert target["title"] in [h["document"]["title"] for h in hits[:top]], [h["document"]["title"] for h in hits]


@pytest.mark.parametrize("lanes", [1, 2, 3])
@pytest.mark.parametrize("words", [300, 500, 1700])
def test_a_long_querys_windows_each_fit_and_come_in_rounds_of_the_encoders_lanes(
    embedder: LocalEmbedder, lanes: int, words: int
) -> None:
    # given a pasted paragraph longer than the model reads at once
    vocabulary = (FILLER + " hyperglycaemia p53-mediated apoptosis, (n=12)").split()
    query = " ".join(vocabulary[i % len(vocabulary)] for i in range(words))
    limit = embedder.max_tokens - 2
    tokens = embedder.count_tokens(query)
    assert tokens > limit
    # when it is cut into windows for an encoder with `lanes` lanes
    windows = query_windows(query, tokens, limit, lanes)
    # then every window fits, the words are all there in order, and the windows fill whole rounds
    assert all(embedder.count_tokens(w) <= limit for w in windows)
    assert " ".join(windows).split() == query.split()
    assert len(windows) >= 2 and len(windows) % lanes == 0
    # and with one lane they are as few as fit (the balance only ever adds windows)
    assert len(windows) >= len(query_windows(query, tokens, limit, 1))
