"""Benchmarks, run as ``python -m nodes.bench <subcommand>`` (see ``__main__``)."""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from types import FrameType


class BenchError(RuntimeError):
    """A benchmark's cluster did not do what its workload needed in time (the message says what)."""


@contextlib.contextmanager
def sigterm_raises() -> Iterator[None]:
    """While inside, SIGTERM raises SystemExit, so finally blocks stop the processes a
    bench started (etcd members, PySyncObj nodes)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, _frame: FrameType | None) -> None:
        raise SystemExit(128 + signum)

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
