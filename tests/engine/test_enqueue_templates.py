"""The common single enqueue sent from a template (engine/enqueue_templates.py): the call it
sends is the full route's but for the id, it is made once per type and queue, and anything the
template was not made from sends the call the full route."""

from __future__ import annotations

import time
from typing import Any

import pytest
import redis
from hypothesis import given, settings
from hypothesis import strategies as st

from engine import enqueue_templates, ops
from engine.backend import Call
from engine.client import Client
from engine.declarations import Declaration, Declarations
from engine.enqueue_templates import EnqueueTemplates
from engine.errors import InvalidTask, PayloadError, PayloadTooLarge
from engine.ops import QueueRegistrations, Settings
from engine.task import Task


def _cached(local: dict[str, Declaration] | None = None) -> Declarations:
    """Declarations read just now: resolving a task needs no read."""
    return Declarations(
        local=local or {}, version="", checked_at=time.monotonic(), miss_refresh_s=float("inf")
    )


def _registered(*queues: str) -> QueueRegistrations:
    registrations = QueueRegistrations(refresh_s=3600)
    registrations.done(list(queues))
    return registrations


def _full_route(
    settings_: Settings, declarations: Declarations, task_type: str, payload: Any, options: dict[str, Any]
) -> Call:
    task = ops.build_task(task_type, payload, **options)
    registrations = _registered(*QUEUES)
    request = next(ops.enqueue_one(settings_, task, declarations, registrations=registrations))
    assert isinstance(request, Call)  # one script call: the short full route
    return request


def _without_id(call: Call) -> tuple[Any, ...]:
    args = list(call.args)
    assert len(args[4]) == 32  # the task id follows the queue's four leading arguments
    del args[4]
    return (call.script, tuple(call.keys), tuple(args))


QUEUES = ("default", "mail", "q.x", "other")

declarations_ = st.builds(
    Declaration,
    task_type=st.just("t"),
    queue=st.sampled_from(["default", "mail", "q.x"]),
    priority=st.integers(0, 100),
    max_retry=st.integers(0, 20),
    timeout=st.floats(0.5, 3600, allow_nan=False),
    keep_result=st.none() | st.floats(0, 10_000, allow_nan=False),
    expires=st.none() | st.floats(1, 10_000, allow_nan=False),
)


@settings(max_examples=200, deadline=None)
@given(
    declaration=st.none() | declarations_,
    queue=st.none() | st.sampled_from(["default", "mail", "other"]),
    payload=st.none() | st.dictionaries(st.text(max_size=5), st.integers() | st.text(max_size=5), max_size=3),
    events=st.booleans(),
)
def test_a_template_sends_what_the_full_route_sends_but_for_the_id(
    declaration: Declaration | None, queue: str | None, payload: Any, events: bool
) -> None:
    s = Settings(events=events)
    declarations = _cached({"t": declaration} if declaration else {})
    options = {} if queue is None else {"queue": queue}
    full = _full_route(s, declarations, "t", payload, options)
    made = EnqueueTemplates().call(s, declarations, _registered(*QUEUES), "t", payload, options)
    assert made is not None
    call, made_queue = made
    assert made_queue == _queue_of(full)
    assert _without_id(call) == _without_id(full)


def _queue_of(call: Call) -> str:
    base = str(call.args[0])  # 'rediq:{<queue>}:'
    return base[base.index("{") + 1 : base.rindex("}")]


def test_one_template_per_type_and_queue_and_a_fresh_id_each_call(monkeypatch: pytest.MonkeyPatch) -> None:
    built: list[str] = []
    build_task = ops.build_task

    def counting(task_type: Any, payload: Any = None, **options: Any) -> Task:
        built.append(task_type)
        return build_task(task_type, payload, **options)

    monkeypatch.setattr(enqueue_templates, "build_task", counting)
    templates, s, declarations = EnqueueTemplates(), Settings(), _cached()
    registrations = _registered("default", "q")
    ids = set()
    for n in range(3):
        for options in ({}, {"queue": "q"}):
            made = templates.call(s, declarations, registrations, "t", {"n": n}, options)
            assert made is not None
            ids.add(made[0].args[4])
            assert made[0].args[6] == f'{{"n":{n}}}'
    assert built == ["t", "t"]  # made once for the default queue, once for 'q'
    assert len(ids) == 6


def test_a_changed_declaration_makes_a_new_template() -> None:
    templates, s, registrations = EnqueueTemplates(), Settings(), _registered("mail")
    declarations = _cached({"t": Declaration("t", queue="mail", priority=7)})
    first = templates.call(s, declarations, registrations, "t", {}, {})
    assert first is not None and first[0].args[7] == 7
    declarations.local = {"t": Declaration("t", queue="mail", priority=3)}  # e.g. a refresh read
    second = templates.call(s, declarations, registrations, "t", {}, {})
    assert second is not None and second[0].args[7] == 3


@pytest.mark.parametrize(
    ("options", "why"),
    [
        ({"priority": 3}, "an option besides queue"),
        ({"queue": None}, "a queue that is not a name"),
        ({"queue": 5}, "a queue that is not a name"),
    ],
)
def test_calls_with_more_than_a_queue_take_the_full_route(options: dict[str, Any], why: str) -> None:
    made = EnqueueTemplates().call(Settings(), _cached(), _registered("default"), "t", {}, options)
    assert made is None, why


def test_what_the_template_was_not_made_from_takes_the_full_route() -> None:
    templates, s = EnqueueTemplates(), Settings()
    # the queue not registered lately: the full route sends its SADD
    assert templates.call(s, _cached(), QueueRegistrations(), "t", {}, {}) is None
    # declarations due for a read
    assert templates.call(s, Declarations(), _registered("default"), "t", {}, {}) is None
    # a declared unique key: a digest of each payload
    unique = _cached({"t": Declaration("t", unique_ttl=60.0)})
    assert templates.call(s, unique, _registered("default"), "t", {}, {}) is None
    # a Task rather than a type
    assert templates.call(s, _cached(), _registered("default"), Task(type="t"), None, {}) is None


