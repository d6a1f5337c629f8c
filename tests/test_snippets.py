from __future__ import annotations

import html
import random

import pytest

from domain.retrieval import snippets
from domain.retrieval.snippets import highlight, query_terms


@pytest.mark.parametrize(
    ("text", "query", "expected"),
    [
        ("A film about time travel.", "time travel", "A film about <mark>time</mark> <mark>travel.</mark>"),
        ("Travelling through time", "travel", "<mark>Travelling</mark> through time"),
        ("<b>bold</b> claim", "claim", "&lt;b&gt;bold&lt;/b&gt; <mark>claim</mark>"),
        ("Nothing matches here", "zebra", "Nothing matches here"),
    ],
)
def test_highlight(text: str, query: str, expected: str) -> None:
    assert highlight(text, query) == expected


def test_highlight_picks_the_window_with_most_terms() -> None:
    text = " ".join(["filler"] * 100 + ["quantum", "entanglement"] + ["filler"] * 100)
    out = highlight(text, "quantum entanglement", width=10)
    assert "<mark>quantum</mark> <mark>entanglement</mark>" in out
    assert out.startswith("… ") and out.endswith(" …")


def test_query_terms_drop_stopwords() -> None:
    assert query_terms("What is the role of p53 in cancer?") == {"role", "p53", "cancer"}


@pytest.mark.parametrize("padding", [0, 40])  # a typed query's few stems, and a pasted paragraph's many
def test_a_word_marks_alike_however_many_terms_the_query_has(padding: int) -> None:
    filler = " ".join(f"zzfiller{i:03d}" for i in range(padding))
    text = "Travellers travelled; the studies' cells divide, and hyperglycemia rose."
    out = highlight(text, f"travel study cell glycemia {filler}")
    assert out == (
        "<mark>Travellers</mark> <mark>travelled;</mark> the studies&#x27; <mark>cells</mark> "
        "divide, and hyperglycemia rose."  # a light stem: "studies" is "stud", "study" stays; no infixes
    )


def _reference(text: str, query: str, width: int) -> str:
    """The definition, word by word: a word is a hit when the query's pattern finds a term in it
    (lowercased); the shown window is the first of `width` words with the most hits."""
    words = text.split()
    if not words:
        return ""
    pattern = snippets._terms(query).pattern
    hits = [pattern is not None and pattern.search(w.lower()) is not None for w in words]
    counts = [sum(hits[s : s + width]) for s in range(max(1, len(words) - width + 1))]
    start = counts.index(max(counts))
    stop = min(len(words), start + width)
    out = [
        f"<mark>{html.escape(w)}</mark>" if hits[i] else html.escape(w)
        for i, w in enumerate(words)
        if start <= i < stop
    ]
    return ("… " if start > 0 else "") + " ".join(out) + (" …" if stop < len(words) else "")


def test_the_whole_text_search_marks_what_the_word_by_word_definition_marks() -> None:
    """The fast path searches the text once and counts spaces to find the words; the reference
    decides each word alone. Random texts mixing terms, inflections, punctuation, markup, odd
    whitespace and letters whose lowercase is longer (İ), over short and many-term queries."""
    rng = random.Random(7)
    vocab = [
        "cell", "cells", "cellular", "Cancer", "cancers.", "(p53)", "p53-mediated", "ab", "abs", "tab",
        "travelling", "İstanbul", "ﬁle", "<b>", "&", "the", "of", "x", "studies'", "hyperglycemia", "glyc",
    ]  # fmt: skip
    queries = ["cell cancer", "p53 ab", "travel file", "glycemia studies", " ".join(vocab), "zebra", ""]
    for _ in range(400):
        text = "".join(rng.choice(vocab) + rng.choice([" ", "  ", "\n", "\t "]) for _ in range(rng.randint(0, 90)))
        query = rng.choice(queries)
        width = rng.choice([3, 10, 40])
        assert highlight(text, query, width=width) == _reference(text, query, width), (text, query, width)
