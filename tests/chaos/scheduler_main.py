"""A bare cron scheduler process for the chaos suite: ``scheduler_main.py URL`` runs
``scheduler.tick_op`` in a loop with jittered sleeps until killed."""

from __future__ import annotations

import random
import sys
import time

from engine.client import Client
from engine.cron import CronDef
from engine.errors import RediqError
from engine.scheduler import tick_op

ENTRIES = [
    CronDef("every-minute", "* * * * *", "tick", queue="cron"),
    CronDef("every-2-minutes", "*/2 * * * *", "tick", queue="cron"),
]

if __name__ == "__main__":
    client = Client(sys.argv[1])
    while True:
        try:
            client.run(tick_op(client.settings, ENTRIES, {}))
        except RediqError as exc:
            print(f"tick deferred: {exc}", flush=True)
        time.sleep(random.uniform(0.05, 0.25))
