"""``arena keys`` and the cluster file's ``[security]`` table (issue "Proof", item 4)."""

from __future__ import annotations

import stat
import tomllib
from dataclasses import replace
from pathlib import Path

import pytest
import zmq
from click.testing import CliRunner

from nodes import clusterfile
from nodes.cli import main
from nodes.local import make_cluster_file
from nodes.security import (
    SecurityError,
    admin_key_ok,
    client_keys,
    node_keys,
    read_key_file,
)


def _mode(p: Path) -> int:
    return stat.S_IMODE(p.stat().st_mode)


def test_pyzmq_has_curve() -> None:
    assert zmq.has("curve")


def test_keys_for_n_nodes_writes_0600_z85_files_and_prints_the_table(tmp_path: Path) -> None:
    runner = CliRunner()
    r = runner.invoke(main, ["keys", "--nodes", "3", "--dir", str(tmp_path / "k")])
    assert r.exit_code == 0, r.output
    keys = tmp_path / "k"
    names = {p.name for p in keys.iterdir()}
    assert {"n1.secret", "n2.public", "n3.secret", "client.secret", "client.public",
            "admin.key"} <= names
    assert _mode(keys) == 0o700
    for p in keys.iterdir():
        if p.name != "security.toml":
            assert _mode(p) == 0o600, p
            assert len(p.read_text().strip()) == 40  # Z85 of 32 bytes
    table = tomllib.loads((keys / "security.toml").read_text())["security"]
    assert table["curve"] is True and sorted(table["server_public_keys"]) == ["n1", "n2", "n3"]
    assert table["server_public_keys"]["n2"] == (keys / "n2.public").read_text().strip()
    # a second run would replace keys every node uses: only with --force
    r = runner.invoke(main, ["keys", "--nodes", "3", "--dir", str(keys)])
    assert r.exit_code == 1 and "--force" in r.output
    assert runner.invoke(main, ["keys", "--nodes", "3", "--dir", str(keys), "--force"]).exit_code == 0


def test_keys_for_a_cluster_file_record_the_security_table(tmp_path: Path) -> None:
    cf = make_cluster_file(tmp_path / "c", 3)
    assert not cf.security.curve
    r = CliRunner().invoke(main, ["keys", "--cluster", str(cf.path)])
    assert r.exit_code == 0, r.output
    cf2 = clusterfile.load(tmp_path / "c" / "cluster.toml")
    sec = cf2.security
    assert sec.curve and sorted(sec.server_public_keys) == ["n1", "n2", "n3"]
    assert sec.server_secret_key_files["n1"] == "keys/n1.secret"  # relative to the file
    for nid in cf2.ids():
        pair = node_keys(cf2, nid)
        assert pair is not None and pair.public == sec.server_public_keys[nid]
    client = client_keys(cf2)
    assert client is not None and client.public in sec.client_public_keys
    assert cf2.admin_key == (tmp_path / "c" / "keys" / "admin.key").read_text().strip()
    # everything else is kept, and the file round-trips
    assert cf2.nodes == cf.nodes and cf2.cluster_id == cf.cluster_id
    assert clusterfile.parse(cf2.to_toml(), cf2.path) == cf2


def test_a_plaintext_cluster_file_needs_no_keys(tmp_path: Path) -> None:
    cf = make_cluster_file(tmp_path, 2, rate_limit=25, rate_burst=5)
    assert node_keys(cf, "n1") is None and client_keys(cf) is None
    assert (cf.rate_limit, cf.rate_burst) == (25.0, 5)
    assert "[security]" not in cf.to_toml()


