"""The background work of the FastAPI example: a sales report that takes a while to render.

Run its worker with ``rediq-worker --app examples.fastapi_app.tasks:registry --queues reports``.
"""

from __future__ import annotations

import asyncio

from pydantic import BaseModel, Field

from engine import Permanent, Registry, TaskContext

registry = Registry()


class ReportRequest(BaseModel):
    region: str = Field(min_length=1, max_length=40)
    days: int = Field(default=7, ge=1, le=366)


class Report(BaseModel):
    region: str
    days: int
    orders: int
    revenue_cents: int


@registry.task("reports:sales", queue="reports", max_retry=2, timeout=60, payload=ReportRequest)
async def sales_report(ctx: TaskContext, request: ReportRequest) -> dict[str, object]:
    if request.region == "atlantis":
        # a bad input will not get better by retrying: the task goes dead at once, with this error
        raise Permanent(f"no such region: {request.region}")
    orders = 0
    for day in range(request.days):
        orders += 40 + (day * 7) % 13  # stands in for a query per day
        ctx.progress(100 * (day + 1) / request.days, f"day {day + 1} of {request.days}")
        await asyncio.sleep(0)
    return Report(
        region=request.region, days=request.days, orders=orders, revenue_cents=orders * 2599
    ).model_dump()
