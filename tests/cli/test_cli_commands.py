"""The ``arena`` command line off the happy path (issue 10, item 9): group-level
``--cluster`` / ``--json``, what a read that got no answer says, and the status
table at 80 columns."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner
from rich.console import Console

from client.api import Client
from nodes.cli import main
from nodes.clusterfile import Timing
from nodes.local import LocalCluster, make_cluster_file
from nodes.status_view import status_table

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def cluster3(tmp_path: Path) -> Iterator[LocalCluster]:
    lc = LocalCluster.create(tmp_path / "cluster", 3, timing=Timing(election_ms=(150.0, 300.0)))
    try:
        lc.start_all()
        with Client(lc.cluster, deadline=5.0) as c:
            c.wait_for_leader(10.0)
        yield lc
    finally:
        lc.kill_all()  # by pid, pass or fail


def _run(args: list[str], env: dict[str, str] | None = None) -> tuple[int, str]:
    result = CliRunner().invoke(main, args, env={"ARENA_CLUSTER": None, **(env or {})})
    return result.exit_code, result.output


def test_cluster_and_json_may_come_before_the_command_and_the_commands_own_wins(
        cluster3: LocalCluster, tmp_path: Path) -> None:
    good = str(cluster3.cluster_path)
    missing = str(tmp_path / "no-such-cluster.toml")
    code, out = _run(["--cluster", good, "--json", "game"])
    assert code == 0, out
    assert isinstance(json.loads(out), dict)  # the game state, as JSON
    code, out = _run(["--cluster", missing, "game", "--cluster", good, "--json"])
    assert code == 0, out  # the command's own option wins
    code, out = _run(["--cluster", good, "kv", "get", "absent", "--json"], {"ARENA_CLUSTER": missing})
    assert code == 0 and json.loads(out)["found"] is False, out  # the flag beats the environment
    code, out = _run(["--cluster", missing, "status"])
    assert code != 0 and "no-such-cluster.toml" in out, out  # passed down, not "No such option"


def test_a_read_without_an_answer_says_it_changed_nothing(tmp_path: Path) -> None:
    silent = make_cluster_file(tmp_path, 3)  # free ports, no node started on them
    path = str(tmp_path / "cluster.toml")
    assert [n.id for n in silent.nodes] == ["n1", "n2", "n3"]
    for args in (["game"], ["kv", "get", "k"]):
        code, out = _run(["--cluster", path, *args, "--timeout", "0.5"])
        assert code == 1, out
        assert "no node answered the read within 0.5 s" in out, out
        assert "changed nothing" in out and "may or may not" not in out, out


ROWS = [
    {"id": "n1", "address": "tcp://127.0.0.1:41234", "reachable": True, "role": "pre-candidate",
     "term": 123, "leader": None, "commit": 1234567, "applied": 1234567, "blocked": ["n2"]},
    {"id": "n2", "address": "tcp://127.0.0.1:41237", "reachable": True, "role": "leader",
     "term": 123, "leader": "n2", "commit": 1234567, "applied": 1234560, "blocked": []},
    {"id": "n3", "address": "tcp://127.0.0.1:41240", "reachable": False},
]


def _render(width: int) -> str:
    console = Console(width=width, record=True, color_system=None, file=open("/dev/null", "w"))  # noqa: SIM115
    console.print(status_table(ROWS, width=width))
    console.file.close()
    return console.export_text()


def test_the_status_table_at_80_columns_cuts_no_address_role_or_number() -> None:
    text = _render(80)
    assert max(len(line) for line in text.splitlines()) <= 80
    assert "…" not in text
    for row in ROWS:
        host_port = row["address"].removeprefix("tcp://")
        assert re.search(rf"{row['id']}\s+{re.escape(host_port)}\s", text), text
    assert "pre-candidate*" in text and "* partitioned" in text and "tcp://" in text
    for number in ("1234567", "1234560", "123"):
        assert number in text
    roomy = _render(140)  # room enough: the full layout, scheme and all
    assert "tcp://127.0.0.1:41234" in roomy and "pre-candidate (partitioned)" in roomy


def test_arena_status_at_80_columns_shows_whole_addresses_and_roles(
        cluster3: LocalCluster) -> None:
    code, out = _run(["status", "--cluster", str(cluster3.cluster_path)], {"COLUMNS": "80"})
    assert code == 0, out
    assert max(len(line) for line in out.splitlines()) <= 80, out
    assert "…" not in out
    for n in cluster3.cluster.nodes:
        assert n.client.removeprefix("tcp://") in out, out
    assert "leader" in out and "follower" in out


def test_the_readme_lists_the_failover_demo() -> None:
    readme = (ROOT / "README.md").read_text()
    assert (ROOT / "scripts" / "demo-failover").exists()
    assert "scripts/demo-failover" in readme
