"""The one Ready driver: the fixed order, and the contract asserted on every message."""

from __future__ import annotations

from random import Random

import pytest

from nodes.host.driver import ReadyContractError, ReadyDriver
from nodes.raft.core import RaftConfig, RaftNode
from nodes.raft.messages import (
    AppendEntries,
    AppendEntriesResponse,
    ClusterConfig,
    Entry,
    Message,
    RequestVote,
    RequestVoteResponse,
)
from nodes.raft.ready import Ready, Role
from nodes.raft.storage import MemoryStorage

IDS = ["n1", "n2", "n3"]


class Recorded:
    """Three nodes driven by ReadyDrivers; every driver call lands in ``calls``."""

    def __init__(self, seed: int) -> None:
        config = ClusterConfig(frozenset(IDS))
        self.calls: list[tuple[str, str, object]] = []
        self.queue: list[Message] = []
        self.storages = {nid: MemoryStorage(config) for nid in IDS}
        self.rafts = {
            nid: RaftNode(nid, self.storages[nid], Random(seed + k), RaftConfig())
            for k, nid in enumerate(IDS)
        }
        self.drivers = {nid: self._driver(nid) for nid in IDS}

    def _driver(self, nid: str) -> ReadyDriver:
        storage = self.storages[nid]

        def persist(rd: Ready) -> None:
            storage.save(rd.hard_state, rd.entries, rd.snapshot)
            last = storage.load().entries[-1].index if storage.load().entries else 0
            self.calls.append((nid, "persist", (storage.load().hard_state, last)))

        def send(m: Message) -> None:
            self.calls.append((nid, "send", m))
            self.queue.append(m)

        def apply(rd: Ready) -> None:
            self.calls.append((nid, "apply", len(rd.committed_entries)))

        return ReadyDriver(self.rafts[nid], persist, send, apply)

    def run(self, rounds: int) -> None:
        for _ in range(rounds):
            for nid in IDS:
                self.rafts[nid].tick()
                self.drivers[nid].drain()
            while self.queue:
                m = self.queue.pop(0)
                self.rafts[m.recipient].step(m)
                self.drivers[m.recipient].drain()
            leader = next((r for r in self.rafts.values() if r.role is Role.LEADER), None)
            if leader is not None:
                leader.propose(b"w")
                self.drivers[leader.id].drain()


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_every_vote_and_ack_leaves_after_the_persist_that_covers_it(seed: int) -> None:
    """Independent of the driver's own check: replay its calls and verify that each
    granted vote and each successful ack was preceded by a save that holds it."""
    rec = Recorded(seed)
    rec.run(80)
    durable: dict[str, tuple[object, int]] = {}
    votes = acks = 0
    for nid, what, arg in rec.calls:
        if what == "persist":
            durable[nid] = arg  # type: ignore[assignment]
        elif (
            what == "send"
            and isinstance(arg, RequestVoteResponse)
            and arg.granted
            and not arg.pre_vote
        ):
            hs, _ = durable[nid]
            assert (hs.term, hs.vote) == (arg.term, arg.recipient), f"seed {seed}: {arg}"  # type: ignore[attr-defined]
            votes += 1
        elif what == "send" and isinstance(arg, AppendEntriesResponse) and arg.success:
            _, last = durable.get(nid, (None, 0))
            assert arg.match_index <= last, f"seed {seed}: {arg} with {last} saved"
            acks += 1
    assert votes >= 1 and acks >= 10, (seed, votes, acks)  # the run exercised both


def _follower_with_entries() -> tuple[RaftNode, list[str]]:
    raft = RaftNode("n2", MemoryStorage(ClusterConfig(frozenset(IDS))), Random(0))
    raft.step(AppendEntries(1, "n1", "n2", 0, 0, (Entry(1, 1, b"a"), Entry(2, 1, b"b")), 0))
    return raft, []


