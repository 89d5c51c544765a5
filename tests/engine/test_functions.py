"""rediq's Lua as a versioned function library (``FUNCTION LOAD`` + ``FCALL``) on a real server:
built from every script file, loaded on first use, reloaded after ``FUNCTION FLUSH``, kept
across a restart, side by side with another version; ``REDIQ_SCRIPT_MODE=eval`` keeps EVALSHA."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from engine import lua
from engine.cli import cli, run
from engine.client import Client
from engine.lua import ScriptMode
from engine.task import Task
from tests.servers import ServerProcess, free_port


def _calls(r: redis.Redis, command: str) -> int:
    return int(r.info("commandstats").get(f"cmdstat_{command}", {}).get("calls", 0))


def _libraries(r: redis.Redis) -> list[str]:
    found = []
    for lib in r.function_list(library="rediq_*"):
        fields = lib if isinstance(lib, dict) else dict(zip(lib[::2], lib[1::2], strict=True))
        name = fields.get("library_name", fields.get(b"library_name"))
        found.append(name.decode() if isinstance(name, bytes) else str(name))
    return sorted(found)


@pytest.fixture
def no_functions(raw: redis.Redis) -> Iterator[redis.Redis]:
    raw.function_flush()
    raw.config_resetstat()
    yield raw
    raw.function_flush()


def test_first_use_loads_the_library_and_calls_go_by_fcall(no_functions: redis.Redis, redis_url: str) -> None:
    with Client(redis_url) as client:
        assert client.backend.script_mode is ScriptMode.FUNCTIONS
        task = client.enqueue("f", {"n": 1}, queue="fq")
        assert client.get_task(task.id) is not None
    assert _libraries(no_functions) == [lua.library().name]
    assert _calls(no_functions, "fcall") >= 1
    assert _calls(no_functions, "evalsha") == 0 and _calls(no_functions, "eval") == 0
    assert _calls(no_functions, "function|load") == 1


def test_function_flush_is_survived_in_single_calls_and_batches(
    no_functions: redis.Redis, redis_url: str
) -> None:
    with Client(redis_url) as client:
        client.enqueue("f", None, queue="fq")
        no_functions.function_flush()
        assert [r.status for r in client.enqueue_many([Task(type="f", queue=q) for q in ("fa", "fb")])] == [
            "new"
        ] * 2
        no_functions.function_flush()
        assert client.enqueue("f", None, queue="fq").status == "new"
    assert _libraries(no_functions) == [lua.library().name]
    assert _calls(no_functions, "function|load") == 3


def test_two_versions_of_the_library_run_side_by_side(no_functions: redis.Redis, redis_url: str) -> None:
    """A rolling deploy: an older rediq's library is loaded; the new one loads its own next to
    it and neither replaces the other."""
    lib = lua.library()
    older = lib.source.replace(lib.name, "rediq_0123456789ab")
    no_functions.function_load(older)
    with Client(redis_url) as client:
        client.enqueue("f", None, queue="fq")
    assert _libraries(no_functions) == sorted(["rediq_0123456789ab", lib.name])
    assert no_functions.fcall_ro("rediq_0123456789ab_version", 0) == "rediq_0123456789ab"
    assert no_functions.fcall_ro(lib.function("version"), 0) == lib.name


def test_the_library_survives_a_restart_without_a_reload(tmp_path: Path) -> None:
    # appendfsync always: with the default everysec the server may hold back its AOF write while
    # a background fsync lags (a busy disk, parallel tests), and the SIGKILL of restart() drops it
    server = ServerProcess(
        port=free_port(), data_dir=tmp_path, extra_args=["--appendonly", "yes", "--appendfsync", "always"]
    ).start()
    try:
        with Client(server.url) as client:
            client.enqueue("f", None, queue="fq")
        server.restart()
        r = redis.Redis(port=server.port)
        assert _libraries(r) == [lua.library().name]  # from the AOF
        with Client(server.url) as client:
            assert client.enqueue("f", None, queue="fq").status == "new"
        assert _calls(r, "function|load") == 0 and _calls(r, "fcall") >= 1
        r.close()
    finally:
        server.cleanup()


def test_eval_mode_sends_evalsha_and_loads_scripts(
    no_functions: redis.Redis, redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(lua.MODE_ENV, "eval")
    no_functions.script_flush()
    with Client(redis_url) as client:
        assert client.backend.script_mode is ScriptMode.EVAL
        assert client.enqueue("f", None, queue="fq").status == "new"
        client.backend.ensure_scripts()  # nothing to check in eval mode
    assert _calls(no_functions, "evalsha") >= 1 and _calls(no_functions, "fcall") == 0
    assert _libraries(no_functions) == []


def test_library_status_and_install(no_functions: redis.Redis, redis_url: str) -> None:
    with Client(redis_url) as client:
        assert [(s.present, s.loaded) for s in client.backend.library_status()] == [(False, False)]
        assert [(s.present, s.loaded) for s in client.backend.install_functions()] == [(True, True)]
        assert [(s.present, s.loaded) for s in client.backend.install_functions()] == [(True, False)]
        assert [s.present for s in client.backend.library_status()] == [True]


def test_install_functions_prune_deletes_other_versions_only(
    no_functions: redis.Redis, redis_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    lib = lua.library()
    no_functions.function_load(lib.source.replace(lib.name, "rediq_0123456789ab"))
    no_functions.function_load(
        "#!lua name=other_app\nredis.register_function('other_f', function() return 1 end)"
    )
    assert (
        run(cli, ["--redis-url", redis_url, "server", "install-functions", "--prune", "--json"], "rediq") == 0
    )
    reply = json.loads(capsys.readouterr().out)
    assert reply["library"] == lib.name
    assert reply["nodes"] == [{"node": "server", "present": True, "loaded": True}]
    assert reply["deleted"] == [{"node": "server", "library": "rediq_0123456789ab"}]
    assert _libraries(no_functions) == [lib.name]
    assert no_functions.fcall("other_f", 0) == 1  # another application's library is left alone
