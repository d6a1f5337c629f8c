"""Build the services at start: database (embedded or external), migrations, embedder, demo data."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import replace

from pydantic import SecretStr
from sqlalchemy import text

from api import embedded
from api.auth.authenticate import Authenticator, KeyCache
from api.auth.jwks import JwksSource
from api.auth.tokens import JwtConfig, JwtVerifier
from api.graphql_router import Gatekeeping
from api.host_versions import host_store
from api.ratelimit import Rate, RateLimiter
from api.redis_link import RedisLink
from api.replay import RecordedSearching
from api.revocation import Broadcast
from api.settings import Settings
from api.shared_cache import RedisStore
from api.socket_slots import SocketSlots
from api.worker import WorkerConfig, WorkerDeps
from domain.answers.extractive import ExtractiveGenerator
from domain.answers.generators import LLMGenerator
from domain.answers.sentence_vectors import SentenceVectorStore
from domain.answers.service import Answering, AnswerLimits
from domain.answers.stored import AnswerCache
from domain.auth.revocation import LocalOnly
from domain.caching.store import CacheStore, LocalStore
from domain.demo.loader import demo_documents
from domain.documents import service as documents
from domain.documents.parse_pool import ParsePool
from domain.documents.parsing import ParseBudget
from domain.documents.service import ChunkingConfig, Documents, IngestContext
from domain.feedback.profiles import LearningConfig
from domain.jobs.model import Job
from domain.jobs.progress import JobProgress
from domain.jobs.training_job import AutoTrainPolicy
from domain.jobs.training_trigger import TrainingTrigger
from domain.persistence.database import Database
from domain.persistence.migrate import check_embedding_model, keyword_backend, migrate
from domain.providers.cross_rankers import CohereReranker
from domain.providers.embedding import Embedder, LocalEmbedder, OpenAIEmbedder
from domain.providers.llm import OpenAIChat
from domain.providers.query_lru import DEFAULT_CAPACITY
from domain.recommendations.service import Recommender
from domain.rerank.service import RerankConfig, Reranking
from domain.retrieval.cache import SearchCache
from domain.retrieval.index_health import ensure_bm25_healthy
from domain.retrieval.long_query import TermStatistics, warm_up
from domain.retrieval.query_log import QueryLogWriter
from domain.runtime import Limits, Services
from domain.tenancy import ensure_tenant

log = logging.getLogger("ragql")
DEFAULT_TENANT = "default"


def build_embedder(settings: Settings) -> Embedder:
    if settings.embedding_provider == "openai":
        key = settings.openai_api_key.get_secret_value() if settings.openai_api_key else None
        return OpenAIEmbedder(
            model=settings.openai_embedding_model,
            dim=settings.embedding_dim,
            api_key=key,
            base_url=settings.openai_base_url,
        )
    # RAGQL_EMBEDDING_CACHE_TTL_S=0 means no query vector is reused, in the encoder either.
    lru = DEFAULT_CAPACITY if settings.embedding_cache_ttl_s > 0 else 0
    if settings.embedding_backend == "torch":
        return LocalEmbedder(batch_size=settings.embedding_batch_size, query_cache_size=lru)
    from domain.providers.onnx_embedder import OnnxEmbedder
    from domain.providers.onnx_export import ensure_exported

    return OnnxEmbedder(
        ensure_exported(settings.model_cache_dir, settings.embedding_backend),
        threads=settings.embedding_threads,
        max_batch_tokens=settings.embedding_max_batch_tokens,
        query_cache_size=lru,
    )


def _secret(value: SecretStr | None) -> str | None:
    return value.get_secret_value() if value is not None else None


def build_chat(settings: Settings) -> OpenAIChat | None:
    if not settings.llm_model:
        return None
    return OpenAIChat(
        model=settings.llm_model,
        api_key=_secret(settings.llm_api_key) or _secret(settings.openai_api_key),
        base_url=settings.llm_base_url or settings.openai_base_url,
        timeout_s=settings.llm_timeout_s,
        max_retries=settings.llm_max_retries,
        usd_per_million=(settings.llm_usd_per_million_prompt, settings.llm_usd_per_million_completion),
    )


def build_reranking(settings: Settings, chat: OpenAIChat | None) -> Reranking:
    key = _secret(settings.cohere_api_key)
    cross = (
        CohereReranker(
            model=settings.cohere_rerank_model,
            api_key=key,
            base_url=settings.cohere_base_url,
            timeout_s=settings.rerank_timeout_s,
            max_retries=settings.rerank_max_retries,
        )
        if key
        else None
    )
    config = RerankConfig(
        timeout_s=settings.rerank_timeout_s,
        max_candidates=settings.rerank_max_candidates,
        window=settings.rerank_window,
        step=settings.rerank_step,
    )
    return Reranking(config=config, cross=cross, chat=chat)


def build_learning(settings: Settings) -> LearningConfig:
    return LearningConfig(
        profile_half_life_days=settings.profile_half_life_days,
        popularity_half_life_days=settings.popularity_half_life_days,
        popularity_window_days=settings.popularity_window_days,
    )


class Shared:
    """What replicas share through Redis, or this process alone without it."""

    def __init__(self, settings: Settings) -> None:
        self.link = RedisLink.from_url(settings.redis_url) if settings.redis_url else None
        # Without Redis, the index versions are still shared by this host's processes (workers,
        # `ragql worker`): api/host_versions.py.
        self.store: CacheStore = RedisStore(self.link) if self.link else host_store(settings.data_dir)
        self.broadcast = Broadcast(settings.redis_url, self.link, alone=(settings.workers or 1) == 1)
        self.slots = SocketSlots(self.link, settings.max_websockets_per_principal, ttl_s=settings.websocket_slot_ttl_s)

    def start(self) -> None:
        self.broadcast.start()
        self.slots.start()

    async def aclose(self) -> None:
        await self.slots.aclose()
        await self.broadcast.aclose()
        if self.link is not None:
            await self.link.aclose()


def build_gate(settings: Settings, services: Services, shared: Shared) -> Gatekeeping:
    jwks = None
    if settings.jwt_jwks_url or settings.jwt_jwks_file:
        jwks = JwksSource(
            url=settings.jwt_jwks_url,
            path=settings.jwt_jwks_file,
            ttl_s=settings.jwt_jwks_cache_s,
            min_refresh_s=settings.jwt_jwks_min_refresh_s,
        )
    verifier = JwtVerifier(jwt_config(settings), jwks)
    key_cache = KeyCache(ttl_s=settings.api_key_cache_ttl_s, trusted=lambda: shared.broadcast.live)
    shared.broadcast.listen(key_cache.drop)
    shared.broadcast.on_resubscribe(key_cache.clear)
    authenticator = Authenticator(
        db=services.db,
        verifier=verifier,
        development=settings.env == "development",
        dev_tenant=settings.dev_tenant,
        key_cache=key_cache,
    )
    # One pool and one view of Redis's health for the limiter and the caches: serverInfo.rateLimits
    # and ragql_redis_up can't disagree.
    link = shared.link
    limiter = RateLimiter(link.client, health=link.health) if link else RateLimiter(None)
    period = settings.rate_period_s
    rates = {
        "api_key": Rate(settings.rate_per_api_key, period),
        "user": Rate(settings.rate_per_user, period),
        "ip": Rate(settings.rate_per_ip, period),
        "tenant": Rate(settings.tenant_quota, period),
    }
    return Gatekeeping(
        authenticator=authenticator,
        limiter=limiter,
        rates=rates,
        slots=shared.slots,
        broadcast=shared.broadcast,
        recheck_s=settings.websocket_recheck_s,
    )


def describe_auth(settings: Settings) -> str:
    ways = ["JWT HS256"]
    if settings.jwt_jwks_url or settings.jwt_jwks_file:
        ways.append("JWT RS256/ES256 (JWKS)")
    ways.append("API keys")
    accepted = ", ".join(ways)
    if settings.env == "development":
        return (
            f"development: requests without credentials act as an admin of tenant {settings.dev_tenant!r}; "
            f"credentials sent are verified ({accepted})"
        )
    return f"required on every operation ({accepted})"


def jwt_config(settings: Settings) -> JwtConfig:
    return JwtConfig(
        secret=settings.jwt_secret.get_secret_value(),
        issuer=settings.jwt_issuer,
        audience=settings.jwt_audience,
        leeway_s=settings.jwt_leeway_s,
        tenant_claim=settings.jwt_tenant_claim,
        roles_claim=settings.jwt_roles_claim,
        subject_claim=settings.jwt_subject_claim,
    )


def worker_config(settings: Settings) -> WorkerConfig:
    return WorkerConfig(
        concurrency=settings.worker_concurrency,
        heartbeat_timeout_s=settings.job_heartbeat_timeout_s,
        poll_s=settings.job_poll_s,
        batch_size=settings.job_batch_size,
        max_attempts=settings.job_max_attempts,
        train_interval_s=settings.recs_train_interval_s,
        train_max_signals=settings.recs_train_max_signals,
    )


def autotrain_policy(settings: Settings) -> AutoTrainPolicy:
    return AutoTrainPolicy(
        min_events=settings.recs_autotrain_min_events,
        min_growth=settings.recs_autotrain_min_growth,
        spacing_s=settings.recs_autotrain_spacing_s,
    )


def _on_progress(cache: SearchCache, trigger: TrainingTrigger | None) -> Callable[[Job], Awaitable[None] | None]:
    """After each batch a job writes: the tenant's cached searches go, and an import job's new
    feedback events count towards the tenant's next training."""

    def progressed(job: Job) -> Awaitable[None] | None:
        if trigger is not None:
            trigger.note_job(job)
        return cache.invalidate(job.tenant_id)

    return progressed


