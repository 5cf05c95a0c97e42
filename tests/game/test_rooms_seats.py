"""Seats survive a disconnect (issue 12 item 4): away, reclaim with a token, freed after grace."""

from __future__ import annotations

import copy
import json

import pytest
from rooms_helpers import SECRET, RoomsLog

from game.config import GameConfig
from game.rooms_machine import RoomsMachine

CONFIG = GameConfig(
    rounds=1, targets_per_round=3, countdown_ms=100, round_ms=60_000, idle_ms=15_000
)
GRACE_MS = 30_000


@pytest.fixture
def playing() -> RoomsLog:
    """Room r1: ann (c1, host) and bob (c2) in round 1; ann has scored a point."""
    log = RoomsLog(CONFIG, grace_ms=GRACE_MS)
    ann = log.do("c1", "quick_play", name="ann")
    log.do("c2", "quick_play", name="bob")
    for client in ("c1", "c2"):
        log.do(client, "ready", room="r1", ready=True)
    log.do("c1", "start", room="r1")
    log.wait(CONFIG.countdown_ms)
    log.timers()
    assert log.do("c1", "hit", room="r1", round=1, target=0)["score"] == 1
    assert ann["token"] == log.token("r1", "ann")
    return log


def test_a_disconnected_player_gets_seat_name_points_and_host_back_with_the_token(
    playing: RoomsLog,
) -> None:
    token = playing.token("r1", "ann")
    away = playing.do("c1", "disconnect", room="r1")
    assert away == {
        "ok": True,
        "room": "r1",
        "name": "ann",
        "until_ms": playing.clock_ms + GRACE_MS,
    }
    playing.wait(GRACE_MS - 1)
    playing.do("c2", "ping", room="r1")  # the game goes on meanwhile
    back = playing.do("c9", "reclaim", room="r1", name="Ann", token=token)
    assert back["ok"] and (back["name"], back["score"], back["host"]) == ("ann", 1, True)
    assert back["token"] != token
    assert playing.table("r1")["players"]["ann"]["client_id"] == "c9"
    assert playing.state["clients"]["c9"] == ["r1", "ann"] and "c1" not in playing.state["clients"]
    assert playing.types() == ["seat_reclaimed"]
    assert playing.do("c9", "hit", room="r1", round=1, target=1)["score"] == 2


def test_a_token_is_single_use_and_the_old_session_loses_the_seat(playing: RoomsLog) -> None:
    token = playing.token("r1", "ann")
    assert playing.do("c9", "reclaim", room="r1", name="ann", token=token)["ok"]
    before = copy.deepcopy(playing.state)
    assert playing.do("c8", "reclaim", room="r1", name="ann", token=token)["error"] == "bad_token"
    assert playing.do("c1", "ping", room="r1")["error"] == "not_in_room"
    assert playing.state == before


@pytest.mark.parametrize(
    "name, token",
    [
        ("ann", "0" * 32),
        ("bob", "ann's"),
        ("zed", None),
        ("ann", 12),
    ],
)
def test_a_wrong_token_or_name_reclaims_nothing(
    playing: RoomsLog, name: str, token: object
) -> None:
    before = copy.deepcopy(playing.state)
    result = playing.do("c9", "reclaim", room="r1", name=name, token=token)
    assert result["error"] == "bad_token" and "join as a new player" in result["message"]
    assert playing.state == before


def test_another_seats_token_does_not_open_this_seat(playing: RoomsLog) -> None:
    bobs = playing.token("r1", "bob")
    assert playing.do("c9", "reclaim", room="r1", name="ann", token=bobs)["error"] == "bad_token"


def test_a_session_that_sits_elsewhere_cannot_reclaim(playing: RoomsLog) -> None:
    playing.do("c7", "create", name="other", player="cy")
    token = playing.token("r1", "ann")
    assert playing.do("c7", "reclaim", room="r1", name="ann", token=token)["error"] == "in_room"


