"""A live demo, for ``rediq-tui --demo``: example workers and a shop on a busy afternoon.

- a steady stream of orders (``orders_per_s``), and every half minute or so a burst (a
  newsletter went out) of 15 to 30 seconds' worth of orders within a few seconds, so queues
  back up and drain;
- payments that fail on a flaky gateway and retry with backoff; a few expired cards (dead at
  once, ``Permanent``) and a few shipments to a city the carrier table lacks (a real
  ``KeyError``, retried, then dead): dead tasks to inspect and requeue;
- some orders cancelled by their customer;
- always one batch import running, its progress bar moving;
- cron: a stock reconciliation every minute (and the hourly and daily entries).
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
from rediq_tui.demo.producer import CITIES, NEW_CITY, cancel_order, place_order, random_order
from rediq_tui.demo.tasks import registry

log = logging.getLogger("rediq.demo")
REPO_ROOT = Path(__file__).resolve().parents[2]
BURST_EVERY_S = (25.0, 45.0)
BURST_SECONDS_OF_ORDERS = (15.0, 30.0)
"""A burst places this many seconds' worth of the steady rate (none if the rate is tiny)."""
BURST_RATE_PER_S = 10.0
IMPORT_CHECK_S = 3.0
EXPIRED_CARD = 0.03
NEW_CITY_SHARE = 0.02
CANCELLED = 0.08


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
        burst_every_s: tuple[float, float] = BURST_EVERY_S,
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
        self.burst_every_s = burst_every_s
        self.placed = 0
        self.bursts = 0
        self.burst_orders = 0
        self.imports = 0

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
        client = Client(self.url, registry=registry)  # the types as declared, without a warning each
        try:
            client.enqueue(registry.make_task("report:daily", None))
            current_import = self._start_import(client, "legacy-shop.csv", 120)
            next_import_check = time.monotonic() + IMPORT_CHECK_S
            next_burst = time.monotonic() + self.rng.uniform(*self.burst_every_s)
            while not self._stop.is_set():
                try:
                    self._one_order(client)
                    now = time.monotonic()
                    if now >= next_burst:
                        self._burst(client)
                        next_burst = time.monotonic() + self.rng.uniform(*self.burst_every_s)
                    if now >= next_import_check:
                        next_import_check = now + IMPORT_CHECK_S
                        info = client.get_task(current_import)
                        if info is None or info.state.is_final:  # one import at a time
                            source = f"partner-feed-{self.rng.randint(1, 9)}.json"
                            current_import = self._start_import(client, source, self.rng.randint(150, 400))
                except RediqError as exc:  # Redis restarting: keep trying, the console shows it
                    log.warning("demo feeder: %s", exc)
                    self._stop.wait(2)
                self._stop.wait(self.rng.expovariate(self.orders_per_s))
        finally:
            client.close()

    def _start_import(self, client: Client, source: str, total: int) -> str:
        task = registry.make_task("import:orders", BatchImportPayload(source=source, total=total))
        self.imports += 1
        return client.enqueue(task).id

    def _burst(self, client: Client) -> None:
        """A newsletter went out: orders arrive much faster than usual for a few seconds."""
        count = round(self.orders_per_s * self.rng.uniform(*BURST_SECONDS_OF_ORDERS))
        self.bursts += 1
        for _ in range(count):
            if self._stop.wait(self.rng.expovariate(BURST_RATE_PER_S)):
                return
            self._one_order(client)
            self.burst_orders += 1

    def _one_order(self, client: Client) -> None:
        roll = self.rng.random()
        method = "expired_card" if roll < EXPIRED_CARD else "card"
        city = NEW_CITY if self.rng.random() < NEW_CITY_SHARE else self.rng.choice(CITIES)
        placed = place_order(
            client,
            random_order(self.rng),
            payment_method=method,
            city=city,
            timeout_check_s=self.rng.uniform(20, 60),
        )
        self.placed += 1
        if EXPIRED_CARD <= roll < EXPIRED_CARD + CANCELLED:
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
