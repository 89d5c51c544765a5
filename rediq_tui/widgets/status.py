"""The one-line status banner: connection, last refresh, refresh paused, read-only. It watches
the app's one ``conn`` reactive (``rediq_tui.state.Connection``); nothing calls it."""

from __future__ import annotations

from rich.text import Text
from textual.widgets import Static

from rediq_tui import fmt, safe
from rediq_tui.state import Connection


class StatusBar(Static):
    DEFAULT_CLASSES = "status"

    def __init__(self, url: str, *, id: str | None = None) -> None:
        super().__init__("", id=id)
        self.url = safe.clean(url, 40)
        self.state = Connection()

    def on_mount(self) -> None:
        if hasattr(self.app, "conn"):
            self.watch(self.app, "conn", self.redraw, init=True)

    def status_text(self) -> Text:
        s = self.state
        line = Text(no_wrap=True, overflow="ellipsis")
        if s.connected is False:
            line.append(" ✖ Redis unreachable ", style="bold")
            line.append(safe.clean(s.error, 60))
            when = fmt.clock(s.last_ok) if s.last_ok is not None else "never"
            line.append(f" · data from {when}")
            if s.retry_in is not None:
                line.append(f" · retry in {s.retry_in:.0f}s")
        else:
            line.append(" ● " if s.connected else " ○ ", style="bold")
            line.append(self.url)
            if s.last_ok is not None:
                line.append(f" · refreshed {fmt.clock(s.last_ok)}")
            line.append(f" · every {s.interval_s:g}s")
        if s.paused:
            line.append(" · REFRESH PAUSED (p)", style="bold")
        if s.read_only_reason:
            line.append(" · READ-ONLY: ", style="bold")
            line.append(safe.clean(s.read_only_reason, 60))
        return line

    def redraw(self, state: Connection | None = None) -> None:
        if state is not None:
            self.state = state
        s = self.state
        self.set_class(s.connected is False, "-error")
        self.set_class(s.paused, "-paused")
        self.set_class(bool(s.read_only_reason), "-readonly")
        self.update(self.status_text())
