"""``Consensus``: the consensus trait an agent carries (DESIGN.md, "The seed's API").

One object per node, living on an asyncio loop::

    net = InProcessNetwork()                       # or address="tcp://..." for ZeroMQ
    c = Consensus("node-001", transport=net, peers=["node-002", "node-003"])
    c.on("leader:elected", lambda leader_id: print("leader", leader_id))
    c.start()                                      # inside a running loop
    ok = await c.propose("player_score", 100)
    c.get("player_score")

``start()`` must be called with a loop running (it schedules the node's task
there and returns at once); ``await c.start_async()`` does the same and can
wait for a leader. ``await c.stop()`` stops the node (its peers see it as
crashed).

Cluster bootstrap: the founding voters are this node plus the peers given as
``peers=`` or added with ``add_node`` before the node's first tick (e.g. in
the same synchronous block as ``start()``). Give every founder the same set.
Afterwards ``add_node`` is a membership change through the leader: the new
node (started with ``join=True``) joins as a learner and becomes a voter once
caught up. Under ``simple_majority`` members are each node's own list.

Mechanisms, transports, events and patterns: see ``nodes.consensus`` (the
module map) and its modules ``raft_driver``, ``majority``, ``peer_links``,
``events`` and ``patterns``.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable, Generator, Iterable, Mapping
from pathlib import Path
from random import Random
from typing import Any

from . import checks
from .driver import Driver, Options
from .events import Callback, EventBus, positional_arity
from .majority_driver import MajorityDriver, VotePolicy
from .patterns import Patterns, _Optimistic
from .peer_links import CallbackLink, InProcessNetwork, Link, Sender, ZmqLink
from .raft_driver import RaftDriver
from .types import (
    ConsensusError,
    ConsensusTiming,
    InvalidArgument,
    NodeInfo,
    NotStarted,
    ProposalResult,
    ValueInfo,
    Votes,
)
from .wire import DEFAULT_MAX_FRAME, Packet

MECHANISMS = ("raft", "simple_majority")


class _Resolved:
    """An already known outcome that can be awaited (or ignored) without a loop."""

    def __init__(self, value: ProposalResult) -> None:
        self.value = value

    def __await__(self) -> Generator[Any, None, ProposalResult]:
        return self.value
        yield  # a generator, never reached


class _NullLink:
    """No transport: a single-node cluster talks to nobody."""

    def send(self, to: str, packet: Packet) -> None:
        pass

    def add_peer(self, node_id: str, address: str | None) -> None:
        raise ConsensusError(
            f"cannot reach {node_id}: this node has no transport; give transport=, address= "
            "or set_message_sender() before start()")

    def remove_peer(self, node_id: str) -> None:
        pass

    def poll(self) -> None:
        pass

    def close(self) -> None:
        pass


class Consensus(Patterns):
    """A node of a replicated key-value store with consensus, events and patterns.

    Arguments (seconds for every duration):

    - ``mechanism``: ``"raft"`` (a replicated log; linearizable) or
      ``"simple_majority"`` (one vote per proposal; see ``majority``).
    - ``timeout``: default bound of every proposal / read / membership change.
    - ``heartbeat_interval``, ``election_timeout`` (min, max): raft timing; the
      core ticks every ``tick_interval`` (default ``heartbeat_interval / 5``).
    - ``batch_updates``, ``batch_window``: proposals made within the window
      share one persist and one AppendEntries per follower.
    - ``compression``: compress snapshots on disk (with ``data_dir``).
    - ``snapshot_interval``: snapshot the state every that many applied entries
      and drop the log prefix (0: never).
    - ``transport``: an ``InProcessNetwork``, or ``"zmq"``; with ``address=``
      (this node's ``tcp://host:port`` to bind) ZeroMQ is the default. Or call
      ``set_message_sender`` to bring your own.
    - ``peers``: founding peers, ``{node_id: address}`` (or a list of ids for
      the in-process network). ``join=True``: found nothing, wait to be added.
    - ``data_dir``: durable storage (``nodes.storage.DiskStorage``; one
      directory per node), ``fsync``: fsync it (True).
    - ``seed``: makes the node's random choices (election jitter) reproducible.
    - ``quorum``, ``vote_policy``: simple_majority only (see ``majority``).
    - ``cluster_id``: frames of another cluster are dropped.
    - ``failure_timeout``: silence after which a peer is ``node:unreachable``.

    Durations are seconds; one that only makes sense as milliseconds
    (``timeout=3000``) is refused, as are negative windows and intervals and
    non-bool flags (``compression="yes"``).

    How calls fail (one rule for every method):

    - A bad argument -- a key that is not a non-empty str, a value that cannot
      be encoded (plain data only: dict, list, str, bytes, int, float, bool,
      None), a malformed option -- raises ``InvalidArgument`` (a
      ``ConsensusError`` and a ``ValueError``) at once: nothing is stored,
      sent or voted on. A call on a node that is not running raises
      ``NotStarted`` / ``ConsensusError``.
    - An outcome is never an exception for calls that answer yes or no:
      ``propose``, ``delete``, ``compare_and_swap``, ``release_lock`` return
      False, ``propose_with_result`` / ``batch`` a ``ProposalResult`` and
      ``acquire_lock`` a ``LockResult`` with ``error`` set (``"rejected"``,
      ``"timeout"``, ``"cas_failed"``, ...).
    - Calls that return a value -- ``increment``, ``decrement``, ``read``,
      ``wait_for_leader`` -- raise ``ConsensusError`` when they have none to
      return (rejected, timed out, no leader), the message saying why.

    The node's own tick task failing (a bug) stops the node visibly:
    ``running`` turns False, ``failure`` holds the exception, it is logged,
    and ``node:failed`` is emitted.
    """

    def __init__(
        self,
        node_id: str,
        mechanism: str = "raft",
        *,
        timeout: float = 3.0,
        heartbeat_interval: float = 0.05,
        election_timeout: tuple[float, float] = (0.15, 0.30),
        batch_updates: bool = True,
        batch_window: float = 0.002,
        compression: bool = True,
        snapshot_interval: int = 1000,
        transport: InProcessNetwork | str | None = None,
        address: str | None = None,
        peers: Mapping[str, str | None] | Iterable[str] | None = None,
        join: bool = False,
        data_dir: str | os.PathLike[str] | None = None,
        fsync: bool = True,
        seed: int | str | None = None,
        quorum: float = 0.5,
        vote_policy: VotePolicy | None = None,
        cluster_id: str = "arena",
        failure_timeout: float | None = None,
        tick_interval: float | None = None,
        max_frame: int = DEFAULT_MAX_FRAME,
    ) -> None:
        checks.node_id(node_id)
        if mechanism not in MECHANISMS:
            raise InvalidArgument(f"unknown mechanism {mechanism!r}; choose one of {MECHANISMS}")
        timeout = checks.seconds("timeout", timeout)
        heartbeat_interval = checks.seconds("heartbeat_interval", heartbeat_interval)
        lo, hi = checks.election_window(election_timeout)
        if not heartbeat_interval < lo < hi:
            raise InvalidArgument(
                f"need heartbeat_interval < election_timeout[0] < election_timeout[1], got "
                f"{heartbeat_interval}, {election_timeout}")
        batch_updates = checks.flag("batch_updates", batch_updates)
        batch_window = checks.seconds("batch_window", batch_window, allow_zero=True)
        compression = checks.flag("compression", compression)
        fsync = checks.flag("fsync", fsync)
        join = checks.flag("join", join)
        snapshot_interval = checks.count("snapshot_interval", snapshot_interval)
        quorum = checks.quorum_fraction(quorum)
        if tick_interval is not None:
            tick_interval = checks.seconds("tick_interval", tick_interval)
        if failure_timeout is not None:
            failure_timeout = checks.seconds("failure_timeout", failure_timeout)
        if isinstance(transport, str) and transport != "zmq":
            raise InvalidArgument(
                f"transport must be an InProcessNetwork, 'zmq' or None, got {transport!r}")
        self._node_id = node_id
        self.mechanism = mechanism
        self.timeout = timeout
        self._transport = transport
        self._max_frame = max_frame
        self._sender: Sender | None = None
        timing = ConsensusTiming(
            tick=tick_interval or max(0.001, heartbeat_interval / 5),
            heartbeat_interval=heartbeat_interval,
            election_timeout=(lo, hi),
            failure_timeout=failure_timeout or max(2 * hi, 8 * heartbeat_interval),
            ping_interval=2 * heartbeat_interval,
        )
        self.options = Options(
            timeout=timeout, timing=timing, batch_updates=batch_updates,
            batch_window=batch_window, compression=compression,
            snapshot_interval=snapshot_interval, cluster_id=cluster_id,
            data_dir=Path(data_dir) if data_dir is not None else None, fsync=fsync,
            join=join, quorum=quorum, address=address,
        )
        if seed is not None:
            rng = Random(f"{seed}/{node_id}")  # one seed for a cluster, distinct per node
        else:
            rng = Random(node_id.encode() + os.urandom(16))
        if isinstance(peers, Mapping):
            peer_map: dict[str, str | None] = dict(peers)
        else:
            peer_map = {p: None for p in (peers or ())}
        self._bus = EventBus()
        self._driver: Driver
        if mechanism == "raft":
            self._driver = RaftDriver(node_id, self.options, self._bus, rng, peer_map)
        else:
            self._driver = MajorityDriver(node_id, self.options, self._bus, rng, peer_map,
                                          vote_policy)
        self._optimistic: dict[str, list[_Optimistic]] = {}
        self._opt_token = 0
        self._tasks: set[asyncio.Task[Any]] = set()
        self._link: Link | None = None

    # --- lifecycle ---------------------------------------------------------------------

    def start(self) -> None:
        """Start the node on the running loop (returns at once; idempotent)."""
        if self._driver.started:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            raise NotStarted(
                "Consensus.start() needs a running asyncio loop: call it from async code "
                "(e.g. inside asyncio.run(main())), or use 'await c.start_async()'") from None
        self._link = self._make_link(loop)
        self._driver.start(loop, self._link)

    async def start_async(self, wait_for_leader: bool = False,
                          timeout: float | None = None) -> None:
        """``start()``, then (optionally) wait until a leader is known."""
        self.start()
        if wait_for_leader:
            await self.wait_for_leader(timeout)

    async def stop(self) -> None:
        """Stop the node: its task ends, its transport closes, pending calls fail
        with error ``"stopped"``. To the other nodes it looks like a crash."""
        for task in list(self._tasks):
            task.cancel()
        await self._driver.stop()
        self._bus.cancel_tasks()

    @property
    def running(self) -> bool:
        """True between ``start()`` and ``stop()``, unless the node failed (``failure``)."""
        return self._driver.started and not self._driver.stopped

    @property
    def failure(self) -> BaseException | None:
        """The exception that stopped this node's tick task, if one did."""
        return self._driver.failure

    def _make_link(self, loop: asyncio.AbstractEventLoop) -> Link:
        deliver = self._driver.deliver
        opts = self.options
        if self._sender is not None:
            return CallbackLink(self._node_id, opts.cluster_id, self._sender, deliver, loop,
                                self._max_frame)
        if isinstance(self._transport, InProcessNetwork):
            return self._transport.attach(self._node_id, deliver, loop)
        if self._transport == "zmq" or opts.address is not None:
            if opts.address is None:
                raise ConsensusError("the ZeroMQ transport needs address='tcp://host:port' to bind")
            missing = sorted(p for p, a in self._driver.addresses.items() if not a)
            if missing:
                raise ConsensusError(
                    f"over ZeroMQ every peer needs an address; none for {missing}: give "
                    "peers={node_id: 'tcp://host:port'}")
            peers = {p: a for p, a in self._driver.addresses.items() if a}
            return ZmqLink(self._node_id, opts.cluster_id, opts.address, peers, deliver, loop,
                           max_frame=self._max_frame)
        if self._driver.addresses:
            raise ConsensusError(
                f"node {self._node_id} has peers {sorted(self._driver.addresses)} but no "
                "transport: pass transport=InProcessNetwork(), address='tcp://...', or call "
                "set_message_sender() before start()")
        return _NullLink()

    # --- bring your own transport ----------------------------------------------------------

    def set_message_sender(self, sender: Sender) -> None:
        """Bring your own transport: ``sender(to_id, data: bytes)`` sends a frame
        (it may be a coroutine function). Feed frames you receive to
        ``handle_message``. Set it before ``start()`` (or to replace the sender
        of a node already using its own transport)."""
        if not callable(sender):
            raise TypeError("the message sender must be callable: fn(to_id, data)")
        if self._driver.started:
            if not isinstance(self._link, CallbackLink):
                raise ConsensusError("this node already runs another transport; call "
                                     "set_message_sender() before start()")
            self._link.sender = sender
        self._sender = sender

    def handle_message(self, from_id: str, message: bytes) -> None:
        """A frame that arrived from ``from_id`` on your transport. Safe to call from
        any thread; malformed or foreign frames are dropped and counted."""
        if not isinstance(self._link, CallbackLink):
            if self._driver.started:
                raise ConsensusError("handle_message() is for nodes using set_message_sender()")
            return  # not started yet: like a frame lost on the way (peers retransmit)
        self._link.receive_frame(from_id, message)

    # --- events --------------------------------------------------------------------------

    def on(self, event: str, callback: Callback) -> Callable[[], None]:
        """Listen to an event (see ``nodes.consensus.events``); returns an unsubscriber."""
        return self._bus.on(event, callback)

    def off(self, event: str, callback: Callback) -> None:
        self._bus.off(event, callback)

    def subscribe(self, key: str, callback: Callback) -> Callable[[], None]:
        """Call ``callback`` on every change of ``key`` in this node's view
        (``"*"``: every key). Returns an unsubscriber. What it is given depends
        on how many positional parameters it takes:

        - one: ``callback(value)``, the new value (None: deleted);
        - two: ``callback(new, old)``;
        - three or more, or ``*args``: ``callback(key, new, old)``, plus the
          details of ``state:changed`` it declares as keywords (``version``,
          ``index``, ``optimistic``, ``rolled_back``).

        A ``"*"`` subscription needs the key, so three parameters (or ``*args``).
        """
        if key != "*":
            checks.key(key)
        if not callable(callback):
            raise InvalidArgument(f"the callback for {key!r} must be callable, got {callback!r}")
        arity = positional_arity(callback)
        if arity == 0 or (key == "*" and arity is not None and arity < 3):
            raise InvalidArgument(
                f"subscribe({key!r}, ...) cannot call {callback!r}: it takes {arity} positional "
                "parameter(s); use callback(value) or callback(new, old) for one key, "
                "callback(key, new, old) for one key or '*'")
        if arity == 1:
            def wrapped(key_: str, new: Any, old: Any) -> Any:
                return callback(new)
        elif arity == 2:
            def wrapped(key_: str, new: Any, old: Any) -> Any:  # noqa: F811
                return callback(new, old)
        else:
            wrapped = callback
        return self._bus.on("state:changed", wrapped, first_arg=None if key == "*" else key)

    # --- proposals -------------------------------------------------------------------------

    async def propose(self, key: str, value: Any, *, timeout: float | None = None) -> bool:
        """Set ``key`` to ``value`` (None deletes it) through consensus. True once
        accepted; False when rejected or not decided within the timeout. A value
        that cannot be encoded raises ``InvalidArgument`` before anything is
        proposed (see the class docstring: how calls fail)."""
        return (await self.propose_with_result(key, value, timeout=timeout)).accepted

    async def propose_with_result(self, key: str, value: Any, *,
                                  timeout: float | None = None) -> ProposalResult:
        checks.key(key)
        command = {"op": "delete", "key": key} if value is None else \
            {"op": "put", "key": key, "value": value}
        return await self._submit(command, key, value, timeout)

    async def delete(self, key: str, *, timeout: float | None = None) -> bool:
        return await self.propose(key, None, timeout=timeout)

    async def _submit(self, command: dict[str, Any], key: str | None, value: Any,
                      timeout: float | None) -> ProposalResult:
        if not self._driver.started:
            raise NotStarted(f"node {self._node_id} is not started: call start() first")
        checks.replicable(command, key)
        if timeout is not None:
            timeout = checks.seconds("timeout", timeout)
        return await self._driver.submit(command, key, value, timeout or self.timeout)

    # --- reads ---------------------------------------------------------------------------

    def get(self, key: str, default: Any = None) -> Any:
        """This node's current value (a local, possibly stale read; an optimistic
        value shows here until it is confirmed or rolled back: see ``get_info``)."""
        info = self.get_info(key)
        return info.value if info.found else default

    def get_info(self, key: str) -> ValueInfo:
        layers = self._optimistic.get(key)
        got = self._driver.kv.query({"op": "get", "key": key})
        assert isinstance(got, dict)
        if layers:
            return ValueInfo(key, layers[-1].value, int(got.get("version", 0)), True, True)
        return ValueInfo(key, got.get("value"), int(got.get("version", 0)),
                         bool(got.get("found")))

    def keys(self, prefix: str = "") -> list[str]:
        got = self._driver.kv.query({"op": "keys", "prefix": prefix, "limit": 10_000})
        assert isinstance(got, dict)
        return list(got.get("keys", []))

    async def read(self, key: str, default: Any = None, *, timeout: float | None = None) -> Any:
        """A linearizable read (raft: ReadIndex, thesis 6.4, through the leader):
        reflects every write accepted before the call. Under simple_majority,
        the same as ``get``. Raises ``ConsensusError`` if no leader answers."""
        if not self._driver.started:
            raise NotStarted(f"node {self._node_id} is not started: call start() first")
        await self._driver.read_barrier(timeout or self.timeout)
        got = self._driver.kv.query({"op": "get", "key": key})
        assert isinstance(got, dict)
        return got.get("value") if got.get("found") else default

    # --- cluster ---------------------------------------------------------------------------

    def add_node(self, node_id: str | Mapping[str, Any], address: str | None = None, *,
                 metadata: Mapping[str, Any] | None = None) -> Awaitable[ProposalResult]:
        """Add a node. Before the first tick: a founding member (done at once).
        After: a membership change through the leader (the node joins as a learner
        and is promoted once caught up); await the result or ignore it.

        ``metadata`` (plain data, e.g. ``{"region": "eu-west"}``) shows in
        ``get_nodes()``; under raft, once the node runs, it is replicated with
        the address so every member sees it. The node may also be given as one
        mapping: ``add_node({"id": "n4", "address": "tcp://...", "metadata": {...}})``.
        """
        if isinstance(node_id, Mapping):
            if address is not None or metadata is not None:
                raise InvalidArgument("give add_node either one mapping {id, address, metadata} "
                                      "or node_id, address=, metadata=, not both")
            node_id, address, metadata = _node_spec(node_id)
        checks.node_id(node_id)
        if address is not None and (not isinstance(address, str) or not address):
            raise InvalidArgument(f"address must be a non-empty str like 'tcp://host:port', "
                                  f"got {address!r:.80}")
        meta = _metadata(metadata)
        if (address is None and isinstance(self._link, ZmqLink)
                and not self._driver.addresses.get(node_id)):
            raise InvalidArgument(f"over ZeroMQ, add_node({node_id!r}) needs the node's address "
                                  "('tcp://host:port')")
        if self._driver.bootstrap_peer(node_id, address, meta):
            return _Resolved(ProposalResult(f"{self._node_id}/add/{node_id}", True, node_id,
                                            Votes(), 0, value=address))
        return self._spawn(lambda: self._driver.change_membership("add", node_id, address,
                                                                   self.timeout, meta))

    def remove_node(self, node_id: str) -> Awaitable[ProposalResult]:
        """Remove a node (the leader included: it steps down once the change commits)."""
        checks.node_id(node_id)
        return self._spawn(lambda: self._driver.change_membership("remove", node_id, None,
                                                                   self.timeout))

    def transfer_leadership(self, to: str) -> Awaitable[ProposalResult]:
        """Ask the leader to hand leadership over to ``to`` (thesis 3.10)."""
        if self.mechanism != "raft":
            raise ConsensusError("simple_majority has no leader to transfer")
        return self._spawn(lambda: self._driver.change_membership("transfer", to, None,
                                                                   self.timeout))

    def _spawn(self, make: Callable[[], Awaitable[ProposalResult]]
               ) -> asyncio.Task[ProposalResult]:
        """Run a membership request as a task: awaiting it is optional, and it
        never raises (a failure is a ``ProposalResult`` with ``error``)."""
        if not self._driver.started:
            raise NotStarted(f"node {self._node_id} is not started: call start() first")

        async def guarded() -> ProposalResult:
            try:
                return await make()
            except ConsensusError as exc:
                return ProposalResult(f"{self._node_id}/admin", False, None, error=str(exc))

        task = asyncio.ensure_future(guarded())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def get_nodes(self) -> list[NodeInfo]:
        """Every member as this node sees it, sorted by id: ``NodeInfo`` with
        ``id``, ``address``, ``role`` (if known), ``voter``/``learner``,
        ``connected``/``status`` (reachability) and ``metadata``."""
        return list(self._driver.nodes().values())

    def get_node(self, node_id: str) -> NodeInfo | None:
        """One member as this node sees it (None: not a member here)."""
        return self._driver.nodes().get(node_id)

    def get_leader(self) -> NodeInfo | None:
        """The leader this node knows of, as a ``NodeInfo`` (None: none known;
        always None under simple_majority). ``get_leader_id()`` gives the id."""
        leader = self._driver.leader_id
        if leader is None:
            return None
        info = self._driver.nodes().get(leader)
        if info is None:  # a leader outside our configuration view (e.g. while joining)
            info = self._driver.node_info(leader, "leader", True, False)
        return info

    def get_leader_id(self) -> str | None:
        return self._driver.leader_id

    def is_leader(self) -> bool:
        return self._driver.leader_id == self._node_id and self._driver.role == "leader"

    def get_node_id(self) -> str:
        return self._node_id

    @property
    def node_id(self) -> str:
        return self._node_id

    def get_debug_state(self) -> dict[str, Any]:
        """current_term, role, leader_id, commit_index, log_length, and more
        (``tick_rounds``: the node's tick task is alive while it grows)."""
        state = self._driver.debug_state()
        state["tick_rounds"] = self._driver.tick_rounds
        state["running"] = self.running
        state["failure"] = None if self.failure is None else repr(self.failure)
        return state

    async def wait_for_leader(self, timeout: float | None = None) -> str:
        """The leader's id, once one is known (raft). Raises ``ConsensusError`` on timeout."""
        if self.mechanism != "raft":
            raise ConsensusError("simple_majority has no leader")
        loop = asyncio.get_running_loop()
        deadline = loop.time() + (timeout or self.timeout)
        while (leader := self.get_leader_id()) is None:
            if loop.time() >= deadline:
                raise ConsensusError(f"node {self._node_id}: no leader within the timeout")
            await asyncio.sleep(self.options.timing.tick)
        return leader


_NODE_SPEC_KEYS = frozenset({"id", "node_id", "address", "metadata"})


def _node_spec(spec: Mapping[str, Any]) -> tuple[Any, Any, Any]:
    """``{"id", "address", "metadata"}`` (``node_id`` for ``id`` too) as a tuple."""
    unknown = set(spec) - _NODE_SPEC_KEYS
    if unknown:
        raise InvalidArgument(f"add_node got unknown field(s) {sorted(map(str, unknown))}; a "
                              "node is {'id': ..., 'address': ..., 'metadata': {...}}")
    node_id = spec.get("id", spec.get("node_id"))
    if node_id is None:
        raise InvalidArgument("add_node({...}) needs the node's 'id'")
    return node_id, spec.get("address"), spec.get("metadata")


def _metadata(metadata: Mapping[str, Any] | None) -> dict[str, Any]:
    if metadata is None:
        return {}
    if not isinstance(metadata, Mapping) or not all(isinstance(k, str) for k in metadata):
        raise InvalidArgument(f"metadata must be a mapping with str keys, e.g. "
                              f"{{'region': 'eu-west'}}, got {metadata!r:.80}")
    meta = dict(metadata)
    checks.replicable(meta, None)
    return meta
