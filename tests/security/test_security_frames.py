"""Messages are data, never code (issue "Proof", item 4: security).

No module of nodes/, client/ or game/ deserialises with pickle, marshal, eval or
the like, and a node drops (and counts) hostile msgpack frames -- ext types, deep
nesting, huge declared lengths -- from a holder of valid keys, and keeps serving."""

from __future__ import annotations

import ast
from collections.abc import Callable
from pathlib import Path

import msgpack
import zmq
from security_helpers import Intruder, leader_of, wait_for

from client.api import Client
from nodes import codec
from nodes.local import LocalCluster
from nodes.security import client_keys, node_keys

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("nodes", "client", "game")
# modules whose loaders rebuild arbitrary objects (code) from bytes
CODE_LOADERS = {"pickle", "cPickle", "_pickle", "marshal", "shelve", "dill", "cloudpickle",
                "jsonpickle", "yaml", "joblib"}
CODE_BUILTINS = {"eval", "exec", "compile", "__import__"}
# msgpack hooks that would turn wire data into arbitrary objects
OBJECT_HOOKS = {"ext_hook", "object_hook", "object_pairs_hook", "list_hook"}


def _findings(path: Path, root: Path) -> list[str]:
    tree = ast.parse(path.read_text(), str(path))
    out = []
    for node in ast.walk(tree):
        where = f"{path.relative_to(root)}:{getattr(node, 'lineno', 0)}"
        if isinstance(node, ast.Import):
            out += [f"{where} imports {a.name}" for a in node.names
                    if a.name.split(".")[0] in CODE_LOADERS]
        elif isinstance(node, ast.ImportFrom) and node.module \
                and node.module.split(".")[0] in CODE_LOADERS:
            out.append(f"{where} imports from {node.module}")
        elif isinstance(node, ast.Name) and node.id in CODE_BUILTINS:
            out.append(f"{where} uses {node.id}")
        elif isinstance(node, ast.Attribute) and node.attr in CODE_BUILTINS | {"loads", "load"} \
                and isinstance(node.value, ast.Name) and node.value.id in CODE_LOADERS:
            out.append(f"{where} calls {node.value.id}.{node.attr}")
        elif isinstance(node, ast.keyword) and node.arg in OBJECT_HOOKS:
            out.append(f"{where} passes {node.arg}")
    return out


def test_no_module_deserialises_with_pickle_marshal_eval_or_object_hooks() -> None:
    files = [p for pkg in PACKAGES for p in sorted((ROOT / pkg).rglob("*.py"))]
    assert len(files) > 50  # the scan really looked at the code base
    findings = [f for p in files for f in _findings(p, ROOT)]
    assert findings == []


def test_the_scan_catches_each_kind_of_code_loading(tmp_path: Path) -> None:
    sample = tmp_path / "sample.py"
    sample.write_text("import pickle\nfrom marshal import loads\nx = eval('1')\n"
                      "import msgpack\nmsgpack.unpackb(b'', ext_hook=print)\npickle.loads(b'')\n"
                      "# a comment about pickle is fine\n")
    found = {f.split(" ", 1)[1] for f in _findings(sample, tmp_path)}
    assert found == {"imports pickle", "imports from marshal", "uses eval", "passes ext_hook",
                     "calls pickle.loads"}


# --- hostile frames on a live node -------------------------------------------------------


def _hostile_frames(cid: str) -> dict[str, bytes]:
    env = msgpack.packb([1, cid, 16, 7, "intruder", "status"])[1:]  # the items, no header
    return {
        "ext type": msgpack.packb([1, cid, 16, 7, "intruder", "status",
                                   {"x": msgpack.ExtType(5, b"boom")}]),
        "timestamp ext": b"\x97" + env + b"\x81\xa1t\xd6\xff\x00\x00\x00\x01",
        "deep nesting": b"\x91" * 100_000 + b"\xc0",
        "deep body": msgpack.packb([1, cid, 16, 7, "intruder", "status",
                                    _nested(codec.MAX_BODY_DEPTH + 5)]),
        "huge str": b"\x97" + env[:-7] + b"\xdb\xff\xff\xff\xff" + b"x" * 16,
        "huge map": b"\x97" + env + b"\xdf\xff\xff\xff\xff",
        "huge array": b"\xdd\xff\xff\xff\xff\x01",
        "huge bin": b"\x97" + env + b"\xc6\xff\xff\xff\xf0" + b"\x00" * 8,
    }


def _nested(depth: int) -> dict:
    value: dict = {}
    for _ in range(depth):
        value = {"a": value}
    return value


def test_hostile_client_frames_are_dropped_counted_and_answered_while_the_node_serves(
    secure3: LocalCluster, client_for: Callable[..., Client], ctx: zmq.Context
) -> None:
    cf = secure3.cluster
    c = client_for(secure3)
    lead = wait_for(lambda: leader_of(c), 5, "a leader")
    before = sum(c.status(lead)["counters"]["client_dropped"].values())
    frames = _hostile_frames(cf.cluster_id)
    # an insider: the clients' own key pair
    intruder = Intruder(ctx, zmq.DEALER, cf.node(lead).client, client_keys(cf),
                        cf.security.server_public_keys[lead])
    try:
        for name, frame in frames.items():
            intruder.sock.send(frame)
            assert intruder.sock.poll(3000), f"no answer to the {name} frame"
            resp = codec.decode_response(intruder.sock.recv(), cf.cluster_id)
            assert not resp.ok and resp.error and resp.error.code == "protocol", name
    finally:
        intruder.close()
    after = c.status(lead)["counters"]["client_dropped"]
    assert sum(after.values()) - before == len(frames), after
    c.put("still-serving", True)
    assert c.get("still-serving") is True


def test_hostile_peer_frames_are_dropped_and_counted_while_the_node_serves(
    secure3: LocalCluster, client_for: Callable[..., Client], ctx: zmq.Context
) -> None:
    cf = secure3.cluster
    c = client_for(secure3)
    lead = wait_for(lambda: leader_of(c), 5, "a leader")
    target = next(n for n in cf.ids() if n != lead)
    s = c.status(target)
    before = sum(s["counters"]["peer_dropped"].values())
    frames = _hostile_frames(cf.cluster_id)
    # a (broken or hostile) peer holding a real node key
    holder = next(n for n in cf.ids() if n not in (lead, target))
    intruder = Intruder(ctx, zmq.DEALER, cf.node(target).raft, node_keys(cf, holder),
                        cf.security.server_public_keys[target], identity=holder + "-x")
    try:
        for frame in frames.values():
            intruder.sock.send(frame)
        wait_for(lambda: sum(c.status(target)["counters"]["peer_dropped"].values()) - before
                 >= len(frames), 3, "every hostile peer frame dropped")
    finally:
        intruder.close()
    after = c.status(target)
    assert after["term"] == s["term"] and after["leader"] == lead
    assert after["counters"]["peer_dropped"].get("malformed", 0) >= len(frames)
    c.put("peer-still-serving", True)
    assert c.get("peer-still-serving") is True
