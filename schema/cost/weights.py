"""The cost table, and the rules that make cost follow the work a request asks for.

Root fields are keyed by `Type.field` (`Query.search`, `Mutation.ingestDocuments`). Lists below
the root are named by field alone (`hits`, `edges`): the estimator needs no schema, so a field of
that name counts as a list on any type, an upper bound.

    =====================================  =====================================================
    selection                              cost
    =====================================  =====================================================
    scalar or enum leaf, `__typename`      0
    object field                           1 + cost of its sub-selection
    `__schema`, `__type`                   10, flat (the sub-selection is not walked)
    root list with `first`                 `first` (clamped to 0..100; schema default when
                                           absent) times its items' sub-selection:
                                           documents -> edges (default 20), search -> hits (10),
                                           recommendations -> items (10), similarDocuments ->
                                           itself (10)
    other list of objects                  10 times its sub-selection (hits, sources, citations,
                                           edges, items, results, chunks, documents below the
                                           root, topQueries, topZeroResultQueries,
                                           feedbackCounts). `errors` is not one: user errors
                                           are few and built in memory.
    root field surcharge                   search 10, answer 50, answerStream 50,
                                           recommendations 10, similarDocuments 5, analytics 20,
                                           uploadDocuments 50, deleteDocument 5,
                                           submitFeedback 2, createApiKey 5, revokeApiKey 5
    ingestDocuments (SYNC)                 `ingest_cost`: 5 per document plus 1 per 1,000
                                           characters of title and text; 256 documents (the
                                           default batch maximum) when the count is unknown
    uploadDocuments (SYNC)                 `upload_cost`: 5 per file plus 1 per 1,000 bytes
    job-creating calls (deferred)          ingestDocuments ASYNC: 1 per document + 1 per 4 KiB of
                                           title and text; uploadDocuments ASYNC: 1 per file;
                                           importFeedback: 1 per event (10,000 when unknown).
                                           A call without `mode` is ASYNC above 256 documents.
    ingestionJobs                          paged like documents (edges, default 20); surcharges:
                                           ingestionJob 1, ingestionProgress 10,
                                           cancelIngestionJob 5, importFeedback 20
    `options.selectedText`                 1 per 100 characters (answer, answerStream)
    `options.rerank` other than NONE       20, on search, answer, answerStream, recommendations
    whole operation                        at least 1
    a rejected operation                   10 (over the maximum, unparsable, invalid, or an
                                           unknown credential): refusals are work too
    =====================================  =====================================================

Deferred cost is the work a job does later, in a worker. It is charged to the caller's rate limits
with the rest (so a tenant cannot queue more work than its quota allows) but does not count
against the per-operation maximum, which bounds what one request costs to answer: a 10,000
document job returns at once.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, NamedTuple

from domain.paging import MAX_FIRST

DEFAULT_MAX_COST = 1000
INTROSPECTION_FIELDS = frozenset({"__schema", "__type"})


class Paged(NamedTuple):
    """A root field whose list length is its `first` argument."""

    default_first: int
    # The child field that holds the `first` items (e.g. `hits` under `search`); None when the
    # root field itself is the list.
    items: str | None


def _frozen(mapping: Mapping[str, Any]) -> Mapping[str, Any]:
    return MappingProxyType(dict(mapping))


@dataclass(frozen=True)
class CostWeights:
    """The cost table; see the module docstring for the rules in one place."""

    object_field: int = 1
    introspection: int = 10
    # Length assumed for object lists that have no `first` argument.
    assumed_list_size: int = 10
    max_first: int = MAX_FIRST
    rerank: int = 20
    per_document: int = 5
    # Embedding is the work that grows with size: a 200-token chunk is about 1,000 characters.
    chars_per_unit: int = 1000
    per_file: int = 5
    # Job-creating calls: charged to rate limits as deferred cost (see the module docstring).
    per_async_document: int = 1
    per_async_kib: int = 4  # one unit per this many KiB of title and text
    per_async_file: int = 1
    per_import_event: int = 1
    async_threshold: int = 256
    assumed_job_size: int = 10_000
    bytes_per_unit: int = 1000
    # A selected passage is embedded and matched sentence by sentence: CPU grows with its length.
    selected_chars_per_unit: int = 100
    # RAGQL_MAX_DOCUMENTS_PER_BATCH's default: the most one ingest call can carry.
    assumed_batch_size: int = 256
    minimum: int = 1
    # What a refused operation (too costly, unparsable, invalid, unknown credential) is charged.
    rejected: int = 10
    paged: Mapping[str, Paged] = field(
        default_factory=lambda: _frozen(
            {
                "Query.documents": Paged(20, "edges"),
                "Query.search": Paged(10, "hits"),
                "Query.recommendations": Paged(10, "items"),
                "Query.similarDocuments": Paged(10, None),
                "Query.ingestionJobs": Paged(20, "edges"),
            }
        )
    )
    list_fields: frozenset[str] = frozenset(
        {
            "hits",
            "sources",
            "citations",
            "edges",
            "items",
            "results",
            "chunks",
            "documents",
            "topQueries",
            "topZeroResultQueries",
            "feedbackCounts",
        }
    )
    root_fields: Mapping[str, int] = field(
        default_factory=lambda: _frozen(
            {
                "Query.search": 10,
                "Query.answer": 50,
                "Subscription.answerStream": 50,
                "Query.recommendations": 10,
                "Query.similarDocuments": 5,
                "Query.analytics": 20,
                "Mutation.uploadDocuments": 50,
                "Mutation.deleteDocument": 5,
                "Mutation.submitFeedback": 2,
                "Mutation.createApiKey": 5,
                "Mutation.revokeApiKey": 5,
                "Query.ingestionJob": 1,
                "Subscription.ingestionProgress": 10,
                "Mutation.cancelIngestionJob": 5,
                "Mutation.importFeedback": 20,
            }
        )
    )
    # Root fields charged `ingest_cost` for `input.documents` (or deferred cost when ASYNC).
    per_document_fields: frozenset[str] = frozenset({"Mutation.ingestDocuments"})
    # Root fields charged `upload_cost` for `input.files` (or deferred cost when ASYNC).
    per_file_fields: frozenset[str] = frozenset({"Mutation.uploadDocuments"})
    # Root fields charged `selected_text_cost` for `options.selectedText`.
    # Root fields whose `input.events` are queued as deferred cost.
    per_event_fields: frozenset[str] = frozenset({"Mutation.importFeedback"})
    selected_text_fields: frozenset[str] = frozenset({"Query.answer", "Subscription.answerStream"})
    rerank_fields: frozenset[str] = frozenset(
        {"Query.search", "Query.answer", "Subscription.answerStream", "Query.recommendations"}
    )


DEFAULT_WEIGHTS = CostWeights()


def _text_length(document: Any) -> int:
    """Characters of a document given as a mapping (GraphQL input) or an object with attributes."""
    total = 0
    for name in ("title", "text"):
        value = document.get(name) if isinstance(document, Mapping) else getattr(document, name, None)
        if isinstance(value, str):
            total += len(value)
    return total


def ingest_cost(documents: Iterable[Any], weights: CostWeights = DEFAULT_WEIGHTS) -> int:
    """What ingesting these documents costs: `per_document` each, plus one unit per started
    `chars_per_unit` characters of title and text. For every path that ingests (mutations, jobs)."""
    return sum(weights.per_document + math.ceil(_text_length(d) / weights.chars_per_unit) for d in documents)


def upload_cost(sizes: Iterable[int], weights: CostWeights = DEFAULT_WEIGHTS) -> int:
    """Uploaded files, by size in bytes: `per_file` each plus one unit per started `bytes_per_unit`."""
    return sum(weights.per_file + math.ceil(max(0, size) / weights.bytes_per_unit) for size in sizes)


def selected_text_cost(text: str, weights: CostWeights = DEFAULT_WEIGHTS) -> int:
    return math.ceil(len(text) / weights.selected_chars_per_unit)
