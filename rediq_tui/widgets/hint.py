"""The first-launch tip: one line above the footer saying how to get help and what to try,
shown until the user hides it with ``H``, then never again (``rediq_tui.firstrun``)."""

from __future__ import annotations

from textual.widgets import Static

DISMISS_KEY = "H"
TIP = f" Tip: ? help · P pause a queue · Enter open · {DISMISS_KEY} hides this tip for good"


class FirstLaunchTip(Static):
    DEFAULT_CSS = """
    FirstLaunchTip {
        dock: bottom;
        height: 1;
        background: $accent 30%;
        color: $text;
    }
    """

    def __init__(self) -> None:
        super().__init__(TIP, id="first-launch-tip", markup=False)
