"""Replicated: routing by machine name and client sessions.

Reference: thesis 6.3, "Implementing linearizable semantics": every command carries
(client_id, seq); the state machine remembers the last result per client so a retried
command is applied once; sessions expire (here: unused for session_ttl_ms, judged by
entry timestamps) and an expired client gets an error rather than a double application.
"""

from __future__ import annotations

import pytest

from nodes.kv import KeyValue
from nodes.statemachine import Applied, ApplyContext, Replicated, encode_command

TTL = 10_000


class Node:
    """A Replicated fed entries one by one, as a node's apply loop does."""

    def __init__(self, **options: object) -> None:
        self.sm = Replicated([KeyValue()], **options)  # type: ignore[arg-type]
        self.index = 0

    def send(self, client: str, seq: int, at: int, cmd: dict, machine: str = "kv") -> Applied:
        self.index += 1
        return self.sm.apply_entry(self.index, 1, encode_command(client, seq, at, machine, cmd))

    def incr(self, client: str, seq: int, at: int = 1_000, key: str = "n") -> Applied:
        return self.send(client, seq, at, {"op": "incr", "key": key})

    def value(self, key: str = "n") -> object:
        return self.sm.query("kv", {"op": "get", "key": key})["value"]  # type: ignore[index]


@pytest.fixture
def node() -> Node:
    return Node(session_ttl_ms=TTL)


def test_a_command_is_routed_to_the_machine_it_names_and_its_events_are_tagged(node) -> None:
    applied = node.incr("alice", 1)
    assert applied.result == {"ok": True, "value": 1, "version": 1}
    assert (applied.client_id, applied.seq, applied.duplicate) == ("alice", 1, False)
    assert applied.events == [
        {"type": "state:changed", "key": "n", "old": None, "new": 1, "version": 1, "machine": "kv"}
    ]


def test_a_retried_command_is_applied_once_and_gets_the_first_result(node) -> None:
    first = node.incr("alice", 1)
    retry = node.incr("alice", 1, at=2_000)
    assert retry.duplicate is True and retry.result == first.result
    assert retry.events == []  # nothing changed, so nothing to publish
    assert node.value() == 1
    assert node.incr("alice", 2).result["value"] == 2


def test_a_retry_is_answered_with_the_first_result_even_when_it_was_an_error(node) -> None:
    node.send("alice", 1, 1_000, {"op": "put", "key": "s", "value": "text"})
    first = node.send("alice", 2, 1_000, {"op": "incr", "key": "s"})
    node.send("bob", 1, 1_000, {"op": "put", "key": "s", "value": 5})
    retry = node.send("alice", 2, 1_000, {"op": "incr", "key": "s"})
    assert first.result["error"] == "not_integer"
    assert retry.duplicate and retry.result == first.result and node.value("s") == 5


def test_a_seq_lower_than_the_last_one_gets_stale_sequence(node) -> None:
    node.incr("alice", 1)
    node.incr("alice", 5)  # gaps are fine: 2 to 4 never reached the log
    stale = node.incr("alice", 3)
    assert stale.result["ok"] is False and stale.result["error"] == "stale_sequence"
    assert stale.result["message"].startswith("stale sequence")
    assert stale.result["last_seq"] == 5 and stale.duplicate is False
    assert node.value() == 2


def test_sessions_of_different_clients_are_independent(node) -> None:
    node.incr("alice", 1)
    assert node.incr("bob", 1).duplicate is False
    assert node.incr("alice", 1).duplicate is True
    assert node.value() == 2


def test_a_new_session_opens_only_with_seq_one(node) -> None:
    result = node.incr("newcomer", 4).result
    assert result["error"] == "session_expired" and "seq 1" in result["message"]
    assert node.value() is None
    assert node.incr("newcomer", 1).result["ok"] is True


def test_a_session_unused_for_the_ttl_expires_and_a_retry_gets_session_expired(node) -> None:
    node.incr("alice", 1, at=1_000)
    node.incr("alice", 2, at=2_000)
    node.incr("bob", 1, at=2_000 + TTL)  # alice unused for TTL: her session expires
    retry = node.incr("alice", 2, at=2_000 + TTL)
    assert retry.result["error"] == "session_expired"
    assert retry.result["message"].startswith("session expired")
    assert "expired" in retry.result["message"] and retry.duplicate is False
    assert node.incr("alice", 3, at=2_000 + TTL).result["error"] == "session_expired"
    assert node.value() == 3  # alice twice, bob once: no double application


