"""DESIGN.md layer 1 / STYLE.md habit 1: the core performs no I/O and reads no clock.
It imports nothing of zmq, socket, time, threading or asyncio, and never the
module-level random (only the ``Random`` class, whose instance is passed in)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

CORE = Path(__file__).resolve().parents[2] / "nodes" / "raft"
FORBIDDEN = {"zmq", "socket", "time", "threading", "asyncio", "random", "os", "select",
             "subprocess", "multiprocessing", "datetime"}


def imports_of(path: Path) -> list[tuple[str, list[str]]]:
    tree = ast.parse(path.read_text(), filename=str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.extend((a.name, []) for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append((node.module, [a.name for a in node.names]))
    return found


def violations(path: Path) -> list[str]:
    bad = []
    for module, names in imports_of(path):
        top = module.split(".")[0]
        if top == "random" and names == ["Random"]:
            continue  # the class only: an instance is injected, never the global one
        if top in FORBIDDEN:
            bad.append(f"{path.name}: imports {module} {names or ''}".strip())
    return bad


@pytest.mark.parametrize("path", sorted(CORE.glob("*.py")), ids=lambda p: p.name)
def test_core_module_imports_no_io_clock_threads_or_global_random(path: Path) -> None:
    assert violations(path) == []


def test_the_purity_check_itself_flags_a_forbidden_import(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text("import time\nfrom random import randint\nimport zmq.asyncio\n")
    assert len(violations(bad)) == 3


def test_core_package_is_not_empty() -> None:
    assert len(list(CORE.glob("*.py"))) >= 6
