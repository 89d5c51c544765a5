"""The shop's background tasks. Imported once Django is set up (by the views and by
``manage.py rediq_worker``), so handlers use the ORM like any other Django code."""

from __future__ import annotations

from django.db import close_old_connections
from pydantic import BaseModel

from engine import Registry, TaskContext
from shop.models import Order

registry = Registry()


class OrderRef(BaseModel):
    order_id: int


@registry.task("shop:confirm_order", queue="shop", max_retry=3, payload=OrderRef)
def confirm_order(ctx: TaskContext, ref: OrderRef) -> dict[str, object]:
    """Confirm a placed order. A sync handler runs in a worker thread, where the ORM is allowed;
    like Django's request cycle, it drops connections that went stale or broken between tasks."""
    close_old_connections()
    try:
        # idempotent: a redelivered task finds the order confirmed and changes nothing
        changed = Order.objects.filter(pk=ref.order_id, status=Order.Status.PLACED).update(
            status=Order.Status.CONFIRMED, confirmed_by_task=ctx.id
        )
        return {"order_id": ref.order_id, "confirmed": bool(changed)}
    finally:
        close_old_connections()
