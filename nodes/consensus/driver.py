"""What both mechanisms' drivers share: the tick task, liveness pings, the link.

A driver runs on one asyncio loop. Its inputs are the tick task (every
``ConsensusTiming.tick`` seconds), packets delivered by the link, and API calls; each
input runs to completion (core input, then the core's output handled), and the
events it raised are flushed to listeners afterwards. So a listener may call
back into the node.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from pathlib import Path
from random import Random
from typing import Any

from nodes.kv import KeyValue

from .events import EventBus
from .liveness import Liveness
from .peer_links import Link
from .types import ConsensusTiming, NodeInfo, ProposalResult
from .wire import AppPacket, Packet

log = logging.getLogger("arena.consensus")


@dataclass(frozen=True, slots=True)
class Options:
    """Everything a driver is configured with (see ``Consensus`` for meanings)."""

    timeout: float
    timing: ConsensusTiming
    batch_updates: bool
    batch_window: float
    compression: bool
    snapshot_interval: int
    cluster_id: str
    data_dir: Path | None
    fsync: bool
    join: bool
    quorum: float
    address: str | None


class Driver:
    """The base of ``RaftDriver`` and ``MajorityDriver``."""

    mechanism = ""

    def __init__(self, node_id: str, opts: Options, bus: EventBus, rng: Random) -> None:
        self.id = node_id
        self.opts = opts
        self.bus = bus
        self.rng = rng
        self.kv = KeyValue()
        self.link: Link | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self.liveness = Liveness(node_id, opts.timing.failure_timeout)
        self.addresses: dict[str, str | None] = {}
        self.metadata: dict[str, dict[str, Any]] = {}  # what add_node was given, per node
        self.stopped = False
        self.started = False
        self.failure: BaseException | None = None  # what killed the tick task, if anything
        self.tick_rounds = 0  # rounds of the tick task so far (it is alive while this grows)
        self._task: asyncio.Task[None] | None = None
        self._last_ping = 0.0
        self.dropped: dict[str, int] = {}

    # --- lifecycle -------------------------------------------------------------------

    def start(self, loop: asyncio.AbstractEventLoop, link: Link) -> None:
        self.loop = loop
        self.link = link
        self.started = True
        self._task = loop.create_task(self._run(), name=f"consensus-{self.id}")

    async def stop(self) -> None:
        if self.stopped:
            return
        self.stopped = True
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            except Exception:  # the loop died earlier: it was logged there
                pass
        if self.link is not None:
            self.link.close()
        self._on_stop()
        self.bus.flush()

    async def _run(self) -> None:
        try:
            await self._tick_forever()
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # never a silent death: see _fail
            self._fail(exc)

    async def _tick_forever(self) -> None:
        assert self.loop is not None
        loop = self.loop
        tick = self.opts.timing.tick
        self._on_first_run(loop.time())
        self.bus.flush()
        next_at = loop.time() + tick
        max_ticks = self._max_ticks_at_once()
        while not self.stopped:
            delay = next_at - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            now = loop.time()
            ticks = 0
            while next_at <= now:
                next_at += tick
                ticks += 1
            self.tick_rounds += 1
            try:
                # after a stall count at most an election timeout's worth of ticks
                self._on_ticks(min(ticks, max_ticks), now)
                if self.link is not None:
                    self.link.poll()
                self._liveness(now)
            finally:
                self.bus.flush()

    def _fail(self, exc: BaseException) -> None:
        """The tick task died (a bug, or a callback's error we could not contain):
        the node can no longer tick, ping or time anything out. Stop it visibly --
        ``running`` turns False, ``failure`` holds the exception, the error is
        logged with its traceback and ``node:failed`` is emitted -- rather than
        leave a node that looks alive to its owner and dead to its peers."""
        self.failure = exc
        log.error("node %s stopped: its tick task failed with %r; it no longer ticks, pings "
                  "or answers (its peers will see it as crashed). Create a new Consensus "
                  "(same id and data_dir) to bring it back.", self.id, exc, exc_info=exc)
        self.stopped = True
        try:
            if self.link is not None:
                self.link.close()
            self._on_stop()
        except Exception:  # keep going: the event below must still go out
            log.exception("node %s: cleaning up after the failure failed too", self.id)
        self.bus.emit("node:failed", self.id, error=exc)
        self.bus.flush()

    def not_running_error(self) -> str:
        """Why calls are refused on a node that is not running, and what to do."""
        if self.failure is not None:
            return (f"node {self.id} failed ({self.failure!r}) and stopped: create a new "
                    "Consensus to bring it back")
        if self.stopped:
            return f"node {self.id} is stopped"
        return f"node {self.id} is not started: call start() first"

    # --- inputs ----------------------------------------------------------------------

    def deliver(self, packet: Packet) -> None:
        """A packet from the link (always on our loop, never nested)."""
        if self.stopped or self.loop is None:
            return
        now = self.loop.time()
        role = None
        if isinstance(packet, AppPacket) and packet.kind == "ping":
            role = packet.body.get("role")
            role = role if isinstance(role, str) else None
        for event, peer in self.liveness.heard(packet.sender, now, role):
            self.bus.emit(event, peer)
        try:
            self._receive(packet, now)
        except ValueError as exc:
            self.dropped["malformed"] = self.dropped.get("malformed", 0) + 1
            log.debug("node %s dropped a packet from %s: %s", self.id, packet.sender, exc)
        finally:
            self.bus.flush()

    def send_app(self, to: str, kind: str, body: dict[str, Any]) -> None:
        if self.link is not None and not self.stopped:
            self.link.send(to, AppPacket(kind, self.id, body))

    # --- liveness --------------------------------------------------------------------

    def _liveness(self, now: float) -> None:
        if now - self._last_ping >= self.opts.timing.ping_interval:
            self._last_ping = now
            body = self._ping_body()
            for peer in sorted(self.liveness.peers):
                self.send_app(peer, "ping", body)
        for event, peer in self.liveness.check(now):
            self.bus.emit(event, peer)
        flipped = self.liveness.check_partition(self._voters())
        if flipped is not None:
            name, reachable, unreachable = flipped
            self.bus.emit(name, reachable, unreachable)

    def node_info(self, node_id: str, role: str | None, voter: bool, learner: bool) -> NodeInfo:
        me = node_id == self.id
        return NodeInfo(
            id=node_id,
            address=self.opts.address if me else self.addresses.get(node_id),
            role=role,
            voter=voter,
            learner=learner,
            connected=self.liveness.is_reachable(node_id),
            is_self=me,
            metadata=dict(self.metadata.get(node_id, {})),
        )

    # --- for subclasses ----------------------------------------------------------------

    def _max_ticks_at_once(self) -> int:
        return 1_000

    def _on_first_run(self, now: float) -> None:
        pass

    def _on_ticks(self, ticks: int, now: float) -> None:
        raise NotImplementedError

    def _receive(self, packet: Packet, now: float) -> None:
        raise NotImplementedError

    def _on_stop(self) -> None:
        pass

    def _ping_body(self) -> dict[str, Any]:
        return {}

    def _voters(self) -> frozenset[str]:
        raise NotImplementedError

    # --- the API's needs ---------------------------------------------------------------

    async def submit(self, command: dict[str, Any], key: str | None, value: Any,
                     timeout: float) -> ProposalResult:
        raise NotImplementedError

    async def read_barrier(self, timeout: float) -> None:
        """Return once a local read reflects every write accepted before the call."""
        raise NotImplementedError

    async def change_membership(self, action: str, node_id: str, address: str | None,
                                timeout: float, metadata: dict[str, Any] | None = None
                                ) -> ProposalResult:
        raise NotImplementedError

    def bootstrap_peer(self, node_id: str, address: str | None,
                       metadata: dict[str, Any] | None = None) -> bool:
        """Before the node's first tick, make ``node_id`` a founding member.
        Returns False when it is too late (then it is a membership change)."""
        raise NotImplementedError

    def nodes(self) -> dict[str, NodeInfo]:
        raise NotImplementedError

    def debug_state(self) -> dict[str, Any]:
        raise NotImplementedError

    @property
    def leader_id(self) -> str | None:
        return None

    @property
    def role(self) -> str:
        raise NotImplementedError
