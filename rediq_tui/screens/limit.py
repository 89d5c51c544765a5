"""``L`` on the queues view: set or clear the selected queue's fleet-wide rate limit, one of
its task types' own, or a concurrency group's limit (the grammar: ``engine.limit_edit``)."""

from __future__ import annotations

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Input, Static

from engine.limit_edit import CLEAR_WORD


class LimitScreen(ModalScreen[str | None]):
    """Returns what the operator typed (``50/s``, ``600/m burst 10``, ``off``, ``type T 5/s``,
    ``group G 2``), or None."""

    BINDINGS = [Binding("escape", "cancel", "Cancel", id="limit.cancel")]

    def __init__(self, queue_label: str, current: str) -> None:
        super().__init__()
        self.queue_label = queue_label
        self.current = current

    def compose(self) -> ComposeResult:
        with Vertical(id="limit-box", classes="dialog"):
            yield Static(Text(f"Limits of queue {self.queue_label} (now: {self.current})", style="bold"))
            yield Static(Text(f"N/period, e.g. 50/s, 600/m burst 10; {CLEAR_WORD} removes it. Esc cancels."))
            yield Static(Text(f"A task type's own: type NAME 5/s (type NAME {CLEAR_WORD} removes it)"))
            yield Static(Text(f"Concurrency: group NAME 2 (* = any group; group NAME {CLEAR_WORD})"))
            yield Input(placeholder="50/s", id="limit-input")

    def on_mount(self) -> None:
        self.query_one(Input).focus()

    @on(Input.Submitted)
    def _submitted(self, event: Input.Submitted) -> None:
        self.dismiss(event.value.strip() or None)

    def action_cancel(self) -> None:
        self.dismiss(None)
