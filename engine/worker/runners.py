"""Running handlers (async in the loop; sync in a thread or a child process) and keeping the
worker's background loops alive.

A sync handler cannot be interrupted in a thread. When its attempt is given up (timeout,
cancel, lost lease) the worker does not pretend it stopped: the slot stays held, the lease is
kept, and the attempt's outcome is recorded only once the thread returns (``HandlerRunner.call``
waits it out and counts it in ``overdue``). A worker with every slot held that way takes no work
instead of charging tasks it cannot run. ``pool="process"`` runs sync handlers in child
processes instead, which are killed at the deadline (a hard time limit).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import contextvars
import json
import logging
import multiprocessing
import pickle
import random
import signal
import sys
import threading
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from multiprocessing.connection import Connection, wait
from typing import Any, Literal

from engine.deadlines import Deadline
from engine.errors import InvalidConfig, Permanent, RediqError, Retryable, StartupFailed
from engine.tasklog import level_of
from engine.tracebacks import format_handler_traceback

log = logging.getLogger("rediq.worker")

Pool = Literal["thread", "process"]
CHILD_POLL_S = 0.1  # how often a wait on a child also checks for a cancel or shutdown
CHILD_STOP_S = 5.0  # how long stopping children get for their shutdown hooks
CHILD_START_S = 60.0  # a child that is not ready this long after spawn is a broken app import
LOOP_BACKOFF_MAX_S = 30.0


# ---------------------------------------------------------------------------------- results


class Serialised(str):
    """A result already serialised to JSON (by a child process)."""


def result_json(result: Any) -> str:
    if result is None:
        return ""
    if isinstance(result, Serialised):
        return str(result)
    if hasattr(result, "model_dump_json"):
        return str(result.model_dump_json())
    try:
        return json.dumps(result, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError):
        return json.dumps({"unserialisable_result": repr(result)[:1000]})


def handler_traceback(exc: BaseException) -> str:
    """The traceback stored on a failed task: the child's own (``--pool process``), else this
    process's, from the handler's frame down (``engine.tracebacks``)."""
    if isinstance(exc.__cause__, _RemoteTraceback):
        return exc.__cause__.text
    return format_handler_traceback(exc)


def describe(exc: BaseException) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


# ---------------------------------------------------------------------------------- threads


class ThreadCall:
    """One call submitted to a ``DaemonThreadPool``: ``future`` gets its outcome (unless it was
    cancelled first); ``returned`` tells whether the call itself has returned."""

    __slots__ = ("fn", "future", "loop", "returned", "_returned_waiter")

    def __init__(self, loop: asyncio.AbstractEventLoop, fn: Callable[[], Any]) -> None:
        self.loop = loop
        self.fn = fn
        self.future: asyncio.Future[Any] = loop.create_future()
        self.returned = False
        self._returned_waiter: asyncio.Future[None] | None = None

    def until_returned(self) -> asyncio.Future[None]:
        """A future done once the call has returned (in the loop: after its thread let go)."""
        if self._returned_waiter is None:
            self._returned_waiter = self.loop.create_future()
            if self.returned:
                self._returned_waiter.set_result(None)
        return self._returned_waiter

    def settle(self, result: Any, exc: BaseException | None) -> None:
        """In the loop: the call returned with ``result`` or raised ``exc``."""
        self.returned = True
        future = self.future
        if not future.done():
            if exc is not None:
                future.set_exception(exc)
            else:
                future.set_result(result)
        waiter = self._returned_waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)


class _Outbox:
    """Outcomes of one event loop's calls, handed to the loop in batches: one wake-up of the
    loop for every call that finished while it was busy, not one per call."""

    __slots__ = ("loop", "outcomes", "scheduled")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.outcomes: list[tuple[ThreadCall, Any, BaseException | None]] = []
        self.scheduled = False


class DaemonThreadPool:
    """Runs calls in daemon threads that share one queue of calls, growing on demand. A
    ThreadPoolExecutor's threads are joined at interpreter exit, so one hung handler would keep
    a stopped worker process alive forever; daemon threads do not. The worker never has more
    calls in flight than slots, so this grows to ``concurrency`` threads.

    Short handlers are run several per thread wake-up, and their outcomes reach the loop
    several per loop wake-up (a wake-up, a futex or a self-pipe write, cost more than a no-op
    handler). What keeps a hung or slow handler from delaying the calls behind it: whenever
    calls are queued, some thread that is not running a call is awake to take the next one,
    so a thread that starts a call while others wait in the queue first wakes (or starts)
    another thread unless one is already free."""

    def __init__(self, name: str) -> None:
        self._name = name
        self._lock = threading.Lock()
        self._wakeup = threading.Condition(self._lock)
        self._calls: collections.deque[ThreadCall] = collections.deque()
        self._free = 0
        """Threads awake and not in a call (a woken one counts from its wake-up): each takes
        the next queued call without being woken."""
        self._idle = 0
        """Threads asleep, waiting for calls."""
        self._count = 0
        self._outboxes: dict[asyncio.AbstractEventLoop, _Outbox] = {}

    def submit(self, fn: Callable[[], Any]) -> ThreadCall:
        """Queue ``fn`` (from the event loop); its outcome settles the returned call's future."""
        loop = asyncio.get_running_loop()
        call = ThreadCall(loop, fn)
        if loop not in self._outboxes:
            self._outboxes[loop] = _Outbox(loop)
        with self._lock:
            self._calls.append(call)
            if self._free == 0:
                self._wake_one()
        return call

    def _wake_one(self) -> None:
        """Under the lock: make one more thread free, an idle one if any, else a new one."""
        self._free += 1
        if self._idle:
            self._idle -= 1
            self._wakeup.notify()
            return
        self._count += 1
        threading.Thread(target=self._serve, name=f"{self._name}-{self._count}", daemon=True).start()

    def _serve(self) -> None:
        lock = self._lock
        while True:
            with lock:
                while not self._calls:
                    self._free -= 1
                    self._idle += 1
                    self._wakeup.wait()  # the waker moved this thread from idle to free
                call = self._calls.popleft()
                self._free -= 1
                if self._calls and self._free == 0:  # this call may be long: the next needs a thread
                    self._wake_one()
            try:
                outcome: tuple[Any, BaseException | None] = (call.fn(), None)
            except BaseException as exc:  # noqa: BLE001 - handed to the awaiting task
                outcome = (None, exc)
            self._post(call, *outcome)
            del call, outcome
            with lock:
                self._free += 1

    def _post(self, call: ThreadCall, result: Any, exc: BaseException | None) -> None:
        outbox = self._outboxes[call.loop]
        with self._lock:
            outbox.outcomes.append((call, result, exc))
            if outbox.scheduled:
                return  # the loop has a delivery pending: this outcome rides with it
            outbox.scheduled = True
        with contextlib.suppress(RuntimeError):  # the loop is closed: nobody waits any more
            call.loop.call_soon_threadsafe(self._deliver, outbox)

    def _deliver(self, outbox: _Outbox) -> None:
        with self._lock:
            outcomes, outbox.outcomes = outbox.outcomes, []
            outbox.scheduled = False
        for call, result, exc in outcomes:
            call.settle(result, exc)


