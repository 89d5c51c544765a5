"""Fuzz the ``rediq`` command line: any argument list ends in a documented exit code, never
an internal error (exit 70) or a traceback. ``worker run`` and ``server start/stop`` are left
out (they run or stop long-lived processes)."""

from __future__ import annotations

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from engine.cli import EXIT_INTERNAL, cli, run

COMMANDS = [
    ["queue", "list"],
    ["queue", "inspect"],
    ["queue", "pause"],
    ["queue", "resume"],
    ["queue", "flush"],
    ["queue", "restore"],
    ["worker", "list"],
    ["task", "inspect"],
    ["task", "why"],
    ["task", "cancel"],
    ["task", "retry"],
    ["dead", "requeue"],
    ["doctor"],
    ["audit"],
    ["config", "show"],
    ["server", "status"],
    [],
]
words = st.sampled_from(
    [
        "--json",
        "--yes",
        "-h",
        "--help",
        "default",
        "dead",
        "dead:default",
        "x|y",
        "--limit",
        "-1",
        "0",
        "999999999999999999999",
        "nan",
        "--since",
        "1h",
        "--state",
        "bogus",
        "--all",
        "--",
        "'",
        "\x00",
        "é",
        "",
    ]
) | st.text(max_size=12)


@given(command=st.sampled_from(COMMANDS), args=st.lists(words, max_size=5))
@example(command=["task", "inspect"], args=["no-such-task"])
@example(command=["queue", "flush"], args=["dead:nowhere", "--yes"])
@example(command=["queue", "list"], args=["Traceback"])
def test_cli_never_fails_internally(
    redis_url: str, capsys: pytest.CaptureFixture[str], command: list[str], args: list[str]
) -> None:
    if command and command[0] == "queue" and "flush" in command and "--yes" not in args:
        args = [*args, "--yes"]  # never wait on a confirmation prompt
    code = run(cli, ["--redis-url", redis_url, *command, *args], "rediq")
    out, err = capsys.readouterr()
    assert code != EXIT_INTERNAL, err
    # the header Python prints, not the word: a fuzzed argument 'Traceback' is echoed back
    assert "Traceback (most recent call last)" not in out + err
