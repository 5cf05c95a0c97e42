"""Rooms on real processes (issue 12): quick play, per-room topics, drop and reclaim,
nothing secret on the wire, and the Clone pattern per room across a leader kill."""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from pathlib import Path

from rooms_helpers_integration import (
    RawSub,
    ScriptedPlayer,
    rooms_clients,
    run_all_until,
    secret_from_disk,
    until_started,
)

from client.bots import Bot
from client.rooms import RoomsClient, RoomTableSession
from nodes.codec import decode_update
from nodes.local import LocalCluster
from nodes.rooms_feed import LIST_WIRE_TOPIC, room_topic

LIST_EVENTS = {"room_created", "room_row", "room_closed", "leaderboard"}


def test_quick_play_from_two_clients_lands_them_in_one_room_and_the_list_shows_it(
    make_cluster: Callable[..., LocalCluster],
) -> None:
    lc = make_cluster(3)
    with rooms_clients(lc, 3) as (ann, bob, watcher):
        first = until_started(ann, lambda: ann.quick_play("ann"))
        second = bob.wait(bob.quick_play("bob"))
        assert first["ok"] and second["ok"], (first, second)
        assert first["room"] == second["room"] and first["created"] and not second["created"]
        room = first["room"]

        def both_seen() -> bool:
            row = watcher.rooms.get(room)
            return row is not None and row["players"] == 2
        run_all_until([watcher, ann, bob], both_seen, 10, "the list showing two players")
        assert watcher.rooms[room]["leader"] in lc.cluster.ids(), watcher.rooms[room]
        run_all_until([ann, bob], lambda: ann.room and len(ann.room["table"]["players"]) == 2,
                      10, "ann's room view showing bob")
        assert set(ann.room["table"]["players"]) == {"ann", "bob"}
        assert ann.seat == {"room": room, "name": "ann", "token": first["token"]}


def test_a_room_subscriber_gets_only_its_room_and_the_list_topic_only_list_events(
    make_cluster: Callable[..., LocalCluster],
) -> None:
    lc = make_cluster(3)
    with rooms_clients(lc, 1) as (host,):
        until_started(host, lambda: host.create("warmup"))
        r1 = RawSub(lc, [room_topic("r1")])
        rooms = RawSub(lc, [LIST_WIRE_TOPIC])
        try:
            run_all_until([host], lambda: (r1.drain(), rooms.drain(), r1.heard_info
                                           and rooms.heard_info)[-1], 5, "both subscriptions")
            # r1 .. r12: room/r1/ must not catch room/r10/ .. room/r12/
            for i in range(2, 13):
                assert host.wait(host.create(f"room {i}"))["ok"]
            secret = host.wait(host.create("hidden", private=True))
            assert secret["ok"] and secret["code"], secret
            with rooms_clients(lc, 2) as (a, b):
                assert a.wait(a.join("ann", room="r1"))["ok"]
                assert b.wait(b.join("bob", room="r10"))["ok"]
                assert b.wait(b.leave())["ok"]
                assert a.wait(a.join("ann2", code=secret["code"]))["error"] == "in_room"

                def seen() -> bool:
                    r1.drain()
                    rooms.drain()
                    return any(e["type"] == "room_row" and e["room"] == "r10"
                               for u in rooms.updates() for e in u.events) and any(
                        e["type"] == "player_joined" for u in r1.updates() for e in u.events)
                run_all_until([a, b], seen, 10, "r1's join and r10's row")
            room_updates = r1.updates()
            assert room_updates and all(u.result["room"] == "r1" for u in room_updates)
            assert all(e["room"] == "r1" for u in room_updates for e in u.events), room_updates
            assert {t for t, _ in r1.frames} == {room_topic("r1")}
            list_events = [e for u in rooms.updates() for e in u.events]
            assert list_events and {e["type"] for e in list_events} <= LIST_EVENTS
            assert all(e.get("room") != secret["room"] for e in list_events), list_events
            assert all(e["row"]["leader"] in lc.cluster.ids() for e in list_events if "row" in e)
        finally:
            r1.close()
            rooms.close()