# ---------------------------------------------------------------------------------- processes


@dataclass
class ChildContext:
    """What a sync handler gets as ``ctx`` in a child process (``--pool process``): the
    TaskContext's fields; ``progress`` is sent to the worker; ``cancelled`` stays False (a
    cancelled task's child is killed instead)."""

    id: str
    type: str
    queue: str
    attempt: int
    max_retry: int
    metadata: dict[str, str]
    worker_id: str
    cancelled: bool = False
    state: Any = None
    """The child's own ``WorkerState`` (set in the child: its startup hooks filled it)."""

    @property
    def is_last_attempt(self) -> bool:
        return self.attempt > self.max_retry

    def progress(self, percent: float, message: str = "") -> None:
        if _CHILD_CONN is not None:
            _CHILD_CONN.send(("progress", float(percent), message))

    def log(self, message: str, level: str = "info") -> None:
        """``TaskContext.log``: the line goes to the worker, which stores it with the task."""
        if _CHILD_CONN is not None:
            _CHILD_CONN.send(("log", str(level_of(level)), str(message)))


_CHILD_CONN: Connection | None = None


class _RemoteTraceback(Exception):
    """The child's traceback text, chained as the cause of the exception it raised."""

    def __init__(self, text: str) -> None:
        super().__init__(text)
        self.text = text

    def __str__(self) -> str:
        return self.text


