"""Rooms at scale: many active rooms, many idle ones, and a leader killed mid-game.

``arena bench rooms`` (or ``python -m nodes.bench rooms``) on real node processes
(3, durable), with the bots of ``client.botfarm`` in this process (one poll loop):

1. **active**: K rooms with 4 bots each at human pace (``human``: think 0.5-1 s,
   then hit), each room one long game (20 rounds). Over ``seconds``:
   hit -> broadcast latency p50/p99 (from sending a hit to seeing its ``sync``
   record on the room's stream, at the node the farm follows), committed actions/s
   (commands answered: hits, refused hits, pings...), accepted hits/s, CPU per
   node (share of one core, from /proc), memory per room (RSS growth of each node
   since before the rooms, divided by K: it includes the 4K client sessions and
   the log kept between snapshots). Beside them, to read the latency against: a
   hit's answer time, the farm's own CPU, the load average, and the fsync of 128
   bytes on the same disk in the same run (a hit waits for two in a row).
2. **kill**: ``kill -9`` of the leader mid-game. Per room, the time until a
   command of that room commits again, counted from the kill or from the room's
   first command after it, whichever is later (a room in its intermission sends
   nothing for a few seconds: that wait is the game's, not the cluster's);
   p50/p99/max over the rooms. Answers the killed leader sent before it died
   (read by the bots after the kill) do not count. Then the bots stop, the killed
   node is restarted and catches up, and **points lost** are counted: for every bot, its
   acknowledged accepted hits in its room's game minus its score in that game as
   read from every node (0 is the target), plus rooms whose scores, game or
   players differ between nodes (read three times: the leader's clock may still
   end a round between two reads).
   Beside the latency: each process's share of the window spent waiting for a
   CPU (``/proc/<pid>/task/*/schedstat``), which on a shared machine is where a
   tail comes from.
3. **idle**: a fresh cluster with N open rooms nobody is in (``close_ms`` set
   high so they stay open): CPU per node over ``idle_seconds``, memory per room.

Targets (issue 12, 2 cores, 3 nodes): 200 active rooms with p99 under 50 ms;
2,000 idle rooms under 5% of a core per node; every room commits again within
1 s (p99) after the kill; 0 points lost. ``--quick`` is a smoke run (a test),
not a measurement.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from ..clusterfile import Timing
from ..local import LocalCluster
from .stats import percentile

TARGETS = {"active_rooms": 200, "p99_ms": 50.0, "idle_rooms": 2000, "idle_core_pct": 5.0,
           "recovery_p99_ms": 1000.0, "points_lost": 0}
ROOM_SETTINGS = {"rounds": 20, "round_ms": 20_000, "max_players": 4}
CLK_TCK = os.sysconf("SC_CLK_TCK")


def _say(msg: str) -> None:
    print(f"bench rooms: {msg}", file=sys.stderr, flush=True)


def _cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def _rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def _pids(lc: LocalCluster) -> dict[str, int]:
    return {nid: pid for nid in lc.cluster.ids() if (pid := lc.pid(nid)) is not None}


def _runq_wait_s(pid: int) -> float:
    """Seconds the process's threads spent runnable but waiting for a CPU (schedstat)."""
    total = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            total += int((task / "schedstat").read_text().split()[1])
        except (OSError, IndexError, ValueError):
            continue
    return total / 1e9


class _CpuWindow:
    """CPU used, and time spent waiting for a CPU, per process over a window."""

    def __init__(self, lc: LocalCluster) -> None:
        self.pids = {**_pids(lc), "bots": os.getpid()}
        self.t0 = time.monotonic()
        self.cpu0 = {nid: _cpu_s(pid) for nid, pid in self.pids.items()}
        self.wait0 = {nid: _runq_wait_s(pid) for nid, pid in self.pids.items()}

    def core_pct(self) -> dict[str, float]:
        span = time.monotonic() - self.t0
        return {nid: round(100 * (_cpu_s(pid) - self.cpu0[nid]) / span, 1)
                for nid, pid in self.pids.items() if nid != "bots"}

    def waiting_pct(self) -> dict[str, float]:
        """Share of the window each process (the bots' too) waited for a CPU."""
        span = time.monotonic() - self.t0
        return {nid: round(100 * (_runq_wait_s(pid) - self.wait0[nid]) / span, 1)
                for nid, pid in self.pids.items()}


