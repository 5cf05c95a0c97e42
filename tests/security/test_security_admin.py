"""Admin commands need the admin key (issue "Proof", item 4: security): a missing or
wrong key is answered ``unauthorized`` and changes nothing, on the wire and in the CLI."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner
from security_helpers import leader_of, wait_for

from client.api import Client, Rejected
from nodes.cli import main
from nodes.local import LocalCluster


def _snapshot(c: Client, ids: list[str]) -> dict[str, tuple]:
    out = {}
    for nid in ids:
        s = c.status(nid)
        assert s is not None
        out[nid] = (s["term"], s["leader"], s["voters"], s["learners"], s["blocked"])
    return out


def test_admin_requests_without_the_right_key_are_refused_and_change_nothing(
    secure3: LocalCluster, client_for: Callable[..., Client]
) -> None:
    cf = secure3.cluster
    admin = client_for(secure3)  # the admin key comes from the cluster's key file
    assert admin.admin_key and admin.admin_key == cf.resolve(
        cf.security.admin_key_file or "").read_text().strip()
    lead = wait_for(lambda: leader_of(admin), 5, "a leader")
    follower = next(n for n in cf.ids() if n != lead)
    actions = [
        ("partition", {"nodes": [lead]}),
        ("heal", {}),
        ("transfer", {"to": follower}),
        ("add_node", {"id": "n9", "raft": "tcp://127.0.0.1:1", "client": "tcp://127.0.0.1:2",
                      "pub": "tcp://127.0.0.1:3"}),
        ("remove_node", {"id": follower}),
        ("ping", {}),
    ]
    before = _snapshot(admin, cf.ids())
    for key in ("", "not-the-key", admin.admin_key[:-1]):
        outsider = client_for(secure3, admin_key=key)
        for action, args in actions:
            for nid in (lead, follower):
                with pytest.raises(Rejected) as refused:
                    outsider.admin(action, args, node=nid)
                assert refused.value.code == "unauthorized", (key, action)
    assert _snapshot(admin, cf.ids()) == before
    # the right key works: ping, then a partition of one node that heal undoes
    assert admin.admin("ping", {}, node=lead)["admin"] is True
    assert admin.admin("partition", {"nodes": [follower]}, node=follower)["blocked"]
    assert admin.admin("heal", {}, node=follower) == {"blocked": []}


def test_the_cli_needs_the_admin_key_for_admin_and_process_commands(
    secure3: LocalCluster, client_for: Callable[..., Client], tmp_path: Path
) -> None:
    path = str(secure3.cluster_path)
    runner = CliRunner()
    c = client_for(secure3)
    lead = wait_for(lambda: leader_of(c), 5, "a leader")
    follower = next(n for n in secure3.cluster.ids() if n != lead)
    pid = secure3.pid(follower)

    r = runner.invoke(main, ["transfer", follower, "--cluster", path, "--admin-key", "wrong"],
                      env={"ARENA_ADMIN_KEY": None})
    assert r.exit_code == 1 and "unauthorized" in r.output
    r = runner.invoke(main, ["kill", follower, "--cluster", path], env={"ARENA_ADMIN_KEY": "bad"})
    assert r.exit_code == 1 and "unauthorized" in r.output
    r = runner.invoke(main, ["stop", follower, "--cluster", path, "--admin-key", "bad"])
    assert r.exit_code == 1 and "unauthorized" in r.output
    assert secure3.alive(follower) and secure3.pid(follower) == pid

    # a copy of the cluster file whose admin key file this user cannot read: no key at all
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    shutil.copy(secure3.cluster_path, elsewhere / "cluster.toml")
    shutil.copy(secure3.directory / "procs.json", elsewhere / "procs.json")
    r = runner.invoke(main, ["restart", follower, "--cluster", str(elsewhere / "cluster.toml")],
                      env={"ARENA_ADMIN_KEY": None})
    assert r.exit_code == 1 and "unauthorized" in r.output
    assert secure3.alive(follower) and secure3.pid(follower) == pid

    # with the key (from the cluster's key file) the admin request goes through
    r = runner.invoke(main, ["heal", "--cluster", path], env={"ARENA_ADMIN_KEY": None})
    assert r.exit_code == 0 and "healed" in r.output and "unauthorized" not in r.output


@pytest.mark.parametrize("command", ["kill", "stop", "restart", "pause", "resume"])
def test_process_commands_say_the_admin_key_does_not_guard_local_signals(command: str) -> None:
    """Issue 11, item 4: with a copy of the cluster file that lacks admin_key_file,
    arena kill and pause work without the key; the help says what the key protects
    (admin frames to nodes) and what it does not (local signals)."""
    out = CliRunner().invoke(main, [command, "--help"], terminal_width=200)
    assert out.exit_code == 0
    text = " ".join(out.output.split())
    assert "the operating system decides who may signal it, not the admin key" in text
    assert "The admin key protects the admin frames sent to nodes" in text
    doc = " ".join((Path(__file__).parents[2] / "docs" / "SECURITY.md").read_text().split())
    assert "The admin key does **not** protect the node processes themselves" in doc