def _child_main(conn: Connection, preload: bytes) -> None:
    """A child process: import the app's sync handlers (``preload``: so that no task's time limit
    pays for the import), then run handlers sent by the worker until told to stop."""
    global _CHILD_CONN
    _CHILD_CONN = conn
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the worker, which drains
    # in the child process, after its signal set-up
    from engine import lifecycle

    state = lifecycle.WorkerState()
    try:
        handlers, startup, shutdown = pickle.loads(preload)
        for ref in handlers:
            ref.resolve()
        shutdown_hooks = [ref.resolve() for ref in shutdown]
        lifecycle.run_startup_blocking([ref.resolve() for ref in startup], state)
    except StartupFailed as exc:  # the worker exits with the hook's error
        conn.send(("startup failed", exc.message))
        return
    except BaseException as exc:  # noqa: BLE001 - reported to the worker, which cannot start
        conn.send(("broken", describe(exc)))
        return
    conn.send(("ready",))
    try:
        _serve_child(conn, state)
    finally:
        lifecycle.run_shutdown_blocking(shutdown_hooks, state)


def _serve_child(conn: Connection, state: Any) -> None:
    while True:
        try:
            message = conn.recv()
        except (EOFError, OSError):
            return
        if message is None:
            return
        try:
            ref, ctx, payload = pickle.loads(message)
            ctx.state = state
            reply: tuple[Any, ...] = ("ok", result_json(ref.resolve()(ctx, payload)))
        except BaseException as exc:  # noqa: BLE001 - every handler error goes back to the worker
            reply = ("error", _portable(exc), format_handler_traceback(exc))
        conn.send(reply)


def _portable(exc: BaseException) -> BaseException:
    """The exception itself when it survives pickling, else one of the same kind (permanent,
    retryable or plain) that keeps its description."""
    try:
        pickle.loads(pickle.dumps(exc))
    except Exception:  # noqa: BLE001 - any pickling failure
        kind = (
            Permanent
            if isinstance(exc, Permanent)
            else Retryable
            if isinstance(exc, Retryable)
            else RuntimeError
        )
        return kind(describe(exc))
    return exc


class ChildKilled(Exception):
    """The child running a handler was killed (deadline, cancel or shutdown) or died."""


class _Child:
    def __init__(self, mp: Any, preload: bytes) -> None:
        self.conn, child_end = mp.Pipe()
        self.process = mp.Process(
            target=_child_main, args=(child_end, preload), name="rediq-child", daemon=True
        )
        self.process.start()
        child_end.close()

    def wait_ready(self) -> _Child:
        reply: Any = ("did not start within", f"{CHILD_START_S:g} s")
        with contextlib.suppress(EOFError, OSError):
            if self.conn.poll(CHILD_START_S):
                reply = self.conn.recv()
        if reply != ("ready",):
            self.kill()
            if reply[0] == "startup failed":
                raise StartupFailed(f"in a child process (--pool process): {reply[1]}")
            raise InvalidConfig(
                f"a child process (--pool process) cannot load the handlers: {' '.join(reply)}",
                fix="check that the app imports cleanly in a fresh interpreter (python -c 'import yourapp')",
            )
        return self

    def kill(self) -> None:
        # SIGKILL, not SIGTERM: the limit must hold for a handler that ignores SIGTERM
        with contextlib.suppress(Exception):
            self.process.kill()
            self.process.join(5)
        with contextlib.suppress(Exception):
            self.conn.close()


