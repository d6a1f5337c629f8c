"""The trained recommendation model, per tenant and version, and live item popularity.

- `recs_models`: one row per training run of a tenant (`ragql train-recs`): its settings, what it
  learned from, how long it took, and YᵀY (the factors' Gram matrix), which every request's
  fold-in needs and which is the same for every user. The newest `ready` row is the one served.
- `item_factors`: one ALS vector per (tenant, version, document), with an HNSW index on the
  inner product, which is what ALS scores with. Documents deleted later go with their factors.
- `item_neighbours`: normalised co-engagement, the top neighbours of each item at training time.
- `item_popularity`: per document, the time-decayed sum of feedback weights and the number of
  users who currently like it, kept in each event's transaction, so popularity is one small
  indexed read instead of a scan over the tenant's events.

Every table gets the same row-level security as 0004's.

Revision ID: 0007
"""

from alembic import op

from domain.feedback.kinds import LIKED_AT, weight_sql
from domain.recommendations.model import STORED_FACTORS

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

FACTORS = STORED_FACTORS  # HNSW needs a fixed dimension
TENANT_TABLES = ("recs_models", "item_factors", "item_neighbours", "item_popularity")


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE recs_models (
            tenant_id text NOT NULL REFERENCES tenants(id),
            version integer NOT NULL,
            status text NOT NULL CHECK (status IN ('training', 'ready', 'failed')),
            algorithm text NOT NULL,
            settings jsonb NOT NULL,
            gram double precision[] NOT NULL DEFAULT '{}',
            events integer NOT NULL DEFAULT 0,
            users integer NOT NULL DEFAULT 0,
            items integer NOT NULL DEFAULT 0,
            took_ms double precision,
            error text,
            started_at timestamptz NOT NULL DEFAULT now(),
            finished_at timestamptz,
            PRIMARY KEY (tenant_id, version)
        )"""
    )
    op.execute(
        f"""
        CREATE TABLE item_factors (
            tenant_id text NOT NULL,
            version integer NOT NULL,
            document_id uuid NOT NULL REFERENCES documents(id) ON DELETE CASCADE,
            factor vector({FACTORS}) NOT NULL,
            PRIMARY KEY (tenant_id, version, document_id),
            FOREIGN KEY (tenant_id, version) REFERENCES recs_models (tenant_id, version) ON DELETE CASCADE
        )"""
    )
    op.execute("CREATE INDEX item_factors_hnsw ON item_factors USING hnsw (factor vector_ip_ops)")
    op.execute("CREATE INDEX item_factors_document ON item_factors (document_id)")
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
        CREATE TABLE item_popularity (
            tenant_id text NOT NULL REFERENCES tenants(id),
            document_id uuid NOT NULL REFERENCES documents(id) ON DELETE CASCADE,
            score double precision NOT NULL,
            updated_at timestamptz NOT NULL,
            likers integer NOT NULL DEFAULT 0,
            PRIMARY KEY (tenant_id, document_id)
        )"""
    )
    # Backfill from the events already stored (half-life 14 days, the default); a liker is a user
    # whose latest strong signal on the document is positive.
    w = weight_sql("f")
    op.execute(
        f"""
        INSERT INTO item_popularity (tenant_id, document_id, score, updated_at, likers)
        SELECT f.tenant_id, f.document_id,
               sum({w} * exp(-ln(2) / (14 * 86400.0) * extract(epoch FROM now() - f.created_at))), now(), 0
        FROM feedback f JOIN documents d ON d.id = f.document_id
        GROUP BY f.tenant_id, f.document_id"""  # noqa: S608 (only kinds.py's constants)
    )
    op.execute(
        f"""
        UPDATE item_popularity p SET likers = v.n
        FROM (
            SELECT tenant_id, document_id, count(*) AS n FROM (
                SELECT DISTINCT ON (f.tenant_id, f.user_id, f.document_id) f.tenant_id, f.document_id, {w} AS w
                FROM feedback f WHERE f.document_id IS NOT NULL AND abs({w}) >= {LIKED_AT}
                ORDER BY f.tenant_id, f.user_id, f.document_id, f.seq DESC
            ) latest WHERE w > 0 GROUP BY tenant_id, document_id
        ) v
        WHERE p.tenant_id = v.tenant_id AND p.document_id = v.document_id"""  # noqa: S608 (constants)
    )
    for table in TENANT_TABLES:
        op.execute(f"ALTER TABLE {table} ENABLE ROW LEVEL SECURITY")
        op.execute(
            f"CREATE POLICY tenant_isolation ON {table} "
            "USING (tenant_id = current_setting('ragql.tenant_id', true)) "
            "WITH CHECK (tenant_id = current_setting('ragql.tenant_id', true))"
        )


def downgrade() -> None:
    for table in ("item_popularity", "item_neighbours", "item_factors", "recs_models"):
        op.execute(f"DROP TABLE IF EXISTS {table}")
