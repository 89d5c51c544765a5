"""An operator's one-line limit edit, as typed in the console (``L`` on the queues view):

    50/s | 600/m burst 10 | off                 the queue's rate limit
    type NAME 5/s [burst N] | type NAME off     one task type's own rate limit in the queue
    group NAME 2 | group * 3 | group NAME off   a concurrency group's limit (``*``: any group)

Parsed here, without I/O, into a ``LimitEdit`` that ``engine.admin`` carries out (validated
before anything is written; a bad line raises ``InvalidLimit``, one line naming the fix)."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from engine import flow
from engine.errors import InvalidLimit

CLEAR_WORD = "off"
FIX = "Write 50/s [burst N], type NAME 5/s, group NAME 2 (group * for any group), or add off to remove"


class LimitTarget(StrEnum):
    QUEUE = "queue"
    TYPE = "type"
    GROUP = "group"


@dataclass(frozen=True, slots=True)
class LimitEdit:
    target: LimitTarget
    name: str | None
    """The task type or group; None for the queue's own limit."""
    rate: flow.RateLimit | None = None
    """The new rate limit (queue, type); None with ``group_limit`` None: remove it."""
    group_limit: int | None = None

    @property
    def clears(self) -> bool:
        return self.rate is None and self.group_limit is None

    def describe(self, queue: str) -> str:
        """What the edit did, for the operator (``queue`` already made safe to show)."""
        what = {
            LimitTarget.QUEUE: f"queue {queue}",
            LimitTarget.TYPE: f"type {self.name} in queue {queue}",
            LimitTarget.GROUP: f"group {self.name} in queue {queue}",
        }[self.target]
        if self.clears:
            return f"Removed the {'group' if self.target is LimitTarget.GROUP else 'rate'} limit of {what}"
        if self.target is LimitTarget.GROUP:
            return f"Group limit of {what}: {self.group_limit} at once"
        return f"Rate limit of {what}: {self.rate}"


def parse_edit(text: str) -> LimitEdit:
    words = text.split()
    if not words:
        raise InvalidLimit("no limit given", fix=FIX)
    head = words[0].lower()
    if head in (LimitTarget.TYPE, LimitTarget.GROUP):
        if len(words) < 3:
            raise InvalidLimit(f"{head} limit {text.strip()!r} names no {head} or no limit", fix=FIX)
        target, name, rest = LimitTarget(head), words[1], words[2:]
    else:
        target, name, rest = LimitTarget.QUEUE, None, words
    if len(rest) == 1 and rest[0].lower() == CLEAR_WORD:
        if target is LimitTarget.GROUP and name is not None:
            flow.validated_group_limit(name, 1)  # the name's checks, before anything is removed
        return LimitEdit(target, name)
    if target is LimitTarget.GROUP:
        if len(rest) != 1 or not rest[0].isdigit():
            raise InvalidLimit(f"group limit {' '.join(rest)!r} is not a whole number", fix=FIX)
        assert name is not None
        return LimitEdit(target, name, group_limit=flow.validated_group_limit(name, int(rest[0])))
    return LimitEdit(target, name, rate=_rate(rest))


def _rate(words: list[str]) -> flow.RateLimit:
    """``N/period`` with an optional ``burst N`` (spaces inside N/period allowed)."""
    spec, burst = " ".join(words), None
    before, found, after = spec.lower().partition("burst")
    if found:
        if not after.strip().isdigit():
            raise InvalidLimit(f"burst {after.strip()!r} is not a whole number", fix=FIX)
        spec, burst = before, int(after)
    return flow.parse_limit(spec, burst)
