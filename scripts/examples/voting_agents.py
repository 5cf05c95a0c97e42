"""Three agents agree by simple majority: one proposal passes, one is voted down.

Each agent votes through its own policy. The cautious treasurer and the scout
refuse to spend more than 100 gold, so the warrior's proposal to spend 500 is
rejected; the plan to explore the cave passes as soon as two of the three say
yes (the decision does not wait for the last vote).

    .venv/bin/python scripts/examples/voting_agents.py [--zmq]
"""

from __future__ import annotations

import asyncio

from _cluster import make_cluster, parse_args, say, start, stop, until

from nodes import Proposal


def policy_of(agent: str):  # noqa: ANN201 - returns a vote policy
    def vote(p: Proposal) -> bool:
        if p.conflicting:
            return False  # the default rule: one value per key at a time
        if p.key == "spend_gold" and agent in ("treasurer", "scout"):
            return int(p.value) <= 100
        return True

    return vote


async def main() -> None:
    args = parse_args(__doc__ or "")
    agents = ["warrior", "treasurer", "scout"]
    nodes, _ = make_cluster(agents, args.zmq, "simple_majority", timeout=2.0,
                            per_node=lambda a: {"vote_policy": policy_of(a)})
    for name, c in nodes.items():
        c.on("vote:granted", lambda proposer, key, value, name=name:
             say(f"  {name} votes yes on {key}={value!r} (from {proposer})"))
        c.on("consensus:accepted", lambda key, value, name=name:
             say(f"  {name} applies {key}={value!r}"))
    await start(nodes)
    try:
        say("scout proposes next_move='explore the cave'")
        plan = await nodes["scout"].propose_with_result("next_move", "explore the cave")
        say(f"-> accepted={plan.accepted} votes for={plan.votes.for_} "
            f"against={plan.votes.against} of {plan.votes.total} "
            f"(needs {plan.quorum_required})")
        # every agent applies it as the decision reaches it (resent if lost)
        await until(lambda: all(c.get("next_move") for c in nodes.values()))

        say("warrior proposes spend_gold=500")
        spend = await nodes["warrior"].propose_with_result("spend_gold", 500)
        say(f"-> accepted={spend.accepted} error={spend.error} votes for={spend.votes.for_} "
            f"against={spend.votes.against} of {spend.votes.total}")

        views = {name: (c.get("next_move"), c.get("spend_gold")) for name, c in nodes.items()}
        say(f"every agent's view (next_move, spend_gold): {views}")
        assert plan.accepted and not spend.accepted
        assert all(v == ("explore the cave", None) for v in views.values())
    finally:
        await stop(nodes)
    say("done")


if __name__ == "__main__":
    asyncio.run(main())
