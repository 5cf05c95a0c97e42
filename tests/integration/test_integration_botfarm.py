"""``client.botfarm``: many bots in one process over rooms, on real node processes."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from integration_helpers import wait_for

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
