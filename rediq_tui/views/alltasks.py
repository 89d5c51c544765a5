"""All tasks: every queue and state in one list, filtered by a small query typed after ``/``:
``state:dead queue:payment type:order fp:3fa2 Berlin`` (words without a prefix search the id,
payload and error). Paged (n/b), with counts per state; Enter opens a task."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.widgets import DataTable, Static

from engine import overview
from engine.client import AsyncClient
from engine.overview import AllTasksPage, TaskQuery
from engine.task import TaskInfo, TaskState
from rediq_tui import fmt, safe
from rediq_tui.messages import CopyText, OpenTask, RefreshRequested
from rediq_tui.views.base import View
from rediq_tui.widgets.filter import FilterBar
from rediq_tui.widgets.table import VimTable

CHROME_ROWS = 5  # status, title, counts, header, footer
INFO_WIDTH = 120  # the error or payload preview, in cells
STATE_STYLE = {
    "dead": "bold red",
    "retry": "yellow",
    "active": "green",
    "completed": "dim",
    "expired": "magenta",
}


def parse_query(text: str) -> TaskQuery:
    """``state:dead,retry queue:a,b type:x fp:y free words`` → a query (unknown states are
    searched as text, so a typo never hides everything silently)."""
    states: list[TaskState] = []
    queues: list[str] = []
    task_type = fingerprint = ""
    words: list[str] = []
    for token in text.split():
        key, sep, value = token.partition(":")
        if not sep or not value:
            words.append(token)
        elif key == "state":
            for s in value.split(","):
                try:
                    states.append(TaskState(s))
                except ValueError:
                    words.append(token)
        elif key == "queue":
            queues += [q for q in value.split(",") if q]
        elif key == "type":
            task_type = value
        elif key in ("fp", "fingerprint"):
            fingerprint = value
        else:
            words.append(token)
    return TaskQuery(tuple(states), tuple(queues), task_type, fingerprint, " ".join(words))


def describe(query: TaskQuery) -> str:
    parts = []
    if query.states:
        parts.append("state " + ",".join(str(s) for s in query.states))
    if query.queues:
        parts.append("queue " + ",".join(query.queues))
    if query.task_type:
        parts.append(f"type ~{query.task_type}")
    if query.fingerprint:
        parts.append(f"fp {query.fingerprint}")
    if query.text:
        parts.append(f"text {query.text!r}")
    return " · ".join(parts)


class AllTasksView(View):
    BINDINGS = [
        Binding("slash", "filter", "Filter", id="all.filter"),
        Binding("n", "page(1)", "Next page", id="all.next_page"),
        Binding("b", "page(-1)", "Prev page", id="all.prev_page"),
        Binding("y", "copy_id", "Copy id", id="all.copy"),
    ]

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.query_ = TaskQuery()
        self.page_offset = 0
        self.page: AllTasksPage | None = None

    def compose(self) -> ComposeResult:
        yield Static("All tasks", classes="view-title", id="all-title")
        yield FilterBar("state:dead queue:q type:t fp:f text", id="all-filter")
        yield Static("", classes="detail-line", id="all-counts")
        table = VimTable(id="all-table")
        table.fixed_columns = 1
        table.add_column("ID", key="id", width=14)
        table.add_column("Queue", key="queue", width=12)
        table.add_column("State", key="state", width=9)
        table.add_column("Type", key="type", width=14)
        table.add_column("Age", key="age", width=4)
        # as wide as the preview it shows, cut at the terminal's edge: measured from the rows
        # instead, a loaded machine could end up with it one column narrower (the rows of a
        # sync measured before others; seen as a flaky snapshot)
        table.add_column("Error / payload", key="info", width=INFO_WIDTH)
        yield table

    @property
    def table(self) -> VimTable:
        return self.query_one("#all-table", VimTable)

    def focus_main(self) -> None:
        self.table.focus()

    @property
    def limit(self) -> int:
        return max(5, self.app.size.height - CHROME_ROWS - 1)

    async def fetch(self, client: AsyncClient) -> AllTasksPage:
        return await client.call(overview.all_tasks, self.query_, self.page_offset, self.limit)

    def show(self, data: AllTasksPage) -> None:
        self.page = data
        self._render_rows()

    def _info(self, t: TaskInfo) -> Text:
        if t.last_error and t.state in (TaskState.DEAD, TaskState.RETRY):
            return safe.text(t.last_error, INFO_WIDTH, style="red")
        return safe.text(safe.preview(t.payload), INFO_WIDTH, style="dim")

    def _render_rows(self) -> None:
        now_ms = int(self.host.clock() * 1000)
        rows = []
        tasks = self.page.tasks if self.page else []
        for t in tasks:
            if (
                self.needle
                and self.needle != self._applied()
                and not self.keep(t.id, t.type, t.queue, t.payload_raw)
            ):
                continue
            age = (now_ms - t.enqueued_at_ms) / 1000 if t.enqueued_at_ms else None
            rows.append(
                (
                    f"{t.queue}|{t.id}",
                    [
                        safe.text(t.id, 40),
                        safe.text(t.queue, 30),
                        Text(str(t.state), style=STATE_STYLE.get(str(t.state), "")),
                        safe.text(t.type, 30),
                        Text(fmt.duration(age), justify="right"),
                        self._info(t),
                    ],
                )
            )
        self.table.sync(rows)
        self._title()

    def _applied(self) -> str:
        return getattr(self, "_applied_text", "")

    def _title(self) -> None:
        page = self.page
        text = Text("All tasks", no_wrap=True, overflow="ellipsis")
        if page is not None:
            shown = len(page.tasks)
            first = self.page_offset + 1 if shown else 0
            matched = f"{page.matched:,}" if page.matched is not None else f"≥{self.page_offset + shown:,}"
            text.append(f" · {first:,}-{self.page_offset + shown:,} of {matched} in {page.queues:,} queues")
            if page.examined:
                text.append(f" · searched {page.examined:,}", style="dim")
        filt = describe(self.query_)
        if filt:
            text.append(" · filter: ")
            text.append(safe.clean(filt, 60), style="bold")
        else:
            text.append(" · / to filter (state:dead queue:q type:t fp:f text)", style="dim")
        self.query_one("#all-title", Static).update(text)
        counts = Text(no_wrap=True, overflow="ellipsis")
        if page is not None:
            for state, n in page.counts.items():
                if n:
                    counts.append(f"{state} {n:,}  ", style=STATE_STYLE.get(state, ""))
            if not any(page.counts.values()):
                counts.append("no tasks", style="dim")
        self.query_one("#all-counts", Static).update(counts)

    def filter_changed(self) -> None:
        self._render_rows()

    def filter_done(self) -> None:
        self._applied_text = self.needle
        self.query_ = parse_query(self.needle)
        self.page_offset = 0
        self.post_message(RefreshRequested())

    def action_page(self, step: int) -> None:
        page = self.page
        new = self.page_offset + step * self.limit
        total = page.matched if page is not None and page.matched is not None else None
        if (
            new < 0
            or (total is not None and new >= total)
            or (page is not None and step > 0 and not page.tasks)
        ):
            self.app.bell()
            return
        self.page_offset = new
        self.post_message(RefreshRequested())

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        event.stop()
        queue, _, task_id = str(event.row_key.value).partition("|")
        if task_id:
            self.post_message(OpenTask(queue, task_id))

    def action_copy_id(self) -> None:
        key = self.table.cursor_key
        if key is not None:
            self.post_message(CopyText(key.partition("|")[2], "task id"))
