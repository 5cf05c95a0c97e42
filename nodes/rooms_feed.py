"""What a node publishes of the rooms machine (``game.rooms``), and what it keeps back.

The server knows no game: the composer (``nodes.node_main``) hands it a feed per
machine that needs one (``NodeServer(..., feeds={"rooms": RoomsFeed()})``).
A feed decides four things, all on the node, never in the deterministic machine:

- what the firehose (topic ``u``) carries of an applied rooms entry: the result
  without ``token`` and ``code`` (only the submitter's own reply carries them),
  the events, and no command at all (clients keep rooms from ``sync`` events,
  so no ``set_secret``, ``reclaim`` token or ``join`` code is ever published);
  the same for each rooms item of a transport batch (the server applies it);
- the per-room streams: each event goes on the topics ``game.rooms.topics``
  names, sent as the wire topic ``room/<id>/`` (the trailing slash keeps a
  subscriber of ``room/r1/`` out of ``room/r10/``) or ``rooms`` (the room list).
  Each stream update's ``result`` is ``{"room": id or None, "prev": P}``: ``P``
  is the index of the previous entry this node published on that topic, None
  when the node does not know it (it started from a snapshot since). A client
  holding the stream at index ``V`` applies an update of index ``I > V`` when
  ``P`` is not None and ``P <= V``; otherwise it missed something and reads the
  room (or the list) again. That makes a room's stream gapless across failovers
  and publish-socket rebuilds without numbering anything in the replicated state;
- what a client's ``snapshot`` request gets: ``public_snapshot()``;
- the ``leader`` of every listing row (events and reads): the node id leading
  the group (one Raft group today).
"""

from __future__ import annotations

from typing import Any

from game.rooms import LIST_TOPIC, topics

PRIVATE_RESULT_FIELDS = ("token", "code")
ROOM_TOPIC_PREFIX = b"room/"
LIST_WIRE_TOPIC = LIST_TOPIC.encode()
ROOM_ID_MAX_BYTES = 40  # a subscription longer than room/<this>/ is refused


def room_topic(room_id: str) -> bytes:
    """The wire topic of one room's stream."""
    return ROOM_TOPIC_PREFIX + room_id.encode() + b"/"


def public_result(result: Any) -> Any:
    """A rooms result as anyone but its submitter may see it."""
    if isinstance(result, dict) and any(k in result for k in PRIVATE_RESULT_FIELDS):
        return {k: v for k, v in result.items() if k not in PRIVATE_RESULT_FIELDS}
    return result


def _with_leader(event: dict[str, Any], leader: str | None) -> dict[str, Any]:
    row = event.get("row")
    if isinstance(row, dict):
        return {**event, "row": {**row, "leader": leader}}
    return event


def fill_leader(value: Any, leader: str | None) -> Any:
    """A rooms read's answer with ``leader`` set in its rows (``rooms`` and ``room``)."""
    if not isinstance(value, dict) or not value.get("ok"):
        return value
    if isinstance(value.get("rooms"), list):
        return {**value, "rooms": [{**row, "leader": leader} for row in value["rooms"]]}
    room = value.get("room")
    if isinstance(room, dict) and isinstance(room.get("row"), dict):
        return {**value, "room": {**room, "row": {**room["row"], "leader": leader}}}
    return value


class RoomsFeed:
    """The rooms machine's publishing policy on one node (see the module docstring)."""

    # subscriptions the publish socket accepts besides prefixes of its fixed topics
    topic_prefixes = (ROOM_TOPIC_PREFIX,)
    topic_max_bytes = len(ROOM_TOPIC_PREFIX) + ROOM_ID_MAX_BYTES + 1
    fixed_topics = (LIST_WIRE_TOPIC,)

    def __init__(self) -> None:
        self.prev: dict[str, int] = {}  # logical topic -> index last published on it

    def reset(self) -> None:
        """The machine was restored from a snapshot: what came before is unknown."""
        self.prev.clear()

    @staticmethod
    def public_result(result: Any) -> Any:
        """A result as the firehose shows it (the submitter's reply keeps it whole)."""
        return public_result(result)

    @staticmethod
    def public_event(event: dict, leader: str | None) -> dict:
        """An event as published: its listing row, if any, names the leader."""
        return _with_leader(event, leader)

    def streams(self, index: int, events: list[dict],
                leader: str | None) -> list[tuple[bytes, dict, list[dict]]]:
        """(wire topic, result, events) for each stream this entry touched, in first-event order.

        Called for every applied rooms entry (watched or not), so that ``prev`` is
        right whenever someone subscribes."""
        groups: dict[str, list[dict]] = {}
        for event in events:
            shown = _with_leader(event, leader)
            for topic in topics(event):
                groups.setdefault(topic, []).append(shown)
        out = []
        for topic, group in groups.items():
            prev = self.prev.get(topic)
            self.prev[topic] = index
            if topic == LIST_TOPIC:
                out.append((LIST_WIRE_TOPIC, {"room": None, "prev": prev}, group))
            else:
                room_id = topic.split("/", 1)[1]
                out.append((room_topic(room_id), {"room": room_id, "prev": prev}, group))
                if any(e["type"] == "room_closed" for e in group):
                    del self.prev[topic]  # ids are never reused: forget it
        return out

    @staticmethod
    def snapshot(machine: Any) -> Any:
        """What a client's ``snapshot`` request gets of the machine."""
        return machine.public_snapshot()

    @staticmethod
    def query(value: Any, leader: str | None) -> Any:
        return fill_leader(value, leader)
