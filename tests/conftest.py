"""The one fixture that starts real servers, plus a fresh database per test; and the
``server`` marker that splits the fast inner loop (``pytest -m "not server"``: tests/pure)
from everything else."""

from __future__ import annotations

import functools
import itertools
import os
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from _pytest.mark.expression import Expression

from rediq_tui.firstrun import DISMISSED_MARKER, STATE_DIR_ENV
from tests.servers import ServerProcess, free_port

pytest_plugins = ["tests.watchdog"]  # a hard limit per test that a failed test's teardown cannot escape

PURE = Path(__file__).parent / "pure"
"""The only directory whose tests start nothing: no server, no worker, no console."""


def _outside_pure(path: Path) -> bool:
    return PURE != path and PURE not in path.parents


MOVED_TO_SLOW = frozenset(
    {
        "tests/engine/test_cli.py::test_error_paths_are_one_line_with_distinct_codes",
        "tests/engine/test_dashboards.py::test_alerts_and_dashboard_against_a_live_worker",
        "tests/engine/test_declarations.py::test_mypy_checks_the_payload_of_a_typed_handle",
        "tests/engine/test_embedded.py::test_cli_server_status_stop_and_commands_use_embedded",
        "tests/examples/test_kit_example.py::test_the_examples_own_test_passes_as_a_user_runs_it",
        "tests/tui/test_find.py::test_all_tasks_view_across_queues_with_counts_filter_and_paging[size1]",
        "tests/tui/test_find.py::test_colon_jumps_to_a_task_id_in_any_queue_a_queue_and_a_worker[size1]",
        "tests/tui/test_find.py::test_command_palette_jumps_to_a_queue",
        "tests/tui/test_find.py::test_slash_filters_every_list_and_typing_never_switches_views[size0]",
        "tests/tui/test_find.py::test_slash_filters_every_list_and_typing_never_switches_views[size1]",
        "tests/tui/test_operator.py::test_delete_group_quarantines_and_restore_brings_tasks_back",
        "tests/tui/test_operator.py::test_filter_searches_the_whole_state",
        "tests/tui/test_snapshots.py::test_retry_group_confirmation",
        "tests/tui/test_snapshots.py::test_task_detail",
        "tests/tui/test_snapshots.py::test_task_detail_blocked",
        "tests/tui/test_snapshots.py::test_tasks_view_with_progress",
        "tests/tui/test_snapshots_console.py::test_jump_prompt_and_filtered_queues",
        "tests/tui/test_system.py::test_a_dead_tasks_whole_error_is_under_the_table_not_cut",
        "tests/tui/test_system.py::test_a_worker_that_exits_at_once_is_reported_failed_not_launched",
        "tests/tui/test_system.py::test_finished_tasks_show_no_live_progress_and_dead_detail_shows_error_first",
        "tests/tui/test_system.py::test_toasts_and_confirmations_name_the_exact_target_escaped",
        "tests/tui/test_system.py::test_worker_detail_and_stop_from_there",
        "tests/tui/test_system.py::test_y_copies_the_task_id",
        "tests/tui/test_views.py::test_active_progress_bar_and_live_progress_event",
        "tests/tui/test_views.py::test_cron_view_lists_entries",
        "tests/tui/test_views.py::test_detail_follows_progress_events",
        "tests/tui/test_views.py::test_help_lists_bindings_and_view_keys",
        "tests/tui/test_views.py::test_page_size_follows_terminal_height",
        "tests/tui/test_views.py::test_pause_refresh_stops_polling",
        "tests/tui/test_views.py::test_queues_counts_paused_and_enter_opens_tasks",
        "tests/tui/test_views.py::test_task_detail_fields_error_history_and_dependencies",
        "tests/tui/test_views.py::test_tasks_key_opens_selected_queue_and_escape_clears_filter",
        "tests/tui/test_views.py::test_tasks_paging_state_switch_filter_sort_and_mark",
    }
)
"""The heaviest tests of the default suite (10 s or more each in a run at load 6+ on the
2-core machine, 52 % of its summed durations with the three below), marked ``slow`` here: they
run in CI's marked step (``-m "slow or cluster or chaos or e2e"``), not in ``python -m pytest``.
Mostly console scenarios that drive many screens; kept in the default suite despite their
weight: the worker-crash and raw-state fuzz tests, which guard the engine's core promise.
A node id listed here that no longer exists marks nothing (the test then runs by default)."""


WORKERS_PER_CORE = 2
"""xdist workers per core. The suite mostly waits (worker processes starting, a console's refresh
ticks, polls with deadlines), so more workers than cores pay: measured on the 2-core machine,
see docs/testing.md ("Time of the default suite")."""

FAST_DIRECTORIES = (PURE, Path(__file__).parent / "lua")
"""Tests of milliseconds each: starting xdist workers (seconds each on a loaded machine) costs
more than they take, so a run of only these stays in one process (the inner loop)."""


def _worth_parallel(config: pytest.Config) -> bool:
    """Whether a run is big enough for xdist workers: the default suite or a directory of slow
    tests. Named files and test ids, the fast directories and ``-m "not server"`` run in one
    process, where they finish before the workers would have started."""
    if _excludes_every_server_test(config.option.markexpr):
        return False
    paths = [Path(arg.split("::")[0]).resolve() for arg in config.args]
    return any(
        path.is_dir() and not any(path == fast or fast in path.parents for fast in FAST_DIRECTORIES)
        for path in paths
    )


