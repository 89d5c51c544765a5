"""Issue 19 point 6: the fault-exploration machine (``tests/faults/machine.py``) on a queue with
a rate limit (RATE per second, BURST at once) and its ``sync_job`` type with a tighter one of
its own: under dropped, duplicated and held requests, lost replies, stalls, kills and
operators, no more leases are granted than the limits allow since they were set, on the
server's clock: grants <= burst + rate x elapsed. Grants are counted from the truth, each
task's delivery counter ('dlv', bumped by every lease, hand-off or not, whether its reply
arrived or was lost), not from the bucket's own bookkeeping.

The limits bind: ``BOUND`` counts the checks that found tasks pending while a bucket had no
token (measured: most examples reach it; figures in RELIABILITY.md)."""

from __future__ import annotations

import math

import pytest
from hypothesis.stateful import invariant, run_state_machine_as_test

from engine import flow
from tests.faults.machine import QUEUE, FaultMachine
from tests.faults.test_faults import short_profile

RATE, BURST = 5, 2  # the queue: 5/s, 2 at once (an example's steps take some 0.5 s)
TYPE, TYPE_RATE, TYPE_BURST = "sync_job", 2, 1  # one task type's own limit
BOUND = [0, 0]
"""Checks (all examples of this process) that found a bucket empty with tasks pending, of all."""


class RateFaultMachine(FaultMachine):
    def __init__(self) -> None:
        super().__init__()
        # the workers write the limits at start (the app's declaration), as in production
        self.registry.rate_limit(QUEUE, f"{RATE}/s", burst=BURST)
        self.registry.rate_limit(QUEUE, f"{TYPE_RATE}/s", burst=TYPE_BURST, task_type=TYPE)
        self.since = self._server_ms()  # before any lease: the first grant comes later
        self.grants: dict[str, int] = {}

    @invariant()
    def no_more_leases_than_the_rate_allows(self) -> None:
        qk = self.settings.keyspace.queue(QUEUE)
        types: dict[str, str] = {}
        for task_id in self.ids:
            dlv, task_type = self.r.hmget(qk.task(task_id), "dlv", "type")
            # the counter only grows; the max survives a hash that expired meanwhile
            self.grants[task_id] = max(self.grants.get(task_id, 0), int(dlv or 0))
            types[task_id] = str(task_type)
        now = self._server_ms()
        elapsed = now - self.since
        problems = []
        for what, rate, burst, ids in (
            ("the queue", RATE, BURST, list(self.grants)),
            (TYPE, TYPE_RATE, TYPE_BURST, [t for t in self.grants if types.get(t) == TYPE]),
        ):
            granted = sum(self.grants[t] for t in ids)
            allowed = burst + math.floor(elapsed * rate / 1000)
            if granted > allowed:
                problems.append(f"{what}: {granted} leases granted in {elapsed} ms, {allowed} allowed")
        BOUND[1] += 1
        if self.r.zcard(qk.pending) and any(
            float(self.r.hget(key, "tat") or 0) - now > (burst - 1) * 1000 / rate
            for key, rate, burst in ((qk.rate_limit, RATE, BURST), (qk.type_rate(TYPE), TYPE_RATE, TYPE_BURST))
        ):
            BOUND[0] += 1
        if problems:
            self.step_ok = False
            raise AssertionError("\n".join(problems + self._wire_logs()))

    def _settle_and_check(self) -> None:
        """The limits go before the settle phase (no check runs in it), which would otherwise
        wait for their tokens on the server's clock."""
        self.registry.rate_limits.clear()  # (the settle phase's worker would declare them again)
        for task_type in (None, TYPE):
            self.client.run(flow.clear_limit(self.settings, QUEUE, task_type))
        super()._settle_and_check()


_MACHINES: dict[str, type[RateFaultMachine]] = {}


def rate_machine_for(url: str) -> type[RateFaultMachine]:
    if url not in _MACHINES:
        _MACHINES[url] = type("RateFaultsOn", (RateFaultMachine,), {"url": url})
    return _MACHINES[url]


@pytest.mark.timeout(900)
def test_a_rate_limit_is_never_exceeded_under_faults(redis_url: str) -> None:
    run_state_machine_as_test(rate_machine_for(redis_url), settings=short_profile())
    print(f"rate limits bound at {BOUND[0]} of {BOUND[1]} checks")
