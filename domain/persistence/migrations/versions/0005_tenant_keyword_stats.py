"""Keyword statistics per tenant: `chunks` becomes a table LIST-partitioned by tenant.

BM25 scores use the corpus statistics of the index that ranks them: the number of documents,
their average length, and how many contain each term. With one index over every tenant's chunks,
one tenant's writes (and deletes: the index keeps counting dead rows) moved every other tenant's
scores, so scores revealed what other tenants store (issue 13, failure 3).

So every tenant gets its own partition of `chunks`, created by a trigger when the tenant row is
inserted, and with it its own BM25 index (`<partition>_bm25`, statistics of that tenant only),
HNSW and b-tree indexes. What pg_textsearch 1.0 offers, measured on the bundled build:
- Partial indexes (`WHERE tenant_id = ...`) are no option: 1.0 ignores the predicate, indexes
  and counts every row, and the planner then drops the WHERE as implied by the predicate, so
  other tenants' rows come back (predicate support was designed upstream after 1.0).
- A BM25 index on a partitioned table is built per partition, each with its own statistics, and
  an index scan through the parent uses the partition's index. But the score it returns through
  the parent is computed with the first partition's statistics; so keyword queries name the
  partition and its own index (domain/retrieval/tenant_index.py). The parent index
  `chunks_bm25_idx` stays: it makes ATTACH give every partition an index, and
  `REINDEX INDEX chunks_bm25_idx` rebuilds them all.

Constraints that follow:
- The primary key includes the partition key: (tenant_id, id).
- Chunks reference documents by (tenant_id, document_id), so the cascade on a document delete
  looks in one partition, not in all of them.
- A transaction can write to fewer than ~200 BM25 indexes (pg_textsearch 1.0 holds per-index
  LWLocks until commit: "too many LWLocks taken"), so rows are copied here before any BM25 index
  exists, and the indexes are built afterwards.
- The app role writes through `chunks` only; on a partition it may only SELECT (keyword search
  reads the partition by name), and each partition carries the parent's row-level security
  policy, so naming another tenant's partition shows no rows.

Revision ID: 0005
"""

from alembic import context, op
from sqlalchemy import text

from domain.persistence.database import APP_ROLE

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

COLUMNS = "id, tenant_id, document_id, ordinal, text, search_text, token_count, embedding"
POLICY = (
    "USING (tenant_id = current_setting('ragql.tenant_id', true)) "
    "WITH CHECK (tenant_id = current_setting('ragql.tenant_id', true))"
)


def _has_fulltext_column() -> bool:
    row = op.get_bind().execute(
        text("SELECT 1 FROM information_schema.columns WHERE table_name = 'chunks' AND column_name = 'search_tsv'")
    )
    return row.first() is not None


def _has_bm25() -> bool:
    return op.get_bind().execute(text("SELECT to_regclass('chunks_bm25_idx')")).scalar() is not None


def _create_partitioned_chunks(dim: int, fulltext: bool) -> None:
    tsv = ", search_tsv tsvector GENERATED ALWAYS AS (to_tsvector('english', search_text)) STORED" if fulltext else ""
    op.execute(
        f"""
        CREATE TABLE chunks (
            id uuid NOT NULL,
            tenant_id text NOT NULL,
            document_id uuid NOT NULL,
            ordinal integer NOT NULL,
            text text NOT NULL,
            search_text text NOT NULL,
            token_count integer NOT NULL,
            embedding vector({dim}) NOT NULL{tsv}
        ) PARTITION BY LIST (tenant_id)"""
    )


