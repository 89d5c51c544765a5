"""Just enough PromQL to evaluate the shipped alert rules and dashboard queries against real
scrapes of a worker: selectors with ``=`` matchers, ``sum``/``max``/``min by (…)``, ``rate`` and
``increase`` over two scrapes, ``histogram_quantile``, ``*``/``/`` by a number and a final
comparison with a number. Anything else is a ``PromQLUnsupported`` error, so a rule written
outside the subset fails its test instead of being skipped.

Semantics follow Prometheus where the subset reaches: a range function needs the series in both
scrapes; ``increase`` is the difference (``rate`` times the interval) with counter resets
handled; aggregation drops the metric name; a comparison filters.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from prometheus_client.parser import text_string_to_metric_families

Labels = frozenset[tuple[str, str]]
Vector = dict[Labels, float]
Series = dict[tuple[str, Labels], float]


class PromQLUnsupported(ValueError):
    pass


@dataclass(frozen=True)
class Scrape:
    at: float
    series: Series

    @classmethod
    def parse(cls, text: str, at: float) -> Scrape:
        series: Series = {}
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                series[(sample.name, frozenset(sample.labels.items()))] = float(sample.value)
        return cls(at, series)


TOKEN = re.compile(
    r"\s*(?:(?P<number>\d+(?:\.\d+)?(?:e[+-]?\d+)?)(?![a-zA-Z_])|(?P<duration>\d+[smhd])"
    r"|(?P<name>[a-zA-Z_:][a-zA-Z0-9_:]*)|(?P<string>\"[^\"]*\")|(?P<op>>=|<=|==|!=|[(){}\[\],=*/><]))"
)


def tokens(expr: str) -> list[str]:
    out, pos = [], 0
    expr = expr.strip()
    while pos < len(expr):
        found = TOKEN.match(expr, pos)
        if not found or found.end() == pos:
            raise PromQLUnsupported(f"cannot read {expr[pos:]!r}")
        out.append(found.group(0).strip())
        pos = found.end()
    return out


class Evaluator:
    """``Evaluator(now, before).eval(expr)``: ``before`` is needed by ``rate``/``increase``."""

    def __init__(self, now: Scrape, before: Scrape | None = None) -> None:
        self.now = now
        self.before = before

    def eval(self, expr: str) -> Vector:
        self._tokens = tokens(expr)
        self._i = 0
        result = self._comparison()
        if self._i != len(self._tokens):
            raise PromQLUnsupported(f"unexpected {self._tokens[self._i]!r} in {expr!r}")
        return result

    # grammar ------------------------------------------------------------------------------

    def _peek(self) -> str | None:
        return self._tokens[self._i] if self._i < len(self._tokens) else None

    def _take(self, expected: str | None = None) -> str:
        token = self._peek()
        if token is None or (expected is not None and token != expected):
            raise PromQLUnsupported(f"expected {expected or 'more'}, found {token!r}")
        self._i += 1
        return token

    def _number(self) -> float:
        return float(self._take())

    def _comparison(self) -> Vector:
        left = self._arithmetic()
        if self._peek() in (">", "<", ">=", "<="):
            op, bound = self._take(), self._number()
            keep: Callable[[float], bool] = {
                ">": lambda v: v > bound,
                "<": lambda v: v < bound,
                ">=": lambda v: v >= bound,
                "<=": lambda v: v <= bound,
            }[op]
            return {labels: v for labels, v in left.items() if keep(v)}
        return left

    def _arithmetic(self) -> Vector:
        left = self._term()
        while self._peek() in ("*", "/"):
            op, factor = self._take(), self._number()
            left = {k: (v * factor if op == "*" else v / factor) for k, v in left.items()}
        return left

    def _term(self) -> Vector:
        token = self._peek()
        if token == "(":
            self._take("(")
            inner = self._comparison()
            self._take(")")
            return inner
        if token in ("sum", "max", "min"):
            return self._aggregation()
        if token in ("rate", "increase"):
            return self._range_function()
        if token == "histogram_quantile":
            return self._histogram_quantile()
        return self._instant(self.now)

    def _aggregation(self) -> Vector:
        op = self._take()
        by: tuple[str, ...] = ()
        if self._peek() == "by":
            self._take("by")
            by = self._label_list()
        self._take("(")
        inner = self._comparison()
        self._take(")")
        groups: dict[Labels, list[float]] = {}
        for labels, v in inner.items():
            key = frozenset((k, val) for k, val in labels if k in by)
            groups.setdefault(key, []).append(v)
        reducers: dict[str, Callable[[list[float]], float]] = {"sum": sum, "max": max, "min": min}
        combine = reducers[op]
        return {key: float(combine(values)) for key, values in groups.items()}

    def _label_list(self) -> tuple[str, ...]:
        self._take("(")
        names = [self._take()]
        while self._peek() == ",":
            self._take(",")
            names.append(self._take())
        self._take(")")
        return tuple(names)

    def _range_function(self) -> Vector:
        fn = self._take()
        self._take("(")
        if self.before is None:
            raise PromQLUnsupported(f"{fn} needs two scrapes")
        start = self._i
        now = self._instant(self.now)
        self._i = start
        before = self._instant(self.before)
        self._take("[")
        self._take()  # the window: the interval between the two scrapes stands in for it
        self._take("]")
        self._take(")")
        interval = self.now.at - self.before.at
        out: Vector = {}
        for labels, v in now.items():
            if labels not in before:  # Prometheus needs two samples of a series
                continue
            delta = v - before[labels] if v >= before[labels] else v  # a counter reset
            out[labels] = delta if fn == "increase" else delta / interval
        return out

    def _histogram_quantile(self) -> Vector:
        self._take("histogram_quantile")
        self._take("(")
        phi = self._number()
        self._take(",")
        buckets = self._comparison()
        self._take(")")
        by_series: dict[Labels, list[tuple[float, float]]] = {}
        for labels, count in buckets.items():
            le = dict(labels).get("le")
            if le is None:
                continue
            rest = frozenset((k, v) for k, v in labels if k != "le")
            by_series.setdefault(rest, []).append((float(le), count))
        return {rest: _quantile(phi, sorted(points)) for rest, points in by_series.items()}

    def _instant(self, scrape: Scrape) -> Vector:
        name = self._take()
        if not re.fullmatch(r"[a-zA-Z_:][a-zA-Z0-9_:]*", name):
            raise PromQLUnsupported(f"expected a metric name, found {name!r}")
        matchers: dict[str, str] = {}
        if self._peek() == "{":
            self._take("{")
            while self._peek() != "}":
                label = self._take()
                self._take("=")
                matchers[label] = self._take().strip('"')
                if self._peek() == ",":
                    self._take(",")
            self._take("}")
        return {
            labels: v
            for (series_name, labels), v in scrape.series.items()
            if series_name == name and all(dict(labels).get(k) == want for k, want in matchers.items())
        }


def _quantile(phi: float, buckets: list[tuple[float, float]]) -> float:
    """Prometheus' histogram_quantile: linear interpolation inside the bucket holding the rank."""
    if not buckets or buckets[-1][0] != math.inf:
        return math.nan
    total = buckets[-1][1]
    if total == 0:
        return math.nan
    rank = phi * total
    lower_bound, lower_count = 0.0, 0.0
    for bound, count in buckets:
        if count >= rank:
            if bound == math.inf:
                return lower_bound  # the highest finite bound, as Prometheus answers
            return lower_bound + (bound - lower_bound) * (rank - lower_count) / (count - lower_count)
        lower_bound, lower_count = bound, count
    return math.nan


def rule_expressions(rules: dict[str, object]) -> Iterator[tuple[str, str]]:
    """(alert name, expression) of every rule in a Prometheus rule file's parsed YAML."""
    for group in rules["groups"]:  # type: ignore[attr-defined]
        for rule in group["rules"]:
            yield rule["alert"], rule["expr"]
