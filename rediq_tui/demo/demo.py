"""A live demo: example workers plus a steady stream of orders, for ``rediq-tui --demo``.

Some payments fail on a flaky gateway and retry, a few cards are expired (dead tasks to
requeue), some orders are cancelled, and a batch import with a progress bar runs now and then.
"""

from __future__ import annotations

import logging
import os
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from engine.client import Client
from engine.errors import RediqError
from rediq_tui.demo.models import BatchImportPayload
from rediq_tui.demo.producer import CITIES, cancel_order, place_order, random_order
from rediq_tui.demo.tasks import registry

log = logging.getLogger("rediq.demo")
REPO_ROOT = Path(__file__).resolve().parents[2]


def _die_with_parent() -> None:
    """Linux: SIGTERM (a graceful drain) to the worker when the console process dies, even by
    SIGKILL, so a demo never leaves workers behind. Elsewhere ``Demo.stop`` is the only path."""
    if sys.platform.startswith("linux"):
        # Linux only: the parent-death signal
        import ctypes

        PR_SET_PDEATHSIG = 1
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


class Demo:
    def __init__(
        self,
        url: str,
        *,
        workers: int = 2,
        concurrency: int = 6,
        orders_per_s: float = 1.5,
        log_dir: Path | None = None,
        seed: int | None = None,
    ) -> None:
        self.url = url
        self.workers = workers
        self.concurrency = concurrency
        self.orders_per_s = orders_per_s
        self.log_dir = log_dir
        self.rng = random.Random(seed)
        self.processes: list[subprocess.Popen[bytes]] = []
        self._stop = threading.Event()
        self._feeder: threading.Thread | None = None
        self.placed = 0

    def start(self) -> Demo:
        env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")])),
            "ORDERS_REDIS_URL": self.url,
        }
        for n in range(self.workers):
            out = open(self.log_dir / f"demo-worker-{n}.log", "ab") if self.log_dir else subprocess.DEVNULL  # noqa: SIM115
            self.processes.append(
                subprocess.Popen(
                    [sys.executable, "-m", "rediq_tui.demo.run_worker", self.url, str(self.concurrency)],
                    env=env,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                    start_new_session=True,  # the console's Ctrl+C must not kill them before a clean drain
                    preexec_fn=_die_with_parent,
                )
            )
        self._feeder = threading.Thread(target=self._feed, name="rediq-demo-feeder", daemon=True)
        self._feeder.start()
        return self

    def _feed(self) -> None:
        client = Client(self.url)
        try:
            client.enqueue(registry.make_task("report:daily", None))
            client.enqueue(
                registry.make_task("import:orders", BatchImportPayload(source="legacy-shop.csv", total=40))
            )
            last_import = time.monotonic()
            while not self._stop.is_set():
                try:
                    self._one_order(client)
                    if time.monotonic() - last_import > 25:
                        total = self.rng.randint(20, 60)
                        client.enqueue(
                            registry.make_task(
                                "import:orders",
                                BatchImportPayload(
                                    source=f"partner-feed-{self.rng.randint(1, 9)}.json", total=total
                                ),
                            )
                        )
                        last_import = time.monotonic()
                except RediqError as exc:  # Redis restarting: keep trying, the console shows it
                    log.warning("demo feeder: %s", exc)
                    self._stop.wait(2)
                self._stop.wait(self.rng.expovariate(self.orders_per_s))
        finally:
            client.close()

    def _one_order(self, client: Client) -> None:
        roll = self.rng.random()
        method = "expired_card" if roll < 0.04 else "card"
        placed = place_order(
            client,
            random_order(self.rng),
            payment_method=method,
            city=self.rng.choice(CITIES),
            timeout_check_s=self.rng.uniform(20, 60),
        )
        self.placed += 1
        if 0.04 <= roll < 0.12:
            cancel_order(client, placed)

    def stop(self, grace_s: float = 10.0) -> None:
        self._stop.set()
        if self._feeder is not None:
            self._feeder.join(5)
        for proc in self.processes:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + grace_s
        for proc in self.processes:
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
        self.processes.clear()
