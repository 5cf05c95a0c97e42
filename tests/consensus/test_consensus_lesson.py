"""The lesson's code, translated to the ``Consensus`` API as a reader would
(issue 10, item 8): each trap it fell in is refused with a clear error or now
works as the lesson means it."""

from __future__ import annotations

from typing import Any

import pytest
from consensus_helpers import ConsensusCluster, Recorder, run, wait_until

from nodes import Consensus, InProcessNetwork, InvalidArgument, NodeInfo
from nodes.consensus.directory import Directory
from nodes.statemachine import ApplyContext

# --- options: seconds, not milliseconds; clear errors for nonsense -----------------------


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"timeout": 3000}, r"timeout=3000 is 3000 seconds.*not milliseconds.*timeout=3\b"),
    ({"heartbeat_interval": 1000}, r"heartbeat_interval=1000 .*not milliseconds"),
    ({"election_timeout": (150, 300)}, r"election_timeout=150 .*not milliseconds"),
    ({"batch_window": 2}, r"batch_window=2 .*not milliseconds"),
    ({"failure_timeout": 5000}, r"failure_timeout=5000 .*not milliseconds"),
])
def test_durations_given_in_milliseconds_are_refused_naming_the_unit(
        kwargs: dict[str, Any], match: str) -> None:
    with pytest.raises(InvalidArgument, match=match):
        Consensus("x", **kwargs)


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"snapshot_interval": -5}, r"snapshot_interval must be a whole number, 0 or more"),
    ({"snapshot_interval": 2.5}, r"snapshot_interval must be a whole number"),
    ({"batch_window": -1}, r"batch_window must be zero or more"),
    ({"compression": "yes"}, r"compression must be True or False, got 'yes'"),
    ({"batch_updates": 1}, r"batch_updates must be True or False"),
    ({"quorum": "0.5"}, r"quorum must be a number in \(0, 1\].*got '0.5'"),
    ({"quorum": 1.5}, r"quorum must be a number in \(0, 1\]"),
    ({"timeout": "3"}, r"timeout must be a number of seconds"),
    ({"election_timeout": 0.3}, r"election_timeout must be \(min, max\)"),
])
def test_nonsense_options_are_refused_with_a_clear_error(kwargs: dict[str, Any],
                                                        match: str) -> None:
    with pytest.raises(InvalidArgument, match=match):
        Consensus("x", mechanism="simple_majority" if "quorum" in kwargs else "raft", **kwargs)


def test_zero_batch_window_and_snapshot_interval_still_mean_off() -> None:
    c = Consensus("x", batch_window=0, snapshot_interval=0, timeout=600)
    assert c.options.batch_window == 0 and c.options.snapshot_interval == 0


# --- nodes: NodeInfo objects with metadata ------------------------------------------------


def test_get_nodes_and_get_leader_give_node_objects_as_the_lesson_uses_them() -> None:
    async def scenario() -> None:
        async with ConsensusCluster(seed=91) as cl:
            leader_id = await cl.leader()
            leader = cl["n2"].get_leader()
            assert isinstance(leader, NodeInfo) and leader.id == leader_id
            assert leader.role == "leader" and leader.status == "active"
            ids = [node.id for node in cl["n2"].get_nodes()]  # the lesson's loop
            assert ids == ["n1", "n2", "n3"]
            assert cl["n2"].get_node("n2").is_self and cl["n2"].get_node("n9") is None

    run(scenario())


def test_add_node_keeps_metadata_and_every_member_sees_it() -> None:
    async def scenario() -> None:
        async with ConsensusCluster(seed=92) as cl:
            leader = await cl.leader()
            newcomer = Consensus("n4", transport=cl.net, join=True, seed=92)
            cl.extra.append(newcomer)
            newcomer.start()
            follower = next(i for i in cl.ids if i != leader)
            result = await cl[follower].add_node("n4", metadata={"region": "eu-west"})
            assert result.accepted, result
            await wait_until(
                lambda: all((n := cl[i].get_node("n4")) is not None
                            and n.metadata == {"region": "eu-west"} for i in cl.ids),
                3.0, "n4's metadata on every member")
            assert cl[leader].get_node("n4").as_dict()["metadata"] == {"region": "eu-west"}

    run(scenario())


