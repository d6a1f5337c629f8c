"""Durable ingestion jobs and the queue that carries them (pgqueuer).

`ingestion_jobs` is what clients see (state, counts, timestamps); `ingestion_job_items` holds
each input until it is written, with its outcome and error. An item's outcome is set in the
same transaction that writes its document, so a resumed job skips exactly the stored ones.

The queue is pgqueuer's: its tables are created here from the SQL of the installed pgqueuer
(`Queries.install`, which is what `pgq install` runs), so `ragql migrate` is the only setup.
Tenancy of pgqueuer's tables:
- `pgqueuer` (one row per queued or running job) carries the tenant in `headers.ragql_tenant`
  and a job id in `payload`; it has row-level security like every tenant table, so the app role
  (request transactions, which enqueue) sees only its own tenant's rows. Workers connect as the
  owner, which row-level security does not bind, and dequeue across tenants.
- `pgqueuer_log` (job id, status, entrypoint) holds nothing of a tenant; the app role may only
  insert into it (the enqueue statement logs 'queued').
- `pgqueuer_statistics` and `pgqueuer_schedules` hold counts and cron rows; the app role gets
  no access to them.

Revision ID: 0006
"""

from typing import Any

from alembic import op
from pgqueuer.adapters.persistence.qb import QueryBuilderEnvironment

from domain.persistence.database import APP_ROLE

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

TENANT_POLICY = "tenant_id = current_setting('ragql.tenant_id', true)"


def _run_script(sql: str) -> None:
    """pgqueuer's install is one multi-statement script (with a plpgsql body); asyncpg runs such a
    script through the simple query protocol only when it has no parameters, as here."""
    dbapi: Any = op.get_bind().connection.dbapi_connection

    async def run(conn: Any) -> None:
        await conn.execute(sql)

    dbapi.run_async(run)


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE ingestion_jobs (
            id uuid PRIMARY KEY,
            tenant_id text NOT NULL REFERENCES tenants(id),
            kind text NOT NULL CHECK (kind IN ('DOCUMENTS', 'FEEDBACK')),
            state text NOT NULL CHECK (state IN ('QUEUED', 'RUNNING', 'SUCCEEDED', 'FAILED', 'CANCELLED')),
            items_total integer NOT NULL CHECK (items_total > 0),
            items_done integer NOT NULL DEFAULT 0,
            chunks_embedded integer NOT NULL DEFAULT 0,
            created_count integer NOT NULL DEFAULT 0,
            updated_count integer NOT NULL DEFAULT 0,
            unchanged_count integer NOT NULL DEFAULT 0,
            failed_count integer NOT NULL DEFAULT 0,
            field_prefix text NOT NULL,
            -- What the CLI resumes by: the same input again continues an unfinished job.
            source_fingerprint text,
            error_code text,
            error_message text,
            queue_job_id bigint,
            -- host:pid of the worker that last started running it (operators: who has it).
            worker text,
            created_by text NOT NULL,
            created_at timestamptz NOT NULL DEFAULT clock_timestamp(),
            started_at timestamptz,
            finished_at timestamptz,
            updated_at timestamptz NOT NULL DEFAULT clock_timestamp()
        )"""
    )
    op.execute("CREATE INDEX ingestion_jobs_tenant_created ON ingestion_jobs (tenant_id, created_at DESC, id DESC)")
    op.execute(
        "CREATE INDEX ingestion_jobs_unfinished ON ingestion_jobs (tenant_id, source_fingerprint) "
        "WHERE state IN ('QUEUED', 'RUNNING')"
    )
    op.execute(
        """
        CREATE TABLE ingestion_job_items (
            job_id uuid NOT NULL REFERENCES ingestion_jobs(id) ON DELETE CASCADE,
            tenant_id text NOT NULL REFERENCES tenants(id),
            ordinal integer NOT NULL,
            -- The input until it is processed; cleared then (the document holds the text).
            input jsonb,
            outcome text CHECK (outcome IN ('CREATED', 'UPDATED', 'UNCHANGED', 'FAILED')),
            document_id uuid,
            chunks integer NOT NULL DEFAULT 0,
            error_field text,
            error_code text,
            error_message text,
            PRIMARY KEY (job_id, ordinal)
        )"""
    )
    op.execute(
        "CREATE INDEX ingestion_job_items_pending ON ingestion_job_items (job_id, ordinal) WHERE outcome IS NULL"
    )
    op.execute(
        "CREATE INDEX ingestion_job_items_failed ON ingestion_job_items (job_id, ordinal) WHERE outcome = 'FAILED'"
    )
    for table in ("ingestion_jobs", "ingestion_job_items"):
        op.execute(f"ALTER TABLE {table} ENABLE ROW LEVEL SECURITY")
        op.execute(f"CREATE POLICY tenant_isolation ON {table} USING ({TENANT_POLICY}) WITH CHECK ({TENANT_POLICY})")

    _run_script(QueryBuilderEnvironment().build_install_query(create_schema=False))
    queue_policy = "(headers ->> 'ragql_tenant') = current_setting('ragql.tenant_id', true)"
    op.execute("ALTER TABLE pgqueuer ENABLE ROW LEVEL SECURITY")
    op.execute(f"CREATE POLICY tenant_isolation ON pgqueuer USING ({queue_policy}) WITH CHECK ({queue_policy})")
    op.execute(f"REVOKE ALL ON pgqueuer_log, pgqueuer_statistics, pgqueuer_schedules FROM {APP_ROLE}")
    op.execute(f"GRANT INSERT ON pgqueuer_log TO {APP_ROLE}")


def downgrade() -> None:
    _run_script(QueryBuilderEnvironment().build_uninstall_query())
    op.execute("DROP TABLE IF EXISTS ingestion_job_items")
    op.execute("DROP TABLE IF EXISTS ingestion_jobs")
