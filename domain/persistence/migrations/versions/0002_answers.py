"""Answers: every generated answer, with its question, sources, text, provider, tokens and
latency, so that feedback can refer to it and multi-turn sessions can read earlier turns.

Revision ID: 0002
"""

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE answers (
            id uuid PRIMARY KEY,
            tenant_id text NOT NULL REFERENCES tenants(id),
            session_id uuid NOT NULL,
            turn integer NOT NULL DEFAULT 0,
            question text NOT NULL,
            retrieval_query text,
            options jsonb NOT NULL DEFAULT '{}'::jsonb,
            sources jsonb NOT NULL DEFAULT '[]'::jsonb,
            text text NOT NULL DEFAULT '',
            citations integer[] NOT NULL DEFAULT '{}',
            dropped_citations text[] NOT NULL DEFAULT '{}',
            generator text NOT NULL,
            rerank text NOT NULL DEFAULT 'NONE',
            status text NOT NULL CHECK (status IN ('done', 'error', 'cancelled')),
            error_code text,
            prompt_tokens integer NOT NULL DEFAULT 0,
            completion_tokens integer NOT NULL DEFAULT 0,
            first_token_ms double precision,
            took_ms double precision NOT NULL,
            created_at timestamptz NOT NULL DEFAULT now()
        )"""
    )
    # Session history reads the latest turns of one session; analytics scans a tenant's time range.
    op.execute("CREATE INDEX answers_session ON answers (tenant_id, session_id, created_at)")
    op.execute("CREATE INDEX answers_tenant_created ON answers (tenant_id, created_at)")


def downgrade() -> None:
    op.execute("DROP TABLE IF EXISTS answers")
