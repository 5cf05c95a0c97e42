"""Determinism and snapshots: every node applies the same entries to the same state and
gets the same results; a snapshot restored on another node continues exactly like the
node it was taken from (thesis 5.1: snapshotting the state machine)."""

from __future__ import annotations

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nodes.kv import KeyValue
from nodes.statemachine import Applied, Replicated, encode_command

from .strategies import logs

TTL = 7_700  # at 9_000, p2 (last used at 1_100) has expired but p3 (1_400) has not


def replica() -> Replicated:
    return Replicated([KeyValue()], session_ttl_ms=TTL, max_sessions=2)


def feed(node: Replicated, entries: list[bytes], first_index: int = 1) -> list[Applied]:
    return [node.apply_entry(first_index + i, 1, p) for i, p in enumerate(entries)]


def scenario() -> list[bytes]:
    """A log that touches every feature: keys, counters, cas, batches, locks, retries,
    stale seqs, session expiry and eviction, no-ops and garbage."""

    def cmd(client: str, seq: int, at: int, command: dict) -> bytes:
        return encode_command(client, seq, at, "kv", command)

    return [
        b"",
        cmd("p1", 1, 1_000, {"op": "put", "key": "score/p1", "value": 10}),
        cmd("p2", 1, 1_001, {"op": "lock", "name": "ball", "holder": "p2", "ttl_ms": 300}),
        cmd("p1", 1, 1_002, {"op": "put", "key": "score/p1", "value": 10}),  # retry
        cmd("p1", 2, 1_003, {"op": "incr", "key": "score/p1", "by": 5}),
        b"\xc1garbage",
        cmd(
            "p1",
            3,
            1_004,
            {
                "op": "batch",
                "conditions": [{"key": "score/p1", "equals": 15}],
                "ops": [
                    {"op": "decr", "key": "score/p1"},
                    {"op": "put", "key": "log", "value": ["x"]},
                ],
            },
        ),
        cmd(
            "p2", 2, 1_100, {"op": "cas", "key": "log", "expected": ["x"], "value": {"n": b"\x01"}}
        ),
        # a third session beyond max_sessions=2 evicts p1, the least recently used
        cmd("p3", 1, 1_400, {"op": "lock", "name": "ball", "holder": "p3", "ttl_ms": 9_000}),
        cmd("p1", 2, 1_400, {"op": "incr", "key": "score/p1"}),  # evicted: session expired
        cmd("p3", 2, 9_000, {"op": "unlock", "name": "ball", "holder": "p3"}),  # p2 expires
        cmd("p3", 1, 9_001, {"op": "delete", "key": "log"}),  # stale
        b"",
        cmd("p4", 1, 8_000, {"op": "batch", "ops": [{"op": "incr", "key": "log"}]}),  # old clock
    ]


def test_two_replicas_fed_the_same_entries_end_with_byte_identical_snapshots() -> None:
    first, second = replica(), replica()
    results_first = feed(first, scenario())
    results_second = feed(second, scenario())
    assert results_first == results_second
    assert first.snapshot() == second.snapshot()


def test_the_scenario_exercises_what_it_claims() -> None:
    applied = feed(replica(), scenario())
    outcomes = [a.result.get("error") if isinstance(a.result, dict) else a.result for a in applied]
    assert outcomes == [
        None, None, None, None, None, "bad_entry", None, None, None,
        "session_expired", None, "stale_sequence", None, "not_integer",
    ]  # fmt: skip
    assert applied[3].duplicate and applied[3].result == applied[1].result


@pytest.mark.parametrize("split", range(len(scenario()) + 1))
def test_snapshot_restore_then_continue_gives_the_same_results_as_without(split: int) -> None:
    entries = scenario()
    straight = replica()
    expected = feed(straight, entries)

    before = replica()
    feed(before, entries[:split])
    restored = replica()
    restored.restore(before.snapshot())
    assert restored.snapshot() == before.snapshot()
    assert restored.applied_index == split
    assert feed(restored, entries[split:], first_index=split + 1) == expected[split:]
    assert restored.snapshot() == straight.snapshot()


