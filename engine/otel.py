"""OpenTelemetry tracing (extra ``rediq[otel]``; only ``opentelemetry-api`` at run time).

The trace context of the code that enqueues a task travels with the task, in its metadata
(``traceparent``/``tracestate``: W3C Trace Context), never in the payload. Each attempt of the
handler runs in a CONSUMER span that is a child of the PRODUCER span of the enqueue, so a
trace shows the request, its enqueue and every attempt of the task, retries included (each
attempt's span also links to the producer span and says which attempt it was). The context
rides in the task hash the worker already reads: no extra round trip.

    from engine.otel import TracingMiddleware, inject_trace_context

    registry.before_enqueue(inject_trace_context)   # producer side
    registry.add_middleware(TracingMiddleware())    # worker side

Attribute names follow the OpenTelemetry messaging semantic conventions.
"""

from __future__ import annotations

import contextvars
from collections.abc import Mapping
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.trace import Link, Span, SpanKind, Status, StatusCode

from engine.task import Task

TRACER_NAME = "rediq"
SYSTEM = "rediq"
CARRIER_KEYS = ("traceparent", "tracestate")
"""The metadata keys that carry the context (W3C Trace Context)."""

_current: contextvars.ContextVar[tuple[Span, object] | None] = contextvars.ContextVar(
    "rediq_otel_span", default=None
)


def _tracer() -> trace.Tracer:
    return trace.get_tracer(TRACER_NAME)


def inject_trace_context(task: Task) -> Task:
    """A before-enqueue hook: a PRODUCER span for the enqueue, and its context in the task's
    metadata (only what the propagators write: ``traceparent``, ``tracestate``)."""
    attributes = {
        "messaging.system": SYSTEM,
        "messaging.operation.type": "send",
        "messaging.operation.name": "enqueue",
        "messaging.destination.name": task.queue,
        "messaging.message.id": task.id,
        "rediq.task.type": task.type,
    }
    with _tracer().start_as_current_span(f"send {task.queue}", kind=SpanKind.PRODUCER, attributes=attributes):
        carrier: dict[str, str] = {}
        propagate.inject(carrier)
    if not carrier:
        return task  # no tracer configured: nothing to carry
    return task.model_copy(update={"metadata": {**task.metadata, **carrier}})


def extract(metadata: Mapping[str, str]) -> otel_context.Context:
    """The enqueueing code's context, from a task's metadata."""
    return propagate.extract({k: v for k, v in metadata.items() if k in CARRIER_KEYS})


class TracingMiddleware:
    """Worker middleware: each attempt runs in a CONSUMER span, child of the enqueue's span.
    The span is current while the handler runs (async handlers, and sync ones: the worker
    copies the context into the handler's thread), so the handler's own spans nest under it."""

    def before(self, ctx: Any) -> None:
        parent = extract(ctx.metadata)
        producer = trace.get_current_span(parent).get_span_context()
        links = [Link(producer)] if producer.is_valid else []
        span = _tracer().start_span(
            f"process {ctx.queue}",
            context=parent,
            kind=SpanKind.CONSUMER,
            links=links,
            attributes={
                "messaging.system": SYSTEM,
                "messaging.operation.type": "process",
                "messaging.operation.name": "process",
                "messaging.destination.name": ctx.queue,
                "messaging.message.id": ctx.id,
                "messaging.consumer.group.name": ctx.queue,
                "rediq.task.type": ctx.type,
                "rediq.task.attempt": ctx.attempt,
                "rediq.worker.id": ctx.worker_id,
            },
        )
        token = otel_context.attach(trace.set_span_in_context(span, parent))
        _current.set((span, token))

    def after(self, ctx: Any, outcome: str, error: BaseException | None) -> None:
        current = _current.get()
        if current is None:
            return
        span, token = current
        _current.set(None)
        span.set_attribute("rediq.task.outcome", str(outcome))
        if error is not None and outcome != "completed":
            span.record_exception(error)
        if outcome != "completed":
            span.set_status(Status(StatusCode.ERROR, str(outcome)))
        span.end()
        otel_context.detach(token)  # type: ignore[arg-type]


__all__ = ["CARRIER_KEYS", "TracingMiddleware", "extract", "inject_trace_context"]
