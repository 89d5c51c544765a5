"""The console's one-line limit edit (engine.limit_edit): what each line sets or removes, and
that a bad line is one E017 line naming the fix."""

from __future__ import annotations

import pytest

from engine.errors import InvalidLimit
from engine.flow import RateLimit
from engine.limit_edit import LimitEdit, LimitTarget, parse_edit


@pytest.mark.parametrize(
    ("text", "edit"),
    [
        ("50/s", LimitEdit(LimitTarget.QUEUE, None, rate=RateLimit(50, 1000, 1))),
        ("600/m burst 10", LimitEdit(LimitTarget.QUEUE, None, rate=RateLimit(600, 60_000, 10))),
        ("  5 / 10s  BURST 3 ", LimitEdit(LimitTarget.QUEUE, None, rate=RateLimit(5, 10_000, 3))),
        ("off", LimitEdit(LimitTarget.QUEUE, None)),
        ("OFF", LimitEdit(LimitTarget.QUEUE, None)),
        (
            "type payment:charge 5/s",
            LimitEdit(LimitTarget.TYPE, "payment:charge", rate=RateLimit(5, 1000, 1)),
        ),
        ("type charge 5/s burst 2", LimitEdit(LimitTarget.TYPE, "charge", rate=RateLimit(5, 1000, 2))),
        ("Type charge off", LimitEdit(LimitTarget.TYPE, "charge")),
        ("group customer:42 2", LimitEdit(LimitTarget.GROUP, "customer:42", group_limit=2)),
        ("group * 3", LimitEdit(LimitTarget.GROUP, "*", group_limit=3)),
        ("group customer:42 off", LimitEdit(LimitTarget.GROUP, "customer:42")),
    ],
)
def test_each_line_names_its_target_and_limit(text: str, edit: LimitEdit) -> None:
    assert parse_edit(text) == edit


@pytest.mark.parametrize(
    "text",
    [
        "",
        "   ",
        "0/s",
        "50",
        "fast",
        "50/s burst",
        "50/s burst x",
        "type charge",
        "type 5/s",
        "group g",
        "group g 0",
        "group g 2.5",
        "group g 5/s",
        "group g{x} 2",
        "type charge 5/s 6/s",
    ],
)
def test_a_bad_line_is_one_e017_line_naming_the_fix(text: str) -> None:
    with pytest.raises(InvalidLimit) as caught:
        parse_edit(text)
    message = str(caught.value)
    assert message.startswith("E017: ") and "\n" not in message


def test_what_an_edit_did_is_said_plainly() -> None:
    assert parse_edit("50/s burst 5").describe("payment") == "Rate limit of queue payment: 50/s burst 5"
    assert parse_edit("off").describe("payment") == "Removed the rate limit of queue payment"
    assert (
        parse_edit("type charge 1/m").describe("payment") == "Rate limit of type charge in queue payment: 1/m"
    )
    assert parse_edit("type charge off").describe("q") == "Removed the rate limit of type charge in queue q"
    assert parse_edit("group c42 2").describe("q") == "Group limit of group c42 in queue q: 2 at once"
    assert parse_edit("group c42 off").describe("q") == "Removed the group limit of group c42 in queue q"
    assert parse_edit("group * 3").describe("q") == "Group limit of group * in queue q: 3 at once"
