"""The failover demo (``scripts/demo-failover``) and the end-to-end game check.

A local cluster, bots playing a whole game; the leader is killed with SIGKILL
in the middle of a round; the bots' sessions fail over by themselves; the game
goes on. At the end the killed node is restarted and catches up, and the final
scores are compared on every node and in every client's view, against the
hits each bot was told it won (none lost, none counted twice).
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from game import view
from nodes.clusterfile import Timing
from nodes.local import LocalCluster

from .api import Client, wait_until
from .bots import Bot
from .session import NetworkSession


@dataclass
class DemoResult:
    killed: str = ""
    killed_in_round: int = 0
    new_leader: str = ""
    failover_ms: float = 0.0  # kill -> next committed game command
    client_failover_ms: list[float] = field(default_factory=list)
    scores_by_node: dict[str, dict[str, int]] = field(default_factory=dict)
    scores_by_client: dict[str, dict[str, int]] = field(default_factory=dict)
    acked_hits: dict[str, int] = field(default_factory=dict)
    restarted_caught_up_s: float = 0.0
    game_number: int = 0

    def consistent(self) -> bool:
        views = [*self.scores_by_node.values(), *self.scores_by_client.values()]
        return bool(views) and all(v == views[0] for v in views)

    def no_hit_lost_or_doubled(self) -> bool:
        final = next(iter(self.scores_by_node.values()), {})
        return all(final.get(name, 0) == n for name, n in self.acked_hits.items())


def run_failover_demo(directory: Path, bots: int = 4, kill_in_round: int = 2, seed: int = 1,
                      say: Callable[[str], None] = print, timeout: float = 90.0) -> DemoResult:
    result = DemoResult()
    lc = LocalCluster.create(directory, 3, timing=Timing(election_ms=(150.0, 300.0)))
    sessions: list[NetworkSession] = []
    admin = Client(lc.cluster, deadline=10.0)
    try:
        lc.start_all()
        ids = lc.cluster.ids()
        say(f"cluster up: {', '.join(ids)} (leader {admin.wait_for_leader(15)})")
        strategies = ["eager", "slow", "random", "eager"]
        players = []
        for i in range(bots):
            s = NetworkSession(lc.cluster)
            sessions.append(s)
            players.append(Bot(f"bot{i + 1}", s, strategies[i % 4],
                               random.Random(f"{seed}:{i}"), games_to_play=1))

        def tick() -> None:
            for s in sessions:
                s.poll()
            for b in players:
                b.step()

        def current() -> dict | None:
            return sessions[0].state

        # play until the chosen round runs, then kill the leader mid-round
        wait_until(lambda: (st := current()) is not None and view.phase(st) == "round"
              and st["current_round"]["number"] == kill_in_round
              and len(view.open_targets(st)) < st["config"]["targets_per_round"],
              timeout, f"round {kill_in_round} under way", tick)
        st = current()
        assert st is not None
        result.game_number = st["game_state"]["game_number"]
        lead = admin.leader()
        assert lead is not None
        term_before = max(s.view.term for s in sessions)
        lc.kill(lead)
        t_kill = time.monotonic()
        result.killed, result.killed_in_round = lead, kill_in_round
        say(f"round {kill_in_round}: killed the leader {lead} (kill -9) with "
            f"{len(view.open_targets(st))} targets open")
        # recovery: the first game command committed by a new leader, seen by a client
        wait_until(lambda: any(s.view.term > term_before for s in sessions), 30,
              "a game command committed in a newer term", tick)
        result.failover_ms = (time.monotonic() - t_kill) * 1000
        others = [n for n in ids if n != lead]
        result.new_leader = admin.leader(among=others) or "?"
        say(f"new leader {result.new_leader}; the game went on after {result.failover_ms:.0f} ms")
        wait_until(lambda: all(b.done() for b in players), timeout, "the game to finish", tick)
        final_index = max(s.state_index for s in sessions)
        # restart the killed node: it catches up from the others
        t_restart = time.monotonic()
        lc.start(lead)
        wait_until(lambda: (admin.status(lead, timeout=0.3) or {}).get("applied", 0) >= final_index,
              30, f"{lead} catching up", tick)
        result.restarted_caught_up_s = time.monotonic() - t_restart
        say(f"restarted {lead}: caught up in {result.restarted_caught_up_s:.2f} s")
        # every client sees the final state (index) and every node has applied it
        target = max((admin.status(n) or {}).get("commit", 0) for n in ids)
        wait_until(lambda: all(s.state_index >= target for s in sessions), 10, "clients current", tick)
        for nid in ids:
            call = admin.link.wait(admin.link.call(
                "read", {"machine": "game", "query": {"op": "state"}, "linearizable": False},
                node=nid))
            state = call.result["state"]  # type: ignore[index]
            result.scores_by_node[nid] = dict(state["scores"])
        for b, s in zip(players, sessions, strict=True):
            assert s.state is not None
            result.scores_by_client[b.name] = dict(s.state["scores"])
            result.client_failover_ms.extend(s.failover_ms)
            name = view.player_of(s.state, s.client_id) or b.name
            result.acked_hits[name] = b.hits_won
        return result
    finally:
        for s in sessions:
            s.close()
        admin.close()
        lc.kill_all()
