"""How many times each queued job was handed back by a stopping worker (`job_handbacks`).

A worker that gets SIGTERM writes what it has finished and puts its jobs back in the queue
(pgqueuer's RetryRequested, queued again at once). pgqueuer counts that as one of the job's
attempts, the same counter its retries of real failures read, so a job that lived through five
rolling deploys had no retries left for a lost database, and a sixth deploy ended it FAILED.
The worker now counts its own hand-backs here, by pgqueuer job id, and the retry executor takes
them off the attempts (`api/worker.py`). A row goes when its job ends.

The table holds queue ids and counts, nothing of a tenant; only workers (the owner) use it, so
the app role gets no access.

Revision ID: 0014
"""

from alembic import op

from domain.persistence.database import APP_ROLE

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE job_handbacks (
            queue_job_id bigint PRIMARY KEY,
            handbacks integer NOT NULL,
            updated timestamptz NOT NULL DEFAULT now()
        )"""
    )
    op.execute(f"REVOKE ALL ON job_handbacks FROM {APP_ROLE}")


def downgrade() -> None:
    op.execute("DROP TABLE IF EXISTS job_handbacks")