def _create_partition_function() -> None:
    """One partition per tenant. CREATE TABLE ... PARTITION OF would take an ACCESS EXCLUSIVE lock
    on `chunks` (stalling every search until the tenant's transaction commits); a plain table
    attached afterwards takes SHARE UPDATE EXCLUSIVE, which lets reads and writes go on. ATTACH
    creates the partition's share of every index on `chunks`, the BM25 one included."""
    op.execute(
        "CREATE FUNCTION ragql_chunk_partition(p_tenant text) RETURNS text LANGUAGE sql IMMUTABLE "
        "AS $$ SELECT 'chunks_t_' || md5(p_tenant) $$"
    )
    op.execute(
        f"""
        CREATE FUNCTION ragql_add_chunk_partition(p_tenant text) RETURNS void
        LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp
        AS $$
        DECLARE part text := ragql_chunk_partition(p_tenant);
        BEGIN
            IF to_regclass(part) IS NOT NULL THEN
                RETURN;
            END IF;
            EXECUTE format('CREATE TABLE %I (LIKE chunks INCLUDING DEFAULTS INCLUDING GENERATED)', part);
            EXECUTE format('ALTER TABLE %I ENABLE ROW LEVEL SECURITY', part);
            EXECUTE format('CREATE POLICY tenant_isolation ON %I {POLICY.replace("'", "''")}', part);
            EXECUTE format('REVOKE ALL ON %I FROM {APP_ROLE}', part);
            EXECUTE format('GRANT SELECT ON %I TO {APP_ROLE}', part);
            -- Named here, so queries can name it; ATTACH adopts it as the parent index's share.
            IF to_regclass('chunks_bm25_idx') IS NOT NULL THEN
                EXECUTE format('CREATE INDEX %I ON %I USING bm25 (search_text) WITH (text_config = ''english'')',
                               part || '_bm25', part);
            END IF;
            EXECUTE format('ALTER TABLE chunks ATTACH PARTITION %I FOR VALUES IN (%L)', part, p_tenant);
        END $$"""
    )
    op.execute("REVOKE ALL ON FUNCTION ragql_add_chunk_partition(text) FROM PUBLIC")
    # Whoever inserts a tenant (the app role, in ensure_tenant) gets its partition in the same
    # transaction, created as the owner by the SECURITY DEFINER function.
    op.execute(
        """
        CREATE FUNCTION ragql_tenant_created() RETURNS trigger
        LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp
        AS $$
        BEGIN
            PERFORM ragql_add_chunk_partition(NEW.id);
            RETURN NULL;
        END $$"""
    )
    op.execute("REVOKE ALL ON FUNCTION ragql_tenant_created() FROM PUBLIC")
    op.execute(
        "CREATE TRIGGER tenants_chunk_partition AFTER INSERT ON tenants "
        "FOR EACH ROW EXECUTE FUNCTION ragql_tenant_created()"
    )


def _create_indexes(has_bm25: bool) -> None:
    """On the parent, after the rows are in: each is built per partition, in this transaction."""
    op.execute("ALTER TABLE documents ADD CONSTRAINT documents_tenant_id_id_key UNIQUE (tenant_id, id)")
    op.execute("ALTER TABLE chunks ADD CONSTRAINT chunks_pkey PRIMARY KEY (tenant_id, id)")
    op.execute(
        "ALTER TABLE chunks ADD CONSTRAINT chunks_document_fkey FOREIGN KEY (tenant_id, document_id) "
        "REFERENCES documents (tenant_id, id) ON DELETE CASCADE"
    )
    op.execute("CREATE INDEX chunks_document ON chunks (document_id)")
    op.execute("CREATE INDEX chunks_embedding_hnsw ON chunks USING hnsw (embedding vector_cosine_ops)")
    if has_bm25:
        # Each partition's first, by name; the parent's then adopts them instead of building anew.
        op.execute(
            """
            DO $$
            DECLARE part text;
            BEGIN
                FOR part IN SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
                            WHERE i.inhparent = 'chunks'::regclass LOOP
                    EXECUTE format('CREATE INDEX %I ON %I USING bm25 (search_text) WITH (text_config = ''english'')',
                                   part || '_bm25', part);
                END LOOP;
            END $$"""
        )
        op.execute("CREATE INDEX chunks_bm25_idx ON chunks USING bm25 (search_text) WITH (text_config = 'english')")
    else:
        op.execute("CREATE INDEX chunks_search_tsv ON chunks USING gin (search_tsv)")


