"""Resolvers for documents: ingest, upload, delete, read, list. Each makes one call to the
Documents service; a DomainError it raises becomes the payload's errors (schema/payload_errors.py)."""

from __future__ import annotations

import strawberry

from domain.documents import service as documents
from domain.documents.validation import DocumentInput as DomainDocumentInput
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
    IngestMode,
    IngestStatus,
    UploadDocumentsInput,
)
from schema.jobs import IngestionJob
from schema.search import MetadataFilter


def to_payload(outcome: documents.IngestOutcome) -> IngestDocumentsPayload:
    results = [
        IngestedDocument(index=r.index, status=IngestStatus(r.status), document=Document.from_row(r.document))
        for r in outcome.documents
    ]
    return IngestDocumentsPayload(
        documents=[r.document for r in results],
        results=results,
        chunks_embedded=outcome.chunks_embedded,
        errors=[UserError.from_domain(e) for e in outcome.errors],
        job=IngestionJob.from_row(outcome.job) if outcome.job else None,
    )


def _mode(mode: IngestMode | None) -> documents.IngestMode | None:
    return None if mode is None else ("ASYNC" if mode is IngestMode.ASYNC else "SYNC")


async def ingest_documents(info: strawberry.Info[Context], input: IngestDocumentsInput) -> IngestDocumentsPayload:
    inputs = [
        DomainDocumentInput(title=d.title, text=d.text, external_id=d.external_id, metadata=d.metadata)
        for d in input.documents
    ]
    outcome = await info.context.services.documents.ingest(
        info.context.tenant_id, inputs, mode=_mode(input.mode), created_by=info.context.principal.subject
    )
    return to_payload(outcome)


async def upload_documents(info: strawberry.Info[Context], input: UploadDocumentsInput) -> IngestDocumentsPayload:
    outcome = await info.context.services.documents.upload(
        info.context.tenant_id,
        input.files,
        input.metadata,
        mode=_mode(input.mode),
        created_by=info.context.principal.subject,
    )
    return to_payload(outcome)


async def delete_document(info: strawberry.Info[Context], input: DeleteDocumentInput) -> DeleteDocumentPayload:
    _, ident = from_global_id(input.id, expected="Document")
    await info.context.services.documents.delete(info.context.tenant_id, ident)
    return DeleteDocumentPayload(deleted_id=input.id)


async def document(info: strawberry.Info[Context], id: strawberry.ID) -> Document | None:
    _, ident = from_global_id(id, expected="Document")
    row = await info.context.services.documents.get(info.context.tenant_id, ident)
    return Document.from_row(row) if row else None


async def documents_connection(
    info: strawberry.Info[Context],
    first: int = 20,
    after: str | None = None,
    filter: MetadataFilter | None = None,
) -> DocumentConnection:
    page = await info.context.services.documents.list_page(
        info.context.tenant_id, first=first, after=after, flt=to_domain_filter(filter)
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
