"""A player's commands are bound to its session (issue "Proof", item 4: security).

The game binds a player to the client id that joined. Client ids are public (every
update and the game state carry them), so an id made by the client library is a hash
of a secret session key that every request must carry: nobody acts for another
player, neither with a name in the command nor under the other's client id."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from security_helpers import leader_of, wait_for

from client.api import Client, Rejected
from nodes.local import LocalCluster
from nodes.security import is_bound, new_session, session_client_id, session_ok


def _state(c: Client) -> dict[str, Any]:
    return c.read("game", {"op": "state"})["state"]


def _game(c: Client, cmd: dict[str, Any]) -> dict[str, Any]:
    return c.submit("game", cmd)


def test_session_ids_are_hashes_of_a_key_only_their_holder_knows() -> None:
    cid, key = new_session()
    assert is_bound(cid) and cid == session_client_id(key) and key not in cid
    assert session_ok(cid, key)
    assert not session_ok(cid, None) and not session_ok(cid, key + "x") and not session_ok(cid, 7)
    other, _ = new_session()
    assert not session_ok(other, key)
    assert session_ok("window-alice", None)  # a hand-picked id stays unbound, as before


def test_a_second_client_cannot_act_for_another_player(
    secure3: LocalCluster, client_for: Callable[..., Client]
) -> None:
    alice, bob = client_for(secure3), client_for(secure3)
    wait_for(lambda: leader_of(alice), 5, "a leader")
    assert _game(alice, {"type": "join", "name": "alice"})["ok"]
    assert _game(bob, {"type": "join", "name": "bob"})["ok"]

    # naming the other player in a command acts on one's own seat only
    assert _game(bob, {"type": "ready", "ready": True, "name": "alice", "player": "alice"})["ok"]
    players = _state(alice)["players"]
    assert players["bob"]["ready"] is True and players["alice"]["ready"] is False
    r = _game(bob, {"type": "start", "name": "alice"})  # only the host (alice) may start
    assert not r["ok"] and r["error"] == "not_host"

    # under alice's (public) client id, without her session key: refused by the node
    assert players["alice"]["client_id"] == alice.link.client_id
    for guess in (None, "guessed-key", bob.link.session_key):
        mallory = client_for(secure3, client_id=alice.link.client_id, session_key=guess)
        for cmd in ({"type": "leave"}, {"type": "ready", "ready": True},
                    {"type": "hit", "round": 1, "target": 0}):
            with pytest.raises(Rejected) as refused:
                _game(mallory, cmd)
            assert refused.value.code == "unauthorized"
        with pytest.raises(Rejected):
            mallory.read("game", {"op": "state"})
    players = _state(alice)["players"]
    assert players["alice"]["ready"] is False and "alice" in players

    # a real round: bob's hit, even "as alice", scores for bob
    assert _game(alice, {"type": "ready", "ready": True})["ok"]  # alice's session is intact
    assert _game(alice, {"type": "start"})["ok"]
    state = wait_for(lambda: (s := _state(alice))["game_state"]["phase"] == "round" and s, 6,
                     "the first round after the countdown")
    rnd = state["current_round"]
    target = next(t["id"] for t in rnd["targets"] if t["taken_by"] is None)
    r = _game(bob, {"type": "hit", "round": rnd["number"], "target": target, "player": "alice"})
    assert r["ok"], r
    scores = _state(alice)["scores"]
    assert scores == {"alice": 0, "bob": 1}

    # leave "as alice": bob leaves; then bob, no longer a member, cannot hit at all
    r = _game(bob, {"type": "leave", "name": "alice"})
    assert r["ok"] and r["name"] == "bob"
    players = _state(alice)["players"]
    assert "alice" in players and "bob" not in players
    r = _game(bob, {"type": "hit", "round": rnd["number"], "target": target + 1})
    assert not r["ok"] and r["error"] == "not_joined"
    assert _game(alice, {"type": "leave"})["ok"]
