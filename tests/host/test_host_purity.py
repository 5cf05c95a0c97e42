"""The node host is sans-I/O at its heart: only ``shell.py`` touches ZeroMQ, the
clock or the operating system (the core's purity rule, tests/raft/test_purity.py)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "raft"))
from test_purity import violations  # noqa: E402

HOST = Path(__file__).resolve().parents[2] / "nodes" / "host"
PURE = sorted(p for p in HOST.glob("*.py") if p.name != "shell.py")


@pytest.mark.parametrize("path", PURE, ids=lambda p: p.name)
def test_host_module_imports_no_io_clock_threads_or_global_random(path: Path) -> None:
    assert violations(path) == []


def test_the_pure_host_modules_are_there() -> None:
    assert {p.name for p in PURE} >= {"host.py", "driver.py", "storage.py", "cluster.py"}
