"""The human-readable reasons attached to each recommendation."""

from __future__ import annotations

import re

from domain.persistence.tables import Document

_NON_WORD = re.compile(r"[^a-z0-9]+")


def _norm(value: str) -> str:
    return " " + _NON_WORD.sub(" ", value.lower()).strip() + " "


def context_terms(document: Document, context: str) -> list[str]:
    """The document's genre and tags that the context mentions ("sci-fi" matches "Sci-Fi"), longest
    first, so "time travel" wins over "travel"."""
    haystack = _norm(context)
    labels = [*document.tags, *([document.genre] if document.genre else [])]
    found = [label for label in labels if _norm(label).strip() and _norm(label) in haystack]
    return sorted(dict.fromkeys(found), key=lambda s: (-len(s), s))


def matches_context(document: Document, context: str) -> str:
    terms = context_terms(document, context)
    if terms:
        return "matches " + " and ".join(f"'{t}'" for t in terms[:2])
    short = context if len(context) <= 40 else context[:37].rstrip() + "…"
    return f"close to '{short}'"


def similar_to_liked(title: str) -> str:
    return f"similar to *{title}*, which you liked"


def because_you_liked(title: str) -> str:
    return f"because you liked *{title}*"


def liked_together(title: str) -> str:
    return f"people who liked *{title}* also liked this"


def popular(document: Document, by_feedback: bool) -> str:
    if not by_feedback:
        return f"highly rated ({document.rating:g}/5)" if document.rating is not None else "new in the catalogue"
    return f"popular in {document.genre}" if document.genre else "popular right now"
