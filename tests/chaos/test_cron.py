"""Three cron schedulers, one of them SIGKILLed and restarted every 1.5 s: every tick fires
exactly once. The server runs under ``faketime -f '+0 x60'`` so that a cron minute passes in
one real second (the engine takes all cron time from Redis ``TIME``)."""

from __future__ import annotations

import glob
import json
import os
import random
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
import redis

from tests.chaos.harness import ROOT, Figure, scale
from tests.servers import ServerProcess, free_port, valkey_binary

pytestmark = pytest.mark.chaos

SPEED = 60


def fake_clock_server(tmp_path: Path, spec: str) -> ServerProcess:
    libfaketime = next(iter(glob.glob("/usr/lib/*/faketime/libfaketime.so.1")), "")
    if not libfaketime:
        pytest.fail("faketime is not installed: apt-get install -y faketime")
    # libfaketime preloaded and the server exec'd by the shell, so the pid the fixture stops is
    # the server's (the ``faketime`` wrapper forks, and its child outlived every run)
    wrapper = tmp_path / "valkey-faketime.sh"
    wrapper.write_text(
        f"#!/bin/sh\nFAKETIME_DONT_FAKE_MONOTONIC=1 FAKETIME='{spec}' LD_PRELOAD={libfaketime} "
        f'exec {valkey_binary()} "$@"\n'
    )
    wrapper.chmod(0o755)
    return ServerProcess(port=free_port(), binary=str(wrapper)).start()


def tick_problems(fires: dict[str, list[int]], expected_step_ms: dict[str, int]) -> list[str]:
    """Missing or repeated ticks per cron entry, given every task's fire time."""
    problems = []
    for name, times in fires.items():
        step = expected_step_ms[name]
        counts = Counter(times)
        problems += [f"{name}: tick {t} fired {c} times" for t, c in counts.items() if c > 1]
        first, last = min(times), max(times)
        for t in range(first, last + 1, step):
            if t not in counts:
                problems.append(f"{name}: tick {t} never fired")
    return problems


def read_fires(r: redis.Redis) -> dict[str, list[int]]:
    fires: dict[str, list[int]] = {}
    for task_id in map(str, r.zrange("rediq:{cron}:pending", 0, -1)):  # decoded replies
        meta = json.loads(r.hget(f"rediq:{{cron}}:t:{task_id}", "meta") or "{}")
        fires.setdefault(meta["cron"], []).append(int(meta["fire_ms"]))
    return fires


def test_three_schedulers_one_killed_repeatedly(tmp_path: Path, request: pytest.FixtureRequest) -> None:
    run_s = max(20.0, 400 * scale())
    server = fake_clock_server(tmp_path, f"+0 x{SPEED}")
    request.addfinalizer(server.cleanup)
    r = redis.Redis(port=server.port, decode_responses=True)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    log = open(tmp_path / "schedulers.log", "ab")  # noqa: SIM115

    def spawn() -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            [sys.executable, str(ROOT / "tests/chaos/scheduler_main.py"), server.url],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )

    procs = [spawn() for _ in range(3)]
    kills = 0
    rng = random.Random(3)
    try:
        began = time.monotonic()
        while time.monotonic() - began < run_s:
            time.sleep(rng.uniform(1.0, 2.0))
            victim = 0  # the same slot every time: one scheduler that keeps dying
            procs[victim].kill()
            procs[victim].wait(5)
            kills += 1
            procs[victim] = spawn()
        server_now_ms = int(r.time()[0]) * 1000
    finally:
        for p in procs:
            p.kill()
            p.wait(5)
        log.close()
    fires = read_fires(r)
    steps = {"every-minute": 60_000, "every-2-minutes": 120_000}
    problems = tick_problems(fires, steps)
    total = sum(len(v) for v in fires.values())
    counts = Counter(t for v in fires.values() for t in v)
    fake_minutes = run_s * SPEED / 60
    Figure(
        "cron: 3 schedulers, 1 SIGKILLed every 1-2s",
        total,
        total,
        sum(1 for p in problems if "never fired" in p),
        sum(1 for p in problems if "fired" in p and "never" not in p),
        0.0,
        f"{fake_minutes:.0f} cron minutes at x{SPEED}, {kills} scheduler kills, "
        f"{len(fires.get('every-minute', []))} + {len(fires.get('every-2-minutes', []))} ticks",
    ).report()
    assert problems == []
    assert len(fires["every-minute"]) >= 0.8 * fake_minutes
    assert len(fires["every-2-minutes"]) >= 0.8 * fake_minutes / 2
    assert max(fires["every-minute"]) >= server_now_ms - 2 * 60_000  # kept up to the end
    assert max(counts.values()) <= 2  # a tick shared by both entries, never more
    # control: the same checker sees a lost tick and a doubled one
    corrupt = {k: list(v) for k, v in fires.items()}
    minute = sorted(corrupt["every-minute"])
    corrupt["every-minute"] = [t for t in minute if t != minute[3]] + [minute[5]]
    found = tick_problems(corrupt, steps)
    assert any("never fired" in p and str(minute[3]) in p for p in found)
    assert any("fired 2 times" in p and str(minute[5]) in p for p in found)
    r.close()
