"""KeyValue: the single-key commands (put, delete, cas, incr, decr), the queries, the
versions, the change events and input validation (nodes/kv.py module docstring)."""

from __future__ import annotations

import pytest

from nodes.kv import MAX_KEY_CHARS, MAX_VALUE_BYTES, KeyValue, same_value
from nodes.statemachine import ApplyContext


def get(kv: KeyValue, key: str) -> dict:
    return kv.query({"op": "get", "key": key})


# --- get, put, delete, versions --------------------------------------------------------------


def test_get_of_a_missing_key_is_not_found_with_version_zero(kv: KeyValue) -> None:
    assert get(kv, "nope") == {"ok": True, "found": False, "value": None, "version": 0}


def test_put_then_get_returns_the_value_and_version_one(kv, apply) -> None:
    assert apply("put", key="score", value=100) == {"ok": True, "version": 1}
    assert get(kv, "score") == {"ok": True, "found": True, "value": 100, "version": 1}


def test_each_change_to_a_key_increments_its_version_by_one(kv, apply) -> None:
    apply("put", key="k", value="a")
    assert apply("put", key="k", value="b")["version"] == 2
    assert apply("incr", key="n")["version"] == 3  # a new key starts at the revision
    assert apply("put", key="k", value="c")["version"] == 3
    assert get(kv, "k")["version"] == 3


def test_values_read_back_as_after_msgpack_so_snapshots_restore_them_exactly(kv, apply) -> None:
    apply("put", key="t", value=(1, (2, 3)))
    assert get(kv, "t")["value"] == [1, [2, 3]]


def test_delete_removes_the_key_and_says_whether_it_existed(kv, apply) -> None:
    apply("put", key="k", value=1)
    assert apply("delete", key="k") == {"ok": True, "deleted": True}
    assert get(kv, "k")["found"] is False
    assert apply("delete", key="k") == {"ok": True, "deleted": False}


def test_a_key_deleted_and_created_again_never_reuses_a_version(kv, apply) -> None:
    apply("put", key="k", value="first")  # version 1
    apply("delete", key="k")
    assert apply("put", key="k", value="second")["version"] > 2
    assert apply("cas", key="k", expected_version=1, value="aba")["ok"] is False


def test_keys_lists_keys_with_a_prefix_in_order(kv, apply) -> None:
    for key in ["b/2", "a/1", "b/1", "b/3", "c"]:
        apply("put", key=key, value=0)
    assert kv.query({"op": "keys", "prefix": "b/"}) == {
        "ok": True,
        "keys": ["b/1", "b/2", "b/3"],
        "truncated": False,
    }
    assert kv.query({"op": "keys"})["keys"] == ["a/1", "b/1", "b/2", "b/3", "c"]


def test_keys_pages_with_limit_and_after(kv, apply) -> None:
    for i in range(5):
        apply("put", key=f"k{i}", value=i)
    page = kv.query({"op": "keys", "limit": 2})
    assert page == {"ok": True, "keys": ["k0", "k1"], "truncated": True}
    page = kv.query({"op": "keys", "limit": 2, "after": "k1"})
    assert page["keys"] == ["k2", "k3"]
    assert kv.query({"op": "keys", "after": "k3"}) == {
        "ok": True,
        "keys": ["k4"],
        "truncated": False,
    }


@pytest.mark.parametrize(
    "query, code",
    [
        ({"op": "get"}, "bad_key"),
        ({"op": "get", "key": ""}, "bad_key"),
        ({"op": "keys", "prefix": 3}, "bad_command"),
        ({"op": "keys", "limit": 0}, "bad_command"),
        ({"op": "scan"}, "unknown_op"),
        ({"key": "k"}, "bad_command"),
        ("get", "bad_command"),
    ],
)
def test_a_bad_query_is_answered_with_an_error_code(kv: KeyValue, query, code: str) -> None:
    result = kv.query(query)
    assert result["ok"] is False and result["error"] == code and result["message"]


# --- cas ------------------------------------------------------------------------------------


def test_cas_swaps_when_the_current_value_is_the_expected_one(kv, apply) -> None:
    apply("put", key="k", value="old")
    assert apply("cas", key="k", expected="old", value="new") == {
        "ok": True,
        "succeeded": True,
        "version": 2,
    }
    assert get(kv, "k")["value"] == "new"


