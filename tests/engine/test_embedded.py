"""The embedded Valkey server: start, reuse, persistence across stop/start, no double start
under a race, the CLI's ``server status|stop``, and that a configured URL always wins.

Every test points ``REDIQ_DATA_DIR`` at its own temporary directory, never the real home.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from engine import config, embedded
from engine.config import RediqConfig

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    directory = tmp_path / "d"
    for name in RediqConfig.model_fields:
        monkeypatch.delenv(name.upper(), raising=False)
    monkeypatch.setenv("REDIQ_DATA_DIR", str(directory))
    monkeypatch.setenv("REDIQ_CONFIG", str(tmp_path / "none.toml"))
    monkeypatch.chdir(tmp_path)
    yield directory
    embedded.stop_server()


def cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "REDIS_URL"}
    env["PYTHONPATH"] = str(ROOT)
    return subprocess.run(
        [sys.executable, "-m", "engine.cli", *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_start_then_reuse_same_process(data_dir: Path) -> None:
    url = embedded.ensure_server()
    first = embedded.status()
    assert first.running and first.url == url and first.pid is not None
    assert url == f"unix://{data_dir / embedded.SOCKET_NAME}"
    assert (data_dir / embedded.PID_NAME).read_text().strip() == str(first.pid)

    assert embedded.ensure_server() == url
    assert embedded.status().pid == first.pid

    r = redis.Redis.from_url(url, decode_responses=True)
    try:
        assert r.config_get("appendonly") == {"appendonly": "yes"}
        assert r.config_get("appendfsync") == {"appendfsync": "everysec"}
        assert r.config_get("dir")["dir"] == str(data_dir)
    finally:
        r.close()


def test_data_survives_stop_and_start(data_dir: Path) -> None:
    url = embedded.ensure_server()
    r = redis.Redis.from_url(url, decode_responses=True)
    r.rpush("rediq-test:list", "a", "b")
    r.close()
    old_pid = embedded.stop_server()
    assert old_pid is not None
    assert not embedded.status().running

    url = embedded.ensure_server()
    assert embedded.status().pid != old_pid
    r = redis.Redis.from_url(url, decode_responses=True)
    try:
        assert r.lrange("rediq-test:list", 0, -1) == ["a", "b"]
    finally:
        r.close()
    assert embedded.status().aof


def test_concurrent_starts_share_one_server(data_dir: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    code = "from engine import embedded; embedded.ensure_server(); print(embedded.status().pid)"
    procs = [
        subprocess.Popen([sys.executable, "-c", code], env=env, stdout=subprocess.PIPE, text=True)
        for _ in range(3)
    ]
    pids = {p.communicate(timeout=60)[0].strip() for p in procs}
    assert len(pids) == 1
    assert pids == {str(embedded.status().pid)}


def test_default_url_uses_embedded_and_announces_once(
    data_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    embedded._announced.clear()
    url = config.default_url()
    assert config.default_url() == url
    err = capsys.readouterr().err
    assert err.count("using embedded Valkey at") == 1
    assert url in err


def test_configured_url_wins_and_no_server_starts(data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REDIS_URL", "redis://127.0.0.1:1/0")
    assert config.default_url() == "redis://127.0.0.1:1/0"
    monkeypatch.delenv("REDIS_URL")
    (data_dir.parent / ".env").write_text("REDIS_URL=redis://10.0.0.1:6379/0\n")
    assert config.default_url() == "redis://10.0.0.1:6379/0"
    assert not (data_dir / embedded.PID_NAME).exists()


def test_cli_server_status_stop_and_commands_use_embedded(data_dir: Path) -> None:
    cwd = data_dir.parent
    stopped = cli("server", "status", "--json", cwd=cwd)
    assert stopped.returncode == 0, stopped.stderr
    assert json.loads(stopped.stdout)["running"] is False

    listed = cli("queue", "list", "--json", cwd=cwd)  # no URL anywhere: starts the embedded server
    assert listed.returncode == 0, listed.stderr
    assert json.loads(listed.stdout) == []
    assert "using embedded Valkey at unix://" in listed.stderr

    status = cli("server", "status", "--json", cwd=cwd)
    shown = json.loads(status.stdout)
    assert shown["running"] is True
    assert shown["data_dir"] == str(data_dir)
    assert shown["pid"] == embedded.status().pid

    again = cli("queue", "list", cwd=cwd)  # reused, same pid
    assert again.returncode == 0
    assert embedded.status().pid == shown["pid"]

    stop = cli("server", "stop", cwd=cwd)
    assert stop.returncode == 0
    assert f"pid {shown['pid']}" in stop.stdout
    assert not embedded.status().running
    assert "not running" in cli("server", "stop", cwd=cwd).stdout


def test_worker_and_cli_share_the_embedded_server(data_dir: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "REDIS_URL"}
    env["PYTHONPATH"] = str(ROOT)
    worker = subprocess.Popen(
        [sys.executable, "-c", "from engine.cli import worker_main; worker_main()"]
        + ["--app", "tests.engine.test_cli:cli_app", "--queues", "shared", "--grace", "2"],
        env=env,
        cwd=data_dir.parent,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:

        def workers() -> list[dict[str, object]]:
            listed = cli("worker", "list", "--json", cwd=data_dir.parent)
            return list(json.loads(listed.stdout)) if listed.returncode == 0 else []

        deadline = time.monotonic() + 30
        while not workers() and time.monotonic() < deadline:
            time.sleep(0.2)
        (shown,) = workers()
        assert shown["queues"] == ["shared"]
        assert shown["pid"] == worker.pid
        time.sleep(1.0)  # past the worker's first maintenance round (see test_cli shorthand test)
    finally:
        worker.send_signal(signal.SIGTERM)
        _, err = worker.communicate(timeout=30)
    assert worker.returncode == 0, err
    assert err.count("using embedded Valkey at unix://") == 1


def test_unstartable_server_is_one_line_error(data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data_dir.mkdir(parents=True)
    (data_dir / "appendonlydir").write_text("not a directory")  # valkey cannot open its AOF dir
    result = cli("queue", "list", cwd=data_dir.parent)
    assert result.returncode == 3
    assert result.stderr.startswith("E001: ")
    assert len(result.stderr.strip().splitlines()) == 1
    assert "Traceback" not in result.stderr


def test_unusable_data_dir_is_one_line_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("a file where the data directory should be")
    env = {k: v for k, v in os.environ.items() if k != "REDIS_URL"}
    env.update(
        PYTHONPATH=str(ROOT), REDIQ_DATA_DIR=str(blocker / "sub"), REDIQ_CONFIG=str(tmp_path / "no.toml")
    )
    result = subprocess.run(
        [sys.executable, "-m", "engine.cli", "server", "status"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 3
    assert result.stderr.startswith("E001: cannot create the data directory")
    assert len(result.stderr.strip().splitlines()) == 1


def test_long_data_dir_still_serves_on_a_private_socket_never_tcp(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A data directory whose socket path would not fit in a socket address used to fall back
    to a loopback port with no password: any local user could write to the queues."""
    directory = tmp_path / ("x" * 60) / ("y" * 60) / "data"
    monkeypatch.setenv("REDIQ_DATA_DIR", str(directory))
    try:
        url = embedded.ensure_server()
        assert url.startswith("unix://") and len(url) - len("unix://") <= embedded.MAX_SOCKET_PATH
        sock = Path(url.removeprefix("unix://"))
        assert sock.parent.name == f"rediq-{os.getuid()}"
        assert sock.parent.stat().st_mode & 0o777 == 0o700
        assert sock.stat().st_mode & 0o077 == 0
        r = redis.Redis.from_url(url, decode_responses=True)
        try:
            assert r.config_get("port") == {"port": "0"}  # no TCP listener at all
            assert r.ping()
        finally:
            r.close()
        assert directory.stat().st_mode & 0o777 == 0o700
    finally:
        embedded.stop_server()


def test_data_dir_made_private_at_start_and_a_foreign_one_refused(tmp_path: Path) -> None:
    mine = tmp_path / "open"
    mine.mkdir(mode=0o755)
    mine.chmod(0o755)
    embedded._make_private(mine)
    assert mine.stat().st_mode & 0o777 == 0o700
    link = tmp_path / "link"
    link.symlink_to(mine)
    with pytest.raises(embedded.EmbeddedServerError, match="not a directory owned by this user"):
        embedded._make_private(link)
