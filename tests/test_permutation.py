"""Reading a ranking out of an LLM's reply: every malformed shape survives, nothing is lost."""

from __future__ import annotations

import pytest

from domain.rerank.permutation import parse_permutation


@pytest.mark.parametrize(
    ("reply", "size", "order", "mentioned", "ignored"),
    [
        ("[2] > [3] > [1]", 3, [1, 2, 0], 3, 0),
        ("Sure! Here is the ranking: [3] > [1] > [2]. Hope it helps.", 3, [2, 0, 1], 3, 0),
        ("[2] > [2] > [1]", 3, [1, 0, 2], 2, 1),  # duplicate ignored, missing [3] appended
        ("[4]", 5, [3, 0, 1, 2, 4], 1, 0),  # missing ids keep their incoming order
        ("[9] > [0] > [2]", 3, [1, 0, 2], 1, 2),  # out-of-range ids ignored
        ("2, 3, 1", 3, [1, 2, 0], 3, 0),  # bare numbers when nothing is bracketed
        ("[1] The 1999 survey, [3]", 3, [0, 2, 1], 2, 0),  # a year beside brackets is not an id
        ("I cannot rank these.", 3, [0, 1, 2], 0, 0),
        ("", 2, [0, 1], 0, 0),
        ("banana > apple", 2, [0, 1], 0, 0),
    ],
)
def test_parse_permutation(reply: str, size: int, order: list[int], mentioned: int, ignored: int) -> None:
    p = parse_permutation(reply, size)
    assert p.order == order
    assert sorted(p.order) == list(range(size))
    assert (p.mentioned, p.ignored) == (mentioned, ignored)
    assert p.usable is (mentioned > 0)
