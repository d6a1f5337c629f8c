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

from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass
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


@dataclass(frozen=True)
class _Findings:
    """What one walk of a document (and its chosen operation) found."""

    document: DocumentNode  # held, so no other document can reuse its id while this entry lives
    unknown_fragment: str | None
    bad_literal: bool
    per_item: bool


# The walk's findings per parsed document and operation name. CachedParse hands out one document
# object per distinct text, so a client's repeated operation is walked once, not on every request
# (the walk was about 4% of a cached search's CPU, issue 18). Variables are checked every time.
SCANNED_DOCUMENTS = 512
_scanned: OrderedDict[tuple[int, str | None], _Findings] = OrderedDict()


def _findings(document: DocumentNode, operation_name: str | None) -> _Findings:
    key = (id(document), operation_name)
    found = _scanned.get(key)
    if found is not None and found.document is document:
        _scanned.move_to_end(key)
        return found
    scan = _Scan()
    visit(document, scan)
    unknown = sorted(scan.spread - scan.defined)
    found = _Findings(document, unknown[0] if unknown else None, scan.nul, _per_item_only(document, operation_name))
    _scanned[key] = found
    if len(_scanned) > SCANNED_DOCUMENTS:
        _scanned.popitem(last=False)
    return found


class InputGuard(SchemaExtension):
    def on_validate(self) -> Iterator[None]:
        # Raised, not returned: this is the one way to stop queries and subscriptions alike here.
        ctx = self.execution_context
        if ctx.graphql_document is not None:
            found = _findings(ctx.graphql_document, ctx.operation_name)
            if found.unknown_fragment is not None:
                raise GraphQLError(
                    f"Unknown fragment {found.unknown_fragment!r}: define it or remove the spread.",
                    extensions={"code": "GRAPHQL_VALIDATION_FAILED"},
                )
            if not found.per_item and (found.bad_literal or _bad(ctx.variables)):
                raise GraphQLError(NUL_MESSAGE, extensions={"code": "INVALID_CHARACTER"})
        elif _bad(ctx.variables):
            raise GraphQLError(NUL_MESSAGE, extensions={"code": "INVALID_CHARACTER"})
        yield
