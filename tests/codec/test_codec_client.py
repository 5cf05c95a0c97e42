"""Client frames: requests, responses, published updates and cluster info round-trip;
a bad frame is refused with the right ``ProtocolError``; a frame we cannot send is
our own ``EncodeError``."""

from __future__ import annotations

from typing import Any

import msgpack
import pytest
from codec_strategies import CLUSTER, cluster_infos, requests, responses, updates
from hypothesis import given

from nodes import codec
from nodes.codec import (
    BadVersion,
    ClusterInfo,
    EncodeError,
    ErrorInfo,
    ForeignCluster,
    FrameTooLarge,
    FrameType,
    Malformed,
    Request,
    Response,
    UnknownKind,
    UnknownType,
    Update,
)


def pack(obj: Any) -> bytes:
    return msgpack.packb(obj, use_bin_type=True)


def nested(depth: int) -> Any:
    """A value ``depth`` levels deep: ``nested(1) == []``, ``nested(2) == [[]]``."""
    value: Any = []
    for _ in range(depth - 1):
        value = [value]
    return value


SUBMIT = Request(7, "c-1", "submit", {"machine": "kv", "seq": 3, "cmd": {"op": "set", "key": "a", "value": 1}})
READ = Request(8, "c-1", "read", {"machine": "kv", "query": {"op": "get", "key": "a"}, "linearizable": True})
UPDATE = Update(12, 3, "kv", "c-1", 3, {"ok": True}, [{"machine": "kv", "type": "set", "key": "a"}],
                {"op": "set", "key": "a", "value": 1}, 1_700_000_000_000)
INFO = ClusterInfo("n1", 3, "leader", "n1", 12, 12,
                   {"n1": {"connected": True, "voter": True, "learner": False,
                           "client": "tcp://127.0.0.1:6001", "pub": "tcp://127.0.0.1:7001"}})


# --- round trips ---------------------------------------------------------------------------


@given(requests)
def test_requests_round_trip(req: Request) -> None:
    assert codec.decode_request(codec.encode_request(CLUSTER, req), CLUSTER) == req


@given(responses)
def test_responses_round_trip(resp: Response) -> None:
    assert codec.decode_response(codec.encode_response(CLUSTER, resp), CLUSTER) == resp


@given(updates)
def test_updates_round_trip(upd: Update) -> None:
    assert codec.decode_update(codec.encode_update(CLUSTER, upd), CLUSTER) == upd


@given(cluster_infos)
def test_cluster_infos_round_trip(info: ClusterInfo) -> None:
    assert codec.decode_cluster_info(codec.encode_cluster_info(CLUSTER, info), CLUSTER) == info


@pytest.mark.parametrize("kind", codec.REQUEST_KINDS)
def test_every_request_kind_round_trips(kind: str) -> None:
    req = Request(1, "c-1", kind, {})
    assert codec.decode_request(codec.encode_request(CLUSTER, req), CLUSTER) == req


def test_the_frames_are_the_documented_arrays() -> None:
    assert msgpack.unpackb(codec.encode_request(CLUSTER, SUBMIT)) == [
        1, CLUSTER, 16, 7, "c-1", "submit", {"machine": "kv", "seq": 3, "cmd": SUBMIT.body["cmd"]}
    ]
    error = ErrorInfo("not_leader", "node n2 is not the leader", "n1", "tcp://127.0.0.1:6001")
    assert msgpack.unpackb(codec.encode_response(CLUSTER, Response(7, False, None, error))) == [
        1, CLUSTER, 17, 7, False, None, ["not_leader", "node n2 is not the leader", "n1",
                                          "tcp://127.0.0.1:6001"], 0
    ]
    assert msgpack.unpackb(codec.encode_response(CLUSTER, Response(7, True, {"ok": True}, None, 12))) == [
        1, CLUSTER, 17, 7, True, {"ok": True}, None, 12
    ]
    assert msgpack.unpackb(codec.encode_update(CLUSTER, UPDATE)) == [
        1, CLUSTER, 18, 12, 3, "kv", "c-1", 3, {"ok": True}, UPDATE.events, UPDATE.command,
        1_700_000_000_000,
    ]
    assert msgpack.unpackb(codec.encode_cluster_info(CLUSTER, INFO)) == [
        1, CLUSTER, 19, "n1", 3, "leader", "n1", 12, 12, INFO.nodes
    ]
    assert (codec.UPDATE_TOPIC, codec.CLUSTER_TOPIC) == (b"u", b"c")