@dataclass
class _Call:
    """One handler run in a child; ``stop`` set by the worker kills the child."""

    message: bytes
    on_progress: Callable[[float, str], None]
    cancelled: Callable[[], bool]
    """Polled: a cancel requested while the handler runs kills the child."""
    stop: threading.Event = field(default_factory=threading.Event)
    on_log: Callable[[str, str], None] = lambda message, level: None
    """``ctx.log`` of the worker's context (safe from this thread)."""


class ChildPool:
    """Up to ``size`` child processes (spawned: a clean interpreter that imports the app), one
    per running sync handler. A child that is killed is replaced."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.preload = pickle.dumps(([], [], []))
        """The app's sync handlers, pickled: unpickling them imports the app in a child."""
        self._mp = multiprocessing.get_context("spawn")
        self._idle: list[_Child] = []
        self._lock = threading.Lock()
        self._closed = False

    def warm(self) -> None:
        """Start the children now, so the first tasks' time limits do not include a spawn."""
        starting = [_Child(self._mp, self.preload) for _ in range(self.size)]
        children = [child.wait_ready() for child in starting]
        with self._lock:
            self._idle.extend(children)

    def acquire(self) -> _Child:
        """A ready child (blocking: run in a thread): an idle one, else a new one."""
        while True:
            with self._lock:
                child = self._idle.pop() if self._idle else None
            if child is None:
                return _Child(self._mp, self.preload).wait_ready()
            if child.process.is_alive():
                return child
            child.kill()  # died idle (OOM killer, an operator): take another

    def give_back(self, child: _Child) -> None:
        with self._lock:
            if not self._closed:
                self._idle.append(child)
                return
        child.kill()

    def _replace(self) -> None:
        """Start a child in place of a killed one, so the next task does not wait for a spawn."""
        try:
            self.give_back(_Child(self._mp, self.preload).wait_ready())
        except Exception:  # noqa: BLE001 - the next task starts one itself
            log.exception("could not start a replacement child process")

    def run(self, child: _Child, call: _Call) -> Any:
        """Run in a worker thread: send the call to ``child`` and wait for its reply, killing
        the child when ``call.stop`` is set or the task's cancel was requested. Returns the
        result JSON or raises the handler's error."""
        try:
            child.conn.send(call.message)
            while True:
                if call.stop.is_set() or call.cancelled():
                    raise ChildKilled("killed")
                ready = wait([child.conn, child.process.sentinel], CHILD_POLL_S)
                if child.conn in ready:
                    reply = child.conn.recv()
                    if reply[0] == "progress":
                        call.on_progress(reply[1], reply[2])
                        continue
                    if reply[0] == "log":
                        call.on_log(reply[2], reply[1])
                        continue
                    break
                if ready:
                    raise ChildKilled(f"child process died (exit code {child.process.exitcode})")
        except BaseException:
            child.kill()
            if not self._closed:
                threading.Thread(target=self._replace, name="rediq-child-start", daemon=True).start()
            raise
        self.give_back(child)
        if reply[0] == "ok":
            return Serialised(reply[1])
        exc: BaseException = reply[1]
        exc.__cause__ = _RemoteTraceback(reply[2])
        raise exc

    def close(self) -> None:
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, []
        for child in idle:  # all told first: their shutdown hooks run side by side
            with contextlib.suppress(Exception):
                child.conn.send(None)
        deadline = time.monotonic() + CHILD_STOP_S
        for child in idle:
            child.process.join(max(0.0, deadline - time.monotonic()))
            child.kill()


