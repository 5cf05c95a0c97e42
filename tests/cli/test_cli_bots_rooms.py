"""``arena bots --count N --rooms M`` on real nodes (issue 12)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from client.api import Client
from nodes.cli import main
from nodes.clusterfile import Timing
from nodes.local import LocalCluster


@pytest.fixture
def cluster3(tmp_path: Path) -> Iterator[LocalCluster]:
    lc = LocalCluster.create(tmp_path / "cluster", 3, timing=Timing(election_ms=(150.0, 300.0)))
    try:
        lc.start_all()
        with Client(lc.cluster, deadline=5.0) as c:
            c.wait_for_leader(10.0)
        yield lc
    finally:
        lc.kill_all()  # by pid, pass or fail


def test_bots_rooms_runs_one_farm_and_prints_its_summary(cluster3: LocalCluster) -> None:
    result = CliRunner().invoke(main, ["--cluster", str(cluster3.cluster_path), "bots",
                                       "--count", "6", "--rooms", "2", "--duration", "3",
                                       "--seed", "4"], env={"ARENA_CLUSTER": None})
    assert result.exit_code == 0, result.output
    assert "bots seed=4" in result.output
    last = result.output.strip().splitlines()[-1]
    assert last.startswith("rooms 2 | bots seated 6/6 |"), result.output
    assert "hit->broadcast" in last and "failovers" in last
    with Client(cluster3.cluster) as c:  # the bots left their rooms at the end
        rows = c.read("rooms", {"op": "rooms"})["rooms"]
    assert len(rows) == 2 and all(row["players"] == 0 for row in rows), rows


def test_bots_count_over_64_needs_rooms(cluster3: LocalCluster) -> None:
    result = CliRunner().invoke(main, ["--cluster", str(cluster3.cluster_path), "bots",
                                       "--count", "65"], env={"ARENA_CLUSTER": None})
    assert result.exit_code != 0
    assert "64 bots at most without --rooms" in result.output
