"""Raft peer frames: every message round-trips, and every bad frame is refused with
the right ``ProtocolError`` (and nothing else)."""

from __future__ import annotations

import dataclasses
import time
from typing import Any

import msgpack
import pytest
from codec_strategies import CLUSTER, assert_well_typed, peer_messages
from hypothesis import given

from nodes import codec
from nodes.codec import (
    BadVersion,
    EncodeError,
    ForeignCluster,
    FrameTooLarge,
    FrameType,
    Malformed,
    ProtocolError,
    UnknownType,
)
from nodes.raft.messages import (
    MESSAGE_TYPES,
    AppendEntries,
    AppendEntriesResponse,
    ClusterConfig,
    Entry,
    EntryKind,
    InstallSnapshot,
    InstallSnapshotResponse,
    RequestVote,
    RequestVoteResponse,
    SnapshotMeta,
    TimeoutNow,
)

V = codec.PROTOCOL_VERSION


def pack(obj: Any) -> bytes:
    return msgpack.packb(obj, use_bin_type=True)


def frame_of(msg: Any) -> list[Any]:
    """A valid frame, unpacked, ready to be damaged."""
    return msgpack.unpackb(codec.encode_peer(CLUSTER, msg), raw=False)


EXAMPLES = [
    RequestVote(5, "n1", "n2", 10, 4, pre_vote=True, transfer=False),
    RequestVoteResponse(5, "n2", "n1", True, pre_vote=True),
    AppendEntries(
        5, "n1", "n2", 10, 4,
        (Entry(11, 4, b"a"), Entry(12, 5, b"", EntryKind.NORMAL), Entry(13, 5, b"0:n3", EntryKind.CONFIG)),
        9, seq=3,
    ),
    AppendEntriesResponse(5, "n2", "n1", False, match_index=10, hint_index=7, hint_term=3, seq=3),
    InstallSnapshot(
        5, "n1", "n2", SnapshotMeta(100, 4, ClusterConfig(frozenset({"n1", "n2"}), frozenset({"n3"}))),
        0, b"\x00" * 10, False, seq=4,
    ),
    InstallSnapshotResponse(5, "n2", "n1", 100, 10, done=False, seq=4),
    TimeoutNow(5, "n1", "n2"),
]


# --- the table and the dataclasses agree ----------------------------------------------------


def test_every_raft_message_type_has_exactly_one_type_code() -> None:
    classes = [cls for _, cls, _ in codec.PEER_FRAMES]
    codes = [code for code, _, _ in codec.PEER_FRAMES]
    assert sorted(classes, key=lambda c: c.__name__) == sorted(MESSAGE_TYPES, key=lambda c: c.__name__)
    assert len(set(codes)) == len(codes)
    assert all(1 <= code <= 15 for code in codes)  # one msgpack byte, below the client codes


def test_the_wire_order_is_the_dataclass_order() -> None:
    for _, cls, spec in codec.PEER_FRAMES:
        assert [name for name, _ in spec] == [f.name for f in dataclasses.fields(cls)]


def test_examples_cover_every_message_type() -> None:
    assert {type(m) for m in EXAMPLES} == set(MESSAGE_TYPES)


# --- round trips ---------------------------------------------------------------------------


@pytest.mark.parametrize("msg", EXAMPLES, ids=lambda m: type(m).__name__)
def test_example_round_trips(msg: Any) -> None:
    decoded = codec.decode_peer(codec.encode_peer(CLUSTER, msg), CLUSTER)
    assert decoded == msg
    assert_well_typed(decoded)


@given(peer_messages)
def test_every_valid_message_round_trips(msg: Any) -> None:
    data = codec.encode_peer(CLUSTER, msg)
    decoded = codec.decode_peer(data, CLUSTER)
    assert decoded == msg
    assert_well_typed(decoded)


def test_the_frame_is_the_documented_array() -> None:
    msg = EXAMPLES[2]
    assert frame_of(msg) == [
        1, CLUSTER, FrameType.APPEND_ENTRIES, 5, "n1", "n2", 10, 4,
        [[11, 4, 0, b"a"], [12, 5, 0, b""], [13, 5, 1, b"0:n3"]], 9, 3,
    ]
    assert frame_of(EXAMPLES[4])[6] == [100, 4, ["n1", "n2"], ["n3"]]


def test_accepts_bytearray_and_memoryview() -> None:
    data = codec.encode_peer(CLUSTER, EXAMPLES[0])
    assert codec.decode_peer(bytearray(data), CLUSTER) == EXAMPLES[0]
    assert codec.decode_peer(memoryview(data), CLUSTER) == EXAMPLES[0]


