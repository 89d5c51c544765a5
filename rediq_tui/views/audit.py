"""Audit view: the latest operator actions (console, CLI, API), newest first."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.widgets import Static

from engine import inspect
from engine.client import AsyncClient
from engine.inspect import AuditEntry
from rediq_tui import fmt, safe
from rediq_tui.views.base import View
from rediq_tui.widgets.filter import FilterBar
from rediq_tui.widgets.table import VimTable

AUDIT_LIMIT = 200
ACTION_STYLE = {
    "delete": "red",
    "flush": "red",
    "delete_group": "red",
    "purge": "bold red",
    "requeue": "green",
    "requeue_all": "green",
    "retry_group": "green",
    "restore": "green",
}


class AuditView(View):
    BINDINGS = [Binding("slash", "filter", "Filter", id="audit.filter")]

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.entries: list[AuditEntry] = []

    def compose(self) -> ComposeResult:
        yield Static("Audit", classes="view-title", id="audit-title")
        yield FilterBar("action, queue, actor or detail", id="audit-filter")
        table = VimTable(id="audit-table")
        for label, key, width in (
            ("Time (UTC)", "at", 14),
            ("Action", "action", 12),
            ("Queue", "queue", 10),
            ("Count", "count", 5),
            ("Actor", "actor", 12),
            ("Detail", "detail", None),
        ):
            table.add_column(label, key=key, width=width)
        yield table

    @property
    def table(self) -> VimTable:
        return self.query_one("#audit-table", VimTable)

    def focus_main(self) -> None:
        self.table.focus()

    async def fetch(self, client: AsyncClient) -> list[AuditEntry]:
        return await client.call(inspect.audit, AUDIT_LIMIT)

    def show(self, data: list[AuditEntry]) -> None:
        self.entries = data
        rows = []
        for e in data:
            if not self.keep(e.action, e.queue, e.actor, e.detail):
                continue
            action = safe.clean(e.action, 20)
            rows.append(
                (
                    safe.clean(e.id, 40),
                    [
                        Text(fmt.stamp(e.at_ms)[5:]),
                        Text(action, style=ACTION_STYLE.get(action, "bold")),
                        safe.text(e.queue or "-", 10),
                        Text(fmt.count(e.count), justify="right"),
                        safe.text(e.actor, 12, style="dim"),
                        safe.text(e.detail, 200),
                    ],
                )
            )
        self.table.sync(rows)
        self.query_one("#audit-title", Static).update(
            Text(f"Audit · last {len(data):,} operator actions, newest first", no_wrap=True)
        )

    def filter_changed(self) -> None:
        self.show(self.entries)
