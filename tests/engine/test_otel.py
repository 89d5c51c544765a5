"""OpenTelemetry across a real worker process: the handler's span is a child of the enqueue's
span (context carried in the task's metadata), every retry is traced under it, and the
handler's own spans nest under the attempt's."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from engine.client import Client
from engine.otel import CARRIER_KEYS, inject_trace_context
from engine.task import Task, TaskState
from tests.engine.conftest import spawn_worker, stop_process, wait_until_sync

exporter = InMemorySpanExporter()


@pytest.fixture(scope="module", autouse=True)
def tracer_provider() -> None:
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    trace.set_tracer_provider(provider)


def spans(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def test_trace_follows_the_task_into_the_worker_and_its_retries(
    redis_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    record = tmp_path / "spans.jsonl"
    monkeypatch.setenv("RECORD_SPANS", str(record))
    tracer = trace.get_tracer("test")
    with Client(redis_url) as client, tracer.start_as_current_span("POST /orders") as request:
        flaky = client.enqueue(inject_trace_context(Task(type="otel:flaky", queue="otel", payload={})))
        ok = client.enqueue(inject_trace_context(Task(type="otel:ok", queue="otel", payload={"a": 1})))
        stored = client.get_task(flaky.id)
        assert stored is not None and set(stored.metadata) == set(CARRIER_KEYS[:1])  # traceparent only
        assert stored.payload == {}  # the context is in the task, never in the payload
    proc = spawn_worker(redis_url, "tests.engine.otel_app:registry", "otel")
    try:
        with Client(redis_url) as client:
            wait_until_sync(
                lambda: all(
                    (t := client.get_task(r.id)) is not None and t.state == TaskState.COMPLETED
                    for r in (flaky, ok)
                ),
                timeout=30,
            )
        wait_until_sync(lambda: len(spans(record)) >= 8, timeout=10)  # 4 attempts + 4 inner spans
    finally:
        stop_process(proc)

    trace_id = f"0x{request.get_span_context().trace_id:032x}"
    sends = [s for s in exporter.get_finished_spans() if s.kind == trace.SpanKind.PRODUCER]
    assert len(sends) == 2 and all(
        s.parent is not None and s.parent.span_id == request.get_span_context().span_id for s in sends
    )
    send_ids = {s.attributes["messaging.message.id"]: f"0x{s.context.span_id:016x}" for s in sends}  # type: ignore[index]

    worker_spans = spans(record)
    assert {s["context"]["trace_id"] for s in worker_spans} == {trace_id}
    attempts = [s for s in worker_spans if s["name"] == "process otel"]
    flaky_attempts = sorted(
        (s for s in attempts if s["attributes"]["messaging.message.id"] == flaky.id),
        key=lambda s: s["attributes"]["rediq.task.attempt"],
    )
    assert [s["attributes"]["rediq.task.attempt"] for s in flaky_attempts] == [1, 2, 3]
    assert [s["attributes"]["rediq.task.outcome"] for s in flaky_attempts] == ["retry", "retry", "completed"]
    assert [s["status"]["status_code"] for s in flaky_attempts] == ["ERROR", "ERROR", "UNSET"]
    for attempt in attempts:
        task_id = attempt["attributes"]["messaging.message.id"]
        assert attempt["kind"] == "SpanKind.CONSUMER"
        assert attempt["parent_id"] == send_ids[task_id]  # child of its enqueue
        assert attempt["links"][0]["context"]["span_id"] == send_ids[task_id]
        assert attempt["attributes"]["messaging.system"] == "rediq"
        assert attempt["attributes"]["messaging.destination.name"] == "otel"
    inner = [s for s in worker_spans if s["name"] in ("charge card", "async work")]
    assert len(inner) == 4
    attempt_ids = {s["context"]["span_id"] for s in attempts}
    assert all(s["parent_id"] in attempt_ids for s in inner)  # sync and async handlers alike


def test_without_a_tracer_nothing_is_added(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(trace, "get_tracer", lambda *a, **k: trace.NoOpTracer())
    task = Task(type="t", queue="q", metadata={"k": "v"})
    assert inject_trace_context(task) is task
