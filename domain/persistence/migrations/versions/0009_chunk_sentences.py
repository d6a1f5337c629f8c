"""The extractive generator's sentence vectors, stored once per chunk.

A cold answer used to embed every sentence of its sources at answer time (about 130 ms of CPU),
and each server process kept them only in its own memory. `chunk_sentences` keeps them in the
database, so they are computed once per chunk for every replica and every restart: lazily on a
chunk's first answer, or ahead of time by `ragql embed-sentences`. Ingest does not compute them,
so ingest throughput is unchanged. `vectors` is the sentences' float32 vectors, row after row
(len(sentences) x dim); a chunk's text never changes (a changed document gets new chunks), and
its sentences go with it.

Revision ID: 0009
"""

from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

TENANT_TABLES = ("chunk_sentences",)


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE chunk_sentences (
            tenant_id text NOT NULL,
            chunk_id uuid NOT NULL,
            model text NOT NULL,
            sentences text[] NOT NULL,
            vectors bytea NOT NULL,
            PRIMARY KEY (tenant_id, chunk_id),
            -- chunks is partitioned by tenant (0005): its key is (tenant_id, id).
            FOREIGN KEY (tenant_id, chunk_id) REFERENCES chunks (tenant_id, id) ON DELETE CASCADE
        )"""
    )
    op.execute("ALTER TABLE chunk_sentences ENABLE ROW LEVEL SECURITY")
    op.execute(
        "CREATE POLICY tenant_isolation ON chunk_sentences "
        "USING (tenant_id = current_setting('ragql.tenant_id', true)) "
        "WITH CHECK (tenant_id = current_setting('ragql.tenant_id', true))"
    )


def downgrade() -> None:
    op.execute("DROP TABLE IF EXISTS chunk_sentences")