def test_a_100_entry_append_encodes_and_decodes_well_under_a_millisecond() -> None:
    entries = tuple(Entry(1001 + k, 7, b"x" * 64) for k in range(100))
    msg = AppendEntries(7, "node-1", "node-2", 1000, 7, entries, 1050, seq=42)
    rounds = 500
    start = time.perf_counter()
    for _ in range(rounds):
        data = codec.encode_peer(CLUSTER, msg)
    encoded_at = time.perf_counter()
    for _ in range(rounds):
        decoded = codec.decode_peer(data, CLUSTER)
    done = time.perf_counter()
    assert decoded == msg
    encode_us = (encoded_at - start) / rounds * 1e6
    decode_us = (done - encoded_at) / rounds * 1e6
    print(f"\n100-entry AppendEntries ({len(data)} bytes): encode {encode_us:.1f} us + "
          f"decode {decode_us:.1f} us = {encode_us + decode_us:.1f} us")


def test_encoding_something_that_is_not_a_raft_message_is_a_local_error() -> None:
    with pytest.raises(EncodeError, match="str is not a Raft peer message"):
        codec.encode_peer(CLUSTER, "hello")  # type: ignore[arg-type]
    with pytest.raises(EncodeError):
        codec.encode_peer(CLUSTER, RequestVote(1 << 70, "a", "b", 0, 0))
    assert not issubclass(EncodeError, ProtocolError)


def test_decoding_something_that_is_not_bytes_is_a_local_error() -> None:
    with pytest.raises(TypeError):
        codec.decode_peer("not bytes", CLUSTER)  # type: ignore[arg-type]


# --- the envelope --------------------------------------------------------------------------


def test_an_oversized_frame_is_refused_before_it_is_unpacked() -> None:
    with pytest.raises(FrameTooLarge, match="frame of 20000000 bytes exceeds the 16777216-byte limit"):
        codec.decode_peer(b"\x00" * 20_000_000, CLUSTER)
    data = codec.encode_peer(CLUSTER, EXAMPLES[2])
    assert codec.decode_peer(data, CLUSTER, max_frame=len(data)) == EXAMPLES[2]
    with pytest.raises(FrameTooLarge) as info:
        codec.decode_peer(data, CLUSTER, max_frame=len(data) - 1)
    assert info.value.code == "frame_too_large"


def test_a_wrong_version_is_refused() -> None:
    frame = frame_of(EXAMPLES[0])
    frame[0] = 2
    with pytest.raises(BadVersion, match="protocol version 2 is not supported") as info:
        codec.decode_peer(pack(frame), CLUSTER)
    assert info.value.code == "bad_version"


@pytest.mark.parametrize("version", [True, "1", 1.0, None, [1]])
def test_a_version_that_is_not_an_int_is_malformed(version: Any) -> None:
    frame = frame_of(EXAMPLES[0])
    frame[0] = version
    with pytest.raises(Malformed, match="protocol version must be an int"):
        codec.decode_peer(pack(frame), CLUSTER)


def test_a_foreign_cluster_is_refused() -> None:
    data = codec.encode_peer("x", EXAMPLES[0])
    with pytest.raises(ForeignCluster, match="cluster id 'x' is not this cluster's 'y'") as info:
        codec.decode_peer(data, "y")
    assert info.value.code == "foreign_cluster"


def test_a_foreign_cluster_id_is_shown_shortened() -> None:
    data = codec.encode_peer("z" * 10_000, EXAMPLES[0])
    with pytest.raises(ForeignCluster) as info:
        codec.decode_peer(data, "y")
    assert len(str(info.value)) < 200


@pytest.mark.parametrize("cluster_id", [b"arena-test", 5, None])
def test_a_cluster_id_that_is_not_a_str_is_malformed(cluster_id: Any) -> None:
    frame = frame_of(EXAMPLES[0])
    frame[1] = cluster_id
    with pytest.raises(Malformed, match="cluster id must be a str"):
        codec.decode_peer(pack(frame), CLUSTER)


@pytest.mark.parametrize("code", [0, 9, 15, 99, 1 << 40])
def test_an_unknown_type_code_is_refused(code: int) -> None:
    frame = frame_of(EXAMPLES[0])
    frame[2] = code
    with pytest.raises(UnknownType, match=f"unknown type code {code}") as info:
        codec.decode_peer(pack(frame), CLUSTER)
    assert info.value.code == "unknown_type"


