"""DESIGN.md "Where the engine is going": the layers, kept by a test of the import graph.

Every module of ``nodes/``, ``game/`` and ``client/`` belongs to one layer of
``LAYERS`` (bottom first; a module's exact name wins over a pattern) and imports
only modules of its own layer or a lower one. Nothing of the engine (``nodes``)
below operations imports ``client/`` or ``game/``: the engine knows no game and
no window. Every import counts, also one inside a function.

Today's exceptions are ``ALLOWED``, each with its reason. The test fails on any
new violation, and also on an allowed one that went away (then drop it from the list).
"""

from __future__ import annotations

import ast
from fnmatch import fnmatchcase
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("nodes", "game", "client")

LAYERS: list[tuple[str, tuple[str, ...]]] = [
    ("core", ("nodes.raft", "nodes.raft.*")),
    (
        "storage and wire",
        (
            "nodes.storage",
            "nodes.storage.*",
            "nodes.codec",
            "nodes.transport",
            "nodes.security",
            "nodes.clusterfile",
        ),
    ),
    ("host", ("nodes.host", "nodes.host.*")),
    (
        "machines",
        (
            "nodes.statemachine",
            "nodes.kv",
            "nodes.rooms_feed",
            "nodes.consensus.directory",
            "game",
            "game.*",
        ),
    ),
    ("server and library", ("nodes.server", "nodes", "nodes.consensus", "nodes.consensus.*")),
    ("clients", ("client", "client.*")),  # the client library and the windows
    # operations: entry points and composers (the node process composes the game machines),
    # the tools that drive whole clusters (bench, chaos, the simulator and its checker)
    (
        "operations",
        (
            "nodes.cli",
            "nodes.__main__",
            "nodes.node_main",
            "nodes.launcher",
            "nodes.local",
            "nodes.bench",
            "nodes.bench.*",
            "nodes.chaos",
            "nodes.lincheck",
            "nodes.sim",
            "nodes.sim.*",
            "nodes.status_view",
            "client.demo",
            "client.demo_main",
        ),
    ),
]
OPERATIONS = "operations"

# (importer, imported) -> why it is allowed today.
ALLOWED: dict[tuple[str, str], str] = {
    (
        "nodes.rooms_feed",
        "game.rooms",
    ): "the game adapter: what the server publishes of the rooms machine follows "
    "game.rooms' topics (LIST_TOPIC, topics); it is handed to the server by "
    "nodes.node_main, never imported by it",
}


def layer_of(module: str) -> str:
    """The layer of a module: its exact name, else the first pattern that matches it."""
    for name, patterns in LAYERS:
        if module in patterns:
            return name
    for name, patterns in LAYERS:
        if any(fnmatchcase(module, p) for p in patterns if "*" in p):
            return name
    raise KeyError(f"{module} is in no layer: add it to LAYERS in tests/test_layers.py")


def rank(layer: str) -> int:
    return [name for name, _ in LAYERS].index(layer)


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path, modules: set[str]) -> set[str]:
    """The project modules a file imports (``from nodes import codec`` is ``nodes.codec``)."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                source = ".".join(base + ([node.module] if node.module else []))
            else:
                source = node.module or ""
            submodules = {f"{source}.{a.name}" for a in node.names} & modules
            found.update(submodules or {source})
    return {m for m in found if m.split(".")[0] in PACKAGES} - {name}


def project_graph() -> dict[str, set[str]]:
    paths = sorted(p for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py"))
    modules = {module_name(p) for p in paths}
    return {module_name(p): imports_of(p, modules) for p in paths}


def violations(graph: dict[str, set[str]]) -> dict[tuple[str, str], str]:
    """Every import that goes up a layer, or into game/client from the engine below operations."""
    found = {}
    for importer, imported in graph.items():
        for target in imported:
            mine, theirs = layer_of(importer), layer_of(target)
            if rank(theirs) > rank(mine):
                found[(importer, target)] = f"{mine} imports {theirs}"
            elif (
                importer.startswith("nodes")
                and mine != OPERATIONS
                and target.split(".")[0] in ("game", "client")
            ):
                found[(importer, target)] = f"the engine ({mine}) imports {target.split('.')[0]}/"
    return found


def test_every_import_keeps_the_layers_except_the_listed_ones() -> None:
    found = violations(project_graph())
    new = {edge: why for edge, why in found.items() if edge not in ALLOWED}
    gone = [edge for edge in ALLOWED if edge not in found]
    assert new == {}, "imports that break the layers of tests/test_layers.py (move the code down)"
    assert gone == [], "allowed violations that no longer exist: drop them from ALLOWED"


def test_every_module_has_a_layer() -> None:
    graph = project_graph()
    assert len(graph) > 100
    for module in graph:
        layer_of(module)  # raises for a module in no layer


def test_the_graph_reads_relative_late_and_from_package_imports() -> None:
    graph = project_graph()
    assert "nodes.codec" in graph["nodes.transport"]  # from . import codec
    assert "nodes.codec" in graph["nodes.consensus.wire"]  # from nodes import codec, in a function
    assert "nodes.raft.messages" in graph["nodes.storage.wal"]  # from ..raft.messages import ...
    assert "nodes.consensus" in graph["nodes"]  # the lazy re-export


@pytest.mark.parametrize(
    ("graph", "expected"),
    [
        (
            {"nodes.raft.core": {"nodes.server"}},
            {("nodes.raft.core", "nodes.server"): "core imports server and library"},
        ),
        (
            {"nodes.host.host": {"nodes.kv"}},
            {("nodes.host.host", "nodes.kv"): "host imports machines"},
        ),
        (
            {"nodes.server": {"client.api"}},
            {("nodes.server", "client.api"): "server and library imports clients"},
        ),
        (
            {"nodes.kv": {"game.rules"}},
            {("nodes.kv", "game.rules"): "the engine (machines) imports game/"},
        ),
        ({"nodes.cli": {"client.api", "game.rules", "nodes.raft.core"}}, {}),
        ({"nodes.server": {"nodes.raft.core", "nodes.codec", "nodes.host.driver", "nodes.kv"}}, {}),
    ],
)
def test_the_check_flags_a_synthetic_upward_import(graph, expected) -> None:
    assert violations(graph) == expected


def test_a_module_in_no_layer_is_an_error() -> None:
    with pytest.raises(KeyError, match="no layer"):
        layer_of("nodes.somewhere_new")
