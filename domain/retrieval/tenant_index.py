"""Where a tenant's chunks and keyword index live (migration 0005): one partition of `chunks`
per tenant, with its own BM25 index. The names are derived here exactly as the SQL function
`ragql_chunk_partition` derives them, so a query names them without a catalog lookup.

Keyword queries must name the partition and its index. Through the parent, pg_textsearch 1.0
finds the right partition index for the index scan, but the score it returns for each row is
computed with another partition's statistics (measured; see the README, "Keyword statistics per
tenant")."""

from __future__ import annotations

import hashlib


def chunk_partition(tenant_id: str) -> str:
    # md5 as a name, not for security: hex keeps the identifier safe and under 63 bytes.
    return "chunks_t_" + hashlib.md5(tenant_id.encode(), usedforsecurity=False).hexdigest()


def keyword_index(tenant_id: str) -> str:
    return chunk_partition(tenant_id) + "_bm25"
