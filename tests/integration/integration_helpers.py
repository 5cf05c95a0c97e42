"""Helpers shared by the integration tests (a module name no other test folder uses)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from client.api import Client, wait_until
from nodes.clusterfile import Timing
from nodes.local import LocalCluster

T = TypeVar("T")


def wait_for(cond: Callable[[], T], timeout: float, what: str, every: float = 0.02) -> T:
    """Poll ``cond`` until it returns something truthy; fails naming ``what``."""
    return wait_until(cond, timeout, what, every=every)


def leader_of(c: Client, nodes: list[str] | None = None) -> str | None:
    """The node that says it leads the highest term (among ``nodes``)."""
    return c.leader(1.0, among=nodes)


def start_cluster(tmp_path: Path, nodes: int, **kwargs: object) -> LocalCluster:
    lc = LocalCluster.create(tmp_path / "cluster", nodes,
                             timing=Timing(election_ms=(150.0, 300.0)), **kwargs)
    lc.start_all()
    return lc


