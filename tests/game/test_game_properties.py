"""Properties over random command sequences (hypothesis).

- A rejected command changes nothing: the state equals a deep copy taken before.
- The same sequence applied to two fresh states gives identical msgpack bytes.
- The state invariants hold after every command, leader time never decreases,
  and no target is ever scored twice.
- An accepted command marks its sender's member as seen now; an accepted
  drop_idle leaves nobody idle, and drop_idle is never rejected.
"""

from __future__ import annotations

import copy

import msgpack
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from game.config import GameConfig
from game.errors import ERROR_CODES
from game.presence import anyone_idle
from game.rules import Context, apply, new_state
from game.state import check_invariants, name_of_client

# Short phases and few targets so random sequences reach every phase.
CONFIG = GameConfig(
    rounds=2,
    targets_per_round=2,
    round_ms=150,
    countdown_ms=20,
    intermission_ms=30,
    min_players=2,
    max_players=3,
    idle_ms=250,  # a few dozen steps of silence: members idle out often
)
CLIENTS = st.sampled_from(["c1", "c2", "c1", "c2", "c3", "c4"])
NAMES = st.sampled_from(["ann", "Ann", "bob", "cy", " dee ", "", "x" * 17, "no!"])

commands = st.one_of(
    st.builds(lambda n: {"type": "join", "name": n}, NAMES),
    st.just({"type": "leave"}),
    st.builds(lambda r: {"type": "ready", "ready": r}, st.sampled_from([True, False, None])),
    st.just({"type": "start"}),
    st.builds(
        lambda r, t: {"type": "hit", "round": r, "target": t},
        st.integers(-1, 3),
        st.integers(-1, 2),
    ),
    st.just({"type": "tick"}),
    st.just({"type": "rematch"}),
    st.just({"type": "ping"}),
    st.just({"type": "drop_idle"}),
    st.sampled_from([{"type": "dance"}, {}, {"type": "hit", "round": "1", "target": 0}]),
)
HITS = st.builds(
    lambda r, t: {"type": "hit", "round": r, "target": t},
    st.sampled_from([1, 1, 2, 2, 0, 3]),
    st.sampled_from([0, 1, 0, 1, 2]),
)
# Purely random traffic rarely gets past the lobby, so half the sequences open
# with a prologue that starts a game, and the traffic leans towards hits.
PROLOGUE: list[tuple[str, dict, int]] = [
    ("c1", {"type": "join", "name": "ann"}, 0),
    ("c2", {"type": "join", "name": "bob"}, 0),
    ("c3", {"type": "join", "name": "cy"}, 0),
    ("c1", {"type": "ready", "ready": True}, 0),
    ("c2", {"type": "ready", "ready": True}, 0),
    ("c1", {"type": "start"}, 0),
]
# What the leader's timer proposes (GameMachine.due_command), from its own session.
LEADER_STEP = st.tuples(
    st.just("@game/n1/1"),
    st.sampled_from([{"type": "tick"}, {"type": "drop_idle"}]),
    st.integers(-10, 60),
)
# Mostly forward steps, sometimes a lagging leader clock (a negative step).
STEP = st.one_of(
    st.tuples(
        CLIENTS,
        st.one_of(commands, HITS, HITS, HITS, HITS, st.just({"type": "tick"})),
        st.integers(-40, 60),
    ),
    LEADER_STEP,
)
any_traffic = st.builds(
    lambda prologue, rest: (PROLOGUE if prologue else []) + rest,
    st.booleans(),
    st.lists(STEP, min_size=10, max_size=120),
)
# Play after the prologue: the players shoot and the leader ticks, with the odd
# stray command, so hits, races, stale rounds and game overs are common.
PLAY_STEP = st.one_of(
    st.tuples(
        st.sampled_from(["c1", "c2", "c3"]),
        st.one_of(HITS, HITS, HITS, st.just({"type": "tick"}), commands),
        st.integers(-10, 40),
    ),
    LEADER_STEP,
)
play = st.builds(lambda rest: PROLOGUE + rest, st.lists(PLAY_STEP, min_size=10, max_size=120))
steps = st.one_of(any_traffic, play)


def drive(sequence: list[tuple[str, dict, int]]):
    """Apply a generated sequence, checking the properties after every command."""
    state = new_state(CONFIG, seed=1)
    ts = 1_000
    outputs = []
    points_won: set[tuple[int, int, int]] = set()
    for index, (client, command, step) in enumerate(sequence, start=1):
        ts += step
        before = copy.deepcopy(state)
        result, events = apply(state, command, Context(index, ts, client))
        outputs.append((result, events))
        if result["ok"]:
            assert state["now_ms"] == max(before["now_ms"], ts)
            sender = name_of_client(state, client)
            if sender is not None:
                assert state["players"][sender]["last_seen_ms"] == state["now_ms"]
            if command.get("type") == "drop_idle":
                assert not anyone_idle(state, state["now_ms"])
        elif command.get("type") == "drop_idle":
            raise AssertionError(f"drop_idle was rejected: {result}")
        else:
            assert result["error"] in ERROR_CODES and result["message"]
            assert events == []
            assert state == before, f"rejected {command} from {client} changed the state"
        for event in events:
            if event["type"] == "target_hit":
                point = (state["game_state"]["game_number"], event["round"], event["target"])
                assert point not in points_won, f"target scored twice: {point}"
                points_won.add(point)
        check_invariants(state)
        assert msgpack.unpackb(msgpack.packb(state)) == state
    return state, outputs


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(steps)
def test_a_rejected_command_leaves_the_state_exactly_as_it_was(sequence) -> None:
    drive(sequence)


@settings(max_examples=100, deadline=None)
@given(steps)
def test_the_same_sequence_on_two_fresh_states_gives_identical_bytes(sequence) -> None:
    state_a, outputs_a = drive(sequence)
    state_b, outputs_b = drive(sequence)
    assert msgpack.packb(state_a) == msgpack.packb(state_b)
    assert msgpack.packb(outputs_a) == msgpack.packb(outputs_b)