@settings(max_examples=150, deadline=None)
@given(entries=logs())
def test_replicas_fed_the_same_random_log_agree_byte_for_byte(entries: list[bytes]) -> None:
    first, second = replica(), replica()
    assert feed(first, entries) == feed(second, entries)
    assert first.snapshot() == second.snapshot()


@settings(max_examples=150, deadline=None)
@given(entries=logs(), data=st.data())
def test_a_snapshot_taken_anywhere_in_a_random_log_continues_like_the_original(
    entries: list[bytes], data: st.DataObject
) -> None:
    split = data.draw(st.integers(0, len(entries)))
    straight = replica()
    expected = feed(straight, entries)
    before = replica()
    feed(before, entries[:split])
    restored = replica()
    restored.restore(before.snapshot())
    assert feed(restored, entries[split:], first_index=split + 1) == expected[split:]
    assert restored.snapshot() == straight.snapshot()


def test_the_snapshot_is_msgpack_with_applied_sessions_and_machines() -> None:
    node = replica()
    feed(node, scenario())
    snap = msgpack.unpackb(node.snapshot(), strict_map_key=False)
    assert snap["applied"] == len(scenario())
    assert set(snap) >= {"applied", "sessions", "machines"} and list(snap["machines"]) == ["kv"]
    assert [live[0] for live in snap["sessions"]["live"]] == ["p3", "p4"]


def test_restore_replaces_the_whole_state() -> None:
    empty = replica().snapshot()
    node = replica()
    feed(node, scenario())
    node.restore(empty)
    assert node.snapshot() == empty
    assert node.query("kv", {"op": "get", "key": "score/p1"})["found"] is False


def test_kv_snapshot_restore_round_trips_keys_versions_locks_and_revision() -> None:
    node = replica()
    feed(node, scenario())
    kv = node.machines["kv"]
    copy = KeyValue()
    copy.restore(msgpack.unpackb(msgpack.packb(kv.snapshot()), strict_map_key=False))
    assert copy.snapshot() == kv.snapshot()
    for query in ({"op": "keys"}, {"op": "get", "key": "log"}, {"op": "lock_info", "name": "ball"}):
        assert copy.query(query) == kv.query(query)


class Other(KeyValue):
    name = "other"


def test_restoring_a_snapshot_of_other_machines_is_refused() -> None:
    snap = Replicated([KeyValue(), Other()]).snapshot()
    node = replica()
    before = node.snapshot()
    with pytest.raises(ValueError, match="registered"):
        node.restore(snap)
    assert node.snapshot() == before


@pytest.mark.parametrize("data", [b"", b"\xc1", msgpack.packb({"format": 99}), msgpack.packb([1])])
def test_restoring_a_malformed_snapshot_raises_value_error(data: bytes) -> None:
    with pytest.raises(ValueError, match="snapshot"):
        replica().restore(data)


@pytest.mark.parametrize(
    "data", [None, {"revision": 1}, {"revision": 0, "clock_ms": 0, "keys": [1], "locks": []}]
)
def test_kv_restore_of_malformed_data_raises_value_error(data: object) -> None:
    with pytest.raises(ValueError, match="kv snapshot"):
        KeyValue().restore(data)


def test_a_snapshot_taken_before_a_machine_existed_restores_it_fresh() -> None:
    """An older version's data directory (a snapshot without a machine registered
    since, e.g. ``rooms``) still starts: the new machine had no entry before the
    snapshot's index, so every replica starts it from its registered state."""
    old = Replicated([KeyValue()])
    feed(old, [encode_command("p1", 1, 1_000, "kv", {"op": "put", "key": "k", "value": 1})])
    node = Replicated([KeyValue(), Other()])
    registered = node.machines["other"].snapshot()
    feed(node, [encode_command("p2", 1, 2_000, "other", {"op": "put", "key": "x", "value": 2})])
    assert node.machines["other"].snapshot() != registered
    node.restore(old.snapshot())
    assert node.applied_index == 1
    assert node.machines["kv"].snapshot() == old.machines["kv"].snapshot()
    assert node.machines["other"].snapshot() == registered
