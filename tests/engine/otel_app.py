"""A worker app with tracing, for tests/engine/test_otel.py: its spans go as JSON lines to the
file named by RECORD_SPANS (the SDK's in-memory exporter lives in one process only)."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from typing import Any

from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult

from engine.errors import Retryable
from engine.otel import TracingMiddleware
from engine.registry import Registry
from engine.retry import Fixed
from engine.worker import TaskContext


class JsonLinesExporter(SpanExporter):
    def __init__(self, path: str) -> None:
        self.path = path

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        with open(self.path, "a") as out:
            for span in spans:
                out.write(span.to_json(indent=None) + "\n")
        return SpanExportResult.SUCCESS


provider = TracerProvider()
provider.add_span_processor(SimpleSpanProcessor(JsonLinesExporter(os.environ["RECORD_SPANS"])))
trace.set_tracer_provider(provider)

registry = Registry()
registry.add_middleware(TracingMiddleware())
tracer = trace.get_tracer("otel_app")


@registry.task("otel:flaky", queue="otel", retry=Fixed(0.05))
def flaky(ctx: TaskContext, payload: Any) -> str:
    with tracer.start_as_current_span("charge card"):  # a sync handler's own span nests
        if ctx.attempt < 3:
            raise Retryable("gateway timeout")
    return "ok"


@registry.task("otel:ok", queue="otel")
async def ok(ctx: TaskContext, payload: Any) -> str:
    with tracer.start_as_current_span("async work"):
        return json.dumps(payload)
