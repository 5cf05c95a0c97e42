"""Helpers for the multi-host test: a small network of Linux network namespaces.

Each node gets its own namespace ("host") with one interface, ``eth0``, and its
own address in 10.213.0.0/24. The interfaces are veth pairs whose other ends
are ports of a bridge in a fourth, "switch" namespace, which also holds the
test's client (it reaches every node through the bridge). Nothing touches the
root namespace: no address, no route, no link, so no packet can leave the lab.

A partition is a cable pulled at the switch: ``ip link set port-nX down`` in the
switch namespace. Packets to and from that node are then silently dropped, as
on a real network (no connection is refused or reset), until the port is set up
again.

Every subprocess has a timeout and every process started here is killed by its
pid; the namespaces are deleted on exit, pass or fail.

This file is also the client "agent" run inside a namespace::

    ip netns exec NS python netns_helpers.py agent CLUSTER_FILE

reading one JSON request per line on stdin and answering one JSON line each.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import secrets
import selectors
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from client.api import wait_until

REPO = Path(__file__).resolve().parents[2]
SUBNET = "10.213.0"  # a private /24 that exists only inside the lab's namespaces
SWITCH_ADDR = f"{SUBNET}.1"
PORTS = {"raft": 7101, "client": 7102, "pub": 7103}  # the same on every "host"
CMD_TIMEOUT = 10.0

T = TypeVar("T")


def wait_for(cond: Callable[[], T], timeout: float, what: str, every: float = 0.05) -> T:
    """Poll ``cond`` until it returns something truthy; fails naming ``what``."""
    return wait_until(cond, timeout, what, every=every)


# --- can this machine do it? ------------------------------------------------------------


def _ip(*args: str, check: bool = True, timeout: float = CMD_TIMEOUT) -> subprocess.CompletedProcess:
    r = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=timeout,
                       stdin=subprocess.DEVNULL)
    if check and r.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)} failed ({r.returncode}): {r.stderr.strip()}")
    return r


def netns_unavailable_reason() -> str | None:
    """None if this process can build the lab; otherwise why not (the skip reason)."""
    if not sys.platform.startswith("linux"):
        return f"network namespaces need Linux (this is {sys.platform})"
    if os.geteuid() != 0:
        return "network namespaces need root (CAP_SYS_ADMIN and CAP_NET_ADMIN); run as root"
    if shutil.which("ip") is None:
        return "no 'ip' binary (iproute2); install it, e.g. apt-get install -y iproute2"
    probe = f"arn-probe-{os.getpid()}-{secrets.token_hex(3)}"
    try:
        r = _ip("netns", "add", probe, check=False)
        if r.returncode != 0:
            return (f"'ip netns add' failed: {r.stderr.strip() or r.returncode} (a container "
                    "without CAP_SYS_ADMIN/CAP_NET_ADMIN?)")
        for args, what in (
            (("-n", probe, "link", "add", "br0", "type", "bridge"), "a bridge"),
            (("-n", probe, "link", "add", "va", "type", "veth", "peer", "name", "vb"),
             "a veth pair"),
        ):
            r = _ip(*args, check=False)
            if r.returncode != 0:
                return f"cannot create {what} in a namespace: {r.stderr.strip()}"
        r = subprocess.run(["ip", "netns", "exec", probe, sys.executable, "-c", "import zmq"],
                           capture_output=True, text=True, timeout=CMD_TIMEOUT,
                           stdin=subprocess.DEVNULL)
        if r.returncode != 0:
            return f"'ip netns exec' cannot run Python: {r.stderr.strip()[-300:]}"
        return None
    except (OSError, subprocess.TimeoutExpired) as e:
        return f"probing network namespaces failed: {e}"
    finally:
        with contextlib.suppress(OSError, subprocess.TimeoutExpired):
            _ip("netns", "del", probe, check=False)


# --- processes: pid-owned, killed with the test -----------------------------------------


def _die_with_parent() -> None:
    """In the child before exec: SIGKILL when the test process dies (PR_SET_PDEATHSIG).
    ``ip netns exec`` execs its command, so the setting reaches the node itself."""
    with contextlib.suppress(Exception):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL, 0, 0, 0)


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH")) if p)
    env["PYTHONUNBUFFERED"] = "1"
    return env


def _kill(p: subprocess.Popen) -> None:
    """SIGKILL by pid and reap (bounded)."""
    if p.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(p.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        p.wait(5)


class Agent:
    """A client process inside one namespace, driven over stdin/stdout with JSON lines."""

    def __init__(self, ns: str, cluster_path: Path, log: Path) -> None:
        self.ns = ns
        self._log = open(log, "ab")  # noqa: SIM115 - closed in close()
        self.proc = subprocess.Popen(
            ["ip", "netns", "exec", ns, sys.executable, str(Path(__file__).resolve()),
             "agent", str(cluster_path)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._log, cwd=REPO,
            env=_env(), start_new_session=True, preexec_fn=_die_with_parent,
        )
        self._buf = b""
        self._sel = selectors.DefaultSelector()
        assert self.proc.stdout is not None
        os.set_blocking(self.proc.stdout.fileno(), False)
        self._sel.register(self.proc.stdout, selectors.EVENT_READ)
        hello = self.request({"op": "hello"}, timeout=20)
        if hello.get("pid") != self.proc.pid:
            raise AssertionError(f"agent pid {hello.get('pid')} is not the Popen pid "
                                 f"{self.proc.pid}: 'ip netns exec' did not exec")

    def request(self, req: dict, timeout: float = 10.0) -> dict:
        """Send one request; its answer within ``timeout`` or the agent is killed."""
        assert self.proc.stdin is not None and self.proc.stdout is not None
        try:
            self.proc.stdin.write(json.dumps(req).encode() + b"\n")
            self.proc.stdin.flush()
        except BrokenPipeError as e:
            raise AssertionError(f"agent in {self.ns} is gone (exit {self.proc.poll()})") from e
        deadline = time.monotonic() + timeout
        while b"\n" not in self._buf:
            left = deadline - time.monotonic()
            if left <= 0:
                self.close()
                raise AssertionError(f"agent in {self.ns} did not answer {req} in {timeout}s")
            if self._sel.select(left):
                chunk = self.proc.stdout.read()
                if chunk == b"":
                    raise AssertionError(f"agent in {self.ns} exited ({self.proc.poll()}) "
                                         f"while answering {req}")
                self._buf += chunk or b""
        line, self._buf = self._buf.split(b"\n", 1)
        return json.loads(line)

    def status(self, node: str, timeout: float = 0.4) -> dict | None:
        return self.request({"op": "status", "node": node, "timeout": timeout})["result"]

    def statuses(self, nodes: list[str], timeout: float = 0.4) -> dict[str, dict | None]:
        return self.request({"op": "statuses", "nodes": nodes, "timeout": timeout})["result"]

    def put(self, key: str, value: Any, deadline: float = 5.0) -> dict:
        return self.request({"op": "put", "key": key, "value": value, "deadline": deadline},
                            timeout=deadline + 5)

    def get(self, key: str) -> dict:
        return self.request({"op": "get", "key": key}, timeout=10)

    def submit_to(self, node: str, key: str, value: Any, deadline: float) -> dict:
        """A put sent to ``node`` only (no failover to another node)."""
        return self.request({"op": "submit_to", "node": node, "key": key, "value": value,
                             "deadline": deadline}, timeout=deadline + 5)

    def local_read(self, node: str, keys: list[str]) -> dict:
        """``node``'s own state machine (stale reads), key by key."""
        return self.request({"op": "local_read", "node": node, "keys": keys}, timeout=10)

    def close(self) -> None:
        if self.proc.stdin is not None:
            with contextlib.suppress(OSError):
                self.proc.stdin.close()
        _kill(self.proc)
        with contextlib.suppress(Exception):
            self._sel.close()
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        self._log.close()


