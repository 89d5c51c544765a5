"""Why is this task not running? The blocking reason, computed from live state, for the CLI
(``rediq task why ID``) and the console's task detail."""

from __future__ import annotations

from dataclasses import dataclass

from engine import inspect, ops
from engine.backend import Batch, Op, cmd
from engine.errors import TaskNotFound
from engine.ops import Settings
from engine.task import TaskState


@dataclass(frozen=True, slots=True)
class Explanation:
    task_id: str
    queue: str
    state: TaskState
    blocked: bool
    """True when something stands in the way (as opposed to: running, finished, or next up)."""
    reasons: tuple[str, ...]
    position: int | None = None
    """0-based position in pending (0 runs next)."""


def _ago(ms: int) -> str:
    s = ms / 1000
    return f"{s:.0f} s" if s < 120 else f"{s / 60:.0f} min" if s < 7200 else f"{s / 3600:.1f} h"


def why(settings: Settings, task_id: str, queue: str | None = None) -> Op[Explanation]:
    info = yield from ops.get_task(settings, task_id, queue)
    if info is None:
        raise TaskNotFound(f"no task with id {task_id!r}" + (f" in queue {queue!r}" if queue else ""))
    qk = settings.keyspace.queue(info.queue)
    now = yield from ops.server_time_ms()
    workers = yield from inspect.workers(settings)
    serving = [w for w in workers if info.queue in w.queues and not w.stale]
    paused, position, pending_total, unique_holder = yield Batch(
        [
            cmd("EXISTS", qk.paused),
            cmd("ZRANK", qk.pending, task_id),
            cmd("ZCARD", qk.pending),
            cmd("GET", qk.unique(info.unique_key)) if info.unique_key else cmd("ECHO", ""),
        ]
    )
    reasons: list[str] = []
    blocked = True
    state = info.state
    if state == TaskState.PENDING:
        if paused:
            reasons.append(
                f"queue {info.queue!r} is paused: resume it with `rediq queue resume {info.queue}`"
            )
        if not serving:
            stale = [w.id for w in workers if info.queue in w.queues]
            reasons.append(
                f"no live worker serves queue {info.queue!r}"
                + (f" (stale heartbeats: {', '.join(stale)})" if stale else "")
            )
        else:
            slots = sum(w.concurrency for w in serving)
            busy = sum(w.busy for w in serving)
            if busy >= slots:
                reasons.append(
                    f"all {slots} slots of the {len(serving)} worker(s) serving {info.queue!r} are busy"
                )
        if position is not None:
            reasons.append(f"position {int(position) + 1} of {int(pending_total)} in {info.queue!r}")
        if not paused and serving and not any("busy" in r for r in reasons):
            blocked = position is not None and int(position) > 0
            reasons.insert(
                0, "next up" if not blocked else "waiting its turn behind higher-priority or older tasks"
            )
    elif state == TaskState.SCHEDULED:
        due = info.due_at_ms or now
        if due > now:
            reasons.append(f"scheduled: becomes due in {_ago(due - now)}")
        else:
            reasons.append("due, to be promoted by the next worker that polls the queue")
            if not serving:
                reasons.append(f"no live worker serves queue {info.queue!r}")
    elif state == TaskState.RETRY:
        due = info.due_at_ms or now
        reasons.append(
            f"retry after attempt {info.attempts} of {info.max_retry + 1} failed: {info.last_error or '?'}; "
            + (f"due in {_ago(due - now)}" if due > now else "due now")
        )
    elif state == TaskState.WAITING:
        refs = list(info.waiting_on)
        states = []
        if refs:
            replies = yield Batch(
                [
                    cmd(
                        "HGET",
                        settings.keyspace.queue(r.partition("|")[0]).task(r.partition("|")[2]),
                        "state",
                    )
                    for r in refs
                ]
            )
            states = [s or "gone" for s in replies]
        reasons.append(
            "waiting on dependencies: " + ", ".join(f"{r} ({s})" for r, s in zip(refs, states, strict=True))
            if refs
            else "waiting on dependencies (none left: a release is pending in an outbox)"
        )
        if info.reason:
            reasons.append(info.reason)
    elif state == TaskState.ACTIVE:
        lease = info.lease_expiry_ms or 0
        worker = next((w for w in workers if w.id == info.worker), None)
        if lease and lease < now:
            reasons.append(
                f"leased by {info.worker}, whose lease expired {_ago(now - lease)} ago: the next dequeue on "
                f"{info.queue!r} recovers it"
                + ("" if serving else f", but no live worker serves {info.queue!r}")
            )
        elif worker is None or worker.stale:
            reasons.append(
                f"leased by {info.worker}, which stopped heartbeating; recovery takes it when the lease "
                f"expires in {_ago(max(0, lease - now))}"
            )
        else:
            blocked = False
            progress = (
                f", {info.progress:.0f}% {info.progress_message or ''}".rstrip()
                if info.progress is not None
                else ""
            )
            started = info.started_at_ms or now
            reasons.append(
                f"running on {info.worker} for {_ago(now - started)} "
                f"(attempt {info.attempts} of {info.max_retry + 1}{progress})"
            )
    else:
        blocked = False
        detail = info.last_error if state == TaskState.DEAD else info.reason
        reasons.append(f"not running because it is {state}" + (f": {detail}" if detail else ""))
    if info.unique_key and unique_holder and unique_holder != task_id and not state.is_final:
        reasons.append(f"unique key {info.unique_key!r} is held by task {unique_holder}")
    return Explanation(
        task_id, info.queue, state, blocked, tuple(reasons), None if position is None else int(position)
    )
