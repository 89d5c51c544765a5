"""Failures view: unresolved failures grouped by (task type, normalised error), biggest first.
Enter lists a group's tasks; ``r`` retries and ``d`` deletes (to quarantine) a whole group."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.widgets import DataTable, Static

from engine import inspect
from engine.client import AsyncClient
from engine.inspect import FailureGroup
from rediq_tui import fmt, safe
from rediq_tui.messages import GroupAction, OpenGroup
from rediq_tui.views.base import View
from rediq_tui.widgets.filter import FilterBar
from rediq_tui.widgets.table import VimTable


def group_key(group: FailureGroup) -> str:
    return f"{group.queue}|{group.fingerprint}"


def group_label(group: FailureGroup, limit: int = 60) -> str:
    """``order:payment · ConnectionError: <addr> refused`` (sanitised, bounded)."""
    return f"{safe.clean(group.task_type, 30)} · {safe.clean(group.sample, limit)}"


class FailuresView(View):
    BINDINGS = [
        Binding("slash", "filter", "Filter", id="failures.filter"),
        Binding("r", "retry_group", "Retry group", id="failures.retry_group"),
        Binding("d", "delete_group", "Delete group", id="failures.delete_group"),
    ]
    MUTATING = frozenset({"retry_group", "delete_group"})

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.groups: dict[str, FailureGroup] = {}

    def compose(self) -> ComposeResult:
        yield Static("Failures", classes="view-title", id="failures-title")
        yield FilterBar("queue, type or error", id="failures-filter")
        table = VimTable(id="failures-table")
        for label, key, width in (
            ("Now", "count", 5),
            ("Queue", "queue", 9),
            ("Type", "type", 13),
            ("Last", "last", 7),
            ("Error (normalised)", "sample", 36),
            ("Ever", "total", 6),
        ):
            table.add_column(label, key=key, width=width)
        yield table
        yield Static("", id="failures-detail")

    @property
    def table(self) -> VimTable:
        return self.query_one("#failures-table", VimTable)

    def focus_main(self) -> None:
        self.table.focus()

    @property
    def selected(self) -> FailureGroup | None:
        key = self.table.cursor_key
        return self.groups.get(key) if key is not None else None

    async def fetch(self, client: AsyncClient) -> list[FailureGroup]:
        return await client.call(inspect.failure_groups)

    def show(self, data: list[FailureGroup]) -> None:
        self.groups = {group_key(g): g for g in data}
        self._data = data
        now = self.host.clock()
        rows = []
        for g in data:
            if not self.keep(g.queue, g.task_type, g.sample, g.fingerprint):
                continue
            rows.append(
                (
                    group_key(g),
                    [
                        Text(fmt.count(g.count), style="bold red", justify="right"),
                        safe.text(g.queue, 9, style="bold"),
                        safe.text(g.task_type, 13),
                        Text(fmt.relative(g.last_seen_ms, now)),
                        safe.text(g.sample, 200, style="red"),
                        Text(fmt.count(g.total), style="dim", justify="right"),
                    ],
                )
            )
        self.table.sync(rows)
        tasks = sum(g.count for g in data)
        self.query_one("#failures-title", Static).update(
            Text(
                f"Failures · {len(data):,} group{'' if len(data) == 1 else 's'} · {tasks:,} tasks"
                " · Enter: tasks · r retry · d delete",
                no_wrap=True,
                overflow="ellipsis",
            )
        )
        self._detail()

    def filter_changed(self) -> None:
        self.show(getattr(self, "_data", []))

    def _detail(self) -> None:
        """The selected group's whole error, wrapped (the column cuts it at 80 columns)."""
        group = self.selected
        text = Text()
        if group is not None:
            text.append(safe.clean(group.queue, 30), style="bold")
            text.append(f" · {safe.clean(group.task_type, 40)} · fp {group.fingerprint}\n", style="dim")
            text.append(safe.clean(group.sample, 600, multiline=True), style="red")
        self.query_one("#failures-detail", Static).update(text)

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        event.stop()
        self._detail()

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        event.stop()
        group = self.groups.get(str(event.row_key.value))
        if group is not None:
            self.post_message(OpenGroup(group.queue, group.fingerprint, group_label(group)))

    def action_retry_group(self) -> None:
        group = self.selected
        if group is None:
            self.app.bell()
            return
        self.post_message(
            GroupAction("retry", group.queue, group.fingerprint, group.count, group_label(group))
        )

    def action_delete_group(self) -> None:
        group = self.selected
        if group is None:
            self.app.bell()
            return
        self.post_message(
            GroupAction("delete", group.queue, group.fingerprint, group.count, group_label(group))
        )
