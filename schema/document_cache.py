"""Parsed GraphQL documents, cached across requests (Strawberry's ParserCache), with one change.

Strawberry's ParserCache parses inside the parsing hook, so a syntax error escapes from the hook
rather than from Strawberry's own parse, and skips the path that gives it `extensions.code`. Here
a document that does not parse is left unparsed: Strawberry parses it again itself and reports
the error as it would with no cache (errors are rare, so parsing twice costs nothing that
matters). Documents that parse come from the shared LRU.

It also carries the token limit (what Strawberry's MaxTokensLimiter sets in a hook of its own): the
limit is a parse option, so it applies to every parse, cached or not, and is part of the cache's key."""

from __future__ import annotations

from collections.abc import Iterator

from graphql import GraphQLError
from strawberry.extensions import ParserCache


class CachedParse(ParserCache):
    def __init__(self, *, max_token_count: int, maxsize: int | None = None) -> None:
        super().__init__(maxsize=maxsize)
        self.max_token_count = max_token_count

    def on_parse(self) -> Iterator[None]:
        ctx = self.execution_context
        # Before any parse, ours or Strawberry's fallback: a huge document is refused unparsed.
        ctx.parse_options["max_tokens"] = self.max_token_count
        try:
            ctx.graphql_document = self.cached_parse_document(ctx.query, **ctx.parse_options)
        except GraphQLError:
            ctx.graphql_document = None
        yield