def test_add_node_takes_the_lessons_mapping_and_refuses_malformed_ones() -> None:
    async def scenario() -> None:
        net = InProcessNetwork()
        c = Consensus("a", transport=net)
        c.start()
        try:
            added = await c.add_node({"id": "b", "address": "tcp://10.0.0.2:7000",
                                      "metadata": {"region": "us-east"}})
            assert added.accepted
            b = c.get_node("b")
            assert b is not None and b.address == "tcp://10.0.0.2:7000"
            assert b.metadata == {"region": "us-east"}
            with pytest.raises(InvalidArgument, match="unknown field.*colour"):
                c.add_node({"id": "c", "colour": "red"})
            with pytest.raises(InvalidArgument, match="needs the node's 'id'"):
                c.add_node({"address": "tcp://10.0.0.3:7000"})
            with pytest.raises(InvalidArgument, match="node_id must be a non-empty str"):
                c.add_node(42)  # type: ignore[arg-type]
            with pytest.raises(InvalidArgument, match="metadata must be a mapping"):
                c.add_node("d", metadata=["eu"])  # type: ignore[arg-type]
            with pytest.raises(InvalidArgument, match="cannot be replicated"):
                c.add_node("d", metadata={"region": object()})
        finally:
            await c.stop()

    run(scenario())


def test_the_address_book_snapshot_keeps_metadata_and_reads_the_old_layout() -> None:
    book = Directory()
    ctx = ApplyContext(1, 1, 0, "c")
    assert book.apply({"op": "set", "id": "n4", "address": "tcp://h:1",
                       "metadata": {"region": "eu"}}, ctx)[0] == {"ok": True}
    assert book.apply({"op": "set", "id": "n5", "metadata": {"zone": "b"}}, ctx)[0] == {"ok": True}
    assert book.apply({"op": "set", "id": "n6"}, ctx)[0]["error"] == "bad_command"
    restored = Directory()
    restored.restore(book.snapshot())
    assert restored.as_dict() == {"n4": "tcp://h:1"}
    assert restored.metadata_dict() == {"n4": {"region": "eu"}, "n5": {"zone": "b"}}
    old = Directory()
    old.restore([["n1", "tcp://h:2"]])  # written before metadata existed
    assert old.as_dict() == {"n1": "tcp://h:2"} and old.metadata_dict() == {}


# --- events and subscriptions ---------------------------------------------------------------


@pytest.mark.parametrize("mechanism", ["raft", "simple_majority"])
def test_log_appended_carries_the_entrys_key(mechanism: str) -> None:
    async def scenario() -> None:
        async with ConsensusCluster(mechanism=mechanism, seed=93) as cl:
            if mechanism == "raft":
                await cl.leader()
            log = Recorder(cl["n1"], "log:appended")
            assert await cl["n1"].propose("player_score", 100)
            await wait_until(lambda: any(d.get("key") == "player_score"
                                         for _, d in log.of("log:appended")),
                             3.0, "log:appended for player_score")
            args, details = next((a, d) for a, d in log.of("log:appended")
                                 if d["key"] == "player_score")
            assert details["op"] == "put" and args[0] >= 1

    run(scenario())


