"""Replicated, deterministic state machines: what every node runs after Raft commits.

Every node applies the same committed entries in the same order and must reach
the same state and the same results, so nothing here reads a clock, a random
source, a file or a socket. Time is the leader's timestamp carried in each
command (made monotonic: see ``Replicated.clock_ms``).

A log entry's payload is one msgpack map (``encode_command``)::

    {"c": client_id, "s": seq, "t": timestamp_ms, "m": machine name, "cmd": command,
     "f": first_outstanding}

``"f"`` is optional (entries written before it existed, and clients that do not
pipeline, leave it out): the lowest seq the client has no answer for yet, at most
``"s"``. Absent, it counts as ``"s"`` itself.

An empty payload is the leader's no-op at the start of a term. Payloads are
decoded with bounded sizes and without ext types (``decode_command``); never
with pickle.

``Replicated`` routes each command to the state machine named by ``"m"`` and
implements client sessions (thesis 6.3), so a command retried after a failover
is applied once and answered with the first result.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

import msgpack

MAX_COMMAND_BYTES = 2 * 1024 * 1024
"""Largest entry payload ``decode_command`` accepts (a hostile entry cannot blow memory)."""
MAX_CLIENT_ID_CHARS = 256
MAX_MACHINE_NAME_CHARS = 64
MAX_UINT64 = (1 << 64) - 1
SNAPSHOT_FORMAT = 2
"""2: sessions keep every result at or above the client's first outstanding seq (1 kept one)."""
DEFAULT_MAX_OUTSTANDING = 1024
"""Results kept per client (commands applied but not yet acknowledged by its floor)."""
BATCH_MACHINE = "*"
"""The machine name of a transport batch: ``{"batch": [{"m": machine, "cmd": ...}, ...]}``."""


class BadCommand(ValueError):
    """An entry payload that is not a well-formed command (the proposer broke the format)."""


@dataclass(frozen=True, slots=True)
class ApplyContext:
    """What a state machine may know about the entry it applies, besides the command.

    ``timestamp_ms`` is the replicated clock (the leader's timestamp, never going
    backwards), the only notion of time a state machine may use."""

    index: int
    term: int
    timestamp_ms: int
    client_id: str


class StateMachine(Protocol):
    """One deterministic state machine, registered in ``Replicated`` under ``name``.

    ``apply`` must not raise for bad input: it answers with an error result and
    changes nothing. Results, events and snapshots are plain msgpack data (dict,
    list, str, bytes, int, float, bool, None)."""

    name: str

    def apply(self, command: dict, ctx: ApplyContext) -> tuple[object, list[dict]]:
        """Apply one committed command: (result for the client, change events)."""
        ...

    def query(self, query: dict) -> object:
        """Answer a read (get, list, ...) without changing anything."""
        ...

    def snapshot(self) -> object:
        """The whole state as plain msgpack-able data, canonical: equal states give
        equal data."""
        ...

    def restore(self, data: object) -> None:
        """Replace the whole state with one taken by ``snapshot``."""
        ...


@dataclass(frozen=True, slots=True)
class Applied:
    """The outcome of applying one entry.

    ``events`` are the machine's change events, each tagged ``"machine": name``;
    a duplicate (a retry of an already applied command) carries the first result
    and no events, since nothing changed. A no-op entry has ``client_id`` "",
    ``seq`` 0 and ``result`` None.

    ``machine``, ``command`` and ``clock_ms`` are set only when the command was
    applied to a machine: a subscriber holding the same deterministic machine can
    apply ``command`` with ``ApplyContext(index, term, clock_ms, client_id)`` and
    reach the same state (the view a client keeps is replicated to the edge)."""

    index: int
    client_id: str
    seq: int
    result: object
    events: list[dict] = field(default_factory=list)
    duplicate: bool = False
    machine: str = ""
    command: dict | None = None
    clock_ms: int = 0


