"""Workers view: live workers from their heartbeats, plus workers launched from here. Enter
opens a worker's detail; S asks any worker (not only launched ones) to drain and stop."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.widgets import DataTable, Log, Static

from engine import inspect
from engine.client import AsyncClient
from engine.inspect import WorkerSummary
from rediq_tui import fmt, safe
from rediq_tui.messages import LaunchRequested, OpenWorker, StopWorker
from rediq_tui.views.base import View
from rediq_tui.widgets.filter import FilterBar
from rediq_tui.widgets.table import VimTable

FRESH_S = 5.0
"""Heartbeats younger than this show as ``now``."""


def worker_label(w: WorkerSummary) -> str:
    return f"{w.host}:{w.pid} ({w.id})"


class WorkersView(View):
    BINDINGS = [
        Binding("slash", "filter", "Filter", id="workers.filter"),
        Binding("S", "stop", "Stop worker", id="workers.stop"),
        Binding("L", "launch", "Launch worker", id="workers.launch"),
        Binding("X", "stop_launched", "Stop launched", show=False, id="workers.stop_launched"),
    ]
    MUTATING = frozenset({"launch", "stop"})

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.summaries: list[WorkerSummary] = []

    def compose(self) -> ComposeResult:
        yield Static("Workers", classes="view-title", id="workers-title")
        yield FilterBar("host, pid, queue or id", id="workers-filter")
        table = VimTable(id="workers-table")
        table.fixed_columns = 1
        for label, key in (
            ("Host", "host"),
            ("PID", "pid"),
            ("Busy", "busy"),
            ("Overdue", "overdue"),
            ("Beat", "beat"),
            ("Queues", "queues"),
            ("Up", "uptime"),
            ("Tasks", "tasks"),
        ):
            table.add_column(label, key=key)
        yield table
        yield Static("", id="launched-title", classes="view-title")
        yield Log(id="launched-log", max_lines=200)

    @property
    def table(self) -> VimTable:
        return self.query_one("#workers-table", VimTable)

    def focus_main(self) -> None:
        self.table.focus()

    async def fetch(self, client: AsyncClient) -> list[WorkerSummary]:
        return await client.call(inspect.workers)

    def show(self, data: list[WorkerSummary]) -> None:
        self.summaries = data
        rows = []
        for w in data:
            if not self.keep(w.host, str(w.pid), w.id, ",".join(w.queues)):
                continue
            beat_style = "bold red" if w.stale else "green"
            rows.append(
                (
                    w.id,
                    [
                        safe.text(w.host, 20),
                        Text(str(w.pid), justify="right"),
                        Text(f"{w.busy}/{w.concurrency}", justify="right", style="bold" if w.busy else "dim"),
                        # slots held by sync handlers past their timeout: the worker takes less work
                        Text(
                            str(w.overdue) if w.overdue else "-",
                            justify="right",
                            style="bold red" if w.overdue else "dim",
                        ),
                        Text(
                            ("STALE " if w.stale else "")
                            + ("now" if w.heartbeat_age_s < FRESH_S else fmt.duration(w.heartbeat_age_s)),
                            style=beat_style,
                            justify="right",
                        ),
                        safe.text(",".join(w.queues), 24),
                        Text(fmt.duration(w.uptime_s), justify="right"),
                        safe.text(" ".join(t.split("|", 1)[-1][:8] for t in w.tasks[:6]), 60),
                    ],
                )
            )
        self.table.sync(rows)
        stale = sum(1 for w in data if w.stale)
        title = Text(f"Workers · {len(data)} live", no_wrap=True, overflow="ellipsis")
        if stale:
            title.append(f" · {stale} stale", style="bold red")
        fenced = sum(w.fenced for w in data)  # calls refused: their delivery was over
        if fenced:
            title.append(f" · {fenced} fenced", style="yellow")
        if self.needle:
            title.append(f" · {len(rows)} match ")
            title.append(safe.clean(self.needle, 20), style="bold")
        title.append(" · Enter: detail · S: stop · L: launch")
        self.query_one("#workers-title", Static).update(title)
        self.show_launched()

    def filter_changed(self) -> None:
        self.show(self.summaries)

    def show_launched(self) -> None:
        launched = self.host.launched
        titles, logs = self.query("#launched-title").results(Static), self.query("#launched-log").results(Log)
        title, log = next(titles, None), next(logs, None)
        if title is None or log is None:  # the view is being torn down (the app is exiting)
            return
        title.set_class(not launched, "-hidden")
        log.set_class(not launched, "-hidden")
        if not launched:
            return
        last = launched[-1]
        title.update(Text(f"Launched: {last.label} · X: stop it (SIGTERM)", no_wrap=True))
        lines = [safe.clean(line, 300) for line in list(last.lines)[-50:]]
        log.clear()
        log.write_lines(lines)

    def selected(self) -> WorkerSummary | None:
        key = self.table.cursor_key
        return next((w for w in self.summaries if w.id == key), None)

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        event.stop()
        if event.row_key.value is not None:
            self.post_message(OpenWorker(str(event.row_key.value)))

    def action_launch(self) -> None:
        self.post_message(LaunchRequested())

    def action_stop(self) -> None:
        w = self.selected()
        if w is None:
            self.app.bell()
            return
        self.post_message(StopWorker(w.id, worker_label(w)))

    def action_stop_launched(self) -> None:
        self.post_message(StopWorker("", "launched"))
