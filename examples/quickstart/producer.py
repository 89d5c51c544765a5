"""Enqueue a greeting and wait for its result: ``python -m examples.quickstart.producer Ada``."""

from __future__ import annotations

import sys

from engine import Client
from examples.quickstart.tasks import Greeting, greet, registry

with Client(registry=registry) as client:
    sent = greet.enqueue(Greeting(name=sys.argv[1] if len(sys.argv) > 1 else "world"), client=client)
    print(f"enqueued {sent.id} to {sent.queue}")
    print(sent.wait(timeout=30))
