"""Recommendations at real history lengths, and training as a job.

- `item_popularity.rank_key`: ln(score) + λ·epoch(updated_at), with λ the popularity decay rate.
  The decayed score a request ranks by, score·exp(−λ·(now − updated_at)), is exp(rank_key − λ·now):
  the same order at every instant, so an index on it serves "most popular, unseen" by reading a
  few rows instead of computing the decay for every document of the tenant. NULL when the score
  is not positive (never popular). Written by each event and by a rebuild; backfilled here with
  the default half-life (14 days), as 0007 backfilled the scores.
- `recs_models.job_id`: the queued training that made the version, unique per tenant, so a
  training job run twice (its worker killed after the commit, before the queue heard) stores
  one version; `recs_models.last_seq`: the newest feedback event it learned from, so the
  schedule trains a tenant only when something happened since (`feedback (tenant_id, seq)`
  answers that from the index); `recs_models.worker`: who runs a training in progress.

Revision ID: 0008
"""

import math

from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

DEFAULT_RATE = math.log(2) / (14 * 86400.0)


def upgrade() -> None:
    op.execute("ALTER TABLE item_popularity ADD COLUMN rank_key double precision")
    op.execute(
        f"""
        UPDATE item_popularity
        SET rank_key = ln(score) + {DEFAULT_RATE!r} * CAST(extract(epoch FROM updated_at) AS float8)
        WHERE score > 0"""  # noqa: S608 (a float constant of this module)
    )
    op.execute(
        "CREATE INDEX item_popularity_rank ON item_popularity (tenant_id, rank_key DESC, document_id) "
        "WHERE rank_key IS NOT NULL"
    )
    op.execute(
        "ALTER TABLE recs_models ADD COLUMN job_id uuid, ADD COLUMN last_seq bigint NOT NULL DEFAULT 0, "
        "ADD COLUMN worker text"
    )
    # The schedule's question, "any event since the last training?", per tenant.
    op.execute("CREATE INDEX feedback_tenant_seq ON feedback (tenant_id, seq)")
    op.execute("CREATE UNIQUE INDEX recs_models_job ON recs_models (tenant_id, job_id) WHERE job_id IS NOT NULL")


def downgrade() -> None:
    op.execute("DROP INDEX IF EXISTS feedback_tenant_seq")
    op.execute("DROP INDEX IF EXISTS recs_models_job")
    op.execute(
        "ALTER TABLE recs_models DROP COLUMN IF EXISTS job_id, DROP COLUMN IF EXISTS last_seq, "
        "DROP COLUMN IF EXISTS worker"
    )
    op.execute("DROP INDEX IF EXISTS item_popularity_rank")
    op.execute("ALTER TABLE item_popularity DROP COLUMN IF EXISTS rank_key")
