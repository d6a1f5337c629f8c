"""serverInfo and me."""

from __future__ import annotations

from enum import Enum

import strawberry

from schema.search import RerankStrategy


@strawberry.enum
class KeywordBackend(Enum):
    BM25 = "BM25"
    FULLTEXT = "FULLTEXT"


@strawberry.type
class ServerInfo:
    version: str
    environment: str
    embedding_model: str
    embedding_dim: int
    keyword_backend: KeywordBackend
    keyword_backend_note: str
    keyword_index_healthy: bool
    keyword_index_repaired_at_start: bool
    database: str
    database_version: str
    pgvector_version: str
    auth: str
    providers: list[str]
    generator: str = strawberry.field(description="What writes answers: `extractive` (offline) or `llm:<model>`.")
    rerankers: list[RerankStrategy] = strawberry.field(description="Re-rank strategies configured here.")


@strawberry.type
class PrincipalInfo:
    tenant: str
    subject: str
    roles: list[str]
    authenticated: bool
