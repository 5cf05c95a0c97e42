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
    rate_limit = 0          # requests/s admitted per client id and per connection
    rate_burst = 200        # (0 = unlimited; the default, or 200 with [security] curve);
                            # `arena node --rate-limit` overrides; burst = bucket size

    [rooms]                 # optional; every node must read the same values
    grace_ms = 30000        # a dropped seat is kept this long for its token
    close_ms = 60000        # an empty room is closed this long after it emptied

    [[nodes]]
    id = "n1"
    raft = "tcp://127.0.0.1:7101"     # ROUTER for peer traffic
    client = "tcp://127.0.0.1:7102"   # ROUTER for client requests
    pub = "tcp://127.0.0.1:7103"      # PUB of applied changes
    data_dir = "n1"                   # optional; relative to the file's folder

    [security]                        # optional; written by `arena keys`
    curve = true                      # CURVE-encrypt and authenticate every socket
    admin_key_file = "keys/admin.key"
    client_secret_key_file = "keys/client.secret"
    client_public_keys = ["<40 Z85 chars>"]
    server_public_keys = {n1 = "<40 Z85 chars>", n2 = "..."}
    server_secret_key_files = {n1 = "keys/n1.secret", n2 = "keys/n2.secret"}

Security. Without a ``[security]`` table (or with ``curve = false``) every socket
is plaintext and unauthenticated, fit for loopback only. With ``curve = true``:

- ``server_public_keys``: one CURVE public key (Z85, 40 chars) per node, for
  every ``[[nodes]]`` entry. A node's peer ROUTER, client ROUTER and PUB are CURVE
  servers with that key; a node's DEALERs to its peers are CURVE clients with it.
  A node's peer ROUTER admits only these keys, and a frame is accepted only
  from the node the key belongs to.
- ``server_secret_key_files``: per node, the file holding its secret key (read
  only by that node at start).
- ``client_public_keys``: the keys admitted on the client ROUTER and the PUB;
  ``client_secret_key_file`` is the secret key the ``client`` library uses.
- ``admin_key_file``: the admin key (a random token); admin requests without it
  are refused with ``unauthorized``. A reader who cannot read the file simply
  has no admin key. An inline ``[options] admin_key`` still works.

With ``curve = true`` and no ``[options] rate_limit``, the rate limit is
``SECURE_RATE_LIMIT`` requests/s (burst ``SECURE_RATE_BURST``): every player holds
the client key, so the key alone must not let one of them flood a node. Write
``rate_limit = 0`` to turn it off.

