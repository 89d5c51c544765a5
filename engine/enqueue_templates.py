"""The common single ``enqueue`` (a task type, a payload, at most a queue) sent from a template.

``client.enqueue("email:send", payload)`` builds a ``Task`` (pydantic validation), applies the
type's declaration, turns the task into ``enqueue.lua``'s fields and wraps them in a call: the
same work for every call of one type to one queue, all but the id and the payload. A template
keeps that work's outcome, made once by the same functions, and each call adds a fresh id and
its payload's JSON (checked as every payload is). On a 2-core machine this halved the client's
own time per call, ~25 to ~12 µs (2026-12-05, docs/reference/performance.md): what a single
enqueue and the enqueue-to-start latency had left to gain on the client's side.

A template is used only while everything it was made from holds: the same ``Settings``, the
same declaration object (a refresh that changed it makes a new one), declarations not due for a
refresh, the queue registered lately, no before-enqueue hook, no option but ``queue``, and no
declared uniqueness (its key is a digest of the payload). Anything else takes the full route
(``ops.enqueue_one``), which also makes the errors: a template is only made from a call that
route would accept.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from engine.backend import Call, script_call
from engine.declarations import Declaration, Declarations
from engine.ops import QueueRegistrations, Settings, build_task, checked_payload, enqueue_head, task_args
from engine.task import new_task_id, payload_json

TEMPLATES_MAX = 256
"""Templates one client keeps (a producer with more types × queues starts over: a bound, not
an LRU, since the set of hot ones is small)."""


@dataclass(frozen=True, slots=True)
class Template:
    """One type and queue's ``enqueue.lua`` call, but for the task's id and payload."""

    settings: Settings
    declaration: Declaration | None
    queue: str
    keys: tuple[str, ...]
    head: tuple[Any, ...]
    """The queue's arguments before the task's fields."""
    tail: tuple[Any, ...]
    """The task's fields after its payload: priority, retries, timeout, due, extras."""

    def call(self, task_type: str, payload: Any) -> Call:
        task_id = new_task_id()
        text = checked_payload(self.settings, task_id, task_type, payload_json(task_type, payload))
        return script_call("enqueue", self.keys, (*self.head, task_id, task_type, text, *self.tail))


class EnqueueTemplates:
    """A client's templates, by task type and the ``queue`` option (None: not given)."""

    __slots__ = ("_by_type",)

    def __init__(self) -> None:
        self._by_type: dict[tuple[str, str | None], Template] = {}

    def call(
        self,
        settings: Settings,
        declarations: Declarations,
        registrations: QueueRegistrations,
        task_type: Any,
        payload: Any,
        options: Mapping[str, Any],
    ) -> tuple[Call, str] | None:
        """The script call that enqueues ``task_type`` with ``payload`` and ``options``, and
        its queue; None when the call must take the full route (see the module's text)."""
        queue = options.get("queue")
        only_a_queue = len(options) == (queue is not None) and isinstance(queue, str | None)
        if type(task_type) is not str or not only_a_queue:
            return None
        if declarations.needs_refresh({task_type}):
            return None
        declaration = declarations.get(task_type)
        template = self._by_type.get((task_type, queue))
        if template is None or template.settings is not settings or template.declaration is not declaration:
            template = self._make(settings, declarations, declaration, task_type, queue)
            if template is None:
                return None
        if registrations.due((template.queue,)):
            return None
        return template.call(task_type, payload), template.queue

    def _make(
        self,
        settings: Settings,
        declarations: Declarations,
        declaration: Declaration | None,
        task_type: str,
        queue: str | None,
    ) -> Template | None:
        if declaration is not None and declaration.unique_ttl is not None:
            return None  # a unique key per payload
        # the full route's own steps, so a template holds what that route would send (and a
        # refused type, queue or undeclared type raises here as it would there)
        task = build_task(task_type, None, **({} if queue is None else {"queue": queue}))
        task = declarations.apply_known(task)
        fields = task_args(task, settings, ())
        keys, head = enqueue_head(settings, task.queue)
        template = Template(settings, declaration, task.queue, keys, head, tuple(fields[3:]))
        if len(self._by_type) >= TEMPLATES_MAX:
            self._by_type.clear()
        self._by_type[(task_type, queue)] = template
        return template
