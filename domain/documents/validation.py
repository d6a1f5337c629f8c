"""Validation and normalisation of incoming documents. Built-in filterable fields are typed;
any other metadata key is free JSON under a name that filters can address."""

from __future__ import annotations

import hashlib
import json
import math
import re
from dataclasses import dataclass, field
from typing import Any

from domain.documents.error_codes import DocumentErrorCode
from domain.errors import InvalidInput

METADATA_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")
MAX_METADATA_BYTES = 64 * 1024
MAX_TITLE_CHARS = 1000
MAX_TAGS = 64


@dataclass(frozen=True)
class DocumentInput:
    title: str
    text: str
    external_id: str | None = None
    metadata: Any = None


@dataclass
class NormalizedDocument:
    title: str
    text: str
    external_id: str | None
    content_hash: str
    genre: str | None = None
    tags: list[str] = field(default_factory=list)
    rating: float | None = None
    year: int | None = None
    source: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def metadata(self) -> dict[str, Any]:
        """The full metadata as clients see it: built-ins plus free keys."""
        out: dict[str, Any] = dict(self.extra)
        for key in ("genre", "rating", "year", "source"):
            value = getattr(self, key)
            if value is not None:
                out[key] = value
        if self.tags:
            out["tags"] = self.tags
        return out


def content_hash(title: str, text: str) -> str:
    return hashlib.sha256(f"{title}\x00{text}".encode()).hexdigest()


def _bad(field_path: str, message: str, code: DocumentErrorCode = DocumentErrorCode.INVALID_METADATA) -> InvalidInput:
    return InvalidInput(code, message, field=field_path)


def _string(value: Any, path: str, limit: int = 200) -> str:
    if not isinstance(value, str) or not value.strip() or len(value) > limit:
        raise _bad(path, f"{path} must be a non-empty string of at most {limit} characters")
    return value.strip()


MAX_METADATA_DEPTH = 32
# Lone UTF-16 surrogates: JSON allows "\\ud800", but UTF-8 (PostgreSQL, every encoder) can't hold one.
_SURROGATE = re.compile("[\ud800-\udfff]")


def bad_character(text: str) -> str | None:
    """What is wrong with a string PostgreSQL must store, or None."""
    if "\x00" in text:
        return "the NUL character (\\u0000)"
    if _SURROGATE.search(text):
        return "a lone UTF-16 surrogate (\\ud800-\\udfff)"
    return None


def check_text(value: str, path: str) -> None:
    problem = bad_character(value)
    if problem is not None:
        raise InvalidInput(
            DocumentErrorCode.INVALID_CHARACTER, f"{path} contains {problem}; remove it and retry", field=path
        )


def _check_json(value: Any, path: str, depth: int = 0) -> None:
    """Every value must be storable as jsonb: finite numbers, clean strings, bounded nesting."""
    if depth > MAX_METADATA_DEPTH:
        raise _bad(path, f"metadata is nested more than {MAX_METADATA_DEPTH} levels deep")
    if isinstance(value, float) and not math.isfinite(value):
        raise _bad(path, f"{path} is {value}; JSON numbers must be finite")
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) >= 10**300:
        raise _bad(path, f"{path} is a number too large to store")
    if isinstance(value, str):
        check_text(value, path)
    elif isinstance(value, dict):
        for key, item in value.items():
            check_text(str(key), path)
            _check_json(item, f"{path}.{key}", depth + 1)
    elif isinstance(value, list):
        for i, item in enumerate(value):
            _check_json(item, f"{path}.{i}", depth + 1)


def normalize_metadata(raw: Any, path: str) -> dict[str, Any]:
    if raw is None:
        return {}
    if isinstance(raw, str):
        try:
            raw = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise _bad(path, f"{path} is not valid JSON ({exc.msg}); send a JSON object") from exc
    if not isinstance(raw, dict):
        raise _bad(path, f'{path} must be a JSON object like {{"genre": "Drama", "year": 1999}}')
    _check_json(raw, path)
    if len(json.dumps(raw, default=str)) > MAX_METADATA_BYTES:
        raise _bad(path, f"{path} is larger than {MAX_METADATA_BYTES // 1024} KiB; store large data elsewhere")
    for key in raw:
        if not METADATA_KEY.match(str(key)):
            raise _bad(
                f"{path}.{key}",
                f"metadata key {key!r} must match {METADATA_KEY.pattern} so filters can use it",
            )
    return raw


def normalize(doc: DocumentInput, path: str, *, max_chars: int) -> NormalizedDocument:
    for name, value in (("title", doc.title), ("text", doc.text), ("externalId", doc.external_id)):
        if isinstance(value, str):
            check_text(value, f"{path}.{name}")
    title = (doc.title or "").strip()
    if not title:
        raise InvalidInput(DocumentErrorCode.INVALID_DOCUMENT, "title must not be empty", field=f"{path}.title")
    if len(title) > MAX_TITLE_CHARS:
        raise InvalidInput(
            DocumentErrorCode.INVALID_DOCUMENT, f"title is over {MAX_TITLE_CHARS} characters", field=f"{path}.title"
        )
    text = (doc.text or "").strip()
    if not text:
        raise InvalidInput(DocumentErrorCode.INVALID_DOCUMENT, "text must not be empty", field=f"{path}.text")
    if len(text) > max_chars:
        raise InvalidInput(
            DocumentErrorCode.DOCUMENT_TOO_LARGE,
            f"text is {len(text)} characters; the limit is {max_chars}",
            field=f"{path}.text",
        )
    external_id = doc.external_id.strip() if doc.external_id else None
    if external_id is not None and (not external_id or len(external_id) > 256):
        raise InvalidInput(
            DocumentErrorCode.INVALID_DOCUMENT, "externalId must be 1-256 characters", field=f"{path}.externalId"
        )

    meta = dict(normalize_metadata(doc.metadata, f"{path}.metadata"))
    out = NormalizedDocument(title=title, text=text, external_id=external_id, content_hash=content_hash(title, text))
    mpath = f"{path}.metadata"
    if "genre" in meta:
        out.genre = _string(meta.pop("genre"), f"{mpath}.genre")
    if "source" in meta:
        out.source = _string(meta.pop("source"), f"{mpath}.source")
    if "tags" in meta:
        tags = meta.pop("tags")
        if not isinstance(tags, list) or len(tags) > MAX_TAGS:
            raise _bad(f"{mpath}.tags", f"tags must be a list of at most {MAX_TAGS} strings")
        out.tags = [_string(t, f"{mpath}.tags", 100) for t in tags]
    if "rating" in meta:
        rating = meta.pop("rating")
        if isinstance(rating, bool) or not isinstance(rating, int | float) or not math.isfinite(rating):
            raise _bad(f"{mpath}.rating", "rating must be a number from 0 to 5")
        if not 0 <= rating <= 5:
            raise _bad(f"{mpath}.rating", f"rating {rating} is outside 0..5")
        out.rating = float(rating)
    if "year" in meta:
        year = meta.pop("year")
        if isinstance(year, bool) or not isinstance(year, int) or not 0 <= year <= 3000:
            raise _bad(f"{mpath}.year", "year must be a whole number such as 1999")
        out.year = year
    out.extra = meta
    return out