def _stats(samples: list[float]) -> dict[str, float | None]:
    s = sorted(samples)
    if not s:
        return {"n": 0, "p50": None, "p99": None, "max": None}
    return {"n": len(s), "p50": round(percentile(s, 50), 1), "p99": round(percentile(s, 99), 1),
            "max": round(s[-1], 1)}


def _cluster(directory: Path) -> LocalCluster:
    lc = LocalCluster.create(directory, 3, timing=Timing(election_ms=(150.0, 300.0)),
                             room_close_ms=3_600_000, room_grace_ms=600_000)
    lc.start_all()
    return lc


def _leader(lc: LocalCluster, timeout: float = 15.0) -> str:
    from client.api import Client

    with Client(lc.cluster) as c:
        return c.wait_for_leader(timeout)


def _turn_until(farm: Any, cond: Any, timeout: float, what: str) -> None:
    end = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > end:
            raise TimeoutError(f"timed out after {timeout:g} s waiting for {what}: "
                               f"{farm.summary_line()}; sent {dict(farm.stats.sent)}, "
                               f"refused {dict(farm.stats.refused)}")
        farm.turn(5)


# --- 1 and 2: active rooms, then the leader killed ---------------------------------------------


def run_active(directory: Path, rooms: int, seconds: float, after_kill_s: float,
               seed: int) -> dict[str, Any]:
    from client.botfarm import BotFarm

    lc = _cluster(directory)
    farm = None
    try:
        _leader(lc)
        rss0 = {nid: _rss_kb(pid) for nid, pid in _pids(lc).items()}
        farm = BotFarm(lc.cluster, 4 * rooms, rooms, seed=seed, strategy="human", games=1,
                       room_settings=ROOM_SETTINGS, lobby_wait_s=0.5)
        _say(f"{rooms} rooms, {4 * rooms} bots: seating")
        _turn_until(farm, lambda: farm.seated_count() == 4 * rooms, 60 + rooms / 5,
                    "every bot seated")
        _say("waiting for every room's game")
        in_game = lambda: sum(  # noqa: E731
            1 for r in farm.by_room if (v := farm.feeds.view(r)) is not None
            and v["table"]["game_state"]["game_number"] >= 1)
        _turn_until(farm, lambda: in_game() == rooms, 60, "a game in every room")
        _turn_until(farm, lambda: farm.stats.hits > 0, 30, "a first hit")
        farm.stats.latencies_ms.clear()
        farm.stats.ack_ms.clear()
        acked0, hits0 = farm.stats.acked, farm.stats.hits
        cpu = _CpuWindow(lc)
        own0 = time.process_time()
        t0 = time.monotonic()
        _say(f"measuring {seconds:g} s")
        farm.run(duration=seconds)
        span = time.monotonic() - t0
        core_pct = cpu.core_pct()
        waiting_pct = cpu.waiting_pct()
        farm_pct = round(100 * (time.process_time() - own0) / span, 1)
        rss = {nid: _rss_kb(pid) for nid, pid in _pids(lc).items()}
        active = {
            "rooms": rooms, "bots": 4 * rooms, "seconds": round(span, 2),
            "hit_broadcast_ms": _stats(farm.stats.latencies_ms),
            "hit_answer_ms": _stats(farm.stats.ack_ms),
            "farm_cpu_core_pct": farm_pct,
            "waiting_for_cpu_pct": waiting_pct,
            "nice": os.nice(0),
            "load_avg": Path("/proc/loadavg").read_text().split()[:3],
            "committed_actions_per_s": round((farm.stats.acked - acked0) / span, 1),
            "hits_per_s": round((farm.stats.hits - hits0) / span, 1),
            "cpu_core_pct": core_pct,
            "memory_kb_per_room": {nid: round((rss[nid] - rss0[nid]) / rooms, 1) for nid in rss},
            "rss_mb": {nid: round(rss[nid] / 1024, 1) for nid in rss},
            "link_failovers": farm.link.failovers,
        }
        kill = _kill_leader(lc, farm, after_kill_s)
        return {"active": active, "kill": kill}
    finally:
        if farm is not None:
            farm.close()
        lc.kill_all()


