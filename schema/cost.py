"""Query cost analysis, in the spirit of Shopify's calculated query cost.

Before an operation executes, `estimate_cost` walks its document and adds up what it may cost to
answer; `QueryCost` rejects operations above a maximum and charges the rest to the caller's rate
limits (`context.charge`). The estimate needs no schema: an object field is one that has a
sub-selection, and list-ness comes from the field-name tables in `CostWeights`, so it is an upper
bound that costs one pass over the document.

Rules, with the default weights (`DEFAULT_WEIGHTS`):

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
    ingestDocuments (SYNC)                 5 per document in `input.documents`; 256 (the
                                           default batch maximum) when the count is unknown
    uploadDocuments (SYNC)                 5 per file in `input.files`, on top of the 50
    job-creating calls (deferred)          ingestDocuments ASYNC: 1 per document + 1 per 4 KiB of
                                           title and text; uploadDocuments ASYNC: 1 per file;
                                           importFeedback: 1 per event (10,000 when unknown).
                                           A call without `mode` is ASYNC above 256 documents.
    ingestionJobs                          paged like documents (edges, default 20); surcharges:
                                           ingestionJob 1, ingestionProgress 10,
                                           cancelIngestionJob 5, importFeedback 20
    `options.rerank` other than NONE       20, on search, answer, answerStream, recommendations
    whole operation                        at least 1
    =====================================  =====================================================

Deferred cost is the work a job does later, in a worker. It is charged to the caller's rate limits
with the rest (so a tenant cannot queue more work than its quota allows) but does not count
against the per-operation maximum, which bounds what one request costs to answer: a 10,000
document job returns at once.

Fragments and inline fragments count wherever they are spread (all branches of a type condition
count: an upper bound). Fields skipped with `@skip`/`@include` do not count. Arguments come from
literals, variables, or the operation's variable defaults.
"""

from __future__ import annotations

import math
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, NamedTuple

from graphql import (
    DirectiveNode,
    DocumentNode,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLError,
    InlineFragmentNode,
    OperationDefinitionNode,
    SelectionNode,
    SelectionSetNode,
    Undefined,
)
from graphql import ExecutionResult as GraphQLExecutionResult
from graphql.utilities import get_operation_ast, value_from_ast_untyped
from starlette.responses import Response
from strawberry.extensions import SchemaExtension
from strawberry.types import ExecutionContext
from strawberry.types.graphql import OperationType

from domain.errors import RateLimited
from domain.paging import MAX_FIRST
from schema.context import ThrottleStatus

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
    per_upload_file: int = 5
    # Job-creating calls: charged to rate limits as deferred cost (see the module docstring).
    per_async_document: int = 1
    per_async_kib: int = 4  # one unit per this many KiB of title and text
    per_async_file: int = 1
    per_import_event: int = 1
    async_threshold: int = 256
    assumed_job_size: int = 10_000
    # RAGQL_MAX_DOCUMENTS_PER_BATCH's default: the most one ingest call can carry.
    assumed_batch_size: int = 256
    minimum: int = 1
    paged: Mapping[str, Paged] = field(
        default_factory=lambda: _frozen(
            {
                "documents": Paged(20, "edges"),
                "search": Paged(10, "hits"),
                "recommendations": Paged(10, "items"),
                "similarDocuments": Paged(10, None),
                "ingestionJobs": Paged(20, "edges"),
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
                "search": 10,
                "answer": 50,
                "answerStream": 50,
                "recommendations": 10,
                "similarDocuments": 5,
                "analytics": 20,
                "uploadDocuments": 50,
                "deleteDocument": 5,
                "submitFeedback": 2,
                "createApiKey": 5,
                "revokeApiKey": 5,
                "ingestionJob": 1,
                "ingestionProgress": 10,
                "cancelIngestionJob": 5,
                "importFeedback": 20,
            }
        )
    )
    # Root fields charged `per_document` for each entry of `input.documents`.
    per_document_fields: frozenset[str] = frozenset({"ingestDocuments"})
    rerank_fields: frozenset[str] = frozenset({"search", "answer", "answerStream", "recommendations"})


DEFAULT_WEIGHTS = CostWeights()


