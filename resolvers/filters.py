"""Map the GraphQL filter input to the domain's filter."""

from __future__ import annotations

from domain.retrieval.filters import Condition, MetadataFilter
from schema.search import MetadataFilter as MetadataFilterInput


def to_domain_filter(flt: MetadataFilterInput | None) -> MetadataFilter | None:
    if flt is None:
        return None
    return MetadataFilter(
        all=tuple(Condition(c.field, c.op.value, c.value) for c in flt.all or []),
        any=tuple(Condition(c.field, c.op.value, c.value) for c in flt.any or []),
    )
