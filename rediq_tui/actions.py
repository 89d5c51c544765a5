"""The console's writes: views post messages (``rediq_tui.messages``), this mixin of the app
acts on them. Every confirmation and toast names its exact target, escaped (``safe.clean``
shows controls as ``␛``/``⟨U+202E⟩``, so two different names never read alike)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from textual import work

from engine import admin, control, inspect
from engine.client import AsyncClient
from engine.errors import ConnectionFailed, ReadOnlyError, RediqError
from engine.limit_edit import LimitTarget, parse_edit
from engine.task import TaskState
from rediq_tui import safe
from rediq_tui.launcher import LaunchedWorker, LaunchSpec, environment
from rediq_tui.messages import (
    BulkStateAction,
    EditRateLimit,
    GroupAction,
    LaunchRequested,
    StopWorker,
    TaskAction,
    WriteOp,
    WriteRequested,
)
from rediq_tui.screens.confirm import ConfirmScreen
from rediq_tui.screens.launch import LaunchScreen
from rediq_tui.screens.limit import LimitScreen
from rediq_tui.views.tasks import where_filter

if TYPE_CHECKING:
    from rediq_tui.config import ConsoleConfig

FLUSHABLE_STATES = ("dead", "completed", "cancelled", "expired")
"""Bulk delete is offered for finished tasks only (as in the CLI)."""

TASK_ACTIONS = {
    # kind: (verb, past tense, needs confirmation for a single task)
    "requeue": ("Requeue", "requeued", False),
    "cancel": ("Cancel", "cancelled", True),
    "delete": ("Delete", "deleted (to quarantine)", True),
    "restore": ("Restore", "restored", False),
}
LAUNCH_WATCH_S = 10.0
"""How long a launch is watched: the worker registers (up) or its process exits (failed)."""


class Actions:
    """Mixed into ``RediqApp``: every write the console makes."""

    client: AsyncClient
    config: ConsoleConfig
    read_only: bool
    read_only_reason: str
    writes: int
    launched: list[LaunchedWorker]

    # provided by textual.App / RediqApp
    notify: Any
    push_screen: Any
    poll: Any
    set_read_only: Any
    connection_lost: Any
    set_interval: Any
    view: Any

    def _refused(self) -> bool:
        if self.read_only:
            self.notify(f"Read-only: {self.read_only_reason}", severity="warning", markup=False)
        return self.read_only

    def write(self, op: WriteOp, confirm: str | None = None) -> None:
        """Run a write, after a typed confirmation when ``confirm`` is given."""
        if self._refused():
            return
        if confirm is None:
            self._write(op)
            return

        def done(ok: bool | None) -> None:
            if ok:
                self._write(op)
            else:
                self.notify("Cancelled, nothing changed")

        self.push_screen(ConfirmScreen(confirm), callback=done)

    @work(group="write", exit_on_error=False)
    async def _write(self, op: WriteOp) -> None:
        try:
            message = await op(self.client)
        except ReadOnlyError as exc:
            self.set_read_only(safe.clean(str(exc), 120))
            self.notify(
                safe.clean(str(exc), 300), title="Switched to read-only", severity="error", markup=False
            )
        except ConnectionFailed as exc:
            self.connection_lost(str(exc))
        except RediqError as exc:
            self.notify(safe.clean(str(exc), 300), title="Action failed", severity="error", markup=False)
        except Exception as exc:  # noqa: BLE001 - report, never crash the console
            self.notify(safe.clean(repr(exc), 300), title="Action failed", severity="error", markup=False)
        else:
            self.notify(message, title="Done", markup=False)
        self.writes += 1
        self.poll()

    # ------------------------------------------------------------------ messages from views
    def on_write_requested(self, message: WriteRequested) -> None:
        self.write(message.op, message.confirm)

    def on_edit_rate_limit(self, message: EditRateLimit) -> None:
        if self._refused():
            return
        queue, shown = message.queue, safe.clean(message.queue, 60)

        def entered(text: str | None) -> None:
            if not text:
                self.notify("Cancelled, nothing changed")
                return

            try:  # a bad line raises InvalidLimit (E017, one line): toasted, nothing written
                edit = parse_edit(text)
            except RediqError as exc:
                self.notify(safe.clean(str(exc), 300), title="Action failed", severity="error", markup=False)
                return

            async def apply(client: AsyncClient) -> str:
                if edit.target is LimitTarget.GROUP:
                    assert edit.name is not None
                    if edit.group_limit is None:
                        await client.call(admin.clear_group_limit, queue, edit.name)
                    else:
                        await client.call(admin.set_group_limit, queue, edit.name, edit.group_limit)
                elif edit.rate is None:
                    await client.call(admin.clear_rate_limit, queue, edit.name)
                else:
                    await client.call(admin.set_rate_limit, queue, edit.rate, edit.name)
                return safe.clean(edit.describe(shown), 300)

            self._write(apply)

        self.push_screen(LimitScreen(shown, message.current), callback=entered)

    def on_task_action(self, message: TaskAction) -> None:
        self.task_action(message.kind, message.queue, message.ids, message.on_done)

    def on_bulk_state_action(self, message: BulkStateAction) -> None:
        self.bulk_state_action(message.kind, message.queue, message.state, message.needle)

    def on_group_action(self, message: GroupAction) -> None:
        self.group_action(message.kind, message.queue, message.fingerprint, message.count, message.label)

    def on_launch_requested(self, message: LaunchRequested) -> None:
        self.launch_worker_dialog()

    def on_stop_worker(self, message: StopWorker) -> None:
        if message.worker_id:
            self.stop_worker(message.worker_id, message.label)
        else:
            self.stop_launched()

    # ------------------------------------------------------------------ task actions
    def task_action(
        self, kind: str, queue: str, ids: list[str], on_done: Callable[[], None] | None = None
    ) -> None:
        """Requeue, cancel or delete the given tasks of one queue."""
        verb, past, confirm_single = TASK_ACTIONS[kind]
        shown_queue = safe.clean(queue, 40)
        what = f"task {safe.clean(ids[0], 60)}" if len(ids) == 1 else f"{len(ids):,} tasks"

        async def run(client: AsyncClient) -> str:
            done: int
            if kind == "requeue":
                done = len(await client.call(admin.requeue, queue, ids))
            elif kind == "cancel":
                outcomes = await client.call(admin.cancel, queue, ids)
                done = sum(1 for v in outcomes.values() if v in ("cancelled", "requested"))
            elif kind == "restore":
                done = len(await client.call(admin.restore, queue, ids))
            else:
                done = len(await client.call(admin.delete, queue, ids))
            if on_done is not None:
                on_done()
            if len(ids) == 1:
                outcome = past if done else f"not {past.split(' ')[0]} (it changed state meanwhile)"
                return f"{what[:1].upper()}{what[1:]} of {shown_queue} {outcome}"  # the id exactly as it is
            return f"{done:,} of {len(ids):,} tasks of {shown_queue} {past}"

        needs = confirm_single or len(ids) > 1
        self.write(run, f"{verb} {what} of {shown_queue}?" if needs else None)

    @work(group="prepare", exit_on_error=False)
    async def bulk_state_action(self, kind: str, queue: str, state: str, needle: str = "") -> None:
        """Requeue or flush every task of a queue in a state (optionally only those matching the
        filter), after a confirmation stating how many."""
        if self._refused():
            return
        if kind == "flush" and state not in FLUSHABLE_STATES:
            self.notify(
                f"Flush works on {', '.join(FLUSHABLE_STATES)} tasks, not {state}", severity="warning"
            )
            return
        if kind == "requeue" and state == "active":
            self.notify("Running tasks cannot be requeued; cancel them instead", severity="warning")
            return
        try:
            total = await self.client.call(admin.count, queue, TaskState(state))
        except ConnectionFailed as exc:
            self.connection_lost(str(exc))
            return
        except RediqError as exc:
            self.notify(safe.clean(str(exc), 300), severity="error", markup=False)
            return
        shown = safe.clean(queue, 40)
        if total == 0:
            self.notify(f"No {state} tasks in {shown}", markup=False)
            return
        where = where_filter(needle)
        scope = f" matching {safe.clean(needle, 30)!r} (of {total:,})" if where else ""
        count_text = "" if where else f" {total:,}"
        fn = admin.requeue_all if kind == "requeue" else admin.flush
        verb = "Requeue" if kind == "requeue" else "Delete (flush)"

        async def run(client: AsyncClient) -> str:
            moved = await client.call(fn, queue, state, where)
            return f"{moved:,} {state} tasks of {shown} {'requeued' if kind == 'requeue' else 'flushed'}"

        self.write(run, f"{verb} all{count_text} {state} tasks{scope} of {shown}?")

    def group_action(self, kind: str, queue: str, fingerprint: str, count: int, label: str) -> None:
        """Retry or delete (to quarantine, restorable) every task of one failure group: one
        action, after a typed confirmation stating the count."""
        if self._refused():
            return
        shown = safe.clean(queue, 40)
        label = safe.clean(label, 120)

        async def run(client: AsyncClient) -> str:
            if kind == "retry":
                moved = await client.call(admin.retry_group, queue, fingerprint)
                return f"{moved:,} tasks of {label} in {shown} requeued"
            moved = await client.call(admin.delete_group, queue, fingerprint)
            return f"{moved:,} tasks of {label} in {shown} deleted (to quarantine, restorable)"

        if kind == "retry":
            question = f"Retry all {count:,} tasks of {label} in {shown}?"
        else:
            question = f"Delete all {count:,} tasks of {label} in {shown} (to quarantine, restorable)?"
        self.write(run, question)

    # ------------------------------------------------------------------ workers
    def stop_worker(self, worker_id: str, label: str) -> None:
        """Ask any registered worker to drain and stop (it honours the request at its next
        heartbeat); audited by the engine."""
        shown = safe.clean(label, 80)

        async def run(client: AsyncClient) -> str:
            ok = await client.call(control.request_stop, worker_id)
            if not ok:
                return f"Worker {shown} is no longer registered; nothing to stop"
            return f"Asked worker {shown} to drain and stop"

        self.write(run, f"Drain and stop worker {shown}?")

    def launch_worker_dialog(self) -> None:
        if self._refused():
            return
        queues = ",".join(self.view("queues").summaries) or "default"

        def chosen(spec: LaunchSpec | None) -> None:
            if spec is not None:
                self.launch(spec)

        self.push_screen(LaunchScreen(self.config.worker_app, queues[:200], 4), callback=chosen)

    @work(group="launch", exit_on_error=False)
    async def launch(self, spec: LaunchSpec) -> None:
        """Start a worker process and watch it until it registers or exits: a worker that
        exits at once is reported as failed with its exit code and last line, never as
        launched. Launches are audited either way."""
        worker = LaunchedWorker(spec, spec.argv(self.config.worker_module))
        queues = ",".join(spec.queues)
        try:
            await worker.start(env=environment(self.config.redis_url, self.client.settings.prefix))
        except OSError as exc:
            self.notify(f"Could not start the worker: {exc}", severity="error", markup=False)
            return
        self.launched.append(worker)
        self.set_interval(1.0, self._refresh_launched, name="launched-log")
        outcome = await self._watch_launch(worker)
        try:
            await self.client.call(control.audit_launch, worker.pid, queues, outcome)
        except RediqError:
            pass  # the launch itself is what matters; the toast says what happened
        if worker.running and outcome == "up":
            self.notify(f"Worker pid {worker.pid} is up (queues {safe.clean(queues, 60)})", markup=False)
        else:
            said = [line for line in worker.lines if not line.startswith("[exited")]
            last = safe.clean(said[-1], 200) if said else "no output"
            self.notify(
                f"Worker pid {worker.pid} {outcome}: {last}",
                title="Launch failed",
                severity="error",
                markup=False,
            )
        self._refresh_launched()
        self.poll()

    async def _watch_launch(self, worker: LaunchedWorker) -> str:
        deadline = time.monotonic() + LAUNCH_WATCH_S
        while time.monotonic() < deadline:
            if not worker.running:
                return f"exited with code {worker.returncode}"
            try:
                live = await self.client.call(inspect.workers)
            except RediqError:
                live = []
            if any(w.pid == worker.pid for w in live):
                return "up"
            await asyncio.sleep(0.2)
        return "up" if worker.running else f"exited with code {worker.returncode}"

    def _refresh_launched(self) -> None:
        view = self.view("workers")
        if hasattr(view, "show_launched"):
            view.show_launched()

    def stop_launched(self) -> None:
        running = [w for w in self.launched if w.running]
        if not running:
            self.notify("No launched worker is running")
            return
        self._stop(running[-1])

    @work(group="stop", exit_on_error=False)
    async def _stop(self, worker: LaunchedWorker) -> None:
        self.notify(f"Stopping worker pid {worker.pid} (SIGTERM, drains running tasks)", markup=False)
        code = await worker.stop(self.config.stop_grace_s)
        try:
            await self.client.call(control.audit_launch, worker.pid, ",".join(worker.spec.queues), "stopped")
        except RediqError:
            pass
        self.notify(f"Worker pid {worker.pid} exited with code {code}", markup=False)
        self._refresh_launched()
        self.poll()
