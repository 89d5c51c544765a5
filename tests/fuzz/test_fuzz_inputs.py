"""Fuzz every input a user types or a program passes: the task model (``build_task`` and what
enqueue does with it), Redis URLs and cron expressions. Only the documented one-line errors
may escape."""

from __future__ import annotations

import string
from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import example, given
from hypothesis import strategies as st

from engine import ops
from engine.client import build_task
from engine.connection import mask_url, parse_url
from engine.errors import InvalidCron, InvalidTask, InvalidUrl, PayloadError
from engine.ops import Settings
from engine.scheduler import validate_cron

json_leaf = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20)
junk_leaf = (
    json_leaf
    | st.binary(max_size=10)
    | st.sets(st.integers(), max_size=3)
    | st.datetimes()
    | st.just(object())
    | st.complex_numbers()
)
payloads = st.recursive(
    junk_leaf,
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(st.text(max_size=5) | st.integers(), children, max_size=4)
    ),
    max_leaves=12,
)
any_value = st.one_of(
    json_leaf,
    junk_leaf,
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.datetimes(timezones=st.none() | st.just(UTC)),
    st.timedeltas(),
    st.lists(st.text(max_size=10), max_size=3),
    st.tuples(st.text(max_size=10)),
    st.dictionaries(st.text(max_size=5), st.text(max_size=5) | st.integers(), max_size=3),
)
OPTION_NAMES = [
    "queue",
    "id",
    "priority",
    "max_retry",
    "timeout",
    "delay",
    "eta",
    "unique_key",
    "unique_ttl",
    "metadata",
    "bogus_option",
]
options = st.dictionaries(st.sampled_from(OPTION_NAMES), any_value, max_size=6)
type_names = st.text(max_size=140) | st.sampled_from(["order:payment", "email", "a" * 129, " ", ""])


@given(task_type=type_names | any_value, payload=payloads, opts=options)
@example(task_type="t", payload=None, opts={"delay": float("inf")})
@example(task_type="t", payload=None, opts={"delay": float("nan")})
@example(task_type="t", payload=None, opts={"unique_ttl": float("inf")})
@example(task_type="t", payload=None, opts={"eta": datetime.max.replace(tzinfo=UTC)})
@example(task_type="t", payload=None, opts={"eta": datetime.min.replace(tzinfo=UTC) + timedelta(days=1)})
@example(task_type="t", payload=float("nan"), opts={})
def test_build_task_and_enqueue_arguments_raise_only_task_errors(
    task_type: Any, payload: Any, opts: dict[str, Any]
) -> None:
    try:
        task = build_task(task_type, payload, **opts)
        ops.task_args(task, Settings(), [])  # everything enqueue derives from the task
    except (InvalidTask, PayloadError):
        pass


host = st.sampled_from(["localhost", "127.0.0.1", "[::1]", "redis.internal", "", "a:b", "h%20"]) | st.text(
    alphabet=string.ascii_letters + string.digits + ".-_[]:%@", max_size=15
)
port = st.integers(min_value=-5, max_value=70000).map(str) | st.text(max_size=6)
scheme = st.sampled_from(
    ["redis", "rediss", "unix", "redis+sentinel", "rediss+sentinel", "redis+cluster", "http", "REDIS", ""]
)


@st.composite
def urls(draw: st.DrawFn) -> str:
    userinfo = draw(
        st.sampled_from(["", "user@", ":pw@", "user:p%40ss@", "u:p:q@", "@"]) | st.text(max_size=8)
    )
    hosts = ",".join(
        f"{draw(host)}" + (f":{draw(port)}" if draw(st.booleans()) else "")
        for _ in range(draw(st.integers(0, 3)))
    )
    path = draw(st.sampled_from(["", "/", "/0", "/15", "/16", "/-1", "/x", "/mymaster", "/mymaster/3", "//"]))
    query = draw(st.sampled_from(["", "?", "?ssl_ca_certs=/x", "?ssl_check_hostname=yes&a", "?=&=="]))
    return f"{draw(scheme)}://{userinfo}{hosts}{path}{query}"


@given(url=urls() | st.text(max_size=60) | st.binary(max_size=20) | st.none() | st.integers())
@example(url="redis://[::1")
@example(url="redis://:@/")
@example(url="redis://host:99999999999999999999999/0")
@example(url="unix://")
def test_parse_url_raises_only_invalid_url(url: Any) -> None:
    try:
        target = parse_url(url)
    except InvalidUrl:
        return
    assert target.mode in ("standalone", "sentinel", "cluster")
    assert isinstance(mask_url(target.url), str)
    if target.password:
        assert target.password not in target.display or target.password in ("***", "*")


cron_token = st.sampled_from(
    [
        "*",
        "*/5",
        "0",
        "59",
        "60",
        "1-5",
        "5-1",
        "1,2,3",
        "MON",
        "jan",
        "L",
        "?",
        "#",
        "1#2",
        "*/0",
        "-1",
        "99999999999",
    ]
) | st.text(alphabet=string.digits + "*/-,LW#?", max_size=6)
zones = st.sampled_from(
    ["UTC", "Europe/Paris", "America/New_York", "Nowhere/Land", "", "../etc/passwd", "UTC\x00"]
)


@given(
    expression=st.lists(cron_token, min_size=0, max_size=7).map(" ".join) | st.text(max_size=40),
    timezone=zones | st.text(max_size=20),
)
@example(expression="* * * * * *", timezone="UTC")
@example(expression="0 0 31 2 *", timezone="UTC")
def test_validate_cron_raises_only_invalid_cron(expression: str, timezone: str) -> None:
    try:
        validate_cron(expression, timezone)
    except InvalidCron:
        pass
