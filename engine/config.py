"""rediq's configuration: one pydantic-settings model read from, highest first,

1. command-line flags (passed in as keyword arguments),
2. environment variables (``REDIS_URL``, ``WORKER_CONCURRENCY``, ``REDIQ_PREFIX``…),
3. a ``.env`` file in the current directory,
4. a TOML file, ``platformdirs.user_config_dir("rediq")/config.toml`` (override the path with
   ``REDIQ_CONFIG``),
5. the defaults below.

Every key is the lower-case environment variable name, in the TOML file too
(``worker_concurrency = 20``). ``load_config`` also reports where each value came from, which
``rediq config show`` prints.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import ValidationError, field_validator
from pydantic_settings import (
    BaseSettings,
    DotEnvSettingsSource,
    EnvSettingsSource,
    InitSettingsSource,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from engine import defaults, embedded
from engine.connection import mask_url
from engine.errors import InvalidConfig
from engine.keys import validate_prefix
from engine.ops import Settings

CONFIG_FILE_ENV = "REDIQ_CONFIG"
DOTENV_FILE = ".env"
SOURCES = ("flag", "env", ".env", "file", "default")
MIN_LEASE_S = 1.0
MIN_RETENTION_S = 1.0
MAX_SECONDS = 10 * 365 * 86400.0
"""Ten years: the largest duration any setting takes (Redis TTLs are kept well in range)."""
MAX_PROCESSES = 1024
Processes = int | Literal["auto"]


def check_processes(value: Any) -> Processes:
    """``--processes`` / ``WORKER_PROCESSES``: a count 1..1024 or ``auto`` (one per core).
    Raises ValueError whose message names the fix."""
    text = str(value).strip().lower()
    if text == "auto":
        return "auto"
    if isinstance(value, bool) or not text.lstrip("+").isdigit():
        raise ValueError(f"{value!r} is not a number of worker processes: give 1..{MAX_PROCESSES} or 'auto'")
    count = int(text)
    if not 1 <= count <= MAX_PROCESSES:
        raise ValueError(f"{count} worker processes: give 1..{MAX_PROCESSES} or 'auto' (one per core)")
    return count


def config_file_path() -> Path:
    """The TOML config file: ``$REDIQ_CONFIG`` or ``<user config dir>/rediq/config.toml``."""
    explicit = os.environ.get(CONFIG_FILE_ENV)
    if explicit:
        return Path(explicit)
    # start-up time: only when $REDIQ_CONFIG does not name the file
    import platformdirs

    return Path(platformdirs.user_config_dir("rediq")) / "config.toml"


class RediqConfig(BaseSettings):
    """Effective configuration of the CLI, the worker and the embedded server."""

    model_config = SettingsConfigDict(
        env_prefix="",
        case_sensitive=False,
        extra="ignore",
        env_file=DOTENV_FILE,
        env_file_encoding="utf-8",
        validate_default=True,
    )

    redis_url: str | None = None
    """Redis URL (``redis://``, ``rediss://``, ``unix://``, sentinel, cluster). Unset: the
    embedded Valkey server under the rediq data directory is started or reused."""
    rediq_prefix: str = defaults.PREFIX
    """Key prefix; several independent rediq installations can share one Redis."""
    worker_concurrency: int = defaults.CONCURRENCY
    """Handler slots per worker process."""
    worker_processes: Processes = 1
    """Worker processes ``rediq-worker`` runs under one supervisor (``auto``: one per core);
    1 runs the worker in the command's own process."""
    worker_queues: Annotated[list[str], NoDecode] = []
    """Queues a worker serves, comma-separated, in strict priority order. Empty: the queues of
    the app's registered task types."""
    worker_lease_s: float = defaults.LEASE_S
    """Task lease in seconds; a dead worker's tasks run again this long after its last heartbeat."""
    worker_grace_s: float = defaults.GRACE_S
    """On SIGTERM/SIGINT, seconds running tasks get to finish before they are handed back."""
    worker_event_loop: Literal["auto", "uvloop", "asyncio"] = defaults.EVENT_LOOP
    """The worker's event loop: uvloop (faster round trips) or asyncio; 'auto' takes uvloop
    when it is installed (it is a dependency on Linux and macOS)."""
    worker_pool: Literal["thread", "process"] = defaults.POOL
    """Where sync handlers run: 'thread' (a handler past its timeout keeps its slot until it
    returns) or 'process' (one child process per slot, killed at the task's timeout)."""
    worker_unknown_type_timeout_s: float = defaults.UNKNOWN_TYPE_TIMEOUT_S
    """A task whose type a worker has no handler for goes back uncharged (for a worker that has
    one, e.g. during a rolling deploy); dead once no worker took it for this many seconds."""
    metrics_enabled: bool | None = None
    """Serve Prometheus metrics from the worker. Unset: on when a metrics port is set."""
    metrics_port: int | None = None
    """Port of the worker's ``/metrics`` and ``/health`` endpoint (9090 when only enabled)."""
    metrics_host: str = defaults.METRICS_HOST
    """Address the metrics endpoint binds; loopback unless you mean to expose it."""
    rediq_retention_s: float = defaults.RETENTION_S
    """Seconds completed and cancelled tasks are kept."""
    rediq_dead_retention_s: float = defaults.DEAD_RETENTION_S
    """Seconds dead tasks are kept before Redis expires them."""
    rediq_quarantine_s: float = defaults.QUARANTINE_S
    """Seconds deleted (flushed) tasks stay restorable in quarantine."""
    rediq_max_payload_bytes: int = defaults.MAX_PAYLOAD_BYTES
    """Largest accepted payload, in bytes of JSON."""
    rediq_dependency_failure: Literal["cancel", "hold"] = defaults.DEPENDENCY_FAILURE
    """What a dead or cancelled dependency does to its dependents: cancel them or hold them."""
    rediq_events: bool = defaults.EVENTS
    """Publish state-transition events (the console listens to them)."""

    @field_validator("worker_queues", mode="before")
    @classmethod
    def _split_queues(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [q.strip() for q in value.split(",") if q.strip()]
        return value

    @field_validator("worker_processes", mode="before")
    @classmethod
    def _processes(cls, value: Any) -> Processes:
        return check_processes(value)

    @field_validator("worker_concurrency")
    @classmethod
    def _positive_concurrency(cls, value: int) -> int:
        if not 1 <= value <= 10_000:
            raise ValueError(f"worker_concurrency must be 1..10000, got {value}")
        return value

    @field_validator("worker_grace_s")
    @classmethod
    def _non_negative(cls, value: float) -> float:
        if not 0 <= value <= MAX_SECONDS:
            raise ValueError(f"must be 0..{MAX_SECONDS:.0f} seconds, got {value}")
        return value

    @field_validator("worker_lease_s")
    @classmethod
    def _lease(cls, value: float) -> float:
        # a lease shorter than a round trip plus a heartbeat expires before the worker can
        # renew it: every task would be recovered and charged without its handler running
        if not MIN_LEASE_S <= value <= MAX_SECONDS:
            raise ValueError(
                f"must be {MIN_LEASE_S:.0f}..{MAX_SECONDS:.0f} seconds, got {value} "
                f"(the worker heartbeats every lease/3; use --lease 30 unless tasks must recover sooner)"
            )
        return value

    @field_validator("rediq_retention_s", "rediq_dead_retention_s", "rediq_quarantine_s")
    @classmethod
    def _retention(cls, value: float) -> float:
        # 0 is refused rather than meaning "forever" or "at once": the scripts treat a TTL of
        # 0 as "no TTL", so it used to keep finished hashes forever
        if not MIN_RETENTION_S <= value <= MAX_SECONDS:
            raise ValueError(
                f"must be {MIN_RETENTION_S:.0f}..{MAX_SECONDS:.0f} seconds, got {value} "
                "(finished tasks expire after it; 0 is not 'forever')"
            )
        return value

    @field_validator("worker_unknown_type_timeout_s")
    @classmethod
    def _unknown_type_timeout(cls, value: float) -> float:
        if not 0 <= value <= 366 * 86400:  # NaN fails too
            raise ValueError(f"must be 0..31622400 seconds, got {value}")
        return value

    @field_validator("metrics_port")
    @classmethod
    def _port(cls, value: int | None) -> int | None:
        if value is not None and not 0 <= value <= 65535:
            raise ValueError(f"metrics_port must be 0..65535, got {value}")
        return value

    @field_validator("rediq_prefix")
    @classmethod
    def _prefix(cls, value: str) -> str:
        return validate_prefix(value)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (
            init_settings,
            env_settings,
            dotenv_settings,
            TomlConfigSettingsSource(settings_cls, toml_file=config_file_path()),
        )

    # ------------------------------------------------------------------ derived values

    @property
    def metrics_on(self) -> bool:
        """Whether the worker serves metrics."""
        if self.metrics_enabled is not None:
            return self.metrics_enabled
        return self.metrics_port is not None

    @property
    def effective_metrics_port(self) -> int:
        return self.metrics_port if self.metrics_port is not None else defaults.METRICS_PORT

    def engine_settings(self) -> Settings:
        """The ``engine.ops.Settings`` clients and workers run with."""
        return Settings(
            prefix=self.rediq_prefix,
            retention_s=self.rediq_retention_s,
            dead_retention_s=self.rediq_dead_retention_s,
            max_payload_bytes=self.rediq_max_payload_bytes,
            dependency_failure=self.rediq_dependency_failure,
            events=self.rediq_events,
            quarantine_s=self.rediq_quarantine_s,
        )

    def __repr_args__(self) -> Any:
        # reprs and str() end up in logs and tracebacks: never with a password in them
        for name, value in super().__repr_args__():
            yield name, mask_url(value) if name == "redis_url" and isinstance(value, str) else value

    def display_values(self) -> dict[str, Any]:
        """Every setting, with passwords in URLs masked, safe to print."""
        values = self.model_dump(mode="json")
        if values.get("redis_url"):
            values["redis_url"] = mask_url(values["redis_url"])
        return values


def _present(source: PydanticBaseSettingsSource) -> set[str]:
    found = source()
    return {key.lower() for key, value in found.items() if value is not None}


def config_sources(flags: dict[str, Any]) -> dict[str, str]:
    """For each setting, which source supplied it: flag, env, .env, file or default."""
    given = {k: v for k, v in flags.items() if v is not None}
    layers: list[tuple[str, set[str]]] = [
        ("flag", set(InitSettingsSource(RediqConfig, given).__call__())),
        ("env", _present(EnvSettingsSource(RediqConfig))),
        (".env", _present(DotEnvSettingsSource(RediqConfig, env_file=DOTENV_FILE))),
        ("file", _present(TomlConfigSettingsSource(RediqConfig, toml_file=config_file_path()))),
    ]
    sources = {}
    for name in RediqConfig.model_fields:
        sources[name] = next((label for label, keys in layers if name in keys), "default")
    return sources


def load_config(**flags: Any) -> RediqConfig:
    """The effective configuration; ``flags`` are command-line values (``None`` = not given).
    Raises ``InvalidConfig`` (one line) when a value is invalid, wherever it comes from."""
    given = {k: v for k, v in flags.items() if v is not None}
    _check_file_keys()
    try:
        return RediqConfig(**given)
    except ValidationError as exc:
        raise InvalidConfig(_validation_line(exc, given)) from None
    except (OSError, ValueError) as exc:  # unreadable or malformed TOML / .env
        raise InvalidConfig(f"cannot read configuration: {exc}") from None


def _check_file_keys() -> None:
    """A misspelt key in the config file is an error, not a silently ignored line."""
    path = config_file_path()
    if not path.is_file():
        return
    # start-up time: parsed only when a config file exists
    import tomllib

    try:
        keys = set(tomllib.loads(path.read_text(encoding="utf-8")))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise InvalidConfig(f"cannot read configuration file {path}: {exc}") from None
    unknown = sorted(keys - set(RediqConfig.model_fields))
    if unknown:
        # only for the 'did you mean' hint of an unknown key
        import difflib

        guess = difflib.get_close_matches(unknown[0], RediqConfig.model_fields, n=1)
        hint = f" (did you mean {guess[0]!r}?)" if guess else ""
        raise InvalidConfig(f"unknown setting {unknown[0]!r} in {path}{hint}")


def _validation_line(exc: ValidationError, flags: dict[str, Any]) -> str:
    err = exc.errors()[0]
    field = ".".join(str(p) for p in err.get("loc", ()))
    message = str(err.get("msg", "invalid")).removeprefix("Value error, ")
    try:
        source = config_sources(flags).get(field, "?")
    except Exception:  # noqa: BLE001 - the message is still useful without the source
        source = "?"
    where = {"flag": "command-line flag", "env": "environment", ".env": ".env file", "file": "config file"}
    origin = f" (from {where.get(source, source)})" if source in where else ""
    value = err.get("input")
    shown = mask_url(value) if isinstance(value, str) else value
    return f"invalid setting {field}={shown!r}{origin}: {message}"


def default_url() -> str:
    """Where the engine connects when no URL is given: ``REDIS_URL`` or the configured URL
    (environment, ``.env``, config file), else the embedded server, started on demand."""
    env_url = os.environ.get("REDIS_URL")
    if env_url:
        return env_url
    configured = load_config().redis_url
    if configured:
        return configured
    url = embedded.ensure_server()
    embedded.announce(url)
    return url