def test_after_the_grace_period_the_seat_is_freed_and_the_name_joins_as_new(
    playing: RoomsLog,
) -> None:
    token = playing.token("r1", "ann")
    playing.do("c1", "disconnect", room="r1")
    playing.wait(GRACE_MS - 1)
    playing.timers()  # bob, silent since the start, goes away; ann's seat is still held
    assert "ann" in playing.table("r1")["players"]
    playing.wait(1)
    assert playing.timers()["rooms"] == ["r1"]
    left = [e for e in playing.events if e["type"] == "player_left"]
    assert left == [{"type": "player_left", "name": "ann", "reason": "grace", "room": "r1"}]
    assert "ann" not in playing.table("r1")["players"] and "c1" not in playing.state["clients"]
    assert playing.do("c9", "reclaim", room="r1", name="ann", token=token)["error"] == "bad_token"
    joined = playing.do("c9", "join", room="r1", name="ann")
    assert joined["ok"] and joined["spectator"] and playing.table("r1")["scores"].get("ann") is None


def test_a_silent_member_goes_away_when_idle_and_keeps_the_seat_for_the_grace(
    playing: RoomsLog,
) -> None:
    last_seen = playing.table("r1")["players"]["bob"]["last_seen_ms"]
    playing.wait(CONFIG.idle_ms)
    playing.do("c1", "ping", room="r1")
    playing.timers()
    away = [e for e in playing.events if e["type"] == "seat_away"]
    assert away == [
        {
            "type": "seat_away",
            "name": "bob",
            "until_ms": last_seen + CONFIG.idle_ms + GRACE_MS,
            "reason": "idle",
            "room": "r1",
        }
    ]
    assert "bob" in playing.table("r1")["players"]
    assert playing.do("c2", "ping", room="r1")["ok"]  # the same session speaks again
    assert playing.types() == ["seat_back"]
    assert playing.state["rooms"]["r1"]["seats"]["bob"]["away_ms"] is None


def test_an_idle_seat_is_freed_grace_after_it_went_idle_not_after_a_timer_noticed() -> None:
    log = RoomsLog(CONFIG, grace_ms=GRACE_MS)
    log.do("c1", "quick_play", name="ann")
    log.do("c2", "quick_play", name="bob")
    joined_ms = log.clock_ms
    log.wait(CONFIG.idle_ms + GRACE_MS + 5_000)  # no timer ran meanwhile (a leader change)
    log.do("c2", "ping", room="r1")
    log.timers()
    assert log.types()[:3] == ["seat_away", "player_left", "host_changed"]
    assert log.events[0]["until_ms"] == joined_ms + CONFIG.idle_ms + GRACE_MS


def test_the_secret_tokens_and_codes_never_appear_in_events_listings_or_public_state() -> None:
    log = RoomsLog(CONFIG, grace_ms=GRACE_MS)
    issued = [log.do("c1", "create", name="priv", private=True, player="ann")]
    issued.append(log.do("c2", "join", code=issued[0]["code"], name="bob"))
    issued.append(log.do("c3", "quick_play", name="cy"))
    issued.append(log.do("c9", "reclaim", room="r1", name="ann", token=issued[0]["token"]))
    log.do("c2", "disconnect", room="r1")
    secrets = {SECRET, issued[0]["code"]} | {r["token"] for r in issued}
    assert all(secret for secret in secrets) and len(secrets) == 2 + len(issued)
    published = [
        RoomsMachine.for_publication({"type": "x", "token": r["token"]}, r) for r in issued
    ]
    assert all(command is None for command, _ in published)
    readable = json.dumps(
        [
            published,
            log.published,
            log.machine.public_snapshot(),
            [
                log.machine.query(q)
                for q in (
                    {"op": "rooms"},
                    {"op": "room", "room": "r1"},
                    {"op": "state"},
                    {"op": "leaderboard"},
                )
            ],
        ]
    )
    assert "r1" in readable and "priv" in readable
    for secret in secrets:
        assert secret not in readable, secret
    full = json.dumps(log.machine.snapshot())  # the Raft snapshot does hold the secret
    assert SECRET in full
