"""Durable entries/s of many groups on one node: one shared WAL vs one DiskStorage each.

Every turn, each of N groups persists one entry and a hard state whose commit index
advances (as a host's loop turn with N busy groups). With ``SharedWal`` every group
stages and one ``sync()`` makes the turn durable; with one ``DiskStorage`` per group
every group's ``save()`` is durable on its own. Turns run until ``--seconds`` have
passed (at least one), so slow configurations do not take minutes. Reported: durable
entries/s, turns/s, and fsyncs per turn (files and directories, by kind).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path

from nodes.raft.messages import ClusterConfig, Entry, HardState
from nodes.storage import DiskStorage
from nodes.storage.shared import SharedWal

DEFAULT_GROUPS = (1, 10, 100, 1000)
CONFIG = ClusterConfig(frozenset({"bench", "b2", "b3"}))


@dataclass(frozen=True, slots=True)
class GroupsBenchResult:
    storage: str  # "shared" or "per-group"
    groups: int
    turns: int
    seconds: float
    entries_per_second: float
    turns_per_second: float
    fsyncs_per_turn: float
    fsyncs_by_kind: dict[str, int]


def _turn_args(index: int, payload: bytes) -> tuple[HardState, list[Entry]]:
    return HardState(1, "bench", index - 1, index), [Entry(index, 1, payload)]


def bench_shared(groups: int, seconds: float, directory: Path, entry_bytes: int = 64,
                 fsync: bool = True, max_turns: int | None = None) -> GroupsBenchResult:
    payload = bytes(i % 251 for i in range(entry_bytes))
    with SharedWal(directory / "shared", fsync=fsync, node_id="bench") as wal:
        storages = [wal.open_group(k, CONFIG) for k in range(groups)]
        wal.sync()
        before = wal.fsyncs
        turns, start = 0, time.perf_counter()
        while turns < 1 or (time.perf_counter() - start < seconds
                            and (max_turns is None or turns < max_turns)):
            turns += 1
            hs, entries = _turn_args(turns, payload)
            for storage in storages:
                storage.stage(hs, entries)
            wal.sync()
        elapsed = time.perf_counter() - start
        fsyncs = wal.fsyncs - before
    return _result("shared", groups, turns, elapsed, fsyncs)


def bench_per_group(groups: int, seconds: float, directory: Path, entry_bytes: int = 64,
                    fsync: bool = True, max_turns: int | None = None) -> GroupsBenchResult:
    payload = bytes(i % 251 for i in range(entry_bytes))
    storages = [DiskStorage(directory / f"g{k}", "bench", f"g{k}", CONFIG, fsync=fsync)
                for k in range(groups)]
    try:
        before = sum((s.fsyncs for s in storages), Counter())
        turns, start = 0, time.perf_counter()
        while turns < 1 or (time.perf_counter() - start < seconds
                            and (max_turns is None or turns < max_turns)):
            turns += 1
            hs, entries = _turn_args(turns, payload)
            for storage in storages:
                storage.save(hs, entries)
        elapsed = time.perf_counter() - start
        fsyncs = sum((s.fsyncs for s in storages), Counter()) - before
    finally:
        for storage in storages:
            storage.close()
    return _result("per-group", groups, turns, elapsed, fsyncs)


def _result(kind: str, groups: int, turns: int, elapsed: float,
            fsyncs: Counter[str]) -> GroupsBenchResult:
    return GroupsBenchResult(
        storage=kind,
        groups=groups,
        turns=turns,
        seconds=round(elapsed, 3),
        entries_per_second=round(groups * turns / elapsed),
        turns_per_second=round(turns / elapsed, 1),
        fsyncs_per_turn=round(sum(fsyncs.values()) / turns, 2),
        fsyncs_by_kind=dict(sorted(fsyncs.items())),
    )


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--groups", type=int, action="append",
                        help="number of groups (repeatable; default 1, 10, 100, 1000)")
    parser.add_argument("--seconds", type=float, default=2.0,
                        help="how long to run each configuration (at least one turn)")
    parser.add_argument("--entry-bytes", type=int, default=64, help="payload of each entry")
    parser.add_argument("--dir", type=Path, help="where to create the temp data directories")
    parser.add_argument("--fsync", action=argparse.BooleanOptionalAction, default=True,
                        help="really fsync (--no-fsync shows the cost of everything else)")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")


def run(args: argparse.Namespace) -> int:
    results = []
    for groups in args.groups or DEFAULT_GROUPS:
        for bench in (bench_shared, bench_per_group):
            with tempfile.TemporaryDirectory(prefix="arena-bench-", dir=args.dir) as tmp:
                results.append(bench(groups, args.seconds, Path(tmp), args.entry_bytes,
                                     args.fsync))
    if args.json:
        print(json.dumps([asdict(r) for r in results], indent=2))
        return 0
    where = args.dir or Path(tempfile.gettempdir())
    print(f"{args.entry_bytes}-byte entries, one per group per turn, fsync "
          f"{'on' if args.fsync else 'OFF'}, about {args.seconds} s each, in {where}")
    print(f"{'groups':>6} {'storage':>9} {'turns':>6} {'entries/s':>10} {'turns/s':>8} "
          f"{'fsyncs/turn':>11}")
    for r in results:
        print(f"{r.groups:>6} {r.storage:>9} {r.turns:>6} {r.entries_per_second:>10} "
              f"{r.turns_per_second:>8} {r.fsyncs_per_turn:>11}")
    return 0
