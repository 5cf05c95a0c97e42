"""The few etcd v3 gRPC messages ``arena bench --vs etcd`` needs, in protobuf's wire
format, encoded and decoded by hand (no protobuf package, no generated code).

Protobuf's wire format: a message is a sequence of fields, each a varint key
``field_number << 3 | wire_type`` then the value: wire type 0 a varint (ints,
bools), 2 a varint length then that many bytes (bytes, strings, nested messages,
each element of a repeated one). Fields at their default value are omitted, and
a decoder skips the fields it does not know. Field numbers are etcd 3.5's
``etcdserverpb/rpc.proto`` and ``mvccpb/kv.proto``:

=====================  =======================================================
PutRequest             key=1 (bytes), value=2 (bytes)
PutResponse            header=1 (ResponseHeader)
RangeRequest           key=1 (bytes)
RangeResponse          header=1, kvs=2 (repeated KeyValue), count=4
KeyValue               key=1, create_revision=2, mod_revision=3, version=4,
                       value=5
TxnRequest             compare=1 (none here), success=2 (repeated RequestOp)
RequestOp              request_put=2 (PutRequest)
TxnResponse            header=1, succeeded=2 (bool)
StatusRequest          (empty)
StatusResponse         header=1, version=2 (string), leader=4, raftIndex=5,
                       raftTerm=6, raftAppliedIndex=7
ResponseHeader         cluster_id=1, member_id=2, revision=3, raft_term=4
=====================  =======================================================

The gRPC method paths are in :data:`PUT`, :data:`RANGE`, :data:`TXN` and
:data:`STATUS`; use them with ``channel.unary_unary(path, request_serializer=bytes,
response_deserializer=decode_...)`` after encoding the request with ``encode_...``.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

__all__ = [
    "PUT", "RANGE", "STATUS", "TXN", "KeyValue", "RangeResult", "Status", "EtcdWireError",
    "decode_header_revision", "decode_range", "decode_status", "decode_txn_succeeded",
    "encode_put", "encode_range", "encode_txn_puts", "fields", "varint",
]

PUT = "/etcdserverpb.KV/Put"
RANGE = "/etcdserverpb.KV/Range"
TXN = "/etcdserverpb.KV/Txn"
STATUS = "/etcdserverpb.Maintenance/Status"

_VARINT = 0
_I64 = 1
_LEN = 2
_I32 = 5


class EtcdWireError(ValueError):
    """A reply that is not the protobuf message we expected (truncated or garbled)."""


def varint(n: int) -> bytes:
    """Protobuf varint of a non-negative int (7 bits a byte, low bits first)."""
    if n < 0:
        n += 1 << 64  # int64 negatives are sent as their 64-bit two's complement
    out = bytearray()
    while n > 0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def _read_varint(buf: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(buf):
            raise EtcdWireError(f"varint runs past the end of a {len(buf)}-byte message")
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, pos
        shift += 7
        if shift >= 70:
            raise EtcdWireError("varint longer than 10 bytes")


def _bytes_field(number: int, value: bytes) -> bytes:
    return varint(number << 3 | _LEN) + varint(len(value)) + value


def fields(buf: bytes) -> Iterator[tuple[int, int | bytes]]:
    """``(field_number, value)`` for every field: an int for varints and fixed
    widths, bytes for length-delimited fields. Raises EtcdWireError on garbage."""
    pos = 0
    while pos < len(buf):
        key, pos = _read_varint(buf, pos)
        number, wire_type = key >> 3, key & 7
        if number == 0:
            raise EtcdWireError(f"field number 0 at byte {pos}")
        if wire_type == _VARINT:
            value, pos = _read_varint(buf, pos)
            yield number, value
        elif wire_type == _LEN:
            length, pos = _read_varint(buf, pos)
            if pos + length > len(buf):
                raise EtcdWireError(f"field {number} claims {length} bytes, {len(buf) - pos} left")
            yield number, buf[pos:pos + length]
            pos += length
        elif wire_type in (_I64, _I32):
            width = 8 if wire_type == _I64 else 4
            if pos + width > len(buf):
                raise EtcdWireError(f"fixed-width field {number} runs past the end")
            yield number, int.from_bytes(buf[pos:pos + width], "little")
            pos += width
        else:
            raise EtcdWireError(f"unsupported wire type {wire_type} for field {number}")


# --- requests ---------------------------------------------------------------------------


def encode_put(key: bytes, value: bytes) -> bytes:
    """PutRequest{key, value}."""
    return _bytes_field(1, key) + _bytes_field(2, value)


def encode_range(key: bytes) -> bytes:
    """RangeRequest{key}: one key, linearizable (the default)."""
    return _bytes_field(1, key)


def encode_txn_puts(items: Iterable[tuple[bytes, bytes]]) -> bytes:
    """TxnRequest with no compare (so it always succeeds) and one put per item in
    ``success``. etcd refuses a txn that puts the same key twice."""
    return b"".join(_bytes_field(2, _bytes_field(2, encode_put(k, v))) for k, v in items)


# --- responses --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class KeyValue:
    key: bytes
    value: bytes
    mod_revision: int
    version: int


@dataclass(frozen=True, slots=True)
class RangeResult:
    revision: int
    kvs: tuple[KeyValue, ...]
    count: int


@dataclass(frozen=True, slots=True)
class Status:
    member_id: int
    leader: int
    raft_index: int
    raft_term: int
    raft_applied_index: int
    version: str


def _header(buf: bytes) -> dict[int, int]:
    return {n: v for n, v in fields(buf) if isinstance(v, int)}


def _submessage(buf: bytes, number: int) -> bytes:
    for n, v in fields(buf):
        if n == number and isinstance(v, bytes):
            return v
    return b""


def decode_header_revision(buf: bytes) -> int:
    """The store revision in a PutResponse's or TxnResponse's header."""
    return _header(_submessage(buf, 1)).get(3, 0)


def decode_txn_succeeded(buf: bytes) -> bool:
    return any(n == 2 and v == 1 for n, v in fields(buf))


def _key_value(buf: bytes) -> KeyValue:
    f: dict[int, int | bytes] = dict(fields(buf))
    key, value = f.get(1, b""), f.get(5, b"")
    mod, version = f.get(3, 0), f.get(4, 0)
    if not (isinstance(key, bytes) and isinstance(value, bytes) and isinstance(mod, int)
            and isinstance(version, int)):
        raise EtcdWireError(f"malformed KeyValue {buf!r}")
    return KeyValue(key, value, mod, version)


def decode_range(buf: bytes) -> RangeResult:
    revision = count = 0
    kvs = []
    for n, v in fields(buf):
        if n == 1 and isinstance(v, bytes):
            revision = _header(v).get(3, 0)
        elif n == 2 and isinstance(v, bytes):
            kvs.append(_key_value(v))
        elif n == 4 and isinstance(v, int):
            count = v
    return RangeResult(revision, tuple(kvs), count)


def decode_status(buf: bytes) -> Status:
    f: dict[int, int | bytes] = {}
    for n, v in fields(buf):
        f[n] = v
    header = f.get(1, b"")
    version = f.get(2, b"")
    if not isinstance(header, bytes) or not isinstance(version, bytes):
        raise EtcdWireError(f"malformed StatusResponse {buf!r}")
    ints = {n: v for n, v in f.items() if isinstance(v, int)}
    return Status(member_id=_header(header).get(2, 0), leader=ints.get(4, 0),
                  raft_index=ints.get(5, 0), raft_term=ints.get(6, 0),
                  raft_applied_index=ints.get(7, 0), version=version.decode(errors="replace"))