def test_results_may_have_non_str_keys_and_bytes() -> None:
    resp = Response(1, True, {1: b"\x00\xff", "list": [1.5, None, True], b"k": -3}, None, 4)
    assert codec.decode_response(codec.encode_response(CLUSTER, resp), CLUSTER) == resp


def test_an_update_of_a_no_op_entry_round_trips() -> None:
    upd = Update(5, 2, "", "", 0, None, [])
    assert codec.decode_update(codec.encode_update(CLUSTER, upd), CLUSTER) == upd


# --- decoding: the envelope ------------------------------------------------------------------

DECODERS = {
    "request": (codec.decode_request, codec.encode_request(CLUSTER, SUBMIT)),
    "response": (codec.decode_response, codec.encode_response(CLUSTER, Response(1, True, 5))),
    "update": (codec.decode_update, codec.encode_update(CLUSTER, UPDATE)),
    "cluster_info": (codec.decode_cluster_info, codec.encode_cluster_info(CLUSTER, INFO)),
}


@pytest.mark.parametrize("name", DECODERS)
def test_envelope_errors_apply_to_every_client_frame(name: str) -> None:
    decode, data = DECODERS[name]
    frame = msgpack.unpackb(data, raw=False, strict_map_key=False)
    with pytest.raises(FrameTooLarge, match=f"frame of {len(data)} bytes exceeds the 10-byte limit"):
        decode(data, CLUSTER, 10)
    with pytest.raises(BadVersion, match="protocol version 9 is not supported"):
        decode(pack([9, *frame[1:]]), CLUSTER)
    with pytest.raises(ForeignCluster, match=f"cluster id 'other' is not this cluster's '{CLUSTER}'"):
        decode(pack([frame[0], "other", *frame[2:]]), CLUSTER)
    with pytest.raises(UnknownType, match="type code 3 .APPEND_ENTRIES. where a"):
        decode(pack([*frame[:2], 3, *frame[3:]]), CLUSTER)
    with pytest.raises(UnknownType, match="unknown type code 42"):
        decode(pack([*frame[:2], 42, *frame[3:]]), CLUSTER)
    with pytest.raises(Malformed, match="fields, expected"):
        decode(pack(frame[:-1]), CLUSTER)
    with pytest.raises(Malformed, match="fields, expected"):
        decode(pack([*frame, None]), CLUSTER)
    for end in range(len(data)):
        with pytest.raises(Malformed):
            decode(data[:end], CLUSTER)


@pytest.mark.parametrize("name", DECODERS)
def test_a_frame_of_another_kind_is_an_unknown_type(name: str) -> None:
    decode, _ = DECODERS[name]
    for other, (_, data) in DECODERS.items():
        if other != name:
            with pytest.raises(UnknownType, match="where a"):
                decode(data, CLUSTER)


# --- decoding: requests ------------------------------------------------------------------------


def request_frame(**changes: Any) -> bytes:
    fields = {"req_id": 7, "client_id": "c-1", "kind": "submit", "body": {"seq": 1}}
    fields.update(changes)
    return pack([1, CLUSTER, 16, *fields.values()])