class _Scope(NamedTuple):
    """Where a selection set sits: at the operation root, or under a paged root field."""

    root: bool = False
    # Under a paged root field: the child that holds the items, and how many there are.
    items: str | None = None
    first: int = 1


_ROOT = _Scope(root=True)
_NESTED = _Scope()


class Estimate(NamedTuple):
    immediate: int
    # Work queued for a worker: charged, but not checked against the per-operation maximum.
    deferred: int

    @property
    def total(self) -> int:
        return self.immediate + self.deferred


def estimate(
    document: DocumentNode,
    operation_name: str | None,
    variables: dict[str, Any] | None,
    *,
    weights: CostWeights = DEFAULT_WEIGHTS,
) -> Estimate:
    """The cost of the selected operation; linear in the size of the document."""
    operation = get_operation_ast(document, operation_name)
    if operation is None:
        # Unknown or ambiguous operation name: execution rejects it with its own error.
        return Estimate(weights.minimum, 0)
    fragments = {d.name.value: d for d in document.definitions if isinstance(d, FragmentDefinitionNode)}
    walker = _Walker(fragments, _variable_values(operation, variables), weights)
    immediate = max(weights.minimum, walker.selections(operation.selection_set, _ROOT))
    return Estimate(immediate, walker.deferred)


def estimate_cost(
    document: DocumentNode,
    operation_name: str | None,
    variables: dict[str, Any] | None,
    *,
    weights: CostWeights = DEFAULT_WEIGHTS,
) -> int:
    """Everything the operation is charged: its immediate and its deferred cost."""
    return estimate(document, operation_name, variables, weights=weights).total


def _variable_values(operation: OperationDefinitionNode, variables: dict[str, Any] | None) -> dict[str, Any]:
    """Provided values, else the operation's declared defaults."""
    values: dict[str, Any] = {}
    for definition in operation.variable_definitions or ():
        name = definition.variable.name.value
        if variables is not None and name in variables:
            values[name] = variables[name]
        elif definition.default_value is not None:
            values[name] = value_from_ast_untyped(definition.default_value)
    return values


def _member(value: Any, key: str) -> Any:
    return value.get(key, Undefined) if isinstance(value, dict) else Undefined


