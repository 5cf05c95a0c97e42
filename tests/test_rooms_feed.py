"""What a node publishes of the rooms machine (nodes.rooms_feed) and which subscriptions
its publish socket takes for the per-room topics (nodes.transport.Publisher)."""

from __future__ import annotations

from pathlib import Path

import pytest
import zmq

from game.rooms_machine import RoomsMachine
from nodes.clusterfile import ClusterFileError, load
from nodes.local import free_ports, make_cluster_file
from nodes.rooms_feed import LIST_WIRE_TOPIC, RoomsFeed, public_result, room_topic
from nodes.transport import Publisher


class _Entry:
    def __init__(self, index: int, client_id: str, ms: int = 1_000) -> None:
        self.index, self.client_id, self.timestamp_ms = index, client_id, ms


def test_results_lose_token_and_code_and_commands_are_not_published() -> None:
    joined = {"ok": True, "room": "r1", "name": "ann", "token": "t" * 32, "code": "ABCDEF"}
    assert public_result(joined) == {"ok": True, "room": "r1", "name": "ann"}
    assert public_result({"ok": False, "error": "x"}) == {"ok": False, "error": "x"}
    assert "token" not in RoomsFeed.public_result(joined)
    row_event = {"type": "room_row", "room": "r1", "row": {"room": "r1", "leader": None}}
    assert RoomsFeed.public_event(row_event, "n1")["row"]["leader"] == "n1"
    assert row_event["row"]["leader"] is None  # a copy: the machine's event is untouched


def test_streams_chain_prev_per_topic_and_keep_r1_apart_from_r10() -> None:
    m = RoomsMachine(secret="s" * 16)
    feed = RoomsFeed()
    published: dict[bytes, list[dict]] = {}
    for index in range(1, 12):  # rooms r1 .. r11
        _, events = m.apply({"type": "create", "name": f"room {index}"}, _Entry(index, "c"))
        for topic, result, evs in feed.streams(index, events, "n2"):
            published.setdefault(topic, []).append({"result": result, "events": evs})
    _, events = m.apply({"type": "join", "room": "r1", "name": "ann"}, _Entry(12, "a"))
    for topic, result, evs in feed.streams(12, events, "n2"):
        published.setdefault(topic, []).append({"result": result, "events": evs})

    assert room_topic("r1") == b"room/r1/" and not room_topic("r10").startswith(room_topic("r1"))
    r1 = published[room_topic("r1")]
    assert [u["result"] for u in r1] == [{"room": "r1", "prev": None}, {"room": "r1", "prev": 1}]
    assert all(e["room"] == "r1" for u in r1 for e in u["events"])
    lists = published[LIST_WIRE_TOPIC]
    assert [u["result"]["prev"] for u in lists] == [None, *range(1, 12)]
    assert {e["type"] for u in lists for e in u["events"]} == {"room_created", "room_row"}
    assert all(e["row"]["leader"] == "n2" for u in lists for e in u["events"])
    assert m.state["rooms"]["r1"]["table"]  # the machine's own rows are untouched
    assert m.query({"op": "rooms"})["rooms"][0]["leader"] is None

    feed.reset()  # after a snapshot install: the previous index is unknown again
    _, events = m.apply({"type": "leave", "room": "r1"}, _Entry(13, "a"))
    assert [r["prev"] for _, r, _ in feed.streams(13, events, "n2")] == [None, None]


def test_a_private_room_never_reaches_the_list_stream() -> None:
    m = RoomsMachine(secret="s" * 16)
    _, events = m.apply({"type": "create", "name": "hidden", "private": True}, _Entry(1, "c"))
    topics = [t for t, _, _ in RoomsFeed().streams(1, events, "n1")]
    assert topics == [room_topic("r1")]


def test_reads_get_the_leader_filled_in_their_rows() -> None:
    m = RoomsMachine(secret="s" * 16)
    m.apply({"type": "create", "name": "one"}, _Entry(1, "c"))
    assert RoomsFeed.query(m.query({"op": "rooms"}), "n3")["rooms"][0]["leader"] == "n3"
    assert RoomsFeed.query(m.query({"op": "room", "room": "r1"}), "n3")["room"]["row"]["leader"] \
        == "n3"
    assert "secret" not in RoomsFeed.snapshot(m)


def test_the_publisher_applies_room_topics_and_refuses_other_and_oversized_ones() -> None:
    ctx = zmq.Context.instance()
    port = free_ports(1)[0]
    feed = RoomsFeed()
    pub = Publisher(ctx, f"tcp://127.0.0.1:{port}", (b"u", b"c", *feed.fixed_topics),
                    topic_prefixes=feed.topic_prefixes, topic_max_bytes=feed.topic_max_bytes)
    try:
        assert pub.accepts(b"room/r1/") and pub.accepts(b"rooms") and pub.accepts(b"")
        assert pub.accepts(b"room/") and pub.accepts(b"roo")
        assert not pub.accepts(b"room/" + b"x" * 60) and not pub.accepts(b"zzz")
        pub.refs[b"room/r1/"] += 1
        assert pub.watched(b"room/r1/") and not pub.watched(b"room/r10/")
        assert not pub.watched(LIST_WIRE_TOPIC)
        pub.refs[b""] += 1
        assert pub.watched(LIST_WIRE_TOPIC)
    finally:
        pub.close()


def test_the_cluster_file_carries_the_rooms_grace_and_close_times(tmp_path: Path) -> None:
    cf = make_cluster_file(tmp_path, 1, room_grace_ms=1500, room_close_ms=4000)
    assert (cf.room_grace_ms, cf.room_close_ms) == (1500, 4000)
    path = tmp_path / "cluster.toml"
    text = path.read_text()
    assert "[rooms]" in text
    path.write_text(text.replace("grace_ms = 1500", "grace_ms = 0"))
    with pytest.raises(ClusterFileError, match="rooms.grace_ms"):
        load(path)
    assert make_cluster_file(tmp_path / "d", 1).room_grace_ms == 30_000
