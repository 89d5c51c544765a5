"""Queues view: one row per queue with counts, rates, head age and a throughput sparkline."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.widgets import DataTable, Static

from engine import admin, inspect
from engine.client import AsyncClient
from engine.inspect import Forecast, QueueSummary
from engine.task import TaskState
from rediq_tui import fmt, safe
from rediq_tui.messages import OpenQueue
from rediq_tui.widgets.base import View
from rediq_tui.widgets.table import VimTable

COLUMNS = (
    ("Queue", "queue"),
    ("Pend", "pending"),
    ("Act", "active"),
    ("Sched", "scheduled"),
    ("Retry", "retry"),
    ("Dead", "dead"),
    ("Done", "completed"),
    ("⏸", "paused"),
    ("Ok/m", "ppm"),
    ("Err/m", "fpm"),
    ("Head", "head"),
    ("Drain", "drain"),
    ("Throughput", "spark"),
)


LEVEL_STYLE = {"ok": "", "warn": "yellow", "alert": "bold red"}
TYPES_FOR_FORECAST = 5
"""At most this many task types (seen at the head of pending and among active tasks) get
runtime percentiles in the selected queue's forecast."""


def local_forecast(q: QueueSummary) -> Forecast:
    """The forecast of ``engine.inspect.forecast`` without runtimes, from the summary already
    read (no extra Redis call per row)."""
    return inspect.forecast_of(q)


def short_drain(fc: Forecast) -> str:
    if not fc.pending:
        return "-"
    if fc.drain_minutes is None:
        return "never"
    m = fc.drain_minutes
    return f"~{max(1, round(m))}m" if m < 120 else f"~{m / 60:.0f}h"


def forecast_line(fc: Forecast) -> Text:
    """The selected queue's detail line: backlog, rate, drain time and runtimes per type."""
    line = Text(no_wrap=True, overflow="ellipsis")
    line.append(safe.clean(fc.queue, 24), style="bold")
    line.append(f" · {fc.pending:,} pending · {fc.rate_per_min:.1f}/min out, {fc.inflow_per_min:.1f} in · ")
    line.append(
        fmt.drain(fc.pending, fc.drain_minutes) if fc.pending else "empty", style=LEVEL_STYLE[fc.level]
    )
    for rt in fc.runtimes:
        line.append(
            f" · {safe.clean(rt.task_type, 20)} p50 {fmt.seconds(rt.p50_s)} p95 {fmt.seconds(rt.p95_s)}"
        )
    return line


def _num(n: int, style: str = "") -> Text:
    return Text(fmt.count(n), style=style if n else "dim", justify="right")


class QueuesView(View):
    BINDINGS = [
        Binding("P", "toggle_pause", "Pause/resume", id="queues.pause"),
        Binding("R", "requeue_dead", "Requeue dead", id="queues.requeue_dead"),
        Binding("F", "flush_dead", "Flush dead", id="queues.flush_dead"),
        Binding("D", "open_dead", "Dead tasks", id="queues.open_dead"),
    ]
    MUTATING = frozenset({"toggle_pause", "requeue_dead", "flush_dead"})

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.summaries: dict[str, QueueSummary] = {}
        self.forecasts: dict[str, Forecast] = {}
        self.forecast: Forecast | None = None
        """The selected queue's full forecast (with runtimes), read on each poll."""

    def compose(self) -> ComposeResult:
        yield Static("Queues", classes="view-title", id="queues-title")
        table = VimTable(id="queues-table")
        for label, key in COLUMNS:
            table.add_column(label, key=key)
        yield table
        yield Static("", classes="detail-line", id="queues-detail")

    @property
    def table(self) -> VimTable:
        return self.query_one(VimTable)

    def focus_main(self) -> None:
        self.table.focus()

    async def fetch(self, client: AsyncClient) -> tuple[list[QueueSummary], Forecast | None]:
        summaries = await client.call(inspect.queues)
        names = [q.name for q in summaries]
        selected = self.selected if self.selected in names else (names[0] if names else None)
        if selected is None:
            return summaries, None
        # bounded: the heads of pending and active give the task types worth a p50/p95
        heads = [
            await client.call(inspect.page, selected, state, 0, 20)
            for state in (TaskState.PENDING, TaskState.ACTIVE)
        ]
        types = list(dict.fromkeys(t.type for page in heads for t in page.tasks))[:TYPES_FOR_FORECAST]
        return summaries, await client.call(inspect.forecast, selected, types)

    def show(self, data: tuple[list[QueueSummary], Forecast | None]) -> None:
        summaries, forecast = data
        self.forecast = forecast
        self._show(summaries)
        self._detail()

    def _show(self, data: list[QueueSummary]) -> None:
        self.summaries = {q.name: q for q in data}
        self.forecasts = {q.name: local_forecast(q) for q in data}
        rows = []
        for q in data:
            fc = self.forecasts[q.name]
            level = LEVEL_STYLE[fc.level]
            rows.append(
                (
                    q.name,
                    [
                        safe.text(q.name, 24, style=f"bold {level}".strip()),
                        _num(q.count("pending")),
                        _num(q.count("active"), "green"),
                        _num(q.count("scheduled")),
                        _num(q.count("retry"), "yellow"),
                        _num(q.count("dead"), "bold red"),
                        _num(q.count("completed")),
                        Text("⏸" if q.paused else "", style="bold yellow"),
                        _num(q.processed_per_min),
                        _num(q.failed_per_min, "red"),
                        Text(fmt.duration(q.head_age_s), justify="right"),
                        Text(short_drain(fc), style=level, justify="right"),
                        Text(fmt.sparkline(q.throughput), style="cyan"),
                    ],
                )
            )
        self.table.sync(rows)
        total_dead = sum(q.count("dead") for q in data)
        self.query_one("#queues-title", Static).update(
            Text(f"Queues · {len(data):,} queues · {total_dead:,} dead · Enter: tasks", no_wrap=True)
        )

    @property
    def selected(self) -> str | None:
        return self.table.cursor_key

    def _detail(self) -> None:
        name = self.selected
        if name is None:
            text = Text("No queues yet", style="dim")
        elif self.forecast is not None and self.forecast.queue == name:
            text = forecast_line(self.forecast)
        elif name in self.forecasts:
            text = forecast_line(self.forecasts[name])
        else:
            text = Text("")
        self.query_one("#queues-detail", Static).update(text)

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        event.stop()
        self._detail()

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        event.stop()
        if event.row_key.value is not None:
            self.post_message(OpenQueue(str(event.row_key.value), "pending"))

    def action_open_dead(self) -> None:
        if self.selected:
            self.post_message(OpenQueue(self.selected, "dead"))

    def action_toggle_pause(self) -> None:
        name = self.selected
        if name is None:
            return
        summary = self.summaries.get(name)
        shown = safe.clean(name, 40)
        if summary is not None and summary.paused:

            async def resume() -> str:
                await self.rapp.client.call(admin.resume, name)
                return f"Resumed queue {shown}"

            self.rapp.write(resume)
        else:

            async def pause() -> str:
                await self.rapp.client.call(admin.pause, name)
                return f"Paused queue {shown}"

            self.rapp.write(pause)

    def action_requeue_dead(self) -> None:
        if self.selected:
            self.rapp.bulk_state_action("requeue", self.selected, "dead")

    def action_flush_dead(self) -> None:
        if self.selected:
            self.rapp.bulk_state_action("flush", self.selected, "dead")
