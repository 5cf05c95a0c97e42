"""Pipelined commands of one client, delivered in any order, any number of times, with
answers lost on the way: each command is applied exactly once, every answer to it is
its first result, and replicas (one of them restored from a snapshot mid-way) agree.

Reference: thesis 6.3, "Implementing linearizable semantics": the client sends the
lowest sequence number it has no response for; the state machine keeps the responses
at and above it, so a retried command is answered from there instead of applied again.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from hypothesis import given, settings
from hypothesis import strategies as st

from nodes.kv import KeyValue
from nodes.statemachine import Applied, Replicated, encode_command

CLIENT = "c-pipe"


def command(seq: int) -> dict:
    """Each command marks its own key and bumps a shared counter, so a second
    application shows (k<seq> becomes 2) and every result differs (total's value)."""
    return {"op": "batch", "ops": [{"op": "incr", "key": f"k{seq}"},
                                   {"op": "incr", "key": "total"}]}


@dataclass
class PipelinedClient:
    """What a client library does: seqs handed out, answers recorded, and the floor it
    sends (the lowest seq without an answer) recomputed at every (re)send."""

    count: int
    answers: dict[int, object] = field(default_factory=dict)

    def unanswered(self) -> list[int]:
        return [s for s in range(1, self.count + 1) if s not in self.answers]

    def floor(self) -> int:
        return min(self.unanswered(), default=self.count + 1)

    def message(self, seq: int) -> bytes:
        return encode_command(CLIENT, seq, 1_000, "kv", command(seq),
                              first_outstanding=min(self.floor(), seq))


@given(data=st.data(), count=st.integers(1, 7), answers_lost=st.booleans())
@settings(max_examples=250, deadline=None)
def test_any_interleaving_of_a_clients_pipelined_commands_applies_each_once(
    data: st.DataObject, count: int, answers_lost: bool
) -> None:
    client = PipelinedClient(count)
    log: list[bytes] = []
    in_flight: list[tuple[int, bytes]] = []
    leader = Replicated([KeyValue()])
    outcomes: list[Applied] = []

    def commit(seq: int, payload: bytes, lose_answer: bool) -> None:
        log.append(payload)
        applied = leader.apply_entry(len(log), 1, payload)
        outcomes.append(applied)
        result = applied.result
        assert isinstance(result, dict)
        if result.get("error") == "stale_sequence":
            # only ever for a seq the client already has the answer of
            assert seq in client.answers, (seq, client.answers, result)
            return
        assert result.get("error") not in ("session_expired", "too_many_outstanding"), result
        if seq in client.answers:
            assert result == client.answers[seq], (seq, result, client.answers[seq])
        elif not lose_answer:
            client.answers[seq] = result

    # the session's first command goes alone (it opens the session)
    commit(1, client.message(1), lose_answer=False)
    for _ in range(data.draw(st.integers(0, 40), label="steps")):
        action = data.draw(st.sampled_from(["send", "deliver", "duplicate"]), label="action")
        if action == "send" and client.unanswered():
            seq = data.draw(st.sampled_from(client.unanswered()), label="send seq")
            in_flight.append((seq, client.message(seq)))
        elif action in ("deliver", "duplicate") and in_flight:
            k = data.draw(st.integers(0, len(in_flight) - 1), label="which")
            seq, payload = in_flight[k] if action == "duplicate" else in_flight.pop(k)
            lost = answers_lost and data.draw(st.booleans(), label="answer lost")
            commit(seq, payload, lose_answer=lost)
    # the client retries whatever is still unanswered until it has every answer
    while client.unanswered():
        seq = client.unanswered()[0]
        commit(seq, client.message(seq), lose_answer=False)
    for seq, payload in in_flight:  # late copies still in the network
        commit(seq, payload, lose_answer=False)

    applications = [a.seq for a in outcomes if a.command is not None]
    assert sorted(applications) == list(range(1, count + 1)), applications
    values = {k: leader.query("kv", {"op": "get", "key": k})["value"]  # type: ignore[index]
              for k in [f"k{s}" for s in range(1, count + 1)] + ["total"]}
    assert values == {**{f"k{s}": 1 for s in range(1, count + 1)}, "total": count}

    # a replica that applied the same log, restored from a snapshot taken anywhere in it
    cut = data.draw(st.integers(0, len(log)), label="snapshot at")
    first = Replicated([KeyValue()])
    for i, payload in enumerate(log[:cut]):
        first.apply_entry(i + 1, 1, payload)
    replica = Replicated([KeyValue()])
    replica.restore(first.snapshot())
    later = [replica.apply_entry(i + 1, 1, p) for i, p in enumerate(log) if i >= cut]
    assert [a.result for a in later] == [a.result for a in outcomes[cut:]]
    assert [a.duplicate for a in later] == [a.duplicate for a in outcomes[cut:]]
    assert replica.snapshot() == leader.snapshot()
