"""Checks on the raw operation that must come before the rest.

`NoNulCharacters`: refuse text that PostgreSQL can't store, before any resolver sees it.

PostgreSQL `text` and `jsonb` reject the NUL character, so a `\\u0000` in any string argument
(a search query, a title, a filter value deep inside a JSON scalar) would surface as a database
error halfway through an operation. One check over every variable and string literal turns that
into a clear, coded error for all fields at once.

`KnownFragments`: a spread of an undefined fragment makes Strawberry's depth limiter crash
(a KeyError) while validating; naming the fragment first turns that into a validation error.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from graphql import FragmentDefinitionNode, FragmentSpreadNode, GraphQLError, StringValueNode, visit
from graphql.language import Visitor
from strawberry.extensions import SchemaExtension

NUL = "\x00"
MESSAGE = "Text arguments can't contain the NUL character (\\u0000); remove it and retry."


def _has_nul(value: Any) -> bool:
    if isinstance(value, str):
        return NUL in value
    if isinstance(value, dict):
        return any(_has_nul(k) or _has_nul(v) for k, v in value.items())
    if isinstance(value, list | tuple):
        return any(_has_nul(v) for v in value)
    return False


class _NulLiteralFinder(Visitor):
    def __init__(self) -> None:
        super().__init__()
        self.found = False

    def enter_string_value(self, node: StringValueNode, *_: Any) -> None:
        if NUL in node.value:
            self.found = True


class NoNulCharacters(SchemaExtension):
    def on_execute(self) -> Iterator[None]:
        ctx = self.execution_context
        finder = _NulLiteralFinder()
        if ctx.graphql_document is not None:
            visit(ctx.graphql_document, finder)
        if finder.found or _has_nul(ctx.variables):
            # Raised, not returned: for subscriptions Strawberry only stops on an exception.
            raise GraphQLError(MESSAGE, extensions={"code": "INVALID_CHARACTER"})
        yield


class _SpreadFinder(Visitor):
    def __init__(self) -> None:
        super().__init__()
        self.spread: list[str] = []

    def enter_fragment_spread(self, node: FragmentSpreadNode, *_: Any) -> None:
        self.spread.append(node.name.value)


class KnownFragments(SchemaExtension):
    def on_validate(self) -> Iterator[None]:
        document = self.execution_context.graphql_document
        if document is not None:
            defined = {d.name.value for d in document.definitions if isinstance(d, FragmentDefinitionNode)}
            finder = _SpreadFinder()
            visit(document, finder)
            unknown = sorted(set(finder.spread) - defined)
            if unknown:
                raise GraphQLError(
                    f"Unknown fragment {unknown[0]!r}: define it or remove the spread.",
                    extensions={"code": "GRAPHQL_VALIDATION_FAILED"},
                )
        yield
