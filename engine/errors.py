"""Errors a user can hit, each with the guide's code and a one-line fix.

``RediqError.__str__`` is the line the CLI prints; ``exit_code`` is what it exits with.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pydantic import ValidationError


class RediqError(Exception):
    code = "E000"
    exit_code = 1
    fix = ""

    def __init__(self, message: str, *, fix: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if fix is not None:
            self.fix = fix

    def __str__(self) -> str:
        text = f"{self.code}: {self.message}"
        return f"{text}. {self.fix}" if self.fix else text


class ConnectionFailed(RediqError):
    code = "E001"
    exit_code = 3
    fix = "Check that Redis is running and the URL (--redis-url / REDIS_URL) is right"


class PayloadError(RediqError):
    code = "E002"
    exit_code = 4
    fix = "Make the payload JSON-serialisable (dict, list, str, numbers, bool, None, or a pydantic model)"


class PayloadTooLarge(PayloadError):
    fix = "Store large data elsewhere (object store, database) and pass a reference in the payload"


class UnknownQueue(RediqError):
    code = "E003"
    exit_code = 5
    fix = "Run `rediq queue list` to see known queues; a queue exists once a task was enqueued to it"


class WorkerTimeout(RediqError):
    code = "E004"
    exit_code = 6
    fix = "Raise the task's timeout or make the handler faster"


class TaskNotFound(RediqError):
    code = "E005"
    exit_code = 7
    fix = (
        "Check the id with `rediq queue inspect QUEUE`; "
        "completed tasks are kept only for the retention period"
    )


class InvalidTask(RediqError):
    code = "E006"
    exit_code = 2
    fix = ""


class InvalidUrl(RediqError):
    code = "E007"
    exit_code = 2
    fix = (
        "Use redis://[user:pass@]host:port/db, rediss://..., unix:///path.sock, "
        "redis+sentinel://host:port,host:port/service or redis+cluster://host:port"
    )


class AuthFailed(ConnectionFailed):
    fix = "Check the user name and password in the Redis URL"


class AppImportError(RediqError):
    code = "E008"
    exit_code = 8
    fix = "Pass --app as 'package.module:registry' where registry is an engine.Registry"


class InvalidCron(RediqError):
    code = "E009"
    exit_code = 2
    fix = (
        "Use 5 fields: minute hour day-of-month month day-of-week, e.g. '0 * * * *' "
        "(or 6 with seconds last, e.g. '* * * * * */10')"
    )


class ReadOnlyError(RediqError):
    code = "E010"
    exit_code = 9
    fix = "This Redis user lacks the permission; see docs/acl/ for the worker and read-only console users"


class InvalidConfig(RediqError):
    """A configuration value (flag, environment, .env or config file) failed validation."""

    code = "E011"
    exit_code = 12
    fix = "Correct the value; `rediq config show` lists every setting and where it comes from"


class MetricsBindError(RediqError):
    code = "E012"
    exit_code = 13
    fix = "Choose a free port with --metrics-port (or METRICS_PORT), or stop what holds it"


class ConsoleMissing(RediqError):
    code = "E013"
    exit_code = 14
    fix = "Install rediq with its console (pip install rediq) or run from a checkout"


class WorkerUnavailable(AppImportError):
    fix = "Update rediq; engine.worker is part of the package"


class Retryable(Exception):
    """Raise from a handler to ask for a retry, optionally after ``delay`` seconds."""

    def __init__(self, message: str = "", *, delay: float | None = None) -> None:
        super().__init__(message)
        self.delay = delay


class Permanent(Exception):
    """Raise from a handler when retrying cannot help: the task goes straight to dead."""


class RateLimited(Exception):
    """Raise from a handler when the remote side rate-limits it (an HTTP 429 with Retry-After):
    the task goes back to pending without burning a retry, and its queue's bucket is paused for
    every worker for ``retry_after`` seconds (more than 0, at most a day)."""

    def __init__(self, message: str = "", *, retry_after: float) -> None:
        super().__init__(message or f"rate limited by the remote side; retry after {retry_after:g} s")
        self.retry_after = retry_after

    def __reduce__(self) -> tuple[Any, ...]:
        # keyword-only retry_after: the default pickling (cls(*args)) would lose it on its way
        # back from a --pool process child
        return (_rate_limited, (str(self), self.retry_after))


def _rate_limited(message: str, retry_after: float) -> RateLimited:
    return RateLimited(message, retry_after=retry_after)


class InvalidLimit(RediqError):
    """A rate limit (``N/period``, a burst, a ``RateLimited`` pause) that cannot be enforced."""

    code = "E017"
    exit_code = 2
    fix = "Write the limit as N/period, e.g. 50/s or 600/m"


class InvalidBatch(RediqError):
    """A batch declaration (``Batch(max_size, max_delay)`` on a task type) that cannot work."""

    code = "E018"
    exit_code = 2
    fix = "Declare Batch(max_size=1..1000, max_delay=seconds > 0) on a handler fn(ctx, items: list)"


class BatchFailed(Exception):
    """Raise from a batch handler to fail some of its items: ``failures`` maps an item's task
    id to the exception it failed with (a ``Permanent`` one goes dead, a ``Retryable`` one
    retries after its delay, any other retries per the type's policy); every other item of the
    batch completes (``results``: task id -> its result, optional)."""

    def __init__(
        self, failures: Mapping[str, BaseException], results: Mapping[str, Any] | None = None
    ) -> None:
        super().__init__(f"{len(failures)} item(s) of the batch failed")
        self.failures = dict(failures)
        self.results = dict(results or {})

    def __reduce__(self) -> tuple[Any, ...]:
        return (BatchFailed, (self.failures, self.results))


class FunctionsMissing(RediqError):
    """This rediq version's Lua function library is not on the server and this Redis user may
    not load it (a worker's ACL has FCALL, not FUNCTION LOAD)."""

    code = "E010"
    exit_code = 9
    fix = (
        "Run `rediq server install-functions` as an admin user (one allowed FUNCTION LOAD), "
        "or set REDIQ_SCRIPT_MODE=eval on servers without functions (weaker: see SECURITY.md)"
    )


class TaskFailed(RediqError):
    """A task waited for (``Client.result``, ``EnqueueResult.wait``) ended without a result:
    ``TaskDead`` or ``TaskCancelled``, or deleted by an operator. ``info`` holds the task as
    stored (its ``last_error``, ``reason``, ``traceback``...)."""

    code = "E014"
    exit_code = 15
    fix = "Read the error and history with `rediq task inspect ID`; requeue it once the cause is fixed"

    def __init__(self, message: str, *, info: Any = None, fix: str | None = None) -> None:
        super().__init__(message, fix=fix)
        self.info = info


class TaskDead(TaskFailed):
    """The task is dead: its attempts are spent, or it raised ``Permanent``."""


class TaskCancelled(TaskFailed):
    """The task was cancelled (by request, or because a dependency failed)."""

    fix = "See who cancelled it and why with `rediq task inspect ID`"


class TaskExpired(TaskFailed):
    """The task was not started by its ``expires`` deadline: it never ran."""

    fix = "Enqueue it again with a later `expires`, or add workers for its queue (`rediq task why ID`)"


class ResultTimeout(RediqError, TimeoutError):
    """Waiting for a task's result took longer than the timeout; the task itself goes on."""

    code = "E015"
    exit_code = 16
    fix = "Wait longer, or check why it has not run with `rediq task why ID`"


class StartupFailed(RediqError):
    """A worker's ``@registry.on_startup`` hook raised: the worker exits without taking tasks."""

    code = "E016"
    exit_code = 17
    fix = "Fix the hook (or what it connects to) and start the worker again"


def validation_message(exc: ValidationError) -> str:
    """The first pydantic error as one line naming the field: ``priority must be 0..100, got 250``."""
    err = exc.errors()[0]
    field = ".".join(str(p) for p in err.get("loc", ()))
    message = str(err.get("msg", "invalid"))
    message = message.removeprefix("Value error, ")
    if field and not message.startswith(field):
        message = f"{field}: {message}"
    return message
