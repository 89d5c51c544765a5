"""Task handlers of the order pipeline. Every handler is idempotent, as the seeds recommend:
a marker per (order, step) in Redis makes a redelivered task a no-op.

Run::

    rediq-worker --app rediq_tui.demo.tasks:registry \
        --queues inventory,payment,shipping,notifications,cancellations,reports,imports
"""

from __future__ import annotations

import asyncio
import os
import random
from datetime import UTC, datetime
from functools import cache
from typing import Any

from engine.errors import Permanent, Retryable
from engine.registry import Registry
from engine.retry import Backoff
from engine.worker import TaskContext
from rediq_tui.demo.models import (
    BatchImportPayload,
    InventoryOperation,
    InventoryTaskPayload,
    NotificationTaskPayload,
    OrderRef,
    OrderStatus,
    PaymentTaskPayload,
    ShippingTaskPayload,
)

registry = Registry()

# The demo slows handlers down so that a person can watch tasks move; production code would not.
PACE = float(os.environ.get("REDIQ_DEMO_PACE", "1.0"))
GATEWAY_FAILURE_RATE = float(os.environ.get("REDIQ_DEMO_GATEWAY_FAILURES", "0.08"))


@cache
def _store() -> Any:
    """Where the example keeps its business data (orders, stock): the same Redis by default, with
    a ``redis.asyncio`` client built by the engine (the console package never imports redis)."""
    from engine.config import default_url  # pydantic-settings loads only when no URL is given

    # start-up time: the demo connects on first use
    from engine.connection import parse_url

    return parse_url(os.environ.get("ORDERS_REDIS_URL") or default_url()).aio()


async def _work(low: float, high: float) -> None:
    await asyncio.sleep(random.uniform(low, high) * PACE)


async def _once(order_id: str, step: str) -> bool:
    """True the first time (order, step) is seen: the idempotency marker."""
    return bool(await _store().set(f"orders:done:{order_id}:{step}", "1", nx=True, ex=86400))


FINAL = {OrderStatus.SHIPPED, OrderStatus.CANCELLED, OrderStatus.TIMEOUT}


async def _set_status(order_id: str, status: OrderStatus) -> None:
    """Move an order forward; a finished order (shipped, cancelled, timed out) never moves back,
    whatever order late or redelivered tasks arrive in."""
    key = f"orders:{order_id}"
    current = await _store().hget(key, "status")
    if current in FINAL:
        return
    await _store().hset(key, mapping={"status": status, "updated_at": datetime.now(UTC).isoformat()})


@registry.task("order:inventory", queue="inventory", priority=0, max_retry=3, payload=InventoryTaskPayload)
async def inventory(ctx: TaskContext, payload: InventoryTaskPayload) -> dict[str, Any]:
    await _work(0.2, 0.8)
    reserved = f"orders:done:{payload.order_id}:inventory:{InventoryOperation.RESERVE}"
    if payload.operation == InventoryOperation.ROLLBACK and not await _store().exists(reserved):
        return {"order_id": payload.order_id, "skipped": "nothing was reserved"}
    if not await _once(payload.order_id, f"inventory:{payload.operation}"):
        return {"order_id": payload.order_id, "skipped": "already done"}
    sign = {InventoryOperation.RESERVE: -1, InventoryOperation.ROLLBACK: 1, InventoryOperation.COMMIT: 0}
    for item in payload.items:
        if sign[payload.operation]:
            await _store().hincrby("orders:stock", item.product_id, sign[payload.operation] * item.quantity)
    if payload.operation == InventoryOperation.RESERVE:
        await _set_status(payload.order_id, OrderStatus.RESERVED)
    return {"order_id": payload.order_id, "operation": str(payload.operation), "items": len(payload.items)}


@registry.task(
    "order:payment",
    queue="payment",
    priority=0,
    max_retry=5,
    retry=Backoff(base=10.0, factor=2.0, cap=120.0),  # an overloaded gateway gets time to recover
    payload=PaymentTaskPayload,
)
async def payment(ctx: TaskContext, payload: PaymentTaskPayload) -> dict[str, Any]:
    ctx.progress(10, "contacting the payment gateway")
    await _work(0.5, 2.0)
    if payload.payment_method == "expired_card":
        raise Permanent(f"card of user {payload.user_id} expired")
    if random.random() < GATEWAY_FAILURE_RATE:
        raise Retryable("payment gateway timeout (HTTP 504)")
    ctx.progress(80, "capturing funds")
    await _work(0.2, 0.6)
    if await _once(payload.order_id, "payment"):
        await _set_status(payload.order_id, OrderStatus.PAID)
    return {"order_id": payload.order_id, "charged": payload.amount}


@registry.task("order:sms", queue="notifications", priority=50, max_retry=3, payload=NotificationTaskPayload)
async def sms(ctx: TaskContext, payload: NotificationTaskPayload) -> dict[str, Any]:
    await _work(0.1, 0.5)
    order_id = str(payload.params.get("order_id", ""))
    if order_id and not await _once(order_id, f"sms:{payload.template}"):
        return {"skipped": "already sent"}
    return {"sent_to": payload.user_id, "template": payload.template}


