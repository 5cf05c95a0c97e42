"""The rules read no clock, no random source, no network and no files (DESIGN.md layer 3)."""

from __future__ import annotations

import ast
from pathlib import Path

import game

FORBIDDEN = {
    "time",
    "datetime",
    "random",
    "secrets",
    "uuid",
    "os",
    "socket",
    "zmq",
    "threading",
    "asyncio",
    "io",
    "pathlib",
}
FORBIDDEN_CALLS = {"open", "input", "hash", "id"}  # files, and values that differ per process


def _sources() -> list[Path]:
    return sorted(Path(game.__file__).parent.glob("*.py"))


def test_the_game_package_imports_no_clock_randomness_network_or_files() -> None:
    for path in _sources():
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                roots = {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom):
                roots = {(node.module or "").split(".")[0]}
            else:
                continue
            assert not roots & FORBIDDEN, f"{path.name}:{node.lineno} imports {roots & FORBIDDEN}"


def test_the_game_package_calls_no_builtin_that_differs_between_processes() -> None:
    for path in _sources():
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
                assert node.func.id not in FORBIDDEN_CALLS, f"{path.name}:{node.lineno}"
