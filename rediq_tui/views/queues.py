"""Queues view: one row per queue. Only the rows on screen are read from Redis (a refresh
costs the same with 10 queues or 10,000); the queue name stays pinned while scrolling right,
and the columns an operator acts on come first so they fit at 80 columns."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.widgets import DataTable, Static

from engine import admin, flow, inspect, overview, serving
from engine.client import AsyncClient
from engine.inspect import Forecast, QueueSummary
from engine.overview import QueueRow
from engine.serving import UnservedType
from engine.task import TaskState
from rediq_tui import fmt, safe
from rediq_tui.messages import (
    BulkStateAction,
    EditRateLimit,
    OpenCharts,
    OpenQueue,
    RefreshRequested,
    WriteRequested,
)
from rediq_tui.views.base import View
from rediq_tui.widgets.filter import FilterBar
from rediq_tui.widgets.table import VimTable

# In priority order: at 80 columns Queue..Ok/m are on screen, the rest scroll (the name stays).
COLUMNS = (
    ("Queue", "queue", 18),
    ("Pending", "pending", 7),
    ("Active", "active", 6),
    ("Dead", "dead", 5),
    ("Ok/m", "ppm", 6),
    ("Err/m", "fpm", 5),
    ("Retry", "retry", 5),
    ("Rsvd", "reserved", 4),
    ("Sched", "scheduled", 5),
    ("Done", "completed", 7),
    ("Head", "head", 4),
    ("Drain", "drain", 5),
    ("Throughput/min", "spark", 14),
)

LEVEL_STYLE = {"ok": "", "warn": "yellow", "alert": "bold red"}
PAUSED_MARK = "▌▌"
"""After a paused queue's name: block elements, which every terminal font draws (U+23F8, the
pause sign, is a box in common monospace fonts and two cells wide in some terminals)."""
TYPES_FOR_FORECAST = 5
"""At most this many task types (seen at the head of pending and among active tasks) get
runtime percentiles in the selected queue's forecast."""
RUNTIMES_EVERY_S = 30.0
"""The selected queue's runtime percentiles (two task pages and the samples) are read at most
this often; every refresh redoes its forecast from the fresh counts."""
UNSERVED_EVERY_S = 5.0
"""The selected queue's unserved task types (``engine.serving``) are read at most this often."""
GROUP_SAMPLE = 200
"""Pending tasks at the head of the selected queue read for its busiest groups (bounded)."""
WINDOW_MARGIN = 5
"""Rows read above and below the visible ones (a short scroll shows fresh figures at once)."""


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


def per_min(value: float) -> str:
    """The one way a rate per minute is written (the column and the line under it agree)."""
    if value <= 0:
        return "0"
    return f"{value:.1f}" if value < 10 else f"{value:,.0f}"


def forecast_line(fc: Forecast, row: QueueRow | None = None) -> Text:
    """The selected queue's detail line: backlog, the same Ok/m as its column, drain time and
    runtimes per type."""
    line = Text(no_wrap=True, overflow="ellipsis")
    line.append(safe.clean(fc.queue, 24), style="bold")
    if row is not None and row.summary.paused:
        line.append(" · paused", style="bold yellow")
    line.append(f" · {fc.pending:,} pending")
    if row is not None:
        line.append(f" · ok {per_min(row.ok_per_min)}/min, in {per_min(row.in_per_min)}/min (last 60 s)")
        if row.reserved:
            line.append(f" · {row.running:,} running + {row.reserved:,} reserved")
    line.append(" · ")
    line.append(
        fmt.drain(fc.pending, fc.drain_minutes) if fc.pending else "empty", style=LEVEL_STYLE[fc.level]
    )
    for rt in fc.runtimes:
        line.append(
            f" · {safe.clean(rt.task_type, 20)} p50 {fmt.seconds(rt.p50_s)} p95 {fmt.seconds(rt.p95_s)}"
        )
    return line


