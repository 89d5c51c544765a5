"""A DataTable with vim keys and in-place row syncing that keeps the cursor on the same key."""

from __future__ import annotations

from collections.abc import Sequence

from rich.text import Text
from textual.binding import Binding
from textual.widgets import DataTable
from textual.widgets.data_table import RowDoesNotExist

Cell = Text | str


class VimTable(DataTable[Cell]):
    BINDINGS = [
        Binding("j", "cursor_down", "Down", show=False, id="table.down"),
        Binding("k", "cursor_up", "Up", show=False, id="table.up"),
        Binding("g", "first", "Top", show=False, id="table.top"),
        Binding("G", "last", "Bottom", show=False, id="table.bottom"),
    ]

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id, cursor_type="row", zebra_stripes=True)

    def action_first(self) -> None:
        if self.row_count:
            self.move_cursor(row=0)

    def action_last(self) -> None:
        if self.row_count:
            self.move_cursor(row=self.row_count - 1)

    @property
    def cursor_key(self) -> str | None:
        """The key of the row under the cursor (``None`` when empty)."""
        if not self.row_count:
            return None
        try:
            key = self.coordinate_to_cell_key(self.cursor_coordinate).row_key
        except Exception:  # noqa: BLE001 - cursor outside the table while it is rebuilt
            return None
        return key.value

    def row_keys(self) -> list[str]:
        return [str(r.key.value) for r in self.ordered_rows]

    def sync(self, rows: Sequence[tuple[str, Sequence[Cell]]]) -> None:
        """Show ``rows`` (key, cells). Same keys in the same order: cells are updated in place;
        otherwise the table is rebuilt. Either way the cursor stays on the same key if it is
        still there."""
        keep = self.cursor_key
        keys = [k for k, _ in rows]
        columns = list(self.columns)
        if keys == self.row_keys():
            for key, cells in rows:
                for col, cell in zip(columns, cells, strict=False):
                    if self.get_cell(key, col) != cell:
                        # Only a wider cell re-measures its column (narrower ones would make
                        # Textual re-measure every cell of the column: O(rows) per cell).
                        width = cell.cell_len if isinstance(cell, Text) else len(cell)
                        grow = width > self.columns[col].content_width
                        self.update_cell(key, col, cell, update_width=grow)
            self.check_idle()
            return
        row_index = self.cursor_row
        self.clear()
        for key, cells in rows:
            self.add_row(*cells, key=key)
        if keep is not None:
            try:
                row_index = self.get_row_index(keep)
            except RowDoesNotExist:
                pass
        if self.row_count:
            self.move_cursor(row=min(row_index, self.row_count - 1), animate=False, scroll=True)
        # column widths are measured when the table goes idle: make sure it does, even while
        # it is hidden behind another view
        self.check_idle()
