from __future__ import annotations

from django.db import models
from django.db.models import F


class OutOfStock(Exception):
    pass


class Stock(models.Model):
    item = models.CharField(max_length=40, unique=True)
    quantity = models.PositiveIntegerField(default=0)

    @classmethod
    def take(cls, item: str, quantity: int) -> None:
        """Take ``quantity`` of ``item`` or raise ``OutOfStock`` (one conditional UPDATE: two
        requests cannot both take the last one)."""
        taken = cls.objects.filter(item=item, quantity__gte=quantity).update(
            quantity=F("quantity") - quantity
        )
        if not taken:
            raise OutOfStock(f"not enough {item} in stock for {quantity}")


class Order(models.Model):
    class Status(models.TextChoices):
        PLACED = "placed"
        CONFIRMED = "confirmed"

    item = models.CharField(max_length=40)
    quantity = models.PositiveIntegerField()
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PLACED)
    confirmed_by_task = models.CharField(max_length=64, blank=True)