class _Walker:
    def __init__(
        self, fragments: dict[str, FragmentDefinitionNode], variables: dict[str, Any], weights: CostWeights
    ) -> None:
        self._fragments = fragments
        self._variables = variables
        self._weights = weights
        # A fragment's cost depends only on where it is spread, so each (fragment, scope) is walked
        # once: fragments that spread each other several times stay linear, not exponential.
        self._memo: dict[tuple[str, _Scope], int] = {}
        self._in_progress: set[str] = set()
        self.deferred = 0
        # Root fields already charged their deferred cost (a fragment may spread one twice).
        self._deferred_seen: set[int] = set()

    def selections(self, selection_set: SelectionSetNode, scope: _Scope) -> int:
        total = 0
        for selection in selection_set.selections:
            if self._skipped(selection):
                continue
            if isinstance(selection, FieldNode):
                total += self._field(selection, scope)
            elif isinstance(selection, InlineFragmentNode):
                total += self.selections(selection.selection_set, scope)
            elif isinstance(selection, FragmentSpreadNode):
                total += self._spread(selection.name.value, scope)
        return total

    def _spread(self, name: str, scope: _Scope) -> int:
        key = (name, scope)
        if key in self._memo:
            return self._memo[key]
        fragment = self._fragments.get(name)
        # Validation rejects unknown and cyclic fragments; never loop on them regardless.
        if fragment is None or name in self._in_progress:
            return 0
        self._in_progress.add(name)
        try:
            cost = self.selections(fragment.selection_set, scope)
        finally:
            self._in_progress.discard(name)
        self._memo[key] = cost
        return cost

    def _field(self, node: FieldNode, scope: _Scope) -> int:
        name = node.name.value
        if name in INTROSPECTION_FIELDS:
            return self._weights.introspection
        if node.selection_set is None:
            return 0  # a scalar or enum leaf, or __typename
        surcharge = self._root_surcharge(name, node) if scope.root else 0
        multiplier, child_scope = self._list_shape(name, node, scope)
        children = self.selections(node.selection_set, child_scope)
        return surcharge + self._weights.object_field + multiplier * children

    def _list_shape(self, name: str, node: FieldNode, scope: _Scope) -> tuple[int, _Scope]:
        """How many times the sub-selection counts, and the scope it is walked in."""
        weights = self._weights
        paged = weights.paged.get(name) if scope.root else None
        if paged is not None:
            first = self._first(node, paged.default_first)
            if paged.items is None:
                return first, _NESTED
            return 1, _Scope(items=paged.items, first=first)
        if scope.items == name:
            return scope.first, _NESTED
        if name in weights.list_fields:
            return weights.assumed_list_size, _NESTED
        return 1, _NESTED

    def _first(self, node: FieldNode, default: int) -> int:
        value = self._argument(node, "first")
        # Absent, null or not an int: count the default; coercion or the resolver rejects the rest.
        if isinstance(value, bool) or not isinstance(value, int):
            value = default
        return min(max(value, 0), self._weights.max_first)

    def _root_surcharge(self, name: str, node: FieldNode) -> int:
        weights = self._weights
        cost = weights.root_fields.get(name, 0)
        if name in weights.per_document_fields:
            count = self._document_count(node)
            if self._runs_async(node, count):
                self._defer(node, weights.per_async_document * count + self._async_text_units(node))
            else:
                cost += weights.per_document * count
        elif name == "uploadDocuments":
            files = self._list_length(node, "files", weights.assumed_batch_size)
            if self._runs_async(node, files):
                self._defer(node, weights.per_async_file * files)
            else:
                cost += weights.per_upload_file * files
        elif name == "importFeedback":
            self._defer(node, weights.per_import_event * self._list_length(node, "events", weights.assumed_job_size))
        if name in weights.rerank_fields and self._reranks(node):
            cost += weights.rerank
        return cost

    def _defer(self, node: FieldNode, units: int) -> None:
        if id(node) not in self._deferred_seen:
            self._deferred_seen.add(id(node))
            self.deferred += units

    def _runs_async(self, node: FieldNode, count: int) -> bool:
        mode = _member(self._argument(node, "input"), "mode")
        if isinstance(mode, str):
            return mode == "ASYNC"
        return count > self._weights.async_threshold

    def _list_length(self, node: FieldNode, key: str, unknown: int) -> int:
        value = _member(self._argument(node, "input"), key)
        if isinstance(value, list):
            return len(value)
        return 1 if isinstance(value, dict) else unknown

    def _async_text_units(self, node: FieldNode) -> int:
        documents = _member(self._argument(node, "input"), "documents")
        if not isinstance(documents, list):
            return 0
        chars = 0
        for doc in documents:
            for key in ("title", "text"):
                value = _member(doc, key)
                chars += len(value) if isinstance(value, str) else 0
        return chars // (self._weights.per_async_kib * 1024)

    def _document_count(self, node: FieldNode) -> int:
        documents = _member(self._argument(node, "input"), "documents")
        if isinstance(documents, list):
            return len(documents)
        if isinstance(documents, dict):
            return 1  # input coercion turns a lone object into a one-item list
        return self._weights.assumed_batch_size

    def _reranks(self, node: FieldNode) -> bool:
        rerank = _member(self._argument(node, "options"), "rerank")
        return isinstance(rerank, str) and rerank != "NONE"

    def _argument(self, node: FieldNode | DirectiveNode, name: str) -> Any:
        for argument in node.arguments or ():
            if argument.name.value == name:
                return value_from_ast_untyped(argument.value, self._variables)
        return Undefined

    def _skipped(self, node: SelectionNode) -> bool:
        """True when @skip(if: true) or @include(if: false) drops the selection."""
        for directive in node.directives or ():
            kind = directive.name.value
            if kind == "skip" and self._argument(directive, "if") is True:
                return True
            if kind == "include" and self._argument(directive, "if") is False:
                return True
        return False


def too_costly_error(cost: int, max_cost: int, operation: str = "query") -> GraphQLError:
    return GraphQLError(
        f"This {operation} costs {cost}, more than the maximum of {max_cost}. "
        "Ask for fewer items (lower `first`) or split it.",
        extensions={"code": "QUERY_TOO_COSTLY", "cost": cost, "maximumCost": max_cost},
    )


