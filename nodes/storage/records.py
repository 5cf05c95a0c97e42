"""Byte formats of the data directory: one frame, and the msgpack bodies it carries.

This is the on-disk format only; ``nodes.codec`` owns the wire format, and the two
may evolve separately.

Frame (every WAL record; the hard state, meta and snapshot-header files)::

    +------------------+------------------+-------------------------+
    | length: u32 LE   | crc: u32 LE      | body: ``length`` bytes  |
    +------------------+------------------+-------------------------+
    crc = zlib.crc32(body); length >= 1

A zero length is invalid on purpose: eight zero bytes would otherwise be a valid
frame (crc32 of nothing is 0), and a crash can leave zero-filled pages at a file's end.

Bodies are msgpack arrays whose first element is a tag, so a reader can tell a
record of one kind from another even without knowing the file it came from:

    entry       [1, index, term, kind, data]
    hard state  [2, term, vote | nil, commit, promised, recovering]
                (earlier builds wrote the first four only)
    meta        [3, format, cluster_id, node_id, voters, learners]
    snapshot    [4, format, index, term, voters, learners, compressed, raw_size,
                 stored_size, payload_crc]     (the header; the payload follows it)
    promise     [5, seq, promised]             (a slot of the ``promise`` file)
    6..11       the shared WAL's records and group meta (``shared_records.py``)

Every entry body therefore starts with the bytes ``95 01`` (a 5-element fixarray,
then the tag 1): recovery uses that to look for valid records after a bad one.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass
from typing import Any

import msgpack

from nodes.raft.messages import ClusterConfig, Entry, EntryKind, HardState, SnapshotMeta

FRAME_HEADER = struct.Struct("<II")
FORMAT_VERSION = 1

TAG_ENTRY = 1
TAG_HARD_STATE = 2
TAG_META = 3
TAG_SNAPSHOT = 4
TAG_PROMISE = 5

ENTRY_BODY_PREFIX = b"\x95\x01"


class RecordError(ValueError):
    """A body passed its checksum but does not decode: the caller knows the file and
    offset and turns this into a ``CorruptionError``."""


def frame(body: bytes) -> bytes:
    """Wrap ``body`` in a length + CRC32 header."""
    return FRAME_HEADER.pack(len(body), zlib.crc32(body)) + body


@dataclass(frozen=True, slots=True)
class FrameScan:
    """The frames found in a byte string, read from the start until the first bad one.

    ``problem`` says why reading stopped before the end (None: every byte was a good
    frame); ``valid_end`` is the offset just past the last good frame.
    """

    frames: list[tuple[int, bytes]]  # (offset of the frame header, body)
    valid_end: int
    problem: str | None


def scan_frames(data: bytes) -> FrameScan:
    """Split ``data`` into frames, stopping at the first short, empty or mis-checksummed one."""
    frames: list[tuple[int, bytes]] = []
    offset, size = 0, len(data)
    while offset < size:
        if size - offset < FRAME_HEADER.size:
            problem = f"short frame header ({size - offset} of {FRAME_HEADER.size} bytes)"
            return FrameScan(frames, offset, problem)
        length, crc = FRAME_HEADER.unpack_from(data, offset)
        start = offset + FRAME_HEADER.size
        if length == 0:
            return FrameScan(frames, offset, "zero frame length")
        if length > size - start:
            problem = f"short frame body ({size - start} of {length} bytes)"
            return FrameScan(frames, offset, problem)
        body = data[start : start + length]
        if zlib.crc32(body) != crc:
            return FrameScan(frames, offset, "checksum mismatch")
        frames.append((offset, body))
        offset = start + length
    return FrameScan(frames, offset, None)


def find_frame_after(data: bytes, start: int, body_prefix: bytes) -> int | None:
    """The offset of the first valid frame whose header begins after ``start`` and
    whose body begins with ``body_prefix``; None if there is none.

    Used to tell a torn tail (nothing valid after the bad frame) from damage in the
    middle of the log. Candidates are found by their body prefix, so the search is a
    ``bytes.find`` loop rather than a CRC at every offset.
    """
    body_at = data.find(body_prefix, start + 1 + FRAME_HEADER.size)
    while body_at != -1:
        header_at = body_at - FRAME_HEADER.size
        length, crc = FRAME_HEADER.unpack_from(data, header_at)
        end = body_at + length
        if length >= len(body_prefix) and end <= len(data):
            if zlib.crc32(data[body_at:end]) == crc:
                return header_at
        body_at = data.find(body_prefix, body_at + 1)
    return None


def _pack(value: list[Any]) -> bytes:
    return msgpack.packb(value, use_bin_type=True)


def _unpack(body: bytes, tag: int, size: int) -> list[Any]:
    try:
        value = msgpack.unpackb(body, raw=False, use_list=True)
    except (ValueError, TypeError, msgpack.UnpackException) as exc:
        raise RecordError(f"undecodable body ({exc})") from exc
    if not isinstance(value, list) or len(value) != size or value[0] != tag:
        raise RecordError(f"expected a record with tag {tag} and {size} fields")
    return value


def encode_entry(entry: Entry) -> bytes:
    return _pack([TAG_ENTRY, entry.index, entry.term, int(entry.kind), entry.data])


def decode_entry(body: bytes) -> Entry:
    _, index, term, kind, data = _unpack(body, TAG_ENTRY, 5)
    if not (isinstance(index, int) and isinstance(term, int) and isinstance(data, bytes)):
        raise RecordError("entry fields have the wrong types")
    if index < 1 or term < 0:
        raise RecordError(f"entry index {index} / term {term} out of range")
    try:
        return Entry(index, term, data, EntryKind(kind))
    except ValueError as exc:
        raise RecordError(f"unknown entry kind {kind!r}") from exc


def encode_hard_state(hs: HardState) -> bytes:
    return _pack([TAG_HARD_STATE, hs.term, hs.vote, hs.commit, hs.promised, hs.recovering])


def decode_hard_state(body: bytes) -> HardState:
    """Reads the current six-field record and the four-field one of earlier builds
    (no promise recorded: 0, not recovering)."""
    try:
        _, term, vote, commit, promised, recovering = _unpack(body, TAG_HARD_STATE, 6)
    except RecordError:
        _, term, vote, commit = _unpack(body, TAG_HARD_STATE, 4)
        promised, recovering = 0, False
    if not all(isinstance(v, int) for v in (term, commit, promised)):
        raise RecordError("hard state fields have the wrong types")
    if vote is not None and not isinstance(vote, str):
        raise RecordError("hard state vote is neither a node id nor nil")
    return HardState(term, vote, commit, promised, bool(recovering))


PROMISE_SLOT_BYTES = 32
"""A slot of the ``promise`` file: one frame, zero-padded (seq and index as uint64)."""


def encode_promise_slot(seq: int, promised: int) -> bytes:
    body = b"\x93\x05\xcf" + seq.to_bytes(8, "big") + b"\xcf" + promised.to_bytes(8, "big")
    return frame(body).ljust(PROMISE_SLOT_BYTES, b"\0")


def decode_promise_slot(data: bytes) -> tuple[int, int] | None:
    """(seq, promised) of a slot, or None if it is torn or damaged."""
    frames = scan_frames(data).frames  # the zero padding after the frame is no frame
    if not frames:
        return None
    try:
        _, seq, promised = _unpack(frames[0][1], TAG_PROMISE, 3)
    except RecordError:
        return None
    if not (isinstance(seq, int) and isinstance(promised, int)):
        return None
    return seq, promised


def _config_fields(config: ClusterConfig) -> list[list[str]]:
    # sorted, so equal configurations always encode to equal bytes
    return [sorted(config.voters), sorted(config.learners)]


def _config_from(voters: Any, learners: Any) -> ClusterConfig:
    if not (isinstance(voters, list) and isinstance(learners, list)):
        raise RecordError("configuration members are not lists")
    if not all(isinstance(m, str) for m in voters + learners):
        raise RecordError("configuration members are not node ids")
    return ClusterConfig(frozenset(voters), frozenset(learners))


@dataclass(frozen=True, slots=True)
class Meta:
    """Who a data directory belongs to, fixed when it is created."""

    cluster_id: str
    node_id: str
    initial_config: ClusterConfig


def encode_meta(meta: Meta) -> bytes:
    fields = _config_fields(meta.initial_config)
    return _pack([TAG_META, FORMAT_VERSION, meta.cluster_id, meta.node_id, *fields])


def decode_meta(body: bytes) -> Meta:
    _, version, cluster_id, node_id, voters, learners = _unpack(body, TAG_META, 6)
    if version != FORMAT_VERSION:
        raise RecordError(f"data directory format {version!r}, this build reads {FORMAT_VERSION}")
    if not (isinstance(cluster_id, str) and isinstance(node_id, str)):
        raise RecordError("cluster or node id is not a string")
    return Meta(cluster_id, node_id, _config_from(voters, learners))


@dataclass(frozen=True, slots=True)
class SnapshotHeader:
    """Describes the payload that follows it in a snapshot file."""

    meta: SnapshotMeta
    compressed: bool
    raw_size: int
    stored_size: int
    payload_crc: int


def encode_snapshot_header(h: SnapshotHeader) -> bytes:
    return _pack(
        [
            TAG_SNAPSHOT,
            FORMAT_VERSION,
            h.meta.index,
            h.meta.term,
            *_config_fields(h.meta.config),
            h.compressed,
            h.raw_size,
            h.stored_size,
            h.payload_crc,
        ]
    )


def decode_snapshot_header(body: bytes) -> SnapshotHeader:
    fields = _unpack(body, TAG_SNAPSHOT, 10)
    _, version, index, term, voters, learners, compressed, raw, stored, crc = fields
    if version != FORMAT_VERSION:
        raise RecordError(f"snapshot format {version!r}, this build reads {FORMAT_VERSION}")
    if not all(isinstance(v, int) for v in (index, term, raw, stored, crc)):
        raise RecordError("snapshot header fields have the wrong types")
    meta = SnapshotMeta(index, term, _config_from(voters, learners))
    return SnapshotHeader(meta, bool(compressed), raw, stored, crc)
