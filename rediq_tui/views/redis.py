"""The Redis page: the server rediq depends on (version, role, memory against maxmemory and
the eviction policy, red unless ``noeviction``; persistence, clients, replication lag, slow
log) and rediq's keys and memory per queue (sampled, refreshed at most every 30 s)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import VerticalScroll
from textual.widgets import Static

from engine import serverinfo
from engine.client import AsyncClient
from engine.serverinfo import QueueMemory, ServerPage, SlowEntry
from rediq_tui import fmt, safe
from rediq_tui.views.base import View

MEMORY_EVERY_S = 30.0
"""Per-queue memory is sampled at most this often (it reads every queue's counts)."""


def size(n: int) -> str:
    value = float(n)
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if value < 1024 or unit == "TB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{n} B"


@dataclass
class RedisData:
    page: ServerPage
    slowlog: list[SlowEntry] | None
    queues: list[QueueMemory] | None
    errors: list[str] = field(default_factory=list)


def render(data: RedisData, now_s: float) -> Text:
    p = data.page
    out = Text()

    def row(label: str, value: str, style: str = "") -> None:
        out.append(f"{label:>14}: ", style="dim")
        out.append(value + "\n", style=style)

    row("Server", f"{safe.clean(p.server, 20)} {safe.clean(p.version, 20)} · {safe.clean(p.mode, 12)}")
    row("Role", safe.clean(p.role, 20))
    row("Uptime", fmt.duration(p.uptime_s))
    limit = size(p.maxmemory) if p.maxmemory else "no limit"
    pct = f" ({p.used_memory / p.maxmemory:.0%})" if p.maxmemory else ""
    high = p.maxmemory and p.used_memory > 0.8 * p.maxmemory
    row("Memory", f"{size(p.used_memory)} used of {limit}{pct}", "bold red" if high else "")
    policy_note = "" if p.eviction_safe else "  ← evicting keys loses tasks: set noeviction"
    row("Eviction", safe.clean(p.policy, 30) + policy_note, "green" if p.eviction_safe else "bold red")
    row(
        "Persistence",
        f"RDB {safe.clean(p.rdb, 10)} · AOF {p.aof}",
        "yellow" if p.rdb == "off" and p.aof == "off" else "",
    )
    row("Clients", f"{p.clients:,} connected · {p.blocked_clients:,} blocked")
    row("Replication", safe.clean(p.replication, 200))
    row("Keys", f"{p.db_keys:,} in the keyspace · {p.queue_count:,} rediq queues")
    out.append("\n── Slow log (newest first) \n", style="bold")
    if data.slowlog is None:
        out.append("(not available)\n", style="dim")
    elif not data.slowlog:
        out.append("(empty)\n", style="dim")
    for e in data.slowlog or []:
        out.append(f"{fmt.relative(e.at_s * 1000, now_s):>8} ", style="dim")
        out.append(f"{e.duration_us / 1000:8.1f} ms  ", style="bold" if e.duration_us > 10_000 else "")
        out.append(safe.clean(e.command, 100) + "\n")
    out.append("\n── rediq memory per queue (biggest, sampled) \n", style="bold")
    if data.queues is None:
        out.append("(not available)\n", style="dim")
    elif not data.queues:
        out.append("(no queues)\n", style="dim")
    for q in data.queues or []:
        out.append(f"{safe.clean(q.queue, 24):<24} ", style="bold")
        out.append(f"{q.tasks:>10,} tasks {q.keys:>10,} keys {size(q.bytes):>10}\n")
    for err in data.errors:
        out.append("\n" + safe.clean(err, 200), style="yellow")
    return out


class RedisView(View):
    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.data: RedisData | None = None
        self._memory: tuple[float, list[QueueMemory] | None] | None = None

    def compose(self) -> ComposeResult:
        yield Static("Redis", classes="view-title", id="redis-title")
        with VerticalScroll(id="redis-scroll"):
            yield Static("", id="redis-body")

    def focus_main(self) -> None:
        self.query_one("#redis-scroll").focus()

    async def fetch(self, client: AsyncClient) -> RedisData:
        page = await client.call(serverinfo.server_page)
        errors: list[str] = []
        slow: list[SlowEntry] | None = None
        try:
            slow = await client.call(serverinfo.slowlog)
        except Exception as exc:  # noqa: BLE001 - denied by ACL on managed services
            errors.append(f"SLOWLOG: {exc}")
        now = time.monotonic()
        if self._memory is None or now - self._memory[0] > MEMORY_EVERY_S:
            try:
                memory: list[QueueMemory] | None = await client.call(serverinfo.queue_memory)
            except Exception as exc:  # noqa: BLE001 - MEMORY may be denied; the rest still helps
                memory = None
                errors.append(f"MEMORY USAGE: {exc}")
            self._memory = (now, memory)
        return RedisData(page, slow, self._memory[1], errors)

    def show(self, data: RedisData) -> None:
        self.data = data
        p = data.page
        title = Text(
            f"Redis · {safe.clean(p.server, 20)} {safe.clean(p.version, 20)} · {safe.clean(p.role, 12)}",
            no_wrap=True,
        )
        if not p.eviction_safe:
            title.append(f" · eviction {safe.clean(p.policy, 20)}", style="bold red")
        self.query_one("#redis-title", Static).update(title)
        self.query_one("#redis-body", Static).update(render(data, self.host.clock()))
