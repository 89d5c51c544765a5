"""Batching's pure parts: a batch declaration is checked at import with one line naming the fix
(E018), the batch hash's value, the handler's result spread over its items, and the core reads a
forming batch's wait apart from a rate limit's: it is woken at the due time but still asks the
queue when tasks arrive (the batch may fill first)."""

from __future__ import annotations

from typing import Any

import pytest

from engine.batching import Batch, BatchItem, BatchState
from engine.errors import InvalidBatch
from engine.explain import Reason, explain
from engine.registry import Registry
from engine.worker.batches import _results
from engine.worker.core import Dequeue, Throttled
from engine.worker.protocol import HeldBack, HoldReason, parse_throttle
from engine.worker.runners import Serialised
from tests.pure import test_explain
from tests.pure.test_worker_core import answer, make, requests_of


async def items_handler(ctx: Any, items: list[BatchItem[Any]]) -> None:
    return None


@pytest.mark.parametrize(
    ("batch", "says"),
    [
        (Batch(0, 1.0), "max_size=0 must be a whole number 1..1000"),
        (Batch(1001, 1.0), "max_size=1001"),
        (Batch(2.5, 1.0), "max_size=2.5"),  # type: ignore[arg-type]
        (Batch(True, 1.0), "max_size=True"),
        (Batch(10, 0), "max_delay=0 must be seconds > 0"),
        (Batch(10, -1.0), "max_delay=-1.0"),
        (Batch(10, 7200), "at most 3600"),
        (Batch(10, "2s"), "max_delay='2s'"),  # type: ignore[arg-type]
    ],
)
def test_a_bad_batch_is_one_line_naming_the_fix(batch: Batch, says: str) -> None:
    with pytest.raises(InvalidBatch) as caught:
        Registry().task("notify", batch=batch)
    line = str(caught.value)
    assert line.startswith("E018: task type 'notify': batch ") and says in line, line
    assert "\n" not in line and "Declare Batch(max_size=1..1000" in line


def test_a_batch_handler_must_take_a_list() -> None:
    registry = Registry()

    async def one_payload(ctx: Any, payload: dict[str, Any]) -> None:
        return None

    async def no_items(ctx: Any) -> None:
        return None

    with pytest.raises(InvalidBatch, match=r"^E018: batch handler 'a' declares items: dict.*list\[BatchItem"):
        registry.task("a", batch=Batch(5, 1.0))(one_payload)
    with pytest.raises(InvalidBatch, match=r"takes 1 argument\(s\), not \(ctx, items\)"):
        registry.task("b", batch=Batch(5, 1.0))(no_items)  # type: ignore[arg-type]
    registry.task("c", batch=Batch(5, 1.0))(items_handler)  # a list: fine
    registry.task("d", batch=Batch(5, 1.0))(lambda ctx, items: None)  # unannotated: fine
    assert registry.batches == {("default", "c"): Batch(5, 1.0), ("default", "d"): Batch(5, 1.0)}
    assert Batch(500, 2.0).field == "500:2000"


def test_a_batch_type_and_a_rate_or_group_limit_do_not_share_a_queue() -> None:
    registry = Registry()
    registry.rate_limit("limited", "5/s")
    with pytest.raises(InvalidBatch, match=r"^E018: batch type 'n': queue 'limited' has a rate or group"):
        registry.task("n", queue="limited", batch=Batch(5, 1.0))
    registry.task("m", queue="batched", batch=Batch(5, 1.0))(items_handler)
    with pytest.raises(InvalidBatch, match="holds batch type 'm': a rate limit would not hold"):
        registry.rate_limit("batched", "5/s")
    with pytest.raises(InvalidBatch, match="a concurrency group limit would not hold"):
        registry.group_limit("batched", 2)


def test_a_handlers_result_is_spread_over_its_items() -> None:
    assert _results(["x", "y"], ["a", "b"]) == {"a": "x", "b": "y"}
    assert _results({"b": 1}, ["a", "b"]) == {"b": 1}
    assert _results(None, ["a", "b"]) == {}
    assert _results(["only one"], ["a", "b"]) == {}  # neither per item nor None: dropped
    assert _results({"z": 1}, ["a"]) == {}
    assert _results(Serialised('["x",{"k":1}]'), ["a", "b"]) == {"a": "x", "b": {"k": 1}}  # a child's


def test_a_forming_batch_wait_is_read_apart_from_a_rate_limit() -> None:
    assert parse_throttle([[1, 40, "batch"]]) == HeldBack(40, HoldReason.BATCH_FORMING)
    assert parse_throttle([[1, 40, b"batch"]]) == HeldBack(40, HoldReason.BATCH_FORMING)
    assert parse_throttle([[1, 40]]) == HeldBack(40, HoldReason.QUEUE_LIMIT)
    assert parse_throttle([[1, 40, 1]]) == HeldBack(40, HoldReason.TYPE_LIMITS)
    assert parse_throttle([1]) is None


def test_a_queue_whose_batch_forms_is_still_asked_when_tasks_arrive() -> None:
    c = make(queues=("batched",))
    first = c.next_exchange()
    assert first is not None
    effects = answer(c, first, dequeue=[[0, 1500, "batch"]])
    assert Throttled("batched", 1500, True) in effects  # the driver wakes it at the due time
    c.on_work_arrived()  # a task arrived: the batch may be full now
    again = c.next_exchange()
    assert [d.queue for d in requests_of(again, Dequeue)] == ["batched"]


@pytest.mark.parametrize(
    ("waiting", "due_in_ms", "blocked", "text"),
    [
        (3, 1200, True, "batch notify: 3/500, ready in 1.2 s"),
        (500, 1200, False, None),  # full: it goes at the next dequeue
        (3, 0, False, None),  # due: likewise
    ],
)
def test_why_names_a_forming_batch(waiting: int, due_in_ms: int, blocked: bool, text: str | None) -> None:
    state = BatchState("notify", None, Batch(500, 2.0), waiting, due_in_ms)
    explanation = explain(test_explain.facts("q", batch=state))
    texts = [c.text for c in explanation.causes if c.reason is Reason.BATCH_FORMING]
    assert texts == ([text] if text else [])
    assert explanation.blocked is blocked
    assert str(BatchState("n", "c42", Batch(5, 1.0), 5, 0)) == "batch n (group c42): 5/5, ready now"
