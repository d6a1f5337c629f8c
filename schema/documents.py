"""Document types, inputs and payloads."""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import Enum
from typing import TYPE_CHECKING, Annotated, cast

import strawberry
from strawberry.file_uploads import Upload
from strawberry.scalars import JSON

from domain.persistence.tables import Document as DocumentRow
from schema.common import Node, PageInfo, UserError, to_global_id

if TYPE_CHECKING:
    from schema.jobs import IngestionJob


@strawberry.enum(description="SYNC embeds inside the request; ASYNC returns a queued job at once.")
class IngestMode(Enum):
    SYNC = "SYNC"
    ASYNC = "ASYNC"


_MODE = (
    "SYNC: stored before the call returns (up to RAGQL_MAX_DOCUMENTS_PER_BATCH). ASYNC: a job, returned at once "
    "(up to 10,000). Left out: SYNC up to RAGQL_ASYNC_INGEST_THRESHOLD documents, ASYNC above."
)


@strawberry.type
class Chunk(Node):
    ordinal: int
    text: str

    @classmethod
    def build(cls, chunk_id: uuid.UUID, ordinal: int, text: str) -> Chunk:
        return cls(id=to_global_id("Chunk", chunk_id), ordinal=ordinal, text=text)


@strawberry.type
class Document(Node):
    external_id: str | None
    title: str
    text: str
    metadata: JSON
    genre: str | None
    tags: list[str]
    rating: float | None
    year: int | None
    source: str | None
    chunk_count: int
    content_hash: str
    created_at: datetime
    updated_at: datetime
    row: strawberry.Private[DocumentRow]

    @classmethod
    def from_row(cls, row: DocumentRow) -> Document:
        return cls(
            id=to_global_id("Document", row.id),
            external_id=row.external_id,
            title=row.title,
            text=row.text,
            metadata=cast(JSON, row.metadata_),
            genre=row.genre,
            tags=list(row.tags or []),
            rating=row.rating,
            year=row.year,
            source=row.source,
            chunk_count=row.chunk_count,
            content_hash=row.content_hash,
            created_at=row.created_at,
            updated_at=row.updated_at,
            row=row,
        )


@strawberry.type
class DocumentEdge:
    cursor: str
    node: Document


@strawberry.type
class DocumentConnection:
    edges: list[DocumentEdge]
    page_info: PageInfo
    total_count: int


@strawberry.input(
    description="Built-in filterable keys: genre, tags, rating (0..5), year, source; others are free JSON."
)
class DocumentInput:
    title: str
    text: str
    external_id: str | None = None
    metadata: JSON | None = None


@strawberry.input
class IngestDocumentsInput:
    documents: list[DocumentInput]
    mode: IngestMode | None = strawberry.field(default=None, description=_MODE)


@strawberry.input
class UploadDocumentsInput:
    files: list[Upload]
    metadata: JSON | None = strawberry.field(default=None, description="Applied to every uploaded file.")
    mode: IngestMode | None = strawberry.field(default=None, description=_MODE)


@strawberry.enum
class IngestStatus(Enum):
    CREATED = "CREATED"
    UPDATED = "UPDATED"
    UNCHANGED = "UNCHANGED"


@strawberry.type
class IngestedDocument:
    index: int = strawberry.field(description="Position of this document in the input list.")
    status: IngestStatus
    document: Document


@strawberry.type
class IngestDocumentsPayload:
    # Defaults: a payload that failed as a whole is `IngestDocumentsPayload(errors=[...])`.
    documents: list[Document] = strawberry.field(default_factory=list)
    results: list[IngestedDocument] = strawberry.field(default_factory=list)
    chunks_embedded: int = 0
    errors: list[UserError] = strawberry.field(default_factory=list)
    job: Annotated[IngestionJob, strawberry.lazy("schema.jobs")] | None = strawberry.field(
        default=None, description="The job, when the call ran ASYNC; its documents are stored by a worker."
    )


@strawberry.input
class DeleteDocumentInput:
    id: strawberry.ID


@strawberry.type
class DeleteDocumentPayload:
    deleted_id: strawberry.ID | None = None
    errors: list[UserError] = strawberry.field(default_factory=list)
