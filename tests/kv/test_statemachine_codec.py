"""The entry payload: encode_command / decode_command (msgpack, bounded, never pickle),
and Replicated.apply_entry answering a bad entry with an error instead of raising
(a bad entry must not crash every node)."""

from __future__ import annotations

import pickle

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nodes.kv import KeyValue
from nodes.statemachine import (
    MAX_COMMAND_BYTES,
    BadCommand,
    Replicated,
    decode_command,
    encode_command,
)


def test_encode_then_decode_gives_back_the_envelope() -> None:
    cmd = {"op": "put", "key": "k", "value": {"b": b"\x00\xff", "n": [1, 2.5, None, True]}}
    payload = encode_command("player-1", 7, 1_700_000_000_000, "kv", cmd)
    assert decode_command(payload) == {
        "c": "player-1",
        "s": 7,
        "t": 1_700_000_000_000,
        "m": "kv",
        "cmd": cmd,
    }


def test_decode_keeps_non_string_map_keys_inside_commands() -> None:
    payload = encode_command("c", 1, 0, "game", {"op": "move", "grid": {3: "x"}})
    assert decode_command(payload)["cmd"]["grid"] == {3: "x"}


@pytest.mark.parametrize(
    "args",
    [
        ("", 1, 0, "kv", {}),
        ("c" * 300, 1, 0, "kv", {}),
        ("c", 0, 0, "kv", {}),
        ("c", True, 0, "kv", {}),
        ("c", 1, -1, "kv", {}),
        ("c", 1, 0, "", {}),
        ("c", 1, 0, "kv", ["op"]),
        ("c", 1, 0, "kv", {"v": object()}),
        ("c", 1, 0, "kv", {"v": b"x" * MAX_COMMAND_BYTES}),
    ],
)
def test_encode_refuses_a_malformed_or_oversized_command(args) -> None:
    with pytest.raises(BadCommand):
        encode_command(*args)


def envelope(**overrides: object) -> bytes:
    fields = {"c": "c", "s": 1, "t": 0, "m": "kv", "cmd": {"op": "put"}, **overrides}
    return msgpack.packb({k: v for k, v in fields.items() if v is not ...}, use_bin_type=True)


BAD_PAYLOADS = {
    "not msgpack": b"\xc1\xc1\xc1",
    "truncated": envelope()[:-3],
    "trailing bytes": envelope() + b"\x00",
    "not a map": msgpack.packb(["c", 1, 0, "kv", {}]),
    "missing cmd": envelope(cmd=...),
    "seq as str": envelope(s="1"),
    "negative timestamp": envelope(t=-5),
    "cmd not a map": envelope(cmd="put k 1"),
    "invalid utf-8": envelope(c=b"\xff").replace(b"\xc4\x01\xff", b"\xa1\xff"),
    "ext type": msgpack.packb({"c": "c", "s": 1, "t": msgpack.ExtType(5, b"1234")}),
    "msgpack timestamp": msgpack.packb(
        {"c": "c", "s": 1, "t": msgpack.Timestamp(1, 0), "m": "kv", "cmd": {}}
    ),
    "map keyed by a list": b"\x81\x91\x01\x01",
    "deeply nested": b"\x91" * 100_000,
    "too large": b"\xc6"
    + (MAX_COMMAND_BYTES + 1).to_bytes(4, "big")
    + b"x" * (MAX_COMMAND_BYTES + 1),
    "pickle": pickle.dumps({"c": "c", "s": 1, "t": 0, "m": "kv", "cmd": {}}),
}


@pytest.mark.parametrize("payload", BAD_PAYLOADS.values(), ids=BAD_PAYLOADS.keys())
def test_decode_refuses_a_bad_payload_with_bad_command(payload: bytes) -> None:
    with pytest.raises(BadCommand):
        decode_command(payload)


@pytest.mark.parametrize("payload", BAD_PAYLOADS.values(), ids=BAD_PAYLOADS.keys())
def test_an_undecodable_payload_yields_an_error_result_and_does_not_raise(payload) -> None:
    node = Replicated([KeyValue()])
    applied = node.apply_entry(1, 1, payload)
    assert applied.index == 1 and applied.client_id == "" and applied.seq == 0
    assert applied.result["ok"] is False and applied.result["error"] == "bad_entry"
    assert "entry 1" in applied.result["message"]
    assert applied.events == [] and node.applied_index == 1
    # and the node goes on applying good entries
    good = encode_command("c", 1, 0, "kv", {"op": "put", "key": "k", "value": 1})
    assert node.apply_entry(2, 1, good).result["ok"] is True


@settings(max_examples=300, deadline=None)
@given(payload=st.binary(min_size=1, max_size=200))
def test_any_bytes_as_a_payload_never_raise(payload: bytes) -> None:
    node = Replicated([KeyValue()])
    applied = node.apply_entry(1, 1, payload)
    assert isinstance(applied.result, dict) and "ok" in applied.result


def test_an_empty_payload_is_the_leaders_no_op() -> None:
    node = Replicated([KeyValue()])
    before = node.snapshot()
    applied = node.apply_entry(5, 2, b"")
    assert (applied.index, applied.client_id, applied.seq, applied.result) == (5, "", 0, None)
    assert applied.events == [] and applied.duplicate is False
    assert node.applied_index == 5
    assert node.snapshot() != before  # only applied_index moved
    assert msgpack.unpackb(node.snapshot())["machines"] == msgpack.unpackb(before)["machines"]


def test_a_payload_missing_envelope_fields_is_refused_naming_each_of_them() -> None:
    payload = msgpack.packb({"c": "client", "s": 1, "m": "kv"})
    with pytest.raises(BadCommand, match=r"payload lacks field\(s\) t, cmd$"):
        decode_command(payload)
