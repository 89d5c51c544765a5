"""An example of the fault machine replays the same interleaving: run twice, the same
Hypothesis examples send the same requests, in the same order, over the same wires (the loop
runs on virtual time, one request at a time: ``vtime.py``, ``wire.Line``)."""

from __future__ import annotations

from hypothesis import HealthCheck, Phase, settings
from hypothesis.stateful import run_state_machine_as_test

from tests.faults.machine import FaultMachine, machine_for

EXAMPLES = 4


def record(url: str) -> list[tuple[list[str], list[str]]]:
    runs: list[tuple[list[str], list[str]]] = []

    class Recorded(machine_for(url)):  # type: ignore[misc]
        def teardown(self) -> None:
            try:
                super().teardown()
            finally:
                # (whether the function library is checked or loaded depends on what this
                # process did before, not on the example)
                sent = [r for r in self.line.sent if r.split()[1] not in ("FUNCTION", "SCRIPT")]
                runs.append((list(self.trace), sent))

    Recorded.__name__ = "Recorded"
    run_state_machine_as_test(
        Recorded,
        settings=settings(
            max_examples=EXAMPLES,
            stateful_step_count=25,
            deadline=None,
            derandomize=True,
            database=None,
            suppress_health_check=list(HealthCheck),
            phases=[Phase.generate],
        ),
    )
    return runs


def test_the_same_example_sends_the_same_requests_in_the_same_order(redis_url: str) -> None:
    first, second = record(redis_url), record(redis_url)
    assert len(first) == len(second) >= EXAMPLES
    print([len(sent) for _, sent in first])
    assert sum(len(sent) for _, sent in first) > 50 * EXAMPLES  # (the examples did something)
    for n, ((steps, sent), (steps2, sent2)) in enumerate(zip(first, second, strict=True)):
        assert steps == steps2, f"example {n}: Hypothesis drew other steps"
        differ = next((i for i, (a, b) in enumerate(zip(sent, sent2, strict=False)) if a != b), None)
        assert sent == sent2, (
            f"example {n} ({len(sent)} and {len(sent2)} requests) first differs at request "
            f"{differ}: {sent[differ] if differ is not None else ''!r} / "
            f"{sent2[differ] if differ is not None else ''!r}"
        )


__all__ = ["FaultMachine"]
