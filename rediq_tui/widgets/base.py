"""Base class of the console views: each one fetches its data and shows it."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from textual.widget import Widget

from engine.client import AsyncClient

if TYPE_CHECKING:
    from rediq_tui.app import RediqApp


class Pollable:
    """Something the app polls: ``fetch`` runs in a Textual worker (network I/O only there),
    ``show`` runs on the UI with the result."""

    async def fetch(self, client: AsyncClient) -> Any:
        raise NotImplementedError

    def show(self, data: Any) -> None:
        raise NotImplementedError


class View(Widget, Pollable):
    """One of the main views inside the app's content switcher."""

    MUTATING: frozenset[str] = frozenset()
    """Actions that write to Redis: disabled in read-only mode."""

    @property
    def rapp(self) -> RediqApp:
        return self.app  # type: ignore[return-value]

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action in self.MUTATING and self.rapp.read_only:
            return None
        return True

    def focus_main(self) -> None:
        """Give focus to the view's main widget."""
        self.focus()
