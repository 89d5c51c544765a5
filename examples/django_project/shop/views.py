from __future__ import annotations

from django.db import transaction
from django.http import HttpRequest, JsonResponse
from django.shortcuts import get_object_or_404
from django.views.decorators.http import require_GET, require_POST

from shop.background import enqueue_on_commit
from shop.models import Order, OutOfStock, Stock
from shop.tasks import OrderRef, confirm_order


@require_POST
def place_order(request: HttpRequest) -> JsonResponse:
    """Place an order and confirm it in the background. Out of stock rolls the whole transaction
    back: no order row, and no task (it was to be enqueued on commit)."""
    item = request.POST.get("item", "")
    quantity = request.POST.get("quantity", "1")
    if not item or not quantity.isdigit() or int(quantity) < 1:
        return JsonResponse({"error": "post item=NAME and quantity=N (N >= 1)"}, status=400)
    try:
        with transaction.atomic():
            order = Order.objects.create(item=item, quantity=int(quantity))
            enqueue_on_commit(confirm_order, OrderRef(order_id=order.pk))
            Stock.take(item, int(quantity))
    except OutOfStock as exc:
        return JsonResponse({"error": str(exc)}, status=409)
    return JsonResponse({"order_id": order.pk, "status": order.status}, status=201)


@require_GET
def order_status(request: HttpRequest, order_id: int) -> JsonResponse:
    order = get_object_or_404(Order, pk=order_id)
    return JsonResponse(
        {"order_id": order.pk, "status": order.status, "confirmed_by_task": order.confirmed_by_task}
    )
