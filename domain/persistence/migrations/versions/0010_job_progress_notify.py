"""Job progress as notifications: every change of an ingestion job's state or counts NOTIFYs
`ragql_job_progress` with the job's id, at commit. The `ingestionProgress` subscription and
`ragql ingest` wake on it instead of polling (domain/jobs/progress.py). A trigger rather than a
NOTIFY in each writer, so no path (worker, cancel, failure, requeue) can forget it. The payload is
the id only: readers fetch the row under their tenant's row-level security.

Revision ID: 0010
"""

from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        CREATE FUNCTION ragql_notify_job_progress() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            PERFORM pg_notify('ragql_job_progress', NEW.id::text);
            RETURN NULL;
        END
        $$
        """
    )
    op.execute(
        """
        CREATE TRIGGER ingestion_jobs_progress_notify
        AFTER UPDATE ON ingestion_jobs FOR EACH ROW
        WHEN (OLD.state IS DISTINCT FROM NEW.state OR OLD.items_done IS DISTINCT FROM NEW.items_done
              OR OLD.chunks_embedded IS DISTINCT FROM NEW.chunks_embedded)
        EXECUTE FUNCTION ragql_notify_job_progress()
        """
    )


def downgrade() -> None:
    op.execute("DROP TRIGGER ingestion_jobs_progress_notify ON ingestion_jobs")
    op.execute("DROP FUNCTION ragql_notify_job_progress()")
