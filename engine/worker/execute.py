"""Running one task: its handler under its timeout (async in the loop, sync in a thread or a
child process), middleware around it, and the outcome reported to the core."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from engine.errors import Permanent, RateLimited, Retryable
from engine.flow import MAX_PAUSE_S
from engine.registry import TaskDef
from engine.worker import runners
from engine.worker.context import TaskContext, TaskOutcome
from engine.worker.messages import FailMode, HandlerDone, Outcome
from engine.worker.protocol import Job
from engine.worker.runners import result_json as result_json_of

if TYPE_CHECKING:  # the driver imports this module
    from engine.worker.driver import Worker

log = logging.getLogger("rediq.worker")

RUNTIME_SAMPLES = 200  # per task type, for the p50/p95 of the backlog forecast
_describe = runners.describe


async def run_task(worker: Worker, job: Job, ctx: TaskContext) -> None:
    """Run one started task's handler under its timeout and report how it ended to the core."""
    started = time.monotonic()
    definition = worker.registry.get(job.type)
    outcome, error, result_json = Outcome.COMPLETED, "", ""
    exc_for_after: BaseException | None = None
    mode, delay, trace = FailMode.RETRY, 0.0, ""
    # one timer for the worker's earliest deadline, not one per task (engine.deadlines)
    deadline = worker.deadlines.start(job.timeout_s)
    try:
        if definition is None:
            _defer_unknown(worker, job)
            return
        payload = decode_payload(job, definition)
        if worker.registry.middleware:
            await _middleware(worker, "before", ctx)
        async with deadline:
            if definition.is_async:
                result = await definition.handler(ctx, payload)
            else:
                # a thread or a child process; given up (deadline, cancel), it keeps the
                # slot until it returns
                result = await worker._runner.call(
                    definition.handler, ctx, payload, ctx.progress, deadline, job.timeout_s
                )
        result_json = result_json_of(result)
    except TimeoutError as exc:
        exc_for_after = exc
        if deadline.expired():  # the worker's deadline, not a TimeoutError the handler raised
            outcome, error = Outcome.TIMEOUT, f"E004: timed out after {job.timeout_s:g} s"
        else:
            outcome, error, trace = Outcome.RETRY, _describe(exc), runners.handler_traceback(exc)
        delay = definition.retry.delay(job.attempt) if definition else 0.0
    except asyncio.CancelledError as exc:
        exc_for_after = exc
        if ctx.cancelled:
            outcome, error, mode = Outcome.CANCELLED, "cancelled while running", FailMode.CANCEL
        elif deadline.expired() and not worker.core.stopping:  # a cancel that raced the deadline
            outcome, error = Outcome.TIMEOUT, f"E004: timed out after {job.timeout_s:g} s"
            delay = definition.retry.delay(job.attempt) if definition else 0.0
        else:  # lease lost or shutdown: someone else owns the outcome now
            outcome = Outcome.STALE
    except Permanent as exc:
        outcome, error, mode, exc_for_after = Outcome.DEAD, _describe(exc), FailMode.PERMANENT, exc
        trace = runners.handler_traceback(exc)
    except RateLimited as exc:  # the remote side's limit: back uncharged, the bucket paused
        outcome, error, exc_for_after = Outcome.RATE_LIMITED, _describe(exc), exc
        retry_after = exc.retry_after
        if not (isinstance(retry_after, int | float) and 0 < retry_after <= MAX_PAUSE_S):
            log.warning(
                "task %s: RateLimited(retry_after=%r) out of 0..%g s; pausing 1 s",
                job.id,
                retry_after,
                MAX_PAUSE_S,
            )
            retry_after = 1.0
        delay = float(retry_after)
    except Retryable as exc:
        outcome, error, exc_for_after = Outcome.RETRY, _describe(exc), exc
        delay = (
            exc.delay
            if exc.delay is not None
            else (definition.retry.delay(job.attempt) if definition else 1.0)
        )
        trace = runners.handler_traceback(exc)
    except Exception as exc:  # noqa: BLE001 - any handler error is the task's outcome
        outcome, error, exc_for_after = Outcome.RETRY, _describe(exc), exc
        delay = definition.retry.delay(job.attempt) if definition else 1.0
        trace = runners.handler_traceback(exc)
    finally:
        # only this delivery's entry: a newer delivery of the task may run here by now
        if (entry := worker._running.get(job.id)) is not None and entry[0] is job:
            del worker._running[job.id]
    outcome = worker.core.on_outcome(HandlerDone(job, outcome, result_json, error, trace, delay, mode))
    if (
        outcome is Outcome.COMPLETED
        and len(samples := worker._runtimes[(job.queue, job.type)]) < RUNTIME_SAMPLES
    ):
        samples.append(int((time.monotonic() - started) * 1000))
    worker._wake.set()  # the exchange loop acks this and starts the next reserved task
    if worker.registry.middleware:
        await _middleware(worker, "after", ctx, outcome, exc_for_after)
    if not worker._listeners:
        return
    report = TaskOutcome(
        job.id, job.queue, job.type, outcome, time.monotonic() - started, job.attempt, error or None
    )
    for listener in worker._listeners:
        try:
            listener(report)
        except Exception:  # noqa: BLE001 - a broken listener must not break the worker
            log.exception("task outcome listener failed")


def decode_payload(job: Job, definition: TaskDef) -> Any:
    try:
        payload = json.loads(job.payload_raw) if job.payload_raw else None
    except ValueError as exc:
        raise Permanent(f"E002: payload is not valid JSON: {exc}") from None
    if definition.payload_model is not None:
        try:
            return definition.payload_model.model_validate(payload)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first.get("loc", ())) or "payload"
            raise Permanent(f"E002: payload failed validation: {where}: {first.get('msg')}") from None
    return payload


def _defer_unknown(worker: Worker, job: Job) -> None:
    """No handler here for this type (a rolling deploy): back uncharged for a worker that
    has one, sent with the next exchange like a failure; dead only after the time limit."""
    known = ", ".join(sorted(worker.registry.types)) or "none"
    delay, limit = worker.effective.unknown_type_delay_s, worker.effective.unknown_type_timeout_s
    log.warning("task %s: unknown task type %r (known here: %s); handing it back", job.id, job.type, known)
    worker.core.defer_unknown(
        job,
        delay,
        limit,
        f"unknown task type {job.type!r} on worker {worker.id}; due again in "
        f"{delay:g} s for a worker that has a handler for it",
        f"unknown task type {job.type!r}: no worker with a handler for it took it within {limit:g} s "
        f"(known to worker {worker.id}: {known})",
    )
    worker._wake.set()


async def _middleware(worker: Worker, hook: str, ctx: TaskContext, *args: Any) -> None:
    for middleware in worker.registry.middleware:
        fn = getattr(middleware, hook, None)
        if fn is None:
            continue
        try:
            value = fn(ctx, *args)
            if asyncio.iscoroutine(value):
                await value
        except Exception as exc:
            name = f"{type(middleware).__name__}.{hook}"
            if hook == "before":  # the attempt fails (and is retried); the task is not lost
                raise RuntimeError(f"middleware {name} raised: {_describe(exc)}") from exc
            log.exception("middleware %s raised for task %s", name, ctx.id)
