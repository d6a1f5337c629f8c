"""Uploaded files read into documents, each one on its own: a bad file is an error for its index,
and the others still go in."""

from __future__ import annotations

from collections.abc import Awaitable, Sequence
from typing import Any, Protocol, runtime_checkable

from domain.documents.error_codes import DocumentErrorCode
from domain.documents.parsing import ParseBudget, parse_upload_off_loop
from domain.documents.validation import DocumentInput
from domain.errors import DomainError, InvalidInput


@runtime_checkable
class UploadedFile(Protocol):
    """What a multipart file part offers (Starlette's UploadFile is one); no HTTP import here."""

    filename: str | None

    async def read(self, size: int = -1) -> bytes: ...


class Parse(Protocol):
    def __call__(
        self, filename: str, data: bytes, *, max_bytes: int, path: str, budget: ParseBudget | None = None
    ) -> Awaitable[tuple[str, str]]: ...


async def read_uploads(
    files: Sequence[object],
    *,
    metadata: Any,
    max_bytes: int,
    budget: ParseBudget | None = None,
    parse: Parse = parse_upload_off_loop,
) -> tuple[list[DocumentInput], list[DomainError]]:
    """`parse`: the service's ParsePool (a hard time limit) or, by default, a worker thread."""
    parsed: list[DocumentInput] = []
    errors: list[DomainError] = []
    for i, upload in enumerate(files):
        path = f"files.{i}"
        try:
            if not isinstance(upload, UploadedFile):
                # The Upload scalar also accepts a literal in the query text; only real parts are files.
                raise InvalidInput(
                    DocumentErrorCode.INVALID_UPLOAD,
                    "files must be parts of a multipart request (GraphQL multipart request spec), not literals",
                    field=path,
                )
            name = upload.filename or f"file-{i}"
            # Read one byte past the limit: enough to know it is too large without buffering it all.
            data = await upload.read(max_bytes + 1)
            title, text = await parse(name, data, max_bytes=max_bytes, path=path, budget=budget)
        except DomainError as exc:
            errors.append(exc)
            continue
        parsed.append(DocumentInput(title=title, text=text, external_id=f"upload:{name}", metadata=metadata))
    return parsed, errors