def unserved_line(unserved: list[UnservedType]) -> Text:
    """Task types waiting in the selected queue that no live worker serves, and why."""
    line = Text(no_wrap=True, overflow="ellipsis")
    line.append("⚠ unserved: ", style="bold red")
    for n, u in enumerate(unserved):
        if n:
            line.append(" · ")
        line.append(safe.clean(u.task_type, 30), style="bold")
        line.append(f" ({u.waiting:,}{'+' if u.waiting >= serving.SAMPLE else ''} waiting: ")
        line.append(safe.clean(u.why, 120) + ")")
    return line


def bucket_text(bucket: flow.BucketState) -> str:
    """The selected queue's limit and tokens now, '' when it has neither limit nor pause."""
    paused = f"paused {bucket.paused_ms:,} ms (RateLimited)" if bucket.paused_ms else ""
    if bucket.limit is None:
        return paused
    tokens = f"{bucket.tokens} token(s)" if bucket.tokens else f"next token in {bucket.next_token_ms:,} ms"
    return f"limit {bucket.limit}: {paused or tokens}"


def _num(n: int, style: str = "") -> Text:
    return Text(fmt.count(n), style=style if n else "dim", justify="right")


PLACEHOLDER = Text("…", style="dim", justify="right")


@dataclass(frozen=True, slots=True)
class QueuesData:
    names: list[str]
    rows: list[QueueRow]
    forecast: Forecast | None
    unserved: list[UnservedType] | None = None
    """The selected queue's unserved types (None: not read on this poll, keep the last)."""
    bucket: tuple[str, flow.BucketState] | None = None
    """The selected queue's rate limit and its bucket now."""
    groups: list[flow.GroupBacklog] = field(default_factory=list)
    """The selected queue's busiest concurrency groups (a bounded sample of its head)."""