@pytest.mark.parametrize(
    ("changes", "error", "complaint"),
    [
        ({"kind": "delete"}, UnknownKind, "request kind 'delete' is not one of submit, read"),
        ({"kind": 1}, Malformed, "Request.kind must be a str"),
        ({"req_id": 0}, Malformed, "Request.req_id must be an int >= 1"),
        ({"req_id": -5}, Malformed, "Request.req_id must be an int >= 1"),
        ({"req_id": True}, Malformed, "Request.req_id must be an int >= 1"),
        ({"req_id": "7"}, Malformed, "Request.req_id must be an int >= 1"),
        ({"client_id": ""}, Malformed, "Request.client_id must be a str of 1 to 256"),
        ({"client_id": "c" * 257}, Malformed, "Request.client_id must be a str of 1 to 256"),
        ({"client_id": b"c-1"}, Malformed, "Request.client_id"),
        ({"body": None}, Malformed, "Request.body of 'submit' must be a map, got None"),
        ({"body": [1]}, Malformed, "must be a map, got an array"),
        ({"body": {1: "x"}}, Malformed, "keys must be str, got 1"),
        ({"body": {b"seq": 1}}, Malformed, "keys must be str"),
        ({"body": {"cmd": nested(codec.MAX_BODY_DEPTH)}}, Malformed, "nests deeper than 32 levels"),
    ],
)
def test_a_bad_request_is_refused_and_says_why(changes: dict[str, Any], error: type, complaint: str) -> None:
    with pytest.raises(error, match=complaint):
        codec.decode_request(request_frame(**changes), CLUSTER)


def test_a_body_exactly_at_the_depth_limit_is_accepted() -> None:
    body = {"cmd": nested(codec.MAX_BODY_DEPTH - 1)}
    assert codec.decode_request(request_frame(body=body), CLUSTER).body == body


def test_a_refused_request_names_its_req_id_when_it_can() -> None:
    with pytest.raises(UnknownKind) as info:
        codec.decode_request(request_frame(kind="delete"), CLUSTER)
    assert info.value.req_id == 7
    with pytest.raises(ForeignCluster) as foreign:
        codec.decode_request(pack([1, "other", 16, 9, "c-1", "status", {}]), CLUSTER)
    assert foreign.value.req_id == 9
    with pytest.raises(Malformed) as short:
        codec.decode_request(pack([1, CLUSTER, 16, 11]), CLUSTER)
    assert short.value.req_id == 11


@pytest.mark.parametrize(
    "data",
    [
        b"\xc1",
        pack([2, CLUSTER, 16, 7, "c-1", "status", {}]),  # another version: its layout is unknown
        pack([1, CLUSTER, 16, -1, "c-1", "status", {}]),
        pack([1, CLUSTER, 16, True, "c-1", "status", {}]),
        pack({"req_id": 7}),
    ],
)
def test_a_refused_request_without_a_readable_req_id_has_none(data: bytes) -> None:
    with pytest.raises(codec.ProtocolError) as info:
        codec.decode_request(data, CLUSTER)
    assert info.value.req_id is None


def test_the_answer_to_an_undecodable_request() -> None:
    with pytest.raises(UnknownKind) as info:
        codec.decode_request(request_frame(kind="delete"), CLUSTER)
    resp = codec.protocol_error_response(info.value)
    assert resp.req_id == 7 and not resp.ok and resp.error is not None
    assert resp.error.code == "protocol"
    assert resp.error.message.startswith("unknown_kind: request kind 'delete'")
    with pytest.raises(Malformed) as garbage:
        codec.decode_request(b"\xc1", CLUSTER)
    assert codec.protocol_error_response(garbage.value).req_id == 0
    # and the answer itself is a valid frame
    data = codec.encode_response(CLUSTER, resp)
    assert codec.decode_response(data, CLUSTER) == resp


# --- decoding: responses, updates, cluster info -------------------------------------------------


def response_frame(*fields: Any) -> bytes:
    return pack([1, CLUSTER, 17, *fields])