def test_cas_that_does_not_match_changes_nothing_and_returns_the_current_value(
    kv, apply, events
) -> None:
    apply("put", key="k", value="other")
    events.clear()
    result = apply("cas", key="k", expected="old", value="new")
    assert result["ok"] is False and result["succeeded"] is False
    assert result["error"] == "cas_failed"
    assert (result["found"], result["value"], result["version"]) == (True, "other", 1)
    assert get(kv, "k")["value"] == "other" and events == []


def test_cas_expected_none_means_the_key_must_be_absent(kv, apply) -> None:
    assert apply("cas", key="k", expected=None, value=1)["succeeded"] is True
    result = apply("cas", key="k", expected=None, value=2)
    assert result["succeeded"] is False and result["value"] == 1


def test_cas_on_a_missing_key_with_an_expected_value_fails_with_found_false(apply) -> None:
    result = apply("cas", key="k", expected=1, value=2)
    assert (result["ok"], result["found"], result["version"]) == (False, False, 0)


def test_cas_on_version_is_an_optimistic_update(kv, apply) -> None:
    apply("put", key="k", value={"hp": 10})
    read = get(kv, "k")
    assert apply("cas", key="k", expected_version=read["version"], value={"hp": 9})["ok"]
    stale = apply("cas", key="k", expected_version=read["version"], value={"hp": 8})
    assert stale["error"] == "cas_failed" and stale["value"] == {"hp": 9}
    assert stale["version"] == 2


def test_cas_expected_version_zero_means_absent(apply) -> None:
    assert apply("cas", key="k", expected_version=0, value=1)["ok"] is True
    assert apply("cas", key="k", expected_version=0, value=2)["ok"] is False


def test_cas_with_expected_and_expected_version_needs_both_to_match(apply) -> None:
    apply("put", key="k", value="v")
    assert apply("cas", key="k", expected="v", expected_version=9, value="x")["ok"] is False
    assert apply("cas", key="k", expected="w", expected_version=1, value="x")["ok"] is False
    assert apply("cas", key="k", expected="v", expected_version=1, value="x")["ok"] is True


def test_cas_compares_values_strictly_by_type(apply) -> None:
    apply("put", key="k", value=1)
    assert apply("cas", key="k", expected=1.0, value=2)["ok"] is False
    assert apply("cas", key="k", expected=True, value=2)["ok"] is False
    apply("put", key="d", value={"a": [1, {"b": None}]})
    assert apply("cas", key="d", expected={"a": (1, {"b": None})}, value=0)["ok"] is True


def test_same_value_is_strict_about_types_inside_containers() -> None:
    assert same_value([1, {"a": b"x"}], [1, {"a": b"x"}])
    assert not same_value([1], [True])
    assert not same_value({"a": 1}, {"a": 1, "b": 2})
    assert not same_value("x", b"x")


@pytest.mark.parametrize(
    "fields",
    [
        {"key": "k", "value": 1},  # neither expected nor expected_version
        {"key": "k", "expected": 1},  # no value
        {"key": "k", "expected_version": "1", "value": 1},
        {"key": "k", "expected_version": -1, "value": 1},
    ],
)
def test_cas_without_what_to_compare_or_what_to_write_is_a_bad_command(apply, fields) -> None:
    assert apply("cas", **fields)["error"] == "bad_command"


# --- incr, decr -------------------------------------------------------------------------------


def test_incr_of_a_missing_key_starts_from_zero(kv, apply) -> None:
    assert apply("incr", key="n") == {"ok": True, "value": 1, "version": 1}
    assert get(kv, "n")["value"] == 1


def test_incr_and_decr_add_and_subtract_by(apply) -> None:
    assert apply("incr", key="n", by=10)["value"] == 10
    assert apply("decr", key="n")["value"] == 9
    assert apply("decr", key="n", by=20)["value"] == -11
    assert apply("decr", key="m", by=3)["value"] == -3


