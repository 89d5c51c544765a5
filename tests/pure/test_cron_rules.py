"""Cron expressions that can never fire are refused (E009, naming the day-of-month fix); rare
but real dates are accepted."""

from __future__ import annotations

import pytest

from engine import scheduler
from engine.errors import InvalidCron
from engine.registry import Registry


@pytest.mark.parametrize("expression", ["0 0 31 2 *", "0 0 30 2 *", "0 12 31 4 *", "0 0 31 11 *"])
def test_an_expression_that_never_fires_is_refused(expression: str) -> None:
    with pytest.raises(InvalidCron) as info:
        scheduler.validate_cron(expression)
    assert str(info.value).startswith("E009: ") and "never fires" in str(info.value)
    assert info.value.fix and "day-of-month" in info.value.fix
    with pytest.raises(InvalidCron):
        Registry().cron("x", expression, "t")


def test_rare_but_real_dates_are_accepted() -> None:
    scheduler.validate_cron("0 0 29 2 *")  # every leap year
    scheduler.validate_cron("0 0 31 * *")
