"""``client.botfarm``: many bots in one process over rooms, on real node processes."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from integration_helpers import wait_for

from client.api import Client
from client.botfarm import IDS_PER_LANE, BotFarm
from nodes.local import LocalCluster


def test_a_farm_shares_lanes_and_refuses_overfull_rooms(cluster3: LocalCluster) -> None:
    farm = BotFarm(cluster3.cluster, 2 * IDS_PER_LANE + 1, 26, seed=3)
    try:
        # 101 bots: 3 lanes of one DEALER per node, not a link per bot
        assert len(farm.link.lanes) == 3
        assert all(len(lane) == 3 for lane in farm.link.lanes)
        assert len({s.client_id for s in farm.sessions}) == 2 * IDS_PER_LANE + 1
        assert {s.lane for s in farm.sessions} == {0, 1, 2}
    finally:
        farm.close()
    with pytest.raises(ValueError, match="16 at most"):
        BotFarm(cluster3.cluster, 34, 2)


def test_farm_bots_seat_once_start_their_games_and_hit(
        make_cluster: Callable[..., LocalCluster]) -> None:
    lc = make_cluster(3)
    farm = BotFarm(lc.cluster, 8, 2, seed=5, lobby_wait_s=0.3)
    try:
        def started() -> bool:
            farm.turn(5)
            return farm.stats.latencies_ms != [] and all(
                (v := farm.feeds.view(r)) is not None
                and v["table"]["game_state"]["game_number"] >= 1 for r in farm.by_room)

        wait_for(started, 30, f"a game and a broadcast hit in both rooms ({farm.summary_line()})",
                 every=0)
        assert len(farm.by_room) == 2
        assert farm.seated_count() == 8
        # one create per room, one join per other bot, one ready each: a bot never acts on a
        # view older than its last answer (it would send the same command again)
        assert farm.stats.sent["create"] == 2
        assert farm.stats.sent["join"] == 6
        assert farm.stats.sent["ready"] == 8
        # the rooms' hosts are bots: with no person in the room a bot host starts the game
        assert farm.stats.sent["start"] == 2
    finally:
        farm.close()


def test_farm_views_move_when_the_followed_node_dies_and_bots_play_on(
        make_cluster: Callable[..., LocalCluster]) -> None:
    lc = make_cluster(3)
    farm = BotFarm(lc.cluster, 8, 2, seed=6, lobby_wait_s=0.3)
    try:
        def broadcast_hits() -> int:
            farm.turn(5)
            return len(farm.stats.latencies_ms)

        wait_for(lambda: broadcast_hits() >= 3, 30, "broadcast hits", every=0)
        followed = farm.feeds.node
        lc.kill(followed)
        seen = len(farm.stats.latencies_ms)
        wait_for(lambda: broadcast_hits() >= seen + 3 and farm.feeds.node != followed,
                 30, f"hits broadcast by another node than {followed} ({farm.summary_line()})",
                 every=0)
        assert farm.feeds.moves >= 1
        assert all(farm.feeds.view(r) is not None for r in farm.by_room)
        # the views kept from the new node's streams reach the scores the nodes hold
        farm.acting = False
        with Client(lc.cluster) as c:
            def scores_agree() -> bool:
                farm.turn(5)
                for room in farm.by_room:
                    read = c.read("rooms", {"op": "room", "room": room})["room"]["table"]
                    view = farm.feeds.view(room)
                    if view is None or view["table"]["scores"] != read["scores"]:
                        return False
                return True

            wait_for(scores_agree, 15, "the farm's views to hold the nodes' scores", every=0)
    finally:
        farm.close()
