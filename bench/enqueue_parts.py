"""Where a single ``enqueue``'s wall time goes, beside the calls it is made of.

``python -m bench.enqueue_parts [--rounds 7] [--calls 2000] [--gap 0]`` starts a private Valkey
and times, in one process and interleaved by round, blocks of single calls of each kind:

- an ``LPUSH`` round trip on the client's own connection (the floor: what huey's enqueue sends);
- an ``FCALL`` of the library's function that only returns (the cost of calling a script);
- an ``FCALL`` of ``enqueue.lua`` with the arguments ``Client.enqueue`` sends (the script);
- ``Client.enqueue`` (the script plus the client's own work);
- huey's enqueue on the same server, when huey is installed.

``--gap 0.005`` sleeps 5 ms before each call, as at 200 tasks/s, where the server is woken from
idle for every call (each call a script makes then costs several times more). Prints the
median and range over the rounds of each kind's µs per call.
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import time
from collections.abc import Callable
from typing import Any

from bench.server import Valkey

QUEUE = "parts"


def _captured_enqueue(client: Any) -> list[Any]:
    """The command line one ``Client.enqueue`` sends (its script call), captured once."""
    import engine.backend as backend

    seen: list[Any] = []
    exchange = backend._exchange

    def spy(conn: Any, calls: Any, streamed: bool, mode: Any) -> Any:
        seen.append(list(backend._args(calls[-1], mode)))
        return exchange(conn, calls, streamed, mode)

    backend._exchange = spy
    try:
        client.enqueue("noop", {"ts": 0.0}, queue=QUEUE)
    finally:
        backend._exchange = exchange
    return seen[-1]


def kinds(url: str) -> dict[str, Callable[[], Any]]:
    from engine import lua
    from engine.client import Client

    client = Client(url)
    client.enqueue("noop", {"ts": 0.0}, queue=QUEUE)  # loads the library, registers the queue
    line = _captured_enqueue(client)
    id_at = line.index(next(a for a in line[2:] if isinstance(a, str) and len(a) == 32))
    held = client.backend._held
    assert held is not None
    conn = held._conn

    def raw(args: Any) -> Any:
        conn.send_packed_command(conn.pack_command(*args))
        return conn.read_response()

    def script() -> Any:
        line[id_at] = os.urandom(16).hex()  # a new task each time
        return raw(line)

    out: dict[str, Callable[[], Any]] = {
        "LPUSH round trip": lambda: raw(("LPUSH", "parts:raw", os.urandom(60))),
        "FCALL of a function that returns": lambda: raw(lua.version_call()),
        "FCALL of enqueue.lua": script,
        "Client.enqueue": lambda: client.enqueue("noop", {"ts": 0.0}, queue=QUEUE),
    }
    try:
        from huey import RedisHuey
    except ImportError:
        return out
    huey = RedisHuey("parts", url=url, results=False)

    @huey.task(name="noop")
    def noop(ts: float) -> None:
        pass

    out["huey enqueue"] = lambda: noop(0.0)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--calls", type=int, default=2000, help="calls per kind and round")
    parser.add_argument("--gap", type=float, default=0.0, help="seconds slept before each call")
    args = parser.parse_args()
    logging.disable(logging.WARNING)  # the undeclared task type's warning
    with Valkey() as server:
        timed = kinds(server.url)
        per_call: dict[str, list[float]] = {name: [] for name in timed}
        for _ in range(args.rounds):
            for name, call in timed.items():
                spent = 0.0
                for _ in range(args.calls):
                    if args.gap:
                        time.sleep(args.gap)
                    t0 = time.perf_counter()
                    call()
                    spent += time.perf_counter() - t0
                per_call[name].append(1e6 * spent / args.calls)
    print(f"µs per call, median (range) of {args.rounds} rounds of {args.calls}, gap {args.gap} s")
    print("| call | µs |\n|---|---|")
    for name, values in per_call.items():
        print(f"| {name} | {statistics.median(values):.0f} ({min(values):.0f}–{max(values):.0f}) |")


if __name__ == "__main__":
    main()