def test_a_client_frame_on_the_peer_socket_is_an_unknown_type() -> None:
    data = codec.encode_request(CLUSTER, codec.Request(1, "c1", "status", {}))
    with pytest.raises(UnknownType, match=r"type code 16 \(REQUEST\) is not a Raft peer message"):
        codec.decode_peer(data, CLUSTER)


@pytest.mark.parametrize("code", [True, "1", None, 1.0])
def test_a_type_code_that_is_not_an_int_is_malformed(code: Any) -> None:
    frame = frame_of(EXAMPLES[0])
    frame[2] = code
    with pytest.raises(Malformed, match="type code must be an int"):
        codec.decode_peer(pack(frame), CLUSTER)


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\xc1",  # never used in msgpack
        b"\x93\x01",  # truncated array
        pack(5),
        pack("frame"),
        pack({"version": 1}),
        pack([]),
        pack([1, CLUSTER]),
        pack([1, CLUSTER, 1]) + b"\x00",  # trailing data
        pack(msgpack.ExtType(1, b"x")),
        pack([1, CLUSTER, 7, "n1", "n2", msgpack.ExtType(1, b"x")]),
        pack([1, CLUSTER, 7, {"term": 1}, "n1", "n2"]),
        b"\xdd\xff\xff\xff\xff",  # an array claiming 4 billion items in 5 bytes
        b"\xdb\xff\xff\xff\xff",  # a str claiming 4 GiB
        b"\xa3\xff\xfe\xfd",  # a str that is not UTF-8
        b"\x91" * 100_000 + b"\xc0",  # nested 100,000 deep
    ],
    ids=range(16),
)
def test_garbage_is_malformed(data: bytes) -> None:
    with pytest.raises(Malformed) as info:
        codec.decode_peer(data, CLUSTER)
    assert info.value.code == "malformed"


def test_deep_nesting_inside_a_valid_envelope_is_malformed() -> None:
    deep: Any = 1
    for _ in range(200):
        deep = [deep]
    frame = frame_of(EXAMPLES[2])
    frame[8] = [deep]
    with pytest.raises(Malformed, match="entries"):
        codec.decode_peer(pack(frame), CLUSTER)
    frame[8] = deep
    with pytest.raises(Malformed, match="entries"):
        codec.decode_peer(pack(frame), CLUSTER)


@pytest.mark.parametrize("msg", EXAMPLES, ids=lambda m: type(m).__name__)
def test_a_missing_or_extra_field_is_malformed(msg: Any) -> None:
    frame = frame_of(msg)
    with pytest.raises(Malformed, match="fields, expected"):
        codec.decode_peer(pack(frame[:-1]), CLUSTER)
    with pytest.raises(Malformed, match="fields, expected"):
        codec.decode_peer(pack([*frame, 0]), CLUSTER)


@pytest.mark.parametrize("msg", EXAMPLES, ids=lambda m: type(m).__name__)
def test_every_truncation_of_a_valid_frame_is_malformed(msg: Any) -> None:
    data = codec.encode_peer(CLUSTER, msg)
    for end in range(len(data)):
        with pytest.raises(Malformed):
            codec.decode_peer(data[:end], CLUSTER)


# --- every field, every wrong value ---------------------------------------------------------

WRONG: dict[str, list[Any]] = {
    "uint": [-1, -(1 << 63), True, False, 1.5, "1", b"1", None, [1], {"a": 1}],
    "id": ["", "x" * 65, 7, b"n1", None, True, ["n1"]],
    "bool": [0, 1, None, "true", 1.0, b"\x01"],
    "bin": ["text", None, 0, [1, 2], True],
    "entries": [None, b"", {}, "x", [[1, 1, 0]], [[1, 1, 0, b"", 5]], [{"index": 1}], [5]],
    "meta": [None, [1, 1, [], []][:3], [1, 1, ["n1"], [], 0], [-1, 1, [], []],
             [1, 1, "n1", []], [1, 1, [""], []], [1, 1, [1], []], [1, 1, [], [None]]],
}


def holds_a_map(value: Any) -> bool:
    if isinstance(value, dict):
        return bool(value)
    return isinstance(value, list) and any(holds_a_map(item) for item in value)


def field_cases() -> list[tuple[Any, int, str, Any]]:
    cases = []
    for msg in EXAMPLES:
        spec = next(spec for _, cls, spec in codec.PEER_FRAMES if cls is type(msg))
        for position, (name, kind) in enumerate(spec):
            for wrong in WRONG[kind]:
                cases.append((msg, 3 + position, f"{type(msg).__name__}.{name}", wrong))
    return cases


