"""Hypothesis strategies for kv commands and for whole logs of entries (shared by the
model test and the replica tests)."""

from __future__ import annotations

from hypothesis import strategies as st

from nodes.statemachine import encode_command

KEYS = ["a", "b", "c"]
keys = st.sampled_from(KEYS)
# 1, 1.0 and True are all different values to the store; "x" is no counter
values = st.one_of(st.integers(-3, 3), st.sampled_from(["x", "y", True, 1.0, [1, "x"]]))

key_ops = st.one_of(
    st.builds(lambda k, v: {"op": "put", "key": k, "value": v}, keys, values),
    st.builds(lambda k: {"op": "delete", "key": k}, keys),
    st.builds(
        lambda k, e, v: {"op": "cas", "key": k, "expected": e, "value": v},
        keys,
        st.none() | values,
        values,
    ),
    st.builds(
        lambda k, ev, v: {"op": "cas", "key": k, "expected_version": ev, "value": v},
        keys,
        st.integers(0, 8),
        values,
    ),
    st.builds(
        lambda op, k, by: {"op": op, "key": k, "by": by},
        st.sampled_from(["incr", "decr"]),
        keys,
        st.integers(-3, 3),
    ),
)

conditions = st.one_of(
    st.builds(lambda k, v: {"key": k, "equals": v}, keys, values),
    st.builds(lambda k, n: {"key": k, "version": n}, keys, st.integers(0, 8)),
    st.builds(lambda k, b: {"key": k, "absent": b}, keys, st.booleans()),
)

batches = st.builds(
    lambda ops, conds: {"op": "batch", "ops": ops, "conditions": conds},
    st.lists(key_ops, min_size=1, max_size=4),
    st.lists(conditions, max_size=2),
)

lock_ops = st.builds(
    lambda op, holder, ttl: {"op": op, "name": "door", "holder": holder, "ttl_ms": ttl},
    st.sampled_from(["lock", "unlock", "renew"]),
    st.sampled_from(["alice", "bob"]),
    st.integers(1, 10_000),
)

kv_commands = st.one_of(key_ops, key_ops, batches)
any_kv_commands = st.one_of(key_ops, batches, lock_ops)


@st.composite
def logs(draw: st.DrawFn, max_entries: int = 40) -> list[bytes]:
    """Entry payloads as a leader would commit them: a few clients with fresh commands,
    retries, stale seqs, first outstanding seqs or none, clocks that move forward (and sometimes back, after a
    failover), leader no-ops and garbage."""
    entries: list[bytes] = []
    last_seq = {"p1": 0, "p2": 0, "p3": 0}
    clock = 0
    for _ in range(draw(st.integers(0, max_entries))):
        clock = max(0, clock + draw(st.integers(-500, 3_000)))
        kind = draw(st.sampled_from(["new", "new", "new", "retry", "noop", "garbage"]))
        if kind == "noop":
            entries.append(b"")
            continue
        if kind == "garbage":
            entries.append(draw(st.binary(min_size=1, max_size=8)))
            continue
        client = draw(st.sampled_from(sorted(last_seq)))
        if kind == "new" or last_seq[client] == 0:
            last_seq[client] += 1
            seq = last_seq[client]
        else:
            seq = draw(st.integers(1, last_seq[client]))
        cmd = draw(any_kv_commands)
        # pipelining clients send their first outstanding seq (thesis 6.3), others none
        first = draw(st.one_of(st.none(), st.integers(1, seq)))
        entries.append(encode_command(client, seq, clock, "kv", cmd, first_outstanding=first))
    return entries
