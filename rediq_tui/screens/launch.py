"""Dialog to launch a worker: app path, queues, concurrency."""

from __future__ import annotations

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Input, Label, Static

from rediq_tui.launcher import LaunchSpec


class LaunchScreen(ModalScreen[LaunchSpec | None]):
    BINDINGS = [Binding("escape", "cancel", "Cancel", id="launch.cancel")]

    def __init__(self, app_path: str = "", queues: str = "default", concurrency: int = 4) -> None:
        super().__init__()
        self.defaults = (app_path, queues, str(concurrency))

    def compose(self) -> ComposeResult:
        app_path, queues, concurrency = self.defaults
        with Vertical(id="launch-box", classes="dialog"):
            yield Static(Text("Launch a worker", style="bold"))
            yield Label("App (package.module:registry)")
            yield Input(app_path, id="launch-app")
            yield Label("Queues (comma separated, in priority order)")
            yield Input(queues, id="launch-queues")
            yield Label("Concurrency")
            yield Input(concurrency, id="launch-concurrency", type="integer")
            yield Static("Enter in the last field launches; Esc cancels.", id="launch-error")

    def on_mount(self) -> None:
        self.query_one("#launch-app", Input).focus()

    @on(Input.Submitted)
    def _submitted(self, event: Input.Submitted) -> None:
        if event.input.id != "launch-concurrency":
            self.focus_next()
            return
        app_path = self.query_one("#launch-app", Input).value.strip()
        queues = tuple(
            q.strip() for q in self.query_one("#launch-queues", Input).value.split(",") if q.strip()
        )
        try:
            concurrency = int(self.query_one("#launch-concurrency", Input).value)
        except ValueError:
            concurrency = 0
        error = ""
        if ":" not in app_path:
            error = "App must look like package.module:registry"
        elif not queues:
            error = "Give at least one queue"
        elif not 1 <= concurrency <= 1000:
            error = "Concurrency must be 1..1000"
        if error:
            self.query_one("#launch-error", Static).update(Text(error, style="bold red"))
            return
        self.dismiss(LaunchSpec(app_path, queues, concurrency))

    def action_cancel(self) -> None:
        self.dismiss(None)
