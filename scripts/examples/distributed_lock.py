"""A distributed lock (raft): one holder at a time, fencing tokens, and expiry
judged by the leader's clock in the log, so every node agrees when it ends.

1. Three workers race for the lock "forge"; exactly one gets it.
2. The holder works, releases; the next waiting worker gets it (token + 1).
3. The next holder "hangs" without releasing: its lease (ttl) expires and the
   last worker takes over; the hung worker can no longer release it.

    .venv/bin/python scripts/examples/distributed_lock.py [--zmq]
"""

from __future__ import annotations

import asyncio

from _cluster import make_cluster, parse_args, say, start, stop

from nodes import Consensus


async def main() -> None:
    args = parse_args(__doc__ or "")
    ids = ["w1", "w2", "w3"]
    nodes, _ = make_cluster(ids, args.zmq, timeout=2.0)
    await start(nodes)
    nodes["w1"].on("lock:changed", lambda name, action, holder, token:
                   say(f"   [event] {name}: {action}" + (f" by {holder}" if holder else "")
                       + f" (token {token})"))
    try:
        say("1. three workers race for the lock")
        tries = await asyncio.gather(*(nodes[i].acquire_lock("forge", ttl=0.4) for i in ids))
        winners = [r for r in tries if r]
        assert len(winners) == 1
        first = winners[0].holder
        assert first is not None
        say(f"   winner: {first} (token {winners[0].token}); the others were told "
            f"{[r.error for r in tries if not r]}")

        say(f"2. {first} works, then releases; the others wait for it")
        waiting = [i for i in ids if i != first]

        async def wait_for_lock(worker: Consensus) -> str:
            got = await worker.acquire_lock("forge", ttl=0.4, wait=3.0)
            assert got, got
            return f"{worker.node_id} (token {got.token})"

        second_task = asyncio.ensure_future(wait_for_lock(nodes[waiting[0]]))
        await asyncio.sleep(0.1)  # some work under the lock
        assert await nodes[first].release_lock("forge")
        say(f"   {first} released; next holder: {await second_task}")

        hung = waiting[0]
        say(f"3. {hung} hangs while holding the lock; {waiting[1]} waits for the lease to end")
        third = await nodes[waiting[1]].acquire_lock("forge", ttl=5.0, wait=3.0)
        assert third
        say(f"   {waiting[1]} took over after expiry (token {third.token})")
        late = await nodes[hung].release_lock("forge")
        say(f"   {hung} wakes up and tries to release: {late} (its lease is over)")
        info = nodes["w1"].lock_info("forge")
        say(f"   lock as every node sees it: holder={info['holder']} token={info['token']}")
        assert not late and info["holder"] == waiting[1]
    finally:
        await stop(nodes)
    say("done")


if __name__ == "__main__":
    asyncio.run(main())
