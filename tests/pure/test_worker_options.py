"""A worker never changes the options its caller passed (issue 15, point 4): what it runs with
is derived once into a frozen ``Effective``, and what changes while it runs (the grace period
cut by a second signal, hand-off turned off by an ACL without it) is the worker's own state."""

from __future__ import annotations

import dataclasses

import pytest

from engine.registry import Registry
from engine.worker import Worker, WorkerOptions
from engine.worker.options import Effective


def test_a_second_signal_cuts_the_grace_period_without_touching_the_callers_options() -> None:
    options = WorkerOptions(queues=["q"], grace_s=30.0)
    before = dataclasses.asdict(options)
    worker = Worker(Registry(), "redis://127.0.0.1:1/0", options)  # no I/O until run()
    worker._on_signal()
    worker._on_signal()  # the second one: no grace
    assert dataclasses.asdict(options) == before
    assert options.grace_s == 30.0


def test_effective_values_are_derived_once_and_frozen() -> None:
    options = WorkerOptions(queues=["a", "b"], concurrency=4, lease_s=9.0)
    effective = Effective.of(options)
    assert (effective.queues, effective.prefetch, effective.heartbeat_s) == (("a", "b"), 0, 3.0)
    with pytest.raises(dataclasses.FrozenInstanceError):
        effective.grace_s = 0  # type: ignore[misc]
    options.queues.append("c")  # the caller's list is theirs: the worker keeps its own copy
    assert effective.queues == ("a", "b")
