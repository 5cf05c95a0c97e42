"""Helpers of the security tests (a module name no other test folder uses): waiting on
conditions with deadlines, and hand-made sockets that play the intruder."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

import zmq
from zmq.utils.monitor import recv_monitor_message

from client.api import Client, wait_until
from nodes.security import KeyPair

T = TypeVar("T")

HANDSHAKE_FAILED = (
    zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL
    | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL
    | zmq.EVENT_HANDSHAKE_FAILED_AUTH
)


def wait_for(cond: Callable[[], T], timeout: float, what: str, every: float = 0.02) -> T:
    """Poll ``cond`` until it returns something truthy; fails naming ``what``."""
    return wait_until(cond, timeout, what, every=every)


def leader_of(c: Client, nodes: list[str] | None = None) -> str | None:
    """The node that says it leads the highest term (among ``nodes``)."""
    return c.leader(1.0, among=nodes)


class Intruder:
    """One hand-made socket (DEALER or SUB) with a monitor, closed by ``close``."""

    def __init__(self, ctx: zmq.Context, kind: int, addr: str, keys: KeyPair | None = None,
                 server_key: str | None = None, identity: str | None = None) -> None:
        self.sock = ctx.socket(kind)
        self.sock.setsockopt(zmq.LINGER, 0)
        if identity is not None:
            self.sock.setsockopt_string(zmq.IDENTITY, identity)
        if kind == zmq.SUB:
            self.sock.setsockopt(zmq.SUBSCRIBE, b"")
        if keys is not None and server_key is not None:
            self.sock.curve_publickey = keys.public.encode()
            self.sock.curve_secretkey = keys.secret.encode()
            self.sock.curve_serverkey = server_key.encode()
        self.monitor = self.sock.get_monitor_socket(
            HANDSHAKE_FAILED | zmq.EVENT_HANDSHAKE_SUCCEEDED)
        self.sock.connect(addr)
        self.events: list[int] = []

    def wait_handshake(self, timeout: float = 5.0) -> int:
        """The first handshake verdict: an ``EVENT_HANDSHAKE_*`` code."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.monitor.poll(20):
                ev = recv_monitor_message(self.monitor)["event"]
                self.events.append(ev)
                return int(ev)
        raise AssertionError(f"no handshake verdict within {timeout:.1f}s")

    def close(self) -> None:
        self.sock.disable_monitor()
        self.monitor.close(0)
        self.sock.close(0)