def rate_limited_error(exc: RateLimited) -> GraphQLError:
    return GraphQLError(
        exc.message,
        original_error=exc,
        extensions={"code": "RATE_LIMITED", "retryAfter": retry_after_seconds(exc)},
    )


def retry_after_seconds(exc: RateLimited) -> int:
    """Whole seconds, rounded up, never 0: a client told 0 would retry at once and fail again."""
    seconds = exc.retry_after_s
    if not math.isfinite(seconds):
        return 1
    return max(1, math.ceil(seconds))


def _throttle_report(status: ThrottleStatus) -> dict[str, Any]:
    return {
        "maximumAvailable": status.maximum_available,
        "currentlyAvailable": status.currently_available,
        "restoreRate": status.restore_rate,
    }


def _mark_http_429(context: Any, retry_after: int) -> None:
    # Over HTTP the context's response is FastAPI's sub-response, whose status and headers the
    # router copies onto the reply. Websockets have no such response, and a multipart
    # subscription has already sent its 200 by the time the stream runs this.
    response = getattr(context, "response", None)
    if isinstance(response, Response):
        response.status_code = 429
        response.headers["Retry-After"] = str(retry_after)


class QueryCost(SchemaExtension):
    """Rejects operations costing more than `max_cost`, charges the rest to `context.charge`,
    and reports both in `extensions.cost`.

    Wire it as a class or factory (`lambda: QueryCost(max_cost=...)`), not an instance: Strawberry
    shares an instance between concurrent requests, and the report below is per request. The
    hook is async (it awaits the charger), so it needs async execution (`execute`, `subscribe`).
    """

    def __init__(
        self,
        max_cost: int = DEFAULT_MAX_COST,
        *,
        weights: CostWeights = DEFAULT_WEIGHTS,
        execution_context: ExecutionContext | None = None,
    ) -> None:
        super().__init__(execution_context=execution_context)
        self.max_cost = max_cost
        self.weights = weights
        self._report: dict[str, Any] = {}

    async def on_execute(self) -> AsyncIterator[None]:
        # Taken before any await: a shared instance's execution_context may be replaced meanwhile.
        ctx = self.execution_context
        if ctx.result is None:  # another extension may have answered already; nothing will run
            rejection = await self._admit(ctx)
            if rejection is not None:
                self._reject(ctx, rejection)
        yield

    def get_results(self) -> dict[str, Any]:
        return {"cost": dict(self._report)} if self._report else {}

    async def _admit(self, ctx: ExecutionContext) -> GraphQLError | None:
        """The error to answer with instead of executing, or None to go ahead."""
        # on_execute runs only after parsing and validation succeeded, so there is a document.
        assert ctx.graphql_document is not None
        est = estimate(ctx.graphql_document, ctx.operation_name, ctx.variables, weights=self.weights)
        cost = est.total
        self._report = {"requestedQueryCost": cost, "maximumQueryCost": self.max_cost}
        if est.deferred:
            self._report["deferredCost"] = est.deferred
        if est.immediate > self.max_cost:
            return too_costly_error(est.immediate, self.max_cost, ctx.operation_type.value)
        charge = getattr(ctx.context, "charge", None)
        if charge is None:
            return None
        try:
            status: ThrottleStatus = await charge(cost)
        except RateLimited as exc:
            error = rate_limited_error(exc)
            _mark_http_429(ctx.context, retry_after_seconds(exc))
            return error
        except Exception as exc:
            # Fail closed: an unmetered request is what the limit exists to stop. No code here, so
            # ErrorCodes logs it with the request id and masks it as INTERNAL_SERVER_ERROR.
            return GraphQLError("Could not check this request against its rate limit.", original_error=exc)
        self._report["throttleStatus"] = _throttle_report(status)
        return None

    @staticmethod
    def _reject(ctx: ExecutionContext, error: GraphQLError) -> None:
        if ctx.operation_type is OperationType.SUBSCRIPTION:
            # Schema.subscribe ignores a preset result and calls graphql-core's subscribe inside
            # on_execute; only an exception stops it. Strawberry turns it into one error result.
            raise error
        # Queries and mutations: with a result already set, Strawberry skips graphql-core's
        # execute, and the operation ends normally so ErrorCodes still adds the request id.
        ctx.result = GraphQLExecutionResult(data=None, errors=[error])