def test_subscribe_gives_a_one_parameter_callback_the_value() -> None:
    async def scenario() -> None:
        async with ConsensusCluster(seed=94) as cl:
            leader = await cl.leader()
            values: list[Any] = []
            pairs: list[tuple[Any, Any]] = []
            full: list[tuple[Any, ...]] = []
            cl[leader].subscribe("player_score", lambda value: values.append(value))
            cl[leader].subscribe("player_score", lambda new, old: pairs.append((new, old)))
            cl[leader].subscribe("player_score", lambda key, new, old: full.append((key, new, old)))
            assert await cl[leader].propose("player_score", 100)
            assert await cl[leader].propose("player_score", 120)
            assert values == [100, 120]
            assert pairs == [(100, None), (120, 100)]
            assert full == [("player_score", 100, None), ("player_score", 120, 100)]
            with pytest.raises(InvalidArgument, match=r"'\*'.*callback\(key, new, old\)"):
                cl[leader].subscribe("*", lambda value: None)
            with pytest.raises(InvalidArgument, match="0 positional"):
                cl[leader].subscribe("player_score", lambda: None)

    run(scenario())


# --- DESIGN.md, "The seed's API, in Python", run as written -------------------------------

DESIGN_EVENTS = ("leader:elected", "state:changed", "node:unreachable", "node:reconnected",
                 "partition:detected", "partition:healed", "vote:requested", "vote:granted",
                 "log:appended", "consensus:accepted")


def test_the_design_pages_api_snippet_runs_as_written() -> None:
    """Every call of DESIGN.md's snippet, in its order. The one adaptation is the
    one its last line names: the two nodes talk through "bring your own
    transport" (``set_message_sender`` / ``handle_message``), set before
    ``start()`` as that method's docstring says, since the snippet gives no
    transport; the tcp addresses are then only recorded."""

    async def scenario() -> None:
        nodes: dict[str, Consensus] = {}

        def sender(me: str) -> Any:
            def send(to: str, data: bytes) -> None:
                if to in nodes:
                    nodes[to].handle_message(me, data)
            return send

        def make(node_id: str) -> Consensus:
            return Consensus(node_id, mechanism="raft", timeout=3.0,
                             heartbeat_interval=0.05, election_timeout=(0.15, 0.30),
                             batch_updates=True, batch_window=0.002, compression=True,
                             snapshot_interval=1000)

        c, other = make("node-001"), make("node-002")
        nodes.update({"node-001": c, "node-002": other})
        c.set_message_sender(sender("node-001"))
        other.set_message_sender(sender("node-002"))
        elected: list[str] = []
        changes: list[Any] = []
        try:
            c.on("leader:elected", lambda leader_id: elected.append(leader_id))
            for event in DESIGN_EVENTS:
                c.on(event, lambda *args: None)
            c.start(); c.add_node("node-002", "tcp://127.0.0.1:5002")  # noqa: E702
            other.start(); other.add_node("node-001", "tcp://127.0.0.1:5001")  # noqa: E702
            ok = await c.propose("player_score", 100)
            assert ok is True and elected
            result = await c.propose_with_result("setting", "new")
            assert result.accepted and result.key == "setting" and result.error is None
            assert result.proposal_id and result.quorum_required == 2
            assert (result.votes.for_, result.votes.against, result.votes.total) == (2, 0, 2)
            assert c.get("player_score") == 100
            c.subscribe("player_score", lambda value: changes.append(value))
            assert await c.propose("player_score", 110)
            assert changes == [110]
            assert [n.id for n in c.get_nodes()] == ["node-001", "node-002"]
            assert c.get_node("node-002").address == "tcp://127.0.0.1:5002"
            leader = c.get_leader()
            assert leader is not None and leader.id in nodes
            assert c.is_leader() == (leader.id == "node-001")
            assert c.get_node_id() == "node-001"
            debug = c.get_debug_state()
            assert {"current_term", "role", "leader_id", "commit_index", "log_length"} <= set(debug)
            assert (await c.remove_node("node-002")).accepted
            await wait_until(lambda: [n.id for n in c.get_nodes()] == ["node-001"], 3.0,
                             "node-002 gone from node-001's view")
        finally:
            for node in nodes.values():
                await node.stop()

    run(scenario())
