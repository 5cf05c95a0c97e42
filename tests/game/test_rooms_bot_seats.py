"""A seat taken as a bot is a bot at the room's table too, so today's table rules
about bots hold in every room: a person who joins a room a bot hosts becomes host
(``scripts/play``: a person hosts its windows' room), and today's bots, which
start games only at a table without people, start them in a room of bots."""

from __future__ import annotations

from rooms_helpers import RoomsLog


def test_a_person_joining_a_room_a_bot_hosts_becomes_host_and_bots_stay_bots() -> None:
    log = RoomsLog()
    made = log.do("b1", "quick_play", name="robo", bot=True)
    table = log.table(made["room"])
    assert table["players"]["robo"]["bot"] is True and table["game_state"]["host"] == "robo"
    person = log.do("p1", "quick_play", name="ann")
    assert person["room"] == made["room"] and person["host"], person
    assert log.table(made["room"])["players"]["ann"]["bot"] is False