@pytest.mark.parametrize(
    ("msg", "position", "field", "wrong"),
    field_cases(),
    ids=lambda value: value if isinstance(value, str) else "",
)
def test_a_field_of_the_wrong_type_or_range_is_malformed_and_named(
    msg: Any, position: int, field: str, wrong: Any
) -> None:
    frame = frame_of(msg)
    frame[position] = wrong
    with pytest.raises(Malformed) as info:
        codec.decode_peer(pack(frame), CLUSTER)
    if holds_a_map(wrong):  # refused while unpacking, before any field is looked at
        assert "a Raft peer frame holds no maps" in str(info.value)
    else:
        assert field in str(info.value)


# --- entries and snapshot metadata are well formed -------------------------------------------


def append_frame(prev_index: int, prev_term: int, term: int, entries: list[list[Any]]) -> bytes:
    return pack([V, CLUSTER, 3, term, "n1", "n2", prev_index, prev_term, entries, 0, 0])


@pytest.mark.parametrize(
    ("prev_index", "prev_term", "term", "entries", "complaint"),
    [
        (10, 4, 5, [[11, 4, 0, b""], [13, 4, 0, b""]], "has index 13, expected 12"),
        (10, 4, 5, [[11, 4, 0, b""], [11, 4, 0, b""]], "has index 11, expected 12"),
        (10, 4, 5, [[12, 4, 0, b""]], "start at index 12, expected prev_log_index"),
        (10, 4, 5, [[10, 4, 0, b""]], "start at index 10"),
        (10, 4, 5, [[11, 5, 0, b""], [12, 4, 0, b""]], "term 4 below the previous 5"),
        (10, 4, 5, [[11, 3, 0, b""]], "below prev_log_term"),
        (10, 4, 5, [[11, 6, 0, b""]], "above the message's term 5"),
        (0, 0, 5, [[0, 1, 0, b""]], "index >= 1"),
        (0, 0, 5, [[1, 0, 0, b""]], "term >= 1"),
        (0, 0, 5, [[1, 1, 2, b""]], "kind 0|1"),
        (0, 0, 5, [[1, 1, -1, b""]], "kind 0|1"),
        (0, 0, 5, [[1, 1, True, b""]], "kind 0|1"),
        (0, 0, 5, [[1, 1, 0, "text"]], "bin"),
        (0, 0, 5, [[1.0, 1, 0, b""]], "index >= 1"),
        (0, 0, 5, [[1, 1, 1, b"c"]], r"entries\[0\].data is not a membership change"),
        (0, 0, 5, [[1, 1, 1, b"7:n1"]], "is not a membership change"),
        (0, 0, 5, [[1, 1, 1, b"\xff:n1"]], "is not a membership change"),
        (0, 0, 5, [[1, 1, 1, b"0:"]], "is not a membership change"),
        (0, 0, 5, [[1, 1, 1, b"0:" + b"n" * 65]], "node id must be a node id"),
    ],
)
def test_entries_that_no_leader_would_send_are_malformed(
    prev_index: int, prev_term: int, term: int, entries: list[list[Any]], complaint: str
) -> None:
    with pytest.raises(Malformed, match=complaint.replace("|", r"\|")):
        codec.decode_peer(append_frame(prev_index, prev_term, term, entries), CLUSTER)


def test_entry_kinds_decode_as_the_enum() -> None:
    msg = codec.decode_peer(append_frame(0, 0, 2, [[1, 1, 0, b""], [2, 2, 1, b"2:n1"]]), CLUSTER)
    assert isinstance(msg, AppendEntries)
    assert [e.kind for e in msg.entries] == [EntryKind.NORMAL, EntryKind.CONFIG]
    assert all(type(e.kind) is EntryKind for e in msg.entries)


def test_a_node_id_listed_twice_in_a_snapshot_config_is_malformed() -> None:
    frame = frame_of(EXAMPLES[4])
    frame[6] = [100, 4, ["n1", "n1"], []]
    with pytest.raises(Malformed, match="InstallSnapshot.meta.voters lists a node id twice"):
        codec.decode_peer(pack(frame), CLUSTER)


def test_errors_are_protocol_errors_with_distinct_codes() -> None:
    classes = [BadVersion, ForeignCluster, Malformed, FrameTooLarge, UnknownType]
    assert all(issubclass(cls, ProtocolError) for cls in classes)
    assert len({cls.code for cls in classes}) == len(classes)
