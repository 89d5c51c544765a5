"""Where the time goes between ``enqueue`` and the handler's start of a handed-off task.

``python -m bench.hops [--rate 200] [--seconds 5] [--concurrency 10]`` starts a private Valkey
and one rediq worker (forked; 10 slots, as the bench's latency workload), enqueues at a steady rate
and stamps every hop of each task on the machine's monotonic clock (shared by the processes):

- ``enqueue``: the producer's ``Client.enqueue`` call (its reply is back);
- an idle worker's *take* (``BLMOVE`` and ``take.lua`` in one pipeline, the task started on
  the server): ``taken``, its reply is back, then ``to handler``;
- a busy worker's plain pop: ``wake``, its ``BLPOP`` returned the task
  (``Worker.take_handoff`` entered), ``to start``, from there to the start mark's request
  being written, ``start RTT``, the mark's round trip, then ``to handler``;
- ``to handler``: from the last reply to the handler's first line (the core, ``create_task``,
  the loop's next turn, ``run_task``, payload decoding).

The stamps are taken by wrapping the driver's methods here (a few µs each); the engine has no
tracing of its own. The take's wrapper decodes each record it stamps, after its stamp: that
time is part of ``to handler`` and shown as its own row (~25 µs at 200/s, 2026-12-05). It
prints the median and p99 of each hop, and a loopback ``PING`` round
trip of the worker's client for scale.
"""

from __future__ import annotations

import argparse
import asyncio
import contextvars
import json
import multiprocessing as mp
import os
import signal
import statistics
import sys
import time
from typing import Any

from bench.server import Valkey

QUEUE = "hops"
STAMPS = 9
"""t0 enqueue called, t1 enqueue returned, t2 wake, t3 start sent, t4 start reply, t5 handler,
t6 ``run_task`` entered (between t4 and t5), t7 the take's reply (the take path: no t2-t4), t8
the take wrapper's own decoding done."""
_ctx = mp.get_context("fork")
_current: contextvars.ContextVar[int] = contextvars.ContextVar("hop_index", default=-1)


def _worker(url: str, stamps: Any, pings: Any, concurrency: int) -> None:
    os.setpgrp()
    from engine.backend import AsyncBackend, Batch, cmd
    from engine.registry import Registry
    from engine.worker import Worker, WorkerOptions
    from engine.worker.driver import Worker as Driver

    clock = time.monotonic
    registry = Registry()

    @registry.task("noop", queue=QUEUE)
    async def noop(ctx: Any, payload: dict[str, Any]) -> None:
        stamps[payload["i"] * STAMPS + 5] = clock()

    from engine.worker import execute

    run_task = execute.run_task

    async def traced_run_task(worker: Any, job: Any, ctx: Any) -> None:
        i = _current_payload_index(job)
        if i >= 0:
            stamps[i * STAMPS + 6] = clock()
        await run_task(worker, job, ctx)

    execute.run_task = traced_run_task  # type: ignore[assignment]
    take_handoff = Driver.take_handoff

    async def traced_take_handoff(self: Driver, job: Any) -> None:
        i = _current_payload_index(job)
        stamps[i * STAMPS + 2] = clock()
        token = _current.set(i)
        try:
            await take_handoff(self, job)
        finally:
            _current.reset(token)

    execute = AsyncBackend.execute

    async def traced_execute(self: AsyncBackend, request: Any) -> Any:
        i = _current.get()
        calls = request.calls if isinstance(request, Batch) else [request]
        if any(c.script == "take" for c in calls):
            reply = await execute(self, request)
            now = clock()
            taken = reply[-1] if isinstance(request, Batch) else reply
            found = []
            for k in range(1, len(taken), 2):  # (after the head: what was left in the inbox)
                j = _index_of_payload(json.loads(taken[k])[2])
                if j >= 0:
                    stamps[j * STAMPS + 7] = now
                    found.append(j)
            decoded = clock()  # (this wrapper's own decoding lands in 'to handler': shown apart)
            for j in found:
                stamps[j * STAMPS + 8] = decoded
            return reply
        if i < 0 or not any(c.script == "start" for c in calls):
            return await execute(self, request)
        stamps[i * STAMPS + 3] = clock()
        try:
            return await execute(self, request)
        finally:
            stamps[i * STAMPS + 4] = clock()

    Driver.take_handoff = traced_take_handoff  # type: ignore[method-assign]
    AsyncBackend.execute = traced_execute  # type: ignore[method-assign]

    async def ping_loop(worker: Worker) -> None:
        for _ in range(500):  # until run() made the backend
            if hasattr(worker, "backend"):
                break
            await asyncio.sleep(0.01)
        for k in range(len(pings)):
            await asyncio.sleep(0.005)
            t = clock()
            await worker.backend.execute(cmd("PING"))
            pings[k] = clock() - t

    worker = Worker(registry, url, WorkerOptions(queues=[QUEUE], concurrency=concurrency))
    original_run = worker.run

    async def run_with_pings() -> None:
        task = asyncio.create_task(ping_loop(worker))
        try:
            await original_run()
        finally:
            task.cancel()

    worker.run = run_with_pings  # type: ignore[method-assign]
    worker.run_forever()


