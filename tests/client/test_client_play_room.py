"""``arena up --players 2 --bots 2`` (scripts/play) puts its two windows and its bots
in ONE room, with a person as host (issue 12, item 3). Headless windows
(SDL_VIDEODRIVER=dummy, inherited from conftest) in real processes."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import pytest

from client.api import Client, wait_until
from client.roomsession import seat_file
from nodes.launcher import PLAY_ROOM, launch
from nodes.local import LocalCluster

pytestmark = pytest.mark.slow


def test_arena_up_seats_both_windows_and_both_bots_in_one_room_hosted_by_player1(
    tmp_path: Path,
) -> None:
    directory = tmp_path / "up"
    lc: LocalCluster | None = None
    try:
        lc = launch(directory, 3, players=2, bots=2, block=False, live_status=False)
        seat = seat_file(lc.cluster_path, lc.cluster.cluster_id, "Player1")
        launcher_token = json.loads(seat.read_text())["token"]  # the launcher seated Player1
        with Client(lc.cluster, deadline=5.0) as c:

            def the_room() -> dict | None:
                rows = c.read("rooms", {"op": "rooms"})["rooms"]
                assert [r["name"] for r in rows] == [PLAY_ROOM], rows  # one room only
                room = c.read("rooms", {"op": "room", "room": rows[0]["room"]})["room"]
                return room if len(room["table"]["players"]) == 4 else None

            room = wait_until(the_room, 60.0, "2 windows and 2 bots in the players' room")
        table = room["table"]
        assert set(table["players"]) == {"Player1", "Player2", "bot1", "bot2"}
        assert table["game_state"]["host"] == "Player1"
        assert set(room["bots"]) == {"bot1", "bot2"}
        # Player1's window took the launcher's seat over (a reclaim writes a new token)
        wait_until(
            lambda: json.loads(seat.read_text())["token"] != launcher_token,
            30.0,
            "Player1's window to reclaim the seat the launcher made",
        )
    finally:
        extras = directory / "extras.json"
        for pid in json.loads(extras.read_text()) if extras.exists() else []:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        if lc is not None:
            lc.kill_all()
