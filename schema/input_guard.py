"""Checks on the raw operation that must come before validation, in one pass over it.

- No NUL characters. PostgreSQL `text` and `jsonb` reject `\\u0000`, so one in any string argument
  (a search query, a title, a filter value deep inside a JSON scalar) would surface as a database
  error halfway through an operation. Checking every literal and variable here turns it into one
  clear, coded error for all fields at once.
- No lone UTF-16 surrogates (`\\ud800`): JSON and GraphQL escapes allow them, UTF-8 can't encode
  them, so one in a search query or a filter value failed deep inside as INTERNAL. Same code.
  Operations that only ingest or upload are left to the documents area, which checks each
  document on its own: one bad document is that document's error, and the others are stored.
- No spreads of undefined fragments. Strawberry's depth limiter crashes on one (a KeyError) while
  validating; naming the fragment first turns that into a validation error.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from graphql import (
    DocumentNode,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLError,
    StringValueNode,
    visit,
)
from graphql.language import Visitor
from graphql.utilities import get_operation_ast
from strawberry.extensions import SchemaExtension

from domain.documents.validation import bad_character

NUL_MESSAGE = (
    "Text arguments can't contain the NUL character (\\u0000) or a lone UTF-16 surrogate "
    "(\\ud800-\\udfff); remove it and retry."
)
# Root fields whose string arguments the documents area checks per document (domain/documents/validation.py).
PER_ITEM_FIELDS = frozenset({"ingestDocuments", "uploadDocuments"})


def _bad(value: Any) -> bool:
    if isinstance(value, str):
        return bad_character(value) is not None
    if isinstance(value, dict):
        return any(_bad(k) or _bad(v) for k, v in value.items())
    if isinstance(value, list | tuple):
        return any(_bad(v) for v in value)
    return False


def _per_item_only(document: DocumentNode, operation_name: str | None) -> bool:
    operation = get_operation_ast(document, operation_name)
    if operation is None:
        return False
    selections = operation.selection_set.selections
    return bool(selections) and all(
        isinstance(s, FieldNode) and s.name.value in PER_ITEM_FIELDS and not s.directives for s in selections
    )


class _Scan(Visitor):
    def __init__(self) -> None:
        super().__init__()
        self.nul = False
        self.spread: set[str] = set()
        self.defined: set[str] = set()

    def enter_string_value(self, node: StringValueNode, *_: Any) -> None:
        self.nul = self.nul or bad_character(node.value) is not None

    def enter_fragment_spread(self, node: FragmentSpreadNode, *_: Any) -> None:
        self.spread.add(node.name.value)

    def enter_fragment_definition(self, node: FragmentDefinitionNode, *_: Any) -> None:
        self.defined.add(node.name.value)


class InputGuard(SchemaExtension):
    def on_validate(self) -> Iterator[None]:
        # Raised, not returned: this is the one way to stop queries and subscriptions alike here.
        ctx = self.execution_context
        scan = _Scan()
        if ctx.graphql_document is not None:
            visit(ctx.graphql_document, scan)
        unknown = sorted(scan.spread - scan.defined)
        if unknown:
            raise GraphQLError(
                f"Unknown fragment {unknown[0]!r}: define it or remove the spread.",
                extensions={"code": "GRAPHQL_VALIDATION_FAILED"},
            )
        per_item = ctx.graphql_document is not None and _per_item_only(ctx.graphql_document, ctx.operation_name)
        if not per_item and (scan.nul or _bad(ctx.variables)):
            raise GraphQLError(NUL_MESSAGE, extensions={"code": "INVALID_CHARACTER"})
        yield
