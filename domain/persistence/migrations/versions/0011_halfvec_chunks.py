"""Chunk vectors stored as `halfvec` (16-bit floats): 776 bytes a vector instead of 1,544, so the
heap's vector column halves and the HNSW index shrinks by 43% (1,953 -> 1,116 MB at 1M chunks).

Measured before deciding (README, "Scale"): SciFact test nDCG@10 unchanged to four decimals in
every mode (hybrid 0.7374 both), and the dense leg's recall@10 against exact float32 search the
same within noise at 10k and 100k chunks.

What changes and what does not:
- `chunks.embedding` becomes `halfvec(dim)`, its HNSW index `halfvec_cosine_ops`. Every partition
  follows (ALTER on the partitioned parent recurses; new tenants' partitions are made `LIKE
  chunks`). The conversion rewrites every partition and rebuilds its indexes, BM25 included: on a
  large store this takes as long as building them (about the index build times in the README).
- Nothing in the code names the type: queries cast the query vector `AS vector`, and pgvector's
  implicit cast vector -> halfvec turns `halfvec <=> vector` into `halfvec <=> halfvec`, which the
  index serves; the asyncpg codec encodes whatever the column's type is.
- `document_vectors` (one per document, recommendations) stays float32: it is small.

Revision ID: 0011
"""

from alembic import context, op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def _convert(kind: str, opclass: str) -> None:
    dim = int(context.config.attributes["embedding_dim"])
    op.execute("DROP INDEX IF EXISTS chunks_embedding_hnsw")
    op.execute(f"ALTER TABLE chunks ALTER COLUMN embedding TYPE {kind}({dim}) USING embedding::{kind}({dim})")
    op.execute(f"CREATE INDEX chunks_embedding_hnsw ON chunks USING hnsw (embedding {opclass})")


def upgrade() -> None:
    _convert("halfvec", "halfvec_cosine_ops")


def downgrade() -> None:
    _convert("vector", "vector_cosine_ops")
