"""The pure cost estimator: a parsed document and its coerced variables in, a cost out.

It walks the selected operation once and adds up what answering may cost (rules and weights in
schema/cost/weights.py). It needs no schema, so it is an upper bound. Fragments and inline
fragments count wherever they are spread (all branches of a type condition count). Fields skipped
with `@skip`/`@include` do not count. Arguments come from literals or variables.

Variables must be the *coerced* values (schema/cost/extension.py coerces them with graphql-core):
graphql-core accepts `100.0` and `1e2` for an Int and turns them into 100, and the estimate has to
see the 100 that execution will use, not the float the client sent.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NamedTuple

from graphql import (
    DirectiveNode,
    DocumentNode,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    InlineFragmentNode,
    OperationDefinitionNode,
    OperationType,
    SelectionNode,
    SelectionSetNode,
    Undefined,
)
from graphql.utilities import get_operation_ast, value_from_ast_untyped

from schema.cost.weights import (
    DEFAULT_WEIGHTS,
    INTROSPECTION_FIELDS,
    CostWeights,
    ingest_cost,
    selected_text_cost,
    upload_cost,
)

ROOT_TYPES = {
    OperationType.QUERY: "Query",
    OperationType.MUTATION: "Mutation",
    OperationType.SUBSCRIPTION: "Subscription",
}


class Estimate(NamedTuple):
    immediate: int
    # Work queued for a worker: charged, but not checked against the per-operation maximum.
    deferred: int

    @property
    def total(self) -> int:
        return self.immediate + self.deferred


class _Scope(NamedTuple):
    """Where a selection set sits: at the operation root, or under a paged root field."""

    root: bool = False
    # Under a paged root field: the child that holds the items, and how many there are.
    items: str | None = None
    first: int = 1


_ROOT = _Scope(root=True)
_NESTED = _Scope()


def estimate(
    document: DocumentNode,
    operation_name: str | None,
    variables: Mapping[str, Any] | None,
    *,
    weights: CostWeights = DEFAULT_WEIGHTS,
) -> Estimate:
    """The cost of the selected operation; linear in the size of the document."""
    operation = get_operation_ast(document, operation_name)
    if operation is None:
        # Unknown or ambiguous operation name: execution rejects it with its own error.
        return Estimate(weights.minimum, 0)
    fragments = {d.name.value: d for d in document.definitions if isinstance(d, FragmentDefinitionNode)}
    walker = _Walker(fragments, _variable_values(operation, variables), weights, ROOT_TYPES[operation.operation])
    immediate = max(weights.minimum, walker.selections(operation.selection_set, _ROOT))
    return Estimate(immediate, walker.deferred)


def estimate_cost(
    document: DocumentNode,
    operation_name: str | None,
    variables: Mapping[str, Any] | None,
    *,
    weights: CostWeights = DEFAULT_WEIGHTS,
) -> int:
    """Everything the operation is charged: its immediate and its deferred cost."""
    return estimate(document, operation_name, variables, weights=weights).total


def _variable_values(operation: OperationDefinitionNode, variables: Mapping[str, Any] | None) -> dict[str, Any]:
    """Provided values, else the operation's declared defaults (coercion already applies them;
    kept for callers that pass raw variables)."""
    values: dict[str, Any] = {}
    for definition in operation.variable_definitions or ():
        name = definition.variable.name.value
        if variables is not None and name in variables:
            values[name] = variables[name]
        elif definition.default_value is not None:
            values[name] = value_from_ast_untyped(definition.default_value)
    return values


def _member(value: Any, key: str) -> Any:
    return value.get(key, Undefined) if isinstance(value, Mapping) else Undefined


def _as_list(value: Any) -> list[Any] | None:
    """A list argument; a lone object counts as a one-item list, as input coercion makes it."""
    if isinstance(value, list):
        return value
    if value is Undefined or value is None:
        return None
    return [value]


class _Walker:
    def __init__(
        self,
        fragments: dict[str, FragmentDefinitionNode],
        variables: dict[str, Any],
        weights: CostWeights,
        root_type: str,
    ) -> None:
        self._fragments = fragments
        self._variables = variables
        self._weights = weights
        self._root_type = root_type
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
        key = f"{self._root_type}.{name}" if scope.root else None
        surcharge = self._root_surcharge(key, node) if key else 0
        multiplier, child_scope = self._list_shape(name, key, node, scope)
        children = self.selections(node.selection_set, child_scope)
        return surcharge + self._weights.object_field + multiplier * children

    def _list_shape(self, name: str, key: str | None, node: FieldNode, scope: _Scope) -> tuple[int, _Scope]:
        """How many times the sub-selection counts, and the scope it is walked in."""
        weights = self._weights
        paged = weights.paged.get(key) if key else None
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
        if value is Undefined or value is None:
            value = default
        elif isinstance(value, bool) or not isinstance(value, int):
            # Coerced variables are ints; anything else counts as the most it could be.
            value = self._weights.max_first
        return min(max(value, 0), self._weights.max_first)

    def _root_surcharge(self, key: str, node: FieldNode) -> int:
        weights = self._weights
        cost = weights.root_fields.get(key, 0)
        if key in weights.per_document_fields:
            documents = _as_list(_member(self._argument(node, "input"), "documents"))
            count = len(documents) if documents is not None else weights.assumed_batch_size
            if self._runs_async(node, count):
                self._defer(node, weights.per_async_document * count + self._async_text_units(documents or []))
            else:
                cost += self._ingest(node)
        if key in weights.per_file_fields:
            files = _as_list(_member(self._argument(node, "input"), "files"))
            count = len(files) if files is not None else weights.assumed_batch_size
            if self._runs_async(node, count):
                self._defer(node, weights.per_async_file * count)
            else:
                cost += self._upload(node)
        if key in weights.per_event_fields:
            events = _as_list(_member(self._argument(node, "input"), "events"))
            count = len(events) if events is not None else weights.assumed_job_size
            self._defer(node, weights.per_import_event * count)
        if key in weights.selected_text_fields:
            selected = _member(self._argument(node, "options"), "selectedText")
            if isinstance(selected, str):
                cost += selected_text_cost(selected, weights)
        if key in weights.rerank_fields and self._reranks(node):
            cost += weights.rerank
        return cost

    def _defer(self, node: FieldNode, units: int) -> None:
        if id(node) not in self._deferred_seen:
            self._deferred_seen.add(id(node))
            self.deferred += units

    def _runs_async(self, node: FieldNode, count: int) -> bool:
        mode = _member(self._argument(node, "input"), "mode")
        mode = getattr(mode, "value", mode)  # coerced: an Enum member
        if isinstance(mode, str):
            return mode == "ASYNC"
        return count > self._weights.async_threshold

    def _async_text_units(self, documents: list[Any]) -> int:
        chars = 0
        for doc in documents:
            for key in ("title", "text"):
                value = _member(doc, key)
                chars += len(value) if isinstance(value, str) else 0
        return chars // (self._weights.per_async_kib * 1024)

    def _ingest(self, node: FieldNode) -> int:
        documents = _as_list(_member(self._argument(node, "input"), "documents"))
        if documents is None:
            return self._weights.per_document * self._weights.assumed_batch_size
        return ingest_cost(documents, self._weights)

    def _upload(self, node: FieldNode) -> int:
        files = _as_list(_member(self._argument(node, "input"), "files")) or []
        sizes = [size if isinstance(size := getattr(f, "size", None), int) else 0 for f in files]
        return upload_cost(sizes, self._weights)

    def _reranks(self, node: FieldNode) -> bool:
        rerank = _member(self._argument(node, "options"), "rerank")
        # Coerced: an Enum member; from a literal or raw variable: its name.
        rerank = getattr(rerank, "value", rerank)
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
