"""Issue 11, item 4: a full disk stops a node with a message, not a traceback. The
message names the data directory and says that nothing acknowledged was lost
(acknowledgements follow the fsync), the exit status is non-zero, and after a
restart with space again every acknowledged write is there."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from integration_helpers import wait_for

from client.api import Client
from client.link import ClientError
from nodes.local import LocalCluster
from nodes.node_main import EXIT_DISK_FULL

# A node whose storage fails with ENOSPC once the flag file exists (a fake full disk:
# no tmpfs, no root).
FULL_DISK_NODE = r"""
import errno, os, sys
from pathlib import Path
import nodes.server as server

FLAG = Path(os.environ["ARENA_TEST_DISK_FULL_FLAG"])

class FullDisk(server.DiskStorage):
    def save(self, *args, **kwargs):
        if FLAG.exists():
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return super().save(*args, **kwargs)

server.DiskStorage = FullDisk
from nodes.cli import main
main(sys.argv[1:], prog_name="arena")
"""


def test_a_full_disk_stops_the_node_with_a_message_and_loses_nothing_acknowledged(
        make_cluster: Callable[..., LocalCluster], tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    lc = make_cluster(1)
    lc.kill_all()  # restarted below on the fake disk
    flag = tmp_path / "disk-is-full"
    normal = lc.command
    monkeypatch.setattr(lc, "command", lambda nid: [sys.executable, "-c", FULL_DISK_NODE,
                                                    *normal(nid)[3:]])
    monkeypatch.setenv("ARENA_TEST_DISK_FULL_FLAG", str(flag))
    lc.start("n1")
    proc = lc.procs["n1"]
    assert isinstance(proc, subprocess.Popen)
    with Client(lc.cluster, request_timeout=0.3, deadline=2.0) as c:
        c.wait_for_leader(10)
        assert c.put("acknowledged", 1)["ok"]
        flag.touch()
        with pytest.raises(ClientError):
            c.put("never-acknowledged", 2)
    assert proc.wait(10) == EXIT_DISK_FULL
    log = lc.log_path("n1").read_text()
    assert "Traceback" not in log, log
    data_dir = str(lc.cluster.data_dir("n1"))
    assert f"data directory {data_dir} is full" in log, log
    assert "Nothing acknowledged was lost" in log and "arena restart n1" in log, log

    flag.unlink()  # space again
    monkeypatch.setattr(lc, "command", normal)
    lc.start("n1")
    with Client(lc.cluster) as c:
        wait_for(lambda: c.get("acknowledged") == 1, 10, "the acknowledged write after restart")
