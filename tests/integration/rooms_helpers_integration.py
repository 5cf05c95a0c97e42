"""Helpers for the rooms tests on real processes (a module name no other folder uses)."""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import zmq

from client.link import Call
from client.rooms import RoomsClient
from nodes import codec
from nodes.local import LocalCluster


def until_started(rc: RoomsClient, make: Callable[[], Call], timeout: float = 10.0) -> dict:
    """Send ``make()`` until the cluster has committed the rooms secret."""
    deadline = time.monotonic() + timeout
    while True:
        result = rc.wait(make())
        if result.get("error") != "rooms_starting" or time.monotonic() > deadline:
            return result
        rc.poll(50)


def poll_all(clients: list[RoomsClient]) -> None:
    for c in clients:
        c.poll(0)


def run_all_until(clients: list[RoomsClient], cond: Callable[[], Any], timeout: float,
                  what: str, step: Callable[[], None] | None = None) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = cond()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g}s waiting for {what}")
        clients[0].poll(5)
        poll_all(clients[1:])
        if step is not None:
            step()


@contextmanager
def rooms_clients(lc: LocalCluster, count: int, **kwargs: Any) -> Iterator[list[RoomsClient]]:
    clients = [RoomsClient(lc.cluster, **kwargs) for _ in range(count)]
    try:
        yield clients
    finally:
        for c in clients:
            c.close()


class RawSub:
    """A plain SUB on every node's publish port with the given subscriptions."""

    def __init__(self, lc: LocalCluster, topics: list[bytes], nodes: list[str] | None = None) -> None:
        self.ctx = zmq.Context.instance()
        self.sock = self.ctx.socket(zmq.SUB)
        self.sock.setsockopt(zmq.LINGER, 0)
        for t in topics:
            self.sock.setsockopt(zmq.SUBSCRIBE, t)
        self.sock.setsockopt(zmq.SUBSCRIBE, codec.CLUSTER_TOPIC)
        for n in lc.cluster.nodes:
            if nodes is None or n.id in nodes:
                self.sock.connect(n.pub)
        self.cluster_id = lc.cluster.cluster_id
        self.frames: list[tuple[bytes, bytes]] = []
        self.heard_info = False

    def drain(self) -> None:
        while True:
            try:
                topic, payload = self.sock.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return
            if topic == codec.CLUSTER_TOPIC:
                self.heard_info = True
            else:
                self.frames.append((topic, payload))

    def updates(self, topic: bytes | None = None) -> list[codec.Update]:
        return [codec.decode_update(p, self.cluster_id) for t, p in self.frames
                if topic is None or t == topic]

    def close(self) -> None:
        self.sock.close(0)


def secret_from_disk(data_dir: Path) -> str:
    """The committed rooms secret, found in a stopped node's log files."""
    for path in sorted(data_dir.rglob("*")):
        if path.is_file():
            m = re.search(rb"\xa6secret\xd9\x40([0-9a-f]{64})", path.read_bytes())
            if m:
                return m.group(1).decode()
    raise AssertionError(f"no set_secret entry in {data_dir}")


class ScriptedPlayer:
    """A bot over ``RoomsClient``: readies up, the host starts once both are ready,
    and everyone hits the first open target, one hit in flight at a time."""

    def __init__(self, rc: RoomsClient, host: bool) -> None:
        self.rc = rc
        self.host = host
        self.busy: Call | None = None
        self.hits_acked = 0
        self.hits_sent = 0

    def step(self) -> None:
        rc, view = self.rc, self.rc.room
        if self.busy is not None:
            if not self.busy.done:
                return
            cmd = self.busy.body.get("cmd", {})
            result = self.busy.result if isinstance(self.busy.result, dict) else {}
            if cmd.get("type") == "hit" and self.busy.ok and result.get("ok"):
                self.hits_acked += 1
            self.busy = None
        if view is None or rc.seat is None:
            return
        table = view["table"]
        me = table["players"].get(rc.seat["name"])
        phase = table["game_state"]["phase"]
        if me is None:
            return
        if phase == "lobby" and not me["ready"]:
            self.busy = rc.act("ready", ready=True)
        elif phase == "lobby" and self.host and sum(p["ready"] for p in table["players"].values()) == 2:
            self.busy = rc.act("start")
        elif phase == "round":
            open_targets = [t for t in table["current_round"]["targets"] if t["taken_by"] is None]
            if open_targets:
                self.hits_sent += 1
                self.busy = rc.act("hit", round=table["current_round"]["number"],
                                   target=open_targets[0]["id"])
