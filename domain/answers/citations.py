"""Citations in generated text. Models cite sources that do not exist; a `[7]` with five sources
would send a reader nowhere. The filter below runs on the stream itself, so a dangling citation is
dropped before any client sees it, and the ones kept are recorded in order of first use."""

from __future__ import annotations

import re

_CITATION = re.compile(r"\[(\s*\d{1,3}\s*(?:,\s*\d{1,3}\s*)*)\]")
# What a citation can look like before its closing bracket has arrived.
_OPEN_CITATION = re.compile(r"\[[\d,\s]*$")
_MAX_PENDING = 24


class CitationFilter:
    def __init__(self, valid: set[int]) -> None:
        self.valid = valid
        self.used: list[int] = []
        self.dropped: list[str] = []
        self._pending = ""

    def feed(self, delta: str) -> str:
        """Text that is safe to emit now. An unfinished `[12` is held until it resolves."""
        buffer = self._pending + delta
        out: list[str] = []
        while True:
            start = buffer.find("[")
            if start < 0:
                out.append(buffer)
                buffer = ""
                break
            out.append(buffer[:start])
            rest = buffer[start:]
            match = _CITATION.match(rest)
            if match:
                out.append(self._resolve(match.group(0), match.group(1)))
                buffer = rest[match.end() :]
                continue
            if _OPEN_CITATION.match(rest) and len(rest) <= _MAX_PENDING:
                buffer = rest  # may still become a citation
                break
            out.append("[")  # a literal bracket
            buffer = rest[1:]
        self._pending = buffer
        return "".join(out)

    def flush(self) -> str:
        rest, self._pending = self._pending, ""
        return rest

    def _resolve(self, raw: str, inner: str) -> str:
        numbers = [int(n) for n in inner.split(",")]
        kept = [n for n in numbers if n in self.valid]
        if len(kept) < len(numbers):
            self.dropped.append(raw)
        for n in kept:
            if n not in self.used:
                self.used.append(n)
        return "".join(f"[{n}]" for n in kept)


def clean_citations(text: str, valid: set[int]) -> tuple[str, list[int], list[str]]:
    """The whole-text form of the filter: (text, citations used, citations dropped)."""
    f = CitationFilter(valid)
    cleaned = f.feed(text) + f.flush()
    return cleaned, f.used, f.dropped
