"""The wire format: every byte that crosses a ZeroMQ socket is encoded and decoded here.

msgpack only, never pickle: a frame is data, not code. ``docs/PROTOCOL.md`` is the
reader's guide (sockets, the Clone-pattern recipe, exactly-once); this docstring is
the reference, frame by frame.

Framing
-------
One ZeroMQ message part is one msgpack frame, except on the PUB socket, where a
message has two parts, ``[topic, payload]`` (``UPDATE_TOPIC`` = ``b"u"``,
``CLUSTER_TOPIC`` = ``b"c"``) and the payload is the frame. Every frame is a
msgpack array that opens with the same envelope::

    [version, cluster_id, type_code, field, field, ...]

``version`` is ``PROTOCOL_VERSION`` (1), ``cluster_id`` the str naming the cluster
(a frame meant for another cluster is refused), ``type_code`` a small int naming
the frame type (``FrameType``); the fields follow in the order listed below,
positionally, with no field names on the wire. Types: ``uint`` is a msgpack int
in 0..2**64-1 (never a bool, never a float), ``id`` a node id, a str of 1 to
``MAX_NODE_ID_CHARS`` chars, ``bin`` msgpack bin, ``str`` msgpack str (UTF-8),
``any`` any msgpack value without ext types nested at most ``MAX_VALUE_DEPTH``
levels. A frame has exactly its fields: no more, no fewer.

Raft peer frames (``encode_peer`` / ``decode_peer``), one per ``nodes.raft.messages``
dataclass, fields in dataclass order::

    1 RequestVote              term uint, sender id, recipient id, last_log_index uint,
                               last_log_term uint, pre_vote bool, transfer bool
    2 RequestVoteResponse      term uint, sender id, recipient id, granted bool, pre_vote bool
    3 AppendEntries            term uint, sender id, recipient id, prev_log_index uint,
                               prev_log_term uint, entries [entry...], leader_commit uint,
                               seq uint
    4 AppendEntriesResponse    term uint, sender id, recipient id, success bool,
                               match_index uint, hint_index uint, hint_term uint, seq uint
    5 InstallSnapshot          term uint, sender id, recipient id, meta, offset uint,
                               data bin, done bool, seq uint
    6 InstallSnapshotResponse  term uint, sender id, recipient id, snapshot_index uint,
                               next_offset uint, done bool, seq uint
    7 TimeoutNow               term uint, sender id, recipient id

    8 GroupBatch               sender id, recipient id, [item...]   (the node host's frame)
        item = [group uint, quiesce bool, type_code uint (1..7), field...]: one Raft
               message of group ``group``, its fields those of the frame of that type
               code above; its sender and recipient are the batch's. ``quiesce``
               marks a leader's last heartbeat before its group stops ticking
               (``nodes.host.host``). Everything a node host sends another in one
               loop turn is one batch (so the heartbeats of every group two nodes
               share travel together); a batch with no items is the host-level
               heartbeat. Frames 1-7 stay valid as they are: a node that hosts one
               group speaks them; ``decode_peer`` refuses a batch and
               ``decode_batch`` anything else.

    entry = [index uint >= 1, term uint >= 1, kind uint (0 normal, 1 config), data bin]
            (a config entry's data is a membership change, b"<change kind>:<node id>",
            change kind 0 add learner, 1 promote, 2 remove; see nodes.raft.core)
    meta  = [index uint, term uint, [voter id...], [learner id...]]   (no id twice in a list)

The entries of an AppendEntries are well formed: consecutive indexes starting at
``prev_log_index + 1``, terms non-decreasing, the first at least ``prev_log_term``
and the last at most the message's ``term`` (the follower's log code relies on it).

Client frames (a DEALER talking to a node's client ROUTER)::

    16 Request      req_id uint >= 1, client_id str (1..256 chars), kind str, body map
    17 Response     req_id uint, ok bool, result any, error (nil | error), index uint
                    error = [code str (1..64), message str, leader_id (nil | id),
                             leader_addr (nil | str)]; error is nil exactly when ok

Request kinds (``REQUEST_KINDS``) and their bodies (a map with str keys; the
codec checks the envelope and that shape, the node checks what is inside and
answers ``bad_request`` when it is wrong)::

    submit    {machine: str, seq: uint >= 1, cmd: map, first_outstanding?: uint (1..seq)}
    read      {machine: str, query: map, linearizable: bool}
    snapshot  {} (optionally machines: [str...])
    status    {}
    admin     {action: str, args: map, key?: str}
    hello     {}

A request's ``req_id`` is chosen by the client (unique among its requests in
flight, so it can pipeline) and echoed by the response; 0 is reserved for the
answer to a frame whose ``req_id`` could not be read: whenever the frame opens
with a msgpack array whose first item is ``PROTOCOL_VERSION`` and whose fourth is
an int >= 1, that int is echoed, whatever is wrong further on (an ext type in the
body, a frame above ``max_frame``, an unknown kind, another cluster's id). Error codes are
``ERROR_CODES``; a client treats an unknown code as a failure of that request.

Published frames (the node's PUB socket; payload of ``[topic, payload]``)::

    18 Update       (topic b"u") index uint, term uint, machine str (0..64), client_id str
                    (0..256), seq uint, result any, events [map...], command (nil | map),
                    clock_ms uint
    19 ClusterInfo  (topic b"c") node_id id, term uint, role str (1..32), leader_id (nil | id),
                    commit uint, applied uint, nodes {id: map}

Limits
------
A frame longer than ``max_frame`` bytes (``DEFAULT_MAX_FRAME``, 16 MiB) is refused
before it is unpacked, and msgpack's own limits (str, bin, array and map lengths)
are bounded by the frame's size so a short frame cannot claim a huge container.
Peer frames hold no maps at all and nothing deeper than an entry or a meta's id
list; client values (bodies, results, events, commands) may nest at most
``MAX_BODY_DEPTH`` (requests) or ``MAX_VALUE_DEPTH`` (everything a node sends) levels.

Errors
------
Decoding raises only ``ProtocolError`` (the peer broke the protocol), one subclass
per reason, each with a ``code`` used as a drop counter's name: ``BadVersion``,
``ForeignCluster``, ``Malformed``, ``FrameTooLarge``, ``UnknownType``, ``UnknownKind`` (and
``TypeError`` when handed something that is not bytes: that is our bug). It never
builds a dataclass whose fields have the wrong types. Encoding raises only
``EncodeError`` (we have a bug: we were asked to send what the protocol cannot
carry). ``encode_peer`` trusts the Raft core and checks nothing beyond what
msgpack refuses, since it is the hot path; the client encoders check everything
the decoders check, so what they send is what the other side accepts.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, fields
from enum import IntEnum
from operator import attrgetter
from typing import Any, Final

import msgpack

from .raft.core import decode_config_change
from .raft.messages import (
    AppendEntries,
    AppendEntriesResponse,
    ClusterConfig,
    Entry,
    EntryKind,
    InstallSnapshot,
    InstallSnapshotResponse,
    Message,
    RequestVote,
    RequestVoteResponse,
    SnapshotMeta,
    TimeoutNow,
    make_entry,
)

__all__ = [
    "CLUSTER_TOPIC",
    "DEFAULT_MAX_FRAME",
    "ERROR_CODES",
    "MAX_BODY_DEPTH",
    "MAX_CLIENT_ID_CHARS",
    "MAX_NODE_ID_CHARS",
    "MAX_VALUE_DEPTH",
    "PEER_FRAMES",
    "PROTOCOL_VERSION",
    "REQUEST_KINDS",
    "UPDATE_TOPIC",
    "BadVersion",
    "ClusterInfo",
    "EncodeError",
    "ErrorInfo",
    "ForeignCluster",
    "FrameTooLarge",
    "FrameType",
    "Malformed",
    "ProtocolError",
    "Request",
    "Response",
    "UnknownKind",
    "UnknownType",
    "Update",
    "decode_batch",
    "decode_cluster_info",
    "decode_peer",
    "decode_request",
    "decode_response",
    "decode_update",
    "encode_batch",
    "encode_cluster_info",
    "encode_peer",
    "encode_request",
    "encode_response",
    "encode_update",
    "protocol_error_response",
]

PROTOCOL_VERSION: Final = 1
DEFAULT_MAX_FRAME: Final = 16 * 1024 * 1024

UPDATE_TOPIC: Final = b"u"
CLUSTER_TOPIC: Final = b"c"

MAX_NODE_ID_CHARS: Final = 64
MAX_CLIENT_ID_CHARS: Final = 256  # as nodes.statemachine.MAX_CLIENT_ID_CHARS
MAX_MACHINE_CHARS: Final = 64
MAX_ERROR_CODE_CHARS: Final = 64
MAX_ERROR_MESSAGE_CHARS: Final = 64 * 1024
MAX_ADDRESS_CHARS: Final = 256
MAX_ROLE_CHARS: Final = 32
MAX_BODY_DEPTH: Final = 32
# above MAX_BODY_DEPTH: a result or snapshot wraps values that came in a body
MAX_VALUE_DEPTH: Final = 64
_MAX_UINT64: Final = (1 << 64) - 1

REQUEST_KINDS: Final = ("submit", "read", "snapshot", "status", "admin", "hello")
ERROR_CODES: Final = frozenset({
    "not_leader",  # this node does not lead; leader_id/leader_addr name the leader if known
    "timeout",  # no answer in time: the command may or may not have been applied
    "rejected",  # the cluster refused (e.g. a membership change while another is pending)
    "unavailable",  # no node could serve the request
    "bad_request",  # the request decoded but its body makes no sense
    "protocol",  # the frame could not be decoded
    "rate_limited",  # this client sends faster than the node admits
    "unauthorized",  # an admin request without the right key
    "transfer_in_progress",  # leadership is moving; retry at the new leader
})


class FrameType(IntEnum):
    """The ``type_code`` of each frame (the third element of the envelope)."""

    REQUEST_VOTE = 1
    REQUEST_VOTE_RESPONSE = 2
    APPEND_ENTRIES = 3
    APPEND_ENTRIES_RESPONSE = 4
    INSTALL_SNAPSHOT = 5
    INSTALL_SNAPSHOT_RESPONSE = 6
    TIMEOUT_NOW = 7
    GROUP_BATCH = 8
    REQUEST = 16
    RESPONSE = 17
    UPDATE = 18
    CLUSTER_INFO = 19


# --- errors ------------------------------------------------------------------------


class ProtocolError(Exception):
    """The other side broke the protocol: the frame is dropped (and counted by
    ``code``), never acted upon. ``req_id`` is set when a request frame was readable
    enough to name its request, so the answer can go to the right caller."""

    code = "protocol"

    def __init__(self, message: str, req_id: int | None = None) -> None:
        super().__init__(message)
        self.req_id = req_id


class BadVersion(ProtocolError):
    code = "bad_version"


class ForeignCluster(ProtocolError):
    code = "foreign_cluster"


class Malformed(ProtocolError):
    code = "malformed"


class FrameTooLarge(ProtocolError):
    code = "frame_too_large"


class UnknownType(ProtocolError):
    """A type code this side does not know, or not the frame expected on this socket."""

    code = "unknown_type"


class UnknownKind(ProtocolError):
    """A ``Request`` whose ``kind`` is not one of ``REQUEST_KINDS`` (the frame type is
    fine: a newer client, or a typo)."""

    code = "unknown_kind"


class EncodeError(ValueError):
    """A local bug: asked to send something the protocol cannot carry."""


# --- client-side dataclasses ---------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Request:
    """Client -> node. ``body`` depends on ``kind`` (see the module docstring)."""

    req_id: int
    client_id: str
    kind: str
    body: dict[str, Any]


@dataclass(frozen=True, slots=True)
class ErrorInfo:
    """Why a request failed. ``leader_id``/``leader_addr`` (the leader's client
    endpoint) are set with ``not_leader`` and ``transfer_in_progress`` when known."""

    code: str
    message: str
    leader_id: str | None = None
    leader_addr: str | None = None


@dataclass(frozen=True, slots=True)
class Response:
    """Node -> client, answering ``req_id``. Invariant: ``error is None`` iff ``ok``.
    ``index`` is the applied index the answer reflects (the entry's index for a
    submit), 0 when it reflects none."""

    req_id: int
    ok: bool
    result: object = None
    error: ErrorInfo | None = None
    index: int = 0


@dataclass(frozen=True, slots=True)
class Update:
    """One applied entry, published with its Raft index as the sequence number.

    A no-op or membership entry has ``machine`` "", ``client_id`` "" and ``seq`` 0.
    ``command`` and ``clock_ms`` are set when a command was applied to ``machine``:
    a subscriber holding the same deterministic machine can apply it too."""

    index: int
    term: int
    machine: str
    client_id: str
    seq: int
    result: object
    events: list[dict[Any, Any]]
    command: dict[Any, Any] | None = None
    clock_ms: int = 0


@dataclass(frozen=True, slots=True)
class ClusterInfo:
    """A node's view of the cluster, published periodically and on every role change.
    ``nodes`` maps each known node id to ``{connected, voter, learner, client, pub}``."""

    node_id: str
    term: int
    role: str
    leader_id: str | None
    commit: int
    applied: int
    nodes: dict[str, dict[Any, Any]]


# --- field checks: return the value or raise Malformed naming the field -------------


_WIRE_TYPES: Final[dict[type, str]] = {
    bool: "bool", int: "int", float: "float", str: "str", bytes: "bin", list: "array",
    tuple: "array", dict: "map", type(None): "nil",
}


def _wire_type(value: object) -> str:
    return _WIRE_TYPES.get(type(value), type(value).__name__)


def _article(noun: str) -> str:
    return f"an {noun}" if noun[0] in "aeiou" else f"a {noun}"


def _show(value: object) -> str:
    """A short description of a value for an error message (never the whole value)."""
    if isinstance(value, str | bytes):
        shown = repr(value[:40])
        return f"{shown}... ({len(value)} long)" if len(value) > 40 else shown
    if isinstance(value, list | tuple | dict):
        return f"{_article(_wire_type(value))} of {len(value)} items"
    if type(value) is int and value.bit_length() > 64:
        return f"an int of {value.bit_length()} bits"
    if value is None or isinstance(value, bool | int | float):
        return repr(value)
    return _article(_wire_type(value))


def _uint(value: Any, where: str) -> int:
    if type(value) is int and 0 <= value <= _MAX_UINT64:
        return value
    raise Malformed(f"{where} must be an int >= 0, got {_show(value)}")


def _positive(value: Any, where: str) -> int:
    if type(value) is int and 1 <= value <= _MAX_UINT64:
        return value
    raise Malformed(f"{where} must be an int >= 1, got {_show(value)}")


def _bool(value: Any, where: str) -> bool:
    if type(value) is bool:
        return value
    raise Malformed(f"{where} must be a bool, got {_show(value)}")


def _bin(value: Any, where: str) -> bytes:
    if type(value) is bytes:
        return value
    raise Malformed(f"{where} must be bin (bytes), got {_show(value)}")


def _node_id(value: Any, where: str) -> str:
    if type(value) is str and 0 < len(value) <= MAX_NODE_ID_CHARS:
        return value
    raise Malformed(
        f"{where} must be a node id (str of 1 to {MAX_NODE_ID_CHARS} chars), got {_show(value)}"
    )


def _optional_node_id(value: Any, where: str) -> str | None:
    return None if value is None else _node_id(value, where)


def _str(value: Any, where: str, min_len: int, max_len: int) -> str:
    if type(value) is str and min_len <= len(value) <= max_len:
        return value
    raise Malformed(f"{where} must be a str of {min_len} to {max_len} chars, got {_show(value)}")


_CONTAINERS: Final = (list, tuple, dict)


def _check_depth(value: object, limit: int, where: str) -> None:
    """Refuse values nested deeper than ``limit`` (a scalar is 0 deep, ``[]`` 1 deep).

    Breadth-first and iterative, so hostile nesting cannot exhaust Python's stack.
    Map keys must be scalars (a container key would not survive a round trip).
    (``isinstance`` with a tuple of types, not a ``X | Y`` union: 3x faster, and this
    runs on every request body.)"""
    containers = _CONTAINERS
    if not isinstance(value, containers):
        return
    level: list[Any] = [value]
    depth = 0
    while level:
        depth += 1
        if depth > limit:
            raise Malformed(f"{where} nests deeper than {limit} levels")
        deeper: list[Any] = []
        for container in level:
            if isinstance(container, dict):
                for key in container:
                    if isinstance(key, containers):
                        raise Malformed(f"{where} has a map key that is {_article(_wire_type(key))}")
                items = container.values()
            else:
                items = container
            for item in items:
                if isinstance(item, containers):
                    deeper.append(item)
        level = deeper


def _str_keyed_map(value: Any, where: str, depth: int) -> dict[str, Any]:
    if type(value) is not dict:
        raise Malformed(f"{where} must be a map, got {_show(value)}")
    for key in value:
        if type(key) is not str:
            raise Malformed(f"{where} keys must be str, got {_show(key)}")
    _check_depth(value, depth, where)
    return value


def _any(value: Any, where: str) -> Any:
    _check_depth(value, MAX_VALUE_DEPTH, where)
    return value


# --- envelope -------------------------------------------------------------------------


def _unpack(data: bytes, max_frame: int, allow_maps: bool) -> Any:
    if not isinstance(data, bytes | bytearray | memoryview):
        raise TypeError(f"a frame is bytes, got {type(data).__name__}")  # our bug, not theirs
    size = data.nbytes if isinstance(data, memoryview) else len(data)
    if size > max_frame:
        raise FrameTooLarge(f"frame of {size} bytes exceeds the {max_frame}-byte limit")
    try:
        return msgpack.unpackb(
            data,
            raw=False,
            use_list=True,
            strict_map_key=False,
            max_str_len=size,
            max_bin_len=size,
            max_array_len=size,
            max_map_len=size // 2 if allow_maps else 0,
            max_ext_len=0,
        )
    except Exception as exc:  # msgpack raises ValueError, TypeError, its own errors...
        detail = str(exc) or type(exc).__name__
        if not allow_maps and "max_map_len" in detail:
            detail = "a Raft peer frame holds no maps"
        elif "max_ext_len" in detail:
            detail = "it holds a msgpack ext type (a timestamp, ...): ext types are never allowed"
        raise Malformed(f"frame of {size} bytes is not a valid msgpack frame: {detail}") from None


def _open_envelope(frame: Any, cluster_id: str) -> int:
    """Check ``[version, cluster_id, type_code, ...]``; return the type code."""
    if type(frame) is not list:
        raise Malformed(f"a frame must be a msgpack array, got {_show(frame)}")
    if len(frame) < 3:
        raise Malformed(f"a frame opens with [version, cluster_id, type_code], got {len(frame)} items")
    version, frame_cluster, code = frame[0], frame[1], frame[2]
    if type(version) is not int:
        raise Malformed(f"protocol version must be an int, got {_show(version)}")
    if version != PROTOCOL_VERSION:
        raise BadVersion(
            f"protocol version {version} is not supported; this side speaks version "
            f"{PROTOCOL_VERSION}"
        )
    if type(frame_cluster) is not str:
        raise Malformed(f"cluster id must be a str, got {_show(frame_cluster)}")
    if frame_cluster != cluster_id:
        raise ForeignCluster(
            f"cluster id {_show(frame_cluster)} is not this cluster's {cluster_id!r}"
        )
    if type(code) is not int:
        raise Malformed(f"type code must be an int, got {_show(code)}")
    return code


def _describe_code(code: int) -> str:
    try:
        return f"type code {code} ({FrameType(code).name})"
    except ValueError:
        return f"unknown type code {code}"


def _expect(code: int, expected: FrameType) -> None:
    if code != expected:
        raise UnknownType(f"{_describe_code(code)} where a {expected.name} frame was expected")


def _expect_width(frame: list[Any], width: int, what: str) -> None:
    if len(frame) != width:
        raise Malformed(f"{what} frame has {len(frame) - 3} fields, expected {width - 3}")


def _pack(frame: list[Any], what: str) -> bytes:
    try:
        return msgpack.packb(frame, use_bin_type=True)
    except (TypeError, ValueError, OverflowError) as exc:
        raise EncodeError(f"cannot encode {what}: {exc}") from exc


# --- Raft peer frames: one table, turned into per-type encoders and decoders ---------

_Check = Callable[[Any, str], Any]


def _entries(value: Any, where: str) -> tuple[Entry, ...]:
    """Entries, shape-checked; consecutive indexes and non-decreasing terms.

    The common case (well-formed normal entries) is checked in one tight loop with
    the entries built through ``make_entry``; anything unusual (a membership entry,
    a bad field) goes to ``_entries_checked``, which says what is wrong."""
    if type(value) is not list or not value:
        return _entries_checked(value, where)
    out: list[Entry] = []
    append = out.append
    make = make_entry
    normal = EntryKind.NORMAL
    first = value[0]
    if type(first) is not list or len(first) != 4 or type(first[0]) is not int:
        return _entries_checked(value, where)
    expected_index, last_term = first[0], 1
    for raw in value:
        if type(raw) is not list or len(raw) != 4:
            return _entries_checked(value, where)
        index, term, kind, data = raw
        if (
            index != expected_index
            or type(index) is not int
            or type(term) is not int
            or term < last_term
            or kind != 0
            or type(kind) is not int
            or type(data) is not bytes
        ):
            return _entries_checked(value, where)
        append(make(index, term, data, normal))
        expected_index, last_term = index + 1, term
    if expected_index - len(out) < 1:  # the first index is below 1
        return _entries_checked(value, where)
    return tuple(out)


def _entries_checked(value: Any, where: str) -> tuple[Entry, ...]:
    """``_entries`` the slow way, field by field: finds and describes what is wrong."""
    if type(value) is not list:
        raise Malformed(f"{where} must be an array, got {_show(value)}")
    out = []
    expected_index = -1
    last_term = 0
    kinds = _ENTRY_KINDS
    for position, raw in enumerate(value):
        if type(raw) is not list or len(raw) != 4:
            raise Malformed(f"{where}[{position}] must be [index, term, kind, data], got {_show(raw)}")
        index, term, kind, data = raw
        if (
            type(index) is not int
            or type(term) is not int
            or type(kind) is not int
            or type(data) is not bytes
            or index < 1
            or term < 1
            or kind not in kinds
        ):
            raise Malformed(
                f"{where}[{position}] must be [index >= 1, term >= 1, kind 0|1, bin], got "
                f"[{_show(index)}, {_show(term)}, {_show(kind)}, {_show(data)}]"
            )
        if kind == EntryKind.CONFIG:
            _config_change(data, f"{where}[{position}].data")
        if index != expected_index and expected_index != -1:
            raise Malformed(f"{where}[{position}] has index {index}, expected {expected_index}")
        if term < last_term:
            raise Malformed(f"{where}[{position}] has term {term} below the previous {last_term}")
        expected_index, last_term = index + 1, term
        out.append(Entry(index, term, data, kinds[kind]))
    return tuple(out)


def _config_change(data: bytes, where: str) -> None:
    """A membership entry's data must decode, or the follower's core would fail on it."""
    try:
        change = decode_config_change(data)
    except Exception:  # the core's decoder raises ValueError, UnicodeDecodeError...
        raise Malformed(f"{where} is not a membership change, got {_show(data)}") from None
    if change.config is not None:
        for nid in sorted(change.config.members()):
            _node_id(nid, f"{where} node id")
    else:
        _node_id(change.node_id, f"{where} node id")


def _entries_to_wire(entries: tuple[Entry, ...]) -> list[list[Any]]:
    return [[e.index, e.term, e.kind, e.data] for e in entries]


def _id_list(value: Any, where: str) -> frozenset[str]:
    if type(value) is not list:
        raise Malformed(f"{where} must be an array of node ids, got {_show(value)}")
    ids = frozenset(_node_id(item, where) for item in value)
    if len(ids) != len(value):
        raise Malformed(f"{where} lists a node id twice")
    return ids


def _meta(value: Any, where: str) -> SnapshotMeta:
    if type(value) is not list or len(value) != 4:
        raise Malformed(f"{where} must be [index, term, [voters], [learners]], got {_show(value)}")
    index = _uint(value[0], f"{where}.index")
    term = _uint(value[1], f"{where}.term")
    voters = _id_list(value[2], f"{where}.voters")
    learners = _id_list(value[3], f"{where}.learners")
    return SnapshotMeta(index, term, ClusterConfig(voters, learners))


def _meta_to_wire(meta: SnapshotMeta) -> list[Any]:
    return [meta.index, meta.term, sorted(meta.config.voters), sorted(meta.config.learners)]


def _append_invariant(m: AppendEntries) -> None:
    entries = m.entries
    if not entries:
        return
    if entries[0].index != m.prev_log_index + 1:
        raise Malformed(
            f"AppendEntries.entries start at index {entries[0].index}, expected "
            f"prev_log_index + 1 = {m.prev_log_index + 1}"
        )
    if entries[0].term < m.prev_log_term:
        raise Malformed(
            f"AppendEntries.entries[0] has term {entries[0].term} below prev_log_term "
            f"{m.prev_log_term}"
        )
    if entries[-1].term > m.term:
        raise Malformed(
            f"AppendEntries.entries end with term {entries[-1].term} above the message's "
            f"term {m.term}"
        )


_ENTRY_KINDS: Final = {int(k): k for k in EntryKind}

# (check on decode, conversion on encode or None)
_FIELD_KINDS: Final[dict[str, tuple[_Check, Callable[[Any], Any] | None]]] = {
    "uint": (_uint, None),
    "id": (_node_id, None),
    "bool": (_bool, None),
    "bin": (_bin, None),
    "entries": (_entries, _entries_to_wire),
    "meta": (_meta, _meta_to_wire),
}

_HEADER: Final = (("term", "uint"), ("sender", "id"), ("recipient", "id"))

PEER_FRAMES: Final[tuple[tuple[FrameType, type, tuple[tuple[str, str], ...]], ...]] = (
    (FrameType.REQUEST_VOTE, RequestVote, (
        *_HEADER, ("last_log_index", "uint"), ("last_log_term", "uint"),
        ("pre_vote", "bool"), ("transfer", "bool"),
    )),
    (FrameType.REQUEST_VOTE_RESPONSE, RequestVoteResponse, (
        *_HEADER, ("granted", "bool"), ("pre_vote", "bool"),
    )),
    (FrameType.APPEND_ENTRIES, AppendEntries, (
        *_HEADER, ("prev_log_index", "uint"), ("prev_log_term", "uint"),
        ("entries", "entries"), ("leader_commit", "uint"), ("seq", "uint"),
    )),
    (FrameType.APPEND_ENTRIES_RESPONSE, AppendEntriesResponse, (
        *_HEADER, ("success", "bool"), ("match_index", "uint"), ("hint_index", "uint"),
        ("hint_term", "uint"), ("seq", "uint"),
    )),
    (FrameType.INSTALL_SNAPSHOT, InstallSnapshot, (
        *_HEADER, ("meta", "meta"), ("offset", "uint"), ("data", "bin"), ("done", "bool"),
        ("seq", "uint"),
    )),
    (FrameType.INSTALL_SNAPSHOT_RESPONSE, InstallSnapshotResponse, (
        *_HEADER, ("snapshot_index", "uint"), ("next_offset", "uint"), ("done", "bool"),
        ("seq", "uint"),
    )),
    (FrameType.TIMEOUT_NOW, TimeoutNow, _HEADER),
)
"""Every peer frame: its type code, its dataclass and its fields in wire order."""

_INVARIANTS: Final[dict[type, Callable[[Any], None]]] = {AppendEntries: _append_invariant}


def _peer_encoder(code: int, cls: type, spec: tuple[tuple[str, str], ...]) -> Callable[[str, Any], bytes]:
    get = attrgetter(*(name for name, _ in spec))
    converters = [
        (3 + position, convert)
        for position, (_, kind) in enumerate(spec)
        if (convert := _FIELD_KINDS[kind][1]) is not None
    ]
    what = cls.__name__

    def encode(cluster_id: str, msg: Any) -> bytes:
        frame = [PROTOCOL_VERSION, cluster_id, code, *get(msg)]
        for position, convert in converters:
            frame[position] = convert(frame[position])
        return _pack(frame, what)

    return encode


def _peer_decoder(cls: type, spec: tuple[tuple[str, str], ...]) -> Callable[[list[Any]], Any]:
    checks = tuple((_FIELD_KINDS[kind][0], f"{cls.__name__}.{name}") for name, kind in spec)
    width = 3 + len(checks)
    invariant = _INVARIANTS.get(cls)
    what = cls.__name__

    def decode(frame: list[Any]) -> Any:
        _expect_width(frame, width, what)
        msg = cls(*[check(value, where) for (check, where), value in zip(checks, frame[3:], strict=True)])
        if invariant is not None:
            invariant(msg)
        return msg

    return decode


def _check_spec_matches_dataclasses() -> None:
    """A field added to a message but not here would silently vanish on the wire."""
    for _, cls, spec in PEER_FRAMES:
        declared = [f.name for f in fields(cls)]
        encoded = [name for name, _ in spec]
        if declared != encoded:
            raise RuntimeError(
                f"nodes.codec encodes {cls.__name__} as {encoded} but the dataclass has "
                f"{declared}: update PEER_FRAMES (and docs/PROTOCOL.md, and maybe bump "
                f"PROTOCOL_VERSION)"
            )


_check_spec_matches_dataclasses()
_PEER_ENCODERS: Final = {cls: _peer_encoder(code, cls, spec) for code, cls, spec in PEER_FRAMES}
_PEER_DECODERS: Final = {int(code): _peer_decoder(cls, spec) for code, cls, spec in PEER_FRAMES}


def _peer_fields(code: int, cls: type, spec: tuple[tuple[str, str], ...]) -> Callable[[Any], list[Any]]:
    """A message as ``[type_code, field...]`` (a batch item's tail)."""
    get = attrgetter(*(name for name, _ in spec))
    converters = [
        (1 + position, convert)
        for position, (_, kind) in enumerate(spec)
        if (convert := _FIELD_KINDS[kind][1]) is not None
    ]

    def wire(msg: Any) -> list[Any]:
        out = [code, *get(msg)]
        for position, convert in converters:
            out[position] = convert(out[position])
        return out

    return wire


_PEER_FIELDS: Final = {cls: _peer_fields(int(code), cls, spec) for code, cls, spec in PEER_FRAMES}


def encode_peer(cluster_id: str, msg: Message) -> bytes:
    """One Raft message as one frame. Trusts its input (the core's messages)."""
    try:
        encode = _PEER_ENCODERS[type(msg)]
    except KeyError:
        raise EncodeError(f"{type(msg).__name__} is not a Raft peer message") from None
    return encode(cluster_id, msg)


def decode_peer(data: bytes, cluster_id: str, max_frame: int = DEFAULT_MAX_FRAME) -> Message:
    """One frame as a Raft message; raises ``ProtocolError`` (only) for a bad frame."""
    frame = _unpack(data, max_frame, allow_maps=False)
    code = _open_envelope(frame, cluster_id)
    decode = _PEER_DECODERS.get(code)
    if decode is None:
        raise UnknownType(f"{_describe_code(code)} is not a Raft peer message")
    return decode(frame)


# --- the node host's batch: many groups' messages in one frame -------------------------

GroupItem = tuple[int, bool, Message]  # (group, quiesce, message)


def encode_batch(cluster_id: str, sender: str, recipient: str, items: list[GroupItem]) -> bytes:
    """Every message ``sender`` sends ``recipient`` in one turn, as one frame (frame 8).
    Trusts its input, as ``encode_peer`` does."""
    wire = []
    for group, quiesce, msg in items:
        try:
            tail = _PEER_FIELDS[type(msg)](msg)
        except KeyError:
            raise EncodeError(f"{type(msg).__name__} is not a Raft peer message") from None
        wire.append([group, quiesce, *tail])
    return _pack([PROTOCOL_VERSION, cluster_id, int(FrameType.GROUP_BATCH), sender, recipient, wire],
                 "GroupBatch")


def decode_batch(
    data: bytes, cluster_id: str, max_frame: int = DEFAULT_MAX_FRAME
) -> tuple[str, str, list[GroupItem]]:
    """Frame 8 as ``(sender, recipient, [(group, quiesce, message)...])``; raises
    ``ProtocolError`` (only) for a bad frame, including an item whose message's
    sender or recipient is not the batch's."""
    frame = _unpack(data, max_frame, allow_maps=False)
    code = _open_envelope(frame, cluster_id)
    _expect(code, FrameType.GROUP_BATCH)
    _expect_width(frame, 6, "GroupBatch")
    sender = _node_id(frame[3], "GroupBatch.sender")
    recipient = _node_id(frame[4], "GroupBatch.recipient")
    items = frame[5]
    if type(items) is not list:
        raise Malformed(f"GroupBatch.items must be an array, got {_show(items)}")
    out: list[GroupItem] = []
    for k, item in enumerate(items):
        where = f"GroupBatch.items[{k}]"
        if type(item) is not list or len(item) < 3:
            raise Malformed(f"{where} must be [group, quiesce, type_code, field...], got {_show(item)}")
        group = _uint(item[0], f"{where}.group")
        quiesce = _bool(item[1], f"{where}.quiesce")
        if type(item[2]) is not int:
            raise Malformed(f"{where}.type_code must be an int, got {_show(item[2])}")
        decode = _PEER_DECODERS.get(item[2])
        if decode is None:
            raise UnknownType(f"{where}: {_describe_code(item[2])} is not a Raft peer message")
        msg = decode([None, None, None, *item[3:]])
        if msg.sender != sender or msg.recipient != recipient:
            raise Malformed(
                f"{where} is from {msg.sender} to {msg.recipient} in a batch from {sender} "
                f"to {recipient}"
            )
        out.append((group, quiesce, msg))
    return sender, recipient, out


# --- client frames ---------------------------------------------------------------------


def _check_request(req_id: Any, client_id: Any, kind: Any, body: Any) -> None:
    _positive(req_id, "Request.req_id")
    _str(client_id, "Request.client_id", 1, MAX_CLIENT_ID_CHARS)
    if type(kind) is not str:
        raise Malformed(f"Request.kind must be a str, got {_show(kind)}")
    if kind not in REQUEST_KINDS:
        raise UnknownKind(f"request kind {_show(kind)} is not one of {', '.join(REQUEST_KINDS)}")
    _str_keyed_map(body, f"Request.body of {kind!r}", MAX_BODY_DEPTH)


def _check_error(value: Any) -> ErrorInfo:
    if type(value) is not list or len(value) != 4:
        raise Malformed(
            f"Response.error must be [code, message, leader_id, leader_addr], got {_show(value)}"
        )
    code, message, leader_id, leader_addr = value
    _str(code, "Response.error.code", 1, MAX_ERROR_CODE_CHARS)
    _str(message, "Response.error.message", 0, MAX_ERROR_MESSAGE_CHARS)
    _optional_node_id(leader_id, "Response.error.leader_id")
    if leader_addr is not None:
        _str(leader_addr, "Response.error.leader_addr", 1, MAX_ADDRESS_CHARS)
    return ErrorInfo(code, message, leader_id, leader_addr)


def _check_response(req_id: Any, ok: Any, result: Any, error: Any, index: Any,
                    deep: bool = True) -> None:
    _uint(req_id, "Response.req_id")
    _bool(ok, "Response.ok")
    if deep:
        _any(result, "Response.result")
    if ok and error is not None:
        raise Malformed("Response has ok true and an error")
    if not ok and error is None:
        raise Malformed("Response has ok false and no error")
    _uint(index, "Response.index")


def _check_update(index: Any, term: Any, machine: Any, client_id: Any, seq: Any,
                  result: Any, events: Any, command: Any, clock_ms: Any,
                  deep: bool = True) -> None:
    _uint(index, "Update.index")
    _uint(term, "Update.term")
    _str(machine, "Update.machine", 0, MAX_MACHINE_CHARS)
    _str(client_id, "Update.client_id", 0, MAX_CLIENT_ID_CHARS)
    _uint(seq, "Update.seq")
    if deep:
        _any(result, "Update.result")
    if type(events) is not list:
        raise Malformed(f"Update.events must be an array of maps, got {_show(events)}")
    for position, event in enumerate(events):
        if type(event) is not dict:
            raise Malformed(f"Update.events[{position}] must be a map, got {_show(event)}")
    if deep:
        _check_depth(events, MAX_VALUE_DEPTH, "Update.events")
    if command is not None:
        if type(command) is not dict:
            raise Malformed(f"Update.command must be a map or nil, got {_show(command)}")
        if deep:
            _any(command, "Update.command")
    _uint(clock_ms, "Update.clock_ms")


def _check_cluster_info(node_id: Any, term: Any, role: Any, leader_id: Any, commit: Any,
                        applied: Any, nodes: Any) -> None:
    _node_id(node_id, "ClusterInfo.node_id")
    _uint(term, "ClusterInfo.term")
    _str(role, "ClusterInfo.role", 1, MAX_ROLE_CHARS)
    _optional_node_id(leader_id, "ClusterInfo.leader_id")
    _uint(commit, "ClusterInfo.commit")
    _uint(applied, "ClusterInfo.applied")
    if type(nodes) is not dict:
        raise Malformed(f"ClusterInfo.nodes must be a map, got {_show(nodes)}")
    for nid, view in nodes.items():
        _node_id(nid, "ClusterInfo.nodes key")
        if type(view) is not dict:
            raise Malformed(f"ClusterInfo.nodes[{nid!r}] must be a map, got {_show(view)}")
    _check_depth(nodes, MAX_VALUE_DEPTH, "ClusterInfo.nodes")


def _check_cluster_id(cluster_id: Any) -> None:
    if type(cluster_id) is not str:
        raise EncodeError(f"cluster id must be a str, got {type(cluster_id).__name__}")


def _local(what: str, check: Callable[..., None], *values: Any) -> None:
    """Run a decoder's check on values we are about to send: a failure is our bug."""
    try:
        check(*values)
    except ProtocolError as exc:
        raise EncodeError(f"cannot encode {what}: {exc}") from None


def encode_request(cluster_id: str, req: Request) -> bytes:
    _check_cluster_id(cluster_id)
    _local("Request", _check_request, req.req_id, req.client_id, req.kind, req.body)
    return _pack([PROTOCOL_VERSION, cluster_id, FrameType.REQUEST.value, req.req_id,
                  req.client_id, req.kind, req.body], "Request")


def decode_request(data: bytes, cluster_id: str, max_frame: int = DEFAULT_MAX_FRAME) -> Request:
    """A client's request. A ``ProtocolError`` carries ``req_id`` when the frame is
    one of ours (right version) with a readable ``req_id``, even when the rest of it
    could not be unpacked at all (see ``_peek_req_id``), so the node can answer the
    caller with ``protocol_error_response``."""
    try:
        frame = _unpack(data, max_frame, allow_maps=True)
        _expect(_open_envelope(frame, cluster_id), FrameType.REQUEST)
        _expect_width(frame, 7, "Request")
        _check_request(*frame[3:])
    except ProtocolError as exc:
        exc.req_id = _peek_req_id(data)
        raise
    return Request(frame[3], frame[4], frame[5], frame[6])


_PEEK_BYTES: Final = 4096  # enough for [version, cluster_id, type_code, req_id]


def _peek_req_id(data: bytes | bytearray | memoryview) -> int | None:
    """The ``req_id`` of a request frame, read from its first items only: an array
    whose item 0 is ``PROTOCOL_VERSION`` and item 3 an int >= 1, else None. Whatever
    follows (an ext type, a truncated tail, megabytes above ``max_frame``) is never
    unpacked."""
    head = bytes(data[:_PEEK_BYTES])
    unpacker = msgpack.Unpacker(raw=False, max_buffer_size=len(head) or 1,
                                max_str_len=len(head), max_bin_len=len(head),
                                max_array_len=len(head), max_map_len=len(head) // 2,
                                max_ext_len=0, strict_map_key=False)
    unpacker.feed(head)
    try:
        if unpacker.read_array_header() < 4:
            return None
        items = [unpacker.unpack() for _ in range(4)]
    except Exception:  # msgpack raises OutOfData, ValueError, its own errors...
        return None
    version, req_id = items[0], items[3]
    if type(version) is not int or version != PROTOCOL_VERSION:
        return None
    if type(req_id) is not int or not 1 <= req_id <= _MAX_UINT64:
        return None
    return req_id


def encode_response(cluster_id: str, resp: Response) -> bytes:
    _check_cluster_id(cluster_id)
    error = resp.error
    wire_error = None
    if error is not None:
        if not isinstance(error, ErrorInfo):
            raise EncodeError(f"Response.error must be an ErrorInfo, got {type(error).__name__}")
        wire_error = [error.code, error.message, error.leader_id, error.leader_addr]
        _local("Response", _check_error, wire_error)
    _local("Response", _check_response, resp.req_id, resp.ok, resp.result, wire_error, resp.index)
    return _pack([PROTOCOL_VERSION, cluster_id, FrameType.RESPONSE.value, resp.req_id, resp.ok,
                  resp.result, wire_error, resp.index], "Response")


def decode_response(data: bytes, cluster_id: str, max_frame: int = DEFAULT_MAX_FRAME) -> Response:
    frame = _unpack(data, max_frame, allow_maps=True)
    _expect(_open_envelope(frame, cluster_id), FrameType.RESPONSE)
    _expect_width(frame, 8, "Response")
    _, _, _, req_id, ok, result, error, index = frame
    _check_response(req_id, ok, result, error, index)
    return Response(req_id, ok, result, None if error is None else _check_error(error), index)


def protocol_error_response(exc: ProtocolError) -> Response:
    """The answer to a request frame that could not be decoded (``req_id`` 0 when
    the frame did not say which request it was)."""
    return Response(exc.req_id or 0, False, None, ErrorInfo("protocol", f"{exc.code}: {exc}"))


def encode_update(cluster_id: str, upd: Update) -> bytes:
    """The payload; publish it as ``[UPDATE_TOPIC, payload]``."""
    _check_cluster_id(cluster_id)
    fields_ = [upd.index, upd.term, upd.machine, upd.client_id, upd.seq, upd.result,
               upd.events, upd.command, upd.clock_ms]
    # Shallow on the way out: every node encodes one update per applied entry (the
    # hot path), and their command, result and events come from commands whose
    # nesting the request decoder already bounded (MAX_BODY_DEPTH); msgpack refuses
    # what it cannot carry, and every decoder still checks the depth in full.
    _local("Update", _check_update, *fields_, False)
    return _pack([PROTOCOL_VERSION, cluster_id, FrameType.UPDATE.value, *fields_], "Update")


def decode_update(data: bytes, cluster_id: str, max_frame: int = DEFAULT_MAX_FRAME) -> Update:
    """An update's payload (the second part of a PUB message)."""
    frame = _unpack(data, max_frame, allow_maps=True)
    _expect(_open_envelope(frame, cluster_id), FrameType.UPDATE)
    _expect_width(frame, 12, "Update")
    _check_update(*frame[3:])
    return Update(*frame[3:])


def encode_cluster_info(cluster_id: str, info: ClusterInfo) -> bytes:
    """The payload; publish it as ``[CLUSTER_TOPIC, payload]``."""
    _check_cluster_id(cluster_id)
    fields_ = [info.node_id, info.term, info.role, info.leader_id, info.commit, info.applied,
               info.nodes]
    _local("ClusterInfo", _check_cluster_info, *fields_)
    return _pack([PROTOCOL_VERSION, cluster_id, FrameType.CLUSTER_INFO.value, *fields_],
                 "ClusterInfo")


def decode_cluster_info(
    data: bytes, cluster_id: str, max_frame: int = DEFAULT_MAX_FRAME
) -> ClusterInfo:
    frame = _unpack(data, max_frame, allow_maps=True)
    _expect(_open_envelope(frame, cluster_id), FrameType.CLUSTER_INFO)
    _expect_width(frame, 10, "ClusterInfo")
    _check_cluster_info(*frame[3:])
    return ClusterInfo(*frame[3:])
