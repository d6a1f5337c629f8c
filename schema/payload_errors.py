"""The one error path for mutations: a DomainError raised below becomes the payload's `errors`.

Resolvers raise and never catch. Queries need nothing here: their DomainErrors leave as GraphQL
errors with extensions.code (schema/errors.py). Request refusals (unauthenticated, forbidden, rate
limited) stay GraphQL errors on mutations too: they are about the request, not the input."""

from __future__ import annotations

import functools
from collections.abc import AsyncGenerator, Awaitable, Callable
from contextlib import aclosing
from typing import Any

import strawberry
from strawberry.extensions import FieldExtension
from strawberry.types.field import StrawberryField

from domain.errors import DomainError, Forbidden, RateLimited, Unauthenticated
from schema.common import UserError


class DomainErrorsToPayload(FieldExtension):
    """Needs a payload type whose fields all have defaults except `errors` (an empty result)."""

    payload: type

    def apply(self, field: StrawberryField) -> None:
        payload = field.type
        if not isinstance(payload, type) or "errors" not in getattr(payload, "__annotations__", {}):
            raise TypeError(f"{field.python_name}: DomainErrorsToPayload needs a payload type with `errors`")
        self.payload = payload

    async def resolve_async(
        self, next_: Callable[..., Awaitable[Any]], source: Any, info: strawberry.Info, **kwargs: Any
    ) -> Any:
        try:
            return await next_(source, info, **kwargs)
        except (Unauthenticated, Forbidden, RateLimited):
            raise
        except DomainError as exc:
            return self.payload(errors=[UserError.from_domain(exc)])


def first_error_as_event(
    on_error: Callable[[DomainError], Any],
) -> Callable[[Callable[..., AsyncGenerator[Any, None]]], Callable[..., AsyncGenerator[Any, None]]]:
    """The same path for a subscription: a DomainError raised before its first event (bad input)
    becomes one final error event built by `on_error`, so every stream ends with an event."""

    def wrap(resolver: Callable[..., AsyncGenerator[Any, None]]) -> Callable[..., AsyncGenerator[Any, None]]:
        @functools.wraps(resolver)
        async def stream(*args: Any, **kwargs: Any) -> AsyncGenerator[Any, None]:
            events = resolver(*args, **kwargs)
            try:
                first = await anext(events)
            except StopAsyncIteration:
                return
            except DomainError as exc:
                yield on_error(exc)
                return
            yield first
            async with aclosing(events):
                async for event in events:
                    yield event

        return stream

    return wrap
