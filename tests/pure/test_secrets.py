"""Passwords never in clear: URL masking covers the sentinel password in the query string."""

from __future__ import annotations

import pytest

from engine.connection import mask_url, parse_url
from engine.errors import InvalidUrl

SENTINEL = "redis+sentinel://:pw1@s1:26379,s2:26379/mymaster/0?sentinel_password=hunter2"


def test_sentinel_password_is_masked_in_the_display_and_the_repr() -> None:
    target = parse_url(SENTINEL)
    assert target.options["sentinel_password"] == "hunter2"  # still used to connect
    for text in (target.display, repr(target), mask_url(SENTINEL)):
        assert "hunter2" not in text and "pw1" not in text
    assert target.display == "redis+sentinel://:***@s1:26379,s2:26379/mymaster/0?sentinel_password=***"


@pytest.mark.parametrize(
    ("url", "masked"),
    [
        ("redis://h:1/0?password=x&db=1", "redis://h:1/0?password=***&db=1"),
        (
            "redis+sentinel://s:1/m?sentinel_username=u&sentinel_password=p#f",
            "redis+sentinel://s:1/m?sentinel_username=u&sentinel_password=***#f",
        ),
        ("redis://h:1/0?password_file=/x", "redis://h:1/0?password_file=/x"),
    ],
)
def test_secret_options_masked_others_kept(url: str, masked: str) -> None:
    assert mask_url(url) == masked


def test_errors_about_a_sentinel_url_do_not_show_its_password() -> None:
    with pytest.raises(InvalidUrl) as info:
        parse_url(SENTINEL + "&bogus=1")
    assert "hunter2" not in str(info.value) and "bogus" in str(info.value)


def test_config_repr_and_str_mask_the_url(monkeypatch: pytest.MonkeyPatch) -> None:
    from engine.config import load_config

    monkeypatch.setenv("REDIS_URL", SENTINEL)
    config = load_config()
    assert config.redis_url == SENTINEL  # still used to connect
    for text in (repr(config), str(config), f"{config!r}"):
        assert "hunter2" not in text and "pw1" not in text and "redis_url='redis+sentinel://:***@" in text
