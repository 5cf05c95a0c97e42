"""KeyValue batches: conditions are checked first, then all operations apply or none
(a copy-on-write overlay, committed only when every op succeeded)."""

from __future__ import annotations

import pytest

from nodes.kv import MAX_BATCH_OPS, KeyValue


def get(kv: KeyValue, key: str) -> dict:
    return kv.query({"op": "get", "key": key})


def test_a_batch_applies_all_its_ops_and_lists_per_op_results(kv, apply) -> None:
    apply("put", key="gold", value=10)
    result = apply(
        "batch",
        ops=[
            {"op": "decr", "key": "gold", "by": 3},
            {"op": "incr", "key": "gems"},
            {"op": "put", "key": "item", "value": "sword"},
            {"op": "delete", "key": "nothing"},
            {"op": "cas", "key": "item", "expected": "sword", "value": "sword+1"},
        ],
    )
    assert result == {
        "ok": True,
        "succeeded": True,
        "results": [
            {"ok": True, "value": 7, "version": 2},
            {"ok": True, "value": 1, "version": 3},
            {"ok": True, "version": 4},
            {"ok": True, "deleted": False},
            {"ok": True, "succeeded": True, "version": 5},
        ],
    }
    assert get(kv, "gold")["value"] == 7 and get(kv, "item")["value"] == "sword+1"


def test_later_ops_of_a_batch_see_the_effects_of_earlier_ones(kv, apply) -> None:
    result = apply(
        "batch",
        ops=[
            {"op": "put", "key": "k", "value": 1},
            {"op": "incr", "key": "k", "by": 1},
            {"op": "cas", "key": "k", "expected": 2, "value": 3},
            {"op": "delete", "key": "k"},
            {"op": "cas", "key": "k", "expected": None, "value": "again"},
        ],
    )
    assert result["ok"] is True
    assert get(kv, "k") == {"ok": True, "found": True, "value": "again", "version": 5}


def test_a_batch_with_a_failing_middle_op_applies_none_of_its_ops(kv, apply, events) -> None:
    apply("put", key="a", value=1)
    apply("put", key="name", value="bob")
    before, n_events = kv.snapshot(), len(events)
    result = apply(
        "batch",
        ops=[
            {"op": "put", "key": "a", "value": 2},
            {"op": "delete", "key": "b"},
            {"op": "incr", "key": "name"},  # fails: a string is no counter
            {"op": "put", "key": "c", "value": 3},
        ],
    )
    assert result["ok"] is False and result["succeeded"] is False
    assert result["error"] == "not_integer" and result["failed_op"] == 2
    assert result["op_result"]["error"] == "not_integer"
    assert "batch op 2" in result["message"]
    assert kv.snapshot() == before and len(events) == n_events
    assert get(kv, "a")["value"] == 1 and get(kv, "c")["found"] is False


def test_a_cas_that_does_not_match_inside_a_batch_rolls_the_batch_back(kv, apply) -> None:
    apply("put", key="k", value="v")
    result = apply(
        "batch",
        ops=[
            {"op": "put", "key": "x", "value": 1},
            {"op": "cas", "key": "k", "expected": "w", "value": "z"},
        ],
    )
    assert (result["ok"], result["error"], result["failed_op"]) == (False, "cas_failed", 1)
    assert get(kv, "x")["found"] is False


def test_a_batch_that_fails_does_not_advance_versions(kv, apply) -> None:
    apply("batch", ops=[{"op": "put", "key": "x", "value": 1}, {"op": "put", "key": ""}])
    assert apply("put", key="y", value=1)["version"] == 1


def test_a_batch_emits_one_event_per_change_in_op_order(apply, events) -> None:
    apply(
        "batch",
        ops=[
            {"op": "put", "key": "b", "value": 1},
            {"op": "put", "key": "a", "value": 2},
            {"op": "incr", "key": "b"},
        ],
    )
    assert [(e["key"], e["old"], e["new"], e["version"]) for e in events] == [
        ("b", None, 1, 1),
        ("a", None, 2, 2),
        ("b", 1, 2, 2),
    ]


