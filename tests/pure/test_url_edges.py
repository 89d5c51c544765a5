"""URL parsing to the letter: every field of the parsed target, every error message whole
(the URL in it masked, never another), the edges of ports, databases, options and passwords.
Written against mutation testing (docs/testing.md): each case pins a condition of
``engine/connection.py`` that the coarser tests in test_urls.py let change unseen."""

from __future__ import annotations

import pytest

from engine.connection import RedisTarget, _flag, mask_url, parse_url
from engine.errors import InvalidUrl

TLS_KNOWN = "ssl_ca_certs, ssl_certfile, ssl_keyfile, ssl_cert_reqs, ssl_check_hostname"
SCHEMES = "redis, rediss, unix, redis+sentinel, rediss+sentinel, redis+cluster, rediss+cluster"


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("redis://h", RedisTarget("redis://h", "standalone", (("h", 6379),))),
        ("redis://h:65535/15", RedisTarget("redis://h:65535/15", "standalone", (("h", 65535),), db=15)),
        ("redis://h:1/", RedisTarget("redis://h:1/", "standalone", (("h", 1),))),
        (
            "redis://alice@h",
            RedisTarget("redis://alice@h", "standalone", (("h", 6379),), username="alice", password=None),
        ),
        (
            "redis://:pw@h",
            RedisTarget("redis://:pw@h", "standalone", (("h", 6379),), username=None, password="pw"),
        ),
        (
            "redis://u:@h",
            RedisTarget("redis://u:@h", "standalone", (("h", 6379),), username="u", password=""),
        ),
        # an unencoded '@' in the password: the host follows the last '@'
        (
            "redis://u:a@b@h:2",
            RedisTarget("redis://u:a@b@h:2", "standalone", (("h", 2),), username="u", password="a@b"),
        ),
        ("redis://[::1]", RedisTarget("redis://[::1]", "standalone", (("::1", 6379),))),
        (
            "redis://[fe80::1]:7/1",
            RedisTarget("redis://[fe80::1]:7/1", "standalone", (("fe80::1", 7),), db=1),
        ),
        (
            "redis+cluster://a:1,,b:2,",
            RedisTarget("redis+cluster://a:1,,b:2,", "cluster", (("a", 1), ("b", 2))),
        ),
        (
            "redis+sentinel://s/my%20svc",
            RedisTarget("redis+sentinel://s/my%20svc", "sentinel", (("s", 26379),), service="my svc"),
        ),
        (
            "redis+sentinel://u:pw@s:1/svc/2",
            RedisTarget("redis+sentinel://u:pw@s:1/svc/2", "sentinel", (("s", 1),), "svc", 2, "u", "pw"),
        ),
        (
            "rediss+cluster://u:pw@n:1/0/?ssl_cert_reqs=none",
            RedisTarget(
                "rediss+cluster://u:pw@n:1/0/?ssl_cert_reqs=none",
                "cluster",
                (("n", 1),),
                username="u",
                password="pw",
                tls=True,
                options={"ssl_cert_reqs": "none"},
            ),
        ),
        ("redis://h/2/", RedisTarget("redis://h/2/", "standalone", (("h", 6379),), db=2)),
        ("unix:///s.sock", RedisTarget("unix:///s.sock", "standalone", unix_path="/s.sock")),
        # '://' inside the path: the scheme is before the first one
        (
            "unix:///tmp/a://b.sock",
            RedisTarget("unix:///tmp/a://b.sock", "standalone", unix_path="/tmp/a://b.sock"),
        ),
        (
            "unix://u:pw@/s.sock?db=2",
            RedisTarget(
                "unix://u:pw@/s.sock?db=2",
                "standalone",
                db=2,
                username="u",
                password="pw",
                unix_path="/s.sock",
            ),
        ),
        (
            "rediss://h/0?ssl_cert_reqs=none",
            RedisTarget(
                "rediss://h/0?ssl_cert_reqs=none",
                "standalone",
                (("h", 6379),),
                tls=True,
                options={"ssl_cert_reqs": "none"},
            ),
        ),
    ],
)
def test_every_field_of_the_target(url: str, expected: RedisTarget) -> None:
    target = parse_url(url)
    assert target == expected
    assert (target.username, target.password, target.options) == (
        expected.username,
        expected.password,
        expected.options,
    )


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("redis://h:abc/0", "bad port 'abc' in Redis URL 'redis://h:abc/0'"),
        ("redis://h:0/0", "port 0 out of range 1..65535 in Redis URL 'redis://h:0/0'"),
        ("redis://h:65536", "port 65536 out of range 1..65535 in Redis URL 'redis://h:65536'"),
        ("redis://:6379/0", "no host before port 6379 in Redis URL 'redis://:6379/0'"),
        ("redis:///0", "no host in Redis URL 'redis:///0'"),
        ("redis://,/0", "no host in Redis URL 'redis://,/0'"),
        (
            "redis+sentinel://s1:26379",
            "sentinel URL needs a service name: 'redis+sentinel://s1:26379' (…/mymaster)",
        ),
        (
            "redis+sentinel://s1/svc/1/extra",
            "sentinel URL path must be /service[/db]: 'redis+sentinel://s1/svc/1/extra'",
        ),
        ("http://h:6379", f"unknown scheme 'http' in Redis URL 'http://h:6379' (use {SCHEMES})"),
        ("localhost:6379", "not a Redis URL: 'localhost:6379'"),
        ("redis://h/16", "database number must be 0..15, got 16 in 'redis://h/16'"),
        ("redis://h/x", "bad database number 'x' in Redis URL 'redis://h/x'"),
        (
            "redis+cluster://n:7000/2",
            "Redis Cluster has only database 0, got /2 in 'redis+cluster://n:7000/2'",
        ),
        (
            "redis://a:1,b:2/0",
            "several hosts in a plain Redis URL 'redis://a:1,b:2/0': use redis+cluster:// or redis+sentinel://",
        ),
        ("unix://", "unix URL without an absolute socket path: 'unix://' (unix:///path.sock)"),
        ("unix:///", "unix URL without an absolute socket path: 'unix:///' (unix:///path.sock)"),
        (
            "unix://relative.sock",
            "unix URL without an absolute socket path: 'unix://relative.sock' (unix:///path.sock)",
        ),
        ("unix:///s.sock?db=99", "database number must be 0..15, got 99 in 'unix:///s.sock?db=99'"),
        ("unix:///s.sock?db=", "bad database number '' in Redis URL 'unix:///s.sock?db='"),
        (
            "redis://h/0?ssl_ca_certs=/x",
            "option 'ssl_ca_certs' needs a TLS URL (rediss://…): 'redis://h/0?ssl_ca_certs=/x'",
        ),
        (
            "unix:///s.sock?ssl_ca_certs=/x",
            "option 'ssl_ca_certs' needs a TLS URL (rediss://…): 'unix:///s.sock?ssl_ca_certs=/x'",
        ),
        (
            "rediss://h/0?ssl_certfile=/x",
            "ssl_certfile and ssl_keyfile go together in Redis URL 'rediss://h/0?ssl_certfile=/x'",
        ),
        (
            "rediss://h/0?ssl_keyfile=/x",
            "ssl_certfile and ssl_keyfile go together in Redis URL 'rediss://h/0?ssl_keyfile=/x'",
        ),
        (
            "rediss://h/0?ssl_cert_reqs=maybe",
            "ssl_cert_reqs must be one of none, optional, required, got 'maybe'",
        ),
        (
            "redis://h/0?timeout=3",
            "unknown option 'timeout' in Redis URL 'redis://h/0?timeout=3' (this scheme takes none)",
        ),
        (
            "rediss://h/0?timeout=3",
            f"unknown option 'timeout' in Redis URL 'rediss://h/0?timeout=3' (known: {TLS_KNOWN})",
        ),
        (
            "unix:///s.sock?timeout=3",
            "unknown option 'timeout' in Redis URL 'unix:///s.sock?timeout=3' (known: db)",
        ),
        ("redis://h /0", "whitespace in Redis URL 'redis://h /0'"),
        ("redis://h/0\n", "whitespace in Redis URL 'redis://h/0'"),
        *[
            (
                f"rediss://h/0?{name}=",
                f"option '{name}' needs a file path in Redis URL 'rediss://h/0?{name}='",
            )
            for name in ("ssl_ca_certs", "ssl_certfile", "ssl_keyfile")
        ],
        ("redis://u:pw@h:abc/0", "bad port 'abc' in Redis URL 'redis://u:***@h:abc/0'"),
        ("redis://u:pw@h:0", "port 0 out of range 1..65535 in Redis URL 'redis://u:***@h:0'"),
        ("redis://u:pw@:1", "no host before port 1 in Redis URL 'redis://u:***@:1'"),
        ("redis://u:pw@/0", "no host in Redis URL 'redis://u:***@/0'"),
        (
            "redis://u:pw@h/0?ssl_ca_certs=/x",
            "option 'ssl_ca_certs' needs a TLS URL (rediss://…): 'redis://u:***@h/0?ssl_ca_certs=/x'",
        ),
        (
            "rediss://u:pw@h/0?ssl_keyfile=",
            "option 'ssl_keyfile' needs a file path in Redis URL 'rediss://u:***@h/0?ssl_keyfile='",
        ),
        (
            "rediss://u:pw@h/0?ssl_certfile=/c",
            "ssl_certfile and ssl_keyfile go together in Redis URL 'rediss://u:***@h/0?ssl_certfile=/c'",
        ),
        ("redis://u:pw@h/x", "bad database number 'x' in Redis URL 'redis://u:***@h/x'"),
        ("redis://u:pw@h/99", "database number must be 0..15, got 99 in 'redis://u:***@h/99'"),
        (" redis://u:pw@h/0", "whitespace in Redis URL 'redis://u:***@h/0'"),
        ("redis://h/0\t", "whitespace in Redis URL 'redis://h/0'"),
        ("redis+sentinel://u:pw@s:x/svc", "bad port 'x' in Redis URL 'redis+sentinel://u:***@s:x/svc'"),
        (
            "redis+sentinel://u:pw@s/svc/x",
            "bad database number 'x' in Redis URL 'redis+sentinel://u:***@s/svc/x'",
        ),
        (
            "redis+sentinel://u:pw@s/svc?ssl_ca_certs=/x",
            "option 'ssl_ca_certs' needs a TLS URL (rediss://…): 'redis+sentinel://u:***@s/svc?ssl_ca_certs=/x'",
        ),
    ],
)
def test_every_error_message_whole(url: str, message: str) -> None:
    with pytest.raises(InvalidUrl) as caught:
        parse_url(url)
    assert str(caught.value).startswith(f"E007: {message}. "), str(caught.value)


