"""A new job's items, built when the job is created: each input validated now, so a bad document
is reported at once (with its input path and code) and never queued, and a repeated externalId
is refused the same way. Valid inputs are kept as JSON until a worker writes them."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from domain.documents.error_codes import DocumentErrorCode
from domain.documents.validation import DocumentInput, normalize
from domain.errors import DomainError
from domain.jobs.model import ItemError, NewItem


def _payload(doc: DocumentInput) -> dict[str, Any]:
    return {"title": doc.title, "text": doc.text, "externalId": doc.external_id, "metadata": doc.metadata}


def document_input(payload: dict[str, Any]) -> DocumentInput:
    return DocumentInput(
        title=str(payload.get("title") or ""),
        text=str(payload.get("text") or ""),
        external_id=payload.get("externalId"),
        metadata=payload.get("metadata"),
    )


def item_error(exc: DomainError, default_field: str) -> ItemError:
    return ItemError(index=-1, field=exc.field or default_field, code=exc.code, message=exc.message)


def document_items(inputs: Sequence[DocumentInput | ItemError], prefix: str, *, max_chars: int) -> list[NewItem]:
    """One item per input, in order: the input to store later, or why it cannot be stored (an
    ItemError among the inputs is an input already refused, a file that could not be read)."""
    items: list[NewItem] = []
    seen: set[str] = set()
    for i, raw in enumerate(inputs):
        path = f"{prefix}.{i}"
        if isinstance(raw, ItemError):
            items.append(NewItem(None, with_index(raw, i)))
            continue
        try:
            doc = normalize(raw, path, max_chars=max_chars)
        except DomainError as exc:
            items.append(NewItem(None, with_index(item_error(exc, path), i)))
            continue
        if doc.external_id is not None:
            if doc.external_id in seen:
                err = ItemError(
                    i,
                    f"{path}.externalId",
                    DocumentErrorCode.DUPLICATE_EXTERNAL_ID,
                    "externalId appears twice in this job",
                )
                items.append(NewItem(None, err))
                continue
            seen.add(doc.external_id)
        items.append(NewItem(_payload(raw)))
    return items


def with_index(err: ItemError, index: int) -> ItemError:
    return ItemError(index, err.field, err.code, err.message)
