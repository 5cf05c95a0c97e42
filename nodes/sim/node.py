"""One simulated node: the pure core, its storage, and a tiny key-value state
machine, driven through the one Ready driver (``nodes.host.driver``), as the real node
server is.

A crash throws away everything but the storage; a restart rebuilds the node
from ``storage.load()`` alone. A crash can also happen inside a storage step
(``SimulatedCrash`` from a disk crash hook): the node stops right there, in the
middle of its Ready, and tells the cluster through ``Hooks.on_storage_crash``."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from random import Random

import msgpack

from nodes.host.driver import ReadyDriver
from nodes.raft.core import RaftConfig, RaftNode
from nodes.raft.messages import Entry, EntryKind, HardState, Message, Snapshot
from nodes.raft.ready import ReadState, Ready
from nodes.raft.storage import Storage

from .storage_hosts import SimulatedCrash


def encode_op(op: dict) -> bytes:
    return msgpack.packb(op, use_bin_type=True)


def decode_op(data: bytes) -> dict:
    return msgpack.unpackb(data, raw=False)


class KVMachine:
    """The simulator's state machine: a register per key with put and cas."""

    def __init__(self) -> None:
        self.data: dict[str, object] = {}

    def apply(self, op: dict) -> dict:
        key = op["key"]
        if op["kind"] == "write":
            self.data[key] = op["value"]
            return {"ok": True}
        if op["kind"] == "cas":
            if self.data.get(key) == op["expected"]:
                self.data[key] = op["value"]
                return {"ok": True, "succeeded": True}
            return {"ok": True, "succeeded": False}
        raise ValueError(f"unknown op {op!r}")

    def snapshot(self) -> bytes:
        return msgpack.packb(self.data, use_bin_type=True)

    def restore(self, data: bytes) -> None:
        self.data = msgpack.unpackb(data, raw=False) if data else {}


@dataclass(slots=True)
class Hooks:
    """Callbacks the cluster uses to check invariants as things happen."""

    on_persist: Callable[[str, Ready], None]
    on_apply: Callable[[str, Entry], None]
    on_read: Callable[[str, ReadState, dict], None]
    on_aborted_read: Callable[[str, object], None]
    on_ready: Callable[[str, Ready], None]
    on_storage_crash: Callable[[str, str], None]  # (node, what the crash interrupted)


class SimNode:
    def __init__(
        self,
        node_id: str,
        storage: Storage,
        rng: Random,
        raft_config: RaftConfig,
        hooks: Hooks,
        send: Callable[[Message], None],
        snapshot_interval: int = 0,
    ) -> None:
        self.id = node_id
        self.storage = storage
        self.hooks = hooks
        self.send = send
        self.snapshot_interval = snapshot_interval
        self.raft = RaftNode(node_id, storage, rng, raft_config)
        self.sm = KVMachine()
        snap = storage.snapshot()
        if snap is not None:
            self.sm.restore(snap.data)
        self.last_applied = self.raft.applied
        self.result_of: dict[int, tuple[int, dict]] = {}  # index -> (term, result)
        self.pending_reads: list[ReadState] = []
        # for the durability check at restart: the term and vote of the last save that
        # completed, the Ready whose save was under way when a crash hit (if any), and
        # a committed entry (index, term) known to be saved as of the last advance
        self.durable_hard_state = HardState(self.raft.term, self.raft.vote, self.raft.commit)
        self.saving: Ready | None = None
        self.durable_point = self._saved_commit_point()
        self.dead = False
        self._driver: ReadyDriver | None = None

    def handle_ready(self) -> None:
        """Drive the core until it has nothing left to do (persist, send, apply, advance).
        A crash inside a storage step ends the node here, as a power cut would."""
        if self.dead:
            return
        try:
            self._drive()
        except SimulatedCrash as crash:
            self.dead = True
            self.hooks.on_storage_crash(self.id, str(crash))

    def _drive(self) -> None:
        driver = self._driver
        if driver is None:
            driver = self._driver = ReadyDriver(
                self.raft, self._persist, self.send, self._apply, self._after,
                on_ready=lambda rd: self.hooks.on_ready(self.id, rd),
            )
        driver.drain()

    def _persist(self, rd: Ready) -> None:
        self.saving = rd
        self.storage.save(rd.hard_state, rd.entries, rd.snapshot)
        self.saving = None
        if rd.hard_state is not None:
            self.durable_hard_state = rd.hard_state
        self.hooks.on_persist(self.id, rd)

    def _apply(self, rd: Ready) -> None:
        if rd.snapshot is not None:
            self.sm.restore(rd.snapshot.data)
            self.last_applied = rd.snapshot.meta.index
        for e in rd.committed_entries:
            assert e.index == self.last_applied + 1, (self.id, e.index, self.last_applied)
            self.last_applied = e.index
            self.hooks.on_apply(self.id, e)
            if e.kind is EntryKind.NORMAL and e.data:
                self.result_of[e.index] = (e.term, self.sm.apply(decode_op(e.data)))
        for rs in rd.read_states:
            self.pending_reads.append(rs)
        for ctx in rd.aborted_reads:
            self.hooks.on_aborted_read(self.id, ctx)

    def _after(self, rd: Ready) -> None:
        self.durable_point = self._saved_commit_point()
        self._serve_reads()
        self._maybe_snapshot()

    def _saved_commit_point(self) -> tuple[int, int]:
        """The last entry that is both committed and saved (outside a Ready, where
        the core's view of its log and its storage agree)."""
        index = min(self.raft.commit, self.raft.log.stable_index)
        term = self.raft.log.term(index)
        assert term is not None
        return index, term

    def _serve_reads(self) -> None:
        still = []
        for rs in self.pending_reads:
            if rs.index <= self.last_applied:
                self.hooks.on_read(self.id, rs, dict(self.sm.data))
            else:
                still.append(rs)
        self.pending_reads = still

    def _maybe_snapshot(self) -> None:
        if not self.snapshot_interval:
            return
        applied = self.raft.applied
        if applied - self.raft.log.offset_index >= self.snapshot_interval:
            meta = self.raft.snapshot_meta(applied)
            self.storage.compact(Snapshot(meta, self.sm.snapshot()))
            self.raft.compact(applied)