@pytest.mark.parametrize(
    ("fields", "complaint"),
    [
        ((1, True, None, ["timeout", "late", None, None], 0), "ok true and an error"),
        ((1, False, None, None, 0), "ok false and no error"),
        ((1, 1, None, None, 0), "Response.ok must be a bool"),
        ((-1, True, None, None, 0), "Response.req_id must be an int >= 0"),
        ((1, True, None, None, -2), "Response.index must be an int >= 0"),
        ((1, False, None, ["timeout", "late", None], 0), r"Response.error must be \[code"),
        ((1, False, None, {"code": "timeout"}, 0), "Response.error must be"),
        ((1, False, None, ["", "late", None, None], 0), "Response.error.code must be a str of 1"),
        ((1, False, None, [5, "late", None, None], 0), "Response.error.code"),
        ((1, False, None, ["x", None, None, None], 0), "Response.error.message"),
        ((1, False, None, ["x", "m", "", None], 0), "Response.error.leader_id must be a node id"),
        ((1, False, None, ["x", "m", "n1", 5], 0), "Response.error.leader_addr"),
        ((1, True, nested(codec.MAX_VALUE_DEPTH + 1), None, 0), "Response.result nests deeper than 64"),
    ],
)
def test_a_bad_response_is_malformed(fields: tuple[Any, ...], complaint: str) -> None:
    with pytest.raises(Malformed, match=complaint):
        codec.decode_response(response_frame(*fields), CLUSTER)


def update_frame(**changes: Any) -> bytes:
    fields = {"index": 12, "term": 3, "machine": "kv", "client_id": "c-1", "seq": 3,
              "result": None, "events": [], "command": None, "clock_ms": 5}
    fields.update(changes)
    return pack([1, CLUSTER, 18, *fields.values()])


@pytest.mark.parametrize(
    ("changes", "complaint"),
    [
        ({"index": -1}, "Update.index"),
        ({"term": "3"}, "Update.term"),
        ({"machine": None}, "Update.machine must be a str of 0 to 64"),
        ({"machine": "m" * 65}, "Update.machine"),
        ({"client_id": 5}, "Update.client_id"),
        ({"seq": 1.0}, "Update.seq"),
        ({"events": None}, "Update.events must be an array of maps"),
        ({"events": [1]}, r"Update.events\[0\] must be a map"),
        ({"events": [{}, "e"]}, r"Update.events\[1\] must be a map"),
        ({"events": [{"a": nested(codec.MAX_VALUE_DEPTH)}]}, "Update.events nests deeper"),
        ({"command": []}, "Update.command must be a map or nil"),
        ({"clock_ms": -1}, "Update.clock_ms"),
        ({"result": nested(codec.MAX_VALUE_DEPTH + 1)}, "Update.result nests deeper"),
    ],
)
def test_a_bad_update_is_malformed(changes: dict[str, Any], complaint: str) -> None:
    with pytest.raises(Malformed, match=complaint):
        codec.decode_update(update_frame(**changes), CLUSTER)


def info_frame(**changes: Any) -> bytes:
    fields = {"node_id": "n1", "term": 3, "role": "leader", "leader_id": None, "commit": 1,
              "applied": 1, "nodes": {}}
    fields.update(changes)
    return pack([1, CLUSTER, 19, *fields.values()])


@pytest.mark.parametrize(
    ("changes", "complaint"),
    [
        ({"node_id": ""}, "ClusterInfo.node_id must be a node id"),
        ({"term": None}, "ClusterInfo.term"),
        ({"role": ""}, "ClusterInfo.role"),
        ({"leader_id": 1}, "ClusterInfo.leader_id"),
        ({"commit": -1}, "ClusterInfo.commit"),
        ({"applied": False}, "ClusterInfo.applied"),
        ({"nodes": []}, "ClusterInfo.nodes must be a map"),
        ({"nodes": {1: {}}}, "ClusterInfo.nodes key must be a node id"),
        ({"nodes": {"n1": 1}}, r"ClusterInfo.nodes\['n1'\] must be a map"),
    ],
)
def test_a_bad_cluster_info_is_malformed(changes: dict[str, Any], complaint: str) -> None:
    with pytest.raises(Malformed, match=complaint):
        codec.decode_cluster_info(info_frame(**changes), CLUSTER)


# --- encoding: our own mistakes are EncodeError, never a frame the other side refuses ----------


