"""The ``/`` filter bar every list view has (k9s style): it filters as you type; Enter keeps
the filter and returns to the list, Esc clears it. While it has focus every printable key is
text, never a view key (``Input`` consumes them), so typing ``/ord`` never opens Cron."""

from __future__ import annotations

from dataclasses import dataclass

from textual.binding import Binding
from textual.message import Message
from textual.widgets import Input


class FilterBar(Input):
    DEFAULT_CLASSES = "filter-bar"
    BINDINGS = [Binding("escape", "clear", "Clear filter", id="filter.clear")]

    @dataclass
    class FilterChanged(Message):
        """The filter text changed (as typed, or cleared)."""

        bar: FilterBar
        value: str

    @dataclass
    class FilterDone(Message):
        """Enter or Esc: the list gets the focus back."""

        bar: FilterBar
        value: str

    def __init__(self, placeholder: str = "filter", *, id: str | None = None) -> None:
        super().__init__(placeholder=f"/ {placeholder} · Enter keeps, Esc clears", id=id)

    def open(self) -> None:
        self.add_class("-shown")
        self.focus()

    def on_input_changed(self, event: Input.Changed) -> None:
        event.stop()
        self.post_message(self.FilterChanged(self, event.value.strip()))

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self.set_class(bool(self.value.strip()), "-shown")
        self.post_message(self.FilterDone(self, self.value.strip()))

    def action_clear(self) -> None:
        self.value = ""
        self.remove_class("-shown")
        self.post_message(self.FilterChanged(self, ""))
        self.post_message(self.FilterDone(self, ""))
