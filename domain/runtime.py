"""The services a request needs, built once at start by the api layer and handed down."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from domain.answers.service import Answering
from domain.documents.service import ChunkingConfig
from domain.feedback.profiles import LearningConfig
from domain.persistence.database import Database
from domain.providers.embedding import Embedder
from domain.recommendations.service import Recommender
from domain.rerank.service import Reranking
from domain.retrieval.cache import SearchCache
from domain.retrieval.index_health import IndexHealth


@dataclass(frozen=True)
class Limits:
    max_query_chars: int = 1000
    max_documents_per_batch: int = 256
    max_document_chars: int = 2_000_000
    max_upload_bytes: int = 10 * 1024 * 1024


@dataclass
class Services:
    db: Database
    embedder: Embedder
    keyword_backend: str
    reranking: Reranking
    answering: Answering
    recommender: Recommender
    database_kind: str
    database_version: str = ""
    pgvector_version: str = ""
    environment: str = "development"
    dev_tenant: str = "default"
    # New API keys start with this: "rgq_live_" in production, "rgq_dev_" elsewhere.
    api_key_prefix: str = "rgq_dev_"
    # What serverInfo reports about identity and limits; set by the api layer at start.
    auth_description: str = "development: requests without credentials act as the development tenant's admin"
    introspection: bool = True
    rate_limit_backend: Callable[[], str] = lambda: "local"
    keyword_index: IndexHealth | None = None
    chunking: ChunkingConfig = field(default_factory=ChunkingConfig)
    limits: Limits = field(default_factory=Limits)
    learning: LearningConfig = field(default_factory=LearningConfig)
    search_cache: SearchCache = field(default_factory=SearchCache)
