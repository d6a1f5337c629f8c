"""A trained model's neighbour lists as one row per item (`item_neighbour_lists`), replacing one
row per (item, neighbour) pair (`item_neighbours`).

Why: storing a training's pairs was most of its time. 10,000 items with 50 neighbours each are
500,000 pair rows, and every one of them paid two foreign-key checks against `documents`, one
against `recs_models` and two index insertions; the ALS fit itself takes a few seconds. One row
per item is 10,000 rows with one documents check each, and a request reads one row per liked item
instead of 50.

What changes: a deleted neighbour no longer takes its pair row with it (an array element has no
foreign key). It stays in its items' lists until the next training replaces the version; the
request drops any candidate without a document vector, which a deleted document no longer has,
so it is never shown. The item itself is still a foreign key: deleting it removes its list.

Existing models are carried over (lists ordered by score, as training writes them).

Revision ID: 0012
"""

from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

TENANT_TABLES = ("item_neighbour_lists",)
DROPPED_TABLES = ("item_neighbours",)


def _tenant_isolation(table: str) -> None:
    """The row-level security every tenant table has (0004's policy)."""
    op.execute(f"ALTER TABLE {table} ENABLE ROW LEVEL SECURITY")
    op.execute(
        f"CREATE POLICY tenant_isolation ON {table} "
        "USING (tenant_id = current_setting('ragql.tenant_id', true)) "
        "WITH CHECK (tenant_id = current_setting('ragql.tenant_id', true))"
    )


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE item_neighbour_lists (
            tenant_id text NOT NULL,
            version integer NOT NULL,
            item uuid NOT NULL REFERENCES documents(id) ON DELETE CASCADE,
            neighbours uuid[] NOT NULL,
            scores real[] NOT NULL CHECK (cardinality(scores) = cardinality(neighbours)),
            PRIMARY KEY (tenant_id, version, item),
            FOREIGN KEY (tenant_id, version) REFERENCES recs_models (tenant_id, version) ON DELETE CASCADE
        )"""
    )
    op.execute(
        """
        INSERT INTO item_neighbour_lists (tenant_id, version, item, neighbours, scores)
        SELECT tenant_id, version, item,
               array_agg(neighbour ORDER BY score DESC, neighbour), array_agg(score ORDER BY score DESC, neighbour)
        FROM item_neighbours GROUP BY tenant_id, version, item"""
    )
    _tenant_isolation("item_neighbour_lists")
    op.execute("DROP TABLE item_neighbours")


def downgrade() -> None:
    op.execute(
        """
        CREATE TABLE item_neighbours (
            tenant_id text NOT NULL,
            version integer NOT NULL,
            item uuid NOT NULL REFERENCES documents(id) ON DELETE CASCADE,
            neighbour uuid NOT NULL REFERENCES documents(id) ON DELETE CASCADE,
            score real NOT NULL,
            PRIMARY KEY (tenant_id, version, item, neighbour),
            FOREIGN KEY (tenant_id, version) REFERENCES recs_models (tenant_id, version) ON DELETE CASCADE
        )"""
    )
    op.execute("CREATE INDEX item_neighbours_neighbour ON item_neighbours (neighbour)")
    op.execute(
        """
        INSERT INTO item_neighbours (tenant_id, version, item, neighbour, score)
        SELECT l.tenant_id, l.version, l.item, x.neighbour, x.score
        FROM item_neighbour_lists l, unnest(l.neighbours, l.scores) AS x(neighbour, score)
        WHERE EXISTS (SELECT 1 FROM documents d WHERE d.id = x.neighbour)"""
    )
    _tenant_isolation("item_neighbours")
    op.execute("DROP TABLE item_neighbour_lists")
