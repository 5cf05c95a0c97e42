"""Compare-and-swap (raft): decided inside the replicated state machine, so racing
nodes cannot both win, and a read-modify-write loop never loses an update.

1. Three players try to claim the empty room "dungeon" at the same moment:
   ``compare_and_swap("dungeon", None, me)``; exactly one succeeds.
2. Each player appends its name to a shared list 5 times with a CAS retry loop
   (read, modify, swap if unchanged, else retry): all 15 appends survive.

    .venv/bin/python scripts/examples/compare_and_swap.py [--zmq]
"""

from __future__ import annotations

import asyncio

from _cluster import make_cluster, parse_args, say, start, stop, until

from nodes import Consensus


async def append_with_cas(node: Consensus, key: str, item: str) -> int:
    """Read-modify-CAS until it sticks; returns how many attempts it took."""
    attempts = 0
    while True:
        attempts += 1
        current = await node.read(key, [])  # linearizable: the latest committed list
        if await node.compare_and_swap(key, current if current else None, [*current, item]):
            return attempts


async def main() -> None:
    args = parse_args(__doc__ or "")
    ids = ["alice", "bob", "carol"]
    nodes, _ = make_cluster(ids, args.zmq, timeout=2.0)
    await start(nodes)
    try:
        say("1. everyone claims the dungeon at once")
        claims = await asyncio.gather(*(nodes[i].compare_and_swap("dungeon", None, i)
                                        for i in ids))
        owner = await nodes["alice"].read("dungeon")
        say(f"   claims succeeded: {dict(zip(ids, claims, strict=True))}; owner: {owner}")
        assert claims.count(True) == 1 and claims[ids.index(owner)]

        say("2. 3 players x 5 appends to one list, with CAS retry loops")
        attempts = await asyncio.gather(*(append_with_cas(nodes[i], "log", f"{i}-{n}")
                                          for i in ids for n in range(5)))
        await until(lambda: all(len(c.get("log") or []) == 15 for c in nodes.values()))
        final = nodes["bob"].get("log")
        say(f"   {len(final)} items kept (retries needed: {sum(attempts) - len(attempts)})")
        assert sorted(final) == sorted(f"{i}-{n}" for i in ids for n in range(5))
    finally:
        await stop(nodes)
    say("done")


if __name__ == "__main__":
    asyncio.run(main())
