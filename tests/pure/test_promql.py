"""The test-side PromQL subset (tests/promql.py) agrees with Prometheus on canned scrapes, and
refuses what it does not understand instead of answering wrongly."""

from __future__ import annotations

import math

import pytest

from tests.promql import Evaluator, PromQLUnsupported, Scrape

BEFORE = """\
# TYPE d histogram
d_bucket{q="a",le="1.0"} 0
d_bucket{q="a",le="5.0"} 0
d_bucket{q="a",le="10.0"} 0
d_bucket{q="a",le="+Inf"} 0
d_count{q="a"} 0
d_sum{q="a"} 0
# TYPE e counter
e_total{q="a",w="1"} 10
e_total{q="a",w="2"} 5
# TYPE g gauge
g{q="a"} 7
g{q="b"} 2000
"""
NOW = BEFORE.replace('le="1.0"} 0', 'le="1.0"} 90').replace('le="5.0"} 0', 'le="5.0"} 98')
NOW = NOW.replace('le="10.0"} 0', 'le="10.0"} 100').replace('le="+Inf"} 0', 'le="+Inf"} 100')
NOW = NOW.replace('w="1"} 10', 'w="1"} 40').replace('w="2"} 5', 'w="2"} 2')  # worker 2 restarted


def test_rate_increase_quantile_and_comparison() -> None:
    ev = Evaluator(Scrape.parse(NOW, 60.0), Scrape.parse(BEFORE, 0.0))
    a = frozenset({("q", "a")})
    assert ev.eval("sum by (q) (increase(e_total[5m]))") == {a: 32.0}  # 30 + 2 after a reset
    assert ev.eval("sum by (q) (rate(e_total[5m])) * 60 > 10") == {a: 32.0}
    # rank 99 of 100 lies in (5, 10], holding observations 99 and 100: 5 + 5 * (99 - 98) / 2
    p99 = ev.eval("histogram_quantile(0.99, sum by (q, le) (rate(d_bucket[5m])))")
    assert p99 == {a: pytest.approx(7.5)}
    assert ev.eval("max by (q) (g) > 1000") == {frozenset({("q", "b")}): 2000.0}
    assert ev.eval('g{q="a"}') == {frozenset({("q", "a")}): 7.0}


def test_empty_histogram_is_nan_and_does_not_fire() -> None:
    ev = Evaluator(Scrape.parse(BEFORE, 60.0), Scrape.parse(BEFORE, 0.0))
    (value,) = ev.eval("histogram_quantile(0.99, sum by (q, le) (rate(d_bucket[5m])))").values()
    assert math.isnan(value)
    assert ev.eval("histogram_quantile(0.99, sum by (q, le) (rate(d_bucket[5m]))) > 5") == {}


@pytest.mark.parametrize("expr", ['g{q=~"a"}', "avg(g)", "g offset 5m", "rate(e_total[5m])"])
def test_outside_the_subset_is_refused(expr: str) -> None:
    with pytest.raises(PromQLUnsupported):
        Evaluator(Scrape.parse(BEFORE, 0.0)).eval(expr)
