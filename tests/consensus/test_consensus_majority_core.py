"""The simple_majority core without sockets or loops (h11's habit: protocol logic
tested with an in-memory pair): messages are moved by hand, time is a number."""

from __future__ import annotations

from random import Random
from typing import Any

import pytest

from nodes.consensus.liveness import Liveness
from nodes.consensus.majority import MajorityCore, Output, quorum_required

PUT = {"op": "put", "key": "k", "value": 1}


class Trio:
    """Three cores; ``deliver`` moves every message until the network is quiet,
    voting through ``policy`` (default: the default policy)."""

    def __init__(self, ids: tuple[str, ...] = ("a", "b", "c"), quorum: float = 0.5,
                 timeout: float = 1.0) -> None:
        self.cores = {i: MajorityCore(i, set(ids), quorum, timeout, Random(i)) for i in ids}
        self.outputs: dict[str, list[Output]] = {i: [] for i in ids}
        self.down: set[str] = set()
        self.policy: dict[str, Any] = {}

    def deliver(self, now: float = 0.0) -> None:
        moved = True
        while moved:
            moved = False
            for node_id, core in self.cores.items():
                out = core.take()
                if not out:
                    continue
                moved = True
                self.outputs[node_id].append(out)
                for p in out.votes_needed:
                    vote = self.policy.get(node_id, lambda p: not p.conflicting)(p)
                    core.cast_vote(p.proposal_id, vote, now)
                for to, kind, body in out.messages:
                    if to not in self.down and node_id not in self.down:
                        self.cores[to].step(node_id, kind, body, now)

    def decisions(self, node_id: str) -> list[Any]:
        return [d for out in self.outputs[node_id] for d in out.decisions]

    def applied(self, node_id: str) -> list[Any]:
        return [d for out in self.outputs[node_id] for d in out.to_apply]


@pytest.mark.parametrize(("quorum", "total", "required"), [
    (0.5, 1, 1), (0.5, 2, 2), (0.5, 3, 2), (0.5, 4, 3), (0.5, 5, 3),
    (2 / 3, 3, 3), (0.66, 3, 2), (0.29, 100, 30), (1.0, 3, 3), (0.01, 3, 1),
])
def test_quorum_required_is_strictly_more_than_the_fraction(quorum: float, total: int,
                                                            required: int) -> None:
    assert quorum_required(quorum, total) == required


@pytest.mark.parametrize("quorum", [0, -0.5, 1.01])
def test_quorum_outside_zero_one_is_refused(quorum: float) -> None:
    with pytest.raises(ValueError, match="quorum"):
        quorum_required(quorum, 3)


def test_a_proposal_with_a_majority_of_yes_votes_is_accepted_and_applied_everywhere() -> None:
    t = Trio()
    pid = t.cores["a"].propose("k", 1, PUT, now=0.0, timestamp_ms=5)
    t.deliver()
    (decision,) = t.decisions("a")
    assert decision.accepted and decision.proposal.proposal_id == pid
    assert decision.for_ >= 2 and decision.error is None
    for node in "abc":
        (applied,) = t.applied(node)
        assert applied.proposal.command == PUT and applied.index == 1


def test_the_proposal_is_rejected_as_soon_as_quorum_is_out_of_reach() -> None:
    t = Trio()
    t.policy = {"b": lambda p: False, "c": lambda p: False}
    t.cores["a"].propose("k", 1, PUT, 0.0, 0)
    t.deliver()
    (decision,) = t.decisions("a")
    assert not decision.accepted and decision.error == "rejected"
    assert (decision.for_, decision.against) == (1, 2)
    assert all(not t.applied(n) for n in "abc")


def test_a_proposal_nobody_answers_times_out_cleanly_and_releases_promises() -> None:
    t = Trio(timeout=1.0)
    t.down = {"b", "c"}
    t.cores["a"].propose("k", 1, PUT, 0.0, 0)
    t.deliver()
    assert t.decisions("a") == []
    t.cores["a"].tick(0.5)
    t.deliver(0.5)
    assert t.decisions("a") == []
    t.cores["a"].tick(1.0)
    t.deliver(1.0)
    (decision,) = t.decisions("a")
    assert not decision.accepted and decision.error == "timeout"
    assert t.cores["a"].own == {} and t.cores["a"].my_votes == {}


