"""Runs a real engine worker with the flags of ``rediq-worker`` (``worker --app A --queues a,b
--concurrency N --redis-url URL``), for launching workers from the console in tests while
``engine.cli`` is not on this branch."""

from __future__ import annotations

import argparse
import logging
import sys

from engine.registry import load_app
from engine.worker import Worker, WorkerOptions

if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("command", choices=["worker"])
    parser.add_argument("--app", required=True)
    parser.add_argument("--queues", required=True)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--redis-url", required=True)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(name)s %(levelname)s %(message)s", stream=sys.stdout)
    options = WorkerOptions(queues=args.queues.split(","), concurrency=args.concurrency, grace_s=5)
    print("worker starting", flush=True)
    sys.exit(Worker(load_app(args.app), args.redis_url, options).run_forever())
