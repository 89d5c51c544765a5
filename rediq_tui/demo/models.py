"""Payloads mirroring the Rediq guide's order structs (section 6.1)."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, Field


class OrderStatus(StrEnum):
    PENDING = "pending"
    RESERVED = "reserved"
    PAID = "paid"
    SHIPPED = "shipped"
    CANCELLED = "cancelled"
    TIMEOUT = "timeout"


class OrderItem(BaseModel):
    product_id: str
    quantity: int = Field(gt=0)
    price: int = Field(ge=0, description="in cents")


class Order(BaseModel):
    id: str
    user_id: str
    items: list[OrderItem]
    total_amount: int = Field(ge=0, description="in cents")
    status: OrderStatus = OrderStatus.PENDING
    created_at: datetime
    updated_at: datetime


class InventoryOperation(StrEnum):
    RESERVE = "reserve"
    COMMIT = "commit"
    ROLLBACK = "rollback"


class InventoryTaskPayload(BaseModel):
    order_id: str
    items: list[OrderItem]
    operation: InventoryOperation


class PaymentTaskPayload(BaseModel):
    order_id: str
    user_id: str
    amount: int = Field(ge=0)
    payment_method: str


class NotificationTaskPayload(BaseModel):
    user_id: str
    template: str
    params: dict[str, Any] = Field(default_factory=dict)


class ShippingAddress(BaseModel):
    recipient: str
    phone: str
    province: str
    city: str
    district: str
    detail: str
    postal_code: str


class ShippingTaskPayload(BaseModel):
    order_id: str
    address: ShippingAddress


class OrderRef(BaseModel):
    order_id: str
    reason: str = ""


class BatchImportPayload(BaseModel):
    source: str
    total: int = Field(gt=0, le=10_000)
