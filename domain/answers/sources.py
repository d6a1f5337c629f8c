"""What a generator answers from: numbered passages, each a retrieved hit or the user's selection."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from domain.retrieval.search import Hit


@dataclass(frozen=True)
class Source:
    number: int
    title: str
    text: str
    hit: Hit | None = None  # None when the passage is text the user selected

    @property
    def key(self) -> str:
        """A stable identity for caching per-passage work."""
        if self.hit is not None:
            return str(self.hit.chunk_id)
        return f"selection:{uuid.uuid5(uuid.NAMESPACE_OID, self.text)}"

    def as_block(self) -> tuple[int, str, str]:
        return (self.number, self.title, self.text)

    def record(self) -> dict[str, object]:
        """What the answers table keeps of a source."""
        if self.hit is None:
            return {"n": self.number, "title": self.title, "selection": self.text[:2000]}
        return {
            "n": self.number,
            "title": self.title,
            "documentId": str(self.hit.document.id),
            "chunkId": str(self.hit.chunk_id),
            "score": self.hit.score,
        }
