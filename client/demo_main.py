"""``scripts/demo-failover``: wiring only; the scenario lives in ``client.demo``."""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from .demo import run_failover_demo


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="Kill the leader mid-round; the game goes on.")
    p.add_argument("--bots", type=int, default=4)
    p.add_argument("--round", type=int, default=2, help="Round in which to kill the leader.")
    p.add_argument("--seed", type=int, default=1)
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="arena-demo-") as d:
        r = run_failover_demo(Path(d), bots=args.bots, kill_in_round=args.round, seed=args.seed)
    print(f"recovery: the game committed again {r.failover_ms:.0f} ms after the leader died")
    if r.client_failover_ms:
        print("clients noticed the new leader after: "
              + ", ".join(f"{x:.0f} ms" for x in r.client_failover_ms))
    for nid, scores in sorted(r.scores_by_node.items()):
        print(f"final scores on node {nid}: {dict(sorted(scores.items()))}")
    for name, scores in sorted(r.scores_by_client.items()):
        print(f"final scores seen by {name}: {dict(sorted(scores.items()))}")
    print(f"hits each bot was told it won: {dict(sorted(r.acked_hits.items()))}")
    ok = r.consistent() and r.no_hit_lost_or_doubled()
    print("identical on every node and client, no hit lost or counted twice: "
          + ("yes" if ok else "NO"))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
