"""Frame 8, the node host's GroupBatch: many groups' messages in one frame, and the
single-group peer frames unchanged beside it."""

from __future__ import annotations

import msgpack
import pytest
from codec_strategies import peer_messages
from hypothesis import given
from hypothesis import strategies as st

from nodes import codec
from nodes.raft.messages import AppendEntries, Entry, RequestVote, RequestVoteResponse

C = "c1"


def _retarget(m, sender: str, recipient: str):  # type: ignore[no-untyped-def]
    return type(m)(
        **{**{f: getattr(m, f) for f in m.__slots__}, "sender": sender, "recipient": recipient}
    )


@given(st.lists(st.tuples(st.integers(0, 2**64 - 1), st.booleans(), peer_messages), max_size=8))
def test_a_batch_round_trips(items: list) -> None:  # type: ignore[type-arg]
    items = [(g, q, _retarget(m, "a", "b")) for g, q, m in items]
    data = codec.encode_batch(C, "a", "b", items)
    assert codec.decode_batch(data, C) == ("a", "b", items)


def test_an_empty_batch_is_a_beat() -> None:
    assert codec.decode_batch(codec.encode_batch(C, "n1", "n2", []), C) == ("n1", "n2", [])


def test_single_group_frames_are_unchanged_and_not_taken_for_a_batch() -> None:
    m = RequestVote(3, "n1", "n2", 7, 2, True, False)
    frame = codec.encode_peer(C, m)
    assert msgpack.unpackb(frame) == [1, C, 1, 3, "n1", "n2", 7, 2, True, False]
    assert codec.decode_peer(frame, C) == m
    with pytest.raises(codec.UnknownType, match="GROUP_BATCH frame was expected"):
        codec.decode_batch(frame, C)
    with pytest.raises(codec.UnknownType, match="not a Raft peer message"):
        codec.decode_peer(codec.encode_batch(C, "n1", "n2", [(1, False, m)]), C)


def test_an_item_speaking_for_another_node_is_refused() -> None:
    m = RequestVoteResponse(3, "n3", "n2", True)
    data = codec.encode_batch(C, "n1", "n2", [(5, False, m)])
    with pytest.raises(codec.Malformed, match=r"items\[0\] is from n3 to n2 in a batch from n1"):
        codec.decode_batch(data, C)


def test_a_bad_item_is_malformed_with_its_place() -> None:
    good = AppendEntries(2, "n1", "n2", 0, 0, (Entry(1, 2, b"x"),), 1)
    data = msgpack.packb(
        [
            1,
            C,
            8,
            "n1",
            "n2",
            [[1, False, *codec._PEER_FIELDS[AppendEntries](good)], [2, "yes", 7, 1, "n1", "n2"]],
        ]
    )
    with pytest.raises(codec.Malformed, match=r"items\[1\].quiesce"):
        codec.decode_batch(data, C)
    data = msgpack.packb([1, C, 8, "n1", "n2", [[1, False, 99]]])
    with pytest.raises(codec.UnknownType, match=r"items\[0\]: unknown type code 99"):
        codec.decode_batch(data, C)
