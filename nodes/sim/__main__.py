"""Run the deterministic cluster simulator.

    python -m nodes.sim --seed 42          replay one seed, verbosely
    python -m nodes.sim --seeds 500        seeds 0..499 with a summary line
    python -m nodes.sim --seeds 50 --disk  every seed on DiskStorage, with crash points
                                           and storage faults on a minority (default:
                                           the seed picks, about half on disk)
    python -m nodes.sim --groups 8 --seeds 500
                                           every node a Host of many groups on one
                                           SharedWal: whole-node crashes, torn writes
                                           (nodes/sim/multi.py)
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable
from typing import Any

import click

from .multi import MultiParams, run_multi_seed
from .run import SimParams, run_seed


@click.command()
@click.option("--seed", type=int, default=None, help="Replay this one seed and print its faults.")
@click.option("--seeds", type=int, default=100, show_default=True, help="Run this many seeds.")
@click.option("--start", type=int, default=0, show_default=True, help="First seed of --seeds.")
@click.option("--duration", type=float, default=None,
              help="Simulated seconds of the safety phase (faults on)  [default: 8, 4 with --groups]")
@click.option("--disk", "storage", flag_value="disk",
              help="Every seed on DiskStorage in a temporary directory, with crash points "
                   "and storage faults on a minority (lost suffix, wiped directory, flipped bit).")
@click.option("--memory", "storage", flag_value="memory", help="Every seed in memory.")
@click.option("--no-membership", is_flag=True,
              help="Leave membership changes and leadership transfers out of the faults.")
@click.option("--groups", type=click.IntRange(1, 1000), default=None,
              help="Many groups per node: every node is a node Host of this many groups (3 "
                   "replicas each) on one shared WAL; whole-node crashes, crash points and "
                   "torn writes in the WAL, invariants per group after every event, then "
                   "liveness and a linearizability check of each group's client history. "
                   "--duration defaults to 4 s here; --disk/--memory/--no-membership do not apply.")
@click.option("--quiet", is_flag=True, help="Print only failures and the summary.")
def main(seed: int | None, seeds: int, start: int, duration: float | None, storage: str | None,
         no_membership: bool, groups: int | None, quiet: bool) -> None:
    """Whole-cluster Raft simulation: safety under faults, then liveness, then a
    linearizability check of every client history."""
    # a torn WAL tail cut at reopen is expected here: the simulator tore it
    logging.getLogger("nodes.storage").addHandler(logging.NullHandler())
    logging.getLogger("nodes.storage").propagate = False
    disk = None if storage is None else storage == "disk"
    run: Callable[[int], Any]
    if groups is not None:
        mparams = MultiParams(groups=groups, safety_ms=(duration or 4.0) * 1000)
        run = lambda s: run_multi_seed(s, mparams)  # noqa: E731
        again = f" --groups {groups}"
    else:
        params = SimParams(safety_ms=(duration or 8.0) * 1000, disk=disk,
                           membership=not no_membership)
        run = lambda s: run_seed(s, params)  # noqa: E731
        again = ""
    if seed is not None:
        r = run(seed)
        for line in r.faults:
            click.echo(f"  {line}")
        click.echo(r.line())
        if not r.ok:
            click.echo(f"reproduce with: python -m nodes.sim --seed {seed}{again}")
        sys.exit(0 if r.ok else 1)
    passed = failed = 0
    sim_ms = wall = 0.0
    t0 = time.perf_counter()
    for s in range(start, start + seeds):
        r = run(s)
        sim_ms += r.simulated_ms
        wall += r.wall_s
        if r.ok:
            passed += 1
            if not quiet:
                click.echo(r.line())
        else:
            failed += 1
            click.echo(r.line())
            click.echo(f"reproduce with: python -m nodes.sim --seed {s}{again}")
    elapsed = time.perf_counter() - t0
    click.echo(
        f"simulated {sim_ms / 1000:.0f} s in {elapsed:.1f} s wall "
        f"({sim_ms / 1000 / max(wall, 1e-9):.0f} simulated s per wall s)"
    )
    click.echo(f"{seeds} seeds, {passed} passed, {failed} failed")
    sys.exit(0 if failed == 0 else 1)


if __name__ == "__main__":
    main()
