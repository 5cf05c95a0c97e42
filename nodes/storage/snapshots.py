"""Snapshot files: ``<data dir>/snapshot-<index>-<term>.snap`` (both numbers 20 digits,
so a directory listing sorts them), written atomically.

File layout::

    b"ARSN" | frame(snapshot header) | payload

The header (``records.SnapshotHeader``) carries the snapshot's meta, whether the
payload is zlib-compressed, both sizes and the payload's CRC32, so a damaged or
truncated payload is caught before it is decompressed or handed to the state machine.
"""

from __future__ import annotations

import re
import zlib
from pathlib import Path

from nodes.raft.messages import Snapshot

from .errors import CorruptionError
from .files import FileOps
from .records import (
    FRAME_HEADER,
    RecordError,
    SnapshotHeader,
    decode_snapshot_header,
    encode_snapshot_header,
    frame,
)

MAGIC = b"ARSN"
SNAPSHOT_NAME = re.compile(r"^snapshot-(\d+)-(\d+)\.snap$")


def snapshot_name(index: int, term: int) -> str:
    return f"snapshot-{index:020d}-{term:020d}.snap"


def list_snapshots(directory: Path) -> list[tuple[int, int, Path]]:
    """``(index, term, path)`` of every snapshot file, oldest first."""
    found = []
    for path in directory.iterdir():
        match = SNAPSHOT_NAME.match(path.name)
        if match:
            found.append((int(match.group(1)), int(match.group(2)), path))
    return sorted(found)


def write_snapshot(directory: Path, snapshot: Snapshot, compress: bool, ops: FileOps) -> Path:
    payload = zlib.compress(snapshot.data) if compress else snapshot.data
    header = SnapshotHeader(
        snapshot.meta, compress, len(snapshot.data), len(payload), zlib.crc32(payload)
    )
    path = directory / snapshot_name(snapshot.meta.index, snapshot.meta.term)
    ops.atomic_write(path, MAGIC + frame(encode_snapshot_header(header)) + payload, "snapshot")
    return path


def read_snapshot(path: Path) -> Snapshot:
    """Read and fully check one snapshot file; any damage is a ``CorruptionError``."""
    data = path.read_bytes()
    if not data.startswith(MAGIC):
        raise CorruptionError(path, 0, "not a snapshot file (bad magic)")
    at = len(MAGIC)
    if len(data) < at + FRAME_HEADER.size:
        raise CorruptionError(path, at, "short snapshot header")
    length, crc = FRAME_HEADER.unpack_from(data, at)
    body_at = at + FRAME_HEADER.size
    payload_at = body_at + length
    if payload_at > len(data):
        raise CorruptionError(path, at, "short snapshot header")
    if zlib.crc32(data[body_at:payload_at]) != crc:
        raise CorruptionError(path, at, "snapshot header checksum mismatch")
    try:
        header = decode_snapshot_header(data[body_at:payload_at])
    except RecordError as exc:
        raise CorruptionError(path, body_at, str(exc)) from None
    match = SNAPSHOT_NAME.match(path.name)
    if match and (int(match.group(1)), int(match.group(2))) != (
        header.meta.index,
        header.meta.term,
    ):
        problem = f"header says index {header.meta.index} term {header.meta.term}, unlike the name"
        raise CorruptionError(path, body_at, problem)
    payload = data[payload_at:]
    if len(payload) != header.stored_size:
        problem = f"payload is {len(payload)} bytes, the header says {header.stored_size}"
        raise CorruptionError(path, payload_at, problem)
    if zlib.crc32(payload) != header.payload_crc:
        raise CorruptionError(path, payload_at, "snapshot payload checksum mismatch")
    if header.compressed:
        try:
            payload = zlib.decompress(payload)
        except zlib.error as exc:
            raise CorruptionError(
                path, payload_at, f"payload does not decompress ({exc})"
            ) from None
    if len(payload) != header.raw_size:
        problem = f"payload decompresses to {len(payload)} bytes, the header says {header.raw_size}"
        raise CorruptionError(path, payload_at, problem)
    return Snapshot(header.meta, payload)
