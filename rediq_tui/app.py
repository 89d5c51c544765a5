"""The rediq operations console."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, ClassVar

from textual import on, work
from textual.app import App, ComposeResult, SystemCommand
from textual.binding import Binding, BindingType
from textual.screen import Screen
from textual.timer import Timer
from textual.widgets import ContentSwitcher, Footer

from engine import admin
from engine.client import AsyncClient
from engine.errors import ConnectionFailed, ReadOnlyError, RediqError
from engine.events import RESYNC, Event
from engine.ops import Settings
from engine.task import TaskState
from rediq_tui import safe
from rediq_tui.config import ConsoleConfig
from rediq_tui.launcher import LaunchedWorker, LaunchSpec, environment
from rediq_tui.messages import OpenGroup, OpenQueue, OpenTask, RefreshRequested
from rediq_tui.screens.confirm import ConfirmScreen
from rediq_tui.screens.detail import TaskDetailScreen
from rediq_tui.screens.help import HelpScreen
from rediq_tui.screens.launch import LaunchScreen
from rediq_tui.widgets.audit import AuditView
from rediq_tui.widgets.base import Pollable, View
from rediq_tui.widgets.cron import CronView
from rediq_tui.widgets.failures import FailuresView
from rediq_tui.widgets.queues import QueuesView
from rediq_tui.widgets.status import StatusBar
from rediq_tui.widgets.table import VimTable
from rediq_tui.widgets.tasks import TasksView, where_filter
from rediq_tui.widgets.workers import WorkersView

VIEWS = ("queues", "workers", "tasks", "cron", "failures", "audit")
MAX_BACKOFF_S = 15.0
EVENT_DEBOUNCE_S = 0.3

FLUSHABLE_STATES = ("dead", "completed", "cancelled")
"""Bulk delete is offered for finished tasks only (as in the CLI)."""

WriteOp = Callable[[], Awaitable[str]]

TASK_ACTIONS = {
    # kind: (verb, past tense, needs confirmation for a single task)
    "requeue": ("Requeue", "requeued", False),
    "cancel": ("Cancel", "cancelled", True),
    "delete": ("Delete", "deleted (to quarantine)", True),
    "restore": ("Restore", "restored", False),
}


class RediqApp(App[None]):
    CSS_PATH = "app.tcss"
    TITLE = "rediq"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("1,u", "show('queues')", "Queues", id="view.queues"),
        Binding("2,w", "show('workers')", "Workers", id="view.workers"),
        Binding("3,t", "show('tasks')", "Tasks", id="view.tasks"),
        Binding("4,i", "show('detail')", "Detail", id="view.detail"),
        Binding("5,o", "show('cron')", "Cron", id="view.cron"),
        Binding("6,f", "show('failures')", "Failures", id="view.failures"),
        Binding("7,a", "show('audit')", "Audit", id="view.audit"),
        Binding("question_mark", "help", "Help", id="app.help"),
        Binding("p", "toggle_refresh", "Pause refresh", id="app.pause_refresh"),
        Binding("ctrl+r", "refresh_now", "Refresh now", show=False, id="app.refresh"),
        Binding("escape", "go_back", "Back", show=False, id="app.back"),
        Binding("q", "back_or_quit", "Back/quit", id="app.quit"),
    ]

    def __init__(
        self,
        config: ConsoleConfig | None = None,
        *,
        clock: Callable[[], float] = time.time,
        client: AsyncClient | None = None,
    ) -> None:
        super().__init__()
        self.config = config or ConsoleConfig()
        self.clock = clock
        if client is None:
            settings = Settings(prefix=self.config.prefix) if self.config.prefix else None
            client = AsyncClient(self.config.redis_url, settings=settings)
        self.client = client
        self.read_only = self.config.read_only
        self.read_only_reason = "--read-only" if self.config.read_only else ""
        self.refresh_paused = False
        self.connected: bool | None = None
        self.failures = 0
        self.last_ok: float | None = None
        self.last_error = ""
        self.polls = 0
        """Successful polls so far (tests wait on it)."""
        self.writes = 0
        """Finished write actions (tests wait on it)."""
        self.events_seen = 0
        self.last_fetch_s = 0.0
        """Duration of the last poll's Redis round trips (for the benchmark)."""
        self.last_show_s = 0.0
        """Duration of the last poll's table update."""
        self.launched: list[LaunchedWorker] = []
        self.last_task: tuple[str, str] | None = None
        self._timer: Timer | None = None
        self._soon: Timer | None = None
        self.theme = "textual-light" if self.config.theme == "light" else "textual-dark"

    # ------------------------------------------------------------------ layout
    def compose(self) -> ComposeResult:
        yield StatusBar(self.config.display_name, id="status")
        with ContentSwitcher(initial="queues", id="views"):
            yield QueuesView(id="queues")
            yield WorkersView(id="workers")
            yield TasksView(id="tasks")
            yield CronView(id="cron")
            yield FailuresView(id="failures")
            yield AuditView(id="audit")
        yield Footer()

    def on_mount(self) -> None:
        self.current_view.focus_main()
        self.redraw_status()
        self.poll()
        if self.config.events:
            self.listen()

    async def on_unmount(self) -> None:
        for w in self.launched:
            await w.stop(self.config.stop_grace_s)
        await self.client.close()

    @property
    def switcher(self) -> ContentSwitcher:
        return self.screen_stack[0].query_one("#views", ContentSwitcher)

    @property
    def current_view(self) -> View:
        return self.screen_stack[0].query_one(f"#{self.switcher.current}", View)

    def view(self, name: str) -> View:
        return self.screen_stack[0].query_one(f"#{name}", View)

    @property
    def tasks_view(self) -> TasksView:
        return self.screen_stack[0].query_one("#tasks", TasksView)

    def get_system_commands(self, screen: Screen[Any]) -> Iterable[SystemCommand]:
        yield from super().get_system_commands(screen)
        for name in (*VIEWS, "detail"):
            yield SystemCommand(f"View: {name}", f"Show the {name} view", lambda n=name: self.action_show(n))
        yield SystemCommand("Pause/resume refresh", "Stop or restart polling", self.action_toggle_refresh)
        yield SystemCommand("Refresh now", "Poll Redis now", self.action_refresh_now)
        yield SystemCommand("Help", "List every key binding", self.action_help)

    # ------------------------------------------------------------------ status
    def status_bars(self) -> list[StatusBar]:
        bars: list[StatusBar] = []
        for screen in self.screen_stack:
            bars.extend(screen.query(StatusBar))
        return bars

    def sync_status(self, bar: StatusBar) -> None:
        bar.connected = self.connected
        bar.error = self.last_error
        bar.last_ok = self.last_ok
        bar.paused = self.refresh_paused
        bar.read_only_reason = self.read_only_reason
        bar.interval_s = self.config.interval_s
        bar.retry_in = self.backoff() if self.connected is False else None
        bar.redraw()

    def redraw_status(self) -> None:
        for bar in self.status_bars():
            self.sync_status(bar)

    def backoff(self) -> float:
        return float(min(MAX_BACKOFF_S, 0.5 * 2 ** min(self.failures, 6)))

    def set_read_only(self, reason: str) -> None:
        self.read_only = True
        self.read_only_reason = reason
        self.redraw_status()
        self.refresh_bindings()

    # ------------------------------------------------------------------ polling
    def poll_target(self) -> Pollable:
        top = self.screen
        if isinstance(top, TaskDetailScreen):
            return top
        return self.current_view

    def schedule_poll(self, delay: float) -> None:
        if self._timer is not None:
            self._timer.stop()
        self._timer = self.set_timer(delay, self.poll, name="poll")

    def poll_soon(self) -> None:
        """Poll shortly (debounced): an event said something changed."""
        if self.refresh_paused or self._soon is not None:
            return

        def fire() -> None:
            self._soon = None
            self.poll()

        self._soon = self.set_timer(EVENT_DEBOUNCE_S, fire, name="poll-soon")

    @work(exclusive=True, group="poll", exit_on_error=False)
    async def poll(self) -> None:
        """One poll of what is on screen; the next one is scheduled after this one finished."""
        if self._timer is not None:
            self._timer.stop()
            self._timer = None
        target = self.poll_target()
        ok = False
        started = time.perf_counter()
        try:
            data = await target.fetch(self.client)
        except ConnectionFailed as exc:
            self.connection_lost(str(exc))
        except RediqError as exc:
            self.notify(safe.clean(str(exc), 300), title="Refresh failed", severity="error", markup=False)
        except Exception as exc:  # noqa: BLE001 - the console never dies of a bad reply
            self.notify(safe.clean(repr(exc), 300), title="Refresh failed", severity="error", markup=False)
        else:
            ok = True
            fetched = time.perf_counter()
            self.last_fetch_s = fetched - started
            if target is self.poll_target():
                target.show(data)
            self.last_show_s = time.perf_counter() - fetched
            self.polls += 1
            self.connection_ok()
        if not self.refresh_paused:
            self.schedule_poll(self.config.interval_s if ok else self.backoff())

    def connection_ok(self) -> None:
        was = self.connected
        self.connected = True
        self.last_ok = self.clock()
        if was is False:
            self.notify(f"Redis is back after {self.failures} failed attempt(s)", title="Reconnected")
            self.failures = 0
            self.last_error = ""
        self.redraw_status()

    def connection_lost(self, error: str) -> None:
        if self.connected is not False:
            self.notify(safe.clean(error, 200), title="Redis unreachable", severity="error", markup=False)
        self.connected = False
        self.failures += 1
        self.last_error = error
        self.redraw_status()

    @work(group="events", exit_on_error=False)
    async def listen(self) -> None:
        """Pub/sub events between polls: progress updates rows, transitions trigger a poll."""
        from engine import events

        while True:
            try:
                async for event in events.subscribe(self.client.settings, self.client.backend.redis):
                    self.on_engine_event(event)
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - reconnect below, never crash the console
                await asyncio.sleep(self.backoff())

    def on_engine_event(self, event: Event) -> None:
        self.events_seen += 1
        if self.refresh_paused:
            return
        if event.event == RESYNC:
            if self.polls:
                self.poll_soon()
            return
        if event.event == "progress":
            for task_id in event.ids:
                self.tasks_view.update_progress(task_id, event.percent, event.message)
                top = self.screen
                if isinstance(top, TaskDetailScreen) and top.task_id == task_id:
                    top.update_progress(event.percent, event.message)
            return
        self.poll_soon()

    # ------------------------------------------------------------------ navigation
    def action_show(self, name: str) -> None:
        if name == "detail":
            key = self.tasks_view.table.cursor_key if self.tasks_view.queue else None
            if key is not None and self.tasks_view.queue is not None:
                self.open_task(self.tasks_view.queue, key)
            elif self.last_task is not None:
                self.open_task(*self.last_task)
            else:
                self.notify("Open a task from the Tasks view first (3, Enter)")
            return
        while len(self.screen_stack) > 1:
            self.pop_screen()
        if name == "tasks" and self.tasks_view.queue is None:
            selected = self.screen_stack[0].query_one(QueuesView).selected
            if selected is not None:
                self.tasks_view.open(selected, "pending")
        self.switcher.current = name
        self.current_view.focus_main()
        self.poll()

    def open_task(self, queue: str, task_id: str) -> None:
        self.last_task = (queue, task_id)

        def closed(_: None) -> None:
            self.poll()

        self.push_screen(TaskDetailScreen(queue, task_id), callback=closed)
        self.poll()

    @on(OpenQueue)
    def _open_queue(self, message: OpenQueue) -> None:
        self.tasks_view.open(message.queue, message.state)
        self.action_show("tasks")

    @on(OpenGroup)
    def _open_group(self, message: OpenGroup) -> None:
        self.tasks_view.open_group(message.queue, message.fingerprint, message.label)
        self.action_show("tasks")

    @on(OpenTask)
    def _open_task(self, message: OpenTask) -> None:
        self.open_task(message.queue, message.task_id)

    @on(RefreshRequested)
    def _refresh_requested(self) -> None:
        self.poll()

    def action_go_back(self) -> None:
        if len(self.screen_stack) > 1:
            self.pop_screen()
            self.poll()
        elif self.switcher.current != "queues":
            self.action_show("queues")

    def action_back_or_quit(self) -> None:
        if len(self.screen_stack) == 1 and self.switcher.current == "queues":
            self.exit()
        else:
            self.action_go_back()

    def action_help(self) -> None:
        contexts: list[tuple[str, list[BindingType]]] = [
            ("global", list(self.BINDINGS)),
            ("tables", list(VimTable.BINDINGS)),
            ("queues", list(QueuesView.BINDINGS)),
            ("tasks", list(TasksView.BINDINGS)),
            ("detail", list(TaskDetailScreen.BINDINGS)),
            ("workers", list(WorkersView.BINDINGS)),
            ("cron", list(CronView.BINDINGS)),
            ("failures", list(FailuresView.BINDINGS)),
        ]
        self.push_screen(HelpScreen(contexts))

    def action_toggle_refresh(self) -> None:
        self.refresh_paused = not self.refresh_paused
        if self.refresh_paused:
            if self._timer is not None:
                self._timer.stop()
                self._timer = None
            self.workers.cancel_group(self, "poll")
        else:
            self.poll()
        self.redraw_status()

    def action_refresh_now(self) -> None:
        self.poll()

    # ------------------------------------------------------------------ writes
    def write(self, op: WriteOp, confirm: str | None = None) -> None:
        """Run a write action, after a typed confirmation when ``confirm`` is given."""
        if self.read_only:
            self.notify(f"Read-only: {self.read_only_reason}", severity="warning", markup=False)
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
            message = await op()
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

    def task_action(
        self, kind: str, queue: str, ids: list[str], on_done: Callable[[], None] | None = None
    ) -> None:
        """Requeue, cancel or delete the given tasks of one queue."""
        verb, past, confirm_single = TASK_ACTIONS[kind]
        shown_queue = safe.clean(queue, 40)
        what = f"task {safe.clean(ids[0], 40)}" if len(ids) == 1 else f"{len(ids):,} tasks"

        async def run() -> str:
            done: int
            if kind == "requeue":
                done = len(await self.client.call(admin.requeue, queue, ids))
            elif kind == "cancel":
                outcomes = await self.client.call(admin.cancel, queue, ids)
                done = sum(1 for v in outcomes.values() if v in ("cancelled", "requested"))
            elif kind == "restore":
                done = len(await self.client.call(admin.restore, queue, ids))
            else:
                done = len(await self.client.call(admin.delete, queue, ids))
            if on_done is not None:
                on_done()
            return f"{done:,} of {len(ids):,} {'task' if len(ids) == 1 else 'tasks'} of {shown_queue} {past}"

        needs = confirm_single or len(ids) > 1
        self.write(run, f"{verb} {what} of {shown_queue}?" if needs else None)

    @work(group="prepare", exit_on_error=False)
    async def bulk_state_action(self, kind: str, queue: str, state: str, needle: str = "") -> None:
        """Requeue or flush every task of a queue in a state (optionally only those matching the
        filter), after a confirmation stating how many."""
        if self.read_only:
            self.notify(f"Read-only: {self.read_only_reason}", severity="warning", markup=False)
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

        async def run() -> str:
            moved = await self.client.call(fn, queue, state, where)
            return f"{moved:,} {state} tasks of {shown} {'requeued' if kind == 'requeue' else 'flushed'}"

        self.write(run, f"{verb} all{count_text} {state} tasks{scope} of {shown}?")

    def group_action(self, kind: str, queue: str, fingerprint: str, count: int, label: str) -> None:
        """Retry or delete (to quarantine, restorable) every task of one failure group: one
        action, after a typed confirmation stating the count."""
        if self.read_only:
            self.notify(f"Read-only: {self.read_only_reason}", severity="warning", markup=False)
            return
        shown = safe.clean(queue, 40)
        label = safe.clean(label, 120)

        async def run() -> str:
            if kind == "retry":
                moved = await self.client.call(admin.retry_group, queue, fingerprint)
                return f"{moved:,} tasks of {label} requeued"
            moved = await self.client.call(admin.delete_group, queue, fingerprint)
            return f"{moved:,} tasks of {label} deleted (to quarantine, restorable)"

        if kind == "retry":
            question = f"Retry all {count:,} tasks of {label} in {shown}?"
        else:
            question = f"Delete all {count:,} tasks of {label} in {shown} (to quarantine, restorable)?"
        self.write(run, question)

    # ------------------------------------------------------------------ launched workers
    def launch_worker_dialog(self) -> None:
        if self.read_only:
            return
        queues = ",".join(self.view("queues").summaries) or "default"  # type: ignore[attr-defined]

        def chosen(spec: LaunchSpec | None) -> None:
            if spec is not None:
                self.launch(spec)

        self.push_screen(LaunchScreen(self.config.worker_app, queues[:200], 4), callback=chosen)

    @work(group="launch", exit_on_error=False)
    async def launch(self, spec: LaunchSpec) -> None:
        worker = LaunchedWorker(spec, spec.argv(self.config.worker_module))
        try:
            await worker.start(env=environment(self.config.redis_url, self.client.settings.prefix))
        except OSError as exc:
            self.notify(f"Could not start the worker: {exc}", severity="error", markup=False)
            return
        self.launched.append(worker)
        self.notify(f"Launched worker pid {worker.pid}", markup=False)
        self.set_interval(1.0, self._refresh_launched, name="launched-log")
        self.poll()

    def _refresh_launched(self) -> None:
        view = self.view("workers")
        if isinstance(view, WorkersView):
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
        self.notify(f"Worker pid {worker.pid} exited with code {code}", markup=False)
        self._refresh_launched()
        self.poll()
