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
    database_version: str = strawberry.field(
        description='PostgreSQL\'s version. In production only admins see it; others get "hidden".'
    )
    pgvector_version: str = strawberry.field(
        description='pgvector\'s version. In production only admins see it; others get "hidden".'
    )
    auth: str = strawberry.field(description="How callers are identified here, and what happens without credentials.")
    rate_limits: str = strawberry.field(
        description="Where rate limits are kept: `redis` (shared by replicas) or `local` (per process)."
    )
    introspection: bool
    providers: list[str]
    generator: str = strawberry.field(description="What writes answers: `extractive` (offline) or `llm:<model>`.")
    rerankers: list[RerankStrategy] = strawberry.field(description="Re-rank strategies configured here.")
    job_queue: str = strawberry.field(description="Where ingestion jobs wait: `pgqueuer` (PostgreSQL).")
    in_process_worker: bool = strawberry.field(
        description="Whether this server runs ingestion jobs itself; else `ragql worker` processes do."
    )


@strawberry.type
class PrincipalInfo:
    tenant: str
    subject: str
    roles: list[str]
    authenticated: bool
    method: str = strawberry.field(description="`jwt`, `api_key`, or `development` (no credentials, dev mode).")
