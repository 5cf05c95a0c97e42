"""Compose one node process: the key-value machine, the game's machines (the single
table ``game`` and the ``rooms``), the server,
and logs that carry the node id, term and role on every line.

A full disk (ENOSPC) stops the node with a message naming its data directory and
exit status ``EXIT_DISK_FULL``, not a traceback."""

from __future__ import annotations

import logging
import secrets
from pathlib import Path

from game.machine import GameMachine, seed_from
from game.rooms_machine import RoomsMachine

from .clusterfile import ClusterFile
from .kv import KeyValue
from .rooms_feed import RoomsFeed
from .server import DiskFull, NodeOptions, NodeServer, is_disk_full

EXIT_DISK_FULL = 3
log = logging.getLogger("arena.node")


class _RaftContext(logging.Filter):
    """Adds term and role to every record, read from the running server."""

    def __init__(self) -> None:
        super().__init__()
        self.server: NodeServer | None = None

    def filter(self, record: logging.LogRecord) -> bool:
        s = self.server
        record.term = s.raft.term if s else 0
        record.role = s.raft.role.value if s else "starting"
        return True


def run_node(cluster: ClusterFile, node_id: str, data_dir: Path | None = None,
             fsync: bool = True, rate_limit: float = 0.0, log_level: str = "INFO",
             join: bool = False) -> None:
    ctx = _RaftContext()
    handler = logging.StreamHandler()
    handler.addFilter(ctx)
    handler.setFormatter(logging.Formatter(
        f"%(asctime)s %(levelname)s node={node_id} term=%(term)s role=%(role)s "
        "%(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(getattr(logging, log_level.upper(), logging.INFO))
    opts = NodeOptions(
        node_id=node_id, cluster=cluster,
        data_dir=data_dir or cluster.data_dir(node_id),
        fsync=fsync, rate_limit_per_s=rate_limit, join=join,
    )
    seed = seed_from(cluster.cluster_id)
    rooms = RoomsMachine(  # the leader draws the secret
        seed=seed, entropy=secrets.token_hex,
        grace_ms=cluster.room_grace_ms, close_ms=cluster.room_close_ms)
    machines = [KeyValue(), GameMachine(seed=seed), rooms]
    try:
        try:
            server = NodeServer(opts, machines, feeds={"rooms": RoomsFeed()})
        except OSError as e:  # opening the storage writes too
            if is_disk_full(e):
                raise DiskFull(node_id, opts.data_dir, e) from e
            raise
        ctx.server = server
        server.run()
    except DiskFull as e:
        log.critical("%s", e)
        raise SystemExit(EXIT_DISK_FULL) from None
