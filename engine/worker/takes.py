"""Which hand-offs a worker's inbox loops take, and in how many slots: pure bookkeeping (no I/O,
no clock) for ``engine.worker.core``.

While a queue is drained (its last dequeue found less than it asked for), its inbox loop waits
with a *take*: a ``BLMOVE`` from its inbox and ``take.lua`` in one pipeline, which starts what
it moved in the same round trip (docs/architecture.md, decision 20). A take *holds* free slots
for what it may start (``room``): one, or as many as the inbox held at the last take (a burst is
taken in one round trip, not one per task), so the worker never runs more than its concurrency.
A take whose reply was lost keeps its slots: what it may have started stays in the taken list
(until a take confirms the records it received), and the next take, which does not wait, brings
it back into those slots.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class TakePlan:
    wait_s: float
    room: int
    """Slots held for it: it starts at most this many new records."""


@dataclass(slots=True)
class Takes:
    enabled: bool
    drained: set[str] = field(default_factory=set)
    """Queues whose last dequeue found no more to lease: hand-offs come there, so a take may
    hold slots (in a backlog none come, and held slots would idle)."""
    dequeue_answered: bool = False
    """Whether any dequeue has answered (until then, whether a queue is drained is unknown)."""
    held: dict[str, int] = field(default_factory=dict)
    """Per queue, the slots its take holds (in flight, or after a lost reply)."""
    in_flight: dict[str, float] = field(default_factory=dict)
    """Per queue, the wait of its take in flight."""
    lost: set[str] = field(default_factory=set)
    woken: set[str] = field(default_factory=set)
    confirm: dict[str, tuple[str, ...]] = field(default_factory=dict)
    """Per queue, (id, token, id, token...) of the last take reply received: the next take
    confirms them (a token alone is not unique: it counts one task's deliveries)."""
    inbox_left: dict[str, int] = field(default_factory=dict)
    """Per queue, what the last take left in the inbox: the next one holds room for it."""

    @property
    def total_held(self) -> int:
        return sum(self.held.values())

    def plan(self, queue: str, wait_s: float, free: int, reserved_waiting: bool) -> TakePlan | None:
        """The queue's next take, holding slots out of ``free``; None: the inbox loop pops
        plainly (a backlog, no free slot, tasks waiting reserved for a slot)."""
        if not self.enabled or queue in self.in_flight:
            return None
        if queue in self.lost:  # bring back what the lost take may have started, in its slots
            plan = TakePlan(0.0, self.held.get(queue, 0))
        elif not self.may_hold(queue, reserved_waiting) or free <= 0:
            return None
        else:
            plan = TakePlan(wait_s, min(free, 1 + self.inbox_left.get(queue, 0)))
            self.held[queue] = plan.room
        self.in_flight[queue] = plan.wait_s
        self.woken.discard(queue)
        return plan

    def on_dequeue(self, queue: str, drained: bool) -> None:
        self.dequeue_answered = True
        if drained:
            self.drained.add(queue)
        else:
            self.drained.discard(queue)

    def may_hold(self, queue: str, reserved_waiting: bool) -> bool:
        """Whether a take may hold a free slot for ``queue``: it is drained and nothing waits
        reserved for a slot."""
        return self.enabled and queue not in self.in_flight and queue in self.drained and not reserved_waiting

    def leftovers(self, queue: str) -> TakePlan | None:
        """A take without the wait (shutdown), in the slots the queue still holds; None while
        a take is in flight (it answers for what is left)."""
        if queue in self.in_flight:
            return None
        self.in_flight[queue] = 0.0
        return TakePlan(0.0, self.held.get(queue, 0))

    def answered(self, queue: str, ids_tokens: tuple[str, ...], inbox_left: int) -> int:
        """The take's reply came: its slots go back (its tasks take them to run). Returns how
        many slots it held."""
        self.in_flight.pop(queue, None)
        self.lost.discard(queue)
        self.confirm[queue] = ids_tokens
        self.inbox_left[queue] = inbox_left
        return self.held.pop(queue, 0)

    def failed(self, queue: str) -> None:
        """No reply: the slots stay held for what it may have started."""
        self.in_flight.pop(queue, None)
        if self.held.get(queue):
            self.lost.add(queue)

    def to_wake(self, stopping: bool, reserved_waiting: bool) -> list[str]:
        """Queues whose waiting take holds slots wanted elsewhere (tasks wait reserved, the
        queue has a backlog, the worker stops): each once per take."""
        ending = [
            q
            for q, wait_s in self.in_flight.items()
            if wait_s > 0 and q not in self.woken and (stopping or reserved_waiting or q not in self.drained)
        ]
        self.woken.update(ending)
        return ending

    def disable(self) -> int:
        """Takes off (an ACL without ``BLMOVE``): the slots held go back. Returns how many."""
        self.enabled = False
        released = sum(n for q, n in self.held.items() if q not in self.in_flight)
        for q in [q for q in self.held if q not in self.in_flight]:
            del self.held[q]
        self.lost.clear()
        return released
