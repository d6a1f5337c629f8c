"""Checks on the raw operation that must come before validation, in one pass over it.

- No NUL characters. PostgreSQL `text` and `jsonb` reject `\\u0000`, so one in any string argument
  (a search query, a title, a filter value deep inside a JSON scalar) would surface as a database
  error halfway through an operation. Checking every literal and variable here turns it into one
  clear, coded error for all fields at once.
- No spreads of undefined fragments. Strawberry's depth limiter crashes on one (a KeyError) while
  validating; naming the fragment first turns that into a validation error.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from graphql import FragmentDefinitionNode, FragmentSpreadNode, GraphQLError, StringValueNode, visit
from graphql.language import Visitor
from strawberry.extensions import SchemaExtension

NUL = "\x00"
NUL_MESSAGE = "Text arguments can't contain the NUL character (\\u0000); remove it and retry."


def _has_nul(value: Any) -> bool:
    if isinstance(value, str):
        return NUL in value
    if isinstance(value, dict):
        return any(_has_nul(k) or _has_nul(v) for k, v in value.items())
    if isinstance(value, list | tuple):
        return any(_has_nul(v) for v in value)
    return False


class _Scan(Visitor):
    def __init__(self) -> None:
        super().__init__()
        self.nul = False
        self.spread: set[str] = set()
        self.defined: set[str] = set()

    def enter_string_value(self, node: StringValueNode, *_: Any) -> None:
        self.nul = self.nul or NUL in node.value

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
        if scan.nul or _has_nul(ctx.variables):
            raise GraphQLError(NUL_MESSAGE, extensions={"code": "INVALID_CHARACTER"})
        yield