def worker_deps(settings: Settings, services: Services) -> WorkerDeps:
    """The in-process worker shares the API's pool and model, and drops cached searches as it writes."""
    return WorkerDeps(
        db=services.db,
        embedder=services.embedder,
        chunking=services.chunking,
        max_chars=settings.max_document_chars,
        learning=services.learning,
        on_progress=_on_progress(services.search_cache, services.training),
    )


def runs_worker_in_process(settings: Settings) -> bool:
    if settings.worker_in_process is not None:
        return settings.worker_in_process
    return settings.database_url is None


async def open_worker_deps(
    settings: Settings, *, embedder: Embedder | None = None
) -> tuple[WorkerDeps, Callable[[], Awaitable[None]]]:
    """What a standalone worker (or `ragql ingest`) needs: the database, migrated, and the model."""
    db = Database(database_url(settings)[0], pool_size=settings.db_pool_size)
    try:
        emb = embedder or build_embedder(settings)
        await migrate(db, embedding_dim=emb.dim, keyword_backend=settings.keyword_backend)
        await check_embedding_model(db, model=emb.name, dim=emb.dim)
    except BaseException:
        await db.dispose()
        raise
    # Every batch written bumps the tenant's index version in Redis, so no API replica serves a
    # search cached before it; without Redis, in the versions this host's servers map.
    link = RedisLink.from_url(settings.redis_url) if settings.redis_url else None
    cache = SearchCache(RedisStore(link) if link else host_store(settings.data_dir), ttl_s=settings.search_cache_ttl_s)
    trigger = TrainingTrigger(db, autotrain_policy(settings))
    deps = WorkerDeps(
        db=db,
        embedder=emb,
        chunking=ChunkingConfig(max_tokens=settings.chunk_tokens, overlap_tokens=settings.chunk_overlap_tokens),
        max_chars=settings.max_document_chars,
        learning=build_learning(settings),
        on_progress=_on_progress(cache, trigger),
    )

    async def close() -> None:
        await trigger.aclose()
        if link is not None:
            await link.aclose()
        await db.dispose()

    return deps, close


