"""Highlighted snippets: the window of the chunk with the most query terms, terms in <mark>."""

from __future__ import annotations

import html
import re
from collections import OrderedDict
from dataclasses import dataclass
from functools import lru_cache
from itertools import accumulate
from operator import sub
from typing import cast

_WORD = re.compile(r"\w+", re.UNICODE)
STOPWORDS = frozenset(
    "a an and are as at be by for from has have in is it its of on or that the this to was were what when "
    "which who why with how does do did not no can will".split()
)


def query_terms(query: str) -> set[str]:
    return {w for w in (m.lower() for m in _WORD.findall(query)) if w not in STOPWORDS and len(w) > 1}


_SUFFIXES = ("ingly", "edly", "ing", "ies", "ed", "es", "s", "ly")


def _stem(word: str) -> str:
    # A light suffix strip so "travelling" marks for "travel"; precise stemming is not needed here.
    for suffix in _SUFFIXES:
        if word.endswith(suffix) and len(word) - len(suffix) >= 3:
            return word[: -len(suffix)]
    return word


@dataclass(frozen=True)
class _Terms:
    """What a query marks, worked out once per query (a search highlights every hit with it).

    A token (a run of word characters in the lowercased word) is a hit when it is a stem plus a
    suffix `_stem` strips (or none), or when it starts with a stem of 4+ letters: "travelling"
    marks for "travel". One compiled pattern tests a whole word for both, in C: the per-token
    Python checks it replaces were most of a pasted paragraph's snippet time (100 hits of a
    48-term query: about 80 ms on a loaded 2-core machine)."""

    pattern: re.Pattern[str] | None

    def hit(self, word: str) -> bool:
        """`word` is one whitespace-separated word, already lowercased."""
        return self.pattern is not None and self.pattern.search(word) is not None


@lru_cache(maxsize=256)
def _terms(query: str) -> _Terms:
    stems = {_stem(t) for t in query_terms(query)}
    long_stems = sorted(st for st in stems if len(st) >= 4)
    # A token equal to a short stem's form. (A long stem's forms all start with it: the prefix
    # branch covers them.) _stem(c) is st exactly when c is st plus a suffix it strips, or none.
    exact = sorted(c for st in stems if len(st) < 4 for c in (st, *(st + x for x in _SUFFIXES)) if _stem(c) == st)
    # (?<!\w) anchors a branch at a token's start, (?!\w) at its end. Terms are \w+ runs, so
    # re.escape changes nothing today; it keeps that from being an assumption.
    branches = []
    if long_stems:
        branches.append("(?<!\\w)(?:" + "|".join(map(re.escape, long_stems)) + ")")
    if exact:
        branches.append("(?<!\\w)(?:" + "|".join(map(re.escape, exact)) + ")(?!\\w)")
    return _Terms(re.compile("|".join(branches)) if branches else None)


# Each word's verdict for the last few queries. A search highlights all its hits in one loop, and
# they share most of their words ("the", "cells", the topic's terms): the 100 hits of a pasted
# paragraph then decide each distinct word once, not once per chunk. Bounded in queries and words.
_VERDICTS: OrderedDict[str, dict[str, bool]] = OrderedDict()
_VERDICT_QUERIES = 8
_VERDICT_WORDS = 20_000


def _verdicts(query: str) -> dict[str, bool]:
    decided = _VERDICTS.get(query)
    if decided is None or len(decided) > _VERDICT_WORDS:
        decided = _VERDICTS[query] = {}
    _VERDICTS.move_to_end(query)
    if len(_VERDICTS) > _VERDICT_QUERIES:
        _VERDICTS.popitem(last=False)
    return decided


def highlight(text: str, query: str, *, width: int = 40) -> str:
    words = text.split()
    if not words:
        return ""
    terms = _terms(query)
    decided = _verdicts(query)
    known = decided.get
    hits: list[bool | None] = [known(word) for word in words]
    if None in hits:
        for i, hit in enumerate(hits):
            if hit is None:
                word = words[i]
                hit = known(word)
                if hit is None:
                    hit = decided[word] = terms.hit(word.lower())
                hits[i] = hit
    # The window of `width` words with the most hits (the first such): prefix sums, in C.
    best_start = 0
    if len(words) > width:
        running = list(accumulate(cast(list[bool], hits), initial=0))  # every verdict is decided now
        counts = list(map(sub, running[width:], running[:-width]))
        best_start = counts.index(max(counts))
    window = range(best_start, min(len(words), best_start + width))
    # One escape of the whole text, not one call per shown word (a fifth of a pasted paragraph's
    # snippet time for 100 hits): escaping adds no whitespace, so its words line up with `words`.
    escaped = html.escape(text).split()
    out = [f"<mark>{escaped[i]}</mark>" if hits[i] else escaped[i] for i in window]
    prefix = "… " if best_start > 0 else ""
    suffix = " …" if window.stop < len(words) else ""
    return prefix + " ".join(out) + suffix