def test_an_expired_client_retrying_its_first_command_is_not_applied_twice(node) -> None:
    node.incr("alice", 1, at=1_000)
    node.incr("bob", 1, at=1_000 + TTL)
    assert node.incr("alice", 1, at=1_000 + TTL).result["error"] == "session_expired"
    assert node.value() == 2


def test_a_session_in_use_does_not_expire(node) -> None:
    for step in range(1, 6):
        assert node.incr("alice", step, at=step * (TTL - 1)).result["ok"] is True
    assert node.incr("alice", 5, at=5 * (TTL - 1)).duplicate is True


def test_a_retry_or_stale_seq_keeps_a_session_alive(node) -> None:
    node.incr("alice", 1, at=0)
    node.incr("alice", 1, at=TTL - 1)  # duplicate, but it is a use
    node.incr("bob", 1, at=2 * TTL - 2)
    assert node.incr("alice", 2, at=2 * TTL - 2).result["ok"] is True


def test_session_expiry_is_judged_by_entry_timestamps_not_by_entry_count(node) -> None:
    node.incr("alice", 1, at=1_000)
    for seq in range(1, 200):
        node.incr("bob", seq, at=1_000 + TTL - 1)
    assert node.incr("alice", 1, at=1_000 + TTL - 1).duplicate is True


def test_time_never_goes_backwards_when_a_new_leader_has_a_slower_clock(node) -> None:
    node.incr("alice", 1, at=50_000)
    node.send("alice", 2, 50_000, {"op": "lock", "name": "door", "holder": "a", "ttl_ms": 100})
    # a new leader whose clock is 10 s behind does not turn time back: the lock is held
    # until 50_100 on every node
    late = node.send("bob", 1, 40_000, {"op": "lock", "name": "door", "holder": "b", "ttl_ms": 100})
    assert node.sm.clock_ms == 50_000 and late.result["error"] == "lock_held"
    later = node.send("bob", 2, 50_100, {"op": "lock", "name": "door", "holder": "b", "ttl_ms": 1})
    assert later.result["ok"] is True


def test_beyond_max_sessions_the_least_recently_used_session_is_evicted() -> None:
    node = Node(session_ttl_ms=TTL, max_sessions=2)
    node.incr("a", 1)
    node.incr("b", 1)
    node.incr("a", 2)
    node.incr("c", 1)  # evicts b, the least recently used
    assert node.sm.session_count == 2
    assert node.incr("b", 1).result["error"] == "session_expired"
    assert node.incr("a", 2).duplicate is True
    assert node.value() == 4


def test_a_command_for_an_unknown_machine_is_an_error_remembered_in_the_session(node) -> None:
    first = node.send("alice", 1, 1_000, {"op": "move"}, machine="chess")
    assert first.result["error"] == "unknown_machine" and "'chess'" in first.result["message"]
    assert node.send("alice", 1, 1_000, {"op": "move"}, machine="chess").duplicate is True


class Exploding:
    name = "boom"

    def apply(self, command: dict, ctx: ApplyContext) -> tuple[object, list[dict]]:
        raise RuntimeError("a bug in a state machine")

    def query(self, query: dict) -> object:
        return None

    def snapshot(self) -> object:
        return None

    def restore(self, data: object) -> None:
        pass


def test_a_machine_that_raises_gets_an_error_result_and_the_node_survives() -> None:
    sm = Replicated([KeyValue(), Exploding()])
    applied = sm.apply_entry(1, 1, encode_command("c", 1, 0, "boom", {}))
    assert applied.result["error"] == "machine_failed"
    assert "RuntimeError" in applied.result["message"] and "entry 1" in applied.result["message"]
    put = encode_command("c", 2, 0, "kv", {"op": "put", "key": "k", "value": 1})
    assert sm.apply_entry(2, 1, put).result["ok"] is True


