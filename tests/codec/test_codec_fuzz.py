"""A hostile frame can only ever raise ``ProtocolError``: fuzz every decoder with
arbitrary bytes, with damaged valid frames (flipped bytes, truncation, extension,
splices) and with well-enveloped frames whose fields are arbitrary msgpack values.
What decodes despite the damage is still well typed."""

from __future__ import annotations

import os
from typing import Any

import msgpack
from codec_strategies import (
    CLUSTER,
    DECODERS,
    assert_well_typed,
    peer_messages,
    valid_frames,
    values,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nodes import codec
from nodes.codec import FrameType, ProtocolError

# CODEC_FUZZ_EXAMPLES=20000 for a longer hunt
FUZZ = settings(
    max_examples=int(os.environ.get("CODEC_FUZZ_EXAMPLES", "300")),
    suppress_health_check=[HealthCheck.too_slow],
)


def decode_everything(data: bytes) -> None:
    """Every decoder either returns or raises ``ProtocolError``; nothing else escapes."""
    for decode in DECODERS:
        try:
            result = decode(data, CLUSTER)
        except ProtocolError:
            continue
        if decode is codec.decode_peer:
            assert_well_typed(result)


@FUZZ
@given(st.binary(max_size=300))
def test_arbitrary_bytes(data: bytes) -> None:
    decode_everything(data)


@FUZZ
@given(values())
def test_arbitrary_msgpack_values(value: Any) -> None:
    decode_everything(msgpack.packb(value, use_bin_type=True))


@st.composite
def damaged(draw: st.DrawFn) -> bytes:
    data = bytearray(draw(valid_frames))
    for _ in range(draw(st.integers(1, 4))):
        how = draw(st.sampled_from(["flip", "set", "truncate", "extend", "insert", "delete"]))
        if how == "extend":
            data += draw(st.binary(min_size=1, max_size=16))
            continue
        if not data:
            continue
        at = draw(st.integers(0, len(data) - 1))
        if how == "flip":
            data[at] ^= 1 << draw(st.integers(0, 7))
        elif how == "set":
            data[at] = draw(st.integers(0, 255))
        elif how == "truncate":
            del data[at:]
        elif how == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=8))
        else:
            del data[at:at + draw(st.integers(1, 8))]
    return bytes(data)


@FUZZ
@given(damaged())
def test_damaged_valid_frames(data: bytes) -> None:
    decode_everything(data)


field_values = st.one_of(
    values(),
    st.lists(st.lists(values(), max_size=5), max_size=4),  # entry-like arrays
    st.integers(-5, 20),
    st.text(max_size=3),
)


@FUZZ
@given(
    st.sampled_from([int(t) for t in FrameType]),
    st.lists(field_values, max_size=12),
)
def test_well_enveloped_frames_with_arbitrary_fields(code: int, fields: list[Any]) -> None:
    """The envelope is right, so the field checks are what is being fuzzed."""
    decode_everything(msgpack.packb([1, CLUSTER, code, *fields], use_bin_type=True))


@FUZZ
@given(peer_messages, st.data())
def test_peer_frames_with_one_field_replaced(msg: Any, data: st.DataObject) -> None:
    """Start from a valid peer frame and replace one field (or one entry) by anything."""
    frame = msgpack.unpackb(codec.encode_peer(CLUSTER, msg), raw=False)
    position = data.draw(st.integers(3, len(frame) - 1))
    if type(frame[position]) is list and frame[position] and data.draw(st.booleans()):
        inner = frame[position]
        inner[data.draw(st.integers(0, len(inner) - 1))] = data.draw(field_values)
    else:
        frame[position] = data.draw(field_values)
    decode_everything(msgpack.packb(frame, use_bin_type=True))


_ENTRY_FIELDS = st.one_of(
    st.integers(-2, 6), st.booleans(), st.floats(0, 3), st.binary(max_size=3),
    st.text(max_size=2), st.none(),
)
_RAW_ENTRIES = st.lists(
    st.one_of(
        st.tuples(st.integers(1, 6), st.integers(1, 4), st.just(0), st.binary(max_size=4)).map(list),
        st.lists(_ENTRY_FIELDS, min_size=3, max_size=5),
        _ENTRY_FIELDS,
    ),
    max_size=6,
)


_CONSECUTIVE = st.tuples(
    st.integers(0, 3), st.lists(st.tuples(st.integers(0, 1), st.binary(max_size=4)), max_size=5),
).map(lambda t: [[t[0] + k, 1 + bump + k // 3, 0, data] for k, (bump, data) in enumerate(t[1])])


@FUZZ
@given(raw=st.one_of(_CONSECUTIVE, _RAW_ENTRIES, _ENTRY_FIELDS))
def test_the_fast_entries_check_accepts_and_refuses_exactly_what_the_slow_one_does(raw: Any):
    """``_entries`` takes a fast path for the common case: it must decode to the same
    entries, and refuse with the same message, as the field-by-field ``_entries_checked``."""
    try:
        expected: Any = codec._entries_checked(raw, "AppendEntries.entries")
    except ProtocolError as exc:
        expected = str(exc)
    try:
        got: Any = codec._entries(raw, "AppendEntries.entries")
    except ProtocolError as exc:
        got = str(exc)
    assert got == expected
    if isinstance(got, tuple):
        assert all(type(e.kind) is codec.EntryKind for e in got)
