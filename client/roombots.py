"""Bots that sit in one given room (``arena up`` puts its bots in its players' room).

``python -m client.roombots --room ROOM --name bot1 --strategy slow`` runs today's
``client.bots.Bot`` over a ``client.roomsession.RoomSession`` that joins ROOM by
itself (and again whenever it is not seated). The cluster file comes from
``--cluster`` or ``ARENA_CLUSTER``.
"""

from __future__ import annotations

import argparse
import random

from nodes import clusterfile

from .bots import STRATEGIES, Bot, run_bots
from .roomsession import RoomSession


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m client.roombots", description="Bots playing in one room of a cluster."
    )
    parser.add_argument("--room", required=True, help="the room id to join")
    parser.add_argument("--name", default="bot", help="bot name prefix (default: bot)")
    parser.add_argument("--count", type=int, default=1)
    parser.add_argument("--strategy", choices=STRATEGIES, default="slow")
    parser.add_argument("--cluster", default=None, help="cluster file (default: ARENA_CLUSTER)")
    parser.add_argument("--duration", type=float, default=None, help="stop after this many s")
    parser.add_argument("--seed", type=int, default=None)
    args = parser.parse_args(argv)
    cf = clusterfile.load(clusterfile.find(args.cluster))
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(1 << 30)
    print(f"room bots seed={seed} room={args.room}", flush=True)
    sessions, bots = [], []
    for i in range(args.count):
        name = args.name if args.count == 1 else f"{args.name}{i + 1}"
        s = RoomSession.connect(cf, name, room=args.room, bot=True)
        sessions.append(s)
        bots.append(Bot(name, s, args.strategy, random.Random(f"{seed}:{name}")))
    try:
        run_bots(bots, sessions, args.duration)
    finally:
        for s in sessions:
            s.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
