"""Issue 19 point 6: the fault-exploration machine (``tests/faults/machine.py``) on a queue with
a rate limit (RATE per second, BURST at once) and its ``sync_job`` type with a tighter one of
its own: under dropped, duplicated and held requests, lost replies, stalls, kills and
operators, no more leases are granted than the limits allow since they were set, on the
server's clock: grants <= burst + rate x elapsed. Grants are counted from the truth, each
task's delivery counter ('dlv', bumped by every lease, hand-off or not, whether its reply
arrived or was lost), not from the bucket's own bookkeeping.

The limits bind: ``BOUND`` counts the checks that found a bucket dry with tasks pending (the CI
examples: 1,089-1,130 of 1,659 checks, in 36 of 52 examples; printed with ``-s``)."""

from __future__ import annotations

import math
from collections import Counter

import pytest
from hypothesis import strategies as st
from hypothesis.stateful import initialize, invariant, run_state_machine_as_test

from engine import flow
from tests.faults.machine import QUEUE, FaultMachine, machine_for
from tests.faults.test_faults import short_profile

RATE, BURST = 2, 2  # the queue: 2/s, 2 at once (an example takes some 0.1-1.5 s)
TYPE, TYPE_RATE, TYPE_BURST = "sync_job", 1, 1  # one task type's own limit
BACKLOG = st.lists(  # due now: no dependency, no delay (max_retry, unique key, dep, delayed, sync)
    st.tuples(st.sampled_from([0, 1]), st.none(), st.just(-1), st.just(False), st.booleans()),
    min_size=3,
    max_size=6,
)
BOUND: Counter[str] = Counter()
"""Of the checks and examples (in this process), those that found a bucket empty with tasks
pending (``checks``, ``bound checks``, ``examples``, ``bound examples``)."""


class RateFaultMachine(FaultMachine):
    def __init__(self) -> None:
        super().__init__()
        # the workers write the limits at start (the app's declaration), as in production
        self.registry.rate_limit(QUEUE, f"{RATE}/s", burst=BURST)
        self.registry.rate_limit(QUEUE, f"{TYPE_RATE}/s", burst=TYPE_BURST, task_type=TYPE)
        self.since = self._server_ms()  # before any lease: the first grant comes later
        self.grants: dict[str, int] = {}
        self.bound = False
        BOUND["examples"] += 1

    @initialize(specs=BACKLOG)
    def backlog(self, specs: list[tuple[int, str | None, int, bool, bool]]) -> None:
        """A backlog of tasks due now, so that the buckets run dry in most examples."""
        self._enqueue(specs)

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
        problems, empty = [], False
        for task_type, rate, burst in ((None, RATE, BURST), (TYPE, TYPE_RATE, TYPE_BURST)):
            ids = [t for t in self.grants if task_type in (None, types.get(t))]
            granted = sum(self.grants[t] for t in ids)
            allowed = burst + math.floor(elapsed * rate / 1000)
            if granted > allowed:
                what = task_type or "the queue"
                problems.append(f"{what}: {granted} leases granted in {elapsed} ms, {allowed} allowed")
            key = qk.rate_limit if task_type is None else qk.type_rate(task_type)
            tat = float(self.r.hget(key, "tat") or 0)  # (bookkeeping: only for the figure)
            empty = empty or tat - now > (burst - 1) * 1000 / rate
        BOUND["checks"] += 1
        if empty and self.r.zcard(qk.pending):
            BOUND["bound checks"] += 1
            BOUND["bound examples"] += not self.bound
            self.bound = True
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


@pytest.mark.timeout(900)
def test_a_rate_limit_is_never_exceeded_under_faults(redis_url: str) -> None:
    run_state_machine_as_test(machine_for(redis_url, RateFaultMachine), settings=short_profile())
    print(f"rate limits ({RATE}/s, {TYPE_RATE}/s) bound: {dict(BOUND)}")