def _kill_leader(lc: LocalCluster, farm: Any, after_kill_s: float) -> dict[str, Any]:
    leader = _leader(lc)
    recovered: dict[str, float] = {}
    since_kill: dict[str, float] = {}
    killed_at = [0.0]

    def on_ack(session: Any, call: Any) -> None:
        # an answer of the killed leader read after the kill was committed before it
        if not killed_at[0] or session.room in recovered or call.node == leader:
            return
        now = time.monotonic()
        if now > killed_at[0]:
            recovered[session.room] = (now - max(killed_at[0], call.created_at)) * 1000
            since_kill[session.room] = (now - killed_at[0]) * 1000

    farm.on_ack = on_ack
    failovers0 = farm.link.failovers
    _say(f"kill -9 of the leader {leader}")
    killed_at[0] = time.monotonic()
    lc.kill(leader)
    rooms = set(farm.by_room)
    try:
        _turn_until(farm, lambda: set(recovered) >= rooms, max(after_kill_s, 15.0),
                    "every room to commit again")
    except TimeoutError as e:
        _say(str(e))
    end = time.monotonic() + after_kill_s
    while time.monotonic() < end:
        farm.turn(5)
    farm.acting = False
    _say("bots stopped; restarting the killed node and comparing scores on every node")
    _turn_until(farm, lambda: not any(c.kind == "submit" for c in farm.link.inflight.values()),
                30, "the bots' last answers")
    lc.restart(leader)
    lost, mismatched, unchecked = _points_lost(lc, farm)
    return {
        "killed": leader, "rooms": len(rooms), "rooms_recovered": len(recovered),
        "recovery_ms": _stats(list(recovered.values())),
        "since_kill_ms": _stats(list(since_kill.values())),
        "first_commit_after_kill_ms": round(min(since_kill.values()), 1) if since_kill else None,
        "points_lost": lost, "rooms_differing_between_nodes": mismatched,
        "bots_unchecked": unchecked, "link_failovers": farm.link.failovers - failovers0,
    }


def _points_lost(lc: LocalCluster, farm: Any) -> tuple[int, int, int]:
    """(points lost, rooms whose table differs between nodes, bots not checkable)."""
    from client.api import Client

    with Client(lc.cluster) as c:
        def applied() -> dict[str, int]:
            out = {}
            for nid in lc.cluster.ids():
                s = c.status(nid, timeout=0.5)
                if s is not None:
                    out[nid] = s["applied"]
            return out

        # every node, the restarted one too, has applied the same entries
        from client.api import wait_until

        target = max(applied().values())
        wait_until(lambda: len(a := applied()) == len(lc.cluster.ids())
                   and min(a.values()) >= target, 60, "every node to catch up", every=0.2)
        def read_room(room: str) -> dict[str, dict | None]:
            out = {}
            for nid in lc.cluster.ids():
                r = c.link.wait(c.link.call("read", {"machine": "rooms", "linearizable": False,
                                                     "query": {"op": "room", "room": room}},
                                            node=nid))
                out[nid] = r.result["room"]["table"] if r.ok and r.result.get("ok") else None
            return out

        def differ(per_node: dict[str, dict | None]) -> bool:
            # what only players' commands change (the bots are still now); the leader's
            # clock still ends rounds, so a room's phase may move between two reads
            return len({json.dumps(t and [t["scores"], t["game_state"]["game_number"],
                                          sorted(t["players"])], sort_keys=True)
                        for t in per_node.values()}) != 1

        tables: dict[str, dict[str, dict | None]] = {}
        mismatched = 0
        for room in farm.by_room:
            for _attempt in range(3):
                tables[room] = read_room(room)
                if not differ(tables[room]):
                    break
            else:
                mismatched += 1
    lost = unchecked = 0
    for s, bot in zip(farm.sessions, farm.bots, strict=True):
        for (room, game), acked in s.acked_points.items():
            for table in tables.get(room, {}).values():
                name = bot.name
                if table is None or table["game_state"]["game_number"] != game:
                    unchecked += 1
                    continue
                lost += max(0, acked - table["scores"].get(name, 0))
    return lost, mismatched, unchecked


