"""Configuration errors to the letter: each names the setting, the value (a URL masked), where
it came from (flag, environment, .env, file) and the rule; a config file's unknown or unreadable
key is one line naming the file. Every engine setting is carried over, and only the URL is
masked in reprs. Written against mutation testing of engine/config.py (docs/testing.md)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from engine.config import RediqConfig, load_config
from engine.errors import InvalidConfig

FIX = ". Correct the value; `rediq config show` lists every setting and where it comes from"


@pytest.fixture(autouse=True)
def isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    for name in RediqConfig.model_fields:
        monkeypatch.delenv(name.upper(), raising=False)
    monkeypatch.setenv("REDIQ_CONFIG", str(tmp_path / "config.toml"))
    monkeypatch.chdir(tmp_path)
    yield tmp_path


def message(**flags: object) -> str:
    with pytest.raises(InvalidConfig) as caught:
        load_config(**flags)
    text = str(caught.value)
    assert text.startswith("E011: ") and text.endswith(FIX) and "\n" not in text, text
    return text.removeprefix("E011: ").removesuffix(FIX)


def test_a_flag() -> None:
    assert message(worker_concurrency=0) == (
        "invalid setting worker_concurrency=0 (from command-line flag): "
        "worker_concurrency must be 1..10000, got 0"
    )
    assert message(metrics_port=70000) == (
        "invalid setting metrics_port=70000 (from command-line flag): "
        "metrics_port must be 0..65535, got 70000"
    )


def test_a_flag_left_out_is_not_a_flag(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WORKER_CONCURRENCY", "0")
    assert message(worker_concurrency=None) == (
        "invalid setting worker_concurrency='0' (from environment): "
        "worker_concurrency must be 1..10000, got 0"
    )


def test_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WORKER_CONCURRENCY", "abc")
    assert message() == (
        "invalid setting worker_concurrency='abc' (from environment): "
        "Input should be a valid integer, unable to parse string as an integer"
    )


def test_a_dotenv_file(isolated: Path) -> None:
    (isolated / ".env").write_text("WORKER_GRACE_S=-1\n")
    assert (
        message()
        == "invalid setting worker_grace_s='-1' (from .env file): must be 0..315360000 seconds, got -1.0"
    )


def test_the_config_file(isolated: Path) -> None:
    (isolated / "config.toml").write_text("rediq_retention_s = 0\n")
    assert message() == (
        "invalid setting rediq_retention_s=0 (from config file): must be 1..315360000 seconds, got 0.0 "
        "(finished tasks expire after it; 0 is not 'forever')"
    )


def test_an_unknown_key_in_the_file_with_and_without_a_guess(isolated: Path) -> None:
    path = isolated / "config.toml"
    path.write_text("worker_concurency = 3\n")
    assert message() == f"unknown setting 'worker_concurency' in {path} (did you mean 'worker_concurrency'?)"
    path.write_text("zzz = 3\nworker_concurrency = 2\n")
    assert message() == f"unknown setting 'zzz' in {path}"
    # the first unknown key in sorted order
    path.write_text("zz2 = 1\nzz1 = 1\n")
    assert message() == f"unknown setting 'zz1' in {path}"


def test_an_unreadable_file(isolated: Path) -> None:
    path = isolated / "config.toml"
    path.write_text("zzz = \n")
    assert message() == f"cannot read configuration file {path}: Invalid value (at line 1, column 7)"
    path.write_bytes(b"\xff = 1\n")
    assert message().startswith(
        f"cannot read configuration file {path}: 'utf-8' codec can't decode byte 0xff"
    )


def test_no_file_is_no_error(isolated: Path) -> None:
    assert not (isolated / "config.toml").exists()
    assert load_config().worker_concurrency == 10


def test_a_text_value_is_shown_masked_in_an_error() -> None:
    # any text may hold a URL with a password in it (a misplaced one): all are masked
    text = message(rediq_prefix="a:b@c d")
    assert text.startswith("invalid setting rediq_prefix='a:***@c d' (from command-line flag): "), text


def test_every_engine_setting_is_carried_over() -> None:
    config = load_config(
        rediq_prefix="p",
        rediq_retention_s=11,
        rediq_dead_retention_s=12,
        rediq_quarantine_s=13,
        rediq_max_payload_bytes=14,
        rediq_dependency_failure="hold",
        rediq_events=False,
    )
    settings = config.engine_settings()
    assert (
        settings.prefix,
        settings.retention_s,
        settings.dead_retention_s,
        settings.quarantine_s,
        settings.max_payload_bytes,
        settings.dependency_failure,
        settings.events,
    ) == ("p", 11, 12, 13, 14, "hold", False)


def test_only_the_url_is_masked_in_reprs_and_displays() -> None:
    config = load_config(redis_url="redis://u:secret@h:1/0", rediq_prefix="x:y@z")
    for text in (repr(config), str(config)):
        assert "redis_url='redis://u:***@h:1/0'" in text and "rediq_prefix='x:y@z'" in text, text
    shown = config.display_values()
    assert shown["redis_url"] == "redis://u:***@h:1/0" and shown["rediq_prefix"] == "x:y@z"
    assert load_config().display_values()["redis_url"] is None


def test_metrics_switch_and_port() -> None:
    assert (load_config().metrics_on, load_config().effective_metrics_port) == (False, 9090)
    on = load_config(metrics_port=0)
    assert (on.metrics_on, on.effective_metrics_port) == (True, 0)
    assert load_config(metrics_port=9100, metrics_enabled=False).metrics_on is False
    assert load_config(metrics_enabled=True).metrics_on is True