def test_a_dropped_client_reclaims_its_seat_and_points_with_the_token_from_its_file(
    make_cluster: Callable[..., LocalCluster], tmp_path: Path,
) -> None:
    lc = make_cluster(3)
    token_file = tmp_path / "state" / "seat.json"
    with rooms_clients(lc, 1) as (bob,):
        ann = RoomsClient(lc.cluster, token_file=token_file)
        try:
            made = until_started(ann, lambda: ann.create("duel", player="ann", rounds=1,
                                                         round_ms=20_000))
            assert made["ok"], made
            assert bob.wait(bob.join("bob", room=made["room"]))["ok"]
            assert ann.wait(ann.act("ready", ready=True))["ok"]
            assert bob.wait(bob.act("ready", ready=True))["ok"]
            assert ann.wait(ann.act("start"))["ok"]
            run_all_until([ann, bob], lambda: ann.room and ann.room["row"]["phase"] == "round",
                          10, "the round")
            target = ann.room["table"]["current_round"]["targets"][0]["id"]
            hit = ann.wait(ann.act("hit", round=1, target=target))
            assert hit["ok"] and hit["score"] == 1, hit
        finally:
            ann.close()  # a crash: no leave, no disconnect

        again = RoomsClient(lc.cluster, token_file=token_file)
        try:
            assert token_file.stat().st_mode & 0o777 == 0o600  # the token is the user's alone
            assert again.saved_seat()["name"] == "ann"
            back = again.wait(again.reclaim())
            assert back["ok"] and back["name"] == "ann" and back["score"] == 1, back
            assert back["token"] != made["token"]
            assert again.saved_seat()["token"] == back["token"]  # single use: kept anew
            stale = bob.wait(bob.link.submit("rooms", {"type": "reclaim", "room": made["room"],
                                                       "name": "ann", "token": made["token"]}))
            assert stale["error"] == "bad_token", stale
            run_all_until([again, bob], lambda: again.room is not None, 10, "the room view")
            assert again.room["table"]["scores"]["ann"] == 1
            assert again.room["table"]["players"]["ann"]["client_id"] == again.client_id
        finally:
            again.close()


def test_after_the_grace_period_the_token_is_refused_and_the_name_joins_as_new(
    make_cluster: Callable[..., LocalCluster],
) -> None:
    lc = make_cluster(3, room_grace_ms=1500)
    with rooms_clients(lc, 2) as (ann, watcher):
        made = until_started(ann, lambda: ann.create("short", player="ann"))
        assert made["ok"], made
        assert watcher.wait(watcher.join("zed", room=made["room"]))["ok"]
        gone = ann.wait(ann.disconnect())
        assert gone["ok"] and gone["until_ms"] > 0, gone
        run_all_until([watcher], lambda: watcher.room and "ann" not in
                      watcher.room["table"]["players"], 10, "ann's seat freed")
        late = watcher.link.submit("rooms", {"type": "reclaim", "room": made["room"],
                                             "name": "ann", "token": made["token"]})
        assert watcher.wait(late)["error"] == "bad_token"
        with rooms_clients(lc, 1) as (newcomer,):
            fresh = newcomer.wait(newcomer.join("ann", room=made["room"]))
            assert fresh["ok"] and fresh["name"] == "ann" and not fresh["host"], fresh
            assert fresh["token"] != made["token"]


