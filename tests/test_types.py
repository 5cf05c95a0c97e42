"""The type checker scripts/test runs: mypy, strict on the core (nodes/raft) and the host (nodes/host)."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest
from mypy import api

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = ROOT / "pyproject.toml"


def test_the_config_is_strict_on_the_core_and_the_host() -> None:
    config = tomllib.loads(PYPROJECT.read_text())["tool"]["mypy"]
    assert config["strict"] is True
    assert {"nodes/raft", "nodes/host"} <= set(config["files"])


def test_the_config_flags_an_untyped_function_and_a_wrong_type(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text("def f(x):\n    return x\n\n\ndef g() -> int:\n    return 'one'\n")
    out, _, status = api.run(["--config-file", str(PYPROJECT), "--no-incremental", str(bad)])
    assert status == 1, out
    assert "Function is missing a type annotation" in out
    assert 'Incompatible return value type (got "str", expected "int")' in out


def test_the_core_and_the_host_pass(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)  # the config's files and cache_dir are relative to the tree
    out, err, status = api.run([])
    assert status == 0, out + err
