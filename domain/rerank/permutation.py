"""Read a ranking out of a model's free text. Models add prose, repeat ids, skip some and invent
others; none of that may break the result. Unmentioned items keep their incoming order."""

from __future__ import annotations

import re
from dataclasses import dataclass

_BRACKETED = re.compile(r"\[(\d{1,4})\]")
_BARE = re.compile(r"(?<![\w.])(\d{1,4})(?![\w.])")


@dataclass(frozen=True)
class Permutation:
    order: list[int]  # 0-based positions into the window, every position exactly once
    mentioned: int  # how many valid, distinct ids the model gave
    ignored: int  # ids outside the window, and repeats

    @property
    def usable(self) -> bool:
        return self.mentioned > 0


def parse_permutation(text: str, size: int) -> Permutation:
    """`text` ranks items labelled 1..size, e.g. "[3] > [1] > [2]". Bracketed ids win; bare numbers
    are read only when there are none, so a year in a sentence is not taken for an id."""
    found = _BRACKETED.findall(text) or _BARE.findall(text)
    seen: set[int] = set()
    order: list[int] = []
    ignored = 0
    for raw in found:
        position = int(raw) - 1
        if not 0 <= position < size or position in seen:
            ignored += 1
            continue
        seen.add(position)
        order.append(position)
    mentioned = len(order)
    order.extend(p for p in range(size) if p not in seen)
    return Permutation(order=order, mentioned=mentioned, ignored=ignored)
