"""Worker detail: its registry entry (host, pid, version, slots, held slots, fencing), the
tasks it runs, its heartbeat age and, when the console launched it, its log tail."""

from __future__ import annotations

from typing import Any, cast

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import Screen
from textual.widgets import Footer, Static

from engine import overview
from engine.client import AsyncClient
from engine.overview import WorkerDetail
from rediq_tui import fmt, safe
from rediq_tui.host import Host
from rediq_tui.messages import RefreshRequested, StopWorker
from rediq_tui.views.base import Pollable
from rediq_tui.widgets.status import StatusBar

FIELDS = (
    ("host", "Host"),
    ("pid", "PID"),
    ("version", "Version"),
    ("queues", "Queues"),
    ("concurrency", "Slots"),
    ("busy", "Busy"),
    ("held", "Held (hung)"),
    ("fenced", "Fenced"),
)
LOG_TAIL = 40
FRESH_S = 5.0
STALE_S = 30.0


def render_worker(d: WorkerDetail, now_s: float, log: list[str]) -> Text:
    out = Text()
    out.append("Worker ", style="bold")
    out.append(safe.clean(d.id, 80) + "\n", style="bold cyan")
    for key, label in FIELDS:
        if key in d.fields:
            value = d.fields[key]
            style = "bold red" if key in ("held", "fenced") and value not in ("0", "", "false") else ""
            out.append(f"{label:>14}: ", style="dim")
            out.append(safe.clean(value, 200) + "\n", style=style)
    age = d.heartbeat_age_s
    out.append(f"{'Heartbeat':>14}: ", style="dim")
    if age is None:
        out.append("never\n", style="bold red")
    else:
        late = "bold red" if age > STALE_S else "green"
        out.append("now\n" if age < FRESH_S else f"{fmt.duration(age)} ago\n", style=late)
    started, beat = d.fields.get("started", ""), d.fields.get("heartbeat", "")
    if started.isdigit() and beat.isdigit():
        up = fmt.duration((int(beat) - int(started)) / 1000)
        out.append(f"{'Up':>14}: ", style="dim")
        out.append(f"{up}\n")
    others = sorted(
        k for k in d.fields if k not in {k for k, _ in FIELDS} | {"tasks", "heartbeat", "started"}
    )
    for key in others[:20]:
        out.append(f"{safe.clean(key, 14):>14}: ", style="dim")
        out.append(safe.clean(d.fields[key], 200) + "\n")
    if d.stop_requested:
        out.append("\nStop requested: it drains at its next heartbeat\n", style="bold yellow")
    out.append(f"\n── Tasks ({len(d.tasks)}) ", style="bold")
    out.append("\n")
    for t in d.tasks:
        out.append(f"{safe.clean(t.id, 24):<24} ", style="cyan")
        out.append(f"{safe.clean(t.queue, 12):<12} {safe.clean(t.type, 20):<20} ")
        if t.progress is not None:
            out.append(fmt.bar(t.progress), style="green")
        out.append("\n")
    if not d.tasks:
        out.append("(idle)\n", style="dim")
    if log:
        out.append("\n── Log tail (launched here) \n", style="bold")
        for line in log[-LOG_TAIL:]:
            out.append(safe.clean(line, 300) + "\n")
    return out


class WorkerDetailScreen(Screen[None], Pollable):
    BINDINGS = [
        Binding("escape,q", "close", "Back", id="worker.back"),
        Binding("S", "stop", "Stop worker", id="worker.stop"),
        Binding("j", "scroll_down", "Down", show=False, id="worker.down"),
        Binding("k", "scroll_up", "Up", show=False, id="worker.up"),
    ]

    def __init__(self, worker_id: str) -> None:
        super().__init__()
        self.worker_id = worker_id
        self.detail: WorkerDetail | None = None

    @property
    def host(self) -> Host:
        return cast(Host, self.app)

    def compose(self) -> ComposeResult:
        yield StatusBar(self.host.display_name, id="worker-status")
        yield Static(
            Text(f"Worker {safe.clean(self.worker_id, 60)} · loading…"),
            classes="view-title",
            id="worker-title",
        )
        with VerticalScroll(id="worker-scroll"):
            yield Static("", id="worker-body")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#worker-scroll").focus()
        self.post_message(RefreshRequested())  # the first poll, now that there is a screen to show it

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "stop" and self.host.read_only:
            return None
        return True

    async def fetch(self, client: AsyncClient) -> WorkerDetail | None:
        return await client.call(overview.worker_detail, self.worker_id)

    def show(self, data: Any) -> None:
        title = self.query_one("#worker-title", Static)
        if data is None:
            title.update(Text(f"Worker {safe.clean(self.worker_id, 60)} · gone (no heartbeat)", style="bold"))
            return
        self.detail = data
        pid = data.fields.get("pid", "")
        log: list[str] = []
        for w in self.host.launched:
            if str(w.pid) == pid:
                log = list(w.lines)
        busy, slots = data.fields.get("busy", "?"), data.fields.get("concurrency", "?")
        title.update(
            Text(
                f"{safe.clean(data.fields.get('host', '?'), 30)}:{safe.clean(pid, 10)} · busy {busy}/{slots}"
                " · S: drain and stop · Esc: back",
                no_wrap=True,
                overflow="ellipsis",
            )
        )
        self.query_one("#worker-body", Static).update(render_worker(data, self.host.clock(), log))

    def action_stop(self) -> None:
        d = self.detail
        label = (
            f"{d.fields.get('host', '?')}:{d.fields.get('pid', '?')} ({self.worker_id})"
            if d
            else self.worker_id
        )
        self.post_message(StopWorker(self.worker_id, label))

    def action_close(self) -> None:
        self.dismiss(None)

    def action_scroll_down(self) -> None:
        self.query_one("#worker-scroll", VerticalScroll).scroll_down()

    def action_scroll_up(self) -> None:
        self.query_one("#worker-scroll", VerticalScroll).scroll_up()