def error_result(code: str, message: str, **extra: object) -> dict[str, object]:
    """The shape of every error answer: ``{"ok": False, "error": code, "message": ...}``."""
    return {"ok": False, "error": code, "message": message, **extra}


# --- the entry payload -------------------------------------------------------------


def _check_envelope(
    client_id: object, seq: object, timestamp_ms: object, machine: object, cmd: object,
    first_outstanding: object = None,
) -> None:
    if not isinstance(client_id, str) or not 0 < len(client_id) <= MAX_CLIENT_ID_CHARS:
        raise BadCommand(
            f"client_id must be a non-empty str of at most {MAX_CLIENT_ID_CHARS} chars, "
            f"got {client_id!r:.80}"
        )
    if type(seq) is not int or not 1 <= seq <= MAX_UINT64:
        raise BadCommand(f"seq must be an int >= 1, got {seq!r:.80}")
    if type(timestamp_ms) is not int or not 0 <= timestamp_ms <= MAX_UINT64:
        raise BadCommand(f"timestamp_ms must be an int >= 0, got {timestamp_ms!r:.80}")
    if not isinstance(machine, str) or not 0 < len(machine) <= MAX_MACHINE_NAME_CHARS:
        raise BadCommand(f"machine must be a non-empty str, got {machine!r:.80}")
    if not isinstance(cmd, dict):
        raise BadCommand(f"cmd must be a map, got {type(cmd).__name__}")
    if first_outstanding is not None and (
        type(first_outstanding) is not int or not 1 <= first_outstanding <= seq  # type: ignore[operator]
    ):
        raise BadCommand(
            f"first_outstanding must be an int from 1 to seq ({seq}), got {first_outstanding!r:.80}: "
            "it is the lowest seq the client has no answer for, and this command is one"
        )


def encode_command(
    client_id: str, seq: int, timestamp_ms: int, machine: str, cmd: dict,
    first_outstanding: int | None = None,
) -> bytes:
    """The entry payload for one command. Raises ``BadCommand`` for a malformed
    envelope or a payload above ``MAX_COMMAND_BYTES`` (so it never reaches the log).

    ``first_outstanding``: the lowest seq the client has no answer for (thesis 6.3);
    None leaves it out, which the sessions read as ``seq`` (no pipelining)."""
    _check_envelope(client_id, seq, timestamp_ms, machine, cmd, first_outstanding)
    envelope = {"c": client_id, "s": seq, "t": timestamp_ms, "m": machine, "cmd": cmd}
    if first_outstanding is not None:
        envelope["f"] = first_outstanding
    try:
        payload = msgpack.packb(envelope, use_bin_type=True)
    except (TypeError, ValueError, OverflowError) as exc:
        raise BadCommand(f"command is not msgpack-able: {exc}") from exc
    if len(payload) > MAX_COMMAND_BYTES:
        raise BadCommand(
            f"command is {len(payload)} bytes encoded, above the limit of {MAX_COMMAND_BYTES}"
        )
    return payload


def decode_command(payload: bytes) -> dict[str, Any]:
    """Decode and check an entry payload: ``{"c", "s", "t", "m", "cmd"}`` and maybe ``"f"``.

    Bounded (at most ``MAX_COMMAND_BYTES``; no ext types, so no timestamps and
    nothing exotic) and never pickle. Raises ``BadCommand`` for anything else."""
    if not isinstance(payload, bytes | bytearray | memoryview):
        raise BadCommand(f"payload must be bytes, got {type(payload).__name__}")
    if len(payload) > MAX_COMMAND_BYTES:
        raise BadCommand(f"payload is {len(payload)} bytes, above the limit of {MAX_COMMAND_BYTES}")
    try:
        envelope = msgpack.unpackb(
            payload,
            raw=False,
            strict_map_key=False,
            max_str_len=MAX_COMMAND_BYTES,
            max_bin_len=MAX_COMMAND_BYTES,
            max_array_len=MAX_COMMAND_BYTES,
            max_map_len=MAX_COMMAND_BYTES,
            max_ext_len=0,
        )
    except Exception as exc:  # msgpack raises ValueError, TypeError, its own errors...
        raise BadCommand(f"payload is not valid msgpack: {type(exc).__name__}: {exc}") from exc
    if not isinstance(envelope, dict):
        raise BadCommand(f"payload must be a map, got {type(envelope).__name__}")
    if not ("c" in envelope and "s" in envelope and "t" in envelope and "m" in envelope
            and "cmd" in envelope):  # on every entry of every node: no list built
        missing = [k for k in ("c", "s", "t", "m", "cmd") if k not in envelope]
        raise BadCommand(f"payload lacks field(s) {', '.join(missing)}")
    _check_envelope(envelope["c"], envelope["s"], envelope["t"], envelope["m"], envelope["cmd"],
                    envelope.get("f"))
    return envelope


