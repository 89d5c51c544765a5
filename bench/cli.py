"""``python -m bench``: every workload for rediq and each installed peer on one private Valkey."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import re
import signal
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis

from bench.libs import CONCURRENCY_ENV, LIBS, add_concurrency_option
from bench.server import Valkey, add_aof_option, benchmark_binary

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"


@dataclass(frozen=True)
class Plan:
    n: int
    n_enqueue: int
    enqueue_s: float
    drain_s: float
    latency_s: float
    rate: float
    n_commands: int
    bench_requests: int
    n_batch: int
    """Tasks per batched-enqueue run: at 50,000/s, 20,000 take 0.4 s and the figure swung by
    ±12 % from run to run; 100,000 (bounded by ``enqueue_s`` for slower libraries) hold ±2 %."""

    @classmethod
    def make(cls, quick: bool, n: int | None, rate: float, smoke: bool = False) -> Plan:
        if smoke:  # CI: proves the harness works; the numbers mean nothing
            return cls(n or 200, 100, 0.3, 10.0, 0.5, rate, 100, 2_000, 1_000)
        if quick:
            return cls(n or 2_000, 500, 1.0, 15.0, 2.0, rate, 300, 20_000, 10_000)
        return cls(n or 20_000, 5_000, 3.0, 60.0, 5.0, rate, 2_000, 100_000, 100_000)


@dataclass
class LibResult:
    lib: str
    status: str = "ok"
    version: str = ""
    config: str = ""
    data: dict[str, Any] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)
    def_handler: bool = False
    """Its no-op can run as a plain def (the drain1def workload)."""
    supervised: bool = False
    """It has rediq-worker --processes (the sup1 and sup2 workloads)."""


def python_for(lib: str, overrides: dict[str, str]) -> str:
    return overrides.get(lib) or os.environ.get(f"BENCH_PYTHON_{lib.upper()}") or sys.executable


def run_one(python: str, lib: str, workload: str, url: str, timeout: float, **opts: Any) -> dict[str, Any]:
    cmd = [python, "-m", "bench.runner", "--lib", lib, "--workload", workload, "--url", url]
    for k, v in opts.items():
        cmd += [f"--{k.replace('_', '-')}", str(v)]
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    try:
        proc = subprocess.Popen(
            cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            start_new_session=True,
        )  # fmt: skip
    except OSError as exc:
        return {"status": f"failed: {exc}"}
    try:
        stdout, stderr = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        # the runner leads its own process group; its workers die with it (PR_SET_PDEATHSIG)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        return {"status": f"failed: {workload} timed out after {timeout:.0f} s"}
    lines = [ln for ln in stdout.splitlines() if ln.startswith("{")]
    if proc.returncode != 0 or not lines:
        tail = [ln for ln in stderr.strip().splitlines() if ln.strip()]
        return {"status": f"failed: {workload}: {tail[-1][:160] if tail else f'exit {proc.returncode}'}"}
    result: dict[str, Any] = json.loads(lines[-1])
    return result


def bench_lib(
    lib: str, python: str, url: str, plan: Plan, log: Any, repeat: int = 1, only: frozenset[str] = frozenset()
) -> LibResult:
    res = LibResult(lib)
    probe = run_one(python, lib, "probe", url, 120)
    if probe.get("status") != "ok":
        res.status = probe.get("status", "failed")
        if res.status == "not installed":
            res.errors["probe"] = probe.get("error", "")
        return res
    res.version, res.config = probe["version"], probe["config"]
    res.def_handler, res.supervised = bool(probe.get("def_handler")), bool(probe.get("supervised"))
    steps: list[tuple[str, str, float, dict[str, Any]]] = [
        ("enqueue", "enqueue", 2 * plan.enqueue_s + 60,
         {"n": plan.n, "n_enqueue": plan.n_enqueue, "n_batch": plan.n_batch, "seconds": plan.enqueue_s}),
        ("drain1", "drain", 2 * plan.drain_s + 60, {"n": plan.n, "procs": 1, "seconds": plan.drain_s}),
        ("drain2", "drain", 2 * plan.drain_s + 60, {"n": plan.n, "procs": 2, "seconds": plan.drain_s}),
        ("drain1def", "drain", 2 * plan.drain_s + 60,
         {"n": plan.n, "procs": 1, "seconds": plan.drain_s, "handler": "def"}),
        ("sup1", "drain", 2 * plan.drain_s + 60, {"n": plan.n, "processes": 1, "seconds": plan.drain_s}),
        ("sup2", "drain", 2 * plan.drain_s + 60, {"n": plan.n, "processes": 2, "seconds": plan.drain_s}),
        ("latency", "latency", plan.latency_s + 60, {"rate": plan.rate, "seconds": plan.latency_s}),
        ("commands", "commands", plan.drain_s + 60, {"n": plan.n_commands, "seconds": plan.drain_s}),
    ]  # fmt: skip
    for key, workload, timeout, opts in steps:
        if only and key not in only:
            continue
        if key == "drain1def" and not res.def_handler:
            continue  # its no-op is a coroutine only (saq, arq), or already a def (drain1)
        if key.startswith("sup") and not res.supervised:
            continue  # rediq-worker --processes: rediq only
        runs = []
        for _ in range(1 if key == "commands" else repeat):
            t0 = time.monotonic()
            out = run_one(python, lib, workload, url, timeout, **opts)
            status = out.pop("status", "failed")
            out.pop("version", None)
            out.pop("config", None)
            if status != "ok" or "error" in out:
                res.errors[key] = out.get("error") or status
                res.data[key] = out
                break
            runs.append(out)
            log(f"  {lib:9} {key:9} {time.monotonic() - t0:5.1f} s  {_brief(key, out)}")
            if (key.startswith("drain") or key.startswith("sup")) and not out.get("complete"):
                break  # a peer slower than the time limit: once is enough
        if runs and key not in res.errors:
            res.data[key] = _median_run(key, runs)
        if key in res.errors:
            log(f"  {lib:9} {key:9} {res.errors[key]}")
    return res


MEDIAN_OF = {
    "enqueue": "enqueue_single",
    "drain1": "drain",
    "drain2": "drain",
    "drain1def": "drain",
    "sup1": "drain",
    "sup2": "drain",
    "latency": "p99_ms",
}


def _median_run(key: str, runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The run whose headline figure is the median (the other figures come from that run);
    every run's headline figure is kept under ``runs``."""
    metric = MEDIAN_OF.get(key)
    if metric is None or len(runs) == 1:
        return runs[0]
    ordered = sorted(runs, key=lambda r: r.get(metric) or 0.0)
    chosen = dict(ordered[(len(ordered) - 1) // 2])
    chosen["runs"] = [r.get(metric) for r in runs]
    if key == "latency":  # the p50 has a range of its own (the run is chosen by its p99)
        chosen["p50_runs"] = [r.get("p50_ms") for r in runs]
    if key == "enqueue" and all(r.get("enqueue_batch") for r in runs):
        # the batch figure is a headline of its own: its median, not the single-median run's
        batches = sorted(r["enqueue_batch"] for r in runs)
        chosen["enqueue_batch"] = batches[(len(batches) - 1) // 2]
        chosen["batch_runs"] = [r["enqueue_batch"] for r in runs]
    return chosen


def _brief(key: str, out: dict[str, Any]) -> str:
    if key == "enqueue" and "enqueue_single" in out:
        batch = out.get("enqueue_batch")
        return f"single {out['enqueue_single']:,.0f}/s, batch {f'{batch:,.0f}/s' if batch else 'n/a'}"
    if (key.startswith("drain") or key.startswith("sup")) and "drain" in out:
        cpu, server, busy = out.get("worker_cpu_us"), out.get("server_cpu_us"), out.get("cores_busy")
        per_task = f", worker CPU {cpu:.0f} µs/task" if cpu else ""
        if server is not None and busy is not None:
            per_task += f", Valkey CPU {server:.0f} µs/task, {busy:.2f} cores busy"
        return f"{out['drain']:,.0f} tasks/s ({out['drained']}/{out['enqueued']}){per_task}"
    if key == "latency" and "p99_ms" in out:
        return f"p50 {out['p50_ms']:.2f} p95 {out['p95_ms']:.2f} p99 {out['p99_ms']:.2f} ms"
    if key == "commands" and "worker_cmds" in out:
        return (
            f"enqueue {out['enqueue_cmds']:.2f} cmds; worker {out['worker_cmds']:.2f} cmds, "
            f"{out['worker_rtt']:.2f} rtt; server {out['server_cmds']:.1f}"
        )
    return ""


def ceiling(url: str, port: int, requests: int) -> dict[str, Any]:
    """The server's own limit, measured with redis-benchmark/valkey-benchmark."""
    binary = benchmark_binary()
    if binary is None:
        return {"status": "not installed: redis-benchmark (apt-get install redis-tools)"}
    sha = redis.Redis.from_url(url).script_load("return 1")
    out: dict[str, Any] = {"status": "ok", "tool": os.path.basename(binary)}
    runs = {
        "evalsha_c50": ["-c", "50"],
        "evalsha_c50_p16": ["-c", "50", "-P", "16"],
        "evalsha_c1": ["-c", "1"],
    }
    for key, extra in runs.items():
        n = requests if key != "evalsha_c1" else max(1, requests // 5)
        cmd = [binary, "-h", "127.0.0.1", "-p", str(port), "-n", str(n), *extra, "-q", "EVALSHA", sha, "0"]
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
            m = re.findall(r"([\d.]+) requests per second", proc.stdout)
            out[key] = float(m[-1]) if m else None
        except (OSError, subprocess.TimeoutExpired) as exc:
            out[key] = None
            out["status"] = f"failed: {exc}"
    return out


def machine() -> dict[str, Any]:
    cpu = platform.processor()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "os": platform.platform(),
    }


def _fmt(value: Any, spec: str = ",.0f") -> str:
    return "—" if value is None else format(value, spec)


RANGED = (
    ("enqueue/s", "enqueue", "runs", "enqueue_single", ",.0f"),
    ("drain 1p/s", "drain1", "runs", "drain", ",.0f"),
    ("drain 2p/s", "drain2", "runs", "drain", ",.0f"),
    ("def 1p/s", "drain1def", "runs", "drain", ",.0f"),
    ("p50 ms", "latency", "p50_runs", "p50_ms", ".2f"),
    ("p99 ms", "latency", "runs", "p99_ms", ".2f"),
)
"""The headline figures shown with their run-to-run range: column, workload, the runs' list,
the figure of a single run, format."""


def ranges(results: list[LibResult], repeat: int) -> str:
    """Each headline figure as the median of the ``--repeat`` runs and their range, so that a
    ratio between libraries can be read against how much each one moved."""
    rows = [["library", *(col for col, *_ in RANGED)]]
    for r in results:
        if r.status != "ok":
            continue
        row = [f"{r.lib} {r.version}".strip()]
        for _, key, runs_key, single, spec in RANGED:
            d = r.data.get(key) or {}
            xs = [x for x in d.get(runs_key) or ([d[single]] if single in d else []) if x is not None]
            if not xs:
                row.append("—")
            elif len(xs) == 1:
                row.append(f"{format(xs[0], spec)} (1 run)")
            else:
                low, high = format(min(xs), spec), format(max(xs), spec)
                row.append(f"{format(statistics.median(xs), spec)} ({low}–{high})")
        rows.append(row)
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["| " + " | ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) + " |" for row in rows]
    lines.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return f"Median of {repeat} runs (range):\n" + "\n".join(lines)


def table(results: list[LibResult], ceil: dict[str, Any]) -> str:
    head = ["library", "enqueue/s", "batch/s", "drain 1p/s", "drain 2p/s", "def 1p/s", "sup 1p/s",
            "sup 2p/s", "p50 ms", "p95 ms", "p99 ms",
            "enq cmds/task", "worker cmds/task", "worker RTT/task", "e2e RTT/task",
            "server cmds/task"]  # fmt: skip
    rows = [head]
    notes = []
    for r in results:
        name = f"{r.lib} {r.version}".strip()
        if r.status != "ok":
            rows.append([name, r.status] + [""] * (len(head) - 2))
            continue
        e, d1, d2 = r.data.get("enqueue", {}), r.data.get("drain1"), r.data.get("drain2")
        lat, c = r.data.get("latency", {}), r.data.get("commands", {})

        def drain(d: dict[str, Any] | None, applies: bool = True) -> str:
            if d is None:  # not run: --only left it out, or it does not apply to this library
                return "—" if applies else "n/a"
            if "drain" not in d:
                return "failed"
            mark = "" if d.get("complete") else "*"
            return _fmt(d["drain"]) + mark

        extra = [r.data.get(k) for k in ("drain1def", "sup1", "sup2")]
        applies = [bool(r.def_handler), r.supervised, r.supervised]
        for d in (d1, d2, *extra):
            if d and "drain" in d and not d.get("complete"):
                notes.append(
                    f"* {r.lib}: drained {d['drained']:,} of {d['enqueued']:,} before the time limit"
                )
        batch = e.get("enqueue_batch")
        rows.append([
            name, _fmt(e.get("enqueue_single")), _fmt(batch) if batch else ("n/a" if e else "—"),
            drain(d1), drain(d2), *[drain(x, a) for x, a in zip(extra, applies, strict=True)],
            _fmt(lat.get("p50_ms"), ".2f"), _fmt(lat.get("p95_ms"), ".2f"), _fmt(lat.get("p99_ms"), ".2f"),
            _fmt(c.get("enqueue_cmds"), ".2f"),
            _fmt(c.get("worker_cmds"), ".2f"), _fmt(c.get("worker_rtt"), ".2f"),
            _fmt(c["enqueue_rtt"] + c["worker_rtt"] if "worker_rtt" in c else None, ".2f"),
            _fmt(c.get("server_cmds"), ".1f"),
        ])  # fmt: skip
        for key, err in r.errors.items():
            notes.append(f"{r.lib} {key}: {err}")
    widths = [max(len(str(row[i])) for row in rows) for i in range(len(head))]
    lines = [
        "| " + " | ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)) + " |" for row in rows
    ]
    lines.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
    if ceil.get("status") == "ok":
        lines.append("")
        lines.append(
            f"ceiling ({ceil['tool']}, EVALSHA of `return 1`): {_fmt(ceil.get('evalsha_c1'))}/s 1 client, "
            f"{_fmt(ceil.get('evalsha_c50'))}/s 50 clients, {_fmt(ceil.get('evalsha_c50_p16'))}/s 50 clients "
            "pipelined ×16"
        )
        rq = next((r for r in results if r.lib == "rediq" and r.status == "ok"), None)
        rate = rq.data.get("drain1", {}).get("drain") if rq else None
        if rate and ceil.get("evalsha_c50"):
            lines.append(
                f"rediq 1-process drain = {rate / ceil['evalsha_c50']:.1%} of EVALSHA (50 clients), "
                f"{rate / ceil['evalsha_c50_p16']:.1%} of pipelined EVALSHA"
            )
    else:
        lines.append(f"\nceiling: {ceil.get('status')}")
    if notes:
        lines.append("")
        lines.extend(notes)
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    p.add_argument("--quick", action="store_true", help="small N and short runs (about a minute)")
    p.add_argument("--smoke", action="store_true", help="tiny runs that only check the harness works (CI)")
    p.add_argument("--n", type=int, help="tasks per drain run (default 20,000; 2,000 with --quick)")
    p.add_argument("--libs", default=",".join(LIBS), help=f"comma-separated subset of {','.join(LIBS)}")
    p.add_argument("--rate", type=float, default=200.0, help="arrival rate of the latency workload")
    p.add_argument(
        "--python",
        action="append",
        default=[],
        metavar="LIB=PATH",
        help="run LIB's workloads with this interpreter (its own venv); also BENCH_PYTHON_<LIB>",
    )
    p.add_argument("--repeat", type=int, default=1, help="runs per workload; the table shows the median")
    p.add_argument("--no-ceiling", action="store_true", help="skip redis-benchmark")
    p.add_argument(
        "--only",
        default="",
        metavar="KEYS",
        help="comma-separated subset of the workloads: enqueue, drain1, drain2, drain1def (a plain def "
        "no-op), sup1, sup2 (rediq-worker --processes 1, 2), latency, commands",
    )
    p.add_argument(
        "--rates",
        default="",
        metavar="R1,R2,...",
        help="latency vs offered load: only the latency workload, at each of these rates (tasks/s), "
        "every library, interleaved by round (--repeat rounds); a row per library and rate",
    )
    add_aof_option(p)
    add_concurrency_option(p)
    p.add_argument("--output", type=Path, default=RESULTS / "latest.json")
    args = p.parse_args(argv)
    # read by the adapters in the runners (bench.libs.concurrency); only this flag sets it
    os.environ.pop(CONCURRENCY_ENV, None)
    if args.concurrency:
        os.environ[CONCURRENCY_ENV] = str(args.concurrency)
    plan = Plan.make(args.quick, args.n, args.rate, args.smoke)
    overrides = dict(item.split("=", 1) for item in args.python)
    libs = [x.strip() for x in args.libs.split(",") if x.strip()]
    unknown = [x for x in libs if x not in LIBS]
    if unknown:
        p.error(f"unknown library {unknown[0]!r}; known: {', '.join(LIBS)}")

    def log(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    # SIGTERM unwinds like Ctrl-C, so the private Valkey is stopped on the way out
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    started = time.time()
    if args.rates:
        return _rates_mode(args, plan, libs, overrides, log, started)
    with Valkey(appendfsync=args.aof) as server:
        own = "the libraries' own"
        log(
            f"valkey {server.version()} on port {server.port}; aof {args.aof or 'off'}; "
            f"concurrency {args.concurrency or own}; plan {plan}"
        )
        results = []
        for lib in libs:
            only = frozenset(x.strip() for x in args.only.split(",") if x.strip())
            results.append(
                bench_lib(lib, python_for(lib, overrides), server.url, plan, log, args.repeat, only)
            )
            if results[-1].status != "ok":
                log(f"  {lib:9} {results[-1].status}")
        ceil = (
            {"status": "skipped"}
            if args.no_ceiling
            else ceiling(server.url, server.port, plan.bench_requests)
        )
        version = server.version()
    text = table(results, ceil)
    if args.repeat > 1:
        text += "\n\n" + ranges(results, args.repeat)
    print(text)
    report = {
        "machine": {**machine(), "valkey": version, "appendfsync": args.aof, "concurrency": args.concurrency},
        "plan": plan.__dict__,
        "ceiling": ceil,
    }
    _write_report(
        args.output, started, {**report, "results": [r.__dict__ for r in results], "table": text}, log
    )
    return 0


def _write_report(output: Path, started: float, report: dict[str, Any], log: Any) -> None:
    """The run's JSON: when it started, how long it took, and ``report``."""
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps({"started": started, "seconds": time.time() - started, **report}, indent=2))
    log(f"wrote {output}")


def _rates_mode(
    args: argparse.Namespace,
    plan: Plan,
    libs: list[str],
    overrides: dict[str, str],
    log: Any,
    started: float,
) -> int:
    """``--rates``: the latency workload at each rate, every library (bench.rates)."""
    from bench import rates

    wanted = [float(x) for x in args.rates.split(",") if x.strip()]
    with Valkey(appendfsync=args.aof) as server:
        log(f"valkey {server.version()} on port {server.port}; rates {wanted}, {plan.latency_s:g} s each")
        runs = rates.measure(
            run_one,
            [(lib, python_for(lib, overrides)) for lib in libs],
            server.url,
            wanted,
            plan.latency_s,
            args.repeat,
            log,
        )
        version = server.version()
    rows = rates.summary(runs)
    text = rates.table(rows)
    print(text)
    machine_info = {**machine(), "valkey": version, "loadavg": os.getloadavg()}
    machine_info["concurrency"] = args.concurrency
    _write_report(
        args.output,
        started,
        {"machine": machine_info, "plan": plan.__dict__, "rates": rows, "table": text},
        log,
    )
    return 0