def test_queries_are_routed_by_machine_name(node) -> None:
    node.incr("alice", 1)
    assert node.sm.query("kv", {"op": "get", "key": "n"})["value"] == 1
    assert node.sm.query("chess", {"op": "board"})["error"] == "unknown_machine"


class Recorder(Exploding):
    name = "rec"

    def __init__(self) -> None:
        self.seen: list[ApplyContext] = []

    def apply(self, command: dict, ctx: ApplyContext) -> tuple[object, list[dict]]:
        self.seen.append(ctx)
        return {"ok": True}, []


def test_the_apply_context_carries_index_term_clock_and_client() -> None:
    recorder = Recorder()
    Replicated([recorder]).apply_entry(7, 3, encode_command("zed", 1, 123, "rec", {}))
    assert recorder.seen == [ApplyContext(index=7, term=3, timestamp_ms=123, client_id="zed")]


def test_registering_two_machines_with_one_name_is_refused() -> None:
    with pytest.raises(ValueError, match="already registered"):
        Replicated([KeyValue(), KeyValue()])


def test_applying_an_entry_at_or_below_applied_index_is_a_driver_bug(node) -> None:
    node.incr("alice", 1)
    with pytest.raises(ValueError, match="applied_index"):
        node.sm.apply_entry(1, 1, b"")
    node.sm.apply_entry(5, 1, b"")  # indexes may skip (membership entries)
    assert node.sm.applied_index == 5


# --- pipelining: results kept for every outstanding command (thesis 6.3) -------------
#
# Reference: thesis 6.3: "each client request includes the lowest sequence number for
# which the client has not yet received a response, and the state machine discards
# all responses for lower sequence numbers", so commands of one client may commit in
# any order and each is still applied exactly once.


def pipelined(node: Node, client: str, seq: int, first: int, key: str = "n",
              at: int = 1_000) -> Applied:
    node.index += 1
    payload = encode_command(client, seq, at, "kv", {"op": "incr", "key": key},
                             first_outstanding=first)
    return node.sm.apply_entry(node.index, 1, payload)


def test_a_command_that_failed_on_its_way_is_applied_after_a_later_one_committed(node) -> None:
    """Issue 10 item 5: seq 2 fails before it is proposed (not_leader, rate_limited)
    while seq 3 commits; retried, 2 is applied, once, and 3's retry is a duplicate."""
    node.incr("alice", 1)
    three = pipelined(node, "alice", 3, first=2)
    two = pipelined(node, "alice", 2, first=2)
    assert (three.result["value"], two.result["value"]) == (2, 3)
    assert two.duplicate is False and two.result["ok"] is True
    again = [pipelined(node, "alice", 3, first=2), pipelined(node, "alice", 2, first=2)]
    assert [a.duplicate for a in again] == [True, True]
    assert [a.result for a in again] == [three.result, two.result]
    assert node.value() == 3


def test_without_first_outstanding_a_skipped_seq_stays_stale_as_before(node) -> None:
    """A client that sends no floor is read as floor = seq: it keeps one result."""
    node.incr("alice", 1)
    node.incr("alice", 3)
    assert node.incr("alice", 2).result["error"] == "stale_sequence"


def test_results_below_the_floor_are_discarded_and_their_seqs_are_stale(node) -> None:
    node.incr("alice", 1)
    pipelined(node, "alice", 2, first=2)
    pipelined(node, "alice", 3, first=2)
    assert node.sm._sessions["alice"].results.keys() == {2, 3}
    pipelined(node, "alice", 4, first=4)  # the client has the answers of 2 and 3
    assert node.sm._sessions["alice"].results.keys() == {4}
    stale = pipelined(node, "alice", 2, first=2)
    assert stale.result["error"] == "stale_sequence" and stale.duplicate is False
    assert (stale.result["last_seq"], stale.result["first_outstanding"]) == (4, 4)
    assert "first outstanding seq 4" in stale.result["message"]
    assert node.value() == 4


