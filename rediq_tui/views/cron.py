"""Cron view: registered entries with their next fire time and last outcome."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.widgets import DataTable, Static

from engine import admin, inspect
from engine.client import AsyncClient
from engine.inspect import CronEntryInfo
from rediq_tui import fmt, safe
from rediq_tui.messages import WriteRequested
from rediq_tui.views.base import View
from rediq_tui.widgets.filter import FilterBar
from rediq_tui.widgets.table import VimTable

OUTCOME_STYLE = {"completed": "green", "dead": "bold red", "cancelled": "yellow", "active": "cyan"}


class CronView(View):
    BINDINGS = [
        Binding("slash", "filter", "Filter", id="cron.filter"),
        Binding("x", "run_now", "Run now", id="cron.run_now"),
        Binding("P", "toggle_pause", "Pause/resume", id="cron.pause"),
    ]
    MUTATING = frozenset({"run_now", "toggle_pause"})

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.entries: dict[str, CronEntryInfo] = {}

    def compose(self) -> ComposeResult:
        yield Static("Cron", classes="view-title", id="cron-title")
        yield FilterBar("name, schedule, type or queue", id="cron-filter")
        table = VimTable(id="cron-table")
        for label, key, width in (
            ("Name", "name", 16),
            ("Schedule", "expr", 12),
            ("Next fire (UTC)", "next", 16),
            ("In", "in", 8),
            ("Last", "last", 16),
            ("Outcome", "outcome", 9),
            ("Type", "type", 16),
            ("Queue", "queue", 12),
        ):
            table.add_column(label, key=key, width=width)
        yield table
        yield Static("", id="cron-detail")

    @property
    def table(self) -> VimTable:
        return self.query_one("#cron-table", VimTable)

    def focus_main(self) -> None:
        self.table.focus()

    async def fetch(self, client: AsyncClient) -> list[CronEntryInfo]:
        return await client.call(inspect.cron_entries)

    def show(self, data: list[CronEntryInfo]) -> None:
        self.entries = {e.name: e for e in data}
        self._data = data
        now = self.host.clock()
        rows = []
        for e in data:
            if not self.keep(e.name, e.expression, e.task_type, e.queue or ""):
                continue
            outcome = e.last_state or ("-" if e.last_fire_ms is None else "expired")
            rows.append(
                (
                    e.name,
                    [
                        safe.text(e.name, 20, style="bold"),
                        safe.text(e.expression + ("" if e.timezone == "UTC" else f" {e.timezone}"), 24),
                        Text(
                            "paused" if e.paused else fmt.stamp(e.next_fire_ms)[:16],
                            style="yellow" if e.paused else "",
                        ),
                        Text(fmt.relative(e.next_fire_ms, now) if not e.paused else "-"),
                        Text(fmt.stamp(e.last_fire_ms)[:16]),
                        safe.text(outcome, 12, style=OUTCOME_STYLE.get(outcome, "")),
                        safe.text(e.task_type, 20),
                        safe.text(e.queue or "(default)", 16),
                    ],
                )
            )
        self.table.sync(rows)
        self.query_one("#cron-title", Static).update(Text(f"Cron · {len(data)} entries", no_wrap=True))
        self._detail()

    def filter_changed(self) -> None:
        self.show(getattr(self, "_data", []))

    def detail_text(self, entry: CronEntryInfo) -> Text:
        """The selected entry: its next five fire times and its last runs with their outcome."""
        now = self.host.clock()
        out = Text(no_wrap=True, overflow="ellipsis")
        out.append(safe.clean(entry.name, 30), style="bold")
        out.append(" · next: ", style="dim")
        if entry.paused:
            out.append("paused", style="yellow")
        elif entry.next_fires:
            first = entry.next_fires[0]
            out.append(f"{fmt.stamp(first)[:16]} ({fmt.relative(first, now)})")
            for i, ms in enumerate(entry.next_fires[1:5]):
                out.append("\n      " if i % 3 == 0 else " · ")
                out.append(fmt.stamp(ms)[:16])
        else:
            out.append("-")
        out.append("\nlast runs: ", style="dim")
        if not entry.runs:
            out.append("none yet", style="dim")
        for run in entry.runs[:4]:
            state = run.state or "expired"
            out.append(f"\n  {fmt.stamp(run.fire_ms)[:16]}  ")
            out.append(f"{safe.clean(state, 12):<10}", style=OUTCOME_STYLE.get(state, ""))
            out.append(safe.clean(run.task_id, 44), style="dim")
            if run.manual:
                out.append(" (run now)", style="cyan")
            elif run.startup:
                out.append(" (at startup)", style="cyan")
        return out

    def _detail(self) -> None:
        key = self.table.cursor_key
        entry = self.entries.get(key) if key is not None else None
        self.query_one("#cron-detail", Static).update(self.detail_text(entry) if entry else Text(""))

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        event.stop()
        self._detail()

    def action_run_now(self) -> None:
        name = self.table.cursor_key
        if name is None:
            return

        async def run(client: AsyncClient) -> str:
            task_id = await client.call(admin.run_cron_now, name)
            return f"Cron {safe.clean(name, 40)} fired: task {safe.clean(task_id, 40)}"

        self.post_message(WriteRequested(run))

    def action_toggle_pause(self) -> None:
        name = self.table.cursor_key
        if name is None:
            return
        entry = self.entries.get(name)
        paused = not (entry.paused if entry else False)

        async def toggle(client: AsyncClient) -> str:
            await client.call(admin.set_cron_paused, name, paused)
            return f"Cron {safe.clean(name, 40)} {'paused' if paused else 'resumed'}"

        self.post_message(WriteRequested(toggle))