def test_no_token_code_or_secret_reaches_any_subscriber_or_client_read(
    make_cluster: Callable[..., LocalCluster],
) -> None:
    lc = make_cluster(3)
    everything = RawSub(lc, [b""])
    secrets: set[str] = set()
    try:
        with rooms_clients(lc, 5) as (ann, bob, cat, dan, eve):
            run_all_until([ann], lambda: (everything.drain(), everything.heard_info)[-1], 5,
                          "the raw subscription")
            made = until_started(ann, lambda: ann.create("secret", private=True, player="ann"))
            secrets |= {made["code"], made["token"]}
            joined = bob.wait(bob.join("bob", code=made["code"]))
            quick = cat.wait(cat.quick_play("cat"))
            back = dan.wait(dan.reclaim(room=made["room"], name="bob", token=joined["token"]))
            assert joined["ok"] and quick["ok"] and back["ok"], (joined, quick, back)
            secrets |= {joined["token"], quick["token"], back["token"]}
            # a retried command is applied once and published again with its first result
            first = eve.wait(eve.quick_play("eve"))
            again = eve.wait(eve.link.call("submit", {"machine": "rooms", "seq": 1,
                                                      "cmd": {"type": "quick_play", "name": "eve"}}))
            assert again == first and first["ok"], (first, again)
            # commands sent together travel as one transport batch: one entry, many results
            out = eve.leave()
            into = eve.join("eve", code=made["code"])
            ping = eve.link.submit("rooms", {"type": "ping", "room": made["room"]})
            results = [eve.wait(c) for c in (out, into, ping)]
            assert all(r["ok"] for r in results) and "seq" not in into.body, results
            secrets |= {first["token"], results[1]["token"]}
            snap = ann.wait(ann.link.call("snapshot", {"machines": ["rooms"]}))
            state = ann.wait(ann.link.call("read", {"machine": "rooms", "query": {"op": "state"}}))
            room = ann.wait(ann.link.call("read", {"machine": "rooms",
                                                   "query": {"op": "room", "room": made["room"]}}))
            reads = repr([snap, state, room]).encode()
            assert "secret" not in snap["machines"]["rooms"], snap
            assert "rooms" in snap["machines"] and state["ok"] and room["ok"], (state, room)

            def all_applied() -> bool:
                everything.drain()
                return any(e["type"] == "seat_reclaimed" for u in everything.updates()
                           if u.machine == "rooms" for e in u.events)
            run_all_until([ann, bob, cat, dan, eve], all_applied, 10, "the reclaim published")
            room_wire = room_topic(made["room"])
            joins = [e["name"] for t, p in everything.frames if t == room_wire
                     for e in decode_update(p, lc.cluster.cluster_id).events
                     if e["type"] == "player_joined"]
            # every node publishes; the batch's join is on the room's stream too
            assert set(joins) == {"ann", "bob", "eve"}, joins
    finally:
        everything.close()
    lc.stop_all()
    secrets.add(secret_from_disk(lc.cluster.data_dir("n1")))
    wire = b"".join(t + p for t, p in everything.frames)
    assert len(everything.frames) > 10
    for value in secrets:
        assert value.encode() not in wire, f"{value} was published"
        assert value.encode() not in reads, f"{value} was readable"


def test_a_room_view_stays_gapless_when_its_node_is_killed_mid_game(
    make_cluster: Callable[..., LocalCluster],
) -> None:
    """The subscribed node dies while updates flow: the client moves to another node
    and its view equals the room read from every live node afterwards."""
    lc = make_cluster(3)
    with rooms_clients(lc, 2) as (ann, bob):
        made = until_started(ann, lambda: ann.create("fail", player="ann", round_ms=3000))
        assert bob.wait(bob.join("bob", room=made["room"]))["ok"]
        run_all_until([ann, bob], lambda: bob.synced and bob.room, 10, "bob's view")
        victim = bob.following
        assert ann.wait(ann.act("ready", ready=True))["ok"]
        lc.kill(victim)
        for _ in range(5):
            ann.wait(ann.act("ping"))
        assert bob.wait(bob.act("ready", ready=True))["ok"]
        run_all_until([ann, bob], lambda: bob.following != victim and bob.synced, 10,
                      "bob resubscribed elsewhere")
        expected_ready = {"ann": True, "bob": True}

        def bob_sees_both_ready() -> bool:
            players = bob.room["table"]["players"] if bob.room else {}
            return {n: p["ready"] for n, p in players.items()} == expected_ready
        run_all_until([ann, bob], bob_sees_both_ready, 10, "bob's view after the kill")
        live = [n for n in lc.cluster.ids() if n != victim]
        for node in live:
            def read_on(node: str = node) -> dict:
                return bob.wait(bob.link.call("read", {"machine": "rooms", "linearizable": False,
                                                       "query": {"op": "room", "room": made["room"]}},
                                              node=node))
            run_all_until([bob], lambda node=node: read_on(node)["room"]["table"]
                          == bob.room["table"], 10, f"{node} agreeing with bob's view")