@pytest.mark.parametrize(
    ("url", "masked"),
    [
        ("h:1", "h:1"),
        ("u:pw@h:1", "u:***@h:1"),  # no scheme at all
        ("redis://u:pw@h:1/0?a=b#c", "redis://u:***@h:1/0?a=b#c"),
        ("redis://u:pw@h:1?x=1", "redis://u:***@h:1?x=1"),
        ("redis://u:pw@h#frag", "redis://u:***@h#frag"),
        # a '/' or '?' in the password comes before the last '@': still the password
        ("redis://u:p/w?x@h:1/0", "redis://u:***@h:1/0"),
        (
            "redis://h:1/0?password=s&sentinel_password=t#f",
            "redis://h:1/0?password=***&sentinel_password=***#f",
        ),
        ("redis://h/a://b", "redis://h/a://b"),
        ("unix://u:pw@/s.sock", "unix://u:***@/s.sock"),
    ],
)
def test_mask_url(url: str, masked: str) -> None:
    assert mask_url(url) == masked


@pytest.mark.parametrize(
    ("text", "on"),
    [("1", True), ("true", True), ("TRUE", True), (" Yes ", True), ("on", True), ("ON", True)]
    + [("0", False), ("false", False), ("no", False), ("off", False), ("", False), ("2", False)],
)
def test_flags(text: str, on: bool) -> None:
    assert _flag(text) is on
