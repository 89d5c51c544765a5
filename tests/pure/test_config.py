"""Configuration precedence (flag > env > .env > config file > default), validation errors,
masking, and ``rediq config show``."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from engine.cli import cli
from engine.config import RediqConfig, config_file_path, config_sources, load_config
from engine.errors import InvalidConfig
from engine.ops import Settings

CONFIG_ENV_NAMES = [name.upper() for name in RediqConfig.model_fields]


@pytest.fixture(autouse=True)
def isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """No real environment, .env or user config file leaks in; cwd is an empty directory."""
    for name in CONFIG_ENV_NAMES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("REDIQ_CONFIG", str(tmp_path / "config.toml"))
    monkeypatch.setenv("REDIQ_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.chdir(tmp_path)
    yield tmp_path


def write_layers(tmp_path: Path) -> None:
    (tmp_path / "config.toml").write_text(
        'worker_concurrency = 7\nmetrics_host = "0.0.0.0"\nrediq_prefix = "fromfile"\n'
        'worker_queues = ["f1", "f2"]\nrediq_retention_s = 60\n'
    )
    (tmp_path / ".env").write_text("REDIQ_PREFIX=fromdotenv\nWORKER_QUEUES=d1,d2\nWORKER_GRACE_S=5\n")


def test_defaults_without_any_source() -> None:
    config = load_config()
    assert config.redis_url is None
    assert config.rediq_prefix == "rediq"
    assert config.worker_concurrency == 10
    assert config.metrics_on is False
    assert set(config_sources({}).values()) == {"default"}


def test_precedence_flag_over_env_over_dotenv_over_file(
    isolated: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_layers(isolated)
    monkeypatch.setenv("REDIQ_PREFIX", "fromenv")
    monkeypatch.setenv("WORKER_GRACE_S", "9")

    config = load_config(worker_grace_s=None, worker_concurrency=3)

    assert config.worker_concurrency == 3  # flag beats file
    assert config.rediq_prefix == "fromenv"  # env beats .env and file
    assert config.worker_grace_s == 9  # env beats .env
    assert config.worker_queues == ["d1", "d2"]  # .env beats file, comma list split
    assert config.metrics_host == "0.0.0.0"  # file beats default
    assert config.rediq_retention_s == 60
    assert config.worker_lease_s == 30  # default

    sources = config_sources({"worker_concurrency": 3, "worker_grace_s": None})
    assert sources["worker_concurrency"] == "flag"
    assert sources["rediq_prefix"] == "env"
    assert sources["worker_grace_s"] == "env"
    assert sources["worker_queues"] == ".env"
    assert sources["metrics_host"] == "file"
    assert sources["worker_lease_s"] == "default"


def test_engine_settings_come_from_config(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REDIQ_DEPENDENCY_FAILURE", "hold")
    monkeypatch.setenv("REDIQ_MAX_PAYLOAD_BYTES", "1000")
    settings = load_config(rediq_prefix="p2", rediq_dead_retention_s=5, rediq_events=False).engine_settings()
    assert (settings.prefix, settings.dependency_failure, settings.max_payload_bytes) == ("p2", "hold", 1000)
    assert settings.dead_retention_s == 5
    assert settings.events is False


def test_metrics_enabled_by_port_or_flag(monkeypatch: pytest.MonkeyPatch) -> None:
    assert load_config(metrics_port=9100).metrics_on is True
    monkeypatch.setenv("METRICS_ENABLED", "true")
    enabled = load_config()
    assert enabled.metrics_on is True and enabled.effective_metrics_port == 9090
    monkeypatch.setenv("METRICS_ENABLED", "false")
    assert load_config(metrics_port=9100).metrics_on is False


@pytest.mark.parametrize(
    ("env", "value", "fragment"),
    [
        ("WORKER_CONCURRENCY", "lots", "worker_concurrency='lots' (from environment)"),
        ("WORKER_CONCURRENCY", "0", "worker_concurrency must be 1..10000"),
        ("REDIQ_DEPENDENCY_FAILURE", "explode", "rediq_dependency_failure"),
        ("METRICS_PORT", "70000", "metrics_port must be 0..65535"),
    ],
)
def test_invalid_value_is_one_line_naming_setting_and_source(
    monkeypatch: pytest.MonkeyPatch, env: str, value: str, fragment: str
) -> None:
    monkeypatch.setenv(env, value)
    with pytest.raises(InvalidConfig) as err:
        load_config()
    text = str(err.value)
    assert text.startswith("E011: invalid setting")
    assert fragment in text
    assert "\n" not in text


def test_invalid_value_from_file_says_so(isolated: Path) -> None:
    (isolated / "config.toml").write_text("worker_lease_s = -1\n")
    with pytest.raises(InvalidConfig, match=r"worker_lease_s=-1 \(from config file\)"):
        load_config()


def test_malformed_toml_is_one_line_error(isolated: Path) -> None:
    (isolated / "config.toml").write_text("worker_concurrency = = 3\n")
    with pytest.raises(InvalidConfig, match="cannot read configuration file"):
        load_config()


def test_misspelt_key_in_config_file_is_reported(isolated: Path) -> None:
    (isolated / "config.toml").write_text("worker_concurency = 3\n")
    with pytest.raises(
        InvalidConfig, match="unknown setting 'worker_concurency' in .*did you mean 'worker_concurrency'"
    ):
        load_config()


def test_config_file_defaults_to_user_config_dir(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("REDIQ_CONFIG")
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    assert config_file_path() == tmp_path / "xdg" / "rediq" / "config.toml"


def test_config_show_json_masks_password_and_reports_sources(
    isolated: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_layers(isolated)
    monkeypatch.setenv("REDIS_URL", "redis://user:hunter2@db.example:6380/1")
    result = CliRunner().invoke(
        cli, ["--prefix", "cliprefix", "config", "show", "--json"], catch_exceptions=False
    )
    assert result.exit_code == 0, result.output
    assert "hunter2" not in result.output
    shown = json.loads(result.output)
    assert shown["config_file"] == str(isolated / "config.toml")
    settings = shown["settings"]
    assert settings["redis_url"] == {"value": "redis://user:***@db.example:6380/1", "source": "env"}
    assert settings["rediq_prefix"] == {"value": "cliprefix", "source": "flag"}
    assert settings["worker_queues"] == {"value": ["d1", "d2"], "source": ".env"}
    assert settings["worker_concurrency"] == {"value": 7, "source": "file"}
    assert settings["worker_lease_s"] == {"value": 30.0, "source": "default"}
    assert set(settings) == set(RediqConfig.model_fields)


def test_config_show_table_fits_80_columns_and_does_not_start_a_server(
    isolated: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("REDIS_URL", "redis://:s3cret@" + "h" * 120 + ":6379/0")
    result = CliRunner().invoke(cli, ["config", "show"], catch_exceptions=False)
    assert result.exit_code == 0
    assert "s3cret" not in result.output
    table = result.output.split("\n\n")[0].splitlines()
    assert len(table) == 1 + len(RediqConfig.model_fields)
    assert all(len(line) <= 80 for line in table)
    assert "redis_url" in result.output and "env" in result.output
    assert not (isolated / "data" / "valkey.pid").exists()


@pytest.mark.parametrize("as_json", [True, False])
def test_config_show_masks_the_sentinel_password(
    isolated: Path, monkeypatch: pytest.MonkeyPatch, as_json: bool
) -> None:
    url = "redis+sentinel://:pw1@s1:26379,s2:26379/mymaster/0?sentinel_password=hunter2&sentinel_username=u"
    monkeypatch.setenv("REDIS_URL", url)
    result = CliRunner().invoke(
        cli, ["config", "show", *(["--json"] if as_json else [])], catch_exceptions=False
    )
    assert result.exit_code == 0, result.output
    assert "hunter2" not in result.output and "pw1" not in result.output
    if as_json:
        shown = json.loads(result.output)["settings"]["redis_url"]["value"]
        assert (
            shown
            == "redis+sentinel://:***@s1:26379,s2:26379/mymaster/0?sentinel_password=***&sentinel_username=u"
        )


@pytest.mark.parametrize("prefix", ["app{x}", "{app}", "a}b", "two words"])
def test_prefix_with_hash_tag_braces_or_spaces_is_refused(
    monkeypatch: pytest.MonkeyPatch, prefix: str
) -> None:
    monkeypatch.setenv("REDIQ_PREFIX", prefix)
    with pytest.raises(InvalidConfig) as err:
        load_config()
    assert str(err.value).startswith("E011: invalid setting rediq_prefix=")
    assert "\n" not in str(err.value) and "braces would put every queue in one Cluster slot" in str(err.value)
    with pytest.raises(InvalidConfig, match="one Cluster slot"):
        Settings(prefix=prefix)


@pytest.mark.parametrize(
    ("flags", "field"),
    [
        ({"worker_lease_s": 0}, "worker_lease_s"),
        ({"worker_lease_s": 0.2}, "worker_lease_s"),
        ({"rediq_retention_s": 0}, "rediq_retention_s"),
        ({"rediq_dead_retention_s": 0}, "rediq_dead_retention_s"),
        ({"rediq_quarantine_s": 0}, "rediq_quarantine_s"),
        ({"worker_grace_s": 1e16}, "worker_grace_s"),
    ],
)
def test_configuration_out_of_range_is_refused_in_one_line(flags: dict[str, float], field: str) -> None:
    with pytest.raises(InvalidConfig) as info:
        load_config(**flags)
    text = str(info.value)
    assert field in text and "\n" not in text and ".." in text


def test_settings_refuse_a_retention_that_would_keep_finished_tasks_forever() -> None:
    with pytest.raises(InvalidConfig, match="retention_s=0"):
        Settings(retention_s=0)
    with pytest.raises(InvalidConfig, match="dead_retention_s"):
        Settings(dead_retention_s=0.0001)
