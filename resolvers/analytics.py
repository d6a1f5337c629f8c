"""analytics: the tenant's usage figures for a time window."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

import strawberry

from domain.analytics import service
from schema.analytics import Analytics
from schema.context import Context


async def analytics(
    info: strawberry.Info[Context],
    from_: Annotated[
        datetime | None,
        strawberry.argument(name="from", description="Start, inclusive; default `to` minus 30 days."),
    ] = None,
    to: Annotated[datetime | None, strawberry.argument(description="End, exclusive; default now.")] = None,
    top: Annotated[int, strawberry.argument(description="Length of the top query lists, 1..50.")] = 10,
) -> Analytics:
    # Domain errors (INVALID_RANGE) propagate: the ErrorCodes extension gives them extensions.code.
    await info.context.services.searching.flush_log()  # searches queued for the query log count
    report = await service.analytics(info.context.services.db, info.context.tenant_id, from_, to, top=top)
    return Analytics.from_report(report)
