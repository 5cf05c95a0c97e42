"""``arena rooms``, ``arena game --room`` and ``arena up --rooms`` (issue 12) on real nodes."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from client.api import Client
from nodes.cli import main
from nodes.clusterfile import Timing
from nodes.launcher import open_rooms
from nodes.local import LocalCluster


@pytest.fixture
def cluster3(tmp_path: Path) -> Iterator[LocalCluster]:
    lc = LocalCluster.create(tmp_path / "cluster", 3, timing=Timing(election_ms=(150.0, 300.0)),
                             admin_key="sesame")
    try:
        lc.start_all()
        with Client(lc.cluster, deadline=5.0) as c:
            c.wait_for_leader(10.0)
        yield lc
    finally:
        lc.kill_all()  # by pid, pass or fail


def _run(lc: LocalCluster, *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, ["--cluster", str(lc.cluster_path), *args],
                                env={"ARENA_CLUSTER": None, "ARENA_ADMIN_KEY": None})
    return result.exit_code, result.output


def test_rooms_create_list_show_close_and_game_room(cluster3: LocalCluster) -> None:
    assert open_rooms(cluster3, 2) == 2  # what `arena up --rooms 2` does
    code, out = _run(cluster3, "rooms", "create", "Quiet room", "--max-players", "4",
                     "--rounds", "1", "--json")
    assert code == 0, out
    made = json.loads(out)
    assert made["room"] == "r3" and made["code"] is None and "token" not in made
    code, out = _run(cluster3, "rooms", "create", "hidden", "--private")
    assert code == 0 and "join code" in out, out

    code, out = _run(cluster3, "rooms", "--json")
    rows = json.loads(out)
    assert [r["name"] for r in rows] == ["Room 1", "Room 2", "Quiet room"], rows
    assert rows[2]["max_players"] == 4 and rows[2]["leader"] in cluster3.cluster.ids()
    code, out = _run(cluster3, "rooms", "list")
    assert code == 0 and "Quiet room" in out and "0/4" in out and "hidden" not in out, out

    code, out = _run(cluster3, "rooms", "show", "r3")
    assert code == 0 and "Quiet room" in out and "lobby" in out, out
    code, out = _run(cluster3, "game", "--room", "r3", "--json")
    assert code == 0 and json.loads(out)["config"]["rounds"] == 1, out
    code, out = _run(cluster3, "rooms", "show", "r99")
    assert code != 0 and "no open room" in out, out

    code, out = _run(cluster3, "rooms", "close", "r3", "--admin-key", "wrong")
    assert code != 0 and "wrong admin key" in out, out  # an admin action
    code, out = _run(cluster3, "rooms", "close", "r3", "--admin-key", "sesame")
    assert code == 0 and "closed room r3" in out, out
    code, out = _run(cluster3, "rooms", "--json")
    assert [r["room"] for r in json.loads(out)] == ["r1", "r2"]
    code, out = _run(cluster3, "rooms", "close")
    assert code != 0 and "needs ROOM" in out
