"""Typed confirmation for destructive actions: the operator types ``yes``."""

from __future__ import annotations

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Input, Static

CONFIRM_WORD = "yes"


class ConfirmScreen(ModalScreen[bool]):
    BINDINGS = [Binding("escape", "cancel", "Cancel", id="confirm.cancel")]

    def __init__(self, question: str) -> None:
        super().__init__()
        self.question = question

    def compose(self) -> ComposeResult:
        with Vertical(id="confirm-box", classes="dialog"):
            yield Static(Text(self.question, style="bold"), id="confirm-question")
            yield Static(Text(f"Type {CONFIRM_WORD} and press Enter to confirm, Esc to cancel."))
            yield Input(placeholder=f"type {CONFIRM_WORD}", id="confirm-input")
            yield Static("", id="confirm-error")

    def on_mount(self) -> None:
        self.query_one(Input).focus()

    @on(Input.Submitted)
    def _submitted(self, event: Input.Submitted) -> None:
        if event.value.strip().lower() == CONFIRM_WORD:
            self.dismiss(True)
        else:
            self.query_one("#confirm-error", Static).update(Text(f"Type {CONFIRM_WORD!r} or press Esc."))

    def action_cancel(self) -> None:
        self.dismiss(False)