@pytest.hookimpl(tryfirst=True)  # before pytest-xdist's own reads -n and --dist
def pytest_cmdline_main(config: pytest.Config) -> None:
    """Spread a big run over xdist workers unless told otherwise (``-n``, ``--dist``, ``--pdb``,
    ``-p no:xdist``); inside a worker there is nothing to decide."""
    if not config.pluginmanager.has_plugin("xdist") or hasattr(config, "workerinput"):
        return
    option = config.option
    if option.numprocesses is not None or option.dist != "no" or option.usepdb or option.collectonly:
        return
    if _worth_parallel(config):
        option.numprocesses = "auto"  # resolved by pytest_xdist_auto_num_workers below
        option.dist = "load"  # with the longest directories first: HEAVY_FIRST


@pytest.hookimpl(optionalhook=True)  # a hook of pytest-xdist: absent under -p no:xdist
def pytest_xdist_auto_num_workers(config: pytest.Config) -> int:
    override = os.environ.get("PYTEST_XDIST_AUTO_NUM_WORKERS")  # xdist's own knob, kept working
    if override:
        return int(override)
    return WORKERS_PER_CORE * (os.cpu_count() or 1)


@pytest.hookimpl(tryfirst=True)  # before the -m deselection reads the markers
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        # every test outside tests/pure needs a server, a console or a process of its own
        if _outside_pure(Path(item.path)):
            item.add_marker(pytest.mark.server)
        if item.nodeid in MOVED_TO_SLOW:
            item.add_marker(pytest.mark.slow)
    if os.environ.get("PYTEST_XDIST_WORKER"):
        items.sort(key=_heavy_first)


HEAVY_FIRST = ("examples", "packaging", "bench", "faults", "fuzz", "tui", "engine")
"""The test directories that hold the long tests, roughly longest first (a serial run's junit
times on the 2-core machine at load 6-13, mean per test: examples 7.8 s, bench 7.7 s, packaging
4.7 s, tui 2.9 s, fuzz 2.3 s, faults 1.2 s with one of 17 s, engine 0.95 s; lua, pure and docs
take milliseconds). Under xdist (``--dist load`` hands tests out round
robin, then in small chunks to whichever worker is free) the long ones start at once on
different workers and the millisecond tests fill the end, instead of a 50 s test starting last
while the other workers idle."""


def _heavy_first(item: pytest.Item) -> int:
    """The rank of an item's directory in HEAVY_FIRST; other directories after, in their order
    (``sort`` is stable)."""
    path = Path(item.path)
    if PURE.parent not in path.parents:  # a test outside tests/ named on the command line
        return len(HEAVY_FIRST)
    top = path.relative_to(PURE.parent).parts[0]
    return HEAVY_FIRST.index(top) if top in HEAVY_FIRST else len(HEAVY_FIRST)


@functools.cache
def _excludes_every_server_test(text: str) -> bool:
    """Whether the ``-m`` expression deselects a test marked ``server`` whatever other markers
    it carries: then the directories outside tests/pure need not even be imported (importing
    the console and the engine's test apps is most of the time of an inner-loop run). Only the
    names the expression mentions can change its value, so only their subsets are tried (every
    declared marker's were 2^18 evaluations per directory: 11 s of a 13 s run)."""
    if not text:
        return False
    expression = Expression.compile(text)
    others = sorted(set(_MARK_NAME.findall(text)) - {"server", "and", "or", "not"})
    for n in range(len(others) + 1):
        for extra in itertools.combinations(others, n):
            names = {"server", *extra}
            if expression.evaluate(lambda name, /, names=names, **_: name in names):
                return False
    return True


_MARK_NAME = re.compile(r"[\w:+\-.\[\]\\/]+")
"""An identifier as pytest's ``-m`` grammar reads one."""


def pytest_ignore_collect(collection_path: Path, config: pytest.Config) -> bool | None:
    if collection_path.parent == PURE.parent and collection_path != PURE and collection_path.is_dir():
        return True if _excludes_every_server_test(config.option.markexpr) else None
    return None


@pytest.fixture(scope="session", autouse=True)
def _console_state(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Every console the tests start (in process, in tmux, served) remembers its state in a
    private directory, never the user's, where the first-launch tip is already dismissed (the
    snapshots show no tip; tests/tui/test_first_launch_tip.py points it elsewhere)."""
    state = tmp_path_factory.mktemp("console-state")
    (state / DISMISSED_MARKER).touch()
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(STATE_DIR_ENV, str(state))
        yield


@pytest.fixture(scope="session")
def valkey_server() -> Iterator[ServerProcess]:
    server = ServerProcess(port=free_port()).start()
    yield server
    server.cleanup()


@pytest.fixture
def redis_url(valkey_server: ServerProcess) -> Iterator[str]:
    """A URL to a private server whose data is wiped before each test (our own server on its
    own port, never a shared one)."""
    r = redis.Redis(port=valkey_server.port)
    if valkey_server.proc is None or valkey_server.proc.poll() is not None:
        valkey_server.start()
    r.flushall()
    r.close()
    yield valkey_server.url


@pytest.fixture
def raw(redis_url: str) -> Iterator[redis.Redis]:
    r = redis.Redis.from_url(redis_url, decode_responses=True)
    yield r
    r.close()
