"""Base class of the console views: each one fetches its data and shows it, filters its rows
with ``/`` and posts messages for everything else (it never calls the app)."""

from __future__ import annotations

from typing import Any, cast

from textual.widget import Widget

from engine.client import AsyncClient
from rediq_tui.host import Host
from rediq_tui.widgets.filter import FilterBar


class Pollable:
    """Something the app polls: ``fetch`` runs in a Textual worker (network I/O only there),
    ``show`` runs on the UI with the result."""

    async def fetch(self, client: AsyncClient) -> Any:
        raise NotImplementedError

    def show(self, data: Any) -> None:
        raise NotImplementedError


class View(Widget, Pollable):
    """One of the main views inside the app's content switcher."""

    MUTATING: frozenset[str] = frozenset()
    """Actions that write to Redis: disabled in read-only mode."""

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.needle = ""
        """The ``/`` filter of this view (never carried to another view or queue)."""

    @property
    def host(self) -> Host:
        return cast(Host, self.app)

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action in self.MUTATING and self.host.read_only:
            return None
        return True

    def focus_main(self) -> None:
        """Give focus to the view's main widget."""
        self.focus()

    # ------------------------------------------------------------------ the / filter
    def action_filter(self) -> None:
        self.query_one(FilterBar).open()

    def keep(self, *fields: str) -> bool:
        """Whether a row with these texts passes the filter (case-insensitive substring)."""
        if not self.needle:
            return True
        n = self.needle.casefold()
        return any(n in f.casefold() for f in fields)

    def clear_filter(self) -> None:
        bars = self.query(FilterBar)
        for bar in bars:
            bar.value = ""
            bar.remove_class("-shown")
        self.needle = ""

    def on_filter_bar_filter_changed(self, event: FilterBar.FilterChanged) -> None:
        event.stop()
        self.needle = event.value
        self.filter_changed()

    def on_filter_bar_filter_done(self, event: FilterBar.FilterDone) -> None:
        event.stop()
        self.filter_done()
        self.focus_main()

    def filter_changed(self) -> None:
        """Show the rows matching ``self.needle`` (as typed)."""

    def filter_done(self) -> None:
        """Enter or Esc in the filter bar."""
