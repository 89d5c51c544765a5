"""The shipped Grafana dashboard and Prometheus alert rules work on what a real worker serves:
each rule's expression is evaluated (tests/promql.py) against scrapes of a live ``rediq-worker``
— silent while the queues are healthy, firing for exactly the offending queue or task type once
the guide's thresholds are crossed — and every dashboard query finds series."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from engine import admin
from engine.client import Client, build_task
from engine.errors import Permanent, Retryable
from engine.registry import Registry
from tests.engine.conftest import wait_until_sync
from tests.engine.test_metrics import _answers, free_port, get, isolated_env  # noqa: F401 - a fixture
from tests.promql import Evaluator, Scrape, rule_expressions

ROOT = Path(__file__).resolve().parents[2]
ALERTS = ROOT / "docs" / "prometheus" / "alerts.yml"
DASHBOARD = ROOT / "docs" / "grafana" / "rediq.json"

# The user guide's monitoring table (section 8.3): alert name -> threshold.
GUIDE_THRESHOLDS = {
    "RediqBacklogHigh": 1000,  # rediq_queue_pending > 1000
    "RediqRetriesHigh": 100,  # rediq_queue_retry > 100
    "RediqDeadTasks": 10,  # rediq_queue_dead > 10
    "RediqTaskSlowP99": 5,  # rediq_task_processing_duration P99 > 5 s
    "RediqTaskErrorsHigh": 10,  # rediq_task_error_total growing > 10/min
}
SLOW_S = 5.3  # just over the P99 threshold

dash_app = Registry()
"""Loaded by the worker under test as ``tests.engine.test_dashboards:dash_app``."""


@dash_app.task("quick", queue="dq")
def quick(ctx: Any, payload: Any) -> int:
    return 1


@dash_app.task("flaky", queue="dq", max_retry=5)
def flaky(ctx: Any, payload: Any) -> None:
    raise Retryable("gateway down", delay=600)  # parks in retry for the rest of the test


@dash_app.task("broken", queue="dq", max_retry=0)
def broken(ctx: Any, payload: Any) -> None:
    raise Permanent("broken on purpose")


@dash_app.task("slow", queue="dq")
def slow(ctx: Any, payload: Any) -> int:
    time.sleep(float(payload))
    return 2


@dash_app.task("parked", queue="held")  # no worker serves "held": its backlog only grows
def parked(ctx: Any, payload: Any) -> int:
    return 3


def rules() -> dict[str, str]:
    return dict(rule_expressions(yaml.safe_load(ALERTS.read_text())))


def dashboard_queries() -> list[tuple[str, str, float | None]]:
    """(panel title, query, red threshold or None) of every panel."""
    out = []
    for panel in json.loads(DASHBOARD.read_text())["panels"]:
        steps = panel["fieldConfig"]["defaults"]["thresholds"]["steps"]
        red = [s["value"] for s in steps if s["value"] is not None]
        for target in panel["targets"]:
            out.append((panel["title"], target["expr"], red[0] if red else None))
    return out


def labelled(vector: dict[Any, float]) -> set[tuple[tuple[str, str], ...]]:
    return {tuple(sorted(labels)) for labels in vector}


@pytest.fixture
def worker_metrics(redis_url: str, tmp_path: Path) -> Iterator[str]:
    port = free_port()
    log = open(tmp_path / "worker.log", "wb")  # noqa: SIM115 - closed below
    proc = subprocess.Popen(
        [sys.executable, "-c", "from engine.cli import worker_main; worker_main()"]
        + ["--redis-url", redis_url, "--app", "tests.engine.test_dashboards:dash_app", "--queues", "dq"]
        + ["--metrics-port", str(port), "--concurrency", "8", "--grace", "5"],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until_sync(lambda: _answers(f"{base}/health"), timeout=20)
        yield base
    finally:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(30)
        log.close()
    assert code == 0, (tmp_path / "worker.log").read_text()


def scrape_when(base: str, ready: Any, timeout: float = 20.0) -> Scrape:
    """A scrape in which ``ready(evaluator)`` holds (queue gauges are cached for 2 s)."""
    deadline = time.monotonic() + timeout
    while True:
        at = time.monotonic()
        scrape = Scrape.parse(get(f"{base}/metrics")[1], at)
        if ready(Evaluator(scrape)) or time.monotonic() > deadline:
            return scrape
        time.sleep(0.2)


def depth(ev: Evaluator, state: str, queue: str) -> float:
    return ev.eval(f'max by (queue) (rediq_queue_{state}{{queue="{queue}"}})').get(
        frozenset({("queue", queue)}), -1.0
    )


def test_rules_use_the_guides_thresholds() -> None:
    exprs = rules()
    assert set(exprs) == set(GUIDE_THRESHOLDS)
    for name, threshold in GUIDE_THRESHOLDS.items():
        assert exprs[name].rstrip().endswith(f"> {threshold}"), (name, exprs[name])
    panel_thresholds = {expr: red for _, expr, red in dashboard_queries()}
    for name, expr in exprs.items():  # each alert has a panel drawing its line
        query, _, bound = expr.rpartition(">")
        assert panel_thresholds.get(query.strip()) == float(bound), name


def test_alerts_and_dashboard_against_a_live_worker(
    redis_url: str, client: Client, worker_metrics: str
) -> None:
    base = worker_metrics
    exprs = rules()

    # healthy: one of everything, so every series exists before the window opens
    client.enqueue("quick", 1, queue="dq")
    client.enqueue("flaky", 1, queue="dq", max_retry=5)
    client.enqueue("broken", 1, queue="dq", max_retry=0)
    client.enqueue("slow", 0.01, queue="dq")
    client.enqueue("parked", 1, queue="held")
    wait_until_sync(
        lambda: (
            client.call(admin.count, "dq", "completed") == 2
            and client.call(admin.count, "dq", "retry") == 1
            and client.call(admin.count, "dq", "dead") == 1
        ),
        timeout=20,
    )
    settled = scrape_when(base, lambda ev: depth(ev, "dead", "dq") == 1 and depth(ev, "pending", "held") == 1)
    quiet = scrape_when(base, lambda ev: ev.now.at > settled.at)
    healthy = Evaluator(quiet, settled)
    for name, expr in exprs.items():
        query = expr.rpartition(">")[0]
        assert healthy.eval(query), f"{name}: {query} finds no series in a worker's scrape"
        assert healthy.eval(expr) == {}, f"{name} fires on healthy queues"

    # over every threshold of the guide
    client.enqueue_many([build_task("parked", i, queue="held") for i in range(1001)])
    client.enqueue_many([build_task("flaky", i, queue="dq", max_retry=5) for i in range(101)])
    client.enqueue_many([build_task("broken", i, queue="dq", max_retry=0) for i in range(11)])
    client.enqueue("slow", SLOW_S, queue="dq")
    wait_until_sync(
        lambda: (
            client.call(admin.count, "dq", "completed") == 3
            and client.call(admin.count, "dq", "retry") == 102
            and client.call(admin.count, "dq", "dead") == 12
        ),
        timeout=60,
        interval=0.2,
    )
    loaded = scrape_when(
        base,
        lambda ev: (
            depth(ev, "dead", "dq") == 12
            and depth(ev, "retry", "dq") == 102
            and depth(ev, "pending", "held") == 1002
        ),
    )
    firing = Evaluator(loaded, quiet)
    dq, held = (("queue", "dq"),), (("queue", "held"),)
    assert labelled(firing.eval(exprs["RediqBacklogHigh"])) == {held}
    assert labelled(firing.eval(exprs["RediqRetriesHigh"])) == {dq}
    assert labelled(firing.eval(exprs["RediqDeadTasks"])) == {dq}
    assert labelled(firing.eval(exprs["RediqTaskErrorsHigh"])) == {dq}
    slow_p99 = firing.eval(exprs["RediqTaskSlowP99"])
    assert labelled(slow_p99) == {(("queue", "dq"), ("type", "slow"))}  # not the fast failures
    assert 5 < next(iter(slow_p99.values())) <= 10  # inside the (5, 10] bucket

    for title, query, _ in dashboard_queries():
        values = firing.eval(query)
        assert values and not all(math.isnan(v) for v in values.values()), f"panel {title!r}: {query}"
