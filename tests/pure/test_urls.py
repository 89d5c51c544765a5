"""Every URL scheme, TLS options, and one-line errors with the password masked."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.client import Client
from engine.connection import mask_url, parse_url
from engine.errors import InvalidUrl

SECRET = "p%40ss:w0rd"  # encoded '@' and a ':' inside the password


@pytest.mark.parametrize(
    ("url", "mode", "hosts", "db", "service"),
    [
        ("redis://localhost", "standalone", (("localhost", 6379),), 0, ""),
        ("redis://127.0.0.1:6380/3", "standalone", (("127.0.0.1", 6380),), 3, ""),
        ("rediss://cache.example:6390/0", "standalone", (("cache.example", 6390),), 0, ""),
        ("redis://[::1]:7000/2", "standalone", (("::1", 7000),), 2, ""),
        (
            "redis+sentinel://s1:26379,s2:26380/mymaster",
            "sentinel",
            (("s1", 26379), ("s2", 26380)),
            0,
            "mymaster",
        ),
        ("redis+sentinel://s1/mymaster/4", "sentinel", (("s1", 26379),), 4, "mymaster"),
        ("rediss+sentinel://s1:5000/svc", "sentinel", (("s1", 5000),), 0, "svc"),
        ("redis+cluster://n1:7000,n2:7001", "cluster", (("n1", 7000), ("n2", 7001)), 0, ""),
        ("rediss+cluster://n1:7000/0", "cluster", (("n1", 7000),), 0, ""),
        ("REDIS://h:1/1", "standalone", (("h", 1),), 1, ""),
    ],
)
def test_schemes(url: str, mode: str, hosts: tuple[tuple[str, int], ...], db: int, service: str) -> None:
    target = parse_url(url)
    assert (target.mode, target.hosts, target.db, target.service) == (mode, hosts, db, service)
    assert target.tls == url.lower().startswith("rediss")


def test_unix_socket_url() -> None:
    target = parse_url("unix:///run/redis/redis.sock?db=5")
    assert (target.mode, target.unix_path, target.db, target.hosts) == (
        "standalone",
        "/run/redis/redis.sock",
        5,
        (),
    )


def test_credentials_are_decoded_and_never_shown() -> None:
    url = f"redis://alice:{SECRET}@h:6379/0"
    target = parse_url(url)
    assert (target.username, target.password) == ("alice", "p@ss:w0rd")
    for text in (target.display, repr(target), str(target)):
        assert "w0rd" not in text and "p%40ss" not in text
    assert target.display == "redis://alice:***@h:6379/0"


def test_tls_options_reach_the_client(tmp_path: Path) -> None:
    for name in ("ca.pem", "c.pem", "c.key"):
        (tmp_path / name).write_text("x")
    url = (
        f"rediss://h:6390/0?ssl_ca_certs={tmp_path}/ca.pem&ssl_certfile={tmp_path}/c.pem"
        f"&ssl_keyfile={tmp_path}/c.key&ssl_cert_reqs=required&ssl_check_hostname=false"
    )
    kwargs = parse_url(url).sync().connection_pool.connection_kwargs
    assert kwargs["ssl_ca_certs"] == f"{tmp_path}/ca.pem"
    assert kwargs["ssl_certfile"] == f"{tmp_path}/c.pem" and kwargs["ssl_keyfile"] == f"{tmp_path}/c.key"
    assert kwargs["ssl_check_hostname"] is False  # a real bool, not the truthy string "false"
    assert kwargs["ssl_cert_reqs"] == "required"


@pytest.mark.parametrize(
    ("url", "fragment"),
    [
        ("redis://h:abc/0", "bad port 'abc'"),
        ("redis://h:0/0", "port 0 out of range"),
        ("redis://h:70000", "port 70000 out of range"),
        ("redis://:6379/0", "no host before port 6379"),
        ("redis:///0", "no host"),
        ("redis+sentinel://s1:26379", "needs a service name"),
        ("redis+sentinel://s1:26379/", "needs a service name"),
        ("redis+sentinel://s1/svc/1/extra", "/service[/db]"),
        ("http://h:6379", "unknown scheme 'http'"),
        ("localhost:6379", "not a Redis URL"),
        ("redis://h/16", "must be 0..15, got 16"),
        ("redis://h/-1", "must be 0..15, got -1"),
        ("redis://h/x", "bad database number 'x'"),
        ("redis+sentinel://s/svc/99", "must be 0..15, got 99"),
        ("redis+cluster://n:7000/2", "only database 0"),
        ("redis://a:1,b:2/0", "several hosts"),
        ("unix://", "absolute socket path"),
        ("redis://h/0?ssl_ca_certs=/x", "needs a TLS URL"),
        ("rediss://h/0?ssl_certfile=/x", "go together"),
        ("rediss://h/0?ssl_cert_reqs=maybe", "ssl_cert_reqs must be one of"),
        ("redis://h/0?timeout=3", "unknown option 'timeout'"),
        ("redis://h /0", "whitespace"),
    ],
)
def test_malformed_urls_fail_in_one_line(url: str, fragment: str) -> None:
    with pytest.raises(InvalidUrl) as caught:
        parse_url(url)
    message = str(caught.value)
    assert fragment in message, message
    assert "\n" not in message and message.startswith("E007: ")


@pytest.mark.parametrize(
    "url",
    [
        f"redis://u:{SECRET}@h:abc/0",
        f"redis+sentinel://u:{SECRET}@s1:26379",
        f"redis+cluster://u:{SECRET}@n:7000/5",
        f"ftp://u:{SECRET}@h",
        f"u:{SECRET}@h:6379",  # no scheme at all
        f"redis://u:{SECRET}@h/0?bogus=1",
        f"unix://u:{SECRET}@",
    ],
)
def test_passwords_are_masked_in_every_error(url: str) -> None:
    with pytest.raises(InvalidUrl) as caught:
        parse_url(url)
    assert "w0rd" not in str(caught.value) and "p%40ss" not in str(caught.value), str(caught.value)
    assert "***" in str(caught.value)


def test_missing_certificate_file_is_invalid_url(tmp_path: Path) -> None:
    with pytest.raises(InvalidUrl, match="ssl_ca_certs file .*missing.pem.* does not exist"):
        Client(f"rediss://u:{SECRET}@127.0.0.1:1/0?ssl_ca_certs={tmp_path}/missing.pem")


def test_mask_url_keeps_everything_but_the_password() -> None:
    assert mask_url("redis://h:1/0") == "redis://h:1/0"
    assert mask_url("redis://user@h:1/0") == "redis://user@h:1/0"
    assert mask_url("redis://:pw@h:1/0") == "redis://:***@h:1/0"
    assert mask_url("redis+sentinel://u:a@b@s1:1,s2:2/svc?x=1") == "redis+sentinel://u:***@s1:1,s2:2/svc?x=1"
