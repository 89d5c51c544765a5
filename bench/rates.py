"""Latency vs offered load: ``python -m bench --rates 200,1000,5000`` (issue 20).

The latency workload (one worker process, one producer calling the library's single enqueue at a
steady rate for ``--seconds``, enqueue -> handler start) at each rate, for every library, on one
private Valkey. The runs are interleaved: each round runs every rate, and within a rate every
library back to back, so the ratio to huey is taken between runs made seconds apart on a shared
machine. A row per library and rate: the medians over the rounds, the range of p50 and p99, the
rate the producer achieved (one process: above its enqueue speed it offers less than asked) and
the tasks the worker had not started 10 s after the last enqueue (past saturation).
"""

from __future__ import annotations

import statistics
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

Log = Callable[[str], None]
RunOne = Callable[..., dict[str, Any]]
"""``bench.cli.run_one``: (python, lib, workload, url, timeout, **options) -> the runner's JSON."""

YARDSTICK = "huey"


@dataclass
class RateRuns:
    lib: str
    version: str
    rate: float
    runs: list[dict[str, Any]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


def measure(
    run_one: RunOne,
    libs: list[tuple[str, str]],
    url: str,
    rates: list[float],
    seconds: float,
    repeat: int,
    log: Log,
) -> list[RateRuns]:
    """``libs``: (name, interpreter) of the libraries to run, in order; each is probed first."""
    found: list[tuple[str, str, str]] = []
    for lib, python in libs:
        probe = run_one(python, lib, "probe", url, 120)
        if probe.get("status") != "ok":
            log(f"  {lib:9} {probe.get('status', 'failed')}")
            continue
        found.append((lib, python, str(probe.get("version", ""))))
    table = {(lib, rate): RateRuns(lib, version, rate) for lib, _, version in found for rate in rates}
    for rnd in range(repeat):
        for rate in rates:
            for lib, python, _ in found:
                runs = table[(lib, rate)]
                out = run_one(python, lib, "latency", url, seconds + 90, rate=rate, seconds=seconds)
                if out.get("status") != "ok" or "error" in out:
                    runs.errors.append(str(out.get("error") or out.get("status")))
                    log(f"  round {rnd + 1} {lib:9} {rate:7,.0f}/s  {runs.errors[-1]}")
                    continue
                runs.runs.append(out)
                log(
                    f"  round {rnd + 1} {lib:9} {rate:7,.0f}/s  achieved {out.get('achieved', 0):7,.0f}/s  "
                    f"p50 {out['p50_ms']:.2f} p95 {out['p95_ms']:.2f} p99 {out['p99_ms']:.2f} ms"
                )
    return list(table.values())


def _median(xs: list[float]) -> float | None:
    return statistics.median(xs) if xs else None


def _ratios(rr: RateRuns, yard: RateRuns | None, key: str) -> list[float]:
    """Per round: this library's figure over huey's in the same round (paired by position)."""
    if yard is None or yard is rr or len(yard.runs) != len(rr.runs):
        return []
    return [r[key] / y[key] for r, y in zip(rr.runs, yard.runs, strict=True) if y[key] > 0]


def summary(results: list[RateRuns]) -> list[dict[str, Any]]:
    by = {(r.lib, r.rate): r for r in results}
    rows = []
    for rr in results:
        yard = by.get((YARDSTICK, rr.rate))
        col = {k: [r[k] for r in rr.runs] for k in ("p50_ms", "p95_ms", "p99_ms", "achieved")}
        rows.append({
            "lib": rr.lib,
            "version": rr.version,
            "rate": rr.rate,
            "n_runs": len(rr.runs),
            "achieved": _median(col["achieved"]),
            "p50_ms": _median(col["p50_ms"]),
            "p95_ms": _median(col["p95_ms"]),
            "p99_ms": _median(col["p99_ms"]),
            "p50_range": (min(col["p50_ms"]), max(col["p50_ms"])) if rr.runs else None,
            "p99_range": (min(col["p99_ms"]), max(col["p99_ms"])) if rr.runs else None,
            "not_started": max((r.get("offered", 0) - r.get("done", 0) for r in rr.runs), default=0),
            "p50_vs_huey": _median(_ratios(rr, yard, "p50_ms")),
            "p99_vs_huey": _median(_ratios(rr, yard, "p99_ms")),
            "runs": rr.runs,
            "errors": rr.errors,
        })  # fmt: skip
    return rows


def _ratio(x: float | None) -> str:
    if x is None:
        return "—"
    return f"{x:,.2f}" if x >= 0.1 else f"{x:.4f}"  # past huey's saturation: far below 1


def table(rows: list[dict[str, Any]]) -> str:
    head = ["library", "offered/s", "achieved/s", "p50 ms", "p95 ms", "p99 ms", "p50 range",
            "p99 range", f"p50 / {YARDSTICK}", f"p99 / {YARDSTICK}", "not started"]  # fmt: skip
    out = [head]

    def f(x: Any, spec: str) -> str:
        return "—" if x is None else format(x, spec)

    for r in sorted(rows, key=lambda r: (r["rate"], r["lib"] != "rediq", r["lib"])):
        if not r["n_runs"]:
            out.append([f"{r['lib']} {r['version']}", f(r["rate"], ",.0f"), "failed: " + r["errors"][-1][:60]]
                       + [""] * (len(head) - 3))  # fmt: skip
            continue
        rng = [f"{lo:.2f}–{hi:.2f}" for lo, hi in (r["p50_range"], r["p99_range"])]
        out.append([
            f"{r['lib']} {r['version']}", f(r["rate"], ",.0f"), f(r["achieved"], ",.0f"),
            f(r["p50_ms"], ".2f"), f(r["p95_ms"], ".2f"), f(r["p99_ms"], ".2f"), *rng,
            _ratio(r["p50_vs_huey"]), _ratio(r["p99_vs_huey"]), f(r["not_started"], ",d"),
        ])  # fmt: skip
    widths = [max(len(str(row[i])) for row in out) for i in range(len(head))]
    lines = ["| " + " | ".join(str(c).ljust(w) for c, w in zip(r, widths, strict=True)) + " |" for r in out]
    lines.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(lines)
