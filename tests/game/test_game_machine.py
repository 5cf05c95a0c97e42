"""GameMachine: the rules behind the node layer's StateMachine protocol."""

from __future__ import annotations

from dataclasses import dataclass

import msgpack
import pytest

from game.machine import GameMachine, seed_from


@dataclass(frozen=True)
class Entry:
    index: int
    timestamp_ms: int
    client_id: str


def test_the_machine_applies_commands_with_the_nodes_entry_context() -> None:
    machine = GameMachine(seed=seed_from("cluster-1"))
    result, events = machine.apply({"type": "join", "name": "ann"}, Entry(1, 500, "c1"))
    assert result["ok"] and events[0]["type"] == "player_joined"
    assert machine.state["now_ms"] == 500
    assert machine.query({"op": "player_of", "client_id": "c1"}) == {"ok": True, "name": "ann"}


def test_every_node_derives_the_same_seed_from_the_cluster_id() -> None:
    assert seed_from("cluster-1") == seed_from("cluster-1") != seed_from("cluster-2")
    assert 0 <= seed_from("cluster-1") < 2**63


def test_a_snapshot_restored_on_another_node_gives_the_same_bytes() -> None:
    a = GameMachine(seed=3)
    a.apply({"type": "join", "name": "ann"}, Entry(1, 500, "c1"))
    b = GameMachine()
    b.restore(msgpack.unpackb(msgpack.packb(a.snapshot())))
    assert msgpack.packb(b.snapshot()) == msgpack.packb(a.snapshot())


def test_restore_refuses_data_that_is_not_a_game_snapshot() -> None:
    with pytest.raises(ValueError, match="game snapshot"):
        GameMachine().restore({"kv": {}})


def test_an_unknown_query_is_answered_with_an_error_not_an_exception() -> None:
    assert GameMachine().query({"op": "drop_tables"})["error"] == "bad_query"