# --- sessions and routing ----------------------------------------------------------


@dataclass(slots=True)
class _Session:
    """One client's session. Invariants: every key of ``results`` is at least
    ``floor`` and at most ``last_seq``; ``len(results) <= max_outstanding``."""

    last_seq: int  # the highest seq applied
    last_used_ms: int
    floor: int = 1  # the client's first outstanding seq: it has the answers of all below
    results: dict[int, object] = field(default_factory=dict)  # seq -> first result
    in_order: bool = True  # the keys of ``results`` were inserted in increasing order

    def keep(self, seq: int, result: object) -> None:
        """Keep the result of a newly applied ``seq`` (not in ``results``)."""
        if seq < self.last_seq:
            self.in_order = False  # a gap filled late: the keys are no longer sorted
        self.results[seq] = result
        self.last_seq = max(self.last_seq, seq)

    def raise_floor(self, floor: int) -> None:
        """The client has the answers of every seq below ``floor``: forget them. A
        floor never goes down (a delayed command may carry an older one).

        While the keys are sorted (seqs applied in increasing order, the common case)
        the ones below the floor are the first ones: only those are visited, not every
        result kept (up to ``max_outstanding``, on every command)."""
        if floor <= self.floor:
            return
        self.floor = floor
        results = self.results
        if self.in_order:
            while results:
                first = next(iter(results))
                if first >= floor:
                    break
                del results[first]
        else:
            self.results = {s: r for s, r in sorted(results.items()) if s >= floor}
            self.in_order = True


