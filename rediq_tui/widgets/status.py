"""The one-line status banner: connection, last refresh, refresh paused, read-only."""

from __future__ import annotations

from rich.text import Text
from textual.widgets import Static

from rediq_tui import fmt, safe


class StatusBar(Static):
    DEFAULT_CLASSES = "status"

    def __init__(self, url: str, *, id: str | None = None) -> None:
        super().__init__("", id=id)
        self.url = safe.clean(url, 40)
        self.connected: bool | None = None
        self.error = ""
        self.last_ok: float | None = None
        self.retry_in: float | None = None
        self.paused = False
        self.read_only_reason = ""
        self.interval_s = 2.0

    def status_text(self) -> Text:
        line = Text(no_wrap=True, overflow="ellipsis")
        if self.connected is False:
            line.append(" ✖ Redis unreachable ", style="bold")
            line.append(safe.clean(self.error, 60))
            when = fmt.clock(self.last_ok) if self.last_ok is not None else "never"
            line.append(f" · data from {when}")
            if self.retry_in is not None:
                line.append(f" · retry in {self.retry_in:.0f}s")
        else:
            line.append(" ● " if self.connected else " ○ ", style="bold")
            line.append(self.url)
            if self.last_ok is not None:
                line.append(f" · refreshed {fmt.clock(self.last_ok)}")
            line.append(f" · every {self.interval_s:g}s")
        if self.paused:
            line.append(" · REFRESH PAUSED (p)", style="bold")
        if self.read_only_reason:
            line.append(" · READ-ONLY: ", style="bold")
            line.append(safe.clean(self.read_only_reason, 60))
        return line

    def redraw(self) -> None:
        self.set_class(self.connected is False, "-error")
        self.set_class(self.paused, "-paused")
        self.set_class(bool(self.read_only_reason), "-readonly")
        self.update(self.status_text())
