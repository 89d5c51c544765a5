"""testkit_advance.lua: scheduled and retrying tasks due within a horizon come due now."""

from __future__ import annotations

from engine import testing
from tests.lua.harness import RECENT, SETTINGS, Case, cases, first_call, run_case

TABLE = cases(
    *[
        Case(
            f"{state}, due within the horizon: due now",
            before={"a": {"state": state, "due": "now+30000"}},
            reply=1,
            after={"a": {"state": state, "due": RECENT}},
            scores_after={(state, "a"): RECENT},
        )
        for state in ("scheduled", "retry")
    ],
    Case(
        "due beyond the horizon: unchanged",
        before={"a": {"state": "scheduled", "due": "now+120000"}},
        reply=0,
        after={"a": {"due": "now+120000"}},
        scores_after={("scheduled", "a"): "now+120000"},
    ),
    Case(
        "already due: not counted, unchanged",
        before={"a": {"state": "scheduled", "due": "now-5000"}},
        reply=0,
        after={"a": {"due": "now-5000"}},
        scores_after={("scheduled", "a"): "now-5000"},
    ),
    Case(
        "pending tasks are not touched",
        before={"a": {"state": "pending", "due": "now+30000"}},
        places={"a": ("pending",)},
        reply=0,
        after={"a": {"due": "now+30000"}},
    ),
    Case(
        "both sets, counted together",
        before={
            "a": {"state": "scheduled", "due": "now+10000"},
            "b": {"state": "retry", "due": "now+20000"},
            "c": {"state": "retry", "due": "now+90000"},
        },
        reply=2,
        after={"a": {"due": RECENT}, "b": {"due": RECENT}, "c": {"due": "now+90000"}},
    ),
)


@TABLE
def test_testkit_advance(redis_url: str, case: Case) -> None:
    run_case(redis_url, case, first_call(testing.advance(SETTINGS, ["q"], 60.0)))
