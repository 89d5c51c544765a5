"""Flow control without a server: the limit's notation and validation, the bucket maths the
console and the explainer read (the same as ``rate_allowance`` in _lib.lua), and the worker
core's handling of a throttled dequeue and of a handler's ``RateLimited``, on canned replies."""

from __future__ import annotations

import pickle

import pytest

from engine.errors import InvalidLimit, RateLimited
from engine.explain import Facts, Reason, explain
from engine.flow import LimitSource, RateLimit, bucket_state, parse_limit, validated_pause
from engine.task import TaskInfo, TaskState
from engine.worker.core import Dequeue, FailureKind, Outcome, Throttle, Throttled
from engine.worker.protocol import HeldBack, HoldReason, parse_dequeue, parse_throttle
from tests.pure import test_explain
from tests.pure.test_worker_core import answer, dequeued, done, make, requests_of, runs, task


@pytest.mark.parametrize(
    ("spec", "burst", "want"),
    [
        ("50/s", None, RateLimit(50, 1000, 1)),
        ("600/m", 10, RateLimit(600, 60_000, 10)),
        ("5/10s", None, RateLimit(5, 10_000, 1)),
        ("100/250ms", None, RateLimit(100, 250, 1)),
        ("1000/h", None, RateLimit(1000, 3_600_000, 1)),
        (" 3 / 1.5s ", 2, RateLimit(3, 1500, 2)),
    ],
)
def test_limits_are_read_from_their_notation(spec: str, burst: int | None, want: RateLimit) -> None:
    assert parse_limit(spec, burst) == want


@pytest.mark.parametrize(
    ("spec", "burst"),
    [
        ("0/s", None),
        ("-5/s", None),
        ("5", None),
        ("five/s", None),
        ("5/0s", None),
        ("5/.s", None),
        ("5/x", None),
        ("", None),
        ("5/s", 0),
        ("5/s", -1),
        ("5/2d", None),
        ("2000000/s", None),
    ],
)
def test_a_limit_that_cannot_be_enforced_is_one_line_naming_the_fix(spec: str, burst: int | None) -> None:
    with pytest.raises(InvalidLimit) as raised:
        parse_limit(spec, burst)
    text = str(raised.value)
    assert text.startswith("E017: ") and "\n" not in text and ("e.g." in text or "--burst" in text)


def test_a_limit_reads_back_as_written() -> None:
    assert str(parse_limit("50/s")) == "50/s"
    assert str(parse_limit("600/m", 10)) == "600/m burst 10"
    assert str(parse_limit("5/10s")) == "5/10s"


@pytest.mark.parametrize("bad", [0, -1, 86_401, float("nan"), "5"])
def test_a_pause_out_of_range_is_refused(bad: object) -> None:
    with pytest.raises(InvalidLimit):
        validated_pause(bad)  # type: ignore[arg-type]


def test_rate_limited_survives_pickling_from_a_process_pool_child() -> None:
    back = pickle.loads(pickle.dumps(RateLimited("429 from the gateway", retry_after=2.5)))
    assert isinstance(back, RateLimited) and back.retry_after == 2.5 and str(back) == "429 from the gateway"


LIMIT = {"rate": "10", "period": "1000", "burst": "2", "src": "operator"}


@pytest.mark.parametrize(
    ("fields", "tokens", "next_ms", "paused"),
    [
        (LIMIT, 2, 0, 0),  # never used: a full bucket
        ({**LIMIT, "tat": "900"}, 2, 0, 0),  # used long ago
        ({**LIMIT, "tat": "1100"}, 1, 0, 0),
        ({**LIMIT, "tat": "1200"}, 0, 100, 0),
        ({**LIMIT, "tat": "1250.5"}, 0, 151, 0),
        ({**LIMIT, "until": "1500"}, 0, 500, 500),
        ({"until": "1500"}, 0, 500, 500),  # a pause without a limit
        ({"rate": "junk", "period": "1000"}, 0, 0, 0),
    ],
)
def test_the_bucket_as_the_script_sees_it(
    fields: dict[str, str], tokens: int, next_ms: int, paused: int
) -> None:
    state = bucket_state(fields, now_ms=1000)
    assert (state.tokens, state.next_token_ms, state.paused_ms) == (tokens, next_ms, paused)


def test_the_bucket_names_who_set_the_limit() -> None:
    assert bucket_state(LIMIT, 0).source is LimitSource.OPERATOR
    assert bucket_state({**LIMIT, "src": "code"}, 0).source is LimitSource.CODE
    assert bucket_state({**LIMIT, "src": "?"}, 0).source is None
    assert bucket_state({}, 0).limit is None


# ---------------------------------------------------------------------------------- the core


def test_a_throttled_reply_is_read_apart_from_an_empty_one() -> None:
    assert parse_throttle([[123, 40]]) == HeldBack(40, HoldReason.QUEUE_LIMIT)
    assert parse_dequeue("q", [[123, 40]]) == []
    assert parse_throttle([[123, 40, 1]]) == HeldBack(40, HoldReason.TYPE_LIMITS)
    assert parse_dequeue("q", [[123, 40, 1]]) == []
    assert parse_throttle([123]) is None
    assert parse_throttle(dequeued(task("a", reserved=False))) is None