def test_a_delayed_command_with_an_older_floor_does_not_lower_it(node) -> None:
    node.incr("alice", 1)
    pipelined(node, "alice", 2, first=2)
    pipelined(node, "alice", 5, first=5)
    six = pipelined(node, "alice", 6, first=2)  # sent before the answers to 2..4 arrived
    assert six.result["ok"] is True
    assert pipelined(node, "alice", 2, first=2).result["error"] == "stale_sequence"
    assert pipelined(node, "alice", 4, first=4).result["error"] == "stale_sequence"


def test_a_seq_never_applied_below_the_floor_is_not_applied_late(node) -> None:
    """A client gave up on seq 2 (its deadline passed) and moved on: a copy of 2 that
    reaches the log afterwards must not be applied behind the client's back."""
    node.incr("alice", 1)
    pipelined(node, "alice", 3, first=3)
    assert pipelined(node, "alice", 2, first=2).result["error"] == "stale_sequence"
    assert node.value() == 2


def test_beyond_max_outstanding_a_new_seq_is_refused_and_nothing_is_applied() -> None:
    node = Node(session_ttl_ms=TTL, max_outstanding=3)
    node.incr("alice", 1)
    for seq in (2, 3):
        assert pipelined(node, "alice", seq, first=1).result["ok"] is True
    refused = pipelined(node, "alice", 4, first=1)
    assert refused.result["error"] == "too_many_outstanding"
    assert refused.result["limit"] == 3 and refused.result["first_outstanding"] == 1
    assert "first_outstanding" in refused.result["message"]
    assert node.value() == 3  # 1, 2, 3 applied; 4 not
    assert pipelined(node, "alice", 3, first=1).duplicate is True  # retries still answered
    accepted = pipelined(node, "alice", 4, first=3)  # the floor rose: 1 and 2 are dropped
    assert accepted.result == {"ok": True, "value": 4, "version": 4}


def test_first_outstanding_above_seq_is_refused_as_a_malformed_command() -> None:
    from nodes.statemachine import BadCommand
    with pytest.raises(BadCommand, match="first_outstanding"):
        encode_command("alice", 2, 0, "kv", {"op": "incr", "key": "n"}, first_outstanding=3)


def test_the_kept_results_survive_a_snapshot_and_restore(node) -> None:
    node.incr("alice", 1)
    three = pipelined(node, "alice", 3, first=2)
    other = Node(session_ttl_ms=TTL)
    other.sm.restore(node.sm.snapshot())
    other.index = node.index
    assert other.sm.snapshot() == node.sm.snapshot()
    retry = pipelined(other, "alice", 3, first=2)
    assert retry.duplicate is True and retry.result == three.result
    assert pipelined(other, "alice", 2, first=2).result["value"] == 3


def test_a_format_1_snapshot_restores_with_its_last_result_kept() -> None:
    import msgpack

    from nodes.kv import KeyValue
    old = {"format": 1, "applied": 3, "clock_ms": 1_000,
           "sessions": {"live": [["alice", 2, 1_000, {"ok": True, "value": 2, "version": 2}]],
                        "expired": []},
           "machines": {"kv": KeyValue().snapshot()}}
    node = Node(session_ttl_ms=TTL)
    node.sm.restore(msgpack.packb(old, use_bin_type=True))
    node.index = 3
    retry = node.incr("alice", 2)
    assert retry.duplicate is True and retry.result["value"] == 2
    assert node.incr("alice", 1).result["error"] == "stale_sequence"


def test_a_floor_forgets_exactly_the_results_below_it_after_seqs_applied_out_of_order() -> None:
    """Results are forgotten from the front while seqs arrive in order (the fast path);
    a gap filled late must still be forgotten once the floor passes it, and what is
    above the floor kept, in order again."""
    from nodes.statemachine import _Session

    s = _Session(last_seq=0, last_used_ms=0)
    for seq in (1, 2, 4, 5):
        s.keep(seq, f"r{seq}")
    s.raise_floor(2)
    assert list(s.results) == [2, 4, 5] and s.in_order
    s.keep(3, "r3")  # the gap, filled after 4 and 5
    assert not s.in_order
    s.raise_floor(4)
    assert list(s.results) == [4, 5] and s.in_order
    s.keep(6, "r6")
    s.raise_floor(6)
    assert s.results == {6: "r6"} and s.last_seq == 6
