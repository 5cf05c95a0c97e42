"""What the examples share: build a cluster in-process (default) or over ZeroMQ on
loopback (``--zmq``), wait for it, stop it. Not an example itself."""

from __future__ import annotations

import argparse
import asyncio
import time
from collections.abc import Callable
from typing import Any

from nodes import Consensus, InProcessNetwork
from nodes.local import free_ports

T0 = time.monotonic()


def say(*parts: Any) -> None:
    print(f"[{time.monotonic() - T0:6.3f}s]", *parts, flush=True)


def parse_args(description: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--zmq", action="store_true",
                        help="run over ZeroMQ on loopback free ports instead of in-process")
    return parser.parse_args()


def make_cluster(ids: list[str], use_zmq: bool, mechanism: str = "raft",
                 per_node: Callable[[str], dict[str, Any]] | None = None,
                 **kwargs: Any) -> tuple[dict[str, Consensus], InProcessNetwork | None]:
    """Nodes that all know each other from the start (founding members)."""
    nodes: dict[str, Consensus] = {}
    net: InProcessNetwork | None = None
    if use_zmq:
        addr = {i: f"tcp://127.0.0.1:{p}" for i, p in zip(ids, free_ports(len(ids)), strict=True)}
        for i in ids:
            nodes[i] = Consensus(i, mechanism, address=addr[i],
                                 peers={p: addr[p] for p in ids if p != i},
                                 **kwargs, **(per_node(i) if per_node else {}))
    else:
        net = InProcessNetwork()
        for i in ids:
            nodes[i] = Consensus(i, mechanism, transport=net, peers=[p for p in ids if p != i],
                                 **kwargs, **(per_node(i) if per_node else {}))
    return nodes, net


async def start(nodes: dict[str, Consensus]) -> str | None:
    for c in nodes.values():
        c.start()
    first = next(iter(nodes.values()))
    if first.mechanism != "raft":
        return None
    leader = await first.wait_for_leader(timeout=5.0)
    say(f"leader elected: {leader}")
    return leader


async def stop(nodes: dict[str, Consensus]) -> None:
    for c in nodes.values():
        await c.stop()


async def until(predicate: Callable[[], Any], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError("the cluster did not get there in time")
        await asyncio.sleep(0.01)
