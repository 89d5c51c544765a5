"""Issue 19 point 6: the fault-exploration machine (``tests/faults/machine.py``) with every
task in one of four concurrency groups limited to one task at a time: under dropped,
duplicated and held requests, lost replies, stalls, kills and operators, no group ever has more
tasks holding a live lease than its limit (read from the truth: the active set and the task
hashes, not the group's own bookkeeping), and every task still ends as the history explains."""

from __future__ import annotations

from collections import Counter

import pytest
from hypothesis.stateful import invariant, run_state_machine_as_test

from engine import ops
from engine.client import Client
from engine.task import Task
from engine.worker import protocol
from tests.faults.machine import LEASE_S, QUEUE, FaultMachine, machine_for
from tests.faults.test_faults import short_profile

GROUPS = 4
LIMIT = 1


def _grouped(task: Task) -> Task:
    return task.model_copy(update={"group": f"g{int(task.id[1:]) % GROUPS}"})


class GroupedFaultMachine(FaultMachine):
    def __init__(self) -> None:
        super().__init__()
        self.r.hset(self.settings.keyspace.queue(QUEUE).cgroup_limits, "*", LIMIT)
        self.client.close()
        self.client = Client(self.url, before_enqueue=[_grouped])

    @invariant()
    def no_group_exceeds_its_limit(self) -> None:
        qk = self.settings.keyspace.queue(QUEUE)
        now = self._server_ms()
        held: Counter[str] = Counter()
        for task_id in self.r.zrange(qk.active, 0, -1):
            group, lease = self.r.hmget(qk.task(str(task_id)), "grp", "lease")
            if group and lease and int(lease) > now:
                held[str(group)] += 1
        over = {g: n for g, n in held.items() if n > LIMIT}
        if over:
            self.step_ok = False
            raise AssertionError(
                f"groups over their limit of {LIMIT}: {over}\n" + "\n".join(self._wire_logs())
            )


@pytest.mark.timeout(900)
def test_a_group_limit_is_never_exceeded_under_faults(redis_url: str) -> None:
    run_state_machine_as_test(machine_for(redis_url, GroupedFaultMachine), settings=short_profile())


def test_a_lapsed_lease_frees_its_group_slot(redis_url: str) -> None:
    """The harness's lapse (a stalled holder's lease run out) runs out the task's entry in its
    group's lease set too, as time would: left live, a task whose lapsed lease ended it
    (cancelled here) held its group for the lease's 600 s, and the group's other tasks stayed
    pending through the settle phase (the short profile then took over 5 min)."""
    machine = machine_for(redis_url, GroupedFaultMachine)()
    try:
        for task_id in ("t1", "t5"):  # both in g1
            machine.client.enqueue(Task(type="job", queue=QUEUE, id=task_id))
        lease_ms = int(LEASE_S * 1000)
        dequeue = protocol.dequeue_call(machine.settings, QUEUE, 2, lease_ms, "w")
        reply = machine.client.backend.execute(dequeue)
        assert reply[1] == "t1" and len(reply) == 12  # g1's one slot: t5 waits
        machine.client.run(ops.cancel(machine.settings, QUEUE, ["t1"]))
        machine._lapse(["t1"])  # its holder stalled: the next dequeue recovers it, cancelled
        reply = machine.client.backend.execute(dequeue)
        qk = machine.settings.keyspace.queue(QUEUE)
        assert machine.r.hget(qk.task("t1"), "state") == "cancelled"
        assert reply[1:2] == ["t5"], "g1 still held by the cancelled t1"
    finally:
        machine._cleanup()
