"""No byte from Redis reaches the terminal through the CLI: hostile text planted in every
field a command prints (task types, payloads, errors, tracebacks, history, queue and worker
names, cron entries, audit entries) comes out with each control shown visibly, checked on the
bytes the CLI writes. ``--json`` stays exact JSON."""

from __future__ import annotations

import json

import pytest
import redis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.cli import cli, run
from engine.client import Client
from engine.worker import protocol

# the console's corpus (tests/tui/test_safe.py) plus the CLI issue's own findings
CORPUS = [
    "\x1b]0;PWNED\x07",
    "\x1b]8;;https://evil.example\x1b\\link\x1b]8;;\x1b\\",
    "\x1b[2J\x1b[H\x1b[?1049h",
    "\x9b2J\x9d0;title\x9c",
    "\u202eevil\u202c \u2066iso\u2069 \u200fmark",
    "bell\x07back\x08space\x7fdel\rcr",
    "zero\u200bwidth\ufefftag\U000e0041",
    "\x00nul\x1f",
    "[@click=app.quit]markup[/]",
]
# what may never reach a terminal: C0 but newline, DEL, C1, bidi, zero-width, BOM, separators, tags
ACTIVE = (
    set(range(0x00, 0x0A))
    | set(range(0x0B, 0x20))
    | set(range(0x7F, 0xA0))
    | {0x061C, 0x200B, 0x200C, 0x200D, 0x200E, 0x200F, 0xFEFF, 0x2028, 0x2029}
    | set(range(0x202A, 0x202F))
    | set(range(0x2066, 0x206A))
    | set(range(0xE0000, 0xE0080))
)
QUEUE = "hostile"


def plant(url: str, raw: redis.Redis, text: str) -> str:
    """A real task, worker, cron entry and audit entry, then hostile text written over their
    fields as a buggy or malicious client could; returns the task id."""
    with Client(url) as client:
        task = client.enqueue("t", {"x": 1}, queue=QUEUE)
        ks = client.settings.keyspace
        qk = ks.queue(QUEUE)
        raw.hset(
            qk.task(task.id),
            mapping={
                "type": text,
                "payload": json.dumps({"note": text}),
                "error": text,
                "tb": text,
                "reason": text,
            },
        )
        raw.lpush(qk.history(task.id), json.dumps([1, "pending", text]))
        raw.sadd(ks.queues, f"q{text}")  # a queue name no enqueue would accept
        fields = {
            "host": text,
            "pid": 1,
            "queues": f"{QUEUE},{text}",
            "concurrency": 1,
            "started": 0,
            "busy": 0,
            "tasks": "[]",
        }
        client.run(protocol.beat_registry(client.settings, f"w{text}", fields, 60_000))
        raw.hset(
            ks.cron,
            "nightly",
            json.dumps(
                {
                    "name": "nightly",
                    "expression": "0 3 * * *",
                    "task_type": text,
                    "queue": QUEUE,
                    "payload": None,
                    "timezone": "UTC",
                    "declared_ms": 0,
                }
            ),
        )
        raw.xadd(ks.audit, {"action": text, "queue": text, "count": 1, "detail": text, "actor": text})
    return task.id


def commands(task_id: str) -> list[list[str]]:
    return [
        ["queue", "list"],
        ["queue", "inspect", QUEUE],
        ["worker", "list"],
        ["task", "inspect", task_id],
        ["task", "why", task_id],
        ["cron", "list"],
        ["audit"],
        ["doctor"],
        ["task", "inspect", "no\x1b]0;x\x07such"],
    ]


def check_output(url: str, capsysbinary: pytest.CaptureFixture[bytes], task_id: str) -> None:
    for command in commands(task_id):
        run(cli, ["--redis-url", url, *command], "rediq")
        out, err = capsysbinary.readouterr()
        text = (out + err).decode("utf-8")  # valid UTF-8, or this raises
        bad = sorted({f"U+{ord(c):04X}" for c in text if ord(c) in ACTIVE})
        assert not bad, f"{' '.join(command)} printed {bad}"
        if command[:2] != ["task", "inspect"] or command[2] == task_id:
            assert out, f"{' '.join(command)} printed nothing"
        run(cli, ["--redis-url", url, *command, "--json"], "rediq") if command[0] != "doctor" else None
        out, _ = capsysbinary.readouterr()
        if out:
            json.loads(out)  # exact JSON


@pytest.mark.parametrize("hostile", CORPUS)
def test_every_command_shows_the_corpus_inertly(
    redis_url: str, raw: redis.Redis, capsysbinary: pytest.CaptureFixture[bytes], hostile: str
) -> None:
    task_id = plant(redis_url, raw, hostile)
    check_output(redis_url, capsysbinary, task_id)
    run(cli, ["--redis-url", redis_url, "task", "inspect", task_id], "rediq")
    shown = capsysbinary.readouterr().out.decode()
    if "\x1b" in hostile:
        assert "␛" in shown  # shown, not deleted


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(hostile=st.text(min_size=1, max_size=40))
def test_any_text_is_shown_inertly(
    redis_url: str, raw: redis.Redis, capsysbinary: pytest.CaptureFixture[bytes], hostile: str
) -> None:
    raw.flushall()
    task_id = plant(redis_url, raw, hostile)
    check_output(redis_url, capsysbinary, task_id)
