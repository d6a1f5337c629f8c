"""All configuration, read once at start from RAGQL_* environment variables."""

from __future__ import annotations

from functools import cached_property
from pathlib import Path
from typing import Literal

import platformdirs
from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_JWT_SECRET = "dev-only-change-me"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="RAGQL_", env_file=".env", extra="ignore")

    env: Literal["development", "production"] = "development"
    host: str = "127.0.0.1"
    port: int = 8000
    log_level: str = "INFO"
    data_dir: Path = Field(default_factory=lambda: Path(platformdirs.user_data_dir("ragql")))
    database_url: str | None = None
    redis_url: str | None = None
    jwt_secret: SecretStr = SecretStr(DEFAULT_JWT_SECRET)
    allowed_origins: list[str] = ["http://127.0.0.1:8000", "http://localhost:8000"]

    embedding_provider: Literal["local", "openai"] = "local"
    embedding_model: str = "all-MiniLM-L6-v2"
    embedding_dim: int = 384
    embedding_batch_size: int = 64
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
    chunk_tokens: int = 200
    chunk_overlap_tokens: int = 48
    max_query_chars: int = 1000
    max_documents_per_batch: int = 256
    max_document_chars: int = 2_000_000
    max_upload_bytes: int = 10 * 1024 * 1024
    load_demo: bool = True
    # The tenant that unauthenticated requests act as in development mode (and that gets the demo).
    dev_tenant: str = "default"

    # Learning from feedback: how fast a user's taste and the tenant's popularity forget.
    profile_half_life_days: float = 30.0
    popularity_half_life_days: float = 14.0
    popularity_window_days: float = 90.0

    @model_validator(mode="after")
    def _refuse_default_secrets_in_production(self) -> Settings:
        if self.env == "production":
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
        return self

    @model_validator(mode="after")
    def _rerank_window_moves(self) -> Settings:
        if not 0 < self.rerank_step < self.rerank_window:
            raise ValueError("RAGQL_RERANK_STEP must be positive and smaller than RAGQL_RERANK_WINDOW")
        return self

    @cached_property
    def embedded_pgdata(self) -> Path:
        return self.data_dir / "pgdata"