@pytest.mark.parametrize("value", ["12", 1.5, True, [1], {"n": 1}])
def test_incr_on_a_non_integer_value_is_an_error_that_changes_nothing(
    kv, apply, events, value
) -> None:
    apply("put", key="k", value=value)
    before, n_events = kv.snapshot(), len(events)
    result = apply("incr", key="k")
    assert result["ok"] is False and result["error"] == "not_integer"
    assert "'k'" in result["message"]
    assert apply("decr", key="k")["error"] == "not_integer"
    assert kv.snapshot() == before and len(events) == n_events


@pytest.mark.parametrize("by", ["1", 1.0, True, None, 1 << 63])
def test_incr_with_a_by_that_is_not_an_int64_is_a_bad_command(apply, by) -> None:
    assert apply("incr", key="n", by=by)["error"] == "bad_command"


def test_a_counter_never_leaves_signed_64_bits(kv, apply) -> None:
    apply("incr", key="n", by=(1 << 63) - 1)
    assert apply("incr", key="n")["error"] == "out_of_range"
    assert get(kv, "n")["value"] == (1 << 63) - 1
    apply("decr", key="m", by=(1 << 63) - 1)
    assert apply("decr", key="m", by=1)["ok"] is True
    assert apply("decr", key="m", by=1)["error"] == "out_of_range"


# --- events ------------------------------------------------------------------------------


def test_every_mutating_op_emits_a_change_event_with_old_new_and_version(apply, events) -> None:
    apply("put", key="k", value="a")
    apply("put", key="k", value="b")
    apply("cas", key="k", expected="b", value="c")
    apply("incr", key="n", by=5)
    apply("decr", key="n")
    apply("delete", key="k")
    assert [(e["key"], e["old"], e["new"], e["version"]) for e in events] == [
        ("k", None, "a", 1),
        ("k", "a", "b", 2),
        ("k", "b", "c", 3),
        ("n", None, 5, 4),
        ("n", 5, 4, 5),
        ("k", "c", None, 4),
    ]
    assert {e["type"] for e in events} == {"state:changed"}


def test_deleting_a_missing_key_emits_no_event(apply, events) -> None:
    apply("delete", key="ghost")
    assert events == []


# --- validation ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "command, code",
    [
        ({"op": "put", "key": "", "value": 1}, "bad_key"),
        ({"op": "put", "key": "x" * (MAX_KEY_CHARS + 1), "value": 1}, "bad_key"),
        ({"op": "put", "key": 7, "value": 1}, "bad_key"),
        ({"op": "put", "value": 1}, "bad_key"),
        ({"op": "put", "key": "k"}, "bad_command"),
        ({"op": "put", "key": "k", "value": None}, "bad_value"),
        ({"op": "put", "key": "k", "value": object()}, "bad_value"),
        ({"op": "put", "key": "k", "value": 1 << 64}, "bad_value"),
        ({"op": "put", "key": "k", "value": {(1, 2): "tuple key"}}, "bad_value"),
        ({"op": "put", "key": "k", "value": b"x" * MAX_VALUE_BYTES}, "value_too_large"),
        ({"op": "cas", "key": "k", "expected": object(), "value": 1}, "bad_value"),
        ({"op": "incr", "key": None}, "bad_key"),
        ({"op": "fly", "key": "k"}, "unknown_op"),
        ({"op": 3}, "bad_command"),
        ({"key": "k"}, "bad_command"),
    ],
)
def test_bad_input_gives_an_error_code_and_message_and_changes_nothing(
    kv, apply, events, command: dict, code: str
) -> None:
    apply("put", key="k", value="kept")
    before, n_events = kv.snapshot(), len(events)
    op = command.pop("op", None)
    result = apply(op, **command) if op is not None else kv.apply(command, CTX)[0]
    assert result["ok"] is False and result["error"] == code, result
    assert isinstance(result["message"], str) and result["message"]
    assert kv.snapshot() == before and len(events) == n_events


def test_a_command_that_is_not_a_map_is_a_bad_command(kv: KeyValue) -> None:
    result, events = kv.apply(["put", "k", 1], CTX)  # type: ignore[arg-type]
    assert result["error"] == "bad_command" and events == []


def test_a_value_just_under_one_mebibyte_is_accepted(apply) -> None:
    assert apply("put", key="k", value=b"x" * (MAX_VALUE_BYTES - 5))["ok"] is True


CTX = ApplyContext(index=1, term=1, timestamp_ms=1_000, client_id="c")
