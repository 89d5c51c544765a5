"""Fixtures for the HA suite: real Valkey Cluster / Sentinel / TLS servers on loopback."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from tests.servers import ClusterSet

FIGURES = Path(os.environ.get("REDIQ_HA_FIGURES", Path(tempfile.gettempdir()) / "rediq-ha-figures.jsonl"))


def record_figure(name: str, **values: Any) -> None:
    """Append a measured figure (failover seconds, tasks lost…) to ``REDIQ_HA_FIGURES`` and
    print it (visible with ``-s`` and in CI logs)."""
    line = json.dumps({"scenario": name, **values}, sort_keys=True)
    print(f"\nFIGURE {line}")
    with FIGURES.open("a") as f:
        f.write(line + "\n")


@pytest.fixture(scope="module")
def cluster() -> Iterator[ClusterSet]:
    """A 6-node cluster (3 primaries + 3 replicas) per test module; failover tests get their own."""
    c = ClusterSet().start()
    yield c
    c.cleanup()


@pytest.fixture
def fresh_cluster(cluster: ClusterSet) -> Iterator[ClusterSet]:
    """The module's cluster with every primary flushed (and its script cache emptied)."""
    for port in cluster.primary_ports():
        r = redis.Redis(port=port)
        r.flushall()
        r.script_flush()
        r.close()
    yield cluster
