"""A hard limit on every test, setup and teardown included, that nothing in the test can defeat.

pytest-timeout stops its timer as soon as a test fails (its ``pytest_exception_interact`` hook,
meant for ``--pdb``), so a teardown that hangs after a failure runs unbounded: a CI run once sat
83 minutes in an event loop's teardown that waited on a worker loop whose cancellation was lost.
Here ``faulthandler`` (a C thread, no Python needed) dumps every thread's stack ("Timeout
(h:mm:ss)!" then the frames, the test's among them) and ends the process once a test has run
``WATCHDOG_MARGIN_S`` past its pytest-timeout limit. Under xdist the controller then names the
test its worker crashed in, counts it failed, and starts a new worker for the rest.
"""

from __future__ import annotations

import faulthandler
import os
import time
from collections.abc import Iterator
from typing import IO

import pytest

WATCHDOG_MARGIN_S = 60.0
"""Beyond the test's own timeout: room for pytest-timeout to fail it first, and for teardown
(the ini option ``watchdog_margin`` overrides it)."""

_stderr: IO[str] | None = None
"""A copy of the process's stderr taken before any test's output capture replaces fd 2."""


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addini("watchdog_margin", "seconds a test may run past its timeout before its process ends")


def pytest_configure(config: pytest.Config) -> None:
    global _stderr
    if _stderr is None:
        _stderr = os.fdopen(os.dup(2), "w")


def pytest_unconfigure(config: pytest.Config) -> None:
    global _stderr
    faulthandler.cancel_dump_traceback_later()
    if _stderr is not None:
        _stderr.close()
        _stderr = None


def hard_limit_s(item: pytest.Item) -> float | None:
    """The test's pytest-timeout limit (its ``timeout`` marker, else the ini value) plus the
    margin; None when the test has no limit."""
    marker = item.get_closest_marker("timeout")
    if marker is not None and (marker.args or "timeout" in marker.kwargs):
        limit = marker.args[0] if marker.args else marker.kwargs["timeout"]
    else:  # pytest-timeout's --timeout, else its ini value
        limit = item.config.getoption("timeout", None) or item.config.getini("timeout")
    seconds = float(limit or 0)
    margin = float(item.config.getini("watchdog_margin") or WATCHDOG_MARGIN_S)
    return seconds + margin if seconds > 0 else None


_deadline: float | None = None
"""When the running test's watchdog fires (``time.monotonic()``); None while none is armed."""


def _arm(seconds: float) -> None:
    assert _stderr is not None
    faulthandler.dump_traceback_later(max(seconds, 1.0), exit=True, file=_stderr)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item: pytest.Item) -> Iterator[None]:
    global _deadline
    limit = hard_limit_s(item)
    if limit is not None and _stderr is not None:
        _deadline = time.monotonic() + limit
        _arm(limit)
    try:
        yield
    finally:
        _deadline = None
        faulthandler.cancel_dump_traceback_later()


@pytest.hookimpl(trylast=True)
def pytest_exception_interact(node: pytest.Item | pytest.Collector) -> None:
    """pytest's own faulthandler plugin cancels the (one, process-wide) timer whenever a test
    fails, as pytest-timeout cancels its own: arm it again for what is left, unless a debugger
    is about to take over (``--pdb``)."""
    if _deadline is not None and not node.config.option.usepdb:
        _arm(_deadline - time.monotonic())
