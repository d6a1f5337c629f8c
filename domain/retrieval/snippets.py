"""Highlighted snippets: the window of the chunk with the most query terms, terms in <mark>."""

from __future__ import annotations

import html
import re
from bisect import bisect_left
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
    # (?<!\w) anchors the match at a token's start, (?!\w) a short stem's form at its end. The
    # terms go in as a trie (`_trie`): the engine tries each alternative at every token start, so a
    # pasted paragraph's 48 flat alternatives cost 48 tries there, a trie only the letters that fit.
    branches = []
    if long_stems:
        branches.append(_trie(long_stems))
    if exact:
        branches.append(_trie(exact) + "(?!\\w)")
    if not branches:
        return _Terms(None)
    return _Terms(re.compile("(?<!\\w)(?:" + "|".join(branches) + ")"))


_Node = dict[str, "_Node"]  # a trie node: next letter -> node; "" marks a word's end


def _trie(words: list[str]) -> str:
    """An alternation matching exactly `words`, their common prefixes factored out ("cell",
    "cellular", "cancer" -> c(?:ell(?:ular)?|ancer)). Terms are \\w+ runs, so re.escape changes
    nothing today; it keeps that from being an assumption."""
    root: _Node = {}
    for word in words:
        node = root
        for ch in word:
            node = node.setdefault(ch, {})
        node[""] = {}  # a word ends here

    def build(node: _Node) -> str:
        alternatives = [re.escape(ch) + build(child) for ch, child in sorted(node.items()) if ch]
        if not alternatives:
            return ""
        body = alternatives[0] if len(alternatives) == 1 else "(?:" + "|".join(alternatives) + ")"
        return f"(?:{body})?" if "" in node else body

    return build(root)


def _hit_words(words: list[str], terms: _Terms) -> list[int]:
    """The indices of the words holding a query term, ascending: one search of the whole text,
    in C, instead of one per word (a new query decides every word afresh, so that was a Python
    call per word of every hit, half a search's snippet time). The words rejoined by single
    spaces match as they do alone: a term's branches need a non-word character or an edge on
    either side, and a space is one. A lowercasing that changes the text's length (a few Unicode
    letters) would shift the offsets, so such a text is decided word by word."""
    pattern = terms.pattern
    if pattern is None:
        return []
    joined = " ".join(words)
    lowered = joined.lower()
    if len(lowered) != len(joined):
        return [i for i, word in enumerate(words) if terms.hit(word.lower())]
    found: list[int] = []
    index, position = 0, 0
    for match in pattern.finditer(lowered):
        start = match.start()
        index += joined.count(" ", position, start)  # the words passed since the last match
        position = start
        if not found or found[-1] != index:
            found.append(index)
    return found


def _best_window(hits: list[int], n: int, width: int) -> int:
    """The first start of the `width` words holding the most hits. Its count only grows where a
    window first reaches a hit (start = hit - width + 1), so the best start is 0 or one of those."""
    if n <= width or not hits:
        return 0
    best_start, best = 0, bisect_left(hits, width)
    for hit in hits:
        start = hit - width + 1
        if start <= best_start:
            continue
        count = bisect_left(hits, start + width) - bisect_left(hits, start)
        if count > best:
            best_start, best = start, count
    return best_start


def highlight(text: str, query: str, *, width: int = 40) -> str:
    words = text.split()
    if not words:
        return ""
    hits = _hit_words(words, _terms(query))
    best_start = _best_window(hits, len(words), width)
    stop = min(len(words), best_start + width)
    marked = {i for i in hits if best_start <= i < stop}
    # One escape of the shown words: escaping adds no whitespace, so its words line up.
    escaped = html.escape(" ".join(words[best_start:stop])).split()
    out = [f"<mark>{w}</mark>" if best_start + i in marked else w for i, w in enumerate(escaped)]
    prefix = "… " if best_start > 0 else ""
    suffix = " …" if stop < len(words) else ""
    return prefix + " ".join(out) + suffix
