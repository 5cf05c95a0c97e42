"""Every example in scripts/examples runs on its own, prints what happened and exits 0:
in-process, and over ZeroMQ on loopback (``--zmq``). The scripts run concurrently
(one batch per transport) to keep the suite short."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "scripts" / "examples"
NAMES = ["voting_agents", "distributed_counter", "distributed_lock", "compare_and_swap",
         "optimistic_updates"]
TIMEOUT_S = 30


@pytest.fixture(scope="module")
def outcomes() -> dict[tuple[str, bool], subprocess.CompletedProcess[str]]:
    results = {}
    for use_zmq in (False, True):
        procs = {
            name: subprocess.Popen(
                [sys.executable, str(EXAMPLES / f"{name}.py"), *(["--zmq"] if use_zmq else [])],
                cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            for name in NAMES
        }
        for name, proc in procs.items():
            try:
                out, err = proc.communicate(timeout=TIMEOUT_S)
            except subprocess.TimeoutExpired:
                proc.kill()
                out, err = proc.communicate()
            results[(name, use_zmq)] = subprocess.CompletedProcess(proc.args, proc.returncode,
                                                                   out, err)
    return results


def test_every_example_is_covered() -> None:
    assert sorted(p.stem for p in EXAMPLES.glob("[!_]*.py")) == sorted(NAMES)


@pytest.mark.parametrize("use_zmq", [False, True], ids=["in-process", "zmq"])
@pytest.mark.parametrize("name", NAMES)
def test_the_example_runs_and_exits_zero(
    outcomes: dict[tuple[str, bool], subprocess.CompletedProcess[str]], name: str, use_zmq: bool,
) -> None:
    done = outcomes[(name, use_zmq)]
    assert done.returncode == 0, f"{name} failed:\n{done.stdout}\n{done.stderr}"
    assert done.stdout.rstrip().endswith("done"), done.stdout
