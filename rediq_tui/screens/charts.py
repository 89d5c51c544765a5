"""A queue's last hour, minute by minute: completed, failed and enqueued per minute, and the
median run time and wait (enqueue to start) of the tasks completed in each minute."""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import Screen
from textual.widgets import Footer, Static

from engine import serverinfo
from engine.client import AsyncClient
from engine.serverinfo import History
from rediq_tui import fmt, safe
from rediq_tui.messages import RefreshRequested
from rediq_tui.views.base import Pollable

CHART_WIDTH = 60


def chart(label: str, values: list[float | None], unit: str, style: str, width: int = CHART_WIDTH) -> Text:
    """One labelled sparkline row: ``label  ▁▂▃…  now X · max Y``."""
    values = values[-width:]
    present = [v for v in values if v is not None]
    scaled = [round(v * 1000) if v is not None else 0 for v in values]
    out = Text()
    out.append(f"{label:<12}", style="bold")
    out.append(fmt.sparkline(scaled, width), style=style)
    last = values[-1] if values else None
    top = max(present) if present else None
    out.append(f"  now {_fmt(last, unit)} · max {_fmt(top, unit)}\n", style="dim")
    return out


def _fmt(value: float | None, unit: str) -> str:
    if value is None:
        return "-"
    return fmt.seconds(value) if unit == "s" else f"{value:,.0f}{unit}"


def render_history(h: History, width: int = CHART_WIDTH) -> Text:
    """The charts, ``width`` minutes wide (the whole hour fits from 110 columns up)."""
    width = max(10, min(width, len(h.completed)))
    out = Text()
    out.append(f"Last {width} minutes, oldest left, current minute right (partial)\n\n", style="dim")
    out.append(chart("completed", [float(v) for v in h.completed], "/min", "green", width))
    out.append(chart("failed", [float(v) for v in h.failed], "/min", "red", width))
    out.append(chart("enqueued", [float(v) for v in h.enqueued], "/min", "cyan", width))
    out.append(chart("run p50", list(h.run_p50_s), "s", "magenta", width))
    out.append(chart("wait p50", list(h.wait_p50_s), "s", "yellow", width))
    out.append(f"\nLatency from {h.sampled:,} completed tasks of the last hour (sampled).\n", style="dim")
    return out


class ChartsScreen(Screen[None], Pollable):
    BINDINGS = [Binding("escape,q", "close", "Back", id="charts.back")]

    def __init__(self, queue: str) -> None:
        super().__init__()
        self.queue = queue
        self.history: History | None = None

    def compose(self) -> ComposeResult:
        yield Static(Text(f"{safe.clean(self.queue, 60)} · last hour", style="bold"), classes="view-title")
        with VerticalScroll(id="charts-scroll"):
            yield Static("loading…", id="charts-body")
        yield Footer()

    def on_mount(self) -> None:
        self.post_message(RefreshRequested())  # the first poll, now that there is a screen to show it

    async def fetch(self, client: AsyncClient) -> History:
        return await client.call(serverinfo.history, self.queue)

    def show(self, data: Any) -> None:
        self.history = data
        width = self.app.size.width - 2 - 12 - 30  # padding, label, "now … · max …"
        self.query_one("#charts-body", Static).update(render_history(data, width))

    def action_close(self) -> None:
        self.dismiss(None)
