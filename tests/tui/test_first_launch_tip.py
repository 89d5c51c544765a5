"""The console's first launch shows one line on how to get help and what to try; ``H`` hides
it for good (a marker in the state directory), and the next launch shows nothing."""

from __future__ import annotations

from pathlib import Path

import pytest

from rediq_tui.firstrun import DISMISSED_MARKER, STATE_DIR_ENV
from rediq_tui.widgets.hint import FirstLaunchTip
from tests.tui.helpers import make_app, wait_for


def tip_text(app: object) -> str | None:
    found = list(app.screen_stack[0].query(FirstLaunchTip))  # type: ignore[attr-defined]
    return str(found[0].render()) if found else None


async def test_the_tip_shows_on_first_launch_and_h_hides_it_for_good(
    redis_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    state = tmp_path / "state" / "rediq"  # not there yet: a first launch
    monkeypatch.setenv(STATE_DIR_ENV, str(state))

    first = make_app(redis_url)
    async with first.run_test(size=(80, 24)) as pilot:
        await wait_for(pilot, lambda: first.polls >= 1, what="first poll")
        text = tip_text(first)
        assert text is not None and "? help · P pause a queue · Enter open" in text
        assert len(text) <= 80  # one line at 80 columns
        assert first.focused is not None  # H works with the table focused, as on launch
        await pilot.press("H")
        await wait_for(pilot, lambda: tip_text(first) is None, what="the tip to go")
    assert (state / DISMISSED_MARKER).exists()

    again = make_app(redis_url)
    async with again.run_test(size=(80, 24)) as pilot:
        await wait_for(pilot, lambda: again.polls >= 1, what="first poll")
        assert tip_text(again) is None
        await pilot.press("H")  # no tip: the key does nothing
        assert tip_text(again) is None


async def test_an_unwritable_state_directory_hides_the_tip_for_this_session_only(
    redis_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("")
    monkeypatch.setenv(STATE_DIR_ENV, str(blocker / "rediq"))  # mkdir under a file fails

    app = make_app(redis_url)
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for(pilot, lambda: app.polls >= 1, what="first poll")
        assert tip_text(app) is not None
        await pilot.press("H")
        await wait_for(pilot, lambda: tip_text(app) is None, what="the tip to go")
        assert any("until the console restarts" in str(n.message) for n in app._notifications)

    later = make_app(redis_url)
    async with later.run_test(size=(80, 24)) as pilot:
        assert tip_text(later) is not None
