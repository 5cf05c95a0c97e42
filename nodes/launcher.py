"""``arena up`` and ``arena status``: launch a local cluster (plus player windows
and bots), show its live status, and stop everything it started on Ctrl-C."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from rich.console import Console
from rich.live import Live
from rich.table import Table

from .clusterfile import DEFAULT_NAME, ClusterFile, Timing
from .local import PROCS_FILE, LocalCluster


def cluster_status(cf: ClusterFile, timeout: float = 0.4) -> list[dict]:
    """Ask every node for its status; unreachable nodes are listed as such."""
    from client.api import Client

    rows = []
    with Client(cf, deadline=timeout) as c:
        for n in cf.nodes:
            s = c.status(n.id, timeout=timeout)
            if s is None:
                rows.append({"id": n.id, "address": n.client, "reachable": False})
                continue
            rows.append({
                "id": n.id, "address": n.client, "reachable": True, "role": s["role"],
                "term": s["term"], "leader": s["leader"], "commit": s["commit"],
                "applied": s["applied"], "last_index": s["last_index"], "pid": s.get("pid"),
                "blocked": s.get("blocked", []),
            })
    return rows


def status_table(rows: list[dict], title: str = "cluster") -> Table:
    """The status table, fitted to the terminal (``nodes.status_view``)."""
    from .status_view import status_table as fitted

    return fitted(rows, title)


def render_status(rows: list[dict]) -> None:
    from .status_view import render_status as fitted_render

    fitted_render(rows)


def open_rooms(lc: LocalCluster, count: int, timeout: float = 30.0) -> int:
    """Create ``count`` public rooms named Room 1 .. Room N (as quick play names its own)."""
    from client.api import Client

    made = 0
    deadline = time.monotonic() + timeout
    with Client(lc.cluster, deadline=timeout) as c:
        while made < count:
            r = c.submit("rooms", {"type": "create", "name": f"Room {made + 1}"})
            if r.get("ok"):
                made += 1
            elif r.get("error") != "rooms_starting" or time.monotonic() > deadline:
                raise SystemExit(f"could not open room {made + 1}: {r.get('error')}: "
                                 f"{r.get('message')}")
            else:
                time.sleep(0.05)
    return made


PLAY_ROOM = "Arena"  # the room ``arena up`` opens for its windows and bots


def open_play_room(lc: LocalCluster, host: str | None, timeout: float = 30.0) -> str:
    """The one public room ``arena up`` puts its windows and bots in; with ``host``, that
    player is seated in it at once (so a person, not a bot, hosts the room) and the
    seat's token is written where the host's window looks for it
    (``client.roomsession.seat_file``): the window takes the seat back as it opens."""
    from client.rooms import RoomsClient
    from client.roomsession import seat_file

    token = seat_file(lc.cluster_path, lc.cluster.cluster_id, host) if host else None
    rc = RoomsClient(lc.cluster, token_file=token, auto_ping=False)
    deadline = time.monotonic() + timeout
    try:
        while True:
            r = rc.wait(rc.create(PLAY_ROOM, player=host), timeout)
            if r.get("ok"):
                return str(r["room"])
            if r.get("error") != "rooms_starting" or time.monotonic() > deadline:
                raise SystemExit(f"could not open the players' room: {r.get('error')}: "
                                 f"{r.get('message')}")
            time.sleep(0.05)  # the first leader is committing the rooms secret
    finally:
        rc.close()


def launch(directory: Path, nodes: int, players: int = 0, bots: int = 0, keep: bool = False,
           election_ms: tuple[float, float] = (150.0, 300.0), live_status: bool = True,
           block: bool = True, rooms: int = 0) -> LocalCluster:
    """Start the cluster; with ``block`` show status until Ctrl-C, then stop all."""
    console = Console()
    directory = directory.resolve()
    if (directory / PROCS_FILE).exists():
        old = LocalCluster.attach(directory / DEFAULT_NAME)
        running = [n for n in old.procs if old.alive(n)]
        if running:
            raise SystemExit(
                f"a cluster is already running in {directory} (nodes {', '.join(running)}); "
                f"stop it first (Ctrl-C in its terminal, or 'arena stop NODE')"
            )
    if not keep and directory.exists():
        shutil.rmtree(directory)
    timing = Timing(election_ms=election_ms)
    if keep and (directory / DEFAULT_NAME).exists():
        lc = LocalCluster.attach(directory / DEFAULT_NAME)
    else:
        lc = LocalCluster.create(directory, nodes, timing=timing)
    lc.start_all()
    if rooms:
        console.print(f"opened {open_rooms(lc, rooms)} rooms")
    extras: list[subprocess.Popen] = []
    env = {**os.environ, "ARENA_CLUSTER": str(lc.cluster_path)}
    if players or bots:  # one room for all of them, hosted by Player1 when there is one
        env["ARENA_ROOM"] = open_play_room(lc, "Player1" if players else None)
        console.print(f"players' room {PLAY_ROOM} ({env['ARENA_ROOM']})")
    # with people playing, bots play at a human pace (an eager bot clears a round
    # before anyone can click); without, they are load
    strategies = ["slow", "random"] if players else ["eager", "slow", "random"]
    for i in range(bots):
        extras.append(subprocess.Popen(
            [sys.executable, "-m", "client.roombots", "--room", env["ARENA_ROOM"],
             "--strategy", strategies[i % len(strategies)], "--name", f"bot{i + 1}"],
            env=env, stdout=open(directory / f"bot{i + 1}.log", "ab"),  # noqa: SIM115
            stderr=subprocess.STDOUT, start_new_session=True))
    for i in range(players):
        # every window visible at once: each tiles the display it opens on
        # (client.app.place_window; --size is the largest a tile may be)
        slot = {"ARENA_WINDOW_SLOT": f"{i}/{players}"}
        extras.append(subprocess.Popen(
            [sys.executable, "-m", "nodes", "play", "--name", f"Player{i + 1}",
             "--size", "1200x800"],
            env={**env, **slot}, stdout=open(directory / f"player{i + 1}.log", "ab"),  # noqa: SIM115
            stderr=subprocess.STDOUT, start_new_session=True))
    (directory / "extras.json").write_text(json.dumps([p.pid for p in extras]))
    console.print(f"cluster {lc.cluster.cluster_id}: {nodes} nodes, file {lc.cluster_path}")
    console.print(f"  export ARENA_CLUSTER={lc.cluster_path}   # for other arena commands")
    if not block:
        return lc
    stop = False

    def on_signal(*_: object) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    try:
        if live_status:
            with Live(console=console, refresh_per_second=4) as live:
                while not stop:
                    live.update(status_table(cluster_status(lc.cluster), "arena (Ctrl-C stops all)"))
                    _sleep_unless(lambda: stop, 0.5)
        else:
            while not stop:
                _sleep_unless(lambda: stop, 0.5)
    finally:
        console.print("stopping...")
        for p in extras:
            if p.poll() is None:
                p.terminate()
        for p in extras:
            try:
                p.wait(5)
            except subprocess.TimeoutExpired:
                p.kill()
        # other arena commands (restart) may have replaced pids: read them again
        lc = LocalCluster.attach(lc.cluster_path)
        lc.stop_all()
        console.print("all stopped")
    return lc


def _sleep_unless(stop: object, seconds: float) -> None:
    end = time.monotonic() + seconds
    while time.monotonic() < end and not stop():  # type: ignore[operator]
        time.sleep(0.05)