def test_twenty_rooms_of_bots_finish_with_identical_scores_everywhere_after_a_leader_kill(
    make_cluster: Callable[..., LocalCluster],
) -> None:
    """Issue 12's end-to-end check: 20 rooms of two bots each, kill -9 of the leader
    mid-game; every room finishes, and its scores are the same on every node (the
    killed one restarted) and in both bots' views; no acknowledged hit is lost."""
    lc = make_cluster(3)
    rooms_count = 20
    with rooms_clients(lc, 2 * rooms_count) as clients:
        hosts, guests = clients[:rooms_count], clients[rooms_count:]
        room_ids = []
        for i, (host, guest) in enumerate(zip(hosts, guests, strict=True)):
            made = until_started(host, lambda host=host, i=i: host.create(
                f"match {i}", player=f"h{i}", max_players=2, rounds=1, round_ms=2500))
            assert made["ok"], made
            assert guest.wait(guest.join(f"g{i}", room=made["room"]))["ok"]
            room_ids.append(made["room"])
        players = [ScriptedPlayer(h, True) for h in hosts] + [ScriptedPlayer(g, False) for g in guests]

        def step() -> None:
            for p in players:
                p.step()

        def phases() -> set[str]:
            return {h.room["row"]["phase"] if h.room else "none" for h in hosts}

        leader = hosts[0].link.nodes[hosts[0].following].info.leader_id
        assert leader in lc.cluster.ids()
        for rc in clients[::2]:  # half the bots follow the node about to die
            rc.follow(leader)
        run_all_until(clients, lambda: all(rc.synced for rc in clients), 10,
                      "every bot following again")
        run_all_until(clients, lambda: phases() <= {"countdown", "round"}, 15,
                      "every room's game started", step)
        lc.kill(leader)
        killed_at = time.monotonic()
        run_all_until(clients, lambda: phases() == {"game_over"}, 20,
                      f"every room over after killing {leader}", step)
        finished_s = time.monotonic() - killed_at
        lc.start(leader)

        def view_scores(rc: RoomsClient) -> dict:
            return rc.room["table"]["scores"] if rc.room else {}

        run_all_until(clients, lambda: all(
            view_scores(h) == view_scores(g) for h, g in zip(hosts, guests, strict=True)), 10,
            "both bots of each room agreeing", step)
        reader = hosts[0]
        for node in lc.cluster.ids():
            for room, host in zip(room_ids, hosts, strict=True):
                def on_node(node: str = node, room: str = room) -> dict:
                    call = reader.link.call("read", {"machine": "rooms", "linearizable": False,
                                                     "query": {"op": "room", "room": room}}, node=node)
                    got = reader.wait(call)
                    return got["room"]["table"]["scores"] if got.get("ok") else {}
                run_all_until([reader], lambda h=host, f=on_node: f() == view_scores(h), 10,
                              f"{node} holding {room}'s final scores")
        for p in players:
            name = p.rc.seat["name"]
            assert p.hits_acked <= view_scores(p.rc)[name], (name, p.hits_acked)
        total = sum(sum(view_scores(h).values()) for h in hosts)
        assert total > 0 and finished_s < 20
        assert all(rc.following != leader for rc in clients[::2])


