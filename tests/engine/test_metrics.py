"""Prometheus metrics and /health: scraped live from a real ``rediq-worker`` process and parsed
with prometheus_client's own parser; label values stay bounded."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from engine import admin, inspect
from engine.client import Client
from engine.config import RediqConfig
from engine.errors import ConnectionFailed, Permanent
from engine.metrics import OTHER, LabelPolicy, MetricsServer, WorkerMetrics
from engine.registry import Registry
from engine.worker import Outcome, TaskOutcome
from tests.engine.conftest import wait_until_sync

ROOT = Path(__file__).resolve().parents[2]

metrics_app = Registry()
"""Loaded by the worker under test as ``tests.engine.test_metrics:metrics_app``."""


@metrics_app.task("quick", queue="mq")
def quick(ctx: Any, payload: Any) -> int:
    return 1


@metrics_app.task("slow", queue="mq")
def slow(ctx: Any, payload: Any) -> int:
    time.sleep(float(payload))
    return 2


@metrics_app.task("broken", queue="mq", max_retry=0)
def broken(ctx: Any, payload: Any) -> None:
    raise Permanent("broken on purpose")


@pytest.fixture(autouse=True)
def isolated_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Subprocesses see no real config file, .env or data directory."""
    for name in RediqConfig.model_fields:
        monkeypatch.delenv(name.upper(), raising=False)
    monkeypatch.setenv("REDIQ_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("REDIQ_CONFIG", str(tmp_path / "none.toml"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return int(response.status), response.read().decode()
    except urllib.error.HTTPError as err:
        return int(err.code), err.read().decode()


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of an exposition as {(name, sorted labels): value}."""
    out = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = float(sample.value)
    return out


def value(parsed: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str, **labels: str) -> float:
    return parsed.get((name, tuple(sorted(labels.items()))), 0.0)


def test_label_policy_maps_unknown_values_to_other() -> None:
    policy = LabelPolicy({"quick"}, {"mq"})
    assert policy.task_type("quick") == "quick"
    assert policy.task_type("x" * 500) == OTHER
    assert policy.queue("mq") == "mq"
    assert policy.queue("elsewhere") == OTHER


def test_live_worker_serves_metrics_and_health(redis_url: str, client: Client, tmp_path: Path) -> None:
    port = free_port()
    log = open(tmp_path / "worker.log", "wb")  # noqa: SIM115 - closed below
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(
        [sys.executable, "-c", "from engine.cli import worker_main; worker_main()"]
        + ["--redis-url", redis_url, "--app", "tests.engine.test_metrics:metrics_app", "--queues", "mq,mq2"]
        + ["--metrics-port", str(port), "--concurrency", "4", "--grace", "5"]
        # junk types go dead at once (by default they wait an hour for a worker that knows them)
        + ["--unknown-type-timeout", "0"],
        cwd=tmp_path,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until_sync(lambda: _answers(f"{base}/health"), timeout=20)
        code, body = get(f"{base}/health")
        assert code == 200
        assert json.loads(body) == {"status": "ok", "redis_connected": True, "queues": ["mq", "mq2"]}

        for i in range(4):
            client.enqueue("quick", i, queue="mq")
        client.enqueue("broken", 1, queue="mq", max_retry=0)
        for i in range(3):  # junk types, and a queue the worker does not know, must not add series
            client.enqueue(f"junk-{i}", i, queue="mq", max_retry=0)
        client.enqueue("quick", 1, queue="unserved")
        client.enqueue("slow", 3, queue="mq")

        def settled() -> bool:
            return (
                client.call(admin.count, "mq", "completed") == 4
                and client.call(admin.count, "mq", "dead") == 4
                and client.call(admin.count, "mq", "active") == 1
            )

        wait_until_sync(settled, timeout=20)
        time.sleep(2.1)  # the queue gauges are cached for 2 s
        code, text = get(f"{base}/metrics")
        assert code == 200
        parsed = samples(text)

        assert value(parsed, "rediq_task_processed_total", queue="mq", type="quick") == 4
        assert value(parsed, "rediq_task_failed_total", queue="mq", type="broken") == 1
        assert value(parsed, "rediq_worker_overdue_slots") == 0  # the worker's own figures are served
        assert value(parsed, "rediq_task_error_total", queue="mq", type="broken", outcome="dead") == 1
        assert value(parsed, "rediq_task_processing_duration_count", queue="mq", type="quick") == 4
        assert value(parsed, "rediq_worker_in_flight") == 1
        assert value(parsed, "rediq_queue_pending", queue="other") == 1  # the unserved queue
        assert value(parsed, "rediq_queue_dead", queue="mq") == 4
        assert value(parsed, "rediq_queue_active", queue="mq") == 1
        assert ("rediq_queue_retry", (("queue", "mq"),)) in parsed
        assert value(parsed, "rediq_redis_up") == 1
        type_labels = {dict(labels).get("type") for _, labels in parsed if dict(labels).get("type")}
        assert type_labels <= {"quick", "slow", "broken", OTHER}
        queue_labels = {dict(labels).get("queue") for _, labels in parsed if dict(labels).get("queue")}
        assert queue_labels <= {"mq", "mq2", OTHER}

        assert get(f"{base}/nothing")[0] == 404
        assert not _answers_on(_non_loopback_address(), port)
    finally:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(30)
        log.close()
    assert code == 0, (tmp_path / "worker.log").read_text()
    assert "serving http://127.0.0.1:" in (tmp_path / "worker.log").read_text()


def test_health_reports_redis_down_with_503() -> None:
    def unreachable() -> list[inspect.QueueSummary]:
        raise ConnectionFailed("cannot reach Redis: refused")

    metrics = WorkerMetrics(LabelPolicy({"quick"}, {"mq"}), unreachable, served_queues=["mq"])
    server = MetricsServer(metrics, "127.0.0.1", 0).start()
    try:
        host, port = server.address
        code, body = get(f"http://{host}:{port}/health")
        assert code == 503
        assert json.loads(body) == {"status": "degraded", "redis_connected": False, "queues": ["mq"]}
        parsed = samples(get(f"http://{host}:{port}/metrics")[1])
        assert value(parsed, "rediq_redis_up") == 0
    finally:
        server.stop()


def test_observe_counts_outcomes_by_bounded_labels() -> None:
    metrics = WorkerMetrics(LabelPolicy({"quick"}, {"mq"}), lambda: [], served_queues=["mq"])
    for outcome in ("completed", "retry", "timeout", "dead", "stale", "cancelled"):
        metrics.observe(TaskOutcome("id", "mq", "quick", Outcome(outcome), 0.5, 1))
    metrics.observe(TaskOutcome("id", "evil-queue", "evil-type", Outcome.COMPLETED, 0.1, 1))
    parsed = samples(metrics.exposition().decode())
    assert value(parsed, "rediq_task_processed_total", queue="mq", type="quick") == 1
    assert value(parsed, "rediq_task_processed_total", queue=OTHER, type=OTHER) == 1
    assert value(parsed, "rediq_task_error_total", queue="mq", type="quick", outcome="retry") == 1
    assert value(parsed, "rediq_task_error_total", queue="mq", type="quick", outcome="timeout") == 1
    assert value(parsed, "rediq_task_failed_total", queue="mq", type="quick") == 1
    assert value(parsed, "rediq_task_processing_duration_count", queue="mq", type="quick") == 4


def test_metrics_port_in_use_is_one_line_error(redis_url: str, tmp_path: Path) -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        result = subprocess.run(
            [sys.executable, "-m", "engine.cli", "--redis-url", redis_url, "worker", "run"]
            + ["--app", "tests.engine.test_metrics:metrics_app", "--metrics-port", str(port)],
            cwd=tmp_path,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert result.returncode == 13
    assert result.stderr.strip().startswith("E012: cannot serve metrics on 127.0.0.1:")
    assert "Traceback" not in result.stderr


def _answers(url: str) -> bool:
    try:
        return get(url)[0] in (200, 503)
    except OSError:
        return False


def _non_loopback_address() -> str | None:
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.connect(("10.255.255.255", 1))  # no packet is sent; this picks the outward interface
            address = str(s.getsockname()[0])
    except OSError:
        return None
    return None if address.startswith("127.") else address


def _answers_on(address: str | None, port: int) -> bool:
    if address is None:  # no non-loopback interface: nothing can reach the endpoint from outside
        return False
    with socket.socket() as s:
        s.settimeout(1)
        return s.connect_ex((address, port)) == 0
