"""The documentation keeps up with the code: ``docs/PROTOCOL.md`` and the codec's
docstring name every frame, field, request kind and error code the codec knows, and
the page's worked examples are, byte for byte, what the codec sends."""

from __future__ import annotations

import dataclasses
import inspect
import json
import re
from datetime import UTC, datetime
from pathlib import Path

import msgpack
import pytest

from nodes import codec
from nodes.codec import ClusterInfo, ErrorInfo, Request, Response, Update
from nodes.kv import KeyValue
from nodes.statemachine import DEFAULT_MAX_OUTSTANDING, Replicated, encode_command

PROTOCOL_MD = Path(__file__).resolve().parents[2] / "docs" / "PROTOCOL.md"
FRAME_NAMES = {
    **{code: cls.__name__ for code, cls, _ in codec.PEER_FRAMES},
    codec.FrameType.GROUP_BATCH: "GroupBatch",
    codec.FrameType.REQUEST: "Request",
    codec.FrameType.RESPONSE: "Response",
    codec.FrameType.UPDATE: "Update",
    codec.FrameType.CLUSTER_INFO: "ClusterInfo",
}


@pytest.fixture(scope="module")
def protocol_md() -> str:
    return PROTOCOL_MD.read_text(encoding="utf-8")


def test_every_frame_type_is_in_the_type_code_table(protocol_md: str) -> None:
    assert set(FRAME_NAMES) == set(codec.FrameType)
    for code, name in FRAME_NAMES.items():
        assert re.search(rf"\|\s*{int(code)}\s*\|\s*`{name}`", protocol_md), name


def test_every_field_is_documented(protocol_md: str) -> None:
    for _, cls, spec in codec.PEER_FRAMES:
        for name, _ in spec:
            assert f"{name}" in protocol_md, f"{cls.__name__}.{name}"
    for cls in (Request, Response, ErrorInfo, Update, ClusterInfo):
        for f in dataclasses.fields(cls):
            assert f"`{f.name}`" in protocol_md, f"{cls.__name__}.{f.name}"


def test_every_request_kind_and_error_code_is_documented(protocol_md: str) -> None:
    for kind in codec.REQUEST_KINDS:
        assert f"### {kind}" in protocol_md or f"and {kind}:" in protocol_md, kind
    for code in codec.ERROR_CODES:
        assert f"| `{code}`" in protocol_md, code
    for error in (codec.BadVersion, codec.ForeignCluster, codec.Malformed, codec.FrameTooLarge,
                  codec.UnknownType):
        assert f"`{error.code}`" in protocol_md, error.code


def test_the_limits_and_topics_are_the_codes(protocol_md: str) -> None:
    assert f"{codec.DEFAULT_MAX_FRAME:,} bytes" in protocol_md
    assert f"version {codec.PROTOCOL_VERSION}" in protocol_md
    assert 'topic `b"u"`' in protocol_md and 'topic `b"c"`' in protocol_md
    assert f"{codec.MAX_BODY_DEPTH} levels" in protocol_md
    assert f"{codec.MAX_VALUE_DEPTH} levels" in protocol_md
    assert "## 5. Requests in detail" in protocol_md


def test_the_session_limits_are_the_state_machines(protocol_md: str) -> None:
    defaults = inspect.signature(Replicated).parameters
    flat = " ".join(protocol_md.split())  # line breaks do not matter
    assert defaults["max_outstanding"].default == DEFAULT_MAX_OUTSTANDING
    assert f"already has {DEFAULT_MAX_OUTSTANDING} results kept" in flat
    assert f"table's {defaults['max_sessions'].default:,} sessions" in flat
    assert defaults["session_ttl_ms"].default == 3_600_000 and "an hour of replicated time" in flat
    for code in ("stale_sequence", "too_many_outstanding", "session_expired"):
        assert f'"{code}"' in protocol_md, code
    assert "`first_outstanding`" in protocol_md and "first_outstanding?: uint" in (
        codec.__doc__ or "")


def test_the_module_docstring_lists_every_frame() -> None:
    doc = codec.__doc__ or ""
    for code, name in FRAME_NAMES.items():
        assert re.search(rf"^\s*{int(code)} {name}\b", doc, re.MULTILINE), name


# --- section 12: the worked examples, byte for byte ---------------------------------

EXAMPLE = re.compile(
    r"\*\*Example (?P<number>\d+):.*?\((?P<size>\d+) bytes\):\s*\n\s*\n"
    r"Frame: `(?P<json>[^`]+)`\s*\n\s*\n```hex\n(?P<hex>.*?)```",
    re.DOTALL,
)
DECODERS = {
    codec.FrameType.REQUEST: codec.decode_request,
    codec.FrameType.RESPONSE: codec.decode_response,
    codec.FrameType.UPDATE: codec.decode_update,
    codec.FrameType.CLUSTER_INFO: codec.decode_cluster_info,
}
ENCODERS = {
    Request: codec.encode_request,
    Response: codec.encode_response,
    Update: codec.encode_update,
    ClusterInfo: codec.encode_cluster_info,
}