class NetnsLab:
    """Three node "hosts" and a switch, each its own network namespace."""

    def __init__(self, directory: Path, node_ids: tuple[str, ...] = ("n1", "n2", "n3")) -> None:
        self.dir = directory
        self.tag = f"arn-{os.getpid()}-{secrets.token_hex(3)}"
        self.switch = f"{self.tag}-sw"
        self.node_ids = node_ids
        self.ns = {nid: f"{self.tag}-{nid}" for nid in node_ids}
        self.addr = {nid: f"{SUBNET}.{11 + k}" for k, nid in enumerate(node_ids)}
        self.created: list[str] = []
        self.nodes: dict[str, subprocess.Popen] = {}
        self.agents: list[Agent] = []
        self.cluster_path = directory / "cluster.toml"

    # --- the network ---

    def __enter__(self) -> NetnsLab:
        try:
            self._build()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _build(self) -> None:
        for ns in (self.switch, *self.ns.values()):
            _ip("netns", "add", ns)
            self.created.append(ns)
        sw = self.switch
        _ip("-n", sw, "link", "set", "lo", "up")
        _ip("-n", sw, "link", "add", "br0", "type", "bridge")
        _ip("-n", sw, "addr", "add", f"{SWITCH_ADDR}/24", "dev", "br0")
        _ip("-n", sw, "link", "set", "br0", "up")
        for nid, ns in self.ns.items():
            port = self.port(nid)
            _ip("-n", sw, "link", "add", port, "type", "veth", "peer", "name", "eth0", "netns", ns)
            _ip("-n", sw, "link", "set", port, "master", "br0")
            _ip("-n", sw, "link", "set", port, "up")
            _ip("-n", ns, "link", "set", "lo", "up")
            _ip("-n", ns, "addr", "add", f"{self.addr[nid]}/24", "dev", "eth0")
            _ip("-n", ns, "link", "set", "eth0", "up")
        self._write_cluster_file()

    def port(self, nid: str) -> str:
        """The switch-side end of ``nid``'s cable."""
        return f"port-{nid}"

    def link_down(self, nid: str) -> None:
        _ip("-n", self.switch, "link", "set", self.port(nid), "down")

    def link_up(self, nid: str) -> None:
        _ip("-n", self.switch, "link", "set", self.port(nid), "up")

    def _write_cluster_file(self) -> None:
        lines = [f'cluster_id = "arena-netns-{secrets.token_hex(3)}"', "",
                 "[timing]", "tick_ms = 10", "heartbeat_ms = 50", "election_ms = [150, 300]", ""]
        for nid in self.node_ids:
            a = self.addr[nid]
            lines += ["[[nodes]]", f'id = "{nid}"',
                      *(f'{k} = "tcp://{a}:{p}"' for k, p in PORTS.items()), ""]
        self.dir.mkdir(parents=True, exist_ok=True)
        self.cluster_path.write_text("\n".join(lines))

    # --- processes ---

    def start_node(self, nid: str) -> int:
        log = open(self.dir / f"{nid}.log", "ab")  # noqa: SIM115 - handed to the child
        try:
            p = subprocess.Popen(
                ["ip", "netns", "exec", self.ns[nid], sys.executable, "-m", "nodes", "node",
                 "--id", nid, "--cluster", str(self.cluster_path)],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=REPO,
                env=_env(), start_new_session=True, preexec_fn=_die_with_parent,
            )
        finally:
            log.close()
        self.nodes[nid] = p
        return p.pid

    def start_all(self) -> None:
        for nid in self.node_ids:
            self.start_node(nid)

    def agent(self, ns: str) -> Agent:
        """A client process inside namespace ``ns`` (self.switch, or a node's)."""
        a = Agent(ns, self.cluster_path, self.dir / f"agent-{ns.rsplit('-', 1)[-1]}.log")
        self.agents.append(a)
        return a

    def log_tail(self, nid: str, lines: int = 15) -> str:
        try:
            return "\n".join((self.dir / f"{nid}.log").read_text().splitlines()[-lines:])
        except OSError:
            return ""

    def close(self) -> None:
        for a in self.agents:
            with contextlib.suppress(Exception):
                a.close()
        for p in self.nodes.values():
            with contextlib.suppress(Exception):
                _kill(p)
        for ns in reversed(self.created):
            with contextlib.suppress(Exception):
                _ip("netns", "del", ns, check=False)
        self.created.clear()


