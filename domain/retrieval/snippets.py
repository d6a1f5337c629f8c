"""Highlighted snippets: the window of the chunk with the most query terms, terms in <mark>."""

from __future__ import annotations

import html
import re
from collections import OrderedDict
from dataclasses import dataclass
from functools import lru_cache

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
    """What a query marks, worked out once per query (a search highlights every hit with it)."""

    stems: frozenset[str]
    exact: frozenset[str]  # every token whose _stem is one of `stems`
    long_stems: tuple[str, ...]  # stems of 4+ letters: a token starting with one is a hit

    def hit(self, token: str) -> bool:
        if token in self.exact:
            return True
        if len(self.long_stems) <= 16:  # a typed query: one C-level startswith over its stems
            return token.startswith(self.long_stems)
        # Many stems (a pasted paragraph has hundreds): set lookups of the token's own prefixes,
        # so the cost grows with the chunk's length only, never with the query's.
        return any(token[:n] in self.stems for n in range(4, len(token) + 1))


@lru_cache(maxsize=256)
def _terms(query: str) -> _Terms:
    stems = frozenset(_stem(t) for t in query_terms(query))
    # _stem(token) is a stem s exactly when token is s plus the suffix _stem strips (or none).
    exact = frozenset(c for st in stems for c in (st, *(st + x for x in _SUFFIXES)) if _stem(c) == st)
    return _Terms(stems, exact, tuple(sorted(st for st in stems if len(st) >= 4)))


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
    hits: list[bool] = []
    for word in words:
        hit = decided.get(word)
        if hit is None:
            hit = decided[word] = any(terms.hit(c) for c in _WORD.findall(word.lower()))
        hits.append(hit)
    # Sliding window with a running count: linear in the chunk's length.
    running = sum(hits[:width])
    best_start, best = 0, running
    for start in range(1, max(1, len(words) - width + 1)):
        running += hits[start + width - 1] - hits[start - 1]
        if running > best:
            best_start, best = start, running
    window = range(best_start, min(len(words), best_start + width))
    out = [f"<mark>{html.escape(words[i])}</mark>" if hits[i] else html.escape(words[i]) for i in window]
    prefix = "… " if best_start > 0 else ""
    suffix = " …" if window.stop < len(words) else ""
    return prefix + " ".join(out) + suffix
