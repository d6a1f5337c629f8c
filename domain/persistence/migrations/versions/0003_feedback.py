"""Feedback and what is learned from it: append-only feedback events, a preference profile per
(tenant, user), item-to-item co-engagement, and one vector per document for "more like this" and
profile arithmetic. Profiles and co-engagement are derived: `ragql rebuild-profiles` recomputes
them from the events.

Revision ID: 0003
"""

from alembic import context, op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    dim = int(context.config.attributes["embedding_dim"])
    # One vector per document: the mean of its chunk vectors. Kept beside `documents` so that
    # reading a document never drags a vector along.
    op.execute(
        f"""
        CREATE TABLE document_vectors (
            document_id uuid PRIMARY KEY REFERENCES documents(id) ON DELETE CASCADE,
            tenant_id text NOT NULL,
            embedding vector({dim}) NOT NULL
        )"""
    )
    op.execute(
        "INSERT INTO document_vectors (document_id, tenant_id, embedding) "
        "SELECT document_id, min(tenant_id), avg(embedding) FROM chunks GROUP BY document_id"
    )
    op.execute("CREATE INDEX document_vectors_tenant ON document_vectors (tenant_id)")
    op.execute("CREATE INDEX document_vectors_hnsw ON document_vectors USING hnsw (embedding vector_cosine_ops)")

    # Events are never updated or deleted. `seq` orders one user's events in the order they were
    # applied to the profile (a user's events are serialised by a lock), so a rebuild replays them
    # exactly. No foreign key to documents: deleting a document must not rewrite history.
    op.execute(
        """
        CREATE TABLE feedback (
            id uuid PRIMARY KEY,
            seq bigint GENERATED ALWAYS AS IDENTITY,
            tenant_id text NOT NULL REFERENCES tenants(id),
            user_id text NOT NULL,
            kind text NOT NULL CHECK (kind IN ('VIEW', 'CLICK', 'LIKE', 'DISLIKE', 'RATING', 'WATCHED',
                                               'ANSWER_HELPFUL', 'ANSWER_UNHELPFUL')),
            document_id uuid,
            answer_id uuid,
            query_id uuid,
            rating double precision CHECK (rating IS NULL OR rating BETWEEN 0 AND 5),
            idempotency_key text,
            request_hash text,
            created_at timestamptz NOT NULL DEFAULT clock_timestamp(),
            CHECK ((document_id IS NULL) <> (answer_id IS NULL)),
            CHECK ((kind = 'RATING') = (rating IS NOT NULL))
        )"""
    )
    # The backstop for idempotency; the service also serialises same-key requests with a lock.
    op.execute(
        "CREATE UNIQUE INDEX feedback_idempotency ON feedback (tenant_id, idempotency_key) "
        "WHERE idempotency_key IS NOT NULL"
    )
    # Analytics and popularity scan a tenant's time range; the profile path reads one user's events.
    op.execute("CREATE INDEX feedback_tenant_created ON feedback (tenant_id, created_at) INCLUDE (kind, document_id)")
    op.execute("CREATE INDEX feedback_tenant_user ON feedback (tenant_id, user_id, seq)")
    op.execute("CREATE INDEX feedback_query ON feedback (tenant_id, query_id) WHERE query_id IS NOT NULL")
    op.execute("CREATE INDEX feedback_answer ON feedback (tenant_id, answer_id) WHERE answer_id IS NOT NULL")

    op.execute(
        f"""
        CREATE TABLE user_profiles (
            tenant_id text NOT NULL REFERENCES tenants(id),
            user_id text NOT NULL,
            preference vector({dim}),
            events integer NOT NULL DEFAULT 0,
            positives integer NOT NULL DEFAULT 0,
            negatives integer NOT NULL DEFAULT 0,
            last_seq bigint NOT NULL DEFAULT 0,
            last_event_at timestamptz,
            PRIMARY KEY (tenant_id, user_id)
        )"""
    )
    # users = how many users engaged positively with both items; stored in both directions so a
    # lookup by item_a is one index range.
    op.execute(
        """
        CREATE TABLE co_engagement (
            tenant_id text NOT NULL REFERENCES tenants(id),
            item_a uuid NOT NULL REFERENCES documents(id) ON DELETE CASCADE,
            item_b uuid NOT NULL REFERENCES documents(id) ON DELETE CASCADE,
            users integer NOT NULL,
            PRIMARY KEY (tenant_id, item_a, item_b),
            CHECK (item_a <> item_b)
        )"""
    )
    op.execute("CREATE INDEX co_engagement_b ON co_engagement (item_b)")
    # Search clicks join feedback to the searches that showed the results.
    op.execute("CREATE INDEX query_log_tenant_mode_created ON query_log (tenant_id, mode, created_at)")


def downgrade() -> None:
    for table in ("co_engagement", "user_profiles", "feedback", "document_vectors"):
        op.execute(f"DROP TABLE IF EXISTS {table}")
    op.execute("DROP INDEX IF EXISTS query_log_tenant_mode_created")