def test_curve_turns_on_a_rate_limit_unless_the_file_sets_one(tmp_path: Path) -> None:
    """Issue 11: every player holds the client key, so with CURVE on and no limit
    written, each client id and each connection gets SECURE_RATE_LIMIT; 0 turns it off."""
    cf = make_cluster_file(tmp_path / "a", 2, secure=True)  # what arena up --secure writes
    assert (cf.rate_limit, cf.rate_burst) == (clusterfile.SECURE_RATE_LIMIT,
                                              clusterfile.SECURE_RATE_BURST)
    assert f"rate_limit = {clusterfile.SECURE_RATE_LIMIT:g}" in cf.path.read_text()
    text = cf.to_toml()
    unwritten = "\n".join(line for line in text.splitlines()
                          if not line.startswith(("rate_limit", "rate_burst")))
    assert clusterfile.parse(unwritten).rate_limit == clusterfile.SECURE_RATE_LIMIT
    off = clusterfile.parse(text.replace("rate_limit = 200", "rate_limit = 0"))
    assert off.rate_limit == 0.0
    assert clusterfile.parse(off.to_toml()).rate_limit == 0.0  # an explicit 0 survives a write
    plain = make_cluster_file(tmp_path / "b", 2)
    assert plain.rate_limit == 0.0 and clusterfile.parse(plain.to_toml()).rate_limit == 0.0


def test_arena_keys_turns_on_the_rate_limit_and_says_so(tmp_path: Path) -> None:
    cf = make_cluster_file(tmp_path, 2)
    out = CliRunner().invoke(main, ["keys", "--cluster", str(cf.path)])
    assert out.exit_code == 0, out.output
    assert "rate limit: 200 requests/s per client id and per connection" in out.output
    assert clusterfile.load(cf.path).rate_limit == clusterfile.SECURE_RATE_LIMIT


def test_a_secret_key_readable_by_others_is_refused(tmp_path: Path) -> None:
    cf = make_cluster_file(tmp_path, 1, secure=True)
    secret = cf.resolve(cf.security.server_secret_key_files["n1"])
    secret.chmod(0o644)
    with pytest.raises(SecurityError, match="chmod 600"):
        node_keys(cf, "n1")
    secret.chmod(0o600)
    secret.write_text("not a key\n")
    secret.chmod(0o600)
    with pytest.raises(SecurityError, match="Z85 CURVE secret key"):
        node_keys(cf, "n1")
    with pytest.raises(SecurityError, match="cannot read"):
        read_key_file(tmp_path / "missing.key", "admin key")


def test_a_secret_key_of_another_node_is_refused(tmp_path: Path) -> None:
    cf = make_cluster_file(tmp_path, 2, secure=True)
    files = dict(cf.security.server_secret_key_files)
    files["n1"] = files["n2"]
    swapped = replace(cf, security=replace(cf.security, server_secret_key_files=files))
    with pytest.raises(SecurityError, match="does not match the public key"):
        node_keys(swapped, "n1")


def test_the_security_table_is_checked(tmp_path: Path) -> None:
    cf = make_cluster_file(tmp_path, 2, secure=True)
    text = cf.to_toml()
    one_key = text.replace(f'"n2" = "{cf.security.server_public_keys["n2"]}", ', "")
    one_key = one_key.replace(f', "n2" = "{cf.security.server_public_keys["n2"]}"', "")
    with pytest.raises(clusterfile.ClusterFileError, match="n2 have no server_public_keys"):
        clusterfile.parse(one_key)
    with pytest.raises(clusterfile.ClusterFileError, match="40 Z85 chars"):
        clusterfile.parse(text.replace(cf.security.client_public_keys[0], "short"))
    with pytest.raises(clusterfile.ClusterFileError, match="rate_limit"):
        clusterfile.parse(text.replace("rate_limit = 200", "rate_limit = -1"))


def test_admin_keys_compare_exactly() -> None:
    assert admin_key_ok(None, None) and admin_key_ok("", "anything")  # no key: open, as before
    assert admin_key_ok("k3y", "k3y")
    assert not admin_key_ok("k3y", None) and not admin_key_ok("k3y", "k3") \
        and not admin_key_ok("k3y", 123) and not admin_key_ok("k3y", "")