# --- 3: idle rooms ------------------------------------------------------------------------------


def run_idle(directory: Path, count: int, seconds: float) -> dict[str, Any]:
    from client.api import Client

    lc = _cluster(directory)
    try:
        _leader(lc)
        with Client(lc.cluster) as c:
            end = time.monotonic() + 15
            while c.submit("rooms", {"type": "create", "name": "idle 0"}).get(
                    "error") == "rooms_starting" and time.monotonic() < end:
                time.sleep(0.05)  # the leader is committing the rooms secret
            time.sleep(1.0)  # the nodes settle (snapshot, first timers) before the baseline
            rss0 = {nid: _rss_kb(pid) for nid, pid in _pids(lc).items()}
            _say(f"creating {count} idle rooms")
            calls = [c.link.submit("rooms", {"type": "create", "name": f"idle {i}"})
                     for i in range(1, count)]
            while not all(call.done for call in calls):
                c.link.poll(10)
            created = 1 + sum(1 for call in calls if call.ok and call.result.get("ok"))
        time.sleep(1.0)  # let the last snapshot and publishing finish before measuring
        _say(f"{created} idle rooms: measuring CPU for {seconds:g} s")
        cpu = _CpuWindow(lc)
        time.sleep(seconds)
        core_pct = cpu.core_pct()
        rss = {nid: _rss_kb(pid) for nid, pid in _pids(lc).items()}
        return {"rooms": created, "seconds": seconds, "cpu_core_pct": core_pct,
                "memory_kb_per_room": {nid: round((rss[nid] - rss0[nid]) / max(1, created), 2)
                                       for nid in rss}}
    finally:
        lc.kill_all()


# --- the report -----------------------------------------------------------------------------------


def verdict(result: dict[str, Any]) -> dict[str, bool | None]:
    a, k, i = result["active"], result["kill"], result["idle"]
    p99 = a["hit_broadcast_ms"]["p99"]
    rec = k["recovery_ms"]["p99"]
    return {
        "active_p99": a["rooms"] >= TARGETS["active_rooms"] and p99 is not None
        and p99 < TARGETS["p99_ms"],
        "idle_cpu": i["rooms"] >= TARGETS["idle_rooms"]
        and max(i["cpu_core_pct"].values()) < TARGETS["idle_core_pct"],
        "recovery_p99": k["rooms_recovered"] == k["rooms"] and rec is not None
        and rec < TARGETS["recovery_p99_ms"],
        "points_lost": k["points_lost"] == 0 and k["rooms_differing_between_nodes"] == 0,
    }


def run_bench(rooms: int = 200, seconds: float = 20.0, idle_rooms: int = 2000,
              idle_seconds: float = 10.0, after_kill_s: float = 3.0, seed: int = 1,
              quick: bool = False) -> dict[str, Any]:
    if quick:
        rooms, seconds, idle_rooms, idle_seconds, after_kill_s = 4, 2.0, 50, 1.0, 1.0
    from .floor import fsync_ms

    with tempfile.TemporaryDirectory(prefix="arena-bench-rooms-") as tmp:
        floor = _stats(fsync_ms(Path(tmp), 50 if quick else 300))
        out = run_active(Path(tmp) / "active", rooms, seconds, after_kill_s, seed)
        out["fsync_ms"] = floor  # the durable floor here, now: a hit waits for two of them
        out["idle"] = run_idle(Path(tmp) / "idle", idle_rooms, idle_seconds)
    out["seed"] = seed
    out["quick"] = quick
    out["targets"] = TARGETS
    out["met"] = verdict(out)
    return out


def _fmt(d: dict[str, Any]) -> str:
    return ", ".join(f"{k} {v:g}" for k, v in sorted(d.items()))


