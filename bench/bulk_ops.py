"""How long does Redis stall during bulk operator actions on a huge dead set?

    python bench/bulk_ops.py --tasks 1000000

Fills one queue with N dead tasks on a private Valkey (persistence off), then times
``requeue_all``, ``flush`` (to quarantine) and a failure-group retry, and reports the longest
single Redis command during each (``LATENCY LATEST``, 1 ms resolution) next to the wall time.
Bulk actions run in chunks of ``engine.admin.CHUNK`` tasks per script call, so the longest
command stays short however big the set is.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import redis  # noqa: E402

from engine import admin, inspect  # noqa: E402
from engine.backend import Batch  # noqa: E402
from engine.client import Client  # noqa: E402
from engine.task import Task  # noqa: E402
from engine.worker import protocol
from tests.servers import ServerProcess, free_port  # noqa: E402

FILL_BATCH = 5_000


def fill_dead(client: Client, queue: str, n: int) -> None:
    made = 0
    while made < n:
        size = min(FILL_BATCH, n - made)
        client.enqueue_many(
            [Task(type="bulk:item", queue=queue, max_retry=0, payload=i) for i in range(size)]
        )
        jobs = protocol.parse_dequeue(
            queue,
            client.backend.execute(protocol.dequeue_call(client.settings, queue, size, 600_000, "bench")),
        )
        client.backend.execute(
            Batch(
                [
                    protocol.fail_call(
                        client.settings,
                        queue,
                        j.id,
                        j.token,
                        f"ValueError: bad row {made + k}",
                        "",
                        0,
                        "permanent",
                    )
                    for k, j in enumerate(jobs)
                ]
            )
        )
        made += size
    print(f"filled {made:,} dead tasks")


def measured(r: redis.Redis, label: str, action):  # type: ignore[no-untyped-def]
    r.execute_command("LATENCY", "RESET")
    started = time.perf_counter()
    result = action()
    wall = time.perf_counter() - started
    worst = max((int(e[2]) for e in r.execute_command("LATENCY", "LATEST") if e[0] == "command"), default=0)
    longest = f"{worst} ms" if worst else "< 1 ms"  # the latency monitor records only >= 1 ms
    print(f"{label:<28} {result:>10,} tasks  {wall:8.2f} s wall  longest single command {longest}")
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=200_000)
    args = parser.parse_args()
    server = ServerProcess(port=free_port(), extra_args=["--latency-monitor-threshold", "1"]).start()
    try:
        client = Client(server.url)
        r = redis.Redis(port=server.port)
        fill_dead(client, "bulk", args.tasks)
        print(f"chunk size {admin.CHUNK}; Valkey at {server.url}")
        (group,) = client.call(inspect.failure_groups)
        measured(r, "requeue_all dead", lambda: client.call(admin.requeue_all, "bulk"))
        # bury them again for the next action
        while jobs := protocol.parse_dequeue(
            "bulk",
            client.backend.execute(protocol.dequeue_call(client.settings, "bulk", FILL_BATCH, 600_000, "b")),
        ):
            client.backend.execute(
                Batch(
                    [
                        protocol.fail_call(
                            client.settings,
                            "bulk",
                            j.id,
                            j.token,
                            "ValueError: bad row 1",
                            "",
                            0,
                            "permanent",
                        )
                        for j in jobs
                    ]
                )
            )
        (group,) = client.call(inspect.failure_groups)
        measured(
            r, "retry_group (one group)", lambda: client.call(admin.retry_group, "bulk", group.fingerprint)
        )
        measured(r, "flush pending -> quarantine", lambda: client.call(admin.flush, "bulk", "pending"))
        client.close()
    finally:
        server.cleanup()


if __name__ == "__main__":
    main()
