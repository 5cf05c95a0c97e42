"""The floor of a durable replicated write on this machine, measured in the same run
as the systems it anchors.

A client's write to a 3-node Raft cluster needs at least one fsync on a follower
(the leader's overlaps it) and two network round trips (client -> leader -> follower
and back). So the floor is ``fsync_p50 + 2 x round_trip_p50`` with

- ``fsync``: ``os.write`` of 128 bytes then ``os.fsync``, appended to a file in the
  directory the benchmarked data directories live in (same filesystem);
- ``round_trip``: a ZeroMQ DEALER in this process to a ROUTER echo in another
  Python process over loopback TCP, one small message at a time.

On a shared machine an fsync's cost moves by 10x within a minute, so a
:class:`Floor` is sampled several times through a run (before, between and after
the systems it anchors) and reports the median of the samples' p50s.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import zmq

from ..local import free_ports
from .stats import summarize

__all__ = ["Floor", "fsync_ms", "measure", "zmq_round_trip_ms"]


def fsync_ms(directory: Path, count: int = 300, size: int = 128) -> list[float]:
    """``count`` appends of ``size`` bytes, each followed by fsync, in ``directory``."""
    payload = b"x" * size
    fd, path = tempfile.mkstemp(prefix="arena-floor-", dir=directory)
    try:
        samples = []
        for _ in range(count):
            t0 = time.perf_counter()
            os.write(fd, payload)
            os.fsync(fd)
            samples.append((time.perf_counter() - t0) * 1000)
        return samples
    finally:
        os.close(fd)
        os.unlink(path)


def _echo(endpoint: str, ready: Any) -> None:
    ctx = zmq.Context()
    sock = ctx.socket(zmq.ROUTER)
    sock.bind(endpoint)
    ready.set()
    try:
        while True:
            frames = sock.recv_multipart()
            if frames[-1] == b"stop":
                break
            sock.send_multipart(frames)
    finally:
        sock.close(0)
        ctx.term()


def zmq_round_trip_ms(count: int = 1000, warmup: int = 100) -> list[float]:
    """``count`` round trips of a 64-byte message to an echo process."""
    endpoint = f"tcp://127.0.0.1:{free_ports(1)[0]}"
    mpctx = mp.get_context("spawn")
    ready = mpctx.Event()
    proc = mpctx.Process(target=_echo, args=(endpoint, ready), daemon=True)
    proc.start()
    ctx = zmq.Context()
    sock = ctx.socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    try:
        if not ready.wait(30):
            raise RuntimeError("the ZeroMQ echo process did not start within 30 s")
        sock.connect(endpoint)
        payload = b"p" * 64
        samples = []
        for k in range(warmup + count):
            t0 = time.perf_counter()
            sock.send(payload)
            if not sock.poll(5000):
                raise RuntimeError(f"no echo from {endpoint} within 5 s")
            sock.recv()
            if k >= warmup:
                samples.append((time.perf_counter() - t0) * 1000)
        sock.send(b"stop")
        return samples
    finally:
        sock.close(0)
        ctx.term()
        proc.join(5)
        if proc.is_alive():
            proc.kill()
            proc.join(5)


def measure(directory: Path | None = None, fsyncs: int = 300, round_trips: int = 1000
            ) -> dict[str, Any]:
    """``{"fsync_128b": summary, "zmq_round_trip": summary, "durable_write_ms", ...}``."""
    where = Path(directory or tempfile.gettempdir())
    fs = summarize(fsync_ms(where, fsyncs))
    rt = summarize(zmq_round_trip_ms(round_trips))
    return {"fsync_128b": fs, "zmq_round_trip": rt, "directory": str(where),
            "durable_write_ms": fs["p50"] + 2 * rt["p50"],
            "formula": "fsync_128b.p50 + 2 x zmq_round_trip.p50"}


def _median(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[(len(ordered) - 1) // 2]


class Floor:
    """Samples of the floor taken at several points of one run."""

    def __init__(self, directory: Path | None = None, fsyncs: int = 300,
                 round_trips: int = 1000) -> None:
        self.directory, self.fsyncs, self.round_trips = directory, fsyncs, round_trips
        self.samples: list[dict[str, Any]] = []

    def sample(self) -> None:
        self.samples.append(measure(self.directory, self.fsyncs, self.round_trips))

    def result(self) -> dict[str, Any] | None:
        """The median p50s over the samples, and every sample; None before any."""
        if not self.samples:
            return None
        fs = _median([s["fsync_128b"]["p50"] for s in self.samples])
        rt = _median([s["zmq_round_trip"]["p50"] for s in self.samples])
        return {"fsync_128b_p50": fs, "zmq_round_trip_p50": rt, "durable_write_ms": fs + 2 * rt,
                "formula": "median of the samples' fsync_128b.p50 + 2 x the median of their "
                           "zmq_round_trip.p50",
                "directory": self.samples[0]["directory"], "samples": self.samples}