@dataclass(frozen=True)
class HandlerRef:
    """A sync handler named by module and attribute: what a child process imports and calls
    (the attribute may be the function or the typed handle ``@registry.task`` returns, which
    calls it)."""

    module: str
    name: str

    def resolve(self) -> Callable[[Any, Any], Any]:
        # in the child process, where handlers are resolved by name
        import importlib

        found: Callable[[Any, Any], Any] = getattr(importlib.import_module(self.module), self.name)
        return found


def handler_refs(handlers: dict[str, Callable[..., Any]]) -> dict[str, HandlerRef]:
    """``--pool process`` sends each sync handler to a child by reference: it must be a
    module-level function. Raises InvalidConfig naming the first that is not."""
    refs = {}
    for task_type, handler in handlers.items():
        module, name = getattr(handler, "__module__", None), getattr(handler, "__qualname__", "")
        found = getattr(sys.modules.get(module or ""), name, None) if "." not in name else None
        if found is None or (found is not handler and getattr(found, "__wrapped__", None) is not handler):
            raise InvalidConfig(
                f"task {task_type!r}: its handler {name or handler!r} cannot be sent to a child process "
                "(it is not a module-level function)",
                fix="define sync handlers at module level, or run with --pool thread",
            )
        refs[task_type] = HandlerRef(str(module), name)
    return refs


# ---------------------------------------------------------------------------------- the runner


class HandlerRunner:
    """Runs sync handlers for one worker (async handlers run in its loop, not here)."""

    def __init__(self, pool: Pool, concurrency: int) -> None:
        self.pool = pool
        self.concurrency = concurrency
        self.overdue = 0
        """Slots held by handlers whose attempt was given up (timeout, cancel, lost lease) but
        whose thread or child has not returned yet."""
        self.abandon = asyncio.Event()
        """Set at shutdown after the grace period: stop waiting for such handlers."""
        self._threads = DaemonThreadPool("rediq-task")
        self._children = ChildPool(concurrency) if pool == "process" else None
        self._refs: dict[str, HandlerRef] = {}

    async def start(
        self,
        sync_handlers: dict[str, Callable[..., Any]],
        startup_hooks: Sequence[Callable[..., Any]] = (),
        shutdown_hooks: Sequence[Callable[..., Any]] = (),
    ) -> None:
        if self._children is not None:
            self._refs = handler_refs(sync_handlers)
            hooks = handler_refs(
                {f"lifecycle hook {i}": h for i, h in enumerate([*startup_hooks, *shutdown_hooks])}
            )
            refs = list(hooks.values())
            startup, shutdown = refs[: len(startup_hooks)], refs[len(startup_hooks) :]
            self._children.preload = pickle.dumps((list(self._refs.values()), startup, shutdown))
            await asyncio.get_running_loop().run_in_executor(None, self._children.warm)

    def close(self) -> None:
        if self._children is not None:
            self._children.close()

    async def call(
        self,
        handler: Callable[[Any, Any], Any],
        ctx: Any,
        payload: Any,
        on_progress: Callable[[float, str], None],
        deadline: Deadline,
        timeout_s: float,
    ) -> Any:
        """Run a sync handler under ``deadline``. If this task is cancelled (the deadline, a
        cancel, a lost lease), the handler is stopped where possible (its child is killed) and
        waited for; then the CancelledError goes on, so the caller records the attempt only once
        the slot is free."""
        if self._children is not None:
            # the time limit counts from the handler's start, not from a child's spawn: a task
            # must never time out before its handler ran
            if not deadline.expired():
                deadline.reschedule(None)
            child_call, child = await self._child_for(handler, ctx, payload, on_progress)
            if not deadline.expired():
                deadline.reschedule(asyncio.get_running_loop().time() + timeout_s)
            children = self._children
            call = self._threads.submit(lambda: children.run(child, child_call))
        else:
            child_call = None
            context = contextvars.copy_context()  # middleware's context variables reach the handler
            call = self._threads.submit(lambda: context.run(handler, ctx, payload))
        try:
            return await call.future
        except asyncio.CancelledError:
            if child_call is not None:
                child_call.stop.set()
            if not call.returned:
                await self._wait_out(call.until_returned(), ctx.id)
            raise

    async def _child_for(
        self,
        handler: Callable[[Any, Any], Any],
        ctx: Any,
        payload: Any,
        on_progress: Callable[[float, str], None],
    ) -> tuple[_Call, _Child]:
        assert self._children is not None
        child_ctx = ChildContext(
            ctx.id, ctx.type, ctx.queue, ctx.attempt, ctx.max_retry, ctx.metadata, ctx.worker_id
        )
        try:
            message = pickle.dumps((self._refs[ctx.type], child_ctx, payload))
        except Exception as exc:  # noqa: BLE001 - any pickling failure
            raise Permanent(
                f"the payload cannot be sent to a child process (--pool process): {describe(exc)}"
            ) from None
        children = self._children
        acquired = self._threads.submit(children.acquire).future
        try:
            child = await asyncio.shield(acquired)
        except asyncio.CancelledError:  # the child still arrives: keep it for the next task
            acquired.add_done_callback(lambda f: None if f.exception() else children.give_back(f.result()))
            raise
        call = _Call(message, on_progress, lambda: bool(ctx.cancelled))
        if hasattr(ctx, "log"):
            call.on_log = ctx.log
        return call, child

    async def _wait_out(self, future: asyncio.Future[Any], task_id: str) -> None:
        self.overdue += 1
        given_up = time.monotonic()
        log.warning(
            "%d of %d slots held by handlers past their timeout (or cancel); task %s keeps its slot "
            "and lease until its handler returns",
            self.overdue,
            self.concurrency,
            task_id,
        )
        try:
            await wait_ignoring_cancel(future, self.abandon)
        finally:
            self.overdue -= 1
        if future.done():
            log.info(
                "task %s: its handler returned %.1f s after it was given up",
                task_id,
                time.monotonic() - given_up,
            )
            if not future.cancelled():
                future.exception()  # retrieved: no "exception was never retrieved" log