def test_a_room_view_catches_updates_lost_in_a_publish_socket_rebuild(
    make_cluster: Callable[..., LocalCluster],
) -> None:
    """A hostile subscriber makes the node rebuild its publish socket (issue 11's
    bound): what the node publishes before the client's SUB is back is lost; the
    next update's prev shows it, and the client reads its room again."""
    lc = make_cluster(3)
    with rooms_clients(lc, 2) as (ann, bob):
        made = until_started(ann, lambda: ann.create("rebuilt", player="ann"))
        assert bob.wait(bob.join("bob", room=made["room"]))["ok"]
        run_all_until([ann, bob], lambda: bob.synced and bob.room, 10, "bob's view")
        node = bob.following

        def resets() -> int:
            status = ann.wait(ann.link.call("status", {}, node=node))
            return status["counters"]["publish_resets"]

        ready = False
        deadline = time.monotonic() + 15
        while bob._room.resyncs == 0:
            assert time.monotonic() < deadline, "no rebuild ever cost bob an update"
            before = resets()
            hostile = RawSub(lc, [b"%03d" % i + b"x" * 497 for i in range(40)], nodes=[node])
            try:
                run_all_until([ann], lambda before=before: resets() > before, 5, "a rebuild")
            finally:
                hostile.close()
            ready = not ready  # published at once, while bob's SUB reconnects
            assert ann.wait(ann.act("ready", ready=ready))["ok"]
            acked = time.monotonic()
            # bob hears cluster info again: its SUB is back with every subscription
            run_all_until([ann, bob], lambda acked=acked: bob._sub_heard > acked, 5,
                          "bob's SUB reconnected")
            ready = not ready
            assert ann.wait(ann.act("ready", ready=ready))["ok"]
            run_all_until([ann, bob], lambda ready=ready: bob._room.resyncs > 0 or bob.room[
                "table"]["players"]["ann"]["ready"] == ready, 5, "bob seeing ann's last change")
        run_all_until([ann, bob], lambda: bob.synced and bob.room["table"]["players"]["ann"][
            "ready"] == ready, 10, "bob's view after its re-read")
        read = bob.wait(bob.link.call("read", {"machine": "rooms",
                                               "query": {"op": "room", "room": made["room"]}}))
        assert read["room"]["table"] == bob.room["table"]


def test_quick_play_and_the_room_streams_work_on_a_curve_cluster(
    make_cluster: Callable[..., LocalCluster],
) -> None:
    lc = make_cluster(3, secure=True)
    with rooms_clients(lc, 2) as (ann, bob):
        first = until_started(ann, lambda: ann.quick_play("ann"))
        second = bob.wait(bob.quick_play("bob"))
        assert first["ok"] and second["ok"] and first["room"] == second["room"]
        run_all_until([ann, bob], lambda: ann.synced and ann.room and len(
            ann.room["table"]["players"]) == 2 and ann.rooms.get(first["room"], {}).get(
            "players") == 2, 10, "ann's room and list views over CURVE")


def test_todays_bots_play_a_whole_game_in_a_room_through_room_table_sessions(
    make_cluster: Callable[..., LocalCluster],
) -> None:
    lc = make_cluster(3)
    with rooms_clients(lc, 2, bot=True) as clients:
        made = until_started(clients[0], lambda: clients[0].create("duel", rounds=1))
        bots = [Bot(f"bot{i}", RoomTableSession(rc, room=made["room"]), games_to_play=1,
                    lobby_wait_s=0.0, rng=random.Random(i)) for i, rc in enumerate(clients)]

        def step() -> None:
            for b in bots:
                b.step()

        def progress() -> str:
            return f"one game each; bots {[(b.games_seen, b.hits_won) for b in bots]}, " \
                   f"seats {[rc.seat for rc in clients]}, errors {[rc.last_error for rc in clients]}"
        try:
            run_all_until(clients, lambda: all(b.done() for b in bots), 20, "one game", step)
        except AssertionError as e:
            raise AssertionError(progress()) from e
        assert {rc.seat["room"] for rc in clients} == {made["room"]}
        scores = clients[0].room["table"]["scores"]
        assert sum(scores.values()) == sum(b.hits_won for b in bots) > 0, scores
