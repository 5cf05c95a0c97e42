"""Real node processes on loopback: free ports, data in a temporary directory, and
every process stopped by its pid when the test ends, pass or fail."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from integration_helpers import start_cluster  # noqa: E402

from client.api import Client
from nodes.local import LocalCluster


@pytest.fixture
def make_cluster(tmp_path: Path) -> Iterator[Callable[..., LocalCluster]]:
    started: list[LocalCluster] = []

    def make(nodes: int = 3, **kwargs: object) -> LocalCluster:
        lc = start_cluster(tmp_path, nodes, **kwargs)
        started.append(lc)
        return lc

    yield make
    for lc in started:
        lc.kill_all()


@pytest.fixture
def cluster3(make_cluster: Callable[..., LocalCluster]) -> LocalCluster:
    return make_cluster(3)


@pytest.fixture
def client_for() -> Iterator[Callable[[LocalCluster], Client]]:
    clients: list[Client] = []

    def make(lc: LocalCluster, **kwargs: object) -> Client:
        c = Client(lc.cluster, **kwargs)  # type: ignore[arg-type]
        clients.append(c)
        return c

    yield make
    for c in clients:
        c.close()
