"""``python -m bench.ab --base DIR``: an interleaved A/B of two rediq checkouts, with huey as
the yardstick, on one private Valkey.

``python -m bench`` runs every workload of one library, then the next; on a shared machine the
load drifts between them by more than a change worth measuring. Here each round runs one
workload for the other checkout (``--base``, e.g. a ``git worktree`` at the old commit), for
this one and for huey back to back (the order of the first two alternating by round), so the
ratio to huey is taken within a round. Prints each run, then the medians, ranges and per-round
ratios.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

from bench.server import Valkey, add_aof_option

HERE = Path(__file__).resolve().parent.parent
# workload, its runner options, the figures it yields
WORKLOADS: dict[str, tuple[dict[str, Any], tuple[str, ...]]] = {
    "enqueue": ({"n": 20_000, "n-enqueue": 5_000, "n-batch": 100_000, "seconds": 3.0}, ("enqueue_single",)),
    "drain": ({"n": 20_000, "procs": 1, "seconds": 60}, ("drain",)),
    "drain2": ({"n": 20_000, "procs": 2, "seconds": 60}, ("drain",)),
    # rediq's no-op as a plain def (huey's no-op is a def in "drain" already)
    "draindef": ({"n": 20_000, "procs": 1, "seconds": 60, "handler": "def"}, ("drain",)),
    "latency": ({"rate": 200, "seconds": 5}, ("p50_ms", "p99_ms")),
}


def run(root: Path, lib: str, workload: str, url: str, rate: float = 200.0) -> dict[str, Any]:
    opts, _ = WORKLOADS[workload]
    if workload == "latency":
        opts = {**opts, "rate": rate}
    kind = "drain" if workload in ("draindef", "drain2") else workload
    cmd = [sys.executable, "-m", "bench.runner", "--lib", lib, "--workload", kind, "--url", url]
    for key, value in opts.items():
        if key == "handler" and lib != "rediq":
            continue
        cmd += [f"--{key}", str(value)]
    env = {**os.environ, "PYTHONPATH": str(root)}
    proc = subprocess.run(cmd, cwd=root, env=env, capture_output=True, text=True, timeout=300, check=False)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    if proc.returncode != 0 or not lines:
        raise SystemExit(f"{lib} {workload} in {root} failed: {proc.stderr.strip()[-300:]}")
    result: dict[str, Any] = json.loads(lines[-1])
    return result


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.ab", description=__doc__)
    p.add_argument("--base", type=Path, required=True, help="the other checkout (its bench/ and engine/)")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--workloads", default=",".join(WORKLOADS), help=f"subset of {','.join(WORKLOADS)}")
    p.add_argument("--rate", type=float, default=200.0, help="arrival rate of the latency workload")
    add_aof_option(p)
    args = p.parse_args(argv)
    workloads = [w for w in args.workloads.split(",") if w]
    sides = {"base": (args.base.resolve(), "rediq"), "this": (HERE, "rediq"), "huey": (HERE, "huey")}
    runs: dict[tuple[str, str], list[dict[str, Any]]] = {}
    with Valkey(appendfsync=args.aof) as valkey:
        for rnd in range(args.rounds):
            for workload in workloads:
                order = ["base", "this", "huey"] if rnd % 2 == 0 else ["this", "base", "huey"]
                for side in order:
                    root, lib = sides[side]
                    out = run(root, lib, workload, valkey.url, args.rate)
                    runs.setdefault((workload, side), []).append(out)
                    figures = {k: round(out[k], 2) for k in WORKLOADS[workload][1]}
                    print(rnd, workload, side, figures, flush=True)
    for workload in workloads:
        for key in WORKLOADS[workload][1]:
            cols = []
            for side in sides:
                xs = [r[key] for r in runs[(workload, side)]]
                cols.append(f"{side} {statistics.median(xs):,.2f} ({min(xs):,.2f}–{max(xs):,.2f})")
            print(f"{workload:8} {key:15} " + "  ".join(cols))
            hueys = runs[(workload, "huey")]
            for side in ("base", "this"):
                ratios = [r[key] / h[key] for r, h in zip(runs[(workload, side)], hueys, strict=True)]
                shown = ", ".join(f"{x:.2f}" for x in ratios)
                print(f"{'':24} {side} / huey per round: {shown}; median {statistics.median(ratios):.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
