"""Placing an order: the guide's flow as rediq tasks with dependencies (section 2.2 and 7.1)."""

from __future__ import annotations

import random
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

from engine.client import Client
from rediq_tui.demo import tasks
from rediq_tui.demo.models import (
    InventoryOperation,
    InventoryTaskPayload,
    NotificationTaskPayload,
    Order,
    OrderItem,
    OrderRef,
    PaymentTaskPayload,
    ShippingAddress,
    ShippingTaskPayload,
)

CITIES = ["Hangzhou", "Lyon", "Porto", "Austin", "Osaka", "Leeds", "Kraków", "Recife"]
NEW_CITY = "Reykjavík"
"""A city the carrier table (``tasks.CARRIER_ZONES``) does not know yet: its shipments fail."""
PRODUCTS = [f"sku-{n:03d}" for n in range(1, 25)]


@dataclass(frozen=True)
class PlacedOrder:
    order: Order
    inventory: str
    payment: str
    sms: str
    shipping: str
    timeout_check: str


def random_order(rng: random.Random) -> Order:
    items = [
        OrderItem(product_id=rng.choice(PRODUCTS), quantity=rng.randint(1, 3), price=rng.randint(199, 9999))
        for _ in range(rng.randint(1, 4))
    ]
    now = datetime.now(UTC)
    return Order(
        id=f"o-{uuid.uuid4().hex[:10]}",
        user_id=f"u-{rng.randint(1, 500):04d}",
        items=items,
        total_amount=sum(i.price * i.quantity for i in items),
        created_at=now,
        updated_at=now,
    )


def place_order(
    client: Client,
    order: Order,
    *,
    payment_method: str = "card",
    city: str = "Lyon",
    timeout_check_s: float = 45.0,
) -> PlacedOrder:
    """inventory -> payment -> (sms, shipping), plus a delayed unpaid-order check."""
    # typed handles: each task lands in the queue its type declares, with its defaults, and
    # mypy checks each payload against the handler's model
    inventory = tasks.inventory.enqueue(
        InventoryTaskPayload(order_id=order.id, items=order.items, operation=InventoryOperation.RESERVE),
        client=client,
    )
    payment = tasks.payment.enqueue(
        PaymentTaskPayload(
            order_id=order.id, user_id=order.user_id, amount=order.total_amount, payment_method=payment_method
        ),
        client=client,
        depends_on=[inventory.ref],
    )
    sms = tasks.sms.enqueue(
        NotificationTaskPayload(user_id=order.user_id, template="order_paid", params={"order_id": order.id}),
        client=client,
        depends_on=[payment.ref],
    )
    address = ShippingAddress(
        recipient=order.user_id,
        phone="+00 000 0000",
        province="-",
        city=city,
        district="-",
        detail="1 Demo Street",
        postal_code="00000",
    )
    shipping = tasks.shipping.enqueue(
        ShippingTaskPayload(order_id=order.id, address=address), client=client, depends_on=[payment.ref]
    )
    timeout = tasks.timeout_check.enqueue(
        OrderRef(order_id=order.id), client=client, delay=timeout_check_s, unique_key=f"timeout:{order.id}"
    )
    return PlacedOrder(order, inventory.id, payment.id, sms.id, shipping.id, timeout.id)


def cancel_order(client: Client, placed: PlacedOrder, reason: str = "customer changed their mind") -> None:
    """Cancel what has not run yet, then roll back the reservation."""
    for task_id in (placed.shipping, placed.sms, placed.payment, placed.inventory, placed.timeout_check):
        client.cancel(task_id, reason=reason)
    tasks.cancel.enqueue(OrderRef(order_id=placed.order.id, reason=reason), client=client)
    tasks.inventory.enqueue(
        InventoryTaskPayload(
            order_id=placed.order.id, items=placed.order.items, operation=InventoryOperation.ROLLBACK
        ),
        client=client,
    )
