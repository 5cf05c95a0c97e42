"""A seeded, lossy network for the simulator: it drops, delays, reorders,
duplicates and partitions (symmetric and one-way). Every choice comes from the
``random.Random`` it is given, so a seed replays a run exactly."""

from __future__ import annotations

import heapq
from dataclasses import dataclass, field
from random import Random

from nodes.raft.messages import Message


@dataclass(slots=True)
class Faults:
    drop: float = 0.0  # probability a message is lost
    duplicate: float = 0.0  # probability a message is delivered twice
    min_delay_ms: float = 0.2
    max_delay_ms: float = 2.0
    slow: float = 0.0  # probability of a long delay (reorders messages)
    slow_delay_ms: float = 60.0


@dataclass(order=True, slots=True)
class _InFlight:
    at: float
    seq: int
    msg: Message = field(compare=False)


class Network:
    def __init__(self, rng: Random, faults: Faults | None = None) -> None:
        self.rng = rng
        self.faults = faults or Faults()
        self._queue: list[_InFlight] = []
        self._seq = 0
        self.blocked: set[tuple[str, str]] = set()  # (from, to) pairs that lose everything
        self.sent = 0
        self.delivered = 0
        self.dropped = 0

    # --- partitions ---------------------------------------------------------

    def partition(self, side_a: set[str], side_b: set[str], one_way: bool = False) -> None:
        """Cut traffic from side_a to side_b (and back, unless ``one_way``)."""
        for a in side_a:
            for b in side_b:
                self.blocked.add((a, b))
                if not one_way:
                    self.blocked.add((b, a))

    def isolate(self, node: str, others: set[str]) -> None:
        self.partition({node}, others - {node})

    def heal(self) -> None:
        self.blocked.clear()

    # --- traffic ---------------------------------------------------------------

    def send(self, now: float, msg: Message) -> None:
        self.sent += 1
        f = self.faults
        if (msg.sender, msg.recipient) in self.blocked or self.rng.random() < f.drop:
            self.dropped += 1
            return
        copies = 2 if self.rng.random() < f.duplicate else 1
        for _ in range(copies):
            delay = self.rng.uniform(f.min_delay_ms, f.max_delay_ms)
            if self.rng.random() < f.slow:
                delay += self.rng.uniform(0, f.slow_delay_ms)
            self._seq += 1
            heapq.heappush(self._queue, _InFlight(now + delay, self._seq, msg))

    def next_time(self) -> float | None:
        return self._queue[0].at if self._queue else None

    def pop_due(self, now: float) -> list[Message]:
        out = []
        while self._queue and self._queue[0].at <= now:
            m = heapq.heappop(self._queue).msg
            # a partition made while the message was in flight still cuts it
            if (m.sender, m.recipient) in self.blocked:
                self.dropped += 1
                continue
            out.append(m)
            self.delivered += 1
        return out

    def clear(self) -> None:
        self._queue.clear()