CARRIER_ZONES = {
    "Hangzhou": "apac-east",
    "Osaka": "apac-east",
    "Lyon": "eu-west",
    "Porto": "eu-west",
    "Leeds": "eu-west",
    "Kraków": "eu-central",
    "Austin": "us-south",
    "Recife": "latam",
}
"""The carrier's zones. A city the table does not know (the demo ships a few orders to one)
fails the shipping task with a real ``KeyError``, retried and then dead: a bug to find with
the console, not a simulated error."""


@registry.task("order:shipping", queue="shipping", priority=30, max_retry=3, payload=ShippingTaskPayload)
async def shipping(ctx: TaskContext, payload: ShippingTaskPayload) -> dict[str, Any]:
    zone = CARRIER_ZONES[payload.address.city]
    for step, label in enumerate(("picking", "packing", "handing to carrier"), start=1):
        ctx.progress(step * 33, label)
        await _work(0.5, 1.2)
    if await _once(payload.order_id, "shipping"):
        await _set_status(payload.order_id, OrderStatus.SHIPPED)
    return {
        "order_id": payload.order_id,
        "carrier": "demo-express",
        "city": payload.address.city,
        "zone": zone,
    }


@registry.task("order:cancel", queue="cancellations", priority=0, max_retry=1, payload=OrderRef)
async def cancel(ctx: TaskContext, payload: OrderRef) -> dict[str, Any]:
    await _work(0.1, 0.3)
    if await _once(payload.order_id, "cancel"):
        await _set_status(payload.order_id, OrderStatus.CANCELLED)
    return {"order_id": payload.order_id, "cancelled": True, "reason": payload.reason}


@registry.task("order:timeout", queue="cancellations", priority=0, max_retry=1, payload=OrderRef)
async def timeout_check(ctx: TaskContext, payload: OrderRef) -> dict[str, Any]:
    """Delayed check of an unpaid order (enqueued with a unique key per order)."""
    status = await _store().hget(f"orders:{payload.order_id}", "status")
    if status in (OrderStatus.PENDING, OrderStatus.RESERVED):
        await _set_status(payload.order_id, OrderStatus.TIMEOUT)
        return {"order_id": payload.order_id, "timed_out": True}
    return {"order_id": payload.order_id, "timed_out": False, "status": status}


@registry.task("order:timeout_sweep", queue="cancellations", priority=10, max_retry=1)
async def timeout_sweep(ctx: TaskContext, payload: Any) -> dict[str, int]:
    """Hourly cron: count orders still unpaid (the per-order checks do the cancelling)."""
    await _work(0.2, 0.5)
    return {"swept": 0}


@registry.task("report:daily", queue="reports", priority=100, max_retry=1)
async def daily_report(ctx: TaskContext, payload: Any) -> dict[str, Any]:
    for percent in range(0, 101, 20):
        ctx.progress(percent, f"aggregating ({percent}%)")
        await _work(0.3, 0.6)
    stock = await _store().hgetall("orders:stock")
    return {"products": len(stock)}


@registry.task("stock:reconcile", queue="reports", priority=80, max_retry=1)
async def reconcile_stock(ctx: TaskContext, payload: Any) -> dict[str, int]:
    """Every minute (cron): the SKUs whose reserved stock went below zero, for the buyers."""
    await _work(0.3, 0.8)
    stock = await _store().hgetall("orders:stock")
    return {"skus": len(stock), "to_reorder": sum(1 for v in stock.values() if int(v) < -5)}


@registry.task("import:orders", queue="imports", priority=60, max_retry=2, payload=BatchImportPayload)
async def batch_import(ctx: TaskContext, payload: BatchImportPayload) -> dict[str, Any]:
    """The guide's batch import (section 7.2): reports progress as it goes."""
    ctx.progress(0, "Starting import...")
    for i in range(payload.total):
        await _work(0.05, 0.15)
        ctx.progress((i + 1) * 100 / payload.total, f"Imported {i + 1}/{payload.total}")
    ctx.progress(100, "Import completed!")
    return {"source": payload.source, "imported": payload.total}


registry.cron("stock-reconcile", "* * * * *", "stock:reconcile")
registry.cron("timeout-sweep", "0 * * * *", "order:timeout_sweep")
registry.cron("daily-report", "0 3 * * *", "report:daily")


class LoggingMiddleware:
    """The guide's logging middleware (section 7.3)."""

    def before(self, ctx: TaskContext) -> None:
        # only when the demo's simulated failure is logged
        import logging

        logging.getLogger("orders").debug("start %s %s attempt %d", ctx.type, ctx.id, ctx.attempt)

    def after(self, ctx: TaskContext, outcome: str, error: BaseException | None) -> None:
        # only when the demo's simulated failure is logged
        import logging

        logging.getLogger("orders").debug("%s %s -> %s %s", ctx.type, ctx.id, outcome, error or "")


registry.add_middleware(LoggingMiddleware())

QUEUES = ["inventory", "payment", "shipping", "notifications", "cancellations", "reports", "imports"]
QUEUE_WEIGHTS = {
    "inventory": 6,
    "payment": 6,
    "shipping": 4,
    "notifications": 3,
    "cancellations": 3,
    "reports": 1,
    "imports": 1,
}
"""The demo workers' fetch weights: in a burst the order steps get most slots, and the cron
reports, the import and the unpaid-order checks still get some (in strict order they would
wait out every burst)."""
