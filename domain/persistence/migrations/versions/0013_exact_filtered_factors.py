"""No HNSW index over the trained models' item factors: a filtered request scores them exactly.

Why: the index was one graph over every tenant's and every kept version's factors, and only a
recommendation request with a metadata filter read it (an unfiltered one scores the version's
factors in memory). Its scan visits other tenants' and versions' rows as well and gives up after
`hnsw.max_scan_tuples` (20,000), so the more tenants a database held, the fewer candidates a
filtered request found, silently. And inserting a training's factors into it was most of that
training's time (6 of 10 s for 10,000 items). The request now scores the catalogue in memory for
filtered requests too, and applies the filter in SQL to the best-scored documents
(`factors.nearest_filtered`).

Revision ID: 0013
"""

from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("DROP INDEX IF EXISTS item_factors_hnsw")


def downgrade() -> None:
    op.execute("CREATE INDEX item_factors_hnsw ON item_factors USING hnsw (factor vector_ip_ops)")
