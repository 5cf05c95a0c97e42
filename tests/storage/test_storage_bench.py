"""The storage benchmark runs and shows group commit: one WAL fsync per save."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from nodes.bench.__main__ import main
from nodes.bench.storage import bench_storage


def test_the_benchmark_makes_one_wal_fsync_per_save_whatever_the_batch(tmp_path: Path):
    for batch in (1, 10, 100):
        result = bench_storage(300, batch, directory=tmp_path, fsync=False)
        assert result.saves == -(-300 // batch)
        assert result.fsyncs_by_kind["wal"] == result.saves
        # the term and vote are written once; a moving commit index costs no fsync
        assert result.fsyncs_by_kind["hardstate"] == 1
        assert result.wal_bytes > 300 * 64


def test_the_benchmark_command_prints_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    argv = ["storage", "--entries", "50", "--batch", "10", "--no-fsync", "--json"]
    assert main([*argv, "--dir", str(tmp_path)]) == 0
    (result,) = json.loads(capsys.readouterr().out)
    assert result["batch"] == 10 and result["saves"] == 5
