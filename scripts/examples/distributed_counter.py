"""A replicated counter (raft): increments and decrements from any node, the same
value everywhere, through a node failure, a partition, and an atomic batch.

1. Every node adds to the team score concurrently; all agree on the total.
2. The leader crashes; the others elect a new one and keep counting.
3. (in-process only) One node is cut off: it cannot count alone, the majority
   can; once healed it catches up.
4. An atomic batch moves 10 points from red to blue, only if red has them:
   both counters change, or neither.

    .venv/bin/python scripts/examples/distributed_counter.py [--zmq]
"""

from __future__ import annotations

import asyncio

from _cluster import make_cluster, parse_args, say, start, stop, until

from nodes import ConsensusError


async def main() -> None:
    args = parse_args(__doc__ or "")
    ids = ["n1", "n2", "n3", "n4", "n5"]
    nodes, net = make_cluster(ids, args.zmq, timeout=2.0)
    leader = await start(nodes)
    assert leader is not None
    try:
        say("1. 5 nodes x 20 increments of +2, and 10 decrements, all at once")
        ups = [nodes[i].increment("score", 2) for i in ids for _ in range(20)]
        downs = [nodes[i].decrement("score") for i in ids[:2] for _ in range(5)]
        await asyncio.gather(*ups, *downs)
        await until(lambda: all(c.get("score") == 190 for c in nodes.values()))
        say(f"   score on every node: {[c.get('score') for c in nodes.values()]}")

        say(f"2. the leader {leader} crashes")
        await nodes[leader].stop()
        alive = {i: c for i, c in nodes.items() if i != leader}
        any_node = next(iter(alive.values()))
        await until(lambda: any_node.get_leader_id() not in (None, leader))
        new_leader = any_node.get_leader()
        say(f"   new leader: {new_leader.id} at {new_leader.address or 'in-process'}")
        await asyncio.gather(*(c.increment("score") for c in alive.values()))
        await until(lambda: all(c.get("score") == 194 for c in alive.values()))
        say(f"   score on the survivors: {[c.get('score') for c in alive.values()]}")

        if net is not None:
            loner = next(i for i in alive if i != any_node.get_leader_id())
            say(f"3. {loner} is cut off from the others")
            net.isolate(loner)
            try:
                await alive[loner].increment("score", 1000, timeout=0.5)
                raise AssertionError("a minority must not be able to count")
            except ConsensusError as exc:
                say(f"   {loner} alone cannot count: {exc}")
            majority = [c for i, c in alive.items() if i != loner]
            value = await majority[0].increment("score", 6)
            say(f"   the majority keeps counting: score={value}")
            net.heal()
            await until(lambda: alive[loner].get("score") == 200)
            say(f"   healed: {loner} caught up, score={alive[loner].get('score')}")
        else:
            say("3. (partition demo needs the in-process network; skipped with --zmq)")
            await any_node.increment("score", 6)

        say("4. atomic batch: move 10 points from red to blue if red has 25")
        await any_node.batch([("put", "red", 25), ("put", "blue", 0)])
        moved = await any_node.batch([("decr", "red", 10), ("incr", "blue", 10)],
                                     conditions=[("red", 25)])
        again = await any_node.batch([("decr", "red", 10), ("incr", "blue", 10)],
                                     conditions=[("red", 25)])  # red is 15 now: no
        await until(lambda: all((c.get("red"), c.get("blue")) == (15, 10)
                                for c in alive.values()))
        say(f"   first move accepted={moved.accepted}, second accepted={again.accepted} "
            f"({again.error}); red/blue everywhere: "
            f"{[(c.get('red'), c.get('blue')) for c in alive.values()]}")
        assert moved.accepted and not again.accepted
    finally:
        await stop(nodes)
    say("done")


if __name__ == "__main__":
    asyncio.run(main())
