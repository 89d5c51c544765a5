"""The benchmark harness works end to end (rediq only, tiny N). Never asserts on speed."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from bench.libs import CONCURRENCY_ENV, concurrency
from bench.proxy import _RequestCounter

ROOT = Path(__file__).resolve().parents[2]


def _bench(*args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    """``python -m bench`` with these arguments, from the checkout."""
    return subprocess.run(
        [sys.executable, "-m", "bench", *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout
    )


def _bench_report(tmp_path: Path, args: str) -> tuple[subprocess.CompletedProcess[str], dict[str, Any]]:
    """``python -m bench ARGS`` run to success, and the report it wrote."""
    out = tmp_path / "report.json"
    proc = _bench(*args.split(), "--output", str(out))
    assert proc.returncode == 0, proc.stderr[-2000:]
    report: dict[str, Any] = json.loads(out.read_text())
    return proc, report


def test_request_counter_counts_whole_requests_across_chunks() -> None:
    counter = _RequestCounter()
    wire = b"*1\r\n$4\r\nPING\r\n*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$5\r\nv*\r\n\r\n" + b"PING\r\n"
    assert counter.feed(wire[:10]) == 0
    assert counter.feed(wire[10:30]) == 1
    assert counter.feed(wire[30:]) == 2


def test_python_m_bench_smoke(tmp_path: Path) -> None:
    proc, report = _bench_report(tmp_path, "--smoke --libs rediq")
    assert "rediq" in proc.stdout  # the table
    (row,) = report["results"]
    assert row["lib"] == "rediq" and row["status"] == "ok", row
    data = row["data"]
    assert data["enqueue"]["enqueue_single"] > 0
    assert data["enqueue"]["enqueue_batch"] > 0
    # drain1def: a plain def no-op; sup1/sup2: rediq-worker --processes 1 and 2
    for key in ("drain1", "drain2", "drain1def", "sup1", "sup2"):
        assert data[key]["drain"] > 0 and data[key]["complete"], data[key]
        # Valkey's CPU per task and the cores kept busy come with the worker's CPU per task
        if data[key]["worker_cpu_us"] is not None:
            assert data[key]["server_cpu_us"] >= 0 and data[key]["cores_busy"] > 0, data[key]
    assert data["sup2"]["procs"] == 2
    assert 0 < data["latency"]["p50_ms"] <= data["latency"]["p99_ms"]
    commands = data["commands"]
    assert commands["drained"] == commands["n"]
    assert commands["worker_cmds"] > 0 and commands["worker_rtt"] > 0 and commands["server_cmds"] > 0
    assert commands["enqueue_rtt"] > 0
    assert report["machine"]["valkey"]


def test_python_m_bench_rates_smoke(tmp_path: Path) -> None:
    """``--rates``: the latency workload at each rate, a row per library and rate."""
    proc, report = _bench_report(tmp_path, "--smoke --libs rediq --rates 100,400 --repeat 2 --concurrency 4")
    assert report["machine"]["concurrency"] == 4
    rows = report["rates"]
    assert [(r["lib"], r["rate"], r["n_runs"]) for r in rows] == [("rediq", 100.0, 2), ("rediq", 400.0, 2)]
    for r in rows:
        assert 0 < r["p50_ms"] <= r["p99_ms"] and r["achieved"] > 0, r
        assert r["p50_vs_huey"] is None  # no huey in this run
    assert "| rediq" in proc.stdout


def test_python_m_bench_hops_runs() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "bench.hops", "--seconds", "0.5", "--json"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = json.loads(proc.stdout.splitlines()[-1])
    assert out["handed_off"] > 0 and out["taken"] > 0  # an idle worker's takes start them
    assert out["hops"]["taken (after enqueue reply)"]["p50_us"] != 0 and out["hops"]["total"]["p50_us"] > 0


def test_ranges_show_each_headline_figure_as_the_median_and_the_run_to_run_range() -> None:
    from bench.cli import LibResult, _median_run, ranges

    drains = [{"drain": x, "complete": True} for x in (9_000.0, 8_000.0, 10_500.0)]
    latencies = [{"p50_ms": p50, "p99_ms": p99} for p50, p99 in ((1.2, 2.5), (0.9, 3.0), (1.5, 2.0))]
    fast = LibResult("fast", version="1.0")
    fast.data = {"drain1": _median_run("drain1", drains), "latency": _median_run("latency", latencies)}
    slow = LibResult("slow", version="2.0")
    slow.data = {"drain1": {"drain": 80.0, "complete": False}}  # stopped after one run at the limit
    text = ranges([fast, slow, LibResult("absent", status="not installed")], 3)
    rows = {
        line.split("|")[1].strip(): [c.strip() for c in line.split("|")[2:-1]]
        for line in text.splitlines()[3:]
    }
    assert text.splitlines()[0] == "Median of 3 runs (range):"
    assert rows["fast 1.0"] == ["—", "9,000 (8,000–10,500)", "—", "—", "1.20 (0.90–1.50)", "2.50 (2.00–3.00)"]
    assert rows["slow 2.0"][1] == "80 (1 run)"
    assert "absent" not in text


def test_script_times_leaves_out_the_calls_scripts_make() -> None:
    """SLOWLOG lists a script's own calls before its entry, from the same client, with duration
    0; ``bench.script_times`` counts what clients sent: the FCALL by its function, a BLMOVE
    sent beside it, another client's command, not the script's HSET."""
    from bench.script_times import top_level

    def entry(i: int, command: bytes, duration: int, client: bytes = b"127.0.0.1:1") -> dict[str, object]:
        return {"id": i, "command": command, "duration": duration, "client_address": client}

    entries = [  # (SLOWLOG answers newest first)
        entry(5, b"FCALL rediq_abc_take 4 k1 k2", 30),
        entry(4, b"HSET t:a attempts 1", 0),
        entry(3, b"LPUSH x y", 5, b"127.0.0.1:2"),
        entry(2, b"BLMOVE inbox taken LEFT RIGHT 1.0", 10),
        entry(1, b"FCALL rediq_abc_enqueue 7 k", 70, b"127.0.0.1:2"),
    ]
    assert top_level(entries) == [("FCALL enqueue", 70), ("BLMOVE", 10), ("FCALL take", 30), ("LPUSH", 5)]


def test_python_m_bench_script_times_runs() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "bench.script_times", "--rounds", "1", "--n", "40", "--libs", "rediq"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows = [line for line in proc.stdout.splitlines() if line.startswith("| rediq |")]
    assert {row.split("|")[2].strip() for row in rows} >= {"FCALL enqueue", "FCALL take", "BLMOVE"}


def test_footprint_splits_an_aof_tail_into_its_commands_and_shows_them_escaped() -> None:
    from bench.footprint import aof_by_command, aof_records, render_records

    tail = (
        b"*1\r\n$5\r\nMULTI\r\n"
        b"*4\r\n$4\r\nHSET\r\n$3\r\nt:a\r\n$7\r\nmessage\r\n$8\r\n\x1b[31mred\r\n"
        b"*1\r\n$4\r\nEXEC\r\n"
    )
    records = aof_records(tail)
    assert [args[0] for args, _ in records] == [b"MULTI", b"HSET", b"EXEC"]
    assert records[1][0][3] == b"\x1b[31mred"
    assert sum(size for _, size in records) == len(tail)
    assert aof_by_command(tail) == {"multi": 15, "hset": len(tail) - 29, "exec": 14}
    shown = render_records(tail)
    assert "\x1b" not in shown and "␛[31mred" in shown  # a control byte shown, not sent
    assert shown.splitlines()[1].split() == [str(records[1][1]), "HSET", "t:a", "message", "␛[31mred"]


def test_record_floor_measures_each_variant_on_an_aof_valkey() -> None:
    from bench.footprint import AofValkey
    from bench.record_floor import VARIANTS, measure, short_id

    ids = {short_id() for _ in range(100)}
    assert len(ids) == 100 and all(len(i) == 22 and i.isalnum() for i in ids)
    server = AofValkey()
    with server:
        bytes_per_task = {name: measure(server, name, 20)["aof_bytes_per_task"] for name in VARIANTS}
    # shorter field names, then shorter ids, write less; every variant writes something per task
    assert bytes_per_task["today"] > bytes_per_task["compact"] > bytes_per_task["compact, 22-char ids"] > 300


def test_the_bench_server_keeps_an_append_only_file_when_asked() -> None:
    import redis

    from bench.server import Valkey

    with Valkey(appendfsync="everysec") as server:
        r = redis.Redis(port=server.port)
        assert r.config_get("appendonly") == {"appendonly": "yes"}
        assert r.config_get("appendfsync") == {"appendfsync": "everysec"}
        before = sum(p.stat().st_size for p in server.data_dir.rglob("*.aof"))
        r.set("k", "v" * 100)  # written to the file before the reply; only the fsync waits
        assert sum(p.stat().st_size for p in server.data_dir.rglob("*.aof")) > before + 100
    with Valkey() as server:
        assert redis.Redis(port=server.port).config_get("appendonly") == {"appendonly": "no"}


def test_python_m_bench_runs_every_worker_at_the_concurrency_asked(tmp_path: Path) -> None:
    _, report = _bench_report(tmp_path, "--smoke --libs rediq --only drain1 --concurrency 3 --no-ceiling")
    assert report["machine"]["concurrency"] == 3
    (row,) = report["results"]
    # the configuration is what the runner's adapter built its worker with
    assert "concurrency 3," in row["config"], row["config"]
    assert row["data"]["drain1"]["complete"], row["data"]["drain1"]


def test_the_concurrency_setting_defaults_to_each_library_and_refuses_bad_values(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv(CONCURRENCY_ENV, raising=False)
    assert concurrency(8) == 8
    monkeypatch.setenv(CONCURRENCY_ENV, "50")
    assert concurrency(8) == 50
    for bad in ("0", "-3", "ten"):
        monkeypatch.setenv(CONCURRENCY_ENV, bad)
        with pytest.raises(SystemExit, match="set it to a whole number of at least 1"):
            concurrency(10)
    proc = _bench("--concurrency", "0", "--libs", "rediq", timeout=60)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1].endswith("'0' is not a whole number of at least 1")
