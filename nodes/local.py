"""A local cluster of node processes: free ports, a cluster file, data folders,
logs, and process control by pid (kill -9, SIGTERM, restart, SIGSTOP, SIGCONT).

``arena up``, the integration tests, ``arena chaos`` and ``arena bench`` all
use it. The pids live in ``<dir>/procs.json`` so another ``arena`` command can
act on the cluster that ``arena up`` started.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from .clusterfile import DEFAULT_NAME, ClusterFile, NodeAddress, Timing, load

PROCS_FILE = "procs.json"


def free_ports(count: int, host: str = "127.0.0.1") -> list[int]:
    """Ports the OS says are free now (held open together so they differ)."""
    socks = []
    try:
        for _ in range(count):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind((host, 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def make_cluster_file(
    directory: Path, nodes: int, timing: Timing | None = None, snapshot_interval: int = 1000,
    compression: bool = True, admin_key: str | None = None, host: str = "127.0.0.1",
    secure: bool = False, rate_limit: float = 0.0, rate_burst: int = 200,
    room_grace_ms: int = 30_000, room_close_ms: int = 60_000,
) -> ClusterFile:
    """``secure``: CURVE keys, a client key and an admin key in ``<directory>/keys``
    (``nodes.security.generate_keys``), recorded in the file's ``[security]`` table."""
    ports = free_ports(3 * nodes, host)
    addrs = []
    for i in range(nodes):
        r, c, p = ports[3 * i : 3 * i + 3]
        addrs.append(NodeAddress(f"n{i + 1}", f"tcp://{host}:{r}", f"tcp://{host}:{c}",
                                 f"tcp://{host}:{p}"))
    cf = ClusterFile(
        cluster_id=f"arena-{secrets.token_hex(3)}", nodes=tuple(addrs),
        timing=timing or Timing(), snapshot_interval=snapshot_interval,
        compression=compression, admin_key=admin_key, rate_limit=rate_limit,
        rate_burst=rate_burst, room_grace_ms=room_grace_ms, room_close_ms=room_close_ms,
    )
    directory.mkdir(parents=True, exist_ok=True)
    if secure:
        from .security import generate_keys

        sec = generate_keys(directory / "keys", cf.ids(), relative_to=directory, force=True)
        cf = cf.secured(sec)
    path = directory / DEFAULT_NAME
    cf.write(path)
    return load(path)


def add_keys(path: Path, key_dir: Path | None = None, force: bool = False) -> ClusterFile:
    """``arena keys --cluster``: keys for every node of the file at ``path`` (in
    ``key_dir``, default ``<its folder>/keys``), recorded in its ``[security]`` table."""
    from .security import generate_keys

    cf = load(path)
    sec = generate_keys(key_dir or path.parent / "keys", cf.ids(), relative_to=path.parent,
                        force=force)
    cf.secured(sec).write(path)
    return load(path)


def prepare_secure(directory: Path, nodes: int, timing: Timing, keep: bool) -> None:
    """``arena up --secure``: leave in ``directory`` a cluster file with keys, so that
    ``launch(..., keep=True)`` starts it (a kept cluster without keys gets them)."""
    path = directory / DEFAULT_NAME
    if (directory / PROCS_FILE).exists() and path.exists():
        old = LocalCluster.attach(path)
        running = [n for n in old.procs if old.alive(n)]
        if running:
            raise SystemExit(f"a cluster is already running in {directory} (nodes "
                             f"{', '.join(running)}); stop it first")
    if keep and path.exists():
        if not load(path).security.curve:
            add_keys(path, force=True)
        return
    if directory.exists():
        shutil.rmtree(directory)
    make_cluster_file(directory, nodes, timing=timing, secure=True)


