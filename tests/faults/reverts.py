"""Which fixes of issue 14 point 2 would the fault harness have found, and does it find a flow
limit check taken out (issue 19 point 6)? For each, a scratch copy of this checkout gets the
edit (a small source edit standing in for the code before the fix, listed below), and the
revert's machine (``Revert.test``) runs on it.

    python -m tests.faults.reverts [name ...] [--examples N] [--steps N]

Prints one line per revert (found or not, in how many steps and seconds) followed by the
shrunk counterexample, and writes the same to ``reverts.out`` in the current directory. Never
edits this checkout: each revert is applied to a copy made with ``git archive HEAD``.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
FAULTS = "tests/faults/test_faults.py::test_no_task_is_lost_or_buried_under_faults"


@dataclass(frozen=True)
class Revert:
    name: str
    what: str
    path: str
    old: str
    new: str
    from_commit: str = ""
    """When set, ``path`` is replaced by its version at this commit (``old``/``new`` then
    adapt it to today's signatures, if they are not empty)."""
    test: str = FAULTS
    """The machine that should find it (the flow limits have machines of their own)."""


REVERTS = [
    Revert(
        "fail-any-delivery",
        "success recorded as dead: fail.lua takes a failure from any delivery of an active task "
        "(before fencing it compared only the attempt number, which two deliveries can share)",
        "engine/scripts/fail.lua",
        "if f[1] ~= 'active' or token_of(f[5], f[6]) ~= token or f[7] == '1' then",
        "if f[1] ~= 'active' or f[7] == '1' then",
    ),
    Revert(
        "resent-start-refused",
        "dropped unrun after a lost start reply: a start mark sent again for a task its delivery "
        "already started is answered 'refused' (the worker forgets a task Redis holds started)",
        "engine/scripts/start.lua",
        "    attempt = tonumber(f[2]) or 0\n    if f[3] == '1' then\n",
        "    if f[3] == '1' then\n      attempt = tonumber(f[2]) or 0\n",
    ),
    Revert(
        "handoff-runs-before-start",
        "hand-off runs before its start mark lands: the handler starts at once as attempt+1 and "
        "the start mark follows in the background (a kill in between runs attempt 1 twice)",
        "engine/worker/driver.py",
        """        exchange = self.core.on_handoff(job)
        if exchange is None:""",
        """        start = protocol.start_call(self.settings, job.queue, [job])
        job.attempt, job.reserved = job.attempt + 1, False
        self.core.slots.running[job.id] = job
        self._launch(job)

        async def mark_started() -> None:
            while True:
                try:
                    await self.backend.execute(start)
                    return
                except RediqError:
                    await asyncio.sleep(0.05)

        asyncio.ensure_future(mark_started())
        return
        exchange = self.core.on_handoff(job)
        if exchange is None:""",
    ),
    Revert(
        "doctor-snapshot-repairs",
        "doctor --repair from its snapshot: the doctor before ba87ddc (repairs applied from a "
        "snapshot read over many round trips, leases older than 1 s recovered)",
        "engine/doctor.py",
        "ops.dequeue_call",
        "__import__('engine.worker.protocol', fromlist=['protocol']).dequeue_call",
        from_commit="ba87ddc^",
    ),
    Revert(
        "cancel-forgotten",
        "cancel forgotten on worker death: lease recovery ignores a requested cancel",
        "engine/scripts/dequeue.lua",
        "  if f[6] == '1' then -- cancel requested",
        "  if false then -- cancel requested",
    ),
    Revert(
        "cancel-forgotten-on-failure",
        "cancel forgotten when its delivery fails: fail.lua retries a task whose cancel was "
        "requested (the handler raised before its worker heard of the cancel)",
        "engine/scripts/fail.lua",
        "if mode == 'cancel' or f[9] == '1' then",
        "if mode == 'cancel' then",
    ),
    Revert(
        "restore-keeps-reserved",
        "delete + restore of a prefetched task: quarantine and restore leave 'reserved' (and "
        "quarantine the worker) on the hash, as before 2253477",
        "engine/scripts/quarantine.lua",
        "redis.call('HDEL', tk, 'lease', 'cancel', 'reserved', 'worker')",
        "redis.call('HDEL', tk, 'lease', 'cancel')",
    ),
    Revert(
        "restore-keeps-reserved",
        "(second half)",
        "engine/scripts/restore.lua",
        "redis.call('HDEL', tk, 'finished', 'worker', 'reserved', 'lease', 'cancel')",
        "redis.call('HDEL', tk, 'finished', 'worker')",
    ),
    Revert(
        "hung-sync-frees-slot",
        "a sync handler past its timeout (or cancel, or lost lease) gives up its slot at once "
        "while its thread runs on (the worker takes more work than it has threads for)",
        "engine/worker/runners.py",
        "            if not future.done():\n                await self._wait_out(future, ctx.id)",
        "            pass",
    ),
    Revert(
        "sync-cancel-returns-completed",
        "a sync handler that returns after its cancel is recorded completed (the cancel does "
        "not win over what the handler did)",
        "engine/worker/core.py",
        "        if cancelled and outcome not in (Outcome.STALE, Outcome.CANCELLED):",
        "        if False:",
    ),
    Revert(
        "requeue-no-unique",
        "requeue does not re-take the unique lock (two live tasks with one key)",
        "engine/scripts/requeue.lua",
        "  if state and from[state] then why = retake_unique(base, id) end\n",
        "",
    ),
    Revert(
        "no-group-check",
        "dequeue leases a grouped task whatever its group holds (issue 19 point 6)",
        "engine/scripts/_lib.lua",
        "      ok = held[group] < cap\n",
        "      ok = true\n",
        test="tests/faults/test_flow_groups.py::test_a_group_limit_is_never_exceeded_under_faults",
    ),
    Revert(
        "rate-allowance-ignored",
        "a rate-limited dequeue leases as many tasks as the worker asks for once its bucket "
        "holds a token (issue 19 point 6)",
        "engine/scripts/dequeue.lua",
        "  if limited then max_n, n_start = limited, limited end\n",
        "",
        test="tests/faults/test_flow_rate.py::test_a_rate_limit_is_never_exceeded_under_faults",
    ),
    Revert(
        "no-type-rate-check",
        "dequeue leases a task whose type's own rate limit has no token (issue 19 point 6)",
        "engine/scripts/_lib.lua",
        "      ok = tokens[ttype] ~= 0\n",
        "",
        test="tests/faults/test_flow_rate.py::test_a_rate_limit_is_never_exceeded_under_faults",
    ),
]


def scratch_copy(reverts: list[Revert]) -> Path:
    where = Path(tempfile.mkdtemp(prefix="rediq-revert-"))
    archive = subprocess.run(["git", "archive", "HEAD"], cwd=ROOT, check=True, capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(where)], input=archive, check=True)
    for revert in reverts:
        path = where / revert.path
        if revert.from_commit:
            old = subprocess.run(
                ["git", "show", f"{revert.from_commit}:{revert.path}"],
                cwd=ROOT,
                check=True,
                capture_output=True,
                text=True,
            ).stdout
            path.write_text(old)
        if revert.old:
            text = path.read_text()
            if revert.old not in text:
                raise SystemExit(f"{revert.name}: the text to revert is not in {revert.path} any more")
            path.write_text(text.replace(revert.old, revert.new, 1))
    return where


