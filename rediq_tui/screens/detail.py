"""Task detail: every field, pretty payload/result, error and traceback, history timeline and
dependency links (what it waits on, what waits on it) navigable with the keyboard."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, cast

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import Screen
from textual.widgets import Footer, OptionList, Static
from textual.widgets.option_list import Option

from engine import explain, inspect, tasklog
from engine.client import AsyncClient
from engine.errors import TaskNotFound
from engine.explain import Explanation
from engine.task import TaskInfo, TaskState
from engine.tasklog import LogLine
from rediq_tui import fmt, safe
from rediq_tui.host import Host
from rediq_tui.messages import CopyText, OpenTask, RefreshRequested, TaskAction
from rediq_tui.views.base import Pollable
from rediq_tui.widgets.status import StatusBar

FIELDS = (
    ("state", "State"),
    ("queue", "Queue"),
    ("type", "Type"),
    ("priority", "Priority"),
    ("attempts", "Attempts"),
    ("max_retry", "Max retry"),
    ("timeout", "Timeout (s)"),
    ("worker", "Worker"),
    ("unique_key", "Unique key"),
    ("reason", "Reason"),
    ("cancel_requested", "Cancel requested"),
    ("schema_version", "Schema"),
)
TIMES = (
    ("enqueued_at_ms", "Enqueued"),
    ("due_at_ms", "Due"),
    ("expires_at_ms", "Expires"),
    ("started_at_ms", "Started"),
    ("finished_at_ms", "Finished"),
    ("lease_expiry_ms", "Lease until"),
)


def section(title: str) -> Text:
    return Text(f"\n── {title} ", style="bold")


def render_why(why: Explanation | None) -> Text:
    """``Why not running?``: the reasons ``engine.explain.why`` found, red when blocked."""
    out = section("Why not running?")
    out.append("\n")
    if why is None:
        out.append("(unknown)\n", style="dim")
        return out
    style = "bold red" if why.blocked else "green"
    out.append("blocked" if why.blocked else "not blocked", style=style)
    if why.position is not None:
        out.append(f" · position {why.position + 1:,} in pending", style="dim")
    out.append("\n")
    for reason in why.reasons[:20]:
        out.append("• " + safe.clean(reason, 300) + "\n", style="red" if why.blocked else "")
    return out


def render_attempts(task: TaskInfo) -> Text:
    """The attempt timeline (``engine.inspect.attempts``, from the history): number, worker,
    start, duration, outcome, error."""
    out = section("Attempts (oldest first)")
    out.append("\n")
    timeline = inspect.attempts(task)
    if not timeline:
        out.append("(none)\n", style="dim")
    for a in timeline[:50]:
        out.append(f"#{a.number:<2} ", style="bold")
        out.append(f"{safe.clean(a.worker, 14):<14} ")
        out.append(fmt.stamp(a.started_ms)[11:] + " ", style="dim")
        out.append(f"{fmt.seconds(a.duration_s):>6} ")
        out.append(f"{safe.clean(a.outcome, 10):<9}", style=OUTCOME_STYLE.get(a.outcome, ""))
        if a.error:
            out.append(" " + safe.clean(a.error, 120), style="red")
        out.append("\n")
    return out


OUTCOME_STYLE = {
    "completed": "green",
    "dead": "bold red",
    "retry": "yellow",
    "cancelled": "yellow",
    "expired": "magenta",
    "running": "cyan",
}


def render_error(task: TaskInfo) -> Text:
    out = Text()
    if task.last_error:
        out.append(section("Error"))
        out.append("\n" + safe.clean(task.last_error, 2000, multiline=True) + "\n", style="red")
    if task.traceback:
        out.append(section("Traceback"))
        out.append("\n" + safe.clean(task.traceback, 10_000, multiline=True) + "\n")
    return out


LOG_LINES_SHOWN = 20
"""The newest ``ctx.log`` lines shown in the detail (``rediq task logs ID`` prints all kept)."""
LOG_STYLE = {"warning": "yellow", "error": "red", "debug": "dim"}


def render_log(lines: Sequence[LogLine]) -> Text:
    """The newest lines the handler wrote with ``ctx.log``, oldest first, sanitised."""
    out = section(f"Log (last {min(len(lines), LOG_LINES_SHOWN)} of {len(lines)})")
    out.append("\n")
    for line in lines[-LOG_LINES_SHOWN:]:
        out.append(fmt.stamp(line.at_ms), style="dim")
        out.append(f"  {line.level:<7} ", style=LOG_STYLE.get(line.level, ""))
        out.append(f"#{line.attempt} ", style="dim")
        out.append(safe.clean(line.message, 300) + "\n")
    return out


def render_task(task: TaskInfo, why: Explanation | None = None, log_lines: Sequence[LogLine] = ()) -> Text:
    out = Text()
    out.append("Task ", style="bold")
    out.append(safe.clean(task.id, 128), style="bold cyan")
    out.append("\n")
    failed = task.state in (TaskState.DEAD, TaskState.RETRY) and bool(task.last_error or task.traceback)
    if failed:  # what the operator opened a dead task for comes first, wrapped, never cut
        out.append(render_error(task))
    for name, label in FIELDS:
        value = getattr(task, name)
        if value in (None, "", False) and name not in ("state", "attempts"):
            continue
        out.append(f"{label:>16}: ", style="dim")
        out.append(safe.clean(str(value), 200))
        out.append("\n")
    for name, label in TIMES:
        value = getattr(task, name)
        if value:
            out.append(f"{label:>16}: ", style="dim")
            out.append(fmt.stamp(value) + " UTC\n")
    if (task.progress is not None or task.progress_message) and not task.state.is_final:
        out.append(f"{'Progress':>16}: ", style="dim")
        out.append(fmt.bar(task.progress, 20), style="green")
        out.append(" " + safe.clean(task.progress_message or "", 200) + "\n")
    elif task.progress is not None or task.progress_message:
        out.append(f"{'Last progress':>16}: ", style="dim")
        out.append(f"{task.progress or 0:.0f}% {safe.clean(task.progress_message or '', 200)}", style="dim")
        out.append(f" (final: task {task.state})\n", style="dim")
    for key, value in sorted(task.metadata.items())[:50]:
        out.append(f"{safe.clean(key, 16):>16}: ", style="dim")
        out.append(safe.clean(value, 200) + "\n")
    out.append(section("Payload"))
    out.append("\n" + safe.pretty_json(task.payload) + "\n")
    if task.result is not None:
        out.append(section("Result"))
        out.append("\n" + safe.pretty_json(task.result) + "\n")
    # after the payload (the first screen at 80x24 shows fields and payload; the title line
    # already says whether and why the task is blocked)
    if not task.state.is_final:  # a finished task shows its outcome and attempts instead
        out.append(render_why(why))
    out.append(render_attempts(task))
    if not failed:
        out.append(render_error(task))
    if log_lines:
        out.append(render_log(log_lines))
    out.append(section("History (newest first)"))
    out.append("\n")
    for entry in task.history[:100]:
        out.append(fmt.stamp(entry.at_ms), style="dim")
        out.append(f"  {safe.clean(entry.state, 16):<12}", style="bold")
        out.append(safe.clean(entry.note, 120) + "\n")
    if not task.history:
        out.append("(none)\n", style="dim")
    return out


def dependency_options(task: TaskInfo) -> list[Option]:
    options = []
    waiting = set(task.waiting_on)
    for ref in task.depends_on:
        tag = "waits on" if ref in waiting else "depended on"
        options.append(Option(Text(f"{tag:<12} ") + safe.text(ref, 100), id=f"dep:{ref}"))
    for ref in task.dependents:
        options.append(Option(Text(f"{'needed by':<12} ") + safe.text(ref, 100), id=f"rev:{ref}"))
    return options


class TaskDetailScreen(Screen[None], Pollable):
    BINDINGS = [
        Binding("escape,q", "close", "Back", id="detail.back"),
        Binding("tab", "focus_next", "Deps/body", show=False, id="detail.focus"),
        Binding("r", "requeue", "Retry", id="detail.requeue"),
        Binding("c", "cancel", "Cancel", id="detail.cancel"),
        Binding("d", "delete", "Delete", id="detail.delete"),
        Binding("y", "copy_id", "Copy id", id="detail.copy"),
        Binding("j", "scroll_down", "Down", show=False, id="detail.down"),
        Binding("k", "scroll_up", "Up", show=False, id="detail.up"),
    ]
    MUTATING = frozenset({"requeue", "cancel", "delete"})

    def __init__(self, queue: str, task_id: str) -> None:
        super().__init__()
        self.queue = queue
        self.task_id = task_id
        self.info: TaskInfo | None = None
        self.why: Explanation | None = None
        self.log_lines: list[LogLine] = []
        self.missing = False

    @property
    def host(self) -> Host:
        return cast(Host, self.app)

    def compose(self) -> ComposeResult:
        yield StatusBar(self.host.display_name, id="detail-status")
        yield Static(
            Text(f"Task {safe.clean(self.task_id, 60)} · loading…", no_wrap=True),
            classes="view-title",
            id="detail-title",
        )
        yield OptionList(id="detail-deps")
        with VerticalScroll(id="detail-scroll"):
            yield Static("", id="detail-body")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#detail-scroll").focus()
        self.post_message(RefreshRequested())  # the first poll, now that there is a screen to show it

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action in self.MUTATING and self.host.read_only:
            return None
        return True

    async def fetch(self, client: AsyncClient) -> tuple[TaskInfo | None, Explanation | None, list[LogLine]]:
        info = await client.call(inspect.task, self.task_id, self.queue)
        if info is None:
            return None, None, []
        try:
            why = await client.call(explain.why, self.task_id, self.queue)
        except TaskNotFound:  # gone between the two reads
            why = None
        return info, why, await client.call(tasklog.read, self.task_id, info.queue)

    def show(self, data: Any) -> None:
        info: TaskInfo | None
        info, self.why, self.log_lines = data
        title = self.query_one("#detail-title", Static)
        if info is None:
            self.missing = True
            title.update(Text(f"Task {safe.clean(self.task_id, 60)} · not found (expired or purged)"))
            return
        self.info = info
        line = Text(
            f"{safe.clean(info.queue, 20)} · {info.state} · {safe.clean(info.type, 30)}",
            no_wrap=True,
            overflow="ellipsis",
        )
        if self.why is not None and self.why.blocked:
            line.append(" · blocked", style="bold red")
            if self.why.reasons:
                line.append(": " + safe.clean(self.why.reasons[0], 120), style="red")
        title.update(line)
        self.query_one("#detail-body", Static).update(render_task(info, self.why, self.log_lines))
        deps = self.query_one("#detail-deps", OptionList)
        options = dependency_options(info)
        highlighted = deps.highlighted
        deps.clear_options()
        deps.add_options(options)
        deps.set_class(not options, "-hidden")
        if options:
            deps.highlighted = min(highlighted or 0, len(options) - 1)

    def update_progress(self, percent: float | None, message: str | None) -> None:
        if self.info is None:
            return
        self.info = self.info.model_copy(
            update={
                "progress": percent if percent is not None else self.info.progress,
                "progress_message": message if message is not None else self.info.progress_message,
            }
        )
        self.query_one("#detail-body", Static).update(render_task(self.info, self.why, self.log_lines))

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        event.stop()
        ref = (event.option.id or "").split(":", 1)[-1]
        queue, _, task_id = ref.partition("|")
        if task_id:
            self.post_message(OpenTask(queue, task_id))

    def action_copy_id(self) -> None:
        self.post_message(CopyText(self.task_id, "task id"))

    def action_close(self) -> None:
        self.dismiss(None)

    def action_scroll_down(self) -> None:
        self.query_one("#detail-scroll", VerticalScroll).scroll_down()

    def action_scroll_up(self) -> None:
        self.query_one("#detail-scroll", VerticalScroll).scroll_up()

    def _act(self, kind: str) -> None:
        self.post_message(TaskAction(kind, self.queue, [self.task_id]))

    def action_requeue(self) -> None:
        self._act("requeue")

    def action_cancel(self) -> None:
        self._act("cancel")

    def action_delete(self) -> None:
        self._act("delete")
