"""Validation without "Did you mean ...?" suggestions, for production, cached for valid documents.

graphql-core's suggestions name real fields and types ("Did you mean 'apiKeys'?"): with
introspection off, that is the schema handed out one typo at a time. Strawberry validates only
when no extension did already, so this runs the same rules itself with `hide_suggestions`.

Documents that pass are remembered (an LRU keyed by the parsed document object, which CachedParse
hands out once per distinct text, and the rules): clients send the same few operations with different
variables, and validating a search's document again on every request was about a fifth of the
server's CPU under load in production (py-spy, issue 18). A document that fails is validated
again each time, so its errors are never shared between requests (they get each request's id).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterator
from typing import Any

from graphql import DocumentNode, GraphQLError, GraphQLSchema, validate
from strawberry.extensions import SchemaExtension
from strawberry.schema.validation_rules.maybe_null import MaybeNullValidationRule
from strawberry.schema.validation_rules.one_of import OneOfInputValidationRule

VALID_DOCUMENTS = 512
# Keyed by identity (a document's own hash walks its whole tree); each entry holds its document,
# so no id in a key can be reused by another document while the entry lives.
_valid: OrderedDict[tuple[int, int, tuple[Any, ...]], DocumentNode] = OrderedDict()


def validate_hiding_suggestions(
    schema: GraphQLSchema, document: DocumentNode, rules: tuple[Any, ...]
) -> list[GraphQLError]:
    key = (id(schema), id(document), rules)
    if key in _valid:
        _valid.move_to_end(key)
        return []
    errors = validate(schema, document, rules, hide_suggestions=True)
    if not errors:
        _valid[key] = document
        if len(_valid) > VALID_DOCUMENTS:
            _valid.popitem(last=False)
    return errors


class HideSuggestions(SchemaExtension):
    def on_validate(self) -> Iterator[None]:
        ctx = self.execution_context
        if ctx.graphql_document is not None and ctx.pre_execution_errors is None and ctx.validation_rules:
            # The rules Strawberry would run (schema/schema.py validate_document), suggestions hidden.
            rules = (*ctx.validation_rules, MaybeNullValidationRule, OneOfInputValidationRule)
            ctx.pre_execution_errors = validate_hiding_suggestions(ctx.schema._schema, ctx.graphql_document, rules)
        yield
