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


def test_due_command_returns_drop_idle_only_when_someone_is_idle() -> None:
    machine = GameMachine()
    idle_ms = machine.state["config"]["idle_ms"]
    assert machine.due_command(10**9) is None  # an empty table has nobody to drop
    machine.apply({"type": "join", "name": "ann"}, Entry(1, 1_000, "c1"))
    assert machine.due_command(1_000 + idle_ms - 1) is None
    assert machine.due_command(1_000 + idle_ms) == {"type": "drop_idle"}
    machine.apply({"type": "ping"}, Entry(2, 1_000 + idle_ms, "c1"))
    assert machine.due_command(1_000 + idle_ms) is None


def test_a_drop_idle_proposed_by_due_command_drops_the_idle_member() -> None:
    machine = GameMachine()
    machine.apply({"type": "join", "name": "ann"}, Entry(1, 1_000, "c1"))
    now_ms = 1_000 + machine.state["config"]["idle_ms"]
    command = machine.due_command(now_ms)
    assert command is not None
    result, _ = machine.apply(command, Entry(2, now_ms, "@game/n1/1"))
    assert result == {"ok": True, "dropped": ["ann"]}
    assert machine.due_command(now_ms) is None


def test_a_due_tick_is_proposed_before_drop_idle() -> None:
    machine = GameMachine()
    for index, (client, command) in enumerate(
        [
            ("c1", {"type": "join", "name": "ann"}),
            ("c2", {"type": "join", "name": "bob"}),
            ("c1", {"type": "ready", "ready": True}),
            ("c2", {"type": "ready", "ready": True}),
            ("c1", {"type": "start"}),
        ],
        start=1,
    ):
        assert machine.apply(command, Entry(index, 1_000, client))[0]["ok"]
    assert machine.due_command(1_000 + machine.state["config"]["idle_ms"]) == {"type": "tick"}


def test_restore_fills_in_presence_for_a_snapshot_that_predates_it() -> None:
    machine = GameMachine()
    machine.apply({"type": "join", "name": "ann"}, Entry(1, 1_000, "c1"))
    machine.apply({"type": "tick"}, Entry(2, 4_000, "@game/n1/1"))
    old = machine.snapshot()
    assert isinstance(old, dict)
    del old["players"]["ann"]["last_seen_ms"]
    del old["config"]["idle_ms"]
    restored = GameMachine()
    restored.restore(old)
    assert restored.state["players"]["ann"]["last_seen_ms"] == 4_000
    assert restored.state["config"]["idle_ms"] == 15_000
