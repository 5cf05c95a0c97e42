"""The simulator's command line (STYLE.md habit 3): a batch of seeds ends with a
summary line, and one seed replays exactly -- same faults, same outcome line."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def run_sim(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "nodes.sim", *args],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )


def test_twenty_seeds_all_pass_with_a_summary_line() -> None:
    """Reference: STYLE.md habit 3/4 (seeded whole-cluster simulation):
    ``python -m nodes.sim --seeds 20`` prints one line per seed and the summary."""
    done = run_sim("--seeds", "20")
    lines = done.stdout.strip().splitlines()
    assert done.returncode == 0, done.stdout + done.stderr
    assert lines[-1] == "20 seeds, 20 passed, 0 failed", done.stdout
    assert sum(line.startswith("seed=") for line in lines) == 20, done.stdout


def test_one_seed_replays_identically() -> None:
    """Reference: STYLE.md habit 3 ("every random choice comes from one seed"):
    ``--seed N`` twice gives the same fault log and the same outcome line."""
    first = run_sim("--seed", "7")
    second = run_sim("--seed", "7")
    assert first.returncode == second.returncode == 0, first.stdout + first.stderr
    last = first.stdout.strip().splitlines()[-1]
    assert last.startswith("seed=7 ") and last.endswith(" ok"), first.stdout
    assert second.stdout.strip().splitlines()[-1] == last
    assert first.stdout == second.stdout, "the fault log differs between two runs"
    assert len(first.stdout.splitlines()) > 3, "expected the seed's fault log"
