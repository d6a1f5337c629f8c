"""Highlighted snippets: the window of the chunk with the most query terms, terms in <mark>."""

from __future__ import annotations

import html
import re

_WORD = re.compile(r"\w+", re.UNICODE)
STOPWORDS = frozenset(
    "a an and are as at be by for from has have in is it its of on or that the this to was were what when "
    "which who why with how does do did not no can will".split()
)


def query_terms(query: str) -> set[str]:
    return {w for w in (m.lower() for m in _WORD.findall(query)) if w not in STOPWORDS and len(w) > 1}


def _stem(word: str) -> str:
    # A light suffix strip so "travelling" marks for "travel"; precise stemming is not needed here.
    for suffix in ("ingly", "edly", "ing", "ies", "ed", "es", "s", "ly"):
        if word.endswith(suffix) and len(word) - len(suffix) >= 3:
            return word[: -len(suffix)]
    return word


def highlight(text: str, query: str, *, width: int = 40) -> str:
    words = text.split()
    if not words:
        return ""
    stems = {_stem(t) for t in query_terms(query)}
    # A chunk repeats its words ("the", "of", the topic's terms): each distinct one is decided once.
    decided: dict[str, bool] = {}

    def is_hit(word: str) -> bool:
        # Prefix match on stems ("travelling" marks for "travel") as set lookups, so the cost grows
        # with the chunk's length only, never with the query's (a pasted paragraph has hundreds).
        hit = decided.get(word)
        if hit is None:
            hit = decided[word] = any(
                _stem(c) in stems or any(c[:n] in stems for n in range(4, len(c) + 1))
                for c in _WORD.findall(word.lower())
            )
        return hit

    hits = [is_hit(w) for w in words]
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