def test_order_is_early_persist_send_apply_advance() -> None:
    raft, order = _follower_with_entries()
    driver = ReadyDriver(
        raft,
        persist=lambda rd: order.append("persist"),
        send=lambda m: order.append(f"send {type(m).__name__}"),
        apply=lambda rd: order.append("apply"),
        after=lambda rd: order.append(f"after stable={raft.log.stable_index}"),
    )
    driver.drain()
    assert order == ["persist", "send AppendEntriesResponse", "apply", "after stable=2"]


def test_an_ack_before_its_persist_is_synced_raises() -> None:
    """The two-phase use: complete() without durable() would send the ack first."""
    raft, sent = _follower_with_entries()
    driver = ReadyDriver(raft, lambda rd: None, lambda m: sent.append(m), lambda rd: None)
    rd = driver.stage()
    assert rd is not None
    with pytest.raises(ReadyContractError, match="before durable"):
        driver.complete(rd)
    assert sent == []


def test_a_driver_that_skips_the_persist_is_caught_on_the_ack() -> None:
    """A loop that marks a Ready durable without its entries being saved (a skipped
    persist) is stopped on the acknowledgement, not after it left."""

    class Skipping(ReadyDriver):
        def durable(self, rd: Ready) -> None:
            self._marked = True  # pretends: nothing recorded as durable

    raft, sent = _follower_with_entries()
    driver = Skipping(raft, lambda rd: None, lambda m: sent.append(m), lambda rd: None)
    rd = driver.stage()
    assert rd is not None
    driver.durable(rd)
    with pytest.raises(ReadyContractError, match="acknowledging index 2"):
        driver.complete(rd)
    assert sent == []


def test_a_vote_granted_before_it_is_durable_raises() -> None:
    class Skipping(ReadyDriver):
        def durable(self, rd: Ready) -> None:
            self._marked = True

    raft = RaftNode("n2", MemoryStorage(ClusterConfig(frozenset(IDS))), Random(0))
    raft.step(RequestVote(1, "n1", "n2", 0, 0))
    sent: list[Message] = []
    driver = Skipping(raft, lambda rd: None, lambda m: sent.append(m), lambda rd: None)
    rd = driver.stage()
    assert rd is not None
    driver.durable(rd)
    with pytest.raises(ReadyContractError, match="granting a vote to n1 in term 1"):
        driver.complete(rd)
    assert sent == []


def test_drain_marks_durable_only_what_persist_was_given() -> None:
    """drain()'s inlined path: a Ready with nothing to persist records nothing as
    durable, so an ack it carried would be caught."""
    raft, order = _follower_with_entries()
    driver = ReadyDriver(raft, lambda rd: order.append("persist"), lambda m: None, lambda rd: None)
    assert driver.drain() == 1 and order == ["persist"]
    assert driver._durable_last == 2 and driver._durable_hs == raft.persisted_hard_state


def test_stage_twice_without_complete_raises() -> None:
    raft, _ = _follower_with_entries()
    driver = ReadyDriver(raft, lambda rd: None, lambda m: None, lambda rd: None)
    driver.stage()
    with pytest.raises(ReadyContractError, match="stage\\(\\) twice"):
        driver.stage()


def test_a_vote_superseded_in_the_same_ready_by_a_later_durable_term_may_leave() -> None:
    """Many messages in one Ready (a host batch): a vote for n1 in term 2, then n3's
    campaign for term 3 moves the node on. What is durable (term 3, vote n3) is
    what persisting after each step would have left: it will never vote in term 2
    again, so the term-2 grant may leave with the term-3 one."""
    raft = RaftNode("n2", MemoryStorage(ClusterConfig(frozenset(IDS))), Random(0))
    raft.step(RequestVote(2, "n1", "n2", 0, 0))
    raft.step(RequestVote(3, "n3", "n2", 0, 0))
    sent: list[Message] = []
    ReadyDriver(raft, lambda rd: None, lambda m: sent.append(m), lambda rd: None).drain()
    assert [(m.term, m.recipient, m.granted) for m in sent] == [(2, "n1", True), (3, "n3", True)]
