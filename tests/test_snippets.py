from __future__ import annotations

import pytest

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