@pytest.mark.parametrize(
    ("encode", "obj", "complaint"),
    [
        (codec.encode_request, Request(1, "c", "delete", {}), "request kind 'delete'"),
        (codec.encode_request, Request(0, "c", "status", {}), "req_id"),
        (codec.encode_request, Request(1, "", "status", {}), "client_id"),
        (codec.encode_request, Request(1, "c", "submit", {"cmd": {1, 2}}), "cannot encode Request"),
        (codec.encode_request, Request(1, "c", "submit", {1: 2}), "keys must be str"),
        (codec.encode_request, Request(1, "c", "submit", {"cmd": {(1, 2): 3}}), "map key that is an array"),
        (codec.encode_request, Request(1, "c", "submit", {"seq": 1 << 64}), "cannot encode Request"),
        (codec.encode_response, Response(1, True, object()), "cannot encode Response"),
        (codec.encode_response, Response(1, False, None, None), "ok false and no error"),
        (codec.encode_response, Response(1, True, None, ErrorInfo("x", "y")), "ok true and an error"),
        (codec.encode_response, Response(1, False, None, "oops"), "must be an ErrorInfo"),  # type: ignore[arg-type]
        (codec.encode_response, Response(1, False, None, ErrorInfo("", "y")), "error.code"),
        (codec.encode_response, Response(1, True, nested(65)), "nests deeper than 64"),
        (codec.encode_update, Update(1, 1, "kv", "c", 1, None, [1]), "events"),  # type: ignore[list-item]
        (codec.encode_update, Update(-1, 1, "kv", "c", 1, None, []), "Update.index"),
        (codec.encode_cluster_info, ClusterInfo("", 1, "leader", None, 0, 0, {}), "node_id"),
    ],
)
def test_encoding_what_the_protocol_cannot_carry_is_an_encode_error(
    encode: Any, obj: Any, complaint: str
) -> None:
    with pytest.raises(EncodeError, match=complaint):
        encode(CLUSTER, obj)


def test_a_cluster_id_must_be_a_str_to_encode() -> None:
    with pytest.raises(EncodeError, match="cluster id must be a str"):
        codec.encode_request(None, SUBMIT)  # type: ignore[arg-type]


def test_frame_types_are_distinct_small_ints() -> None:
    assert len({int(t) for t in FrameType}) == len(FrameType)
    assert all(0 < t < 128 for t in FrameType)  # one msgpack byte each


# --- issue 10 item 6: the req_id is echoed whenever it can be read --------------------


def test_a_body_with_an_ext_type_is_answered_to_its_req_id() -> None:
    frame = msgpack.packb([1, CLUSTER, 16, 42, "c-1", "submit",
                           {"cmd": msgpack.ExtType(5, b"ab")}], use_bin_type=True)
    with pytest.raises(Malformed, match="ext type") as info:
        codec.decode_request(frame, CLUSTER)
    assert info.value.req_id == 42
    assert codec.protocol_error_response(info.value).req_id == 42


def test_a_frame_too_large_is_answered_to_its_req_id() -> None:
    frame = msgpack.packb([1, CLUSTER, 16, 43, "c-1", "submit", {"cmd": b"x" * 5000}],
                          use_bin_type=True)
    with pytest.raises(FrameTooLarge) as info:
        codec.decode_request(frame, CLUSTER, max_frame=1000)
    assert info.value.req_id == 43
    truncated = frame[:200]  # the tail never arrived: the head still names the request
    with pytest.raises(Malformed) as cut:
        codec.decode_request(truncated, CLUSTER)
    assert cut.value.req_id == 43


def test_an_unknown_kind_is_told_apart_from_an_unknown_type_code() -> None:
    with pytest.raises(UnknownKind) as kind:
        codec.decode_request(request_frame(kind="frobnicate"), CLUSTER)
    with pytest.raises(UnknownType) as type_code:
        codec.decode_request(pack([1, CLUSTER, 42, 7, "c-1", "status", {}]), CLUSTER)
    assert (kind.value.code, type_code.value.code) == ("unknown_kind", "unknown_type")
    assert (kind.value.req_id, type_code.value.req_id) == (7, 7)