def upgrade() -> None:
    dim = int(context.config.attributes["embedding_dim"])
    fulltext, has_bm25 = _has_fulltext_column(), _has_bm25()
    op.execute("ALTER TABLE chunks RENAME TO chunks_0004")
    for index in ("chunks_bm25_idx", "chunks_search_tsv", "chunks_embedding_hnsw", "chunks_document", "chunks_tenant"):
        op.execute(f"DROP INDEX IF EXISTS {index}")
    op.execute("ALTER TABLE chunks_0004 DROP CONSTRAINT chunks_pkey")

    _create_partitioned_chunks(dim, fulltext)
    _create_partition_function()
    op.execute(
        "SELECT ragql_add_chunk_partition(t) FROM (SELECT id FROM tenants UNION SELECT tenant_id FROM chunks_0004) s(t)"
    )
    op.execute(f"INSERT INTO chunks ({COLUMNS}) SELECT {COLUMNS} FROM chunks_0004")  # noqa: S608 (constants)
    op.execute("DROP TABLE chunks_0004")
    _create_indexes(has_bm25)

    op.execute("ALTER TABLE chunks ENABLE ROW LEVEL SECURITY")
    op.execute(f"CREATE POLICY tenant_isolation ON chunks {POLICY}")
    op.execute(f"GRANT SELECT, INSERT, UPDATE, DELETE ON chunks TO {APP_ROLE}")


def downgrade() -> None:
    dim = int(context.config.attributes["embedding_dim"])
    fulltext, has_bm25 = _has_fulltext_column(), _has_bm25()
    op.execute("DROP TRIGGER IF EXISTS tenants_chunk_partition ON tenants")
    op.execute("ALTER TABLE chunks RENAME TO chunks_0005")
    tsv = ", search_tsv tsvector GENERATED ALWAYS AS (to_tsvector('english', search_text)) STORED" if fulltext else ""
    op.execute(
        f"""
        CREATE TABLE chunks (
            id uuid NOT NULL,
            tenant_id text NOT NULL,
            document_id uuid NOT NULL REFERENCES documents(id) ON DELETE CASCADE,
            ordinal integer NOT NULL,
            text text NOT NULL,
            search_text text NOT NULL,
            token_count integer NOT NULL,
            embedding vector({dim}) NOT NULL{tsv}
        )"""
    )
    op.execute(f"INSERT INTO chunks ({COLUMNS}) SELECT {COLUMNS} FROM chunks_0005")  # noqa: S608 (constants)
    op.execute("DROP TABLE chunks_0005 CASCADE")
    op.execute("ALTER TABLE chunks ADD CONSTRAINT chunks_pkey PRIMARY KEY (id)")
    op.execute("CREATE INDEX chunks_document ON chunks (document_id)")
    op.execute("CREATE INDEX chunks_tenant ON chunks (tenant_id)")
    op.execute("CREATE INDEX chunks_embedding_hnsw ON chunks USING hnsw (embedding vector_cosine_ops)")
    if has_bm25:
        op.execute("CREATE INDEX chunks_bm25_idx ON chunks USING bm25 (search_text) WITH (text_config = 'english')")
    else:
        op.execute("CREATE INDEX chunks_search_tsv ON chunks USING gin (search_tsv)")
    op.execute("ALTER TABLE documents DROP CONSTRAINT IF EXISTS documents_tenant_id_id_key")
    for function in ("ragql_tenant_created()", "ragql_add_chunk_partition(text)", "ragql_chunk_partition(text)"):
        op.execute(f"DROP FUNCTION IF EXISTS {function}")
    op.execute("ALTER TABLE chunks ENABLE ROW LEVEL SECURITY")
    op.execute(f"CREATE POLICY tenant_isolation ON chunks {POLICY}")
    op.execute(f"GRANT SELECT, INSERT, UPDATE, DELETE ON chunks TO {APP_ROLE}")
