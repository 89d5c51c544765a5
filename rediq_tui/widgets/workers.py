"""Workers view: live workers from their heartbeats, plus workers launched from here."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.widgets import Log, Static

from engine import inspect
from engine.client import AsyncClient
from engine.inspect import WorkerSummary
from rediq_tui import fmt, safe
from rediq_tui.widgets.base import View
from rediq_tui.widgets.table import VimTable

FRESH_S = 5.0
"""Heartbeats younger than this show as ``now``."""


class WorkersView(View):
    BINDINGS = [
        Binding("L", "launch", "Launch worker", id="workers.launch"),
        Binding("S", "stop", "Stop launched", id="workers.stop"),
    ]
    MUTATING = frozenset({"launch"})

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.summaries: list[WorkerSummary] = []

    def compose(self) -> ComposeResult:
        yield Static("Workers", classes="view-title", id="workers-title")
        table = VimTable(id="workers-table")
        for label, key in (
            ("Host", "host"),
            ("PID", "pid"),
            ("Queues", "queues"),
            ("Busy", "busy"),
            ("Overdue", "overdue"),
            ("Up", "uptime"),
            ("Beat", "beat"),
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
            beat_style = "bold red" if w.stale else "green"
            rows.append(
                (
                    w.id,
                    [
                        safe.text(w.host, 20),
                        Text(str(w.pid), justify="right"),
                        safe.text(",".join(w.queues), 24),
                        Text(f"{w.busy}/{w.concurrency}", justify="right", style="bold" if w.busy else "dim"),
                        # slots held by sync handlers past their timeout: the worker takes less work
                        Text(
                            str(w.overdue) if w.overdue else "-",
                            justify="right",
                            style="bold red" if w.overdue else "dim",
                        ),
                        Text(fmt.duration(w.uptime_s), justify="right"),
                        Text(
                            ("STALE " if w.stale else "")
                            + ("now" if w.heartbeat_age_s < FRESH_S else fmt.duration(w.heartbeat_age_s)),
                            style=beat_style,
                            justify="right",
                        ),
                        safe.text(" ".join(t.split("|", 1)[-1][:8] for t in w.tasks[:6]), 60),
                    ],
                )
            )
        self.table.sync(rows)
        stale = sum(1 for w in data if w.stale)
        title = Text(f"Workers · {len(data)} live", no_wrap=True)
        if stale:
            title.append(f" · {stale} stale", style="bold red")
        fenced = sum(w.fenced for w in data)  # calls refused: their delivery was over
        if fenced:
            title.append(f" · {fenced} fenced", style="yellow")
        title.append(" · L: launch one")
        self.query_one("#workers-title", Static).update(title)
        self.show_launched()

    def show_launched(self) -> None:
        launched = self.rapp.launched
        title = self.query_one("#launched-title", Static)
        log = self.query_one("#launched-log", Log)
        title.set_class(not launched, "-hidden")
        log.set_class(not launched, "-hidden")
        if not launched:
            return
        last = launched[-1]
        title.update(Text(f"Launched: {last.label} · S: stop", no_wrap=True))
        lines = [safe.clean(line, 300) for line in list(last.lines)[-50:]]
        log.clear()
        log.write_lines(lines)

    def action_launch(self) -> None:
        self.rapp.launch_worker_dialog()

    def action_stop(self) -> None:
        self.rapp.stop_launched()
