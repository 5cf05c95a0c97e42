"""The cluster file: which nodes exist, where they listen, and the cluster's timing.

TOML, read with the standard library's ``tomllib``::

    cluster_id = "arena-3f9c"

    [timing]
    tick_ms = 10
    heartbeat_ms = 50
    election_ms = [150, 300]

    [options]
    snapshot_interval = 1000
    compression = true

    [[nodes]]
    id = "n1"
    raft = "tcp://127.0.0.1:7101"     # ROUTER for peer traffic
    client = "tcp://127.0.0.1:7102"   # ROUTER for client requests
    pub = "tcp://127.0.0.1:7103"      # PUB of applied changes
    data_dir = "n1"                   # optional; relative to the file's folder
"""

from __future__ import annotations

import os
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

DEFAULT_NAME = "cluster.toml"
_ID = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")


class ClusterFileError(ValueError):
    """The cluster file is missing or malformed; the message says which and where."""


@dataclass(frozen=True, slots=True)
class NodeAddress:
    id: str
    raft: str
    client: str
    pub: str
    data_dir: str | None = None


@dataclass(frozen=True, slots=True)
class Timing:
    tick_ms: float = 10.0
    heartbeat_ms: float = 50.0
    election_ms: tuple[float, float] = (150.0, 300.0)

    def ticks(self) -> tuple[int, int, int]:
        """(heartbeat, election min, election max) in ticks."""
        t = self.tick_ms
        return (
            max(1, round(self.heartbeat_ms / t)),
            max(2, round(self.election_ms[0] / t)),
            max(3, round(self.election_ms[1] / t)),
        )


@dataclass(frozen=True, slots=True)
class ClusterFile:
    cluster_id: str
    nodes: tuple[NodeAddress, ...]
    timing: Timing = field(default_factory=Timing)
    snapshot_interval: int = 1000
    compression: bool = True
    admin_key: str | None = None
    path: Path | None = None

    def node(self, node_id: str) -> NodeAddress:
        for n in self.nodes:
            if n.id == node_id:
                return n
        known = ", ".join(n.id for n in self.nodes)
        raise ClusterFileError(f"node {node_id!r} is not in the cluster file (nodes: {known})")

    def ids(self) -> list[str]:
        return [n.id for n in self.nodes]

    def data_dir(self, node_id: str) -> Path:
        n = self.node(node_id)
        base = self.path.parent if self.path else Path.cwd()
        return base / (n.data_dir or node_id)

    def to_toml(self) -> str:
        lo, hi = self.timing.election_ms
        lines = [
            f'cluster_id = "{self.cluster_id}"',
            "",
            "[timing]",
            f"tick_ms = {self.timing.tick_ms:g}",
            f"heartbeat_ms = {self.timing.heartbeat_ms:g}",
            f"election_ms = [{lo:g}, {hi:g}]",
            "",
            "[options]",
            f"snapshot_interval = {self.snapshot_interval}",
            f"compression = {'true' if self.compression else 'false'}",
        ]
        if self.admin_key:
            lines.append(f'admin_key = "{self.admin_key}"')
        for n in self.nodes:
            lines += ["", "[[nodes]]", f'id = "{n.id}"', f'raft = "{n.raft}"',
                      f'client = "{n.client}"', f'pub = "{n.pub}"']
            if n.data_dir:
                lines.append(f'data_dir = "{n.data_dir}"')
        return "\n".join(lines) + "\n"

    def write(self, path: Path) -> None:
        tmp = path.with_suffix(".tmp")
        tmp.write_text(self.to_toml())
        os.replace(tmp, path)


def _need(table: dict, key: str, kind: type, where: str) -> object:
    if key not in table:
        raise ClusterFileError(f"{where}: missing '{key}'")
    value = table[key]
    if not isinstance(value, kind):
        raise ClusterFileError(f"{where}: '{key}' must be a {kind.__name__}, got {value!r}")
    return value


def parse(text: str, path: Path | None = None) -> ClusterFile:
    where = str(path) if path else "cluster file"
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ClusterFileError(f"{where}: not valid TOML: {e}") from e
    cluster_id = _need(doc, "cluster_id", str, where)
    raw_nodes = _need(doc, "nodes", list, where)
    if not raw_nodes:
        raise ClusterFileError(f"{where}: no [[nodes]]")
    nodes = []
    seen: set[str] = set()
    for k, t in enumerate(raw_nodes):
        w = f"{where}: nodes[{k}]"
        if not isinstance(t, dict):
            raise ClusterFileError(f"{w}: must be a table")
        nid = str(_need(t, "id", str, w))
        if not _ID.match(nid):
            raise ClusterFileError(f"{w}: id {nid!r} must be 1-64 of letters, digits, _ . -")
        if nid in seen:
            raise ClusterFileError(f"{w}: duplicate node id {nid!r}")
        seen.add(nid)
        addrs = [str(_need(t, key, str, w)) for key in ("raft", "client", "pub")]
        for a in addrs:
            if "://" not in a:
                raise ClusterFileError(f"{w}: address {a!r} must look like tcp://host:port")
        data_dir = t.get("data_dir")
        nodes.append(NodeAddress(nid, *addrs, data_dir=str(data_dir) if data_dir else None))
    timing_t = doc.get("timing", {})
    election = timing_t.get("election_ms", [150, 300])
    if not (isinstance(election, list) and len(election) == 2 and 0 < election[0] < election[1]):
        raise ClusterFileError(f"{where}: timing.election_ms must be [low, high] with 0 < low < high")
    timing = Timing(
        tick_ms=float(timing_t.get("tick_ms", 10)),
        heartbeat_ms=float(timing_t.get("heartbeat_ms", 50)),
        election_ms=(float(election[0]), float(election[1])),
    )
    if not 0 < timing.tick_ms <= timing.heartbeat_ms < timing.election_ms[0]:
        raise ClusterFileError(f"{where}: need 0 < tick_ms <= heartbeat_ms < election_ms low")
    opts = doc.get("options", {})
    interval = opts.get("snapshot_interval", 1000)
    if not isinstance(interval, int) or interval < 0:
        raise ClusterFileError(f"{where}: options.snapshot_interval must be an int >= 0")
    return ClusterFile(
        cluster_id=str(cluster_id),
        nodes=tuple(nodes),
        timing=timing,
        snapshot_interval=interval,
        compression=bool(opts.get("compression", True)),
        admin_key=opts.get("admin_key"),
        path=path,
    )


def load(path: str | os.PathLike[str]) -> ClusterFile:
    p = Path(path)
    try:
        text = p.read_text()
    except FileNotFoundError as e:
        raise ClusterFileError(
            f"no cluster file at {p}: start a cluster with 'arena up' or pass --cluster FILE"
        ) from e
    return parse(text, p.resolve())


def find(explicit: str | None = None) -> Path:
    """--cluster, else $ARENA_CLUSTER, else ./.arena/cluster.toml (where `arena up` writes)."""
    if explicit:
        return Path(explicit)
    env = os.environ.get("ARENA_CLUSTER")
    if env:
        return Path(env)
    return Path(".arena") / DEFAULT_NAME
