"""Initial schema: tenants, documents, chunks (vector + keyword index), query log.

Revision ID: 0001
"""

from alembic import context, op
from sqlalchemy import text

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def _try_enable_bm25() -> bool:
    """pg_textsearch must be preloaded; on servers without it we fall back to built-in full text."""
    bind = op.get_bind()
    available = bind.execute(text("SELECT 1 FROM pg_available_extensions WHERE name = 'pg_textsearch'")).first()
    if not available:
        return False
    try:
        with bind.begin_nested():
            bind.execute(text("CREATE EXTENSION IF NOT EXISTS pg_textsearch"))
    except Exception:
        return False
    return True


def upgrade() -> None:
    dim = int(context.config.attributes["embedding_dim"])
    op.execute("CREATE EXTENSION IF NOT EXISTS vector")
    # "auto" uses BM25 where pg_textsearch can be enabled; "fulltext" forces the fallback.
    preference = context.config.attributes.get("keyword_backend", "auto")
    has_bm25 = preference != "fulltext" and _try_enable_bm25()

    op.execute("CREATE TABLE ragql_meta (key text PRIMARY KEY, value text NOT NULL)")
    op.execute(
        """
        CREATE TABLE tenants (
            id text PRIMARY KEY,
            name text NOT NULL,
            created_at timestamptz NOT NULL DEFAULT now()
        )"""
    )
    op.execute("INSERT INTO tenants (id, name) VALUES ('default', 'Default (development)')")
    op.execute(
        """
        CREATE TABLE documents (
            id uuid PRIMARY KEY,
            tenant_id text NOT NULL REFERENCES tenants(id),
            external_id text,
            title text NOT NULL,
            text text NOT NULL,
            content_hash text NOT NULL,
            metadata jsonb NOT NULL DEFAULT '{}'::jsonb,
            genre text,
            tags text[] NOT NULL DEFAULT '{}',
            rating double precision,
            year integer,
            source text,
            chunk_count integer NOT NULL DEFAULT 0,
            created_at timestamptz NOT NULL DEFAULT now(),
            updated_at timestamptz NOT NULL DEFAULT now(),
            UNIQUE (tenant_id, external_id)
        )"""
    )
    op.execute("CREATE INDEX documents_tenant_created ON documents (tenant_id, created_at, id)")
    op.execute("CREATE INDEX documents_tenant_genre ON documents (tenant_id, genre)")
    op.execute("CREATE INDEX documents_tags ON documents USING gin (tags)")
    op.execute("CREATE INDEX documents_metadata ON documents USING gin (metadata jsonb_path_ops)")
    op.execute(
        f"""
        CREATE TABLE chunks (
            id uuid PRIMARY KEY,
            tenant_id text NOT NULL,
            document_id uuid NOT NULL REFERENCES documents(id) ON DELETE CASCADE,
            ordinal integer NOT NULL,
            text text NOT NULL,
            search_text text NOT NULL,
            token_count integer NOT NULL,
            embedding vector({dim}) NOT NULL
        )"""
    )
    op.execute("CREATE INDEX chunks_document ON chunks (document_id)")
    op.execute("CREATE INDEX chunks_tenant ON chunks (tenant_id)")
    op.execute("CREATE INDEX chunks_embedding_hnsw ON chunks USING hnsw (embedding vector_cosine_ops)")
    if has_bm25:
        op.execute("CREATE INDEX chunks_bm25_idx ON chunks USING bm25 (search_text) WITH (text_config = 'english')")
    else:
        op.execute(
            "ALTER TABLE chunks ADD COLUMN search_tsv tsvector "
            "GENERATED ALWAYS AS (to_tsvector('english', search_text)) STORED"
        )
        op.execute("CREATE INDEX chunks_search_tsv ON chunks USING gin (search_tsv)")
    op.execute(
        text("INSERT INTO ragql_meta (key, value) VALUES ('keyword_backend', :v)").bindparams(
            v="bm25" if has_bm25 else "fulltext"
        )
    )
    op.execute(
        """
        CREATE TABLE query_log (
            id uuid PRIMARY KEY,
            tenant_id text NOT NULL,
            query text NOT NULL,
            mode text NOT NULL,
            options jsonb NOT NULL DEFAULT '{}'::jsonb,
            result_count integer NOT NULL,
            document_ids text[] NOT NULL DEFAULT '{}',
            took_ms double precision NOT NULL,
            created_at timestamptz NOT NULL DEFAULT now()
        )"""
    )
    op.execute("CREATE INDEX query_log_tenant_created ON query_log (tenant_id, created_at)")


def downgrade() -> None:
    for table in ("query_log", "chunks", "documents", "tenants", "ragql_meta"):
        op.execute(f"DROP TABLE IF EXISTS {table} CASCADE")
