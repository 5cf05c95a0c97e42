"""Helpers shared by the integration tests (a module name no other test folder uses)."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from client.api import Client
from nodes.clusterfile import Timing
from nodes.local import LocalCluster

T = TypeVar("T")


def wait_for(cond: Callable[[], T], timeout: float, what: str, every: float = 0.02) -> T:
    """Poll ``cond`` until it returns something truthy; fail with ``what`` at the deadline."""
    deadline = time.monotonic() + timeout
    last: T | None = None
    while time.monotonic() < deadline:
        last = cond()
        if last:
            return last
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout:.1f}s waiting for {what} (last: {last!r})")


def leader_of(c: Client, nodes: list[str] | None = None) -> str | None:
    """The node that says it leads the highest term (among ``nodes``)."""
    best = None
    for nid in nodes or c.cluster.ids():
        s = c.status(nid, timeout=0.3)
        if s and s["role"] == "leader" and (best is None or s["term"] > best[1]):
            best = (nid, s["term"])
    return best[0] if best else None


def start_cluster(tmp_path: Path, nodes: int, **kwargs: object) -> LocalCluster:
    lc = LocalCluster.create(tmp_path / "cluster", nodes,
                             timing=Timing(election_ms=(150.0, 300.0)), **kwargs)
    lc.start_all()
    return lc


