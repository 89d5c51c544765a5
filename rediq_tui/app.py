"""The rediq operations console: navigation and the refresh loop. Views post messages; writes
are in ``rediq_tui.actions`` (mixed in); the connection is one reactive (``conn``)."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
from collections.abc import Callable, Iterable
from typing import Any, ClassVar

from textual import events, work
from textual.app import App, ComposeResult, SystemCommand
from textual.binding import Binding, BindingType
from textual.reactive import reactive
from textual.screen import Screen
from textual.timer import Timer
from textual.widgets import ContentSwitcher, Footer

from engine import overview
from engine.client import AsyncClient
from engine.errors import ConnectionFailed, RediqError
from engine.events import RESYNC, Event
from engine.ops import Settings
from engine.overview import FoundKind
from rediq_tui import safe
from rediq_tui.actions import Actions
from rediq_tui.config import ConsoleConfig
from rediq_tui.firstrun import remember_dismissed, tip_dismissed
from rediq_tui.launcher import LaunchedWorker
from rediq_tui.messages import (
    CopyText,
    Jump,
    OpenCharts,
    OpenGroup,
    OpenQueue,
    OpenTask,
    OpenWorker,
    RefreshRequested,
)
from rediq_tui.palette import JumpProvider
from rediq_tui.screens.charts import ChartsScreen
from rediq_tui.screens.detail import TaskDetailScreen
from rediq_tui.screens.help import HelpScreen
from rediq_tui.screens.jump import JumpScreen
from rediq_tui.screens.worker import WorkerDetailScreen
from rediq_tui.state import Connection
from rediq_tui.views.alltasks import AllTasksView
from rediq_tui.views.audit import AuditView
from rediq_tui.views.base import Pollable, View
from rediq_tui.views.cron import CronView
from rediq_tui.views.failures import FailuresView
from rediq_tui.views.queues import QueuesView
from rediq_tui.views.redis import RedisView
from rediq_tui.views.tasks import TasksView
from rediq_tui.views.workers import WorkersView
from rediq_tui.widgets.filter import FilterBar
from rediq_tui.widgets.hint import DISMISS_KEY, FirstLaunchTip
from rediq_tui.widgets.status import StatusBar
from rediq_tui.widgets.table import VimTable

VIEWS = ("queues", "workers", "tasks", "cron", "failures", "audit", "all", "redis")
MAX_BACKOFF_S = 15.0
EVENT_DEBOUNCE_S = 0.3
QUIET_AFTER = 3
"""Polls without any engine event before the Queues refresh slows down."""
QUIET_FACTOR = 3
PASTE_MAX = 200
"""A paste longer than this (or with a newline) is not taken for a name or an id."""


class RediqApp(Actions, App[None]):
    CSS_PATH = "app.tcss"
    TITLE = "rediq"
    COMMANDS = App.COMMANDS | {JumpProvider}
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("1,u", "show('queues')", "Queues", id="view.queues"),
        Binding("2,w", "show('workers')", "Workers", id="view.workers"),
        Binding("3,t", "show('tasks')", "Tasks", id="view.tasks"),
        Binding("4,i", "show('detail')", "Detail", show=False, id="view.detail"),
        Binding("5,o", "show('cron')", "Cron", show=False, id="view.cron"),
        Binding("6,f", "show('failures')", "Failures", id="view.failures"),
        Binding("7,a", "show('audit')", "Audit", show=False, id="view.audit"),
        Binding("8,e", "show('all')", "All tasks", id="view.all"),
        Binding("9,m", "show('redis')", "Redis", id="view.redis"),
        Binding("colon", "jump", "Jump", id="app.jump"),
        Binding("question_mark", "help", "Help", id="app.help"),
        Binding("p", "toggle_refresh", "Pause refresh", show=False, id="app.pause_refresh"),
        Binding("ctrl+r", "refresh_now", "Refresh now", show=False, id="app.refresh"),
        Binding("escape", "go_back", "Back", show=False, id="app.back"),
        Binding("q", "back_or_quit", "Back/quit", id="app.quit"),
    ]

    conn: reactive[Connection] = reactive(Connection, always_update=False, init=False)

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
        self.listening = False
        """The event subscription is wanted: set when it starts, cleared when the console closes,
        which ends it within a second even if its cancellation is lost."""
        self.quiet_polls = 0
        """Polls in a row during which no engine event arrived."""
        self._events_at_poll = 0
        self.last_fetch_s = 0.0
        """Duration of the last poll's Redis round trips (for the benchmark)."""
        self.last_show_s = 0.0
        """Duration of the last poll's table update."""
        self.launched: list[LaunchedWorker] = []
        self.last_task: tuple[str, str] | None = None
        self.copied: list[str] = []
        """What ``y`` copied (tests read it; the terminal got it by OSC 52)."""
        self._timer: Timer | None = None
        self._soon: Timer | None = None
        self.theme = "textual-light" if self.config.theme == "light" else "textual-dark"

    @property
    def display_name(self) -> str:
        return self.config.display_name

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
            yield AllTasksView(id="all")
            yield RedisView(id="redis")
        if not tip_dismissed():
            yield FirstLaunchTip()
        yield Footer()

    def on_mount(self) -> None:
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            # an SSH drop ends the console like q (and --demo then stops what it started)
            asyncio.get_running_loop().add_signal_handler(signal.SIGHUP, self.exit)
        self.current_view.focus_main()
        if self.screen_stack[0].query(FirstLaunchTip):
            # bound only while the tip shows (not in BINDINGS: neither ? nor the docs list it)
            self.bind(DISMISS_KEY, "dismiss_tip", description="Hide the tip", show=False)
        self.redraw_status()
        self.poll()
        if self.config.events:
            self.listening = True
            self.listen()

    async def on_unmount(self) -> None:
        self.listening = False
        for w in self.launched:
            await w.stop(self.config.stop_grace_s)
        await self.client.close()

    @property
    def switcher(self) -> ContentSwitcher:
        return self.screen_stack[0].query_one("#views", ContentSwitcher)

    @property
    def current_view(self) -> View:
        return self.screen_stack[0].query_one(f"#{self.switcher.current}", View)

    def view(self, name: str) -> Any:
        return self.screen_stack[0].query_one(f"#{name}", View)

    @property
    def tasks_view(self) -> TasksView:
        return self.screen_stack[0].query_one("#tasks", TasksView)

    def get_system_commands(self, screen: Screen[Any]) -> Iterable[SystemCommand]:
        yield from super().get_system_commands(screen)
        for name in (*VIEWS, "detail"):
            yield SystemCommand(f"View: {name}", f"Show the {name} view", lambda n=name: self.action_show(n))
        yield SystemCommand("Jump", "Go to a queue, a worker or a task id", self.action_jump)
        yield SystemCommand("Pause/resume refresh", "Stop or restart polling", self.action_toggle_refresh)
        yield SystemCommand("Refresh now", "Poll Redis now", self.action_refresh_now)
        yield SystemCommand("Help", "List every key binding", self.action_help)

    def known_names(self) -> Iterable[tuple[str, str]]:
        """Queues and workers seen so far (the command palette offers them)."""
        for name in self.view("queues").names:
            yield "queue", name
        for w in self.view("workers").summaries:
            yield "worker", w.id

    # ------------------------------------------------------------------ status
    def redraw_status(self) -> None:
        self.conn = Connection(
            connected=self.connected,
            error=self.last_error,
            last_ok=self.last_ok,
            retry_in=self.backoff() if self.connected is False else None,
            paused=self.refresh_paused,
            read_only_reason=self.read_only_reason,
            interval_s=self.next_interval(),
        )

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
        if isinstance(top, Pollable):
            return top
        return self.current_view

    def next_interval(self) -> float:
        """The refresh interval; on the Queues view, while the event stream is quiet (no task
        moved anywhere), it grows up to ``QUIET_FACTOR`` times: an event polls at once anyway,
        so an idle console reads Redis less often without showing stale queue figures."""
        base = self.config.interval_s
        if not self.config.events or self.switcher.current != "queues" or len(self.screen_stack) > 1:
            return base
        return base * min(QUIET_FACTOR, 1 + self.quiet_polls // QUIET_AFTER)

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
            self.quiet_polls = self.quiet_polls + 1 if self.events_seen == self._events_at_poll else 0
            self._events_at_poll = self.events_seen
            self.schedule_poll(self.next_interval() if ok else self.backoff())

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
        # start-up time: the event stream loads when the console subscribes
        from engine import events as engine_events

        while self.listening:
            try:
                async for event in engine_events.subscribe(
                    self.client.settings, self.client.backend.redis, running=lambda: self.listening
                ):
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
                self.notify("Open a task first (3 then Enter, or : and its id)")
            return
        while len(self.screen_stack) > 1:
            self.pop_screen()
        if name == "tasks" and self.tasks_view.queue is None:
            selected = self.screen_stack[0].query_one(QueuesView).selected
            if selected is not None:
                self.open_queue(selected, None)
                return
        self.switcher.current = name
        self.current_view.focus_main()
        self.quiet_polls = 0
        self.poll()

    def open_task(self, queue: str, task_id: str) -> None:
        if not queue:  # a task id alone: find its queue first
            self.jump(task_id)
            return
        self.last_task = (queue, task_id)
        # the screen asks for its first poll once mounted (RefreshRequested)
        self.push_screen(TaskDetailScreen(queue, task_id), callback=lambda _: self.poll())

    def open_queue(self, queue: str, state: str | None) -> None:
        """The queue's tasks in ``state``; ``None``: the state that needs attention (dead,
        then retry, active, pending), from the figures on screen or read now."""
        if state is None:
            row = self.view("queues").rows.get(queue)
            if row is None:
                self.jump(queue)
                return
            state = str(overview.attention_state(row.summary.counts))
        self.tasks_view.open(queue, state)
        self.action_show("tasks")

    def on_open_queue(self, message: OpenQueue) -> None:
        self.open_queue(message.queue, message.state)

    def on_open_group(self, message: OpenGroup) -> None:
        self.tasks_view.open_group(message.queue, message.fingerprint, message.label)
        self.action_show("tasks")

    def on_open_task(self, message: OpenTask) -> None:
        self.open_task(message.queue, message.task_id)

    def on_open_worker(self, message: OpenWorker) -> None:
        self.push_screen(WorkerDetailScreen(message.worker_id), callback=lambda _: self.poll())

    def on_open_charts(self, message: OpenCharts) -> None:
        self.push_screen(ChartsScreen(message.queue), callback=lambda _: self.poll())

    def on_refresh_requested(self, message: RefreshRequested) -> None:
        self.poll()

    def on_jump(self, message: Jump) -> None:
        self.jump(message.text)

    def on_copy_text(self, message: CopyText) -> None:
        """``y``: to the terminal's clipboard by OSC 52, as visible text (a control character
        in an id is copied as its placeholder, never as a raw escape)."""
        text = safe.clean(message.text, 500)
        self.copy_to_clipboard(text)
        self.copied.append(text)
        self.notify(f"Copied {message.what} {text}", markup=False)

    def on_paste(self, event: events.Paste) -> None:
        """A task id (or queue, worker) pasted anywhere outside an input opens it."""
        text = event.text.strip()
        if text and "\n" not in text and len(text) <= PASTE_MAX:
            self.jump(text)

    def action_jump(self) -> None:
        def chosen(text: str | None) -> None:
            if text:
                self.jump(text)

        self.push_screen(JumpScreen(), callback=chosen)

    @work(group="jump", exit_on_error=False)
    async def jump(self, text: str) -> None:
        try:
            found = await self.client.call(overview.find, text)
        except ConnectionFailed as exc:
            self.connection_lost(str(exc))
            return
        except RediqError as exc:
            self.notify(safe.clean(str(exc), 300), severity="error", markup=False)
            return
        shown = safe.clean(text, 80)
        if found.kind is FoundKind.QUEUE:
            self.tasks_view.open(found.name, found.state)
            self.action_show("tasks")
        elif found.kind is FoundKind.WORKER:
            self.action_show("workers")
            self.on_open_worker(OpenWorker(found.name))
        elif found.kind is FoundKind.TASK:
            while len(self.screen_stack) > 1:
                self.pop_screen()
            self.open_task(found.queue, found.name)
        else:
            self.notify(f"No queue, worker or task named {shown}", severity="warning", markup=False)

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
            ("filter", list(FilterBar.BINDINGS)),
            ("queues", list(QueuesView.BINDINGS)),
            ("tasks", list(TasksView.BINDINGS)),
            ("all tasks", list(AllTasksView.BINDINGS)),
            ("detail", list(TaskDetailScreen.BINDINGS)),
            ("workers", list(WorkersView.BINDINGS)),
            ("worker", list(WorkerDetailScreen.BINDINGS)),
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

    def action_dismiss_tip(self) -> None:
        """``H`` on the first-launch tip: hide it, for good."""
        for tip in self.screen_stack[0].query(FirstLaunchTip):
            tip.remove()
            if not remember_dismissed():
                self.notify("The tip is hidden until the console restarts (cannot write the state directory)")
