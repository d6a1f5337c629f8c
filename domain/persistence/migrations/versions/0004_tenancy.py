"""Tenant isolation beneath the code, and API keys.

Every tenant table gets row-level security whose policy reads the transaction-local setting
`ragql.tenant_id`. Request transactions run as the role `ragql_app` (`SET LOCAL ROLE` in
`Database.session`), which is neither the tables' owner nor a superuser, so the policies bind
even when a query forgets its `WHERE tenant_id`. With the setting unset, a policy sees no rows.

The owner (the role that migrates) still bypasses RLS; only migrations and operator commands
(`ragql rebuild-profiles` walking every tenant) use it.

API keys are looked up before the tenant is known, so the app role cannot read `api_keys`
across tenants; it calls one SECURITY DEFINER function that finds a key by its hash and nothing
else.

Revision ID: 0004
"""

from alembic import op

from domain.persistence.database import APP_ROLE

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

# Table -> the column its policy compares with the request's tenant.
TENANT_TABLES = {
    "tenants": "id",
    "documents": "tenant_id",
    "chunks": "tenant_id",
    "query_log": "tenant_id",
    "answers": "tenant_id",
    "document_vectors": "tenant_id",
    "feedback": "tenant_id",
    "user_profiles": "tenant_id",
    "co_engagement": "tenant_id",
    "api_keys": "tenant_id",
}


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE api_keys (
            id uuid PRIMARY KEY,
            tenant_id text NOT NULL REFERENCES tenants(id),
            name text NOT NULL,
            display_prefix text NOT NULL,
            secret_hash text NOT NULL UNIQUE,
            roles text[] NOT NULL CHECK (cardinality(roles) > 0 AND roles <@ ARRAY['reader', 'editor', 'admin']),
            created_by text NOT NULL,
            created_at timestamptz NOT NULL DEFAULT now(),
            expires_at timestamptz,
            revoked_at timestamptz,
            last_used_at timestamptz
        )"""
    )
    op.execute("CREATE INDEX api_keys_tenant_created ON api_keys (tenant_id, created_at)")

    # The role request transactions switch to. NOLOGIN: nobody connects as it directly.
    op.execute(
        f"""
        DO $$
        BEGIN
            IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{APP_ROLE}') THEN
                CREATE ROLE {APP_ROLE} NOLOGIN NOSUPERUSER NOBYPASSRLS;
            END IF;
        END $$"""
    )
    op.execute(f"GRANT {APP_ROLE} TO current_user")
    op.execute(f"GRANT USAGE ON SCHEMA public TO {APP_ROLE}")
    op.execute(f"GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO {APP_ROLE}")
    op.execute(f"GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO {APP_ROLE}")
    # Tables added by later migrations are the app's too.
    op.execute(
        f"ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO {APP_ROLE}"
    )
    op.execute(f"ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT USAGE, SELECT ON SEQUENCES TO {APP_ROLE}")
    # Bookkeeping the app must not change.
    op.execute(f"REVOKE INSERT, UPDATE, DELETE ON ragql_meta, alembic_version FROM {APP_ROLE}")

    for table, column in TENANT_TABLES.items():
        op.execute(f"ALTER TABLE {table} ENABLE ROW LEVEL SECURITY")
        op.execute(
            f"CREATE POLICY tenant_isolation ON {table} "
            f"USING ({column} = current_setting('ragql.tenant_id', true)) "
            f"WITH CHECK ({column} = current_setting('ragql.tenant_id', true))"
        )

    # Finds a key by the SHA-256 of its secret, whatever the tenant, and marks it used (at most
    # once a minute, so authentication is not a write per request).
    op.execute(
        """
        CREATE FUNCTION ragql_find_api_key(p_secret_hash text)
        RETURNS TABLE (id uuid, tenant_id text, name text, roles text[], expires_at timestamptz,
                       revoked_at timestamptz)
        LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp
        AS $$
        BEGIN
            UPDATE api_keys k SET last_used_at = now()
             WHERE k.secret_hash = p_secret_hash AND k.revoked_at IS NULL
               AND (k.last_used_at IS NULL OR k.last_used_at < now() - interval '1 minute');
            RETURN QUERY
                SELECT k.id, k.tenant_id, k.name, k.roles, k.expires_at, k.revoked_at
                  FROM api_keys k WHERE k.secret_hash = p_secret_hash;
        END $$"""
    )
    op.execute("REVOKE ALL ON FUNCTION ragql_find_api_key(text) FROM PUBLIC")
    op.execute(f"GRANT EXECUTE ON FUNCTION ragql_find_api_key(text) TO {APP_ROLE}")


def downgrade() -> None:
    op.execute("DROP FUNCTION IF EXISTS ragql_find_api_key(text)")
    for table in TENANT_TABLES:
        op.execute(f"DROP POLICY IF EXISTS tenant_isolation ON {table}")
        op.execute(f"ALTER TABLE {table} DISABLE ROW LEVEL SECURITY")
    op.execute("DROP TABLE IF EXISTS api_keys")
    op.execute(f"ALTER DEFAULT PRIVILEGES IN SCHEMA public REVOKE ALL ON TABLES FROM {APP_ROLE}")
    op.execute(f"ALTER DEFAULT PRIVILEGES IN SCHEMA public REVOKE ALL ON SEQUENCES FROM {APP_ROLE}")
    op.execute(f"REVOKE ALL ON ALL TABLES IN SCHEMA public FROM {APP_ROLE}")
    op.execute(f"REVOKE ALL ON ALL SEQUENCES IN SCHEMA public FROM {APP_ROLE}")
    op.execute(f"REVOKE ALL ON SCHEMA public FROM {APP_ROLE}")
    # The role itself is cluster-wide and may serve other databases: it is left in place.
