"""``python -m bench.cluster --smoke`` works end to end: a 3-primary cluster and a standalone
Valkey each drain three queues, and every per-shard figure is produced. Never asserts on speed."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(300)]


def test_python_m_bench_cluster_smoke(tmp_path: Path) -> None:
    out = tmp_path / "cluster.json"
    proc = subprocess.run(
        [sys.executable, "-m", "bench.cluster", "--smoke", "--output", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "declared nowhere" not in proc.stderr
    report = json.loads(out.read_text())
    (cluster_run,) = report["cluster"]["runs"]
    (single_run,) = report["single"]["runs"]
    assert len({node["port"] for node in cluster_run["nodes"]}) == 3  # one queue per primary
    assert [len(node["queues"]) for node in cluster_run["nodes"]] == [1, 1, 1]
    assert len(single_run["nodes"]) == 1 and len(single_run["nodes"][0]["queues"]) == 3
    for node in cluster_run["nodes"] + single_run["nodes"]:
        assert node["tasks"] == report["n_per_queue"] * len(node["queues"])
        assert node["drain_rate"] > 0 and node["worker_cpu_us"] > 0
        for phase in ("enqueue", "drain"):
            assert node[phase]["cmds"] > 0 and node[phase]["net_bytes"] > 0, node
            assert node[phase]["valkey_cpu_us"] >= 0, node
    for run in (cluster_run, single_run):
        assert sorted(d["tasks"] for d in run["drains"]) == [report["n_per_queue"]] * 3
    assert "load average" in report["uptime"]
