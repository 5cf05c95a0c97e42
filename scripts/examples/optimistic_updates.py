"""Optimistic updates (raft): show the change at once, confirm or roll it back.

A player's client shows its own move immediately (no round trip), marked as
optimistic, while a compare-and-swap on the version it read goes through
consensus. One update is confirmed; another loses to a concurrent write and is
rolled back, and the view returns to what the cluster decided.

    .venv/bin/python scripts/examples/optimistic_updates.py [--zmq]
"""

from __future__ import annotations

import asyncio
from typing import Any

from _cluster import make_cluster, parse_args, say, start, stop


async def main() -> None:
    args = parse_args(__doc__ or "")
    ids = ["p1", "p2", "p3"]
    nodes, _ = make_cluster(ids, args.zmq, timeout=2.0)
    leader = await start(nodes)
    client = nodes[next(i for i in ids if i != leader)]  # a follower: its proposals travel

    def show(key: str, new: Any, old: Any, optimistic: bool, rolled_back: bool) -> None:
        tag = "optimistic" if optimistic else "rolled back" if rolled_back else "committed"
        say(f"   [{client.node_id} view] {key}: {old} -> {new} ({tag})")

    client.subscribe("position", show)
    try:
        assert await client.propose("position", 0)

        say("1. move right: shown at once, then confirmed")
        move = client.optimistic_update("position", lambda x: x + 1)
        say(f"   right after the call: get={client.get('position')} "
            f"optimistic={client.get_info('position').optimistic}")
        confirmed = await move
        say(f"   confirmed={confirmed.accepted}, position={client.get('position')}")

        say("2. move right again, but the server teleports the player first")
        teleport = asyncio.ensure_future(client.propose("position", 100))  # already on its way
        move = client.optimistic_update("position", lambda x: x + 1)
        say(f"   right after the call: get={client.get('position')} (a guess)")
        lost = await move
        await teleport
        say(f"   confirmed={lost.accepted} ({lost.error}); rolled back to "
            f"position={client.get('position')}")
        assert confirmed.accepted and not lost.accepted
        assert client.get("position") == 100 and not client.get_info("position").optimistic
    finally:
        await stop(nodes)
    say("done")


if __name__ == "__main__":
    asyncio.run(main())