class QueuesView(View):
    BINDINGS = [
        Binding("slash", "filter", "Filter", id="queues.filter"),
        Binding("D", "open_dead", "Dead", id="queues.open_dead"),
        Binding("h", "charts", "Last hour", id="queues.charts"),
        Binding("P", "toggle_pause", "Pause", id="queues.pause"),
        Binding("L", "rate_limit", "Rate limit", id="queues.rate_limit"),
        Binding("R", "requeue_dead", "Requeue dead", id="queues.requeue_dead"),
        Binding("F", "flush_dead", "Flush dead", id="queues.flush_dead"),
    ]
    MUTATING = frozenset({"toggle_pause", "rate_limit", "requeue_dead", "flush_dead"})

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.names: list[str] = []
        """Every queue, sorted (one SMEMBERS per refresh)."""
        self.rows: dict[str, QueueRow] = {}
        """The last figures read of each queue (only the visible ones are refreshed)."""
        self.forecast: Forecast | None = None
        """The selected queue's full forecast (with runtimes), read on each poll."""
        self._drawn: dict[str, QueueRow] = {}
        self._runtimes: dict[str, tuple[float, Forecast]] = {}
        """The selected queues' runtime percentiles and when they were read."""
        self.unserved: list[UnservedType] = []
        """Task types waiting in the selected queue that no live worker serves."""
        self._unserved_read: tuple[str, float] | None = None
        self.bucket: tuple[str, flow.BucketState] | None = None
        self.groups: list[flow.GroupBacklog] = []

    @property
    def summaries(self) -> dict[str, QueueSummary]:
        return {name: row.summary for name, row in self.rows.items()}

    @property
    def forecasts(self) -> dict[str, Forecast]:
        return {name: local_forecast(row.summary) for name, row in self.rows.items()}

    def compose(self) -> ComposeResult:
        yield Static("Queues", classes="view-title", id="queues-title")
        yield FilterBar("queue name", id="queues-filter")
        table = VimTable(id="queues-table")
        table.fixed_columns = 1
        for label, key, width in COLUMNS:
            table.add_column(label, key=key, width=width)
        yield table
        yield Static("", classes="detail-line", id="queues-detail")
        yield Static("", classes="detail-line -hidden", id="queues-unserved")

    def on_mount(self) -> None:
        self.watch(self.table, "scroll_y", self._scrolled, init=False)

    def _scrolled(self) -> None:
        # rows came into view that may never have been read: read them now
        if any(n not in self.rows for n in self.window()):
            self.post_message(RefreshRequested())

    @property
    def table(self) -> VimTable:
        return self.query_one("#queues-table", VimTable)

    def focus_main(self) -> None:
        self.table.focus()

    def shown_names(self) -> list[str]:
        return [n for n in self.names if self.keep(n)]

    def window(self) -> list[str]:
        """The queues whose rows are on screen (plus a margin) and the selected one."""
        shown = self.shown_names()
        table = self.table
        top = int(table.scroll_y)
        height = max(1, table.size.height - 1) if table.size.height else 30
        names = shown[max(0, top - WINDOW_MARGIN) : top + height + WINDOW_MARGIN]
        selected = self.selected
        if selected is not None and selected not in names and selected in self.names:
            names.append(selected)
        return names

    async def fetch(self, client: AsyncClient) -> QueuesData:
        names = await client.call(inspect.queue_names)
        self.names = names
        known = set(names)
        wanted = [n for n in self.window() if n in known] or [n for n in names if self.keep(n)][:40]
        rows = await client.call(overview.queue_rows, wanted)
        selected = self.selected if self.selected in names else (wanted[0] if wanted else None)
        if selected is None:
            return QueuesData(names, rows, None)
        row = next((r for r in rows if r.name == selected), None)
        bucket = (selected, await client.call(flow.read_bucket, selected))
        groups = await client.call(flow.group_backlogs, [selected], GROUP_SAMPLE, 3)
        unserved = None
        last = self._unserved_read
        if last is None or last[0] != selected or time.monotonic() - last[1] >= UNSERVED_EVERY_S:
            unserved = await client.call(serving.unserved_types, selected)
            self._unserved_read = (selected, time.monotonic())
        cached = self._runtimes.get(selected)
        if row is not None and cached is not None and time.monotonic() - cached[0] < RUNTIMES_EVERY_S:
            # runtimes change slowly: between reads the forecast is redone from the fresh row
            refreshed = inspect.forecast_of(row.summary, cached[1].runtimes)
            return QueuesData(names, rows, refreshed, unserved, bucket, groups)
        # bounded: the heads of pending and active give the task types worth a p50/p95
        heads = [
            await client.call(inspect.page, selected, state, 0, 20)
            for state in (TaskState.PENDING, TaskState.ACTIVE)
        ]
        types = list(dict.fromkeys(t.type for page in heads for t in page.tasks))[:TYPES_FOR_FORECAST]
        forecast = await client.call(inspect.forecast, selected, types)
        if forecast is not None:
            self._runtimes[selected] = (time.monotonic(), forecast)
        return QueuesData(names, rows, forecast, unserved, bucket, groups)

    def show(self, data: QueuesData) -> None:
        self.names = data.names
        self.forecast = data.forecast
        known = set(data.names)
        self.rows = {n: r for n, r in self.rows.items() if n in known}
        for row in data.rows:
            self.rows[row.name] = row
        if data.unserved is not None:
            self.unserved = data.unserved
        self.bucket = data.bucket
        self.groups = data.groups
        self._draw_rows()

    def _draw_rows(self) -> None:
        shown = self.shown_names()
        table = self.table
        if table.row_keys() != shown:
            table.sync([(n, self._cells(n, self.rows.get(n))) for n in shown])
            on_screen = set(shown)
            self._drawn = {n: r for n, r in self.rows.items() if n in on_screen}
        else:
            # only cells whose text changed are redrawn: an idle system redraws nothing
            for name in shown:
                row = self.rows.get(name)
                if row is not None and self._drawn.get(name) != row:
                    for (_, key, _), cell in zip(COLUMNS, self._cells(name, row), strict=True):
                        if table.get_cell(name, key) != cell:
                            table.update_cell(name, key, cell)
                    self._drawn[name] = row
            table.check_idle()
        self._title(shown)
        self._detail()

    def _cells(self, name: str, row: QueueRow | None) -> list[Text]:
        if row is None:
            return [safe.text(name, 40, style="bold")] + [PLACEHOLDER] * (len(COLUMNS) - 1)
        q = row.summary
        fc = local_forecast(q)
        level = LEVEL_STYLE[fc.level]
        label = safe.text(name, 40, style=f"bold {level}".strip())
        if q.paused:  # in the pinned column: visible at any width
            label.append(f" {PAUSED_MARK}", style="bold yellow")
        return [
            label,
            _num(q.count("pending")),
            _num(row.running, "green"),
            _num(q.count("dead"), "bold red"),
            Text(per_min(row.ok_per_min), style="" if row.ok_per_min else "dim", justify="right"),
            Text(per_min(row.err_per_min), style="red" if row.err_per_min else "dim", justify="right"),
            _num(q.count("retry"), "yellow"),
            _num(row.reserved, "cyan"),
            _num(q.count("scheduled")),
            _num(q.count("completed")),
            Text(fmt.duration(q.head_age_s), justify="right"),
            Text(short_drain(fc), style=level, justify="right"),
            Text(fmt.sparkline(q.throughput, 14), style="cyan"),
        ]

    def _title(self, shown: list[str]) -> None:
        text = Text(no_wrap=True, overflow="ellipsis")
        text.append(f"Queues · {len(self.names):,}")
        if self.needle:
            text.append(f" · {len(shown):,} match ")
            text.append(safe.clean(self.needle, 20), style="bold")
        on_screen = set(shown)
        dead = sum(r.summary.count("dead") for n, r in self.rows.items() if n in on_screen)
        if dead:
            text.append(f" · {dead:,} dead on screen", style="bold red")
        text.append(" · Enter: tasks needing attention")
        self.query_one("#queues-title", Static).update(text)

    @property
    def selected(self) -> str | None:
        return self.table.cursor_key

    def _detail(self) -> None:
        name = self.selected
        row = self.rows.get(name) if name else None
        if name is None:
            text = Text("No queues yet" if not self.names else "No queue matches the filter", style="dim")
        elif self.forecast is not None and self.forecast.queue == name:
            text = forecast_line(self.forecast, row)
        elif row is not None:
            text = forecast_line(local_forecast(row.summary), row)
        else:
            text = Text(safe.clean(name, 40), style="bold")
        if name is not None and self.bucket is not None and self.bucket[0] == name:
            limit_text = bucket_text(self.bucket[1])
            if limit_text:
                text.append(f" · {limit_text}", style="magenta")
        for g in self.groups:
            if g.queue == name:
                held = f"{g.holding}/{g.limit}" if g.limit is not None else f"{g.holding}"
                text.append(f" · group {safe.clean(g.group, 24)}: {g.pending:,} pending, {held} running")
        self.query_one("#queues-detail", Static).update(text)
        unserved = self.unserved if self._unserved_read and self._unserved_read[0] == name else []
        line = self.query_one("#queues-unserved", Static)
        line.set_class(not unserved, "-hidden")
        if unserved:
            line.update(unserved_line(unserved))

    def filter_changed(self) -> None:
        self._draw_rows()
        if any(n not in self.rows for n in self.window()):
            self.post_message(RefreshRequested())

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        event.stop()
        self._detail()

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        event.stop()
        if event.row_key.value is not None:
            self.post_message(OpenQueue(str(event.row_key.value), None))

    def action_open_dead(self) -> None:
        if self.selected:
            self.post_message(OpenQueue(self.selected, "dead"))

    def action_charts(self) -> None:
        if self.selected:
            self.post_message(OpenCharts(self.selected))

    def action_toggle_pause(self) -> None:
        name = self.selected
        if name is None:
            return
        row = self.rows.get(name)
        shown = safe.clean(name, 60)
        paused = row is not None and row.summary.paused

        async def toggle(client: AsyncClient) -> str:
            await client.call(admin.resume if paused else admin.pause, name)
            return f"{'Resumed' if paused else 'Paused'} queue {shown}"

        self.post_message(WriteRequested(toggle))

    def action_rate_limit(self) -> None:
        if self.selected:
            current = self.bucket[1] if self.bucket and self.bucket[0] == self.selected else None
            shown = bucket_text(current) if current else ""
            self.post_message(EditRateLimit(self.selected, shown or "no rate limit"))

    def action_requeue_dead(self) -> None:
        if self.selected:
            self.post_message(BulkStateAction("requeue", self.selected, "dead"))

    def action_flush_dead(self) -> None:
        if self.selected:
            self.post_message(BulkStateAction("flush", self.selected, "dead"))
