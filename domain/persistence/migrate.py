"""Schema checks and Alembic migrations, run at start and by `ragql migrate`."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import Connection, text

from domain.errors import EmbeddingModelMismatch, MissingExtension
from domain.persistence.database import Database

MIGRATIONS = Path(__file__).parent / "migrations"
# Any constant works; it serialises migrations from replicas starting at once.
MIGRATION_LOCK_KEY = 7_311_042


async def check_pgvector(db: Database) -> None:
    async with db.engine.connect() as conn:
        row = (await conn.execute(text("SELECT 1 FROM pg_available_extensions WHERE name = 'vector'"))).first()
        version = (await conn.execute(text("SHOW server_version"))).scalar_one()
    if row is None:
        raise MissingExtension(
            f"The PostgreSQL server at {db.engine.url.render_as_string(hide_password=True)} (version {version}) "
            "has no pgvector extension ('vector'): use the embedded default (unset RAGQL_DATABASE_URL; it "
            "bundles pgvector and pg_textsearch), or install pgvector 0.8+ on that server (Debian/Ubuntu: "
            "apt install postgresql-<major>-pgvector; Docker: the timescale/timescaledb-ha image that "
            "compose.yaml uses, which has pg_textsearch for BM25 too)."
        )


def _upgrade(conn: Connection, embedding_dim: int, keyword_backend: str) -> None:
    conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": MIGRATION_LOCK_KEY})
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.attributes["connection"] = conn
    cfg.attributes["embedding_dim"] = embedding_dim
    cfg.attributes["keyword_backend"] = keyword_backend
    command.upgrade(cfg, "head")


async def migrate(db: Database, *, embedding_dim: int, keyword_backend: str = "auto") -> None:
    """`keyword_backend` ("auto" or "fulltext") only matters when the schema is first created."""
    await check_pgvector(db)
    async with db.engine.begin() as conn:
        await conn.run_sync(_upgrade, embedding_dim, keyword_backend)
    await db.enable_vector_codec()


async def check_embedding_model(db: Database, *, model: str, dim: int) -> None:
    """Record the model on first use; refuse to mix vectors from another model or dimension."""
    async with db.engine.begin() as conn:
        rows: dict[str, str] = dict(
            (await conn.execute(text("SELECT key, value FROM ragql_meta WHERE key LIKE 'embedding_%'"))).all()
        )
        if not rows:
            await conn.execute(
                text("INSERT INTO ragql_meta (key, value) VALUES ('embedding_model', :m), ('embedding_dim', :d)"),
                {"m": model, "d": str(dim)},
            )
            return
    stored_model, stored_dim = rows.get("embedding_model"), rows.get("embedding_dim")
    if stored_model != model or stored_dim != str(dim):
        raise EmbeddingModelMismatch(
            f"This store was embedded with {stored_model} ({stored_dim} dimensions), but ragql is configured "
            f"for {model} ({dim} dimensions). Set RAGQL_EMBEDDING_MODEL/RAGQL_EMBEDDING_DIM back to the stored "
            "model, or point RAGQL_DATA_DIR / RAGQL_DATABASE_URL at a new store and re-ingest."
        )


async def keyword_backend(db: Database) -> str:
    async with db.engine.connect() as conn:
        value = (await conn.execute(text("SELECT value FROM ragql_meta WHERE key = 'keyword_backend'"))).scalar()
    return str(value or "fulltext")


async def migrations_at_head(db: Database) -> bool:
    """True when the database's alembic revision is this code's newest migration."""
    from alembic.script import ScriptDirectory

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    heads = set(ScriptDirectory.from_config(cfg).get_heads())
    async with db.engine.connect() as conn:
        current = {str(v) for v in (await conn.execute(text("SELECT version_num FROM alembic_version"))).scalars()}
    return current == heads
