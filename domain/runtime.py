"""The services a request needs, built once at start by the api layer and handed down. Frozen:
nothing is patched in after start. What the API in front reports about itself is ServerFacts."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from domain.answers.service import Answering
from domain.auth.revocation import LocalOnly, Revocations
from domain.documents.service import ChunkingConfig, Documents
from domain.feedback.profiles import LearningConfig
from domain.jobs.progress import JobProgress
from domain.jobs.training_job import AutoTrainPolicy
from domain.jobs.training_trigger import TrainingTrigger
from domain.persistence.database import Database
from domain.providers.embedding import Embedder
from domain.recommendations.service import Recommender
from domain.rerank.service import Reranking
from domain.retrieval.cache import SearchCache
from domain.retrieval.index_health import IndexHealth
from domain.retrieval.searching import Searching


@dataclass(frozen=True)
class Limits:
    max_query_chars: int = 10_000
    max_documents_per_batch: int = 256
    max_document_chars: int = 2_000_000
    max_upload_bytes: int = 10 * 1024 * 1024


@dataclass(frozen=True)
class Services:
    db: Database
    embedder: Embedder
    keyword_backend: str
    reranking: Reranking
    answering: Answering
    recommender: Recommender
    searching: Searching
    documents: Documents
    database_kind: str
    database_version: str = ""
    pgvector_version: str = ""
    environment: str = "development"
    dev_tenant: str = "default"
    # New API keys start with this: "rgq_live_" in production, "rgq_dev_" elsewhere.
    api_key_prefix: str = "rgq_dev_"
    keyword_index: IndexHealth | None = None
    chunking: ChunkingConfig = field(default_factory=ChunkingConfig)
    limits: Limits = field(default_factory=Limits)
    learning: LearningConfig = field(default_factory=LearningConfig)
    search_cache: SearchCache = field(default_factory=SearchCache)
    revocations: Revocations = field(default_factory=LocalOnly)
    # Wakes ingestionProgress followers on each change of their job (None: they poll).
    job_progress: JobProgress | None = None
    # Queues a recommendation training when a tenant's feedback has grown enough (None: off).
    training: TrainingTrigger | None = None
    autotrain: AutoTrainPolicy = field(default_factory=AutoTrainPolicy)


class RateLimitBackend(Protocol):
    """The api layer's rate limiter, as serverInfo sees it: its backend may change while serving
    (Redis unreachable -> local), so it is read on each request, not copied at start."""

    @property
    def backend(self) -> str: ...


class _LocalLimits:
    backend = "local"


@dataclass(frozen=True)
class ServerFacts:
    """What serverInfo reports about identity and limits; set by the api layer at start, once."""

    auth_description: str = "development: requests without credentials act as the development tenant's admin"
    introspection: bool = True
    rate_limiter: RateLimitBackend = field(default_factory=_LocalLimits)
    # Whether this process runs ingestion jobs itself (else `ragql worker` processes do).
    in_process_worker: bool = False