# --- conditions ----------------------------------------------------------------------------


def test_batch_conditions_equals_version_and_absent_guard_the_batch(kv, apply) -> None:
    apply("put", key="turn", value="alice")
    ops = [{"op": "put", "key": "turn", "value": "bob"}]
    conditions = [
        {"key": "turn", "equals": "alice"},
        {"key": "turn", "version": 1},
        {"key": "winner", "absent": True},
        {"key": "turn", "absent": False},
    ]
    assert apply("batch", ops=ops, conditions=conditions)["ok"] is True
    assert get(kv, "turn")["value"] == "bob"


@pytest.mark.parametrize(
    "condition",
    [
        {"key": "turn", "equals": "bob"},
        {"key": "turn", "version": 7},
        {"key": "turn", "version": 0},
        {"key": "turn", "absent": True},
        {"key": "winner", "absent": False},
        {"key": "winner", "equals": "alice"},
        {"key": "turn", "equals": "alice", "version": 2},  # every field must hold
    ],
)
def test_a_batch_whose_condition_fails_applies_nothing_and_says_which(
    kv, apply, events, condition
) -> None:
    apply("put", key="turn", value="alice")
    before, n_events = kv.snapshot(), len(events)
    result = apply(
        "batch",
        ops=[{"op": "put", "key": "turn", "value": "carol"}],
        conditions=[{"key": "turn", "absent": False}, condition],
    )
    assert result["ok"] is False and result["succeeded"] is False
    assert result["error"] == "condition_failed" and result["failed_condition"] == 1
    assert result["found"] == (condition["key"] == "turn")
    assert kv.snapshot() == before and len(events) == n_events


def test_batch_conditions_are_checked_before_any_op_runs(apply) -> None:
    result = apply(
        "batch",
        ops=[{"op": "put", "key": "k", "value": 1}],
        conditions=[{"key": "k", "equals": 1}],  # would hold only after the op
    )
    assert result["error"] == "condition_failed"


@pytest.mark.parametrize(
    "batch",
    [
        {},
        {"ops": []},
        {"ops": "put"},
        {"ops": [{"op": "put", "key": "k", "value": 1}] * (MAX_BATCH_OPS + 1)},
        {"ops": [{"op": "put", "key": "k", "value": 1}], "conditions": "none"},
        {"ops": [{"op": "put", "key": "k", "value": 1}], "conditions": [{"key": "k"}]},
        {"ops": [{"op": "put", "key": "k", "value": 1}], "conditions": ["k"]},
        {"ops": [{"op": "put", "key": "k", "value": 1}], "conditions": [{"key": "k", "equal": 1}]},
        {"ops": [{"op": "put", "key": "k", "value": 1}], "conditions": [{"key": "k", "absent": 1}]},
        {
            "ops": [{"op": "put", "key": "k", "value": 1}],
            "conditions": [{"key": "k", "version": -1}],
        },
        {
            "ops": [{"op": "put", "key": "k", "value": 1}],
            "conditions": [{"key": "k", "equals": None}],
        },
    ],
)
def test_a_malformed_batch_is_a_bad_command_that_changes_nothing(kv, apply, batch) -> None:
    before = kv.snapshot()
    result = apply("batch", **batch)
    assert result["ok"] is False and result["error"] in {"bad_command", "bad_value"}, result
    assert kv.snapshot() == before


@pytest.mark.parametrize("op", ["batch", "lock", "unlock", "renew", "get", "nope"])
def test_only_key_ops_are_allowed_inside_a_batch(kv, apply, op) -> None:
    result = apply(
        "batch",
        ops=[{"op": "put", "key": "k", "value": 1}, {"op": op, "key": "k", "name": "n"}],
    )
    assert (result["error"], result["failed_op"]) == ("bad_command", 1)
    assert get(kv, "k")["found"] is False
