"""The ``rediq`` CLI against a real server: every command, ``--json`` parsed back, tables
within 80 columns, and error paths run as real subprocesses (one stderr line, distinct exit
code, no traceback)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from click.testing import CliRunner, Result

from engine import admin, inspect
from engine.cli import cli
from engine.cli.dead import parse_since
from engine.cli.output import render_table
from engine.client import Client
from engine.config import RediqConfig
from engine.errors import Permanent
from engine.registry import Registry
from tests.engine.conftest import running_worker, wait_until, wait_until_sync

ROOT = Path(__file__).resolve().parents[2]

cli_app = Registry()
"""The app ``rediq worker run`` loads in these tests (``tests.engine.test_cli:cli_app``)."""


@cli_app.task("ok", queue="clirun")
def ok_handler(ctx: Any, payload: Any) -> str:
    return "fine"


@cli_app.task("boom", queue="cli", max_retry=0)
def boom_handler(ctx: Any, payload: Any) -> None:
    raise Permanent(f"boom {payload}")


@cli_app.task("fizzle", queue="cli", max_retry=0)
def fizzle_handler(ctx: Any, payload: Any) -> None:
    raise Permanent("fizzle")


@pytest.fixture(autouse=True)
def isolated_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in RediqConfig.model_fields:
        monkeypatch.delenv(name.upper(), raising=False)
    monkeypatch.setenv("REDIQ_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("REDIQ_CONFIG", str(tmp_path / "none.toml"))
    monkeypatch.chdir(tmp_path)


def invoke(url: str, *args: str, input: str | None = None) -> Result:  # noqa: A002 - click's name
    return CliRunner().invoke(cli, ["--redis-url", url, *args], input=input, catch_exceptions=False)


def invoke_json(url: str, *args: str) -> Any:
    result = invoke(url, *args, "--json")
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def run_cli(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    full_env = {k: v for k, v in os.environ.items() if k != "REDIS_URL"}
    full_env["PYTHONPATH"] = str(ROOT)
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "engine.cli", *args],
        env=full_env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
    )


async def make_dead(url: str, queue: str, tasks: list[tuple[str, Any]]) -> list[str]:
    """Enqueue tasks whose handlers fail permanently and wait until all are dead."""
    with Client(url) as client:
        ids = [client.enqueue(t, p, queue=queue, max_retry=0).id for t, p in tasks]
        async with running_worker(cli_app, url, [queue]):
            await wait_until(lambda: client.call(admin.count, queue, "dead") >= len(ids))
    return ids


def table_lines(output: str) -> list[str]:
    return [line for line in output.splitlines() if line.strip()]


# ---------------------------------------------------------------------------------- queue


def test_queue_list_json_and_table(redis_url: str, client: Client) -> None:
    for i in range(3):
        client.enqueue("ok", i, queue="mail")
    client.enqueue("ok", 1, queue="payment", delay=3600)
    long_name = "q" * 64
    client.enqueue("ok", 1, queue=long_name)

    listed = invoke_json(redis_url, "queue", "list")
    by_name = {q["name"]: q for q in listed}
    assert set(by_name) == {"mail", "payment", long_name}
    assert by_name["mail"]["counts"]["pending"] == 3
    assert by_name["payment"]["counts"]["scheduled"] == 1
    assert by_name["payment"]["counts"]["pending"] == 0
    assert by_name["mail"]["paused"] is False
    assert by_name["mail"]["head_age_s"] >= 0
    assert set(by_name["mail"]) == {
        "name",
        "paused",
        "counts",
        "processed_last_minute",
        "failed_last_minute",
        "head_age_s",
    }

    table = invoke(redis_url, "queue", "list")
    assert table.exit_code == 0
    lines = table_lines(table.stdout)
    assert lines[0].split()[:3] == ["QUEUE", "PEND", "ACTIVE"]
    assert len(lines) == 4
    assert all(len(line) <= 80 for line in lines)
    mail_row = next(line for line in lines if line.startswith("mail "))
    assert mail_row.split()[1] == "3"


def test_queue_list_empty(redis_url: str) -> None:
    assert invoke_json(redis_url, "queue", "list") == []
    assert "no queues yet" in invoke(redis_url, "queue", "list").stdout


async def test_queue_inspect_counts_sample_and_throughput(redis_url: str, client: Client) -> None:
    dead_ids = await make_dead(redis_url, "cli", [("boom", 1), ("boom", 2)])
    pending = [client.enqueue("ok", i, queue="cli").id for i in range(3)]

    shown = invoke_json(redis_url, "queue", "inspect", "cli", "--sample", "2")
    assert shown["name"] == "cli"
    assert shown["counts"]["dead"] == 2
    assert shown["counts"]["pending"] == 3
    assert shown["head_age_s"] is not None
    assert shown["failed_last_minute"] >= 0 and shown["processed_last_minute"] >= 0
    assert [t["id"] for t in shown["sample"]["pending"]] == pending[:2]
    assert {t["id"] for t in shown["sample"]["dead"]} == set(dead_ids)
    assert shown["sample"]["dead"][0]["last_error"].startswith("Permanent: boom")
    assert shown["sample"]["active"] == []

    text = invoke(redis_url, "queue", "inspect", "cli")
    assert text.exit_code == 0
    assert "dead=2" in text.stdout and "pending=3" in text.stdout
    assert dead_ids[0] in text.stdout
    assert all(len(line) <= 80 for line in text.stdout.splitlines())


def test_queue_pause_and_resume(redis_url: str, client: Client) -> None:
    client.enqueue("ok", 1, queue="mail")
    assert invoke_json(redis_url, "queue", "pause", "mail") == {
        "queue": "mail",
        "paused": True,
        "changed": True,
    }
    summary = client.call(inspect.queue, "mail")
    assert summary is not None and summary.paused
    assert "already paused" in invoke(redis_url, "queue", "pause", "mail").stdout
    assert invoke_json(redis_url, "queue", "list")[0]["paused"] is True

    assert "resumed" in invoke(redis_url, "queue", "resume", "mail").stdout
    summary = client.call(inspect.queue, "mail")
    assert summary is not None and not summary.paused


async def test_queue_flush_dead_asks_unless_yes(redis_url: str, client: Client) -> None:
    await make_dead(redis_url, "cli", [("boom", 1), ("boom", 2)])

    declined = invoke(redis_url, "queue", "flush", "dead:cli", input="n\n")
    assert declined.exit_code != 0
    assert client.call(admin.count, "cli", "dead") == 2

    accepted = invoke(redis_url, "queue", "flush", "dead:cli", input="y\n")
    assert accepted.exit_code == 0
    assert "deleted 2 dead task(s)" in accepted.stdout
    assert "(restorable for 7.0d)" in accepted.stderr
    assert "brings them back within 7.0d" in accepted.stdout
    assert client.call(admin.count, "cli", "dead") == 0
    assert client.call(admin.count, "cli", "quarantined") == 2

    assert invoke_json(redis_url, "queue", "restore", "cli", "--all") == {
        "queue": "cli",
        "restored": 2,
        "refused": {},
    }
    assert client.call(admin.count, "cli", "dead") == 2
    assert invoke(redis_url, "queue", "flush", "dead:cli", "--yes").exit_code == 0
    (one,) = client.call(inspect.page, "cli", "quarantined", 0, 1).tasks
    assert "restored 1 task(s)" in invoke(redis_url, "queue", "restore", "cli", one.id).stdout
    assert client.call(admin.count, "cli", "dead") == 1
    assert invoke(redis_url, "queue", "flush", "dead:cli", "--yes").exit_code == 0

    await make_dead(redis_url, "cli", [("boom", 3)])
    assert invoke_json(redis_url, "queue", "flush", "dead:cli", "--yes") == {
        "queue": "cli",
        "state": "dead",
        "flushed": 1,
    }


# ---------------------------------------------------------------------------------- task


async def test_task_inspect_json_and_text(redis_url: str, client: Client) -> None:
    (dead_id,) = await make_dead(redis_url, "cli", [("boom", {"order": 7})])
    child = client.enqueue("ok", 2, queue="cli")
    shown = invoke_json(redis_url, "task", "inspect", dead_id)
    assert shown["id"] == dead_id
    assert shown["state"] == "dead"
    assert shown["queue"] == "cli"
    assert shown["payload"] == {"order": 7}
    assert shown["last_error"] == "Permanent: boom {'order': 7}"
    assert "Permanent" in shown["traceback"]
    assert [h["state"] for h in shown["history"]][0] == "dead"
    assert {"progress", "depends_on", "dependents", "waiting_on", "attempts"} <= set(shown)

    text = invoke(redis_url, "task", "inspect", dead_id)
    assert text.exit_code == 0
    assert "state       dead" in text.stdout
    assert "error       Permanent: boom" in text.stdout
    assert "history (newest first):" in text.stdout
    assert child.id not in text.stdout


def test_task_inspect_shows_dependencies(redis_url: str, client: Client) -> None:
    parent = client.enqueue("ok", 1, queue="mail")
    child = client.enqueue("ok", 2, queue="mail", depends_on=[parent.id])
    shown = invoke_json(redis_url, "task", "inspect", child.id)
    assert shown["state"] == "waiting"
    assert shown["depends_on"] == [f"mail|{parent.id}"]
    assert shown["waiting_on"] == [f"mail|{parent.id}"]
    assert invoke_json(redis_url, "task", "inspect", parent.id)["dependents"] == [f"mail|{child.id}"]
    assert f"mail|{parent.id}" in invoke(redis_url, "task", "inspect", child.id).stdout


def test_task_cancel(redis_url: str, client: Client) -> None:
    task_id = client.enqueue("ok", 1, queue="mail").id
    assert invoke_json(redis_url, "task", "cancel", task_id) == {
        "id": task_id,
        "queue": "mail",
        "result": "cancelled",
    }
    info = client.get_task(task_id)
    assert info is not None and info.state == "cancelled"
    again = invoke(redis_url, "task", "cancel", task_id)
    assert "already finished (cancelled)" in again.stdout


async def test_task_retry_moves_dead_to_pending(redis_url: str, client: Client) -> None:
    (dead_id,) = await make_dead(redis_url, "cli", [("boom", 1)])
    shown = invoke_json(redis_url, "task", "retry", dead_id)
    assert shown == {"id": dead_id, "queue": "cli", "previous_state": "dead", "state": "pending"}
    info = client.get_task(dead_id)
    assert info is not None and info.state == "pending" and info.attempts == 0
    client.call(admin.delete, "cli", [dead_id])


def test_task_why_names_the_blocking_reason(redis_url: str, client: Client) -> None:
    first = client.enqueue("ok", 1, queue="mail")
    second = client.enqueue("ok", 2, queue="mail")
    invoke(redis_url, "queue", "pause", "mail")
    shown = invoke_json(redis_url, "task", "why", second.id)
    assert shown["id"] == second.id and shown["queue"] == "mail" and shown["state"] == "pending"
    assert shown["blocked"] is True
    assert shown["position"] == 1
    assert any("paused" in r for r in shown["reasons"])
    assert any("no live worker" in r for r in shown["reasons"])
    assert [c["reason"] for c in shown["causes"]] == ["paused", "no_worker", "position"]
    text = invoke(redis_url, "task", "why", first.id)
    assert text.stdout.startswith(f"task {first.id} in mail: pending")
    assert "  - queue 'mail' is paused" in text.stdout


def test_doctor_finds_and_repairs(redis_url: str, client: Client, raw: redis.Redis) -> None:
    # the function library is on the server as wherever rediq ran (the session's server has it
    # only if an earlier test on this xdist worker loaded it: this test failed alone before)
    invoke(redis_url, "server", "install-functions")
    assert invoke_json(redis_url, "doctor") == {"repair": False, "findings": []}
    assert "no problems found" in invoke(redis_url, "doctor").stdout
    task_id = client.enqueue("ok", 1, queue="mail").id
    raw.delete(f"rediq:{{mail}}:t:{task_id}")  # a pending entry whose hash is gone
    found = invoke_json(redis_url, "doctor")["findings"]
    assert found and found[0]["queue"] == "mail" and found[0]["repaired"] is False
    assert "rediq doctor --repair" in invoke(redis_url, "doctor").stdout
    repaired = invoke_json(redis_url, "doctor", "--repair")["findings"]
    assert repaired and all(f["repaired"] for f in repaired)
    assert invoke_json(redis_url, "doctor")["findings"] == []


def test_audit_lists_operator_actions(redis_url: str, client: Client) -> None:
    assert invoke_json(redis_url, "audit") == []
    client.enqueue("ok", 1, queue="mail")
    invoke(redis_url, "queue", "pause", "mail")
    invoke(redis_url, "queue", "resume", "mail")
    entries = invoke_json(redis_url, "audit", "--limit", "5")
    assert [e["action"] for e in entries] == ["resume", "pause"]
    assert entries[0]["queue"] == "mail"
    table = invoke(redis_url, "audit").stdout
    assert table.splitlines()[0].split()[:2] == ["AT", "(UTC)"]
    assert all(len(line) <= 80 for line in table.splitlines())


# ---------------------------------------------------------------------------------- dead


async def test_dead_requeue_by_type_since_and_all(redis_url: str, client: Client) -> None:
    await make_dead(redis_url, "cli", [("boom", 1), ("fizzle", 2), ("fizzle", 3), ("boom", 4)])

    assert invoke_json(redis_url, "dead", "requeue", "cli", "--type", "fizzle") == {
        "queue": "cli",
        "requeued": 2,
        "refused": {},
    }
    assert client.call(admin.count, "cli", "dead") == 2
    assert client.call(admin.count, "cli", "pending") == 2
    assert {t.type for t in client.call(inspect.page, "cli", "pending").tasks} == {"fizzle"}

    future = "2999-01-01T00:00:00+00:00"
    assert invoke_json(redis_url, "dead", "requeue", "cli", "--since", future)["requeued"] == 0
    assert (
        invoke_json(redis_url, "dead", "requeue", "cli", "--type", "boom", "--since", "1h")["requeued"] == 2
    )
    assert client.call(admin.count, "cli", "dead") == 0
    assert client.call(admin.flush, "cli", "pending") == 4  # else the next worker kills them again

    await make_dead(redis_url, "cli", [("boom", 5)])
    result = invoke(redis_url, "dead", "requeue", "cli", "--all")
    assert "requeued 1 dead task(s)" in result.stdout
    assert client.call(admin.count, "cli", "dead") == 0
    client.call(admin.flush, "cli", "pending")


def test_parse_since() -> None:
    from datetime import UTC, datetime

    now = datetime(2026, 1, 2, 12, 0, tzinfo=UTC)
    assert parse_since("90m", now) == datetime(2026, 1, 2, 10, 30, tzinfo=UTC)
    assert parse_since("1d", now) == datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
    assert parse_since("2026-01-01T08:00", now) == datetime(2026, 1, 1, 8, 0, tzinfo=UTC)
    with pytest.raises(Exception, match="neither a duration"):
        parse_since("yesterday", now)


def test_render_table_truncates_flex_column_to_80() -> None:
    out = render_table(["A", "B"], [["x" * 200, "tail"]], flex=0)
    assert all(len(line) <= 80 for line in out.splitlines())
    assert out.splitlines()[1].endswith("…  tail")


# ---------------------------------------------------------------------------------- workers


def test_worker_run_registers_processes_and_drains(redis_url: str, client: Client, tmp_path: Path) -> None:
    log = open(tmp_path / "worker.log", "wb")  # noqa: SIM115 - closed below
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("REDIS_URL", None)
    proc = subprocess.Popen(
        [sys.executable, "-m", "engine.cli", "--redis-url", redis_url, "worker", "run"]
        + [
            "--app",
            "tests.engine.test_cli:cli_app",
            "--queues",
            "clirun",
            "--concurrency",
            "2",
            "--grace",
            "5",
        ],
        cwd=tmp_path,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:

        def registered() -> list[Any]:
            result = CliRunner().invoke(cli, ["--redis-url", redis_url, "worker", "list", "--json"])
            return list(json.loads(result.stdout)) if result.exit_code == 0 else []

        wait_until_sync(lambda: len(registered()) == 1, timeout=20)
        (shown,) = registered()
        assert shown["queues"] == ["clirun"]
        assert shown["concurrency"] == 2
        assert shown["stale"] is False
        assert shown["pid"] == proc.pid
        assert shown["overdue"] == 0  # no slot held by a handler past its timeout

        table = invoke(redis_url, "worker", "list")
        assert table.stdout.splitlines()[0].split()[:4] == ["WORKER", "QUEUES", "BUSY", "OVERDUE"]
        assert all(len(line) <= 80 for line in table.stdout.splitlines())

        ids = [client.enqueue("ok", i, queue="clirun").id for i in range(5)]
        wait_until_sync(lambda: client.call(admin.count, "clirun", "completed") == 5, timeout=20)
        info = client.get_task(ids[0])
        assert info is not None and info.result == "fine"
    finally:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(30)
        log.close()
    assert code == 0, (tmp_path / "worker.log").read_text()
    assert invoke_json(redis_url, "worker", "list") == []


@pytest.mark.parametrize("loop", ["uvloop", "asyncio"])
def test_the_worker_runs_on_the_event_loop_configured(
    redis_url: str, client: Client, tmp_path: Path, loop: str
) -> None:
    task = client.enqueue("ok", None, queue="clirun")
    proc = subprocess.Popen(
        [sys.executable, "-m", "engine.cli", "--redis-url", redis_url, "worker", "run"]
        + ["--app", "tests.engine.test_cli:cli_app", "--queues", "clirun", "--grace", "5"],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(ROOT), "WORKER_EVENT_LOOP": loop},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_until_sync(lambda: getattr(client.get_task(task.id), "state", None) == "completed", timeout=20)
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert f"slots on {loop}" in err


def test_an_unknown_event_loop_is_a_one_line_config_error(redis_url: str, tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "engine.cli", "--redis-url", redis_url, "worker", "run"]
        + ["--app", "tests.engine.test_cli:cli_app", "--queues", "clirun"],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(ROOT), "WORKER_EVENT_LOOP": "trio"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    assert "worker_event_loop" in result.stderr and "Traceback" not in result.stderr


def test_worker_shorthand_without_run(redis_url: str, tmp_path: Path) -> None:
    """`rediq worker --app …` (what the console's launcher runs) is `rediq worker run --app …`."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "engine.cli", "worker", "--app", "tests.engine.test_cli:cli_app"]
        + ["--queues", "short", "--concurrency", "3", "--redis-url", redis_url],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:

        def listed() -> list[Any]:
            result = CliRunner().invoke(cli, ["--redis-url", redis_url, "worker", "list", "--json"])
            return list(json.loads(result.stdout)) if result.exit_code == 0 else []

        wait_until_sync(lambda: len(listed()) == 1, timeout=20)
        assert listed()[0]["queues"] == ["short"] and listed()[0]["concurrency"] == 3
        # SIGTERM during the worker's first maintenance round can lose the cancellation and hang
        # the drain (engine.worker issue, reported to the lead); let that round finish first.
        time.sleep(1.0)
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err


def test_worker_list_empty(redis_url: str) -> None:
    assert invoke_json(redis_url, "worker", "list") == []
    assert "no workers" in invoke(redis_url, "worker", "list").stdout


# ---------------------------------------------------------------------------------- dash, completion


def test_dash_execs_console_with_same_url_and_interval(redis_url: str, tmp_path: Path) -> None:
    fake = tmp_path / "fake" / "rediq_tui"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text("")
    (fake / "__main__.py").write_text(
        "import json, os, sys\n"
        "json.dump({'argv': sys.argv[1:], 'url': os.environ['REDIS_URL'], "
        "'prefix': os.environ['REDIQ_PREFIX']}, open(os.environ['DASH_OUT'], 'w'))\n"
    )
    out = tmp_path / "dash.json"
    result = run_cli(
        "--redis-url",
        redis_url,
        "--prefix",
        "p1",
        "dash",
        "--interval",
        "250",
        "--read-only",
        cwd=tmp_path,
        env={"PYTHONPATH": f"{tmp_path / 'fake'}{os.pathsep}{ROOT}", "DASH_OUT": str(out)},
    )
    assert result.returncode == 0, result.stderr
    launched = json.loads(out.read_text())
    assert launched == {
        "argv": ["--interval", "250", "--read-only"],  # the URL travels in the environment only
        "url": redis_url,
        "prefix": "p1",
    }


def test_dash_without_console_is_one_line_error(
    redis_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Whatever the install (editable, wheel, checkout), a missing console is one E013 line."""
    import engine.cli
    import engine.cli.dash

    monkeypatch.setattr(engine.cli.dash, "find_spec", lambda name: None)
    code = engine.cli.run(engine.cli.cli, ["--redis-url", redis_url, "dash"], "rediq")
    err = capsys.readouterr().err
    assert code == 14
    assert err.startswith("E013: the console package rediq_tui is not installed")
    assert len(err.strip().splitlines()) == 1


def test_bash_completion_script(tmp_path: Path) -> None:
    result = run_cli(cwd=tmp_path, env={"_REDIQ_COMPLETE": "bash_source"})
    assert result.returncode == 0
    assert "_rediq_completion" in result.stdout
    assert "complete " in result.stdout
    zsh = run_cli(cwd=tmp_path, env={"_REDIQ_COMPLETE": "zsh_source"})
    assert "#compdef rediq" in zsh.stdout


def test_queue_names_complete_from_redis(redis_url: str, client: Client, tmp_path: Path) -> None:
    client.enqueue("ok", 1, queue="mail")
    client.enqueue("ok", 1, queue="mailbox")
    client.enqueue("ok", 1, queue="payment")
    words = f"rediq --redis-url {redis_url} queue inspect ma"
    result = run_cli(
        cwd=tmp_path,
        env={"_REDIQ_COMPLETE": "bash_complete", "COMP_WORDS": words, "COMP_CWORD": "5"},
    )
    assert result.returncode == 0
    assert result.stdout.split() == ["plain,mail", "plain,mailbox"]
    unreachable = run_cli(
        cwd=tmp_path,
        env={
            "_REDIQ_COMPLETE": "bash_complete",
            "COMP_WORDS": "rediq --redis-url redis://127.0.0.1:1/0 queue pause ",
            "COMP_CWORD": "5",
        },
    )
    assert unreachable.returncode == 0
    assert unreachable.stdout.strip() == "" and unreachable.stderr == ""


def test_help_and_no_arguments(tmp_path: Path) -> None:
    result = run_cli(cwd=tmp_path)
    assert result.returncode == 0
    assert "queue" in result.stdout and "worker" in result.stdout
    assert run_cli("worker", "run", "--help", cwd=tmp_path).stdout.count("--metrics-port") == 1


# ---------------------------------------------------------------------------------- errors (subprocesses)


@pytest.fixture
def acl_user(redis_url: str, raw: redis.Redis) -> Iterator[str]:
    raw.execute_command("ACL", "SETUSER", "cliops", "on", ">right-password", "~*", "&*", "+@all")
    yield "cliops"
    raw.execute_command("ACL", "DELUSER", "cliops")


def error_cases(redis_url: str) -> list[tuple[list[str], int, str]]:
    return [
        (["--redis-url", redis_url, "queue", "list", "--bogus"], 64, "usage error: No such option"),
        (["--redis-url", redis_url, "task", "inspect", "nope"], 7, "E005: no task with id 'nope'"),
        (["--redis-url", redis_url, "task", "cancel", "nope"], 7, "E005: "),
        (["--redis-url", redis_url, "task", "why", "nope"], 7, "E005: "),
        (["--redis-url", redis_url, "queue", "restore", "mail"], 64, "usage error: give task ids or --all"),
        (["--redis-url", redis_url, "queue", "inspect", "ghost"], 5, "E003: queue 'ghost' does not exist"),
        (["--redis-url", redis_url, "queue", "resume", "ghost"], 5, "E003: "),
        (["--redis-url", redis_url, "queue", "pause", "a b"], 2, "E006: queue name 'a b' is invalid"),
        (["--redis-url", redis_url, "dead", "requeue", "ghost", "--all"], 5, "E003: "),
        (["--redis-url", redis_url, "queue", "flush", "pending:mail", "--yes"], 64, "usage error: "),
        (["--redis-url", redis_url, "dead", "requeue", "mail"], 64, "usage error: say which dead tasks"),
        (["--redis-url", "redis://127.0.0.1:1/0", "queue", "list"], 3, "E001: cannot reach Redis"),
        (["--redis-url", "http://example.com", "queue", "list"], 2, "E007: unknown scheme 'http'"),
        (["--redis-url", redis_url, "worker", "run", "--app", "no.such.module:reg"], 8, "E008: "),
    ]


def test_error_paths_are_one_line_with_distinct_codes(redis_url: str, client: Client, tmp_path: Path) -> None:
    client.enqueue("ok", 1, queue="mail")
    for args, code, prefix in error_cases(redis_url):
        result = run_cli(*args, cwd=tmp_path)
        assert result.returncode == code, (args, result.stderr)
        assert result.stderr.startswith(prefix), (args, result.stderr)
        assert len(result.stderr.strip().splitlines()) == 1, (args, result.stderr)
        assert "Traceback" not in result.stderr
        assert result.stdout == ""


def test_wrong_password_is_one_line_and_masked(redis_url: str, acl_user: str, tmp_path: Path) -> None:
    port = redis_url.rsplit(":", 1)[1].split("/")[0]
    result = run_cli(
        "--redis-url", f"redis://{acl_user}:wrong-password@127.0.0.1:{port}/0", "queue", "list", cwd=tmp_path
    )
    assert result.returncode == 3
    assert result.stderr.startswith("E001: Redis refused the credentials")
    assert "user name and password" in result.stderr
    assert "wrong-password" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1

    good = run_cli(
        "--redis-url", f"redis://{acl_user}:right-password@127.0.0.1:{port}/0", "queue", "list", cwd=tmp_path
    )
    assert good.returncode == 0, good.stderr


def test_unexpected_redis_error_is_one_line(redis_url: str, raw: redis.Redis, tmp_path: Path) -> None:
    raw.set("broken:queues", "not a set")
    try:
        result = run_cli("--redis-url", redis_url, "--prefix", "broken", "queue", "list", cwd=tmp_path)
    finally:
        raw.delete("broken:queues")
    assert result.returncode == 10
    assert result.stderr.startswith("redis error: WRONGTYPE")
    assert len(result.stderr.strip().splitlines()) == 1


def test_invalid_config_value_is_one_line(tmp_path: Path) -> None:
    result = run_cli(
        "queue", "list", cwd=tmp_path, env={"WORKER_CONCURRENCY": "many", "REDIQ_DATA_DIR": str(tmp_path)}
    )
    assert result.returncode == 12
    assert result.stderr.startswith("E011: invalid setting worker_concurrency='many' (from environment)")
    assert len(result.stderr.strip().splitlines()) == 1


def test_retry_of_pending_task_is_refused(redis_url: str, client: Client, tmp_path: Path) -> None:
    task_id = client.enqueue("ok", 1, queue="mail").id
    result = run_cli("--redis-url", redis_url, "task", "retry", task_id, cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.startswith(f"E006: task {task_id} is pending")


def test_flush_declined_without_tty_changes_nothing(redis_url: str, client: Client, tmp_path: Path) -> None:
    client.enqueue("ok", 1, queue="mail")
    result = subprocess.run(
        [sys.executable, "-m", "engine.cli", "--redis-url", redis_url, "queue", "flush", "dead:mail"],
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        cwd=tmp_path,
        input="",
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    assert result.stderr.strip().endswith("aborted: nothing was changed")
    assert "Traceback" not in result.stderr
    time.sleep(0)  # the queue still has its pending task
    assert client.call(admin.count, "mail", "pending") == 1


def test_worker_weights_flag_is_checked_in_one_line(tmp_path: Path) -> None:
    proc = run_cli("worker", "run", "--app", "x:y", "--weights", "payment=zero", cwd=tmp_path)
    assert proc.returncode != 0
    assert "--weights: 'payment=zero' is not QUEUE=N" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_parse_weights() -> None:
    from engine.cli.worker_run import parse_weights

    assert parse_weights("payment=3, reports=1") == {"payment": 3, "reports": 1}
    assert parse_weights(None) is None


def test_dash_passes_the_url_in_the_environment_not_on_the_command_line(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    url = "redis://:hunter2@127.0.0.1:6390/0"
    seen: dict[str, Any] = {}

    def fake_exec(file: str, args: list[str], env: dict[str, str]) -> None:
        seen.update(file=file, args=args, env=env)

    monkeypatch.setattr(os, "execvpe", fake_exec)
    result = CliRunner().invoke(cli, ["--redis-url", url, "dash", "--read-only"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert seen["args"][1:3] == ["-m", "rediq_tui"] and "--read-only" in seen["args"]
    assert not any("hunter2" in a or "redis://" in a for a in seen["args"])
    assert seen["env"]["REDIS_URL"] == url


def test_error_lines_show_controls_visibly(capsys: pytest.CaptureFixture[str]) -> None:
    import click

    from engine.cli import run
    from engine.errors import TaskNotFound

    @click.command()
    def boom() -> None:
        raise TaskNotFound("no task \x1b]0;PWNED\x07 in\nqueue \u202eevil")

    assert run(boom, [], "rediq") == TaskNotFound.exit_code
    err = capsys.readouterr().err
    assert err.startswith("E005: no task ␛]0;PWNED␇ in queue ⟨U+202E⟩evil. Check the id")
    assert err.count("\n") == 1
