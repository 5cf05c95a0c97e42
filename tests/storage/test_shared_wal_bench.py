"""The shared-WAL benchmark runs and shows group commit across groups: one fsync per
turn whatever the number of groups, against two per group with one DiskStorage each."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from nodes.bench.__main__ import main
from nodes.bench.shared_wal import bench_per_group, bench_shared


@pytest.mark.parametrize("groups", [1, 10, 100])
def test_a_turn_of_any_number_of_groups_costs_one_fsync_on_the_shared_wal(
    tmp_path: Path, groups: int
):
    shared = bench_shared(groups, 0.0, tmp_path / "s", fsync=False, max_turns=5)
    assert shared.fsyncs_by_kind == {"wal": shared.turns}
    assert shared.entries_per_second > 0
    per_group = bench_per_group(groups, 0.0, tmp_path / "p", fsync=False, max_turns=5)
    # each save: its WAL append and its promise (the hard state once, at the first turn)
    assert per_group.fsyncs_per_turn >= 2 * groups


def test_the_benchmark_command_prints_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    argv = ["shared-wal", "--groups", "3", "--seconds", "0", "--no-fsync", "--json"]
    assert main([*argv, "--dir", str(tmp_path)]) == 0
    shared, per_group = json.loads(capsys.readouterr().out)
    assert (shared["storage"], per_group["storage"]) == ("shared", "per-group")
    assert shared["groups"] == 3 and shared["fsyncs_per_turn"] == 1.0
