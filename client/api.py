"""The blocking client library: key-value operations, locks, counters, batches,
status and admin commands against a cluster, with leader following, failover
and exactly-once retries (see ``client.link``).

    from client.api import Client
    with Client.from_file(".arena/cluster.toml") as c:
        c.put("player_score", 100)
        c.incr("visits")
        c.get("player_score")          # linearizable (ReadIndex)
        c.get("player_score", stale=True)  # fast local read, marked stale

Errors: ``NotLeaderError``, ``TimeoutError_`` (the command may or may not have
been applied: check before sending it again), ``Rejected`` (the cluster said
no, with a reason), ``Unavailable``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from nodes.clusterfile import ClusterFile, load

from .link import Call, ClusterLink, NotLeaderError, Rejected, TimeoutError_, Unavailable

T = TypeVar("T")

__all__ = ["Client", "NotLeaderError", "Rejected", "TimeoutError_", "Unavailable", "wait_until"]


class Client:
    def __init__(self, cluster: ClusterFile, client_id: str | None = None,
                 request_timeout: float = 0.5, deadline: float = 10.0,
                 admin_key: str | None = None, session_key: str | None = None) -> None:
        self.link = ClusterLink(cluster, client_id, request_timeout=request_timeout,
                                deadline=deadline, session_key=session_key)
        self.cluster = cluster
        # None: the cluster file's (read from its admin_key_file if this user may); "": none
        self.admin_key = cluster.admin_key if admin_key is None else admin_key

    @classmethod
    def from_file(cls, path: str | Path, **kwargs: Any) -> Client:
        return cls(load(path), **kwargs)

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.link.close()

    # --- primitives -------------------------------------------------------------

    def _wait(self, c: Call) -> Any:
        self.link.wait(c)
        return c.raise_for_error()

    def submit(self, machine: str, cmd: dict) -> dict:
        """Apply a command exactly once; returns the state machine's result."""
        result = self._wait(self.link.submit(machine, cmd))
        return result if isinstance(result, dict) else {"ok": True, "result": result}

    def read(self, machine: str, query: dict, stale: bool = False) -> Any:
        return self._wait(self.link.call("read", {"machine": machine, "query": query,
                                                  "linearizable": not stale}))

    def kv(self, cmd: dict) -> dict:
        return self.submit("kv", cmd)

    # --- key-value ----------------------------------------------------------------

    def get(self, key: str, stale: bool = False) -> Any:
        r = self.read("kv", {"op": "get", "key": key}, stale)
        return r.get("value") if isinstance(r, dict) and r.get("found") else None

    def get_full(self, key: str, stale: bool = False) -> dict:
        return self.read("kv", {"op": "get", "key": key}, stale)

    def put(self, key: str, value: Any) -> dict:
        return self._checked(self.kv({"op": "put", "key": key, "value": value}))

    def delete(self, key: str) -> dict:
        return self._checked(self.kv({"op": "delete", "key": key}))

    def cas(self, key: str, expected: Any, value: Any) -> bool:
        r = self.kv({"op": "cas", "key": key, "expected": expected, "value": value})
        if r.get("ok"):
            return True
        if r.get("succeeded") is False:
            return False
        raise Rejected(str(r.get("error")), str(r.get("message")), r)

    def incr(self, key: str, by: int = 1) -> int:
        return int(self._checked(self.kv({"op": "incr", "key": key, "by": by}))["value"])

    def decr(self, key: str, by: int = 1) -> int:
        return int(self._checked(self.kv({"op": "decr", "key": key, "by": by}))["value"])

    def batch(self, ops: list[dict], conditions: list[dict] | None = None) -> dict:
        return self.kv({"op": "batch", "ops": ops, "conditions": conditions or []})

    def lock(self, name: str, holder: str, ttl_ms: int = 10_000) -> dict:
        return self.kv({"op": "lock", "name": name, "holder": holder, "ttl_ms": ttl_ms})

    def unlock(self, name: str, holder: str) -> dict:
        return self.kv({"op": "unlock", "name": name, "holder": holder})

    @staticmethod
    def _checked(r: dict) -> dict:
        if not r.get("ok"):
            raise Rejected(str(r.get("error")), str(r.get("message")), r)
        return r

    # --- cluster ------------------------------------------------------------------

    def status(self, node: str, timeout: float = 1.0) -> dict | None:
        """One node's status, or None if it does not answer within ``timeout``."""
        saved = self.link.deadline
        self.link.deadline = timeout
        try:
            c = self.link.wait(self.link.call("status", {}, node=node))
        finally:
            self.link.deadline = saved
        return c.result if c.ok else None  # type: ignore[return-value]

    def admin(self, action: str, args: dict | None = None, node: str | None = None) -> Any:
        body: dict[str, Any] = {"action": action, "args": args or {}}
        if self.admin_key:
            body["key"] = self.admin_key
        return self._wait(self.link.call("admin", body, node=node))

    def leader(self, timeout: float = 2.0, among: list[str] | None = None) -> str | None:
        """The node (of ``among``, default all) that says it leads the highest term;
        a deposed leader that has not heard the news yet never wins over the new one."""
        ids = among or self.cluster.ids()
        best: tuple[str, int] | None = None
        for nid in ids:
            s = self.status(nid, timeout=timeout / max(1, len(ids)))
            if s and s.get("role") == "leader" and (best is None or s["term"] > best[1]):
                best = (nid, s["term"])
        return best[0] if best else None

    def wait_for_leader(self, timeout: float, among: list[str] | None = None) -> str:
        """Poll until a node says it leads; raises TimeoutError_ at the deadline."""
        lead = wait_until(lambda: self.leader(0.9, among), timeout, "a leader")
        assert lead is not None
        return lead


def wait_until(cond: Callable[[], T], timeout: float, what: str,
               between: Callable[[], None] | None = None, every: float = 0.005) -> T:
    """Poll ``cond`` (running ``between`` each time) until it returns something truthy;
    raises ``TimeoutError_`` naming ``what`` at the deadline."""
    deadline = time.monotonic() + timeout
    value: T | None = None
    while time.monotonic() < deadline:
        if between is not None:
            between()
        value = cond()
        if value:
            return value
        time.sleep(every)
    raise TimeoutError_(f"timed out after {timeout:.1f} s waiting for {what} (last: {value!r})")
