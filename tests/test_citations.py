"""The streaming citation filter: dangling [n] never reach the client, even split across deltas."""

from __future__ import annotations

import pytest

from domain.answers.citations import CitationFilter, clean_citations


@pytest.mark.parametrize(
    ("text", "valid", "expected", "used", "dropped"),
    [
        ("Cats purr [1].", {1, 2}, "Cats purr [1].", [1], []),
        ("Cats purr [3].", {1, 2}, "Cats purr .", [], ["[3]"]),
        ("Both [2][1] agree [2].", {1, 2}, "Both [2][1] agree [2].", [2, 1], []),
        ("Mixed [1, 7].", {1, 2}, "Mixed [1].", [1], ["[1, 7]"]),
        ("A list [a] and [ 2 ] and [].", {2}, "A list [a] and [2] and [].", [2], []),
        ("Unclosed [12 at the end", {1}, "Unclosed [12 at the end", [], []),
        ("In [2024] a year stays text", {1, 2}, "In [2024] a year stays text", [], []),  # 4 digits: not a citation
    ],
)
def test_whole_text(text: str, valid: set[int], expected: str, used: list[int], dropped: list[str]) -> None:
    assert clean_citations(text, valid) == (expected, used, dropped)


def test_a_citation_split_across_deltas_is_held_then_resolved() -> None:
    f = CitationFilter({1, 2})
    out = [f.feed(d) for d in ["Solaris is set ", "in orbit [", "2", "] and [", "9", "]."]]
    assert out == ["Solaris is set ", "in orbit ", "", "[2] and ", "", "."]
    assert f.flush() == ""
    assert f.used == [2] and f.dropped == ["[9]"]


def test_a_literal_bracket_is_released_once_it_cannot_be_a_citation() -> None:
    f = CitationFilter({1})
    assert f.feed("see [") == "see "
    assert f.feed("figure 3]") == "[figure 3]"
    assert f.feed(" ok [1") == " ok "
    assert f.flush() == "[1"  # the stream ended mid-citation: what was held is released as text
