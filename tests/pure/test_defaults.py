"""Each default is spelt once (engine/defaults.py): the configuration model, the runtime objects
and the CLI's help agree with it, so a default changed in one place cannot leave another behind."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path

import click
import pytest

from engine import defaults
from engine.cli import cli
from engine.config import RediqConfig, load_config
from engine.keys import Keyspace
from engine.metrics import MetricsServer
from engine.ops import Settings
from engine.worker import WorkerOptions

# configuration key -> the runtime field it becomes
CONFIG_TO_SETTINGS = {
    "rediq_prefix": "prefix",
    "rediq_retention_s": "retention_s",
    "rediq_dead_retention_s": "dead_retention_s",
    "rediq_quarantine_s": "quarantine_s",
    "rediq_max_payload_bytes": "max_payload_bytes",
    "rediq_dependency_failure": "dependency_failure",
    "rediq_events": "events",
}
CONFIG_TO_WORKER_OPTIONS = {
    "worker_concurrency": "concurrency",
    "worker_lease_s": "lease_s",
    "worker_grace_s": "grace_s",
    "worker_event_loop": "event_loop",
    "worker_pool": "pool",
    "worker_unknown_type_timeout_s": "unknown_type_timeout_s",
}


@pytest.fixture(autouse=True)
def isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Defaults only: no environment, .env or config file."""
    for name in RediqConfig.model_fields:
        monkeypatch.delenv(name.upper(), raising=False)
    monkeypatch.delenv("REDIQ_DEPENDENCY_FAILURE", raising=False)
    monkeypatch.setenv("REDIQ_CONFIG", str(tmp_path / "config.toml"))
    monkeypatch.chdir(tmp_path)
    yield


def test_the_config_model_and_the_runtime_have_the_same_defaults() -> None:
    config = load_config()
    settings = Settings()
    options = WorkerOptions(queues=["q"])
    for key, field in CONFIG_TO_SETTINGS.items():
        assert getattr(config, key) == getattr(settings, field), key
    for key, field in CONFIG_TO_WORKER_OPTIONS.items():
        assert getattr(config, key) == getattr(options, field), key
    assert config.engine_settings() == settings
    assert Keyspace().prefix == settings.prefix == defaults.PREFIX
    assert (
        config.metrics_host == defaults.METRICS_HOST
        and config.effective_metrics_port == defaults.METRICS_PORT
    )


def test_every_config_key_maps_to_a_runtime_field_or_is_config_only() -> None:
    """A new setting must be mapped above (or named here as configuration-only), so its default
    cannot drift from the runtime's unnoticed."""
    config_only = {
        "redis_url",
        "worker_queues",
        "metrics_enabled",
        "metrics_port",
        "metrics_host",
        "worker_processes",  # the supervisor's (rediq-worker --processes), not one worker's
    }
    mapped = set(CONFIG_TO_SETTINGS) | set(CONFIG_TO_WORKER_OPTIONS)
    assert set(RediqConfig.model_fields) == mapped | config_only
    worker_fields = {f.name for f in dataclasses.fields(WorkerOptions)}
    assert set(CONFIG_TO_WORKER_OPTIONS.values()) <= worker_fields


def test_the_metrics_server_binds_the_default_address() -> None:
    init = MetricsServer.__init__.__defaults__
    assert init == (defaults.METRICS_HOST, defaults.METRICS_PORT)


def _option_help(*path: str) -> dict[str, str]:
    command: click.Command = cli
    for name in path:
        assert isinstance(command, click.Group)
        command = command.commands[name]
    return {opt.name or "": opt.help or "" for opt in command.params if isinstance(opt, click.Option)}


def test_the_cli_help_states_the_defaults_the_runtime_uses() -> None:
    worker_help = _option_help("worker", "run")
    assert f"{defaults.CONCURRENCY}" in worker_help["concurrency"]
    assert f"{defaults.LEASE_S:g}" in worker_help["lease_s"]
    assert f"{defaults.GRACE_S:g}" in worker_help["grace_s"]
    assert f"{defaults.UNKNOWN_TYPE_TIMEOUT_S:g}" in worker_help["unknown_type_timeout_s"]
    assert defaults.METRICS_HOST in worker_help["metrics_host"]
    assert repr(defaults.PREFIX) in _option_help()["prefix"]