async def wait_ignoring_cancel(future: asyncio.Future[Any], abandon: asyncio.Event) -> None:
    """Wait for ``future`` through further cancellations of this task, until ``abandon`` is set."""
    task = asyncio.current_task()
    abandoned = asyncio.ensure_future(abandon.wait())
    try:
        while not future.done() and not abandon.is_set():
            if abandoned.done():
                # cancelled from outside (a loop's teardown cancels every task): without a new
                # waiter, asyncio.wait would return at once, round after round, a busy loop
                abandoned = asyncio.ensure_future(abandon.wait())
            try:
                await asyncio.wait([future, abandoned], return_when=asyncio.FIRST_COMPLETED)
            except asyncio.CancelledError:
                if task is not None:
                    task.uncancel()
    finally:
        abandoned.cancel()


# ---------------------------------------------------------------------------------- background loops


async def keep_running(
    name: str,
    body: Callable[[], Awaitable[None]],
    running: Callable[[], bool],
    errors: Counter[str],
) -> None:
    """Run a background loop; if it raises, log the traceback, count it in ``errors[name]`` and
    start it again after a backoff (0.1 s doubling to 30 s), for as long as ``running()``."""
    backoff = 0.1
    while running():
        started = time.monotonic()
        try:
            await body()
            return
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - a background loop must never die
            errors[name] += 1
            if isinstance(exc, RediqError):
                log.warning("%s loop: %s; restarting it in %.1f s", name, exc, backoff)
            else:
                log.exception("%s loop failed; restarting it in %.1f s", name, backoff)
        if time.monotonic() - started > 60:
            backoff = 0.1  # it ran well for a while: a new failure starts the backoff again
        await asyncio.sleep(backoff * (0.5 + random.random()))
        backoff = min(LOOP_BACKOFF_MAX_S, backoff * 2)
