"""SQLModel tables. Every tenant-owned table carries tenant_id; chunks are insert-only (see
retrieval-notes: updating BM25-indexed rows degrades pg_textsearch), so a changed document gets
new chunk rows and the old ones are deleted in the same transaction."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from pgvector.sqlalchemy import Vector
from sqlalchemy import ARRAY, Column, DateTime, Float, ForeignKey, Integer, Text, UniqueConstraint
from sqlalchemy.dialects.postgresql import JSONB, UUID
from sqlmodel import Field, SQLModel


def utcnow() -> datetime:
    return datetime.now(UTC)


class Meta(SQLModel, table=True):
    """Store-wide facts, such as which embedding model filled the vectors."""

    __tablename__ = "ragql_meta"
    key: str = Field(primary_key=True)
    value: str


class Tenant(SQLModel, table=True):
    __tablename__ = "tenants"
    id: str = Field(primary_key=True)
    name: str
    created_at: datetime = Field(default_factory=utcnow, sa_column=Column(DateTime(timezone=True)))


class Document(SQLModel, table=True):
    __tablename__ = "documents"
    __table_args__ = (UniqueConstraint("tenant_id", "external_id"),)

    id: uuid.UUID = Field(default_factory=uuid.uuid4, sa_column=Column(UUID(as_uuid=True), primary_key=True))
    tenant_id: str = Field(foreign_key="tenants.id", index=True)
    external_id: str | None = None
    title: str
    text: str = Field(sa_column=Column(Text, nullable=False))
    content_hash: str
    metadata_: dict[str, Any] = Field(default_factory=dict, sa_column=Column("metadata", JSONB, nullable=False))
    genre: str | None = None
    tags: list[str] = Field(default_factory=list, sa_column=Column(ARRAY(Text), nullable=False))
    rating: float | None = Field(default=None, sa_column=Column(Float))
    year: int | None = Field(default=None, sa_column=Column(Integer))
    source: str | None = None
    chunk_count: int = 0
    created_at: datetime = Field(default_factory=utcnow, sa_column=Column(DateTime(timezone=True), nullable=False))
    updated_at: datetime = Field(default_factory=utcnow, sa_column=Column(DateTime(timezone=True), nullable=False))


class Chunk(SQLModel, table=True):
    __tablename__ = "chunks"

    id: uuid.UUID = Field(default_factory=uuid.uuid4, sa_column=Column(UUID(as_uuid=True), primary_key=True))
    tenant_id: str = Field(index=True)
    document_id: uuid.UUID = Field(
        sa_column=Column(UUID(as_uuid=True), ForeignKey("documents.id", ondelete="CASCADE"), nullable=False)
    )
    ordinal: int
    text: str = Field(sa_column=Column(Text, nullable=False))
    # What is embedded and BM25-indexed: the title as context, then the chunk text.
    search_text: str = Field(sa_column=Column(Text, nullable=False))
    token_count: int
    embedding: Any = Field(sa_column=Column(Vector(), nullable=False))


class QueryLog(SQLModel, table=True):
    __tablename__ = "query_log"

    id: uuid.UUID = Field(default_factory=uuid.uuid4, sa_column=Column(UUID(as_uuid=True), primary_key=True))
    tenant_id: str = Field(index=True)
    query: str = Field(sa_column=Column(Text, nullable=False))
    mode: str
    options: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSONB, nullable=False))
    result_count: int
    document_ids: list[str] = Field(default_factory=list, sa_column=Column(ARRAY(Text), nullable=False))
    took_ms: float
    created_at: datetime = Field(default_factory=utcnow, sa_column=Column(DateTime(timezone=True), nullable=False))


class Answer(SQLModel, table=True):
    __tablename__ = "answers"

    id: uuid.UUID = Field(sa_column=Column(UUID(as_uuid=True), primary_key=True))
    tenant_id: str = Field(index=True)
    session_id: uuid.UUID = Field(sa_column=Column(UUID(as_uuid=True), nullable=False))
    turn: int = 0
    question: str = Field(sa_column=Column(Text, nullable=False))
    retrieval_query: str | None = Field(default=None, sa_column=Column(Text))
    options: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSONB, nullable=False))
    sources: list[dict[str, Any]] = Field(default_factory=list, sa_column=Column(JSONB, nullable=False))
    text: str = Field(default="", sa_column=Column(Text, nullable=False))
    citations: list[int] = Field(default_factory=list, sa_column=Column(ARRAY(Integer), nullable=False))
    dropped_citations: list[str] = Field(default_factory=list, sa_column=Column(ARRAY(Text), nullable=False))
    generator: str
    rerank: str = "NONE"
    status: str
    error_code: str | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    first_token_ms: float | None = Field(default=None, sa_column=Column(Float))
    took_ms: float = Field(sa_column=Column(Float, nullable=False))
    created_at: datetime = Field(default_factory=utcnow, sa_column=Column(DateTime(timezone=True), nullable=False))