def test_a_template_checks_every_payload() -> None:
    templates, s = EnqueueTemplates(), Settings(max_payload_bytes=100)
    declarations, registrations = _cached(), _registered("default")
    assert templates.call(s, declarations, registrations, "t", {"small": 1}, {}) is not None
    with pytest.raises(PayloadTooLarge, match="above the limit of 100"):
        templates.call(s, declarations, registrations, "t", {"big": "x" * 200}, {})
    with pytest.raises(PayloadError, match="not JSON"):
        templates.call(s, declarations, registrations, "t", {"bad": object()}, {})
    with pytest.raises(PayloadError, match="not valid Unicode"):
        templates.call(s, declarations, registrations, "t", {"bad": "\ud800"}, {})


def test_a_refused_type_or_queue_raises_as_on_the_full_route() -> None:
    templates, s, registrations = EnqueueTemplates(), Settings(), _registered("default")
    with pytest.raises(InvalidTask, match="type must be"):
        templates.call(s, _cached(), registrations, "has space", {}, {})
    with pytest.raises(InvalidTask, match="queue"):
        templates.call(s, _cached(), registrations, "t", {}, {"queue": "bad queue"})
    strict = Declarations(version="", checked_at=time.monotonic(), miss_refresh_s=float("inf"), strict=True)
    with pytest.raises(InvalidTask, match="declared nowhere"):
        templates.call(s, strict, registrations, "t", {}, {})


def test_the_templated_enqueue_stores_the_declared_task(redis_url: str, raw: redis.Redis) -> None:
    from engine.registry import Registry

    registry = Registry()

    @registry.task("mail:send", queue="mail", priority=9, max_retry=2, timeout=30)
    async def send(ctx: Any, payload: Any) -> None:
        pass

    before_fcalls = 0
    with Client(redis_url, registry=registry) as client:
        client.enqueue("mail:send", {"n": 0})  # registers the queue: the full route
        stats: dict[str, Any] = raw.info("commandstats")
        before_fcalls = int(stats.get("cmdstat_fcall", {}).get("calls", 0))
        result = client.enqueue("mail:send", {"n": 1})
        assert client.templates._by_type  # the second call was made from the template
        stats = raw.info("commandstats")
        assert int(stats.get("cmdstat_fcall", {}).get("calls", 0)) == before_fcalls + 1
    assert (result.queue, result.state, result.status) == ("mail", "pending", "new")
    stored = raw.hgetall(f"rediq:{{mail}}:t:{result.id}")
    assert stored["payload"] == '{"n":1}'
    assert (stored["priority"], stored["max_retry"], stored["timeout"]) == ("9", "2", "30000")
    again = Client(redis_url, registry=registry)
    try:  # the same id twice: 'exists', as on the full route
        dup = again.enqueue("mail:send", {"n": 1}, id=result.id)
        assert (dup.status, dup.id) == ("exists", result.id)
    finally:
        again.close()


def test_a_hook_sends_every_call_the_full_route(redis_url: str) -> None:
    seen: list[str] = []

    def hook(task: Task) -> Task:
        seen.append(task.id)
        return task.model_copy(update={"metadata": {"traced": "1"}})

    with Client(redis_url, before_enqueue=[hook]) as client:
        first = client.enqueue("t", {}, queue="q")
        second = client.enqueue("t", {}, queue="q")
        assert seen == [first.id, second.id]
        assert not client.templates._by_type
        info = client.get_task(second.id, "q")
        assert info is not None and info.metadata == {"traced": "1"}


async def test_the_async_client_enqueues_from_a_template(redis_url: str, raw: redis.Redis) -> None:
    from engine.client import AsyncClient

    client = AsyncClient(redis_url)
    try:
        await client.enqueue("t", {"n": 0}, queue="q")
        result = await client.enqueue("t", {"n": 1}, queue="q")
        assert client.templates._by_type
        assert result.queue == "q" and result.status == "new"
        assert raw.hget(f"rediq:{{q}}:t:{result.id}", "payload") == '{"n":1}'
    finally:
        await client.close()


def test_a_typed_handle_enqueues_from_its_clients_template(redis_url: str, raw: redis.Redis) -> None:
    from pydantic import BaseModel

    from engine.registry import Registry

    class Payment(BaseModel):
        order: str

    registry = Registry()

    @registry.task("pay", queue="money", priority=4, max_retry=1)
    async def pay(ctx: Any, payload: Payment) -> None:
        pass

    with Client(redis_url, registry=registry) as client:
        pay.enqueue(Payment(order="o-0"))  # registers the queue: the full route
        plain = pay.enqueue(Payment(order="o-1"))
        assert list(client.templates._by_type) == [("pay", None)]
        with_options = pay.enqueue(Payment(order="o-2"), priority=9)
    stored = raw.hgetall(f"rediq:{{money}}:t:{plain.id}")
    assert (plain.queue, stored["priority"], stored["max_retry"]) == ("money", "4", "1")
    assert stored["payload"] == '{"order":"o-1"}'
    assert raw.hget(f"rediq:{{money}}:t:{with_options.id}", "priority") == "9"
    # a client that does not apply this registry's declaration gets the task the handle made
    with Client(redis_url) as other:
        elsewhere = pay.enqueue(Payment(order="o-3"), client=other)
        assert not other.templates._by_type
    assert raw.hget(f"rediq:{{money}}:t:{elsewhere.id}", "priority") == "4"