def test_conflicting_proposals_for_one_key_cannot_both_win() -> None:
    """Default policy: a node that promised its vote to (k, 1) votes no on (k, 2)."""
    t = Trio()
    t.cores["a"].propose("k", 1, PUT, 0.0, 0)
    t.cores["b"].propose("k", 2, {"op": "put", "key": "k", "value": 2}, 0.0, 0)
    t.deliver()
    accepted = [d for n in "ab" for d in t.decisions(n) if d.accepted]
    assert len(accepted) <= 1


def test_the_vote_policy_sees_conflicts_and_its_answer_is_what_counts() -> None:
    """c's custom policy says yes even to a conflicting proposal; the core obeys."""
    t = Trio(quorum=1.0)  # unanimity: a's proposal stays pending while b is away
    seen: list[tuple[Any, bool]] = []
    t.policy = {"c": lambda p: seen.append((p.value, p.conflicting)) or True}
    t.down = {"b"}
    t.cores["a"].propose("k", 1, PUT, 0.0, 0)
    t.deliver()
    t.down = set()
    t.cores["b"].propose("k", 2, {"op": "put", "key": "k", "value": 2}, 0.0, 0)
    t.deliver()
    assert seen == [(1, False), (2, True)]
    (decision,) = t.decisions("b")
    # b and c (despite the conflict) said yes; a, holding (k, 1), said no
    assert (decision.for_, decision.against, decision.accepted) == (2, 1, False)


def test_a_lost_vote_is_repeated_when_the_proposal_is_retransmitted() -> None:
    t = Trio(timeout=5.0)
    t.down = {"b", "c"}
    t.cores["a"].propose("k", 1, PUT, 0.0, 0)
    t.deliver()
    t.down = set()
    t.cores["a"].tick(0.2)  # retry interval passed: resend to who has not voted
    t.deliver(0.2)
    (decision,) = t.decisions("a")
    assert decision.accepted


def test_a_voter_that_never_saw_the_proposal_still_applies_the_decision() -> None:
    t = Trio()
    t.policy = {"b": lambda p: True}
    core_a = t.cores["a"]
    core_a.propose("k", 1, PUT, 0.0, 0)
    out = core_a.take()
    core_a.cast_vote(out.votes_needed[0].proposal_id, True, 0.0)
    pid = out.votes_needed[0].proposal_id
    # only b hears the proposal; its yes vote makes 2 of 3
    for to, kind, body in out.messages:
        if to == "b":
            t.cores["b"].step("a", kind, body, 0.0)
    t.deliver()
    assert t.applied("c") and t.applied("c")[0].proposal.proposal_id == pid


def test_a_decision_lost_on_the_way_is_resent_until_acknowledged() -> None:
    t = Trio(timeout=5.0)
    t.down = {"c"}  # c misses both the proposal and the decision
    t.cores["a"].propose("k", 1, PUT, 0.0, 0)
    t.deliver()
    assert t.decisions("a")[0].accepted and not t.applied("c")
    assert t.cores["a"].announcing  # b acknowledged, c did not
    t.down = set()
    t.cores["a"].tick(0.2)
    t.deliver(0.2)
    assert [d.proposal.command for d in t.applied("c")] == [PUT]
    assert t.cores["a"].announcing == {}
    t.cores["a"].tick(0.4)  # nothing left to resend; a repeat would be ignored anyway
    t.deliver(0.4)
    assert len(t.applied("c")) == 1


def test_malformed_messages_raise_value_error_for_the_driver_to_count() -> None:
    core = MajorityCore("a", {"a", "b"}, 0.5, 1.0, Random(1))
    with pytest.raises(ValueError):
        core.step("b", "propose", {"pid": "x"}, 0.0)
    with pytest.raises(ValueError):
        core.step("b", "gossip", {}, 0.0)


# --- liveness (also sans-I/O) --------------------------------------------------------------


def test_liveness_reports_silence_then_return_and_partitions_of_the_voters() -> None:
    live = Liveness("a", failure_timeout=1.0)
    for peer in "bc":
        live.track(peer, 0.0)
    assert live.check(0.5) == []
    live.heard("b", 0.9)
    assert live.check(1.5) == [("node:unreachable", "c")]
    assert live.check_partition(frozenset("abc")) is None  # a + b is a majority
    assert live.check(2.0) == [("node:unreachable", "b")]
    assert live.check_partition(frozenset("abc")) == ("partition:detected", ["a"], ["b", "c"])
    assert live.heard("c", 2.1) == [("node:reconnected", "c")]
    assert live.check_partition(frozenset("abc")) == ("partition:healed", ["a", "c"], ["b"])
