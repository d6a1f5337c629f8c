"""Resolvers for documents: ingest, upload, delete, read, list."""

from __future__ import annotations

from typing import Any, cast

import strawberry
from starlette.datastructures import UploadFile

from domain.documents import service as documents
from domain.documents.error_codes import DocumentErrorCode
from domain.documents.parsing import parse_upload
from domain.documents.validation import DocumentInput as DomainDocumentInput
from domain.documents.validation import normalize_metadata
from domain.errors import DomainError, InvalidInput
from resolvers.filters import to_domain_filter
from schema.common import PageInfo, UserError, from_global_id
from schema.context import Context
from schema.documents import (
    DeleteDocumentInput,
    DeleteDocumentPayload,
    Document,
    DocumentConnection,
    DocumentEdge,
    IngestDocumentsInput,
    IngestDocumentsPayload,
    IngestedDocument,
    IngestStatus,
    UploadDocumentsInput,
)
from schema.search import MetadataFilter


async def _ingest(
    info: strawberry.Info[Context],
    inputs: list[DomainDocumentInput],
    prefix: str,
    early_errors: list[DomainError],
) -> IngestDocumentsPayload:
    s = info.context.services
    if not inputs:
        return IngestDocumentsPayload(
            documents=[],
            results=[],
            chunks_embedded=0,
            errors=[UserError.from_domain(e) for e in early_errors],
        )
    outcome = await documents.ingest(
        db=s.db,
        embedder=s.embedder,
        tenant_id=info.context.tenant_id,
        inputs=inputs,
        chunking=s.chunking,
        max_batch=s.limits.max_documents_per_batch,
        max_chars=s.limits.max_document_chars,
        field_prefix=prefix,
    )
    s.search_cache.invalidate(info.context.tenant_id)
    results = [
        IngestedDocument(index=r.index, status=IngestStatus(r.status), document=Document.from_row(r.document))
        for r in outcome.documents
    ]
    return IngestDocumentsPayload(
        documents=[r.document for r in results],
        results=results,
        chunks_embedded=outcome.chunks_embedded,
        errors=[UserError.from_domain(e) for e in [*early_errors, *outcome.errors]],
    )


async def ingest_documents(info: strawberry.Info[Context], input: IngestDocumentsInput) -> IngestDocumentsPayload:
    inputs = [
        DomainDocumentInput(title=d.title, text=d.text, external_id=d.external_id, metadata=d.metadata)
        for d in input.documents
    ]
    try:
        return await _ingest(info, inputs, "documents", [])
    except DomainError as exc:
        return IngestDocumentsPayload(documents=[], results=[], chunks_embedded=0, errors=[UserError.from_domain(exc)])


async def upload_documents(info: strawberry.Info[Context], input: UploadDocumentsInput) -> IngestDocumentsPayload:
    limits = info.context.services.limits
    errors: list[DomainError] = []
    parsed: list[DomainDocumentInput] = []
    try:
        metadata: Any = normalize_metadata(input.metadata, "metadata")
    except DomainError as exc:
        return IngestDocumentsPayload(documents=[], results=[], chunks_embedded=0, errors=[UserError.from_domain(exc)])
    if len(input.files) > limits.max_documents_per_batch:
        err = InvalidInput(
            DocumentErrorCode.BATCH_TOO_LARGE,
            f"upload at most {limits.max_documents_per_batch} files per call",
            field="files",
        )
        return IngestDocumentsPayload(documents=[], results=[], chunks_embedded=0, errors=[UserError.from_domain(err)])
    for i, upload in enumerate(input.files):
        name = getattr(upload, "filename", None) or f"file-{i}"
        try:
            if not hasattr(upload, "read"):
                # The Upload scalar also accepts a literal in the query text; only real parts are files.
                raise InvalidInput(
                    DocumentErrorCode.INVALID_UPLOAD,
                    "files must be parts of a multipart request (GraphQL multipart request spec), not literals",
                    field=f"files.{i}",
                )
            # Read one byte past the limit: enough to know it is too large without buffering it all.
            data = await cast(UploadFile, upload).read(limits.max_upload_bytes + 1)
            title, text = parse_upload(name, data, max_bytes=limits.max_upload_bytes, path=f"files.{i}")
        except DomainError as exc:
            errors.append(exc)
            continue
        parsed.append(DomainDocumentInput(title=title, text=text, external_id=f"upload:{name}", metadata=metadata))
    try:
        return await _ingest(info, parsed, "files", errors)
    except DomainError as exc:
        return IngestDocumentsPayload(documents=[], results=[], chunks_embedded=0, errors=[UserError.from_domain(exc)])


async def delete_document(info: strawberry.Info[Context], input: DeleteDocumentInput) -> DeleteDocumentPayload:
    try:
        _, ident = from_global_id(input.id, expected="Document")
        await documents.delete(db=info.context.services.db, tenant_id=info.context.tenant_id, document_id=ident)
        info.context.services.search_cache.invalidate(info.context.tenant_id)
    except DomainError as exc:
        return DeleteDocumentPayload(deleted_id=None, errors=[UserError.from_domain(exc)])
    return DeleteDocumentPayload(deleted_id=input.id, errors=[])


async def document(info: strawberry.Info[Context], id: strawberry.ID) -> Document | None:
    _, ident = from_global_id(id, expected="Document")
    row = await documents.get(db=info.context.services.db, tenant_id=info.context.tenant_id, document_id=ident)
    return Document.from_row(row) if row else None


async def documents_connection(
    info: strawberry.Info[Context],
    first: int = 20,
    after: str | None = None,
    filter: MetadataFilter | None = None,
) -> DocumentConnection:
    page = await documents.list_page(
        db=info.context.services.db,
        tenant_id=info.context.tenant_id,
        first=first,
        after=after,
        flt=to_domain_filter(filter),
    )
    edges = [DocumentEdge(cursor=documents.encode_cursor(d), node=Document.from_row(d)) for d in page.documents]
    return DocumentConnection(
        edges=edges,
        page_info=PageInfo(
            has_next_page=page.has_next,
            has_previous_page=after is not None,
            start_cursor=edges[0].cursor if edges else None,
            end_cursor=edges[-1].cursor if edges else None,
        ),
        total_count=page.total,
    )