def test_a_throttled_queue_is_not_asked_again_until_its_token_is_due() -> None:
    c = make(queues=("limited", "other"))
    first = c.next_exchange()
    assert first is not None
    effects = answer(c, first, dequeue=[[0, 40]])  # 'limited': no token for 40 ms
    assert Throttled("limited", 40) in effects
    # the round goes on to the other queue; it keeps flowing
    second = c.next_exchange()
    assert [d.queue for d in requests_of(second, Dequeue)] == ["other"]
    assert second is not None
    answer(c, second, dequeue=dequeued(task("b", reserved=False)))
    # a wake-up or an idle poll asks only the queue that is not throttled: no polling
    for wake in (c.on_work_arrived, c.on_idle_poll):
        wake()
        again = c.next_exchange()
        assert [d.queue for d in requests_of(again, Dequeue)] == ["other"]
        assert again is not None
        answer(c, again)
    c.on_token_due("limited")
    due = c.next_exchange()
    assert [d.queue for d in requests_of(due, Dequeue)] == ["limited"]


def test_a_queue_held_by_its_task_types_limits_is_asked_again_when_work_arrives() -> None:
    # only tasks of a type with no token wait: a task of another type may arrive at any time
    for wake in ("on_work_arrived", "on_idle_poll"):
        c = make(queues=("mixed",))
        first = c.next_exchange()
        assert first is not None
        assert Throttled("mixed", 60_000) in answer(c, first, dequeue=[[0, 60_000, 1]])
        assert c.next_exchange() is None  # nothing else to ask: no polling
        getattr(c, wake)()
        again = c.next_exchange()
        assert [d.queue for d in requests_of(again, Dequeue)] == ["mixed"], wake


def test_with_every_queue_throttled_nothing_is_sent() -> None:
    c = make()
    first = c.next_exchange()
    assert first is not None
    answer(c, first, dequeue=[[0, 500]])
    c.on_idle_poll()
    assert c.next_exchange() is None
    c.on_token_due("q")
    assert requests_of(c.next_exchange(), Dequeue)


def test_rate_limited_goes_back_uncharged_as_a_throttle_not_a_failure() -> None:
    c = make(concurrency=1, prefetch=0)
    first = c.next_exchange()
    assert first is not None
    assert runs(answer(c, first, dequeue=dequeued(task("a", reserved=False)))) == [("a", 1)]
    outcome = done(c, "a", Outcome.RATE_LIMITED, error="RateLimited: 429", delay_s=2.5)
    assert outcome is Outcome.RATE_LIMITED and c.counters.failed == 0
    second = c.next_exchange()
    (throttle,) = requests_of(second, Throttle)
    assert (throttle.task_id, throttle.token, throttle.pause_s) == ("a", f"{c.config.worker_id}#1", 2.5)
    # a lost reply: sent again, same request (the script refuses a second copy as stale)
    assert second is not None
    c.on_failure(second.xid, FailureKind.UNAVAILABLE, now=0.0)
    assert requests_of(c.next_exchange(), Throttle) == [throttle]


def test_a_refused_throttle_is_reported_fenced() -> None:
    c = make(concurrency=1, prefetch=0)
    first = c.next_exchange()
    assert first is not None
    answer(c, first, dequeue=dequeued(task("a", reserved=False)))
    done(c, "a", Outcome.RATE_LIMITED, error="429", delay_s=1.0)
    second = c.next_exchange()
    assert second is not None
    effects = answer(c, second, throttle="stale")
    assert any(getattr(e, "task_ids", None) == ("a",) for e in effects)


# ---------------------------------------------------------------------------------- explain


def _explained(fields: dict[str, str]) -> list[tuple[Reason, str]]:
    info = TaskInfo(id="t1", type="x", queue="payment", state=TaskState.PENDING, max_retry=2)
    facts = Facts(
        info=info,
        now_ms=1000,
        workers=(test_explain.worker("payment"),),
        position=0,
        pending_total=1,
        bucket=bucket_state(fields, 1000),
    )
    return [(c.reason, c.text) for c in explain(facts).causes]


def test_the_explainer_names_the_limit_and_the_next_token() -> None:
    causes = _explained({"rate": "50", "period": "1000", "burst": "1", "tat": "1012"})
    assert (Reason.RATE_LIMITED, "rate limit payment 50/s: next token in 12 ms") in causes


def test_the_explainer_names_a_pause_a_handler_asked_for() -> None:
    causes = _explained({"until": "1500"})
    assert causes[0][0] is Reason.RATE_LIMITED and "500 ms left" in causes[0][1]


def test_a_limit_with_tokens_to_spare_is_not_a_reason() -> None:
    causes = _explained({"rate": "50", "period": "1000", "burst": "1"})
    assert [r for r, _ in causes] == [Reason.NEXT_UP, Reason.POSITION]