def database_url(settings: Settings) -> tuple[str, str]:
    if settings.database_url:
        return settings.database_url, "external"
    return embedded.start(settings.embedded_pgdata), "embedded"


async def build_services(
    settings: Settings, *, embedder: Embedder | None = None, shared: Shared | None = None
) -> tuple[Services, Callable[[], Awaitable[None]]]:
    url, kind = database_url(settings)
    db = Database(url, pool_size=settings.db_pool_size, hnsw_ef_search=settings.hnsw_ef_search)
    try:
        emb = embedder or build_embedder(settings)
        await warm_up(emb)
        await migrate(db, embedding_dim=emb.dim, keyword_backend=settings.keyword_backend)
        await check_embedding_model(db, model=emb.name, dim=emb.dim)
        backend = await keyword_backend(db)
        async with db.engine.connect() as conn:
            pg_version = (await conn.execute(text("SHOW server_version"))).scalar_one()
            vector_version = (
                await conn.execute(text("SELECT extversion FROM pg_extension WHERE extname = 'vector'"))
            ).scalar_one()
        # Inside the try: a failed probe or REINDEX must not leak the pool.
        health = await ensure_bm25_healthy(db, backend)
    except BaseException:
        await db.dispose()
        raise
    if backend != "bm25":
        log.warning("pg_textsearch is not available: keyword search falls back to built-in full text (weaker)")
    chat = build_chat(settings)
    reranking = build_reranking(settings, chat)
    store: CacheStore = shared.store if shared else LocalStore()
    answering = Answering(
        embeddings=store,
        answer_cache=AnswerCache(store, ttl_s=settings.answer_cache_ttl_s),
        db=db,
        embedder=emb,
        keyword_backend=backend,
        reranking=reranking,
        extractive=ExtractiveGenerator(emb, store=SentenceVectorStore(db, emb.name, emb.dim)),
        llm=LLMGenerator(chat, max_tokens=settings.llm_max_tokens) if chat else None,
        limits=AnswerLimits(
            max_question_chars=settings.max_query_chars,
            max_sources=settings.answer_max_sources,
            max_selected_chars=settings.max_selected_chars,
            history_turns=settings.answer_history_turns,
        ),
    )
    learning = build_learning(settings)
    recommender = Recommender(
        db=db, embedder=emb, reranking=reranking, learning=learning, max_context_chars=settings.max_query_chars
    )
    search_cache = SearchCache(store, ttl_s=settings.search_cache_ttl_s)
    query_log = QueryLogWriter(db)
    autotrain = autotrain_policy(settings)
    trigger = TrainingTrigger(db, autotrain)
    parse_pool = ParsePool(settings.parse_workers)
    chunking = ChunkingConfig(max_tokens=settings.chunk_tokens, overlap_tokens=settings.chunk_overlap_tokens)
    services = Services(
        db=db,
        embedder=emb,
        keyword_backend=backend,
        reranking=reranking,
        answering=answering,
        recommender=recommender,
        # Searching that tells a recorded request which searches it made (api/replay.py).
        searching=RecordedSearching(
            db,
            emb,
            backend,
            reranking,
            search_cache,
            max_query_chars=settings.max_query_chars,
            terms=TermStatistics(db),
            embeddings=store,
            embedding_ttl_s=settings.embedding_cache_ttl_s,
            log_writer=query_log,
        ),
        documents=Documents(
            IngestContext(db, emb, chunking, settings.max_documents_per_batch, settings.max_document_chars),
            search_cache,
            max_upload_bytes=settings.max_upload_bytes,
            async_threshold=settings.async_ingest_threshold,
            parse_budget=ParseBudget(seconds=settings.parse_timeout_s, max_chars=settings.max_document_chars),
            parse_pool=parse_pool,
        ),
        learning=learning,
        search_cache=search_cache,
        revocations=shared.broadcast if shared else LocalOnly(),
        job_progress=JobProgress(db.url, fallback_s=settings.job_progress_fallback_s),
        training=trigger,
        autotrain=autotrain,
        dev_tenant=settings.dev_tenant,
        api_key_prefix=settings.api_key_prefix,
        database_kind=kind,
        database_version=str(pg_version),
        pgvector_version=str(vector_version),
        environment=settings.env,
        keyword_index=health,
        chunking=chunking,
        limits=Limits(
            max_query_chars=settings.max_query_chars,
            max_documents_per_batch=settings.max_documents_per_batch,
            max_document_chars=settings.max_document_chars,
            max_upload_bytes=settings.max_upload_bytes,
        ),
    )
    await ensure_tenant(db, settings.dev_tenant)
    if settings.load_demo and await documents.count(db=db, tenant_id=settings.dev_tenant) == 0:
        demo = demo_documents()
        ctx = replace(services.documents.ingesting, max_batch=len(demo))
        outcome = await documents.ingest(ctx, documents.IngestRequest(settings.dev_tenant, demo))
        log.info("loaded the demo catalogue: %d films into tenant %r", len(outcome.documents), settings.dev_tenant)

    async def close() -> None:
        await trigger.aclose()
        if services.job_progress is not None:
            await services.job_progress.aclose()
        parse_pool.close()
        await query_log.aclose()  # before the pool closes: the last searches' rows are stored
        await db.dispose()

    return services, close