def _current_payload_index(job: Any) -> int:
    return _index_of_payload(job.payload_raw)


def _index_of_payload(payload: Any) -> int:
    try:
        return int(json.loads(payload)["i"])
    except (ValueError, KeyError, TypeError):
        return -1


def measure(url: str, rate: float, seconds: float, concurrency: int = 10) -> dict[str, Any]:
    from engine.client import Client

    total = int(rate * seconds)
    stamps = _ctx.RawArray("d", (total + 20) * STAMPS)
    pings = _ctx.RawArray("d", 200)
    proc = _ctx.Process(target=_worker, args=(url, stamps, pings, concurrency), daemon=True)
    proc.start()
    client = Client(url)
    clock = time.monotonic
    try:
        warm = 20
        for k in range(warm):
            client.enqueue("noop", {"i": total + k}, queue=QUEUE)
        deadline = clock() + 20
        while not all(stamps[(total + k) * STAMPS + 5] for k in range(warm)) and clock() < deadline:
            time.sleep(0.01)
        time.sleep(0.3)
        interval = 1.0 / rate
        t0 = time.perf_counter()
        for i in range(total):
            wait = t0 + i * interval - time.perf_counter()
            if wait > 0:
                time.sleep(wait)
            stamps[i * STAMPS] = clock()
            client.enqueue("noop", {"i": i}, queue=QUEUE)
            stamps[i * STAMPS + 1] = clock()
        deadline = clock() + 10
        while not stamps[(total - 1) * STAMPS + 5] and clock() < deadline:
            time.sleep(0.01)
        time.sleep(0.1)
    finally:
        with _suppress():
            os.killpg(proc.pid or 0, signal.SIGKILL)
        proc.join(2)
        client.backend.close()
    rows = [stamps[i * STAMPS : (i + 1) * STAMPS] for i in range(total)]
    # handed off and started on the take path, or popped and started by a start mark
    took = [r for r in rows if r[0] and r[1] and r[5] and r[6] and r[7]]
    traced = [r for r in rows if all(r[:7]) and not r[7]]
    hops = {
        "enqueue": [r[1] - r[0] for r in took],
        "taken (after enqueue reply)": [r[7] - r[1] for r in took],
        "to handler": [r[5] - r[7] for r in took],
        "  of which to run_task": [r[6] - r[7] for r in took],
        "  of which this bench's own decoding": [r[8] - r[7] for r in took],
        "total": [r[5] - r[0] for r in took],
        "popped: enqueue": [r[1] - r[0] for r in traced],
        "popped: wake (after enqueue reply)": [r[2] - r[1] for r in traced],
        "popped: to start": [r[3] - r[2] for r in traced],
        "popped: start RTT": [r[4] - r[3] for r in traced],
        "popped: to handler": [r[5] - r[4] for r in traced],
        "popped: total": [r[5] - r[0] for r in traced],
    }
    all_total = [r[5] - r[0] for r in rows if r[0] and r[5]]
    return {
        "n": total,
        "handed_off": len(traced) + len(took),
        "taken": len(took),
        "hops": {k: _summary(v) for k, v in hops.items()},
        "all_total": _summary(all_total),
        "ping": _summary([p for p in pings if p]),
    }


def _summary(values: list[float]) -> dict[str, float]:
    if not values:
        return {"p50_us": 0.0, "p99_us": 0.0}
    ordered = sorted(values)
    p99 = ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))]
    return {"p50_us": statistics.median(ordered) * 1e6, "p99_us": p99 * 1e6}


class _suppress:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> bool:
        return True


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.hops", description=__doc__)
    p.add_argument("--rate", type=float, default=200.0)
    p.add_argument("--seconds", type=float, default=5.0)
    p.add_argument("--concurrency", type=int, default=10, help="the worker's slots")
    p.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = p.parse_args(argv)
    with Valkey() as server:
        out = measure(server.url, args.rate, args.seconds, args.concurrency)
    if args.json:
        print(json.dumps(out))
        return 0
    print(
        f"{out['handed_off']} of {out['n']} tasks handed off at {args.rate:g}/s, "
        f"{out['taken']} of them started by a take ({args.concurrency} slots)"
    )
    print(f"{'hop':28} {'p50 µs':>8} {'p99 µs':>8}")
    for name, s in out["hops"].items():
        print(f"{name:28} {s['p50_us']:8.0f} {s['p99_us']:8.0f}")
    s = out["all_total"]
    print(f"{'total, every task':28} {s['p50_us']:8.0f} {s['p99_us']:8.0f}")
    s = out["ping"]
    print(f"{'worker PING RTT':28} {s['p50_us']:8.0f} {s['p99_us']:8.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
