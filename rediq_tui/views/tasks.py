"""Tasks view: one page of a queue's tasks in one state, read from Redis page by page."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.widgets import DataTable, Static

from engine import inspect
from engine.client import AsyncClient
from engine.inspect import TaskPage
from engine.task import TaskInfo, TaskState
from rediq_tui import fmt, safe
from rediq_tui.messages import BulkStateAction, CopyText, GroupAction, OpenTask, RefreshRequested, TaskAction
from rediq_tui.views.base import View
from rediq_tui.widgets.filter import FilterBar
from rediq_tui.widgets.table import VimTable

STATES: tuple[str, ...] = (
    "pending",
    "active",
    "scheduled",
    "retry",
    "dead",
    "completed",
    "cancelled",
    "waiting",
    "quarantined",
    "expired",
)
SEARCH_SCAN_LIMIT = 20_000
"""The ``/`` filter searches the whole state server-side, reading at most this many tasks."""
SORTS: tuple[str, ...] = ("redis", "id", "type", "priority", "attempts", "age")
CHROME_ROWS = 4  # status, title, table header, footer
ERROR_LINES = 2


@dataclass(frozen=True, slots=True)
class Progress:
    percent: float | None
    message: str | None


def matches(task: TaskInfo, needle: str) -> bool:
    """The ``/`` filter: case-insensitive substring of id, type, payload, error or message."""
    if not needle:
        return True
    n = needle.lower()
    fields = (
        task.id,
        task.type,
        task.payload_raw[:10_000],
        task.last_error or "",
        task.progress_message or "",
    )
    return any(n in f.lower() for f in fields)


def where_filter(needle: str) -> Callable[[TaskInfo], bool] | None:
    """The same filter as a predicate for bulk admin actions (``None``: no filter)."""
    if not needle:
        return None
    return lambda t: matches(t, needle)


class TasksView(View):
    BINDINGS = [
        Binding("U", "restore", "Restore", id="tasks.restore"),  # first: visible at 80 columns
        Binding("slash", "filter", "Filter", id="tasks.filter"),
        Binding("y", "copy_id", "Copy id", id="tasks.copy"),
        Binding("space", "mark", "Mark", id="tasks.mark"),
        Binding("s", "sort", "Sort", id="tasks.sort"),
        Binding("greater_than_sign,right_square_bracket", "state(1)", "Next state", id="tasks.next_state"),
        Binding(
            "less_than_sign,left_square_bracket", "state(-1)", "Prev state", show=False, id="tasks.prev_state"
        ),
        Binding("n", "page(1)", "Next page", id="tasks.next_page"),
        Binding("b", "page(-1)", "Prev page", show=False, id="tasks.prev_page"),
        Binding("r", "requeue", "Retry", id="tasks.requeue"),
        Binding("c", "cancel", "Cancel", id="tasks.cancel"),
        Binding("d", "delete", "Delete", id="tasks.delete"),
        Binding("R", "requeue_all", "Requeue all", id="tasks.requeue_all"),
        Binding("F", "flush", "Flush", id="tasks.flush"),
    ]
    MUTATING = frozenset({"requeue", "cancel", "delete", "requeue_all", "flush", "restore"})

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.queue: str | None = None
        self.state: str = "pending"
        self.page_offset = 0
        self.sort_by = "redis"
        self.marked: set[str] = set()
        self.page: TaskPage | None = None
        self.progress: dict[str, Progress] = {}
        self.group: tuple[str, str] | None = None
        """(fingerprint, label) when showing one failure group's tasks instead of a state."""
        self.searched: tuple[int, int] | None = None
        """(examined, total) of the last server-side search, while a filter is set."""

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "restore" and (self.state != "quarantined" or self.group is not None):
            return False  # only quarantined tasks can be restored: hide the key elsewhere
        return super().check_action(action, parameters)

    def compose(self) -> ComposeResult:
        yield Static(
            "Tasks · pick a queue in Queues (1) and press Enter", classes="view-title", id="tasks-title"
        )
        yield FilterBar("id, type, payload or error; Enter searches the whole state", id="tasks-filter")
        table = VimTable(id="tasks-table")
        table.add_column("✓", key="mark", width=1)
        table.add_column("ID", key="id", width=14)
        table.add_column("Type", key="type", width=16)
        table.add_column("Pri", key="priority", width=3)
        table.add_column("Att", key="attempts", width=3)
        table.add_column("Age", key="age", width=4)
        table.add_column("Progress / payload / error", key="info")
        yield table
        yield Static("", id="tasks-error", classes="-hidden")

    @property
    def table(self) -> VimTable:
        return self.query_one("#tasks-table", VimTable)

    def focus_main(self) -> None:
        self.table.focus()

    @property
    def limit(self) -> int:
        """Page size from the terminal height, so one page fills the screen (less the two lines
        of the selected task's error in dead and retry)."""
        return max(5, self.app.size.height - CHROME_ROWS - (ERROR_LINES if self.shows_errors else 0))

    @property
    def shows_errors(self) -> bool:
        return self.state in ("dead", "retry")

    def _error_line(self) -> None:
        """Under the table in dead and retry: the selected task's whole error, wrapped (the
        column cuts it at 80 columns)."""
        box = self.query_one("#tasks-error", Static)
        box.set_class(not self.shows_errors, "-hidden")
        if not self.shows_errors:
            return
        key = self.table.cursor_key
        task = next((t for t in self.page.tasks if t.id == key), None) if self.page else None
        text = safe.text(task.last_error or "", 400, style="red", multiline=True) if task else Text("")
        box.update(text)

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        event.stop()
        self._error_line()

    def on_resize(self) -> None:
        """A taller or shorter terminal changes the page size: read the page again."""
        if self.page is not None and len(self.page.tasks) != min(
            self.limit, self.page.total - self.page_offset
        ):
            self.post_message(RefreshRequested())

    def open(self, queue: str, state: str) -> None:
        if queue != self.queue:
            self.clear_filter()  # a filter never follows the operator to another queue
        if (queue, state) != (self.queue, self.state) or self.group is not None:
            self._reset()
        self.group = None
        self.queue, self.state = queue, state
        self.refresh_bindings()
        self._title()

    def open_group(self, queue: str, fingerprint: str, label: str) -> None:
        """Show the tasks of one failure group (dead or retrying), newest failure first."""
        if queue != self.queue:
            self.clear_filter()
        if self.group is None or (queue, fingerprint) != (self.queue, self.group[0]):
            self._reset()
        self.queue, self.state, self.group = queue, "dead", (fingerprint, label)
        self.refresh_bindings()
        self._title()

    def _reset(self) -> None:
        self.marked.clear()
        self.page_offset = 0
        self.page = None
        self.searched = None
        self.table.clear()

    async def fetch(self, client: AsyncClient) -> TaskPage | None:
        if self.queue is None:
            return None
        if self.group is not None:
            return await client.call(
                inspect.group_tasks, self.queue, self.group[0], self.page_offset, self.limit
            )
        if self.needle:
            # the filter searches the whole state (bounded), not only the page on screen
            return await client.call(
                inspect.search, self.queue, TaskState(self.state), self.needle, self.limit, SEARCH_SCAN_LIMIT
            )
        page = await client.call(
            inspect.page, self.queue, TaskState(self.state), self.page_offset, self.limit
        )
        if not page.tasks and page.offset > 0 and page.total > 0:
            # the page emptied under us (tasks moved on): step back to the last page
            self.page_offset = max(0, (page.total - 1) // self.limit * self.limit)
            page = await client.call(
                inspect.page, self.queue, TaskState(self.state), self.page_offset, self.limit
            )
        return page

    def shown_tasks(self) -> list[TaskInfo]:
        if self.page is None:
            return []
        searched = self.searched is not None and self.group is None
        tasks = [t for t in self.page.tasks if searched or matches(t, self.needle)]
        key: dict[str, Callable[[TaskInfo], object]] = {
            "id": lambda t: t.id,
            "type": lambda t: t.type,
            "priority": lambda t: t.priority,
            "attempts": lambda t: -t.attempts,
            "age": lambda t: t.enqueued_at_ms,
        }
        if self.sort_by in key:
            tasks.sort(key=key[self.sort_by])  # type: ignore[arg-type]
        return tasks

    def show(self, data: TaskPage | None) -> None:
        if data is None:
            self._title()
            return
        if (data.queue, str(data.state)) != (self.queue, self.state):
            return  # a stale page of what was shown before
        self.page = data
        self.searched = (data.offset, data.total) if self.needle and self.group is None else None
        self.progress = {t.id: Progress(t.progress, t.progress_message) for t in data.tasks}
        self._render_rows()

    def _render_rows(self) -> None:
        now_ms = int(self.host.clock() * 1000)
        rows = [(t.id, self._cells(t, now_ms)) for t in self.shown_tasks()]
        self.table.sync(rows)
        self._title()
        self._error_line()

    def _info(self, task: TaskInfo) -> Text:
        prog = self.progress.get(task.id)
        if task.state.is_final:
            prog = None  # a finished task's last progress ("99% handing to carrier") is history
        if prog is not None and (prog.percent is not None or prog.message):
            line = Text(fmt.bar(prog.percent), style="green", no_wrap=True)
            if prog.message:
                line.append(" " + safe.clean(prog.message, 60), style="")
            return line
        if task.last_error and task.state in (TaskState.DEAD, TaskState.RETRY):
            return safe.text(task.last_error, 80, style="red")
        return safe.text(safe.preview(task.payload), 80, style="dim")

    def _cells(self, task: TaskInfo, now_ms: int) -> list[Text]:
        age = (now_ms - task.enqueued_at_ms) / 1000 if task.enqueued_at_ms else None
        return [
            Text("●" if task.id in self.marked else "", style="bold magenta"),
            safe.text(task.id, 14),
            safe.text(task.type, 16),
            Text(str(task.priority), justify="right"),
            Text(str(task.attempts), justify="right"),
            Text(fmt.duration(age), justify="right"),
            self._info(task),
        ]

    def update_progress(self, task_id: str, percent: float | None, message: str | None) -> bool:
        """A progress event between polls: update that row only. True when the row is shown."""
        if self.page is None or task_id not in self.table.row_keys():
            return False
        old = self.progress.get(task_id, Progress(None, None))
        self.progress[task_id] = Progress(
            percent if percent is not None else old.percent, message if message is not None else old.message
        )
        task = next((t for t in self.page.tasks if t.id == task_id), None)
        if task is not None:
            self.table.update_cell(task_id, "info", self._info(task))
        return True

    def _title(self) -> None:
        if self.queue is None:
            text = Text("Tasks · pick a queue in Queues (1) and press Enter", no_wrap=True)
        else:
            total = self.page.total if self.page else 0
            shown = len(self.page.tasks) if self.page else 0
            first = self.page_offset + 1 if shown else 0
            text = Text(no_wrap=True, overflow="ellipsis")
            text.append(safe.clean(self.queue, 30), style="bold")
            if self.group is not None:
                text.append(" · group ")
                text.append(self.group[1][:60], style="red")
            else:
                text.append(f" · {self.state}")
            if self.searched is not None:
                text.append(f" · {shown:,} found · searched {self.searched[0]:,} of {self.searched[1]:,}")
            else:
                text.append(f" · {first:,}-{self.page_offset + shown:,} of {total:,}")
            if self.needle:
                text.append(" · filter: ")
                text.append(safe.clean(self.needle, 20), style="bold")
            if self.sort_by != "redis":
                text.append(f" · sort: {self.sort_by}")
            if self.marked:
                text.append(f" · {len(self.marked):,} marked", style="bold magenta")
        self.query_one("#tasks-title", Static).update(text)

    # ------------------------------------------------------------------ navigation
    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        event.stop()
        if self.queue is not None and event.row_key.value is not None:
            self.post_message(OpenTask(self.queue, str(event.row_key.value)))

    def on_data_table_header_selected(self, event: DataTable.HeaderSelected) -> None:
        """Clicking (or selecting) a column header sorts by it; again: back to Redis order."""
        event.stop()
        key = {"id": "id", "type": "type", "priority": "priority", "attempts": "attempts", "age": "age"}
        wanted = key.get(str(event.column_key.value), "redis")
        self.sort_by = "redis" if wanted == self.sort_by else wanted
        self._render_rows()

    def action_state(self, step: int) -> None:
        if self.queue is None:
            return
        if self.group is not None:  # leave the group for the states, starting at dead
            self.open(self.queue, self.state)
            self.post_message(RefreshRequested())
            return
        i = (STATES.index(self.state) + step) % len(STATES)
        self.open(self.queue, STATES[i])
        self.post_message(RefreshRequested())

    def action_page(self, step: int) -> None:
        if self.queue is None:
            return
        if self.searched is not None:
            self.app.bell()  # a search shows its first hits; narrow the filter for others
            return
        total = self.page.total if self.page else 0
        new = self.page_offset + step * self.limit
        if new < 0 or (step > 0 and new >= total):
            self.app.bell()
            return
        self.page_offset = new
        self.post_message(RefreshRequested())

    def action_sort(self) -> None:
        self.sort_by = SORTS[(SORTS.index(self.sort_by) + 1) % len(SORTS)]
        self._render_rows()

    def action_mark(self) -> None:
        key = self.table.cursor_key
        if key is None:
            return
        if key in self.marked:
            self.marked.discard(key)
        else:
            self.marked.add(key)
        self.table.update_cell(key, "mark", Text("●" if key in self.marked else "", style="bold magenta"))
        self.table.action_cursor_down()
        self._title()

    def filter_changed(self) -> None:
        """As typed: the page on screen is filtered at once; Enter searches the whole state."""
        self.searched = None
        self._render_rows()

    def filter_done(self) -> None:
        self.page_offset = 0
        self.searched = None
        self._render_rows()
        self.post_message(RefreshRequested())

    def action_copy_id(self) -> None:
        key = self.table.cursor_key
        if key is not None:
            self.post_message(CopyText(key, "task id"))

    # ------------------------------------------------------------------ actions
    def selection(self) -> list[str]:
        """Marked tasks on this page, or the one under the cursor."""
        shown = set(self.table.row_keys())
        chosen = [k for k in self.table.row_keys() if k in self.marked and k in shown]
        if chosen:
            return chosen
        key = self.table.cursor_key
        return [key] if key is not None else []

    def _act(self, kind: str) -> None:
        ids = self.selection()
        if self.queue is None or not ids:
            self.app.bell()
            return
        self.post_message(TaskAction(kind, self.queue, ids, on_done=self.marked.clear))

    def action_requeue(self) -> None:
        self._act("requeue")

    def action_cancel(self) -> None:
        self._act("cancel")

    def action_delete(self) -> None:
        self._act("delete")

    def action_restore(self) -> None:
        self._act("restore")

    def _bulk(self, kind: str) -> None:
        if self.queue is None:
            return
        if self.group is not None:
            total = self.page.total if self.page else 0
            group_kind = "retry" if kind == "requeue" else "delete"
            self.post_message(GroupAction(group_kind, self.queue, self.group[0], total, self.group[1]))
            return
        self.post_message(BulkStateAction(kind, self.queue, self.state, self.needle))

    def action_requeue_all(self) -> None:
        self._bulk("requeue")

    def action_flush(self) -> None:
        self._bulk("flush")
