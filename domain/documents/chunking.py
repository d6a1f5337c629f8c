"""Token-aware chunking: whole sentences packed up to a token budget, with sentence overlap.
The title is prepended to every chunk's search text so each chunk keeps its context."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

TokenCounter = Callable[[str], int]

_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[\"'(\[]?[A-Z0-9])|\n{2,}")


@dataclass(frozen=True)
class ChunkText:
    ordinal: int
    text: str
    search_text: str
    token_count: int


def split_sentences(text: str) -> list[str]:
    return [s.strip() for s in _SENTENCE_END.split(text) if s and s.strip()]


def _split_long(sentence: str, budget: int, count: TokenCounter) -> list[str]:
    """A sentence over budget is cut on word boundaries (tables, lists, run-on text)."""
    pieces: list[str] = []
    words = sentence.split()
    current: list[str] = []
    for word in words:
        current.append(word)
        if count(" ".join(current)) > budget and len(current) > 1:
            current.pop()
            pieces.append(" ".join(current))
            current = [word]
    if current:
        pieces.append(" ".join(current))
    return pieces


def chunk_document(
    title: str, text: str, *, max_tokens: int, overlap_tokens: int, count: TokenCounter
) -> list[ChunkText]:
    title = title.strip()
    title_tokens = count(title) + 1 if title else 0
    budget = max(16, max_tokens - title_tokens)

    units: list[tuple[str, int]] = []
    for sentence in split_sentences(text):
        n = count(sentence)
        if n <= budget:
            units.append((sentence, n))
        else:
            units.extend((p, count(p)) for p in _split_long(sentence, budget, count))

    chunks: list[list[tuple[str, int]]] = []
    current: list[tuple[str, int]] = []
    size = 0
    for unit in units:
        if current and size + unit[1] > budget:
            chunks.append(current)
            # Carry trailing sentences into the next chunk, up to the overlap budget.
            carried: list[tuple[str, int]] = []
            carried_size = 0
            for prev in reversed(current):
                if carried_size + prev[1] > overlap_tokens or carried_size + prev[1] + unit[1] > budget:
                    break
                carried.insert(0, prev)
                carried_size += prev[1]
            current, size = carried, carried_size
        current.append(unit)
        size += unit[1]
    if current:
        chunks.append(current)

    out: list[ChunkText] = []
    for ordinal, parts in enumerate(chunks):
        body = " ".join(p for p, _ in parts)
        search_text = f"{title}\n{body}" if title else body
        out.append(ChunkText(ordinal, body, search_text, sum(n for _, n in parts) + title_tokens))
    if not out and title:
        out.append(ChunkText(0, "", title, title_tokens))
    return out
