"""``:``: jump to a queue, a worker or a task id from anywhere."""

from __future__ import annotations

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Input, Static


class JumpScreen(ModalScreen[str | None]):
    BINDINGS = [Binding("escape", "cancel", "Cancel", id="jump.cancel")]

    def compose(self) -> ComposeResult:
        with Vertical(id="jump-box", classes="dialog"):
            yield Static(Text("Jump to a queue, a worker or a task id (any queue)", style="bold"))
            yield Input(placeholder="queue name, worker id, host:pid or task id", id="jump-input")

    def on_mount(self) -> None:
        self.query_one(Input).focus()

    @on(Input.Submitted)
    def _submitted(self, event: Input.Submitted) -> None:
        self.dismiss(event.value.strip() or None)

    def action_cancel(self) -> None:
        self.dismiss(None)