Key files are Z85 text (one line) with 0600 permissions; relative paths are
relative to the cluster file's folder. ``nodes.security`` generates and reads
them.
"""

from __future__ import annotations

import os
import re
import tomllib
from dataclasses import dataclass, field, replace
from pathlib import Path

DEFAULT_NAME = "cluster.toml"
SECURE_RATE_LIMIT = 200.0  # requests/s per client id and connection once CURVE is on
SECURE_RATE_BURST = 400
_ID = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
_Z85_KEY = re.compile(r"^[0-9a-zA-Z.\-:+=^!/*?&<>()\[\]{}@%$#]{40}$")


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
class Security:
    """The ``[security]`` table (see the module docstring); paths as written in the file."""

    curve: bool = False
    server_public_keys: dict[str, str] = field(default_factory=dict)
    server_secret_key_files: dict[str, str] = field(default_factory=dict)
    client_public_keys: tuple[str, ...] = ()
    client_secret_key_file: str | None = None
    admin_key_file: str | None = None

    def to_toml(self) -> list[str]:
        def table(d: dict[str, str]) -> str:
            return "{" + ", ".join(f'"{k}" = "{v}"' for k, v in sorted(d.items())) + "}"

        lines = ["[security]", f"curve = {'true' if self.curve else 'false'}"]
        if self.admin_key_file:
            lines.append(f"admin_key_file = {_toml_str(self.admin_key_file)}")
        if self.client_secret_key_file:
            lines.append(f"client_secret_key_file = {_toml_str(self.client_secret_key_file)}")
        lines.append("client_public_keys = [" + ", ".join(f'"{k}"' for k in self.client_public_keys)
                     + "]")
        lines.append(f"server_public_keys = {table(self.server_public_keys)}")
        files = {k: _toml_str(v)[1:-1] for k, v in self.server_secret_key_files.items()}
        lines.append(f"server_secret_key_files = {table(files)}")
        return lines


def _toml_str(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


@dataclass(frozen=True, slots=True)
class ClusterFile:
    cluster_id: str
    nodes: tuple[NodeAddress, ...]
    timing: Timing = field(default_factory=Timing)
    snapshot_interval: int = 1000
    compression: bool = True
    admin_key: str | None = None
    path: Path | None = None
    security: Security = field(default_factory=Security)
    rate_limit: float = 0.0  # requests/s per client id and per connection; 0 = unlimited
    rate_burst: int = 200
    room_grace_ms: int = 30_000  # [rooms] grace_ms: a dropped seat waits this long
    room_close_ms: int = 60_000  # [rooms] close_ms: an empty room closes this long after

    def secured(self, security: Security) -> ClusterFile:
        """This file with ``security``; one with CURVE and no rate limit gets the
        secure default (``SECURE_RATE_LIMIT``), as a file read without one does."""
        cf = replace(self, security=security)
        if security.curve and not self.rate_limit:
            cf = replace(cf, rate_limit=SECURE_RATE_LIMIT, rate_burst=SECURE_RATE_BURST)
        return cf

    def resolve(self, file: str) -> Path:
        """A path from the file, relative to the file's folder."""
        p = Path(file).expanduser()
        return p if p.is_absolute() else (self.path.parent if self.path else Path.cwd()) / p

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
        if self.rate_limit or self.security.curve:  # an explicit 0 stays 0 under CURVE
            lines += [f"rate_limit = {self.rate_limit:g}", f"rate_burst = {self.rate_burst}"]
        if self.admin_key and not self.security.admin_key_file:
            lines.append(f'admin_key = "{self.admin_key}"')
        if (self.room_grace_ms, self.room_close_ms) != (30_000, 60_000):
            lines += ["", "[rooms]", f"grace_ms = {self.room_grace_ms}",
                      f"close_ms = {self.room_close_ms}"]
        if self.security != Security():
            lines += ["", *self.security.to_toml()]
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
    security = _parse_security(doc.get("security", {}), [n.id for n in nodes], where)
    if "rate_limit" not in opts and security.curve:
        rate, burst = SECURE_RATE_LIMIT, opts.get("rate_burst", SECURE_RATE_BURST)
    else:
        rate, burst = opts.get("rate_limit", 0), opts.get("rate_burst", 200)
    if isinstance(rate, bool) or not isinstance(rate, int | float) or rate < 0:
        raise ClusterFileError(f"{where}: options.rate_limit must be a number >= 0 (requests/s)")
    if isinstance(burst, bool) or not isinstance(burst, int) or burst < 1:
        raise ClusterFileError(f"{where}: options.rate_burst must be an int >= 1")
    admin_key = opts.get("admin_key")
    if admin_key is not None and not isinstance(admin_key, str):
        raise ClusterFileError(f"{where}: options.admin_key must be a str")
    rooms = doc.get("rooms", {})
    room_ms = {}
    for key, default in (("grace_ms", 30_000), ("close_ms", 60_000)):
        value = rooms.get(key, default) if isinstance(rooms, dict) else None
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ClusterFileError(f"{where}: rooms.{key} must be an int >= 1 (milliseconds)")
        room_ms[key] = value
    cf = ClusterFile(
        cluster_id=str(cluster_id),
        nodes=tuple(nodes),
        timing=timing,
        snapshot_interval=interval,
        compression=bool(opts.get("compression", True)),
        admin_key=admin_key,
        path=path,
        security=security,
        rate_limit=float(rate),
        rate_burst=burst,
        room_grace_ms=room_ms["grace_ms"],
        room_close_ms=room_ms["close_ms"],
    )
    if security.admin_key_file and admin_key is None:
        try:
            key = cf.resolve(security.admin_key_file).read_text().strip()
        except OSError:
            key = ""  # not ours to read: this reader has no admin key (a node refuses to start)
        if key:
            cf = replace(cf, admin_key=key)
    return cf


def _parse_security(t: object, node_ids: list[str], where: str) -> Security:
    w = f"{where}: [security]"
    if not isinstance(t, dict):
        raise ClusterFileError(f"{w} must be a table")
    curve = t.get("curve", False)
    if not isinstance(curve, bool):
        raise ClusterFileError(f"{w}: curve must be true or false")

    def str_map(key: str) -> dict[str, str]:
        value = t.get(key, {})
        if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
            raise ClusterFileError(f"{w}: {key} must be a table of node id = string")
        return {str(k): v for k, v in value.items()}

    def optional_str(key: str) -> str | None:
        value = t.get(key)
        if value is not None and not (isinstance(value, str) and value):
            raise ClusterFileError(f"{w}: {key} must be a non-empty string (a file path)")
        return value

    publics = str_map("server_public_keys")
    clients = t.get("client_public_keys", [])
    if not isinstance(clients, list) or not all(isinstance(k, str) for k in clients):
        raise ClusterFileError(f"{w}: client_public_keys must be a list of strings")
    for name, key in [*publics.items(), *(("client", k) for k in clients)]:
        if not _Z85_KEY.match(key):
            raise ClusterFileError(f"{w}: the public key of {name} must be 40 Z85 chars "
                                   f"(as `arena keys` writes), got {key!r:.60}")
    if curve:
        missing = [n for n in node_ids if n not in publics]
        if missing:
            raise ClusterFileError(f"{w}: curve is on but nodes {', '.join(missing)} have no "
                                   "server_public_keys entry; run `arena keys --cluster FILE`")
        if not clients:
            raise ClusterFileError(f"{w}: curve is on but client_public_keys is empty")
    return Security(
        curve=curve, server_public_keys=publics,
        server_secret_key_files=str_map("server_secret_key_files"),
        client_public_keys=tuple(clients),
        client_secret_key_file=optional_str("client_secret_key_file"),
        admin_key_file=optional_str("admin_key_file"),
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