class Replicated:
    """Composite: routes commands to registered state machines by name and implements
    client sessions (thesis 6.3).

    Every command carries (client_id, seq) and, optionally, ``first_outstanding``:
    the lowest seq the client has no answer for yet (the thesis's acknowledgement;
    absent, it counts as the command's own seq). A client opens its session with
    seq 1 (the equivalent of the thesis's RegisterClient, so wait for its answer
    before pipelining more) and then uses increasing seqs; gaps are allowed.

    The session keeps the result of every applied seq at or above the client's
    floor (the highest ``first_outstanding`` it sent), so commands pipelined and
    retried in any order are each applied exactly once:

    - a seq whose result is kept: a retry, answered with the first result, not applied;
    - a seq below the floor (its result, if it was applied, is discarded): the error
      ``stale_sequence``, not applied (the client said it has its answer);
    - any other seq: applied, and its result kept until the floor passes it; unless
      the client already has ``max_outstanding`` results kept, when it gets the error
      ``too_many_outstanding`` and nothing is applied (memory stays bounded).

    Sessions expire when unused for ``session_ttl_ms`` (judged by entry
    timestamps), and the least recently used one is evicted beyond
    ``max_sessions``, to bound memory. The ids of expired clients are remembered
    (up to ``max_sessions`` of them), and a command from an unknown client with a
    seq above 1 cannot be told apart from one whose session expired: both get the
    error ``session_expired`` rather than risking a double application. The client
    must start over with a new client_id.

    The clock: ``clock_ms`` is the largest leader timestamp applied so far, so time
    never goes backwards here even when a new leader's clock is behind the old
    one's. Machines see it as ``ApplyContext.timestamp_ms``.
    """

    def __init__(
        self,
        machines: Iterable[StateMachine] = (),
        session_ttl_ms: int = 3_600_000,
        max_sessions: int = 100_000,
        max_outstanding: int = DEFAULT_MAX_OUTSTANDING,
    ) -> None:
        if session_ttl_ms <= 0 or max_sessions <= 0 or max_outstanding <= 0:
            raise ValueError("session_ttl_ms, max_sessions and max_outstanding must be positive")
        self.session_ttl_ms = session_ttl_ms
        self.max_sessions = max_sessions
        self.max_outstanding = max_outstanding
        self.machines: dict[str, StateMachine] = {}
        # Each machine's state when it was registered: a snapshot taken before a
        # machine existed (an older version's data directory) restores it to this.
        self._fresh: dict[str, object] = {}
        self.applied_index = 0
        self.clock_ms = 0
        # Least recently used first: timestamps never go backwards, so expiry pops
        # from the front. Invariant: last_used_ms is non-decreasing along the order.
        self._sessions: OrderedDict[str, _Session] = OrderedDict()
        self._expired: OrderedDict[str, None] = OrderedDict()
        for machine in machines:
            self.register(machine)

    def register(self, machine: StateMachine) -> None:
        name = machine.name
        if not isinstance(name, str) or not 0 < len(name) <= MAX_MACHINE_NAME_CHARS:
            raise ValueError(f"state machine name must be a non-empty str, got {name!r}")
        if name in self.machines:
            raise ValueError(f"a state machine named {name!r} is already registered")
        self.machines[name] = machine
        self._fresh[name] = machine.snapshot()

    @property
    def session_count(self) -> int:
        return len(self._sessions)

    # --- applying -------------------------------------------------------------------

    def apply_entry(self, index: int, term: int, payload: bytes) -> Applied:
        """Apply one committed entry. Never raises for a bad payload: an undecodable
        entry is answered with the error ``bad_entry`` (a bad entry must not crash
        every node). Raises ``ValueError`` only for a driver bug: an ``index`` at or
        below ``applied_index`` (indexes may skip, e.g. over membership entries)."""
        if index <= self.applied_index:
            raise ValueError(
                f"entry {index} is at or below applied_index {self.applied_index}: "
                "the driver must apply each committed entry once, in order"
            )
        self.applied_index = index
        if not payload:
            return Applied(index, "", 0, None)
        try:
            envelope = decode_command(payload)
        except BadCommand as exc:
            return Applied(index, "", 0, error_result("bad_entry", f"entry {index}: {exc}"))

        client_id: str = envelope["c"]
        seq: int = envelope["s"]
        self.clock_ms = max(self.clock_ms, envelope["t"])
        self._expire_sessions()

        session = self._sessions.get(client_id)
        if session is None:
            if client_id in self._expired or seq != 1:
                return Applied(index, client_id, seq, self._session_expired(client_id, seq))
            session = _Session(last_seq=0, last_used_ms=self.clock_ms)
            self._sessions[client_id] = session
            self._evict_beyond_limit()
        session.last_used_ms = self.clock_ms
        self._sessions.move_to_end(client_id)
        session.raise_floor(envelope.get("f", seq))

        if seq in session.results:
            return Applied(index, client_id, seq, session.results[seq], duplicate=True)
        if seq < session.floor:
            return Applied(index, client_id, seq, self._stale(client_id, seq, session))
        if len(session.results) >= self.max_outstanding:
            return Applied(index, client_id, seq, self._too_many(client_id, seq, session))

        ctx = ApplyContext(index, term, self.clock_ms, client_id)
        if envelope["m"] == BATCH_MACHINE:
            result, events = self._apply_batch(envelope["cmd"], ctx)
        else:
            result, events = self._apply_to_machine(envelope["m"], envelope["cmd"], ctx)
        session.keep(seq, result)
        return Applied(index, client_id, seq, result, events, machine=envelope["m"],
                       command=envelope["cmd"], clock_ms=self.clock_ms)

    @staticmethod
    def _stale(client_id: str, seq: int, session: _Session) -> dict[str, object]:
        return error_result(
            "stale_sequence",
            f"stale sequence: seq {seq} from client {client_id!r} is below its first "
            f"outstanding seq {session.floor} (the client said it has the answer of every seq "
            f"below it); the command was not applied now and its result, if it ever was, is "
            "no longer kept. Send new commands with new seqs.",
            last_seq=session.last_seq,
            first_outstanding=session.floor,
        )

    def _too_many(self, client_id: str, seq: int, session: _Session) -> dict[str, object]:
        return error_result(
            "too_many_outstanding",
            f"too many outstanding commands: client {client_id!r} already has "
            f"{len(session.results)} results kept (the limit) from its first outstanding seq "
            f"{session.floor}; seq {seq} was not applied. Raise first_outstanding as answers "
            "arrive (or pipeline fewer commands), then retry it with the same seq.",
            first_outstanding=session.floor,
            limit=self.max_outstanding,
        )

    def _apply_batch(self, command: dict, ctx: ApplyContext) -> tuple[object, list[dict]]:
        """A transport batch: several commands of one client under one sequence number
        (one log entry, one answer, one published update). Each command applies on its
        own, in order, like separate entries would; the batch as a whole is applied
        exactly once. (For all-or-none use the key-value machine's ``batch``.)"""
        items = command.get("batch") if isinstance(command, dict) else None
        if not isinstance(items, list) or not items:
            return error_result("bad_command", "a batch needs a non-empty list 'batch'"), []
        results: list[object] = []
        events: list[dict] = []
        for item in items:
            if not isinstance(item, dict) or not isinstance(item.get("m"), str) \
                    or not isinstance(item.get("cmd"), dict) or item["m"] == BATCH_MACHINE:
                results.append(error_result("bad_command", "batch items are {m: machine, cmd: map}"))
                continue
            r, ev = self._apply_to_machine(item["m"], item["cmd"], ctx)
            results.append(r)
            events.extend(ev)
        return {"ok": True, "results": results}, events

    def _apply_to_machine(
        self, name: str, command: dict, ctx: ApplyContext
    ) -> tuple[object, list[dict]]:
        machine = self.machines.get(name)
        if machine is None:
            return error_result(
                "unknown_machine",
                f"no state machine named {name!r} (known: {', '.join(sorted(self.machines))})",
            ), []
        try:
            result, events = machine.apply(command, ctx)
        except Exception as exc:
            # A machine bug: every node hits it on the same entry, so answering with an
            # error keeps the cluster alive (restarting would replay into the same crash).
            return error_result(
                "machine_failed",
                f"state machine {name!r} failed on entry {ctx.index}: {type(exc).__name__}: {exc}",
            ), []
        return result, [{**event, "machine": name} for event in events]

    def _session_expired(self, client_id: str, seq: int) -> dict[str, object]:
        why = (
            "its session expired"
            if client_id in self._expired
            else "it has no session (a session opens with seq 1)"
        )
        return error_result(
            "session_expired",
            f"session expired: client {client_id!r} sent seq {seq} but {why}; the command was "
            "not applied. Start over with a new client_id and seq 1.",
        )

    def _expire_sessions(self) -> None:
        deadline = self.clock_ms - self.session_ttl_ms
        while self._sessions:
            client_id, session = next(iter(self._sessions.items()))
            if session.last_used_ms > deadline:
                break
            self._forget(client_id)

    def _evict_beyond_limit(self) -> None:
        while len(self._sessions) > self.max_sessions:
            self._forget(next(iter(self._sessions)))

    def _forget(self, client_id: str) -> None:
        del self._sessions[client_id]
        self._expired[client_id] = None
        while len(self._expired) > self.max_sessions:
            self._expired.popitem(last=False)

    # --- reading ----------------------------------------------------------------------

    def query(self, machine: str, query: dict) -> object:
        target = self.machines.get(machine)
        if target is None:
            return error_result("unknown_machine", f"no state machine named {machine!r}")
        return target.query(query)

    # --- snapshots --------------------------------------------------------------------

    def snapshot(self) -> bytes:
        """Everything, canonical: replicas that applied the same entries give the same
        bytes. msgpack of ``{"format": 2, "applied", "clock_ms", "sessions": {"live":
        [[client_id, last_seq, last_used_ms, first_outstanding, [[seq, result], ...]
        by seq], ...] least recently used first, "expired": [client_id, ...]},
        "machines": {name: data}}``. ``restore`` also reads format 1, whose live
        sessions are ``[client_id, last_seq, last_used_ms, result]``."""
        data = {
            "format": SNAPSHOT_FORMAT,
            "applied": self.applied_index,
            "clock_ms": self.clock_ms,
            "sessions": {
                "live": [
                    [cid, s.last_seq, s.last_used_ms, s.floor,
                     [[seq, s.results[seq]] for seq in sorted(s.results)]]
                    for cid, s in self._sessions.items()
                ],
                "expired": list(self._expired),
            },
            "machines": {name: self.machines[name].snapshot() for name in sorted(self.machines)},
        }
        return msgpack.packb(data, use_bin_type=True)

    def restore(self, data: bytes) -> None:
        """Replace everything with a snapshot. Raises ``ValueError`` if it is malformed
        or names other state machines than the registered ones (restoring only some
        would leave replicas disagreeing)."""
        try:
            snap = msgpack.unpackb(data, raw=False, strict_map_key=False)
            if not isinstance(snap, dict) or snap.get("format") not in (1, SNAPSHOT_FORMAT):
                raise ValueError(f"not a snapshot of format 1 or {SNAPSHOT_FORMAT}")
            applied, clock = int(snap["applied"]), int(snap["clock_ms"])
            read = _session_v1 if snap["format"] == 1 else _session_v2
            sessions = OrderedDict(read(row) for row in snap["sessions"]["live"])
            expired = OrderedDict((str(cid), None) for cid in snap["sessions"]["expired"])
            machines = snap["machines"]
            if not isinstance(machines, dict):
                raise ValueError("machines must be a map")
        except (ValueError, TypeError, KeyError) as exc:
            raise ValueError(f"malformed state machine snapshot: {exc}") from exc
        unknown = set(machines) - set(self.machines)
        if unknown:
            raise ValueError(
                f"snapshot holds machines {sorted(machines)} but only {sorted(self.machines)} "
                f"are registered: this node cannot keep the state of {sorted(unknown)}; run it "
                "with a version that registers them"
            )
        # A registered machine the snapshot lacks did not exist when it was taken, so
        # no entry before the snapshot's index touched it: every replica starts it fresh.
        for name in sorted(self.machines):
            self.machines[name].restore(machines.get(name, self._fresh[name]))
        self.applied_index, self.clock_ms = applied, clock
        self._sessions, self._expired = sessions, expired


def _session_v1(row: list) -> tuple[str, _Session]:
    """Format 1 kept the last result only: the floor was the last seq."""
    cid, seq, used, result = row
    session = _Session(int(seq), int(used), floor=max(1, int(seq)))
    if int(seq) > 0:
        session.results[int(seq)] = result
    return str(cid), session


def _session_v2(row: list) -> tuple[str, _Session]:
    cid, seq, used, floor, results = row
    kept = {int(s): result for s, result in sorted(results, key=lambda row: int(row[0]))}
    if any(s < int(floor) or s > int(seq) for s in kept):
        raise ValueError(f"session {cid!r} keeps a result outside [{floor}, {seq}]")
    return str(cid), _Session(int(seq), int(used), int(floor), kept)
