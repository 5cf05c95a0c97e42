"""``close``: the host (or the server's admin, an ``@`` client id) closes a room at once."""

from __future__ import annotations

from rooms_helpers import RoomsLog


def test_only_the_host_or_an_admin_closes_a_room_and_its_seats_are_freed() -> None:
    log = RoomsLog()
    made = log.do("a", "create", name="one", player="ann", private=True)
    log.do("b", "join", code=made["code"], name="bob")
    refused = log.do("b", "close", room=made["room"])
    assert refused["error"] == "not_host" and made["room"] in log.state["rooms"]
    assert log.do("c", "close", room=made["room"])["error"] == "not_host"  # no seat at all

    closed = log.do("a", "close", room=made["room"])
    assert closed == {"ok": True, "room": made["room"]}
    assert log.events == [{"type": "room_closed", "room": made["room"], "listed": False,
                           "reason": "closed"}]
    assert log.state["rooms"] == {} and log.state["clients"] == {} and log.state["codes"] == {}
    assert log.do("b", "quick_play", name="bob")["ok"]  # free to sit elsewhere

    other = log.do("z", "create", name="two")
    assert log.do("@admin/n1/3", "close", room=other["room"])["ok"]
    assert log.do("@admin/n1/3", "close", room=other["room"])["error"] == "no_such_room"