# --- the agent: runs inside a namespace ------------------------------------------------


def _agent_main(cluster_path: str) -> None:
    sys.path.insert(0, str(REPO))
    from client.api import Client, Rejected
    from client.link import ClientError

    client = Client.from_file(cluster_path, request_timeout=0.3, deadline=5.0)
    out = sys.stdout

    def handle(req: dict) -> dict:
        op = req["op"]
        if op == "hello":
            return {"ok": True, "pid": os.getpid()}
        if op == "status":
            return {"ok": True, "result": client.status(req["node"], timeout=req["timeout"])}
        if op == "statuses":
            return {"ok": True, "result": {n: client.status(n, timeout=req["timeout"])
                                           for n in req["nodes"]}}
        if op == "put":
            client.link.deadline = float(req["deadline"])
            r = client.put(req["key"], req["value"])
            return {"ok": True, "result": r}
        if op == "get":
            client.link.deadline = 5.0
            return {"ok": True, "result": client.get_full(req["key"])}
        if op == "submit_to":
            link = client.link
            link.seq += 1
            c = link.call("submit", {"machine": "kv", "seq": link.seq, "cmd": {
                "op": "put", "key": req["key"], "value": req["value"]}}, node=req["node"])
            end = time.monotonic() + float(req["deadline"])
            while not c.done and time.monotonic() < end:
                link.poll(10)
            if not c.done:
                return {"ok": False, "error": "timeout", "message": "no answer before the deadline"}
            if c.ok:
                return {"ok": True, "result": c.result, "index": c.index}
            e = c.error
            return {"ok": False, "error": e.code if e else "?", "message": e.message if e else ""}
        if op == "local_read":
            values = {}
            for k in req["keys"]:
                c = client.link.wait(client.link.call(
                    "read", {"machine": "kv", "query": {"op": "get", "key": k},
                             "linearizable": False}, node=req["node"]))
                values[k] = c.raise_for_error()
            return {"ok": True, "result": values}
        return {"ok": False, "error": "bad_request", "message": f"unknown op {op!r}"}

    for line in sys.stdin:
        if not line.strip():
            continue
        try:
            resp = handle(json.loads(line))
        except (ClientError, Rejected) as e:
            resp = {"ok": False, "error": type(e).__name__, "message": str(e)}
        out.write(json.dumps(resp, default=str) + "\n")
        out.flush()
    client.close()


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "agent":
        _agent_main(sys.argv[2])
    else:
        sys.exit("usage: netns_helpers.py agent CLUSTER_FILE")
