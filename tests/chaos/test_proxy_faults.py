"""Network faults between a producer and Redis (delay, drop, reset, blackhole, lost replies)
while the client retries: exactly one task per enqueue call, because the task id is chosen by
the client and enqueue is idempotent by id. The control retries with a fresh id instead, and
the checker must see the duplicates that creates."""

from __future__ import annotations

import itertools
import threading
import time
import uuid
from collections.abc import Iterator

import pytest
import redis

from engine import connection
from engine.client import Client
from engine.errors import ConnectionFailed
from tests.chaos.conftest import ServerFactory
from tests.chaos.harness import Figure, scaled
from tests.chaos.proxy import FaultProxy, Mode

pytestmark = pytest.mark.chaos

RUN_S = 20.0
SCHEDULE: list[tuple[Mode, float]] = [
    ("pass", 0.0),
    ("delay", 0.05),
    ("lose_replies", 0.0),
    ("pass", 0.0),
    ("delay", 0.5),  # slower than the socket timeout: the client re-sends, the first copy still lands
    ("reset", 0.0),
    ("pass", 0.0),
    ("blackhole", 0.0),
    ("drop", 0.0),
]


@pytest.fixture
def short_timeouts(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(connection, "SOCKET_TIMEOUT_S", 0.3)


@pytest.fixture
def proxy(server_factory: ServerFactory) -> Iterator[tuple[FaultProxy, redis.Redis]]:
    server = server_factory()
    p = FaultProxy(server.port).start()
    r = redis.Redis(port=server.port, decode_responses=True)
    yield p, r
    p.stop()
    r.close()


PRODUCERS = 8


def run_with_faults(p: FaultProxy, r: redis.Redis, fresh_id_on_retry: bool) -> tuple[int, int, int, int]:
    """(enqueue calls made, failed attempts retried, proxy connections, enqueue scripts run
    before the faults began). Several producer threads, each with its own client, so that
    every fault phase catches several calls in flight."""
    clients = [Client(p.url) for _ in range(PRODUCERS)]
    for c in clients:
        c.enqueue("warm", None, queue="warm")
    before = r.info("commandstats")["cmdstat_fcall"]["calls"]
    stop = threading.Event()
    lock = threading.Lock()
    counts = {"calls": 0, "failures": 0}
    limit = scaled(20_000) // PRODUCERS
    rate = limit / (RUN_S * 0.9)  # spread the calls over every phase of the fault schedule
    began = time.monotonic()
    deadline = began + RUN_S

    def flip() -> None:
        for mode, delay in itertools.cycle(SCHEDULE):
            if stop.wait(0.4):
                return
            p.set_mode(mode, delay)

    def produce(client: Client) -> None:
        done = 0
        while time.monotonic() < deadline and done < limit:
            ahead = began + done / rate - time.monotonic()
            if ahead > 0:
                time.sleep(ahead)
            task_id = uuid.uuid4().hex
            done += 1
            with lock:
                counts["calls"] += 1
            while True:
                try:
                    client.enqueue("work", None, queue="net", id=task_id)
                    break
                except ConnectionFailed:
                    with lock:
                        counts["failures"] += 1
                    if fresh_id_on_retry:  # the mistake: a retry that is a new task
                        task_id = uuid.uuid4().hex
                    if time.monotonic() > deadline + 30:
                        raise

    flipper = threading.Thread(target=flip, daemon=True)
    flipper.start()
    threads = [threading.Thread(target=produce, args=(c,)) for c in clients]
    for t in threads:
        t.start()
    for t in threads:
        t.join(90)
    stop.set()
    flipper.join(5)
    p.set_mode("pass")
    for c in clients:
        c.close()
    return counts["calls"], counts["failures"], p.connections, before


def figure(name: str, r: redis.Redis, calls: int, failures: int, conns: int, before: int) -> Figure:
    stored = r.zcard("rediq:{net}:pending")
    created = int(r.get("rediq:{net}:seq") or 0)
    scripts = r.info("commandstats")["cmdstat_fcall"]["calls"] - before
    fig = Figure(
        name,
        calls,
        stored,
        max(0, calls - stored),
        created - calls,
        0.0,
        f"{failures} enqueue attempts failed and were retried by the caller, {scripts} enqueue "
        f"scripts ran on the server for {calls} calls, {conns} connections through the proxy",
    )
    fig.report()
    return fig


def test_exactly_one_task_per_enqueue_call_through_network_faults(
    proxy: tuple[FaultProxy, redis.Redis], short_timeouts: None
) -> None:
    p, r = proxy
    calls, failures, conns, before = run_with_faults(p, r, fresh_id_on_retry=False)
    fig = figure("network faults, retry with the same id", r, calls, failures, conns, before)
    assert calls > 100
    assert fig.lost == 0 and fig.duplicates == 0
    assert r.zcard("rediq:{net}:pending") == calls
    # the faults really made the client send some enqueues more than once
    assert r.info("commandstats")["cmdstat_fcall"]["calls"] - before >= calls + 5


@pytest.fixture
def no_client_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    """For the control: redis-py's own retries re-send with the same id, so a lost reply only
    reaches the caller (who then picks a fresh id) once those are spent, and whether that copy
    had landed is luck. Without them every lost reply surfaces, and the control is certain."""
    monkeypatch.setattr(connection, "RETRIES", 0)


def test_control_retrying_with_a_fresh_id_creates_duplicates(
    proxy: tuple[FaultProxy, redis.Redis], short_timeouts: None, no_client_retries: None
) -> None:
    p, r = proxy
    calls, failures, conns, before = run_with_faults(p, r, fresh_id_on_retry=True)
    fig = figure("control: retry with a fresh id", r, calls, failures, conns, before)
    assert fig.duplicates > 0, "lost replies must turn a fresh-id retry into a second task"
