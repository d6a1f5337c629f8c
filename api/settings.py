"""All configuration, read once at start from RAGQL_* environment variables."""

from __future__ import annotations

import ipaddress
import json
import os
import re
from functools import cached_property
from pathlib import Path
from typing import Annotated, Literal

import platformdirs
from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict
from strawberry.http.websocket_origin import normalize_allowed_origins

DEFAULT_JWT_SECRET = "dev-only-change-me"
WORKER_METRICS_PORT = 9100
# Development: a frontend dev server on any port of this machine may call ragql.
LOOPBACK_ORIGINS = r"http://(localhost|127\.0\.0\.1)(:[0-9]+)?"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="RAGQL_", env_file=".env", extra="ignore")

    env: Literal["development", "production"] = "development"
    host: str = "127.0.0.1"
    port: int = 8000
    # uvicorn worker processes. ragql is bound by Python (one core per process), so unset means one
    # per CPU this process may use when the database is external (the embedded one belongs to one
    # process), Redis is set (caches, limits and revocations then agree across the processes) and
    # no metrics are served (RAGQL_METRICS_PORT or _TOKEN: Prometheus would scrape one process of
    # several); else 1. Each worker loads its own model (~150 MB). See `serve_workers`.
    workers: int | None = Field(default=None, ge=1, le=64)
    log_level: str = "INFO"
    data_dir: Path = Field(default_factory=lambda: Path(platformdirs.user_data_dir("ragql")))
    database_url: str | None = None
    redis_url: str | None = None
    jwt_secret: SecretStr = SecretStr(DEFAULT_JWT_SECRET)
    # Checked on every token when set; `ragql dev-token` issues tokens with these values.
    jwt_issuer: str | None = "ragql"
    jwt_audience: str | None = "ragql"
    jwt_leeway_s: int = 30
    # RS256/ES256 tokens from an OIDC provider: its JWKS (jwks_uri) as a URL or a file.
    jwt_jwks_url: str | None = None
    jwt_jwks_file: Path | None = None
    jwt_jwks_cache_s: float = 300.0
    # A token with an unknown key id refetches the JWKS (key rotation), at most this often.
    jwt_jwks_min_refresh_s: float = 10.0
    # Claim names differ between identity providers.
    jwt_tenant_claim: str = "tenant"
    jwt_roles_claim: str = "roles"
    jwt_subject_claim: str = "sub"
    # Introspection: on in development, off in production unless switched on here.
    introspection: bool | None = None

    # Rate limits, in cost units per `rate_period_s` (a search of 10 hits costs about 40 units; see
    # `extensions.cost` on any response). Shared across replicas through Redis when redis_url is set.
    rate_period_s: float = 60.0
    rate_per_api_key: int = 20_000
    rate_per_user: int = 10_000
    rate_per_ip: int = 20_000
    tenant_quota: int = 100_000
    # The in-process first line: requests per second per client IP, before any parsing.
    admission_per_ip_per_s: float = 100.0
    max_query_cost: int = 2_000
    max_query_depth: int = 10
    max_query_aliases: int = 30
    max_query_tokens: int = 2_000
    max_request_bytes: int = 1024 * 1024
    max_websockets_per_principal: int = 50
    # Browser origins allowed to call /graphql from another origin: CORS for HTTP and the Origin
    # check on websockets read the same two settings. A list (JSON or comma-separated) of exact
    # origins, and a regular expression matched against the whole Origin. Unset regex means
    # LOOPBACK_ORIGINS in development and nothing in production.
    cors_origins: Annotated[list[str], NoDecode] = []
    cors_origin_regex: str | None = None
    # Proxies (addresses or CIDR networks, JSON or comma-separated) whose X-Forwarded-For names
    # the client. Empty (the default): the peer address is the client, whatever headers say.
    trusted_proxies: Annotated[list[str], NoDecode] = []

    # The HTTP server (`ragql serve`): connections served at once (more get 503), seconds to
    # finish sending request headers, seconds an idle keep-alive connection stays open, and the
    # largest request head h11 buffers.
    limit_concurrency: int = 1000
    header_timeout_s: float = 10.0
    keep_alive_timeout_s: int = 5
    max_header_bytes: int = 64 * 1024
    # Websockets: seconds to send `connection_init` (both protocols), and sockets per client
    # address that have not finished it.
    websocket_init_timeout_s: float = 10.0
    max_unidentified_websockets_per_ip: int = 20
    # Every parse of an uploaded file gets this long and this much extracted text. Parses run in
    # this many worker processes (started on first upload), which are killed when they overrun.
    parse_timeout_s: float = Field(default=10.0, gt=0)
    parse_workers: int = Field(default=2, ge=1, le=32)

    embedding_provider: Literal["local", "openai"] = "local"
    embedding_model: str = "all-MiniLM-L6-v2"
    embedding_dim: int = 384
    embedding_batch_size: int = 64
    # The local model's runtime. onnx-int8 (dynamically quantised, per-channel) embeds SciFact about
    # 5x faster than torch fp32 with a mean cosine of 0.994 to it; torch stays for reference.
    embedding_backend: Literal["torch", "onnx", "onnx-int8"] = "onnx-int8"
    # Encoder lanes, each running its own batch on one core (0 = every core this process may use).
    # Lanes beat one batch split over the cores when the cores are shared (ingest: the event loop
    # and PostgreSQL), README "Ingestion at scale".
    embedding_threads: int = 0
    # Texts are sorted by length and batched up to this many (padded) tokens: smaller batches stay in
    # cache (SciFact, int8: 160 chunks/s at 2048, 151 at 8192, 84 at 16384).
    embedding_max_batch_tokens: int = 2048
    # Where ONNX exports are cached (`ragql export-model` fills it at install or image build).
    model_cache_dir: Path = Field(default_factory=lambda: Path(platformdirs.user_cache_dir("ragql")) / "models")
    openai_api_key: SecretStr | None = None
    openai_base_url: str | None = None
    openai_embedding_model: str = "text-embedding-3-small"

    # Chat model for answers, LLM re-ranking and follow-up condensing: OpenAI or any compatible
    # server (vLLM, Ollama) via llm_base_url. Unset means the offline extractive generator.
    llm_model: str | None = None
    llm_base_url: str | None = None
    llm_api_key: SecretStr | None = None
    llm_timeout_s: float = 30.0
    llm_max_retries: int = 2
    llm_max_tokens: int = 700
    # US dollars per million prompt / completion tokens: only for ragql_llm_cost_usd_total.
    llm_usd_per_million_prompt: float = 0.0
    llm_usd_per_million_completion: float = 0.0
    # Traces go to OTEL_EXPORTER_OTLP_ENDPOINT (standard OpenTelemetry variables) when it is set.
    # Logs: one JSON object per line (json) or plain text (text, for a terminal).
    log_format: Literal["json", "text"] = "json"
    # SIGTERM: stop accepting, let in-flight requests finish, close websockets (1001), exit by then.
    shutdown_grace_s: float = 20.0
    # How often the keyword (BM25) index is probed while serving; a broken one is rebuilt. 0: never.
    bm25_probe_interval_s: float = 60.0
    cohere_api_key: SecretStr | None = None
    cohere_base_url: str | None = None
    cohere_rerank_model: str = "rerank-v3.5"
    rerank_timeout_s: float = 8.0
    rerank_max_retries: int = 1
    rerank_max_candidates: int = 30
    rerank_window: int = 20
    rerank_step: int = 10
    answer_max_sources: int = 20
    answer_history_turns: int = 3
    max_selected_chars: int = 20_000

    keyword_backend: Literal["auto", "fulltext"] = "auto"
    # Connections per process to PostgreSQL, per pool (the ORM's, and the bare one the search and
    # recommendation requests use): requests beyond it wait for a free connection. Each worker
    # process has its own pools, so the database sees up to workers x this from each pool.
    db_pool_size: int = Field(default=10, ge=1, le=200)
    # HNSW candidate list per dense search, set per transaction (SET LOCAL). 200: the smallest
    # measured value with recall@10 >= 0.95 against exact search at 100k chunks (0.969; 100 gave
    # 0.943), for about 1.5 ms more per dense leg (README, "Scale").
    hnsw_ef_search: int = Field(default=200, ge=10, le=1000)
    # Fused search results are reused for this long (per tenant; 0 turns the cache off). Writes in
    # this process drop the tenant's entries at once; other replicas catch up within the TTL.
    search_cache_ttl_s: float = 15.0
    # A repeated search answered from this process's memory is answered from its kept response,
    # with its own queryId, tookMs, log row, charge and metrics (api/replay.py). Off: every
    # request runs through GraphQL execution.
    response_replay: bool = True
    # Answers to a repeated question (same tenant, options and index version) are reused this long.
    answer_cache_ttl_s: float = 300.0
    # Query vectors by model, backend and text (Redis when configured): they never go stale. 0
    # turns query-vector reuse off altogether, the encoder's in-process memory of them included.
    embedding_cache_ttl_s: float = 24 * 3600.0
    # API-key lookups are reused this long; a revocation reaches every replica at once (Redis
    # pub/sub), and a replica that cannot hear revocations looks every key up in PostgreSQL.
    api_key_cache_ttl_s: float = 10.0
    # Open websockets re-check their credential this often (backstop when a broadcast is lost).
    websocket_recheck_s: float = 5.0
    # A replica's websocket slots in Redis expire this long after its last heartbeat (a crash).
    websocket_slot_ttl_s: float = 30.0
    chunk_tokens: int = 200
    chunk_overlap_tokens: int = 48
    max_query_chars: int = 10_000
    max_documents_per_batch: int = 256
    max_document_chars: int = 2_000_000
    max_upload_bytes: int = 10 * 1024 * 1024
    # Ingest calls without `mode` run synchronously up to this many documents, as a job above it.
    async_ingest_threshold: int = 256
    # Jobs: a worker runs this many at once; the in-process worker (None: on with the embedded
    # database, as under `make run`) saves starting `ragql worker` in development.
    worker_concurrency: int = 2
    worker_in_process: bool | None = None
    # Documents written per transaction (the next batch is embedded while one is written). SIGTERM
    # writes the documents already embedded, then exits.
    job_batch_size: int = 16
    # A job whose heartbeat is older than this is taken over by another worker, which looks at
    # least every job_poll_s: a killed worker's job resumes within their sum.
    job_heartbeat_timeout_s: float = 10.0
    job_poll_s: float = 5.0
    job_max_attempts: int = 5
    # Progress followers (ingestionProgress, `ragql ingest`) wake on NOTIFY; without one they read the
    # job anyway after this long (a lost notification, or LISTEN unavailable).
    job_progress_fallback_s: float = 2.0
    # A separate metrics server on RAGQL_HOST at this port (0: any free port), for `ragql serve`
    # and `ragql worker`; unset, the worker uses WORKER_METRICS_PORT and `ragql serve` none.
    metrics_port: int | None = Field(default=None, ge=0, le=65535)
    # Bearer token for /metrics. Production serves the API port's /metrics only with it (404
    # otherwise); when set it is also required on the metrics port.
    metrics_token: SecretStr | None = None
    # Recommendation training: every worker looks this often for tenants with feedback since their
    # last training and queues one training each (0: no schedule; `ragql train-recs` still works).
    recs_train_interval_s: float = Field(default=3600.0, ge=0)
    # The most (user, document) signals one training reads, newest first: a tenant's bound.
    recs_train_max_signals: int = Field(default=2_000_000, ge=1)
    # Training that follows feedback: a tenant with at least this many new document events since
    # its last model, and at least RAGQL_RECS_AUTOTRAIN_MIN_GROWTH × the events that model learned
    # from, gets a training queued (0: off), starting no sooner than RAGQL_RECS_AUTOTRAIN_SPACING_S
    # after its last one ended.
    recs_autotrain_min_events: int = Field(default=200, ge=0)
    recs_autotrain_min_growth: float = Field(default=0.1, ge=0)
    recs_autotrain_spacing_s: float = Field(default=60.0, ge=0)
    load_demo: bool = True
    # The tenant that unauthenticated requests act as in development mode (and that gets the demo).
    dev_tenant: str = "default"
    # `make bench` only: a bare JSON search route beside /graphql, to measure GraphQL's overhead.
    bench_route: bool = False

    # Learning from feedback: how fast a user's taste and the tenant's popularity forget.
    profile_half_life_days: float = 30.0
    popularity_half_life_days: float = 14.0
    popularity_window_days: float = 90.0

    @model_validator(mode="after")
    def _refuse_default_secrets_in_production(self) -> Settings:
        if self.env == "production":
            if self.jwt_jwks_url and not self.jwt_jwks_url.startswith("https://"):
                raise ValueError("RAGQL_JWT_JWKS_URL must be an https:// URL in production")
            secret = self.jwt_secret.get_secret_value()
            if secret == DEFAULT_JWT_SECRET or len(secret) < 32:
                raise ValueError(
                    "RAGQL_ENV=production needs RAGQL_JWT_SECRET set to a random value of at least "
                    "32 characters (for example: python -c 'import secrets; print(secrets.token_urlsafe(48))')"
                )
            if self.database_url is None:
                raise ValueError(
                    "RAGQL_ENV=production needs RAGQL_DATABASE_URL (the embedded server is for development)"
                )
            if self.metrics_token is not None:
                token = self.metrics_token.get_secret_value()
                if len(token) < 32 or token in (DEFAULT_JWT_SECRET, secret):
                    raise ValueError(
                        "RAGQL_METRICS_TOKEN must be a random value of at least 32 characters, not the JWT "
                        "secret (for example: python -c 'import secrets; print(secrets.token_urlsafe(32))')"
                    )
        return self

    @property
    def serve_workers(self) -> int:
        """The uvicorn worker processes `ragql serve` runs: RAGQL_WORKERS, or its default above."""
        if self.workers is not None:
            return self.workers
        if self.database_url is None or self.redis_url is None:
            return 1
        if self.metrics_port is not None or self.metrics_token is not None:
            return 1
        return max(
            1, min(64, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1)
        )

    @field_validator("cors_origins", mode="before")
    @classmethod
    def _origin_list(cls, value: object) -> object:
        if isinstance(value, str):
            text = value.strip()
            return json.loads(text) if text.startswith("[") else [o.strip() for o in text.split(",") if o.strip()]
        return value

    @field_validator("trusted_proxies", mode="before")
    @classmethod
    def _proxy_list(cls, value: object) -> object:
        if isinstance(value, str):
            text = value.strip()
            return json.loads(text) if text.startswith("[") else [p.strip() for p in text.split(",") if p.strip()]
        return value

    @field_validator("trusted_proxies")
    @classmethod
    def _proxies_are_networks(cls, value: list[str]) -> list[str]:
        try:
            return [str(ipaddress.ip_network(p, strict=False)) for p in value]
        except ValueError as exc:
            raise ValueError(f"RAGQL_TRUSTED_PROXIES: {exc} (give addresses or CIDR networks)") from exc

    @field_validator("cors_origins")
    @classmethod
    def _origins_are_origins(cls, value: list[str]) -> list[str]:
        try:
            return sorted(normalize_allowed_origins(value))
        except ValueError as exc:
            raise ValueError(f"RAGQL_CORS_ORIGINS: {exc}") from exc

    @field_validator("cors_origin_regex")
    @classmethod
    def _regex_compiles(cls, value: str | None) -> str | None:
        if value:
            try:
                re.compile(value)
            except re.error as exc:
                raise ValueError(f"RAGQL_CORS_ORIGIN_REGEX is not a regular expression: {exc}") from exc
        return value

    @model_validator(mode="after")
    def _no_wildcard_origin_in_production(self) -> Settings:
        if self.env == "production" and "*" in self.cors_origins:
            raise ValueError(
                "RAGQL_CORS_ORIGINS=* is refused in production: list your frontends' origins "
                '(for example ["https://app.example.com"])'
            )
        return self

    @model_validator(mode="after")
    def _rerank_window_moves(self) -> Settings:
        if not 0 < self.rerank_step < self.rerank_window:
            raise ValueError("RAGQL_RERANK_STEP must be positive and smaller than RAGQL_RERANK_WINDOW")
        return self

    @property
    def introspection_enabled(self) -> bool:
        return self.introspection if self.introspection is not None else self.env == "development"

    @property
    def cors_regex(self) -> str | None:
        if self.cors_origin_regex is not None:
            return self.cors_origin_regex or None  # set to "" to allow no pattern in development
        return LOOPBACK_ORIGINS if self.env == "development" else None

    @property
    def api_key_prefix(self) -> str:
        # Live keys are the ones worth a scanner's alarm; development keys say so.
        return "rgq_live_" if self.env == "production" else "rgq_dev_"

    @cached_property
    def embedded_pgdata(self) -> Path:
        return self.data_dir / "pgdata"
