"""The quickstart's task tested with rediq's test kit: ``python -m pytest examples/quickstart``."""

from __future__ import annotations

from engine import Client, Settings
from engine.testing import run_until_idle
from examples.quickstart.tasks import Greeting, greet, registry


def test_greet(rediq_url: str, rediq_settings: Settings) -> None:
    with Client(rediq_url, settings=rediq_settings, registry=registry) as client:
        sent = greet.enqueue(Greeting(name="Ada"), client=client)
        run_until_idle(registry, rediq_url, rediq_settings)
        assert client.result(sent.id, timeout=5) == "Hello, Ada!"
