"""The rooms machine as registered in a node process (nodes/node_main.py), end to end:
the leader commits the secret, a seat is taken, the leader is killed, and another
session reclaims the seat with its token from the new leader."""

from __future__ import annotations

from pathlib import Path

from client.api import Client, wait_until
from nodes.clusterfile import Timing
from nodes.local import LocalCluster


def _until_accepted(client: Client, command: dict) -> dict:
    """Submit until the rooms are set up (the first leader commits the secret at once)."""

    def attempt() -> dict | None:
        result = client.submit("rooms", command)
        return None if result.get("error") == "rooms_starting" else result

    return wait_until(attempt, 10, f"rooms accepting {command['type']}")


def test_a_seat_taken_on_one_leader_is_reclaimed_with_its_token_after_the_leader_dies(
    tmp_path: Path,
) -> None:
    lc = LocalCluster.create(tmp_path / "cluster", 3, timing=Timing(election_ms=(150.0, 300.0)))
    ann, again = Client(lc.cluster), Client(lc.cluster)
    try:
        lc.start_all()
        seat = _until_accepted(ann, {"type": "quick_play", "name": "ann"})
        assert seat["ok"] and seat["room"] == "r1", seat
        old = ann.leader(5.0)
        assert old is not None
        lc.kill(old)

        back = again.submit(
            "rooms", {"type": "reclaim", "room": "r1", "name": "ann", "token": seat["token"]}
        )
        assert back["ok"] and back["name"] == "ann" and back["token"] != seat["token"], back
        who = {"op": "seat_of", "client_id": again.link.client_id}

        def seat_on(node: str) -> object:
            call = again.link.wait(
                again.link.call(
                    "read", {"machine": "rooms", "query": who, "linearizable": False}, node=node
                )
            )
            return call.result.get("room"), call.result.get("name")

        for node in [n for n in lc.cluster.ids() if n != old]:
            wait_until(
                lambda node=node: seat_on(node) == ("r1", "ann"), 5, f"{node} applying the reclaim"
            )
    finally:
        ann.close()
        again.close()
        lc.kill_all()
