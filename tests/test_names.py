"""STYLE.md "Distinct names": a public class name means one thing in nodes/, game/ and
client/, and no two modules' names differ only by a plural (transport.py, transports.py).

Today's exceptions are ``SHARED``, each with its reason. The test fails on a new
shared name, and on a listed one that went away (then drop it from the list).
"""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("nodes", "game", "client")

# class name -> why more than one module defines it today.
SHARED: dict[str, str] = {
    "Applied": "what a machine's apply returns (nodes.statemachine, game.local) vs a host's "
    "applied entry (nodes.host.host, being edited today)",
    "KeyValue": "nodes.kv's machine vs nodes.bench.etcd_wire's copy of etcd's own message name",
}


def public_classes(paths: list[Path]) -> dict[str, list[str]]:
    """Class name -> the modules (as paths) that define it at top level."""
    found: dict[str, list[str]] = defaultdict(list)
    for path in paths:
        for node in ast.parse(path.read_text(), filename=str(path)).body:
            if isinstance(node, ast.ClassDef) and not node.name.startswith("_"):
                found[node.name].append(
                    path.relative_to(path.parents[len(path.parts) - 2]).as_posix()
                )
    return found


def shared_names(paths: list[Path]) -> dict[str, list[str]]:
    return {name: where for name, where in public_classes(paths).items() if len(where) > 1}


def plural_twins(paths: list[Path]) -> list[tuple[str, str]]:
    """Pairs of modules whose names differ only by a trailing s (anywhere in the tree)."""
    stems = {p.stem for p in paths}
    return sorted((s, s + "s") for s in stems if s + "s" in stems)


def project_paths() -> list[Path]:
    return sorted(p for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py"))


def test_each_public_class_name_means_one_thing_except_the_listed_ones() -> None:
    shared = shared_names(project_paths())
    new = {name: where for name, where in shared.items() if name not in SHARED}
    assert new == {}, "a class name already used elsewhere: pick a distinct one (STYLE.md)"
    assert [name for name in SHARED if name not in shared] == [], "drop these from SHARED"


def test_no_two_modules_differ_only_by_a_plural() -> None:
    assert plural_twins(project_paths()) == []


def test_the_checks_flag_a_synthetic_shared_name_and_plural_twin(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    one, two = tmp_path / "a" / "transport.py", tmp_path / "b" / "transports.py"
    one.write_text("class Rejected(Exception):\n    pass\n\n\nclass _Private:\n    pass\n")
    two.write_text("class Rejected(Exception):\n    pass\n\n\nclass _Private:\n    pass\n")
    assert list(shared_names([one, two])) == ["Rejected"]
    assert plural_twins([one, two]) == [("transport", "transports")]
