"""Real node processes on loopback for the security tests: free ports, keys and data in
temporary directories, and every process killed by its pid when the test (or, for the
shared CURVE cluster, the session) ends, pass or fail."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import zmq
from security_helpers import leader_of, wait_for

from client.api import Client
from nodes.clusterfile import Timing
from nodes.local import LocalCluster


def _start(directory: Path, nodes: int, **kwargs: object) -> LocalCluster:
    lc = LocalCluster.create(directory, nodes, timing=Timing(election_ms=(150.0, 300.0)),
                             **kwargs)
    try:
        lc.start_all()
    except BaseException:
        lc.kill_all()
        raise
    return lc


@pytest.fixture
def ctx() -> Iterator[zmq.Context]:
    """A ZeroMQ context for hand-made sockets, destroyed (linger 0) after the test."""
    c = zmq.Context()
    try:
        yield c
    finally:
        c.destroy(linger=0)


@pytest.fixture
def make_cluster(tmp_path: Path) -> Iterator[Callable[..., LocalCluster]]:
    started: list[LocalCluster] = []

    def make(nodes: int = 3, **kwargs: object) -> LocalCluster:
        lc = _start(tmp_path / f"cluster{len(started)}", nodes, **kwargs)
        started.append(lc)
        return lc

    try:
        yield make
    finally:
        for lc in started:
            lc.kill_all()


@pytest.fixture(scope="session")
def secure3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    """One CURVE cluster shared by the tests that do not disrupt it."""
    lc = _start(tmp_path_factory.mktemp("secure") / "cluster", 3, secure=True)
    try:
        with Client(lc.cluster) as c:
            wait_for(lambda: leader_of(c), 10, "a leader in the CURVE cluster")
        yield lc
    finally:
        lc.kill_all()


@pytest.fixture
def client_for() -> Iterator[Callable[..., Client]]:
    clients: list[Client] = []

    def make(lc: LocalCluster, **kwargs: object) -> Client:
        c = Client(lc.cluster, **kwargs)  # type: ignore[arg-type]
        clients.append(c)
        return c

    try:
        yield make
    finally:
        for c in clients:
            c.close()
