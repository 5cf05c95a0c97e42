"""Shared by the consensus tests: run a coroutine with a hard deadline, wait on a
condition (never a bare sleep), start and stop in-process clusters, record events."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from nodes import Consensus, InProcessNetwork

TEST_DEADLINE_S = 20.0


def run(coro: Awaitable[Any], deadline: float = TEST_DEADLINE_S) -> Any:
    """``asyncio.run`` with a deadline, so a hang fails the test instead of the suite."""

    async def bounded() -> Any:
        return await asyncio.wait_for(coro, deadline)

    return asyncio.run(bounded())


async def wait_until(predicate: Callable[[], Any], timeout: float = 3.0,
                     what: str = "condition") -> Any:
    """Poll ``predicate`` until it is truthy; fail after ``timeout`` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if loop.time() >= deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(0.005)


class ConsensusCluster:
    """Nodes on one ``InProcessNetwork``; ``async with`` starts and stops them."""

    def __init__(self, ids: Iterable[str] = ("n1", "n2", "n3"), mechanism: str = "raft",
                 seed: int = 1, net: InProcessNetwork | None = None, **kwargs: Any) -> None:
        self.ids = list(ids)
        self.net = net or InProcessNetwork(seed=seed)
        self.nodes: dict[str, Consensus] = {
            i: Consensus(i, mechanism, transport=self.net,
                         peers=[p for p in self.ids if p != i], seed=seed, **kwargs)
            for i in self.ids
        }
        self.extra: list[Consensus] = []

    def __getitem__(self, node_id: str) -> Consensus:
        return self.nodes[node_id]

    def live(self) -> list[Consensus]:
        return [c for c in self.nodes.values() if c.running]

    async def __aenter__(self) -> ConsensusCluster:
        for c in self.nodes.values():
            c.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        for c in [*self.nodes.values(), *self.extra]:
            await c.stop()

    async def leader(self, among: Iterable[str] | None = None, timeout: float = 3.0) -> str:
        """The leader that every live node of ``among`` agrees on."""
        ids = list(among) if among is not None else [c.node_id for c in self.live()]

        def agreed() -> str | None:
            seen = {self.nodes[i].get_leader_id() for i in ids}
            if len(seen) == 1:
                leader = seen.pop()
                if leader in ids and self.nodes[leader].is_leader():
                    return leader
            return None

        return await wait_until(agreed, timeout, f"a leader agreed on by {ids}")

    async def converged(self, key: str, value: Any, ids: Iterable[str] | None = None,
                        timeout: float = 3.0) -> None:
        targets = list(ids) if ids is not None else [c.node_id for c in self.live()]
        await wait_until(lambda: all(self.nodes[i].get(key) == value for i in targets), timeout,
                         f"{key}={value!r} on {targets}")


class Recorder:
    """Collects ``(event, args, details)`` for one node."""

    def __init__(self, node: Consensus, *events: str) -> None:
        self.seen: list[tuple[str, tuple[Any, ...], dict[str, Any]]] = []
        for event in events:
            node.on(event, self._listener(event))

    def _listener(self, event: str) -> Callable[..., None]:
        def record(*args: Any, **details: Any) -> None:
            self.seen.append((event, args, details))

        return record

    def of(self, event: str) -> list[tuple[tuple[Any, ...], dict[str, Any]]]:
        return [(a, d) for e, a, d in self.seen if e == event]

    def names(self) -> set[str]:
        return {e for e, _, _ in self.seen}
