"""``?``: every key binding of the console, by context."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Static

from rediq_tui.widgets.table import VimTable


def binding_rows(contexts: list[tuple[str, list[BindingType]]]) -> list[tuple[str, str, str]]:
    rows = []
    for context, bindings in contexts:
        for b in bindings:
            if isinstance(b, Binding):
                keys = b.key.replace("question_mark", "?").replace("slash", "/")
                keys = keys.replace("greater_than_sign", ">").replace("less_than_sign", "<")
                keys = keys.replace("right_square_bracket", "]").replace("left_square_bracket", "[")
                rows.append((context, keys, b.description or b.action))
    return rows


class HelpScreen(ModalScreen[None]):
    BINDINGS = [Binding("escape,q,question_mark", "close", "Close", id="help.close")]

    def __init__(self, contexts: list[tuple[str, list[BindingType]]]) -> None:
        super().__init__()
        self.contexts = contexts

    def compose(self) -> ComposeResult:
        with Vertical(id="help-box", classes="dialog"):
            yield Static(Text("Key bindings · Esc closes · Ctrl+P: command palette", style="bold"))
            table = VimTable(id="help-table")
            table.add_column("Where", key="where")
            table.add_column("Keys", key="keys")
            table.add_column("Action", key="action")
            for i, (where, keys, action) in enumerate(binding_rows(self.contexts)):
                table.add_row(Text(where), Text(keys, style="bold"), Text(action), key=str(i))
            yield table

    def on_mount(self) -> None:
        self.query_one(VimTable).focus()

    def action_close(self) -> None:
        self.dismiss(None)
