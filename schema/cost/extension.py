"""The QueryCost extension: coerces the variables, estimates, refuses what is over the maximum,
charges the rest to the caller's rate limits, and marks HTTP replies 429 when they are over.

The only part of the cost code that knows about Strawberry and Starlette.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from typing import Any

from graphql import ExecutionResult as GraphQLExecutionResult
from graphql import GraphQLError, GraphQLSchema
from graphql.execution.values import get_variable_values
from graphql.utilities import get_operation_ast
from starlette.responses import Response
from strawberry.extensions import SchemaExtension
from strawberry.types import ExecutionContext
from strawberry.types.graphql import OperationType

from domain.errors import RateLimited, retry_after_seconds
from schema.context import ThrottleStatus
from schema.cost.estimator import estimate
from schema.cost.weights import DEFAULT_MAX_COST, DEFAULT_WEIGHTS, CostWeights


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
        extensions={"code": "RATE_LIMITED", "retryAfter": retry_after_seconds(exc.retry_after_s)},
    )


def coerced_variables(ctx: ExecutionContext) -> Mapping[str, Any] | None:
    """The variables as execution will see them (`100.0` for an Int becomes 100, defaults filled
    in), or None when they do not coerce: execution then rejects the operation itself."""
    assert ctx.graphql_document is not None
    operation = get_operation_ast(ctx.graphql_document, ctx.operation_name)
    if operation is None:
        return {}
    schema: GraphQLSchema = ctx.schema._schema
    coerced = get_variable_values(schema, operation.variable_definitions or (), ctx.variables or {})
    if isinstance(coerced, list):
        return None
    return coerced.coerced


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
    and reports both in `extensions.cost`. Operations refused before they run (unparsable,
    invalid, too costly) are charged `weights.rejected`.

    Wire it as a class or factory (`lambda: QueryCost(max_cost=...)`), not an instance: Strawberry
    shares an instance between concurrent requests, and the report below is per request. The
    hooks are async (they await the charger), so it needs async execution (`execute`, `subscribe`).
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
        self._charged = False

    async def on_operation(self) -> AsyncIterator[None]:
        ctx = self.execution_context
        yield
        if not self._charged and (ctx.pre_execution_errors or self._report):
            # Refused before it ran: parse or validation errors, or over the maximum. The reply is
            # an error already; a caller over its limit meets the 429 on its next request.
            await self._charge(ctx, self.weights.rejected, quiet=True)

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
        variables = coerced_variables(ctx)
        if variables is None:
            # Execution answers with the coercion error; what it refused is charged as a rejection.
            self._charged = True
            return await self._charge(ctx, self.weights.rejected)
        est = estimate(ctx.graphql_document, ctx.operation_name, variables, weights=self.weights)
        cost = est.total
        self._report = {"requestedQueryCost": cost, "maximumQueryCost": self.max_cost}
        if est.deferred:
            self._report["deferredCost"] = est.deferred
        if est.immediate > self.max_cost:
            return too_costly_error(est.immediate, self.max_cost, ctx.operation_type.value)
        self._charged = True
        return await self._charge(ctx, cost)

    async def _charge(self, ctx: ExecutionContext, cost: int, *, quiet: bool = False) -> GraphQLError | None:
        self._charged = True
        charge = getattr(ctx.context, "charge", None)
        if charge is None:
            return None
        try:
            status: ThrottleStatus = await charge(cost)
        except RateLimited as exc:
            if quiet:
                return None
            _mark_http_429(ctx.context, retry_after_seconds(exc.retry_after_s))
            return rate_limited_error(exc)
        except Exception as exc:
            if quiet:
                return None
            # Fail closed: an unmetered request is what the limit exists to stop. No code here, so
            # ErrorCodes logs it with the request id and masks it as INTERNAL_SERVER_ERROR.
            return GraphQLError("Could not check this request against its rate limit.", original_error=exc)
        if not quiet and self._report:
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
