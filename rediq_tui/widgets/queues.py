"""Queues view: one row per queue with counts, rates, head age and a throughput sparkline."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.widgets import DataTable, Static

from engine import admin, inspect
from engine.client import AsyncClient
from engine.inspect import QueueSummary
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
    ("Throughput", "spark"),
)


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

    def compose(self) -> ComposeResult:
        yield Static("Queues", classes="view-title", id="queues-title")
        table = VimTable(id="queues-table")
        for label, key in COLUMNS:
            table.add_column(label, key=key)
        yield table

    @property
    def table(self) -> VimTable:
        return self.query_one(VimTable)

    def focus_main(self) -> None:
        self.table.focus()

    async def fetch(self, client: AsyncClient) -> list[QueueSummary]:
        return await client.call(inspect.queues)

    def show(self, data: list[QueueSummary]) -> None:
        self.summaries = {q.name: q for q in data}
        rows = []
        for q in data:
            rows.append(
                (
                    q.name,
                    [
                        safe.text(q.name, 24, style="bold"),
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
