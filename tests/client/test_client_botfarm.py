"""``client.botfarm`` without nodes: what a bot waits for after an answer."""

from __future__ import annotations

from pathlib import Path

import pytest

from client.botfarm import BotFarm, FarmCall, RoomFeed
from nodes.local import make_cluster_file


def _answer(farm: BotFarm, i: int, result: dict, index: int) -> FarmCall:
    s = farm.sessions[i]
    call = FarmCall("submit", {"machine": "rooms", "seq": 1, "cmd": {"type": "ready", "room": "r1"}},
                    s.client_id, s.lane, done=True, ok=True, result=result, index=index)
    s._answered(call)
    return call


def test_a_bot_waits_for_its_accepted_command_in_the_view_not_for_a_refused_one(
        tmp_path: Path) -> None:
    farm = BotFarm(make_cluster_file(tmp_path, 3), 4, 1, seed=2)
    try:
        s = farm.sessions[1]
        # refused: nothing changed and nothing is published at that index, so waiting for
        # the view to reach it would hold the bot until some other command of the room
        _answer(farm, 1, {"ok": False, "error": "not_ready", "message": "no"}, 40)
        assert s.seen_index == 0
        assert farm.stats.refused["ready:not_ready"] == 1
        # accepted: the bot acts again once its room's view shows index 41
        _answer(farm, 1, {"ok": True, "room": "r1", "ready": True}, 41)
        assert s.seen_index == 41
        assert farm.stats.acked == 2
    finally:
        farm.close()


def test_farms_take_fresh_client_ids_and_refuse_more_rooms_than_bots(tmp_path: Path) -> None:
    cf = make_cluster_file(tmp_path, 3)
    one, two = BotFarm(cf, 4, 1, seed=9), BotFarm(cf, 4, 1, seed=9)
    try:
        # same seed, same choices; but a second run under the first one's ids would start
        # their sequence numbers over against the cluster's session table
        ids = {s.client_id for s in one.sessions}
        assert not ids & {s.client_id for s in two.sessions}
        assert len(ids) == 4
    finally:
        one.close()
        two.close()
    with pytest.raises(ValueError, match="use --rooms 3 or fewer"):
        BotFarm(cf, 3, 5)
    with pytest.raises(ValueError, match="use --rooms 3 or more"):
        BotFarm(cf, 40, 2)


def test_a_room_read_from_a_node_behind_its_creation_is_read_again(tmp_path: Path) -> None:
    farm = BotFarm(make_cluster_file(tmp_path, 3), 4, 1, seed=2)
    try:
        feeds = farm.feeds
        feeds.node = "n2"
        feed = feeds.rooms["r1"] = RoomFeed("r1", min_index=50)

        def answer(index: int) -> None:
            call = FarmCall("read", {"machine": "rooms", "query": {"op": "room", "room": "r1"}},
                            feeds.reader_id, 0, pinned="n2", done=True, ok=True, index=index,
                            result={"ok": False, "error": "no_such_room", "message": "no"})
            feed.reading = call
            feeds._on_read(feed, call)

        # n2 answered at index 40: it has not applied the create (index 50) yet
        answer(40)
        assert feed.reading is not None and not feed.reading.done
        assert feed.reading.pinned == "n2"
        # at index 60 the room is really gone: no more reads
        answer(60)
        assert feed.reading is None and feed.index == -1
    finally:
        farm.close()
