"""Running one batch: the tasks of a batch type that one dequeue leased together go to one
handler call as a list (``engine.batching``), and each task's outcome is reported to the core
on its own, so a failing item retries alone (its own attempts and backoff) while the others
complete.

Each task keeps its own slot, lease and token: the heartbeat extends them all while the call
runs, and a worker killed mid-batch leaves every item to lease recovery like any task. A cancel
requested for one item does not stop the call (the other items are not cancelled): that item
is recorded cancelled when it ends. A lost lease of one item does not stop it either: that
item's outcome is refused by its fencing token (it was leased again elsewhere).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from engine.batching import BatchItem
from engine.errors import BatchFailed, Permanent, RateLimited, Retryable
from engine.flow import MAX_PAUSE_S
from engine.registry import TaskDef
from engine.worker import runners
from engine.worker.context import TaskContext, TaskOutcome
from engine.worker.execute import decode_payload
from engine.worker.messages import FailMode, HandlerDone, Outcome
from engine.worker.protocol import Job
from engine.worker.runners import result_json as result_json_of

if TYPE_CHECKING:  # the driver imports this module
    from engine.worker.driver import Worker

log = logging.getLogger("rediq.worker")


class BatchContext(TaskContext):
    """A batch handler's ``ctx``: the first item's ``TaskContext`` (its progress and log lines
    go to that task) plus ``ids``, every item's task id in the order of ``items``."""

    def __init__(self, jobs: Sequence[Job], worker: Worker) -> None:
        super().__init__(jobs[0], worker)
        self.ids = [j.id for j in jobs]


def outcome_of(exc: BaseException, job: Job, definition: TaskDef) -> HandlerDone:
    """How one item ended, given the exception it failed with (the whole call's, or its own
    in a ``BatchFailed``)."""
    trace = runners.handler_traceback(exc)
    if isinstance(exc, Permanent):
        return HandlerDone(job, Outcome.DEAD, "", runners.describe(exc), trace, 0.0, FailMode.PERMANENT)
    if isinstance(exc, RateLimited):
        after = exc.retry_after
        delay = float(after) if isinstance(after, int | float) and 0 < after <= MAX_PAUSE_S else 1.0
        return HandlerDone(job, Outcome.RATE_LIMITED, "", runners.describe(exc), "", delay)
    if isinstance(exc, Retryable) and exc.delay is not None:
        return HandlerDone(job, Outcome.RETRY, "", runners.describe(exc), trace, exc.delay)
    delay = definition.retry.delay(job.attempt)
    return HandlerDone(job, Outcome.RETRY, "", runners.describe(exc), trace, delay)


def _results(result: Any, ids: Sequence[str]) -> dict[str, Any]:
    """A handler's return: one result per item (a list in items' order, or a dict by task id),
    or None. A child process (``--pool process``) sends it back as JSON."""
    if isinstance(result, runners.Serialised):
        result = json.loads(result) if result else None
    if isinstance(result, list | tuple) and len(result) == len(ids):
        return dict(zip(ids, result, strict=True))
    if isinstance(result, dict) and set(result) <= set(ids):
        return result
    if result is not None:
        log.warning("a batch handler returned neither one result per item nor None: results dropped")
    return {}


async def run_batch(worker: Worker, jobs: Sequence[Job], definition: TaskDef, ctx: BatchContext) -> None:
    """Call the batch handler once with every item whose payload decodes; report each task."""
    started = time.monotonic()
    done: dict[str, HandlerDone] = {}
    items: list[BatchItem[Any]] = []
    live: list[Job] = []
    for job in jobs:
        try:
            items.append(BatchItem(job.id, decode_payload(job, definition), job.attempt))
            live.append(job)
        except Permanent as exc:  # a bad payload goes dead alone
            error = runners.describe(exc)
            done[job.id] = HandlerDone(job, Outcome.DEAD, "", error, "", 0.0, FailMode.PERMANENT)
    timeout_s = jobs[0].timeout_s
    deadline = worker.deadlines.start(timeout_s)
    try:
        if items:
            async with deadline:
                if definition.is_async:
                    result = await definition.handler(ctx, items)
                else:
                    result = await worker._runner.call(
                        definition.handler, ctx, items, ctx.progress, deadline, timeout_s
                    )
            results = _results(result, [i.id for i in items])
            for job in live:
                done[job.id] = HandlerDone(job, Outcome.COMPLETED, result_json_of(results.get(job.id)))
    except BatchFailed as exc:
        for job in live:
            failed = exc.failures.get(job.id)
            done[job.id] = (
                outcome_of(failed, job, definition)
                if failed is not None
                else HandlerDone(job, Outcome.COMPLETED, result_json_of(exc.results.get(job.id)))
            )
    except TimeoutError as exc:
        for job in live:
            if deadline.expired():
                error, delay = f"E004: timed out after {timeout_s:g} s", definition.retry.delay(job.attempt)
                done[job.id] = HandlerDone(job, Outcome.TIMEOUT, "", error, "", delay)
            else:
                done[job.id] = outcome_of(exc, job, definition)
    except asyncio.CancelledError:  # shutdown: the items' leases say who runs them next
        for job in live:
            done[job.id] = HandlerDone(job, Outcome.STALE)
    except Exception as exc:  # noqa: BLE001 - the whole call failed: every item did
        for job in live:
            done[job.id] = outcome_of(exc, job, definition)
    finally:
        for job in jobs:
            if (entry := worker._running.get(job.id)) is not None and entry[0] is job:
                del worker._running[job.id]
    elapsed = time.monotonic() - started
    reports = []
    for job in jobs:
        outcome = worker.core.on_outcome(done[job.id])
        why = done[job.id].error or None
        reports.append(TaskOutcome(job.id, job.queue, job.type, outcome, elapsed, job.attempt, why))
    worker._wake.set()
    for report in reports:
        for listener in worker._listeners:
            try:
                listener(report)
            except Exception:  # noqa: BLE001 - a broken listener must not break the worker
                log.exception("task outcome listener failed")