@dataclass
class LocalCluster:
    """Node processes of one cluster file, started and stopped by pid."""

    directory: Path
    cluster: ClusterFile
    procs: dict[str, subprocess.Popen | int] = field(default_factory=dict)
    extra_args: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)

    @classmethod
    def create(cls, directory: Path, nodes: int = 3, **kwargs: object) -> LocalCluster:
        extra = kwargs.pop("extra_args", [])
        cf = make_cluster_file(directory, nodes, **kwargs)  # type: ignore[arg-type]
        return cls(directory, cf, extra_args=list(extra))  # type: ignore[arg-type]

    @classmethod
    def attach(cls, cluster_path: Path) -> LocalCluster:
        """The cluster ``arena up`` started, found through its procs.json."""
        cf = load(cluster_path)
        lc = cls(cluster_path.parent, cf)
        pf = cluster_path.parent / PROCS_FILE
        if pf.exists():
            data = json.loads(pf.read_text())
            lc.procs = {k: int(v) for k, v in data.get("pids", {}).items()}
            lc.extra_args = list(data.get("extra_args", []))
        return lc

    @property
    def cluster_path(self) -> Path:
        return self.directory / DEFAULT_NAME

    def log_path(self, nid: str) -> Path:
        return self.directory / f"{nid}.log"

    def command(self, nid: str) -> list[str]:
        return [sys.executable, "-m", "nodes", "node", "--id", nid,
                "--cluster", str(self.cluster_path), *self.extra_args]

    def start(self, nid: str) -> int:
        if self.alive(nid):
            raise RuntimeError(f"node {nid} is already running (pid {self.pid(nid)})")
        logf = open(self.log_path(nid), "ab")  # noqa: SIM115 - handed to the child
        env = {**os.environ, **self.env}
        p = subprocess.Popen(self.command(nid), stdout=logf, stderr=subprocess.STDOUT,
                             stdin=subprocess.DEVNULL, env=env, start_new_session=True)
        logf.close()
        self.procs[nid] = p
        self.save()
        return p.pid

    def start_all(self) -> None:
        for nid in self.cluster.ids():
            self.start(nid)

    def pid(self, nid: str) -> int | None:
        p = self.procs.get(nid)
        if p is None:
            return None
        return p.pid if isinstance(p, subprocess.Popen) else p

    def alive(self, nid: str) -> bool:
        p = self.procs.get(nid)
        if p is None:
            return False
        if isinstance(p, subprocess.Popen):
            return p.poll() is None
        try:
            os.kill(p, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return _not_zombie(p)

    def signal(self, nid: str, sig: int) -> None:
        pid = self.pid(nid)
        if pid is None or not self.alive(nid):
            raise RuntimeError(f"node {nid} is not running")
        os.kill(pid, sig)

    def kill(self, nid: str) -> None:
        """SIGKILL: the process dies at once; the disk keeps what was fsynced."""
        self.signal(nid, signal.SIGKILL)
        self._reap(nid, 5.0)

    def stop(self, nid: str, timeout: float = 10.0) -> None:
        """SIGTERM: the node closes cleanly."""
        self.signal(nid, signal.SIGTERM)
        if not self._reap(nid, timeout):
            self.signal(nid, signal.SIGKILL)
            self._reap(nid, 5.0)

    def pause(self, nid: str) -> None:
        self.signal(nid, signal.SIGSTOP)

    def resume(self, nid: str) -> None:
        self.signal(nid, signal.SIGCONT)

    def restart(self, nid: str) -> int:
        if self.alive(nid):
            self.stop(nid)
        return self.start(nid)

    def _reap(self, nid: str, timeout: float) -> bool:
        p = self.procs.get(nid)
        deadline = time.monotonic() + timeout
        if isinstance(p, subprocess.Popen):
            try:
                p.wait(timeout)
                return True
            except subprocess.TimeoutExpired:
                return False
        while time.monotonic() < deadline:
            if not self.alive(nid):
                return True
            time.sleep(0.02)
        return False

    def stop_all(self, timeout: float = 10.0) -> None:
        """Stop every node this object started (by pid), even paused ones."""
        for nid in list(self.procs):
            if not self.alive(nid):
                continue
            try:
                os.kill(self.pid(nid) or 0, signal.SIGCONT)
                self.stop(nid, timeout)
            except (RuntimeError, ProcessLookupError):
                pass

    def kill_all(self) -> None:
        for nid in list(self.procs):
            if self.alive(nid):
                try:
                    self.kill(nid)
                except (RuntimeError, ProcessLookupError):
                    pass

    def save(self) -> None:
        data = {"pids": {k: self.pid(k) for k in self.procs}, "extra_args": self.extra_args}
        tmp = self.directory / (PROCS_FILE + ".tmp")
        tmp.write_text(json.dumps(data))
        os.replace(tmp, self.directory / PROCS_FILE)


def _not_zombie(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return True
