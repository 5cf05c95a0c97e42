"""Durable appends per second of DiskStorage with group commit, per batch size.

Each ``save()`` carries one batch of entries and, like a leader's Ready, a hard state
whose commit index advances to the previous batch (so it is rewritten every time:
``--no-hard-state`` measures the WAL alone). Every save returns only once durable,
so entries/s = batch size x saves/s, and fsyncs/save shows the group commit.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from nodes.raft.messages import Entry, HardState
from nodes.storage import DiskStorage

DEFAULT_BATCHES = (1, 10, 100)


@dataclass(frozen=True, slots=True)
class StorageBenchResult:
    batch: int
    entries: int
    entry_bytes: int
    saves: int
    seconds: float
    entries_per_second: float
    saves_per_second: float
    fsyncs: int
    fsyncs_per_save: float
    fsyncs_by_kind: dict[str, int]
    wal_bytes: int
    wal_bytes_per_entry: float
    hard_state_bytes: int


def bench_storage(
    entries: int,
    batch: int,
    entry_bytes: int = 64,
    directory: Path | None = None,
    hard_state: bool = True,
    fsync: bool = True,
) -> StorageBenchResult:
    """Append ``entries`` entries of ``entry_bytes`` in saves of ``batch`` to a fresh
    data directory under ``directory`` (the system's temp dir by default)."""
    payload = bytes(i % 251 for i in range(entry_bytes))
    batches = [
        [Entry(i, 1, payload) for i in range(first, min(first + batch, entries + 1))]
        for first in range(1, entries + 1, batch)
    ]
    with tempfile.TemporaryDirectory(prefix="arena-bench-", dir=directory) as tmp:
        with DiskStorage(Path(tmp) / "node", "bench", "bench", fsync=fsync) as storage:
            fsyncs_before = storage.fsyncs  # opening costs are not measured
            start = time.perf_counter()
            for chunk in batches:
                commit = chunk[0].index - 1
                storage.save(HardState(1, "bench", commit) if hard_state else None, chunk)
            seconds = time.perf_counter() - start
            fsyncs = storage.fsyncs - fsyncs_before
            written = storage.bytes_written
    total = sum(fsyncs.values())
    return StorageBenchResult(
        batch=batch,
        entries=entries,
        entry_bytes=entry_bytes,
        saves=len(batches),
        seconds=round(seconds, 4),
        entries_per_second=round(entries / seconds),
        saves_per_second=round(len(batches) / seconds),
        fsyncs=total,
        fsyncs_per_save=round(total / len(batches), 3),
        fsyncs_by_kind=dict(sorted(fsyncs.items())),
        wal_bytes=written["wal"],
        wal_bytes_per_entry=round(written["wal"] / entries, 1),
        hard_state_bytes=written["hardstate"],
    )


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--entries", type=int, default=2000, help="entries per batch size")
    parser.add_argument(
        "--batch", type=int, action="append", help="batch size (repeatable; default 1, 10, 100)"
    )
    parser.add_argument("--entry-bytes", type=int, default=64, help="payload of each entry")
    parser.add_argument("--dir", type=Path, help="where to create the temp data directory")
    parser.add_argument(
        "--hard-state",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="rewrite the hard state on every save, as a leader's commit advances",
    )
    parser.add_argument(
        "--fsync",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="really fsync (--no-fsync shows the cost of everything else)",
    )
    parser.add_argument("--json", action="store_true", help="print the results as JSON")


def run(args: argparse.Namespace) -> int:
    results = [
        bench_storage(args.entries, batch, args.entry_bytes, args.dir, args.hard_state, args.fsync)
        for batch in args.batch or DEFAULT_BATCHES
    ]
    if args.json:
        print(json.dumps([asdict(r) for r in results], indent=2))
        return 0
    where = args.dir or Path(tempfile.gettempdir())
    print(
        f"DiskStorage: {args.entries} entries of {args.entry_bytes} bytes per batch size, "
        f"fsync {'on' if args.fsync else 'OFF'}, hard state "
        f"{'every save' if args.hard_state else 'never'}, in {where}"
    )
    print(
        f"{'batch':>6} {'entries/s':>10} {'saves/s':>8} {'fsyncs':>7} {'fsync/save':>10} "
        f"{'wal bytes':>10} {'B/entry':>8}"
    )
    for r in results:
        print(
            f"{r.batch:>6} {r.entries_per_second:>10} {r.saves_per_second:>8} {r.fsyncs:>7} "
            f"{r.fsyncs_per_save:>10} {r.wal_bytes:>10} {r.wal_bytes_per_entry:>8}"
        )
    return 0
