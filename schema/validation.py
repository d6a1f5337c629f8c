"""Validation without "Did you mean ...?" suggestions, for production.

graphql-core's suggestions name real fields and types ("Did you mean 'apiKeys'?"): with
introspection off, that is the schema handed out one typo at a time. Strawberry validates only
when no extension did already, so this runs the same rules itself with `hide_suggestions`.
"""

from __future__ import annotations

from collections.abc import Iterator

from graphql import validate
from strawberry.extensions import SchemaExtension
from strawberry.schema.validation_rules.maybe_null import MaybeNullValidationRule
from strawberry.schema.validation_rules.one_of import OneOfInputValidationRule


class HideSuggestions(SchemaExtension):
    def on_validate(self) -> Iterator[None]:
        ctx = self.execution_context
        if ctx.graphql_document is not None and ctx.pre_execution_errors is None and ctx.validation_rules:
            # The rules Strawberry would run (schema/schema.py validate_document), suggestions hidden.
            rules = (*ctx.validation_rules, MaybeNullValidationRule, OneOfInputValidationRule)
            ctx.pre_execution_errors = validate(ctx.schema._schema, ctx.graphql_document, rules, hide_suggestions=True)
        yield