def run(name: str, examples: int, steps: int, randomized: bool = False) -> tuple[bool, float, str]:
    reverts = [r for r in REVERTS if r.name == name]
    copy = scratch_copy(reverts)
    env = {
        **os.environ,
        "PYTHONPATH": str(copy),
        "REDIQ_FAULTS_EXAMPLES": str(examples),
        "REDIQ_FAULTS_STEP_COUNT": str(steps),
        "REDIQ_FAULTS_RANDOM": "1" if randomized else "",
    }
    started = time.monotonic()
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-x",
            "-p",
            "no:cacheprovider",
            "-p",
            "no:logging",
            "--show-capture=no",
            reverts[0].test,
        ],
        cwd=copy,
        env=env,
        capture_output=True,
        text=True,
    )
    if proc.returncode not in (0, 1):  # 1: a test failed; anything else is a broken run
        raise SystemExit(f"{name}: pytest exited {proc.returncode}\n{proc.stdout[-3000:]}")
    # found: the harness's own check failed (not the test's time limit, nor anything else)
    found = proc.returncode == 1 and "AssertionError" in proc.stdout and "Timeout (>" not in proc.stdout
    return found, time.monotonic() - started, proc.stdout[-12000:]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("names", nargs="*")
    parser.add_argument("--examples", type=int, default=60)
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--random", action="store_true", help="fresh random examples (not the CI ones)")
    args = parser.parse_args()
    names = args.names or list(dict.fromkeys(r.name for r in REVERTS))
    with open("reverts.out", "a") as out:
        for name in names:
            found, seconds, output = run(name, args.examples, args.steps, args.random)
            why = next((x for x in output.splitlines() if "AssertionError:" in x), "").strip()
            line = f"{name}: {'FOUND' if found else 'not found'} in {seconds:.0f} s {why}"
            print(line, flush=True)
            out.write(f"==== {line}\n{output}\n")
            out.flush()


if __name__ == "__main__":
    main()