def hex_bytes(block: str) -> bytes:
    """The bytes of a hex dump: on each line, the pairs of hex digits before the
    comment (which starts after two or more spaces)."""
    out = bytearray()
    for line in block.splitlines():
        dump = re.split(r"\s{2,}", line.strip(), maxsplit=1)[0]
        for pair in dump.split():
            assert re.fullmatch(r"[0-9a-f]{2}", pair), f"not a hex byte: {pair!r} in {line!r}"
            out.append(int(pair, 16))
    return bytes(out)


def worked_examples(text: str) -> list[dict[str, object]]:
    section = text[text.index("## 12. Worked examples"):]
    section = section[: section.index("## 13.")]
    found = [m.groupdict() for m in EXAMPLE.finditer(section)]
    assert len(found) == section.count("**Example "), "an example does not follow the format"
    return [{"number": int(m["number"]), "size": int(m["size"]), "frame": json.loads(m["json"]),
             "data": hex_bytes(m["hex"])} for m in found]


def test_the_worked_examples_are_the_bytes_the_codec_sends(protocol_md: str) -> None:
    examples = worked_examples(protocol_md)
    assert [e["number"] for e in examples] == list(range(1, len(examples) + 1))
    assert len(examples) >= 5
    for e in examples:
        frame, data = e["frame"], e["data"]
        where = f"example {e['number']}"
        assert len(data) == e["size"], f"{where} says {e['size']} bytes, its dump has {len(data)}"
        assert data == msgpack.packb(frame, use_bin_type=True), f"{where}: dump != its JSON"
        cluster = frame[1]
        decoded = DECODERS[codec.FrameType(frame[2])](data, cluster)
        assert ENCODERS[type(decoded)](cluster, decoded) == data, f"{where}: codec differs"


def test_the_worked_examples_tell_one_true_story(protocol_md: str) -> None:
    """The submit of example 2, applied by a real kv machine after a first command,
    gives the result of example 4 and the events and command of example 5."""
    by_number = {e["number"]: e for e in worked_examples(protocol_md)}
    cluster = by_number[1]["frame"][1]
    status = codec.decode_request(by_number[1]["data"], cluster)
    assert status.kind == "status" and status.body == {}
    submit = codec.decode_request(by_number[2]["data"], cluster)
    refused = codec.decode_response(by_number[3]["data"], cluster)
    answer = codec.decode_response(by_number[4]["data"], cluster)
    update = codec.decode_update(by_number[5]["data"], cluster)
    assert refused.req_id == submit.req_id and refused.error is not None
    assert refused.error.code == "not_leader" and refused.error.leader_id == "n1"
    assert answer.ok and answer.index == update.index

    sm = Replicated([KeyValue()])
    opening = encode_command(submit.client_id, 1, update.clock_ms - 1_000, "kv",
                             {"op": "lock", "name": "door", "holder": "h", "ttl_ms": 10})
    sm.apply_entry(1, 1, opening)
    body = submit.body
    applied = sm.apply_entry(update.index, update.term, encode_command(
        submit.client_id, body["seq"], update.clock_ms, body["machine"], body["cmd"],
        body.get("first_outstanding")))
    assert applied.result == answer.result == update.result
    assert applied.events == update.events and applied.command == update.command
    assert (update.client_id, update.seq, update.machine) == (
        submit.client_id, body["seq"], body["machine"])
    assert datetime.fromtimestamp(update.clock_ms / 1000, tz=UTC).year >= 2025  # epoch ms


def test_the_rooms_section_names_every_rooms_command_query_topic_and_error(
        protocol_md: str) -> None:
    from game import rooms
    from game.errors import ERROR_CODES
    from nodes.rooms_feed import LIST_WIRE_TOPIC, room_topic

    section = protocol_md.split("#### The `rooms` machine", 1)[1].split("### read:", 1)[0]
    for kind in rooms.COMMANDS:
        assert f'"{kind}"' in section or f"`{kind}`" in section, kind
    for op in ("rooms", "room", "seat_of", "leaderboard", "state"):
        assert f'{{op: "{op}"' in section, op
    game_codes = {"bad_command", "unknown_command", "invalid_name", "name_taken",
                  "already_joined", "game_full", "not_joined", "wrong_phase", "not_host",
                  "not_enough_players", "not_enough_ready", "spectator", "round_over",
                  "stale_round", "future_round", "no_such_target", "target_taken"}
    for code in ERROR_CODES - game_codes:
        assert f"`{code}`" in section, code
    for op in ("rules", "seat", "away", "back", "rebind", "free"):
        assert f"`{op}`" in protocol_md.split("**Following one room**", 1)[1], op
    assert f'`b"{LIST_WIRE_TOPIC.decode()}"`' in protocol_md
    assert f'`b"{room_topic("r7").decode()}"`' in protocol_md
