"""What ``Consensus`` nodes say to each other, and its bytes.

Two kinds of packets travel between nodes:

- Raft messages (``nodes.raft.messages``), as bytes exactly the peer frames of
  ``nodes.codec`` (``encode_peer`` / ``decode_peer``), documented there.
- Application messages (``AppPacket``): the ``Consensus`` layer's own traffic --
  proposals forwarded to the leader and their answers, ReadIndex requests,
  membership requests, liveness pings and the ``simple_majority`` protocol.
  Frame: the byte ``0xC1`` followed by one msgpack array
  ``[APP_VERSION, cluster_id, sender, kind, body]`` (``body`` a map).
  ``0xC1`` is the one byte msgpack never emits, so it can never start a codec
  frame (which is msgpack): a receiver tells the two apart by the first byte.

The in-process network passes packets as objects (no bytes), but bodies still
go through a msgpack round trip, so what a node receives is what it would get
from the wire. Bring-your-own transports and ZeroMQ carry the bytes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import msgpack

from nodes.raft.messages import MESSAGE_TYPES, Message

APP_TAG = 0xC1
APP_VERSION = 1
DEFAULT_MAX_FRAME = 16 << 20


class WireError(ValueError):
    """A frame from a peer is not one we accept (the peer broke the protocol).

    ``code`` names the reason, for the drop counters."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True, slots=True)
class AppPacket:
    """An application message: ``kind`` says what it is, ``body`` is plain data."""

    kind: str
    sender: str
    body: dict[str, Any]


Packet = Message | AppPacket


def is_raft(packet: Packet) -> bool:
    return isinstance(packet, MESSAGE_TYPES)


def sender_of(packet: Packet) -> str:
    return packet.sender


def copy_body(body: dict[str, Any]) -> dict[str, Any]:
    """The body as a receiver would decode it (tuples become lists, ...).
    Raises ``TypeError`` for something that cannot go on the wire."""
    return msgpack.unpackb(msgpack.packb(body, use_bin_type=True), raw=False,
                           strict_map_key=False)


def encode(cluster_id: str, packet: Packet) -> bytes:
    if isinstance(packet, AppPacket):
        return bytes([APP_TAG]) + msgpack.packb(
            [APP_VERSION, cluster_id, packet.sender, packet.kind, packet.body], use_bin_type=True
        )
    from nodes import codec  # imported late: only byte transports need it

    return codec.encode_peer(cluster_id, packet)


def decode(data: bytes, cluster_id: str, max_frame: int = DEFAULT_MAX_FRAME) -> Packet:
    """Decode a frame; raises ``WireError`` for anything malformed or foreign."""
    if not isinstance(data, bytes | bytearray | memoryview):
        raise WireError("bad_type", f"a frame must be bytes, got {type(data).__name__}")
    data = bytes(data)
    if len(data) > max_frame:
        raise WireError("too_large", f"frame of {len(data)} bytes above the limit {max_frame}")
    if not data:
        raise WireError("empty", "empty frame")
    if data[0] != APP_TAG:
        from nodes import codec

        try:
            return codec.decode_peer(data, cluster_id, max_frame)
        except codec.ProtocolError as exc:
            raise WireError(getattr(exc, "code", "protocol"), str(exc)) from exc
    try:
        frame = msgpack.unpackb(
            data[1:], raw=False, strict_map_key=False, max_ext_len=0,
            max_str_len=max_frame, max_bin_len=max_frame,
            max_array_len=max_frame, max_map_len=max_frame,
        )
    except Exception as exc:  # msgpack raises several types for garbage
        raise WireError("malformed", f"application frame is not msgpack: {exc}") from exc
    if not isinstance(frame, list) or len(frame) != 5:
        raise WireError("malformed", "application frame must be a 5-element array")
    version, cluster, sender, kind, body = frame
    if version != APP_VERSION:
        raise WireError("version", f"application frame version {version!r}, expected {APP_VERSION}")
    if cluster != cluster_id:
        raise WireError("foreign_cluster", f"frame from cluster {cluster!r}, we are {cluster_id!r}")
    if not isinstance(sender, str) or not isinstance(kind, str) or not isinstance(body, dict):
        raise WireError("malformed", "application frame needs sender (str), kind (str), body (map)")
    return AppPacket(kind, sender, body)