def render(r: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    a, k, i, met = r["active"], r["kill"], r["idle"], r["met"]
    ok = {True: "met", False: "NOT met", None: "-"}
    t = Table(title=f"arena bench rooms (3 nodes, durable; bots in one process, seed {r['seed']})")
    for col in ("measure", "value", "target"):
        t.add_column(col)
    lat = a["hit_broadcast_ms"]
    t.add_row(f"active: {a['rooms']} rooms, {a['bots']} bots, {a['seconds']:g} s",
              f"hit->broadcast p50 {lat['p50']} ms, p99 {lat['p99']} ms ({lat['n']} hits)",
              f"200 rooms, p99 < 50 ms: {ok[met['active_p99']]}")
    ans = a["hit_answer_ms"]
    t.add_row("  hit -> its answer (from the leader)",
              f"p50 {ans['p50']} ms, p99 {ans['p99']} ms", "")
    t.add_row("  bot farm's own CPU (% of a core); load average",
              f"{a['farm_cpu_core_pct']:g}; {' '.join(a['load_avg'])}", "")
    t.add_row(f"  waiting for a CPU (% of the window; nice {a['nice']})",
              _fmt(a["waiting_for_cpu_pct"]), "")
    t.add_row("  fsync of 128 bytes on this disk (same run)",
              f"p50 {r['fsync_ms']['p50']} ms, p99 {r['fsync_ms']['p99']} ms", "")
    t.add_row("committed actions/s", f"{a['committed_actions_per_s']:g} "
              f"({a['hits_per_s']:g} accepted hits/s)", "")
    t.add_row("CPU per node (% of a core)", _fmt(a["cpu_core_pct"]), "")
    t.add_row("memory per active room (KB)", _fmt(a["memory_kb_per_room"]), "")
    rec = k["recovery_ms"]
    t.add_row(f"kill -9 leader {k['killed']}: rooms committing again",
              f"{k['rooms_recovered']}/{k['rooms']}; p50 {rec['p50']} ms, p99 {rec['p99']} ms, "
              f"max {rec['max']} ms", f"p99 < 1 s: {ok[met['recovery_p99']]}")
    since = k["since_kill_ms"]
    t.add_row("  (raw: kill -> room's next commit, incl. think time and intermissions)",
              f"p50 {since['p50']} ms, p99 {since['p99']} ms, max {since['max']} ms", "")
    t.add_row("  kill -> first commit of any room", f"{k['first_commit_after_kill_ms']} ms", "")
    t.add_row("points lost (every node)", f"{k['points_lost']} lost, "
              f"{k['rooms_differing_between_nodes']} rooms differing, "
              f"{k['bots_unchecked']} unchecked", f"0: {ok[met['points_lost']]}")
    t.add_row(f"idle: {i['rooms']} rooms, CPU per node (% of a core)", _fmt(i["cpu_core_pct"]),
              f"2000 rooms, < 5%: {ok[met['idle_cpu']]}")
    t.add_row("memory per idle room (KB)", _fmt(i["memory_kb_per_room"]), "")
    Console().print(t)


def main_report(as_json: bool, **kwargs: Any) -> int:
    result = run_bench(**kwargs)
    if as_json:
        print(json.dumps(result, indent=2))
    else:
        render(result)
    return 0


# --- python -m nodes.bench rooms -------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--rooms", type=int, default=200, help="active rooms (4 bots each)")
    parser.add_argument("--seconds", type=float, default=20.0, help="the active measurement")
    parser.add_argument("--idle-rooms", type=int, default=2000)
    parser.add_argument("--idle-seconds", type=float, default=10.0)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--quick", action="store_true", help="a smoke run (seconds, not a measurement)")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--render", metavar="JSON_FILE", default=None,
                        help="print the table of a run saved with --json (runs nothing)")


def run(args: argparse.Namespace) -> int:
    if args.render:
        render(json.loads(Path(args.render).read_text()))
        return 0
    return main_report(args.json, rooms=args.rooms, seconds=args.seconds,
                       idle_rooms=args.idle_rooms, idle_seconds=args.idle_seconds,
                       seed=args.seed, quick=args.quick)
