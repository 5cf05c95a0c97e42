"""KeyValue locks: holder, expiry judged by the entry's leader timestamp (so every node
agrees), and a fencing token per lock name that only goes up."""

from __future__ import annotations

import pytest

from nodes.kv import KeyValue


def info(kv: KeyValue, name: str = "door") -> dict:
    return kv.query({"op": "lock_info", "name": name})


def test_acquiring_a_free_lock_succeeds_with_fencing_token_one(kv, apply) -> None:
    result = apply("lock", name="door", holder="alice", ttl_ms=500, at=1_000)
    assert result == {
        "ok": True,
        "acquired": True,
        "renewed": False,
        "token": 1,
        "expires_ms": 1_500,
    }
    assert info(kv) == {
        "ok": True,
        "held": True,
        "holder": "alice",
        "expires_ms": 1_500,
        "token": 1,
        "as_of_ms": 1_000,
    }


def test_a_lock_held_by_another_holder_is_not_acquired(kv, apply) -> None:
    apply("lock", name="door", holder="alice", ttl_ms=500, at=1_000)
    result = apply("lock", name="door", holder="bob", ttl_ms=500, at=1_499)
    assert result["ok"] is False and result["acquired"] is False
    assert (result["error"], result["holder"], result["expires_ms"]) == (
        "lock_held",
        "alice",
        1_500,
    )
    assert info(kv)["holder"] == "alice"


def test_acquire_by_the_current_holder_renews_and_keeps_the_token(apply) -> None:
    apply("lock", name="door", holder="alice", ttl_ms=500, at=1_000)
    result = apply("lock", name="door", holder="alice", ttl_ms=800, at=1_400)
    assert (result["renewed"], result["token"], result["expires_ms"]) == (True, 1, 2_200)


def test_a_lock_expires_by_the_leader_timestamp_of_the_entry(kv, apply) -> None:
    apply("lock", name="door", holder="alice", ttl_ms=500, at=1_000)
    result = apply("lock", name="door", holder="bob", ttl_ms=500, at=1_500)  # expiry is exclusive
    assert (result["ok"], result["token"], result["renewed"]) == (True, 2, False)
    assert info(kv)["holder"] == "bob"


def test_an_expired_holder_acquiring_again_gets_a_new_token(apply) -> None:
    apply("lock", name="door", holder="alice", ttl_ms=500, at=1_000)
    result = apply("lock", name="door", holder="alice", ttl_ms=500, at=2_000)
    assert (result["renewed"], result["token"]) == (False, 2)


def test_fencing_tokens_only_go_up_across_unlock_and_reacquire(apply) -> None:
    tokens = []
    for holder in ["alice", "bob", "alice", "carol"]:
        tokens.append(apply("lock", name="door", holder=holder, ttl_ms=100)["token"])
        assert apply("unlock", name="door", holder=holder)["ok"] is True
    assert tokens == [1, 2, 3, 4]
    assert apply("lock", name="window", holder="alice", ttl_ms=100)["token"] == 1


def test_only_the_holder_can_unlock(kv, apply) -> None:
    apply("lock", name="door", holder="alice", ttl_ms=500, at=1_000)
    assert apply("unlock", name="door", holder="bob", at=1_100)["error"] == "not_holder"
    assert info(kv)["holder"] == "alice"
    assert apply("unlock", name="door", holder="alice", at=1_100) == {
        "ok": True,
        "released": True,
        "token": 1,
    }
    assert info(kv)["held"] is False
    assert apply("lock", name="door", holder="bob", ttl_ms=500, at=1_100)["ok"] is True


def test_unlocking_a_lock_nobody_holds_is_an_error(apply) -> None:
    assert apply("unlock", name="door", holder="alice")["error"] == "not_locked"
    apply("lock", name="door", holder="alice", ttl_ms=500, at=1_000)
    apply("unlock", name="door", holder="alice", at=1_000)
    assert apply("unlock", name="door", holder="alice", at=1_000)["error"] == "not_locked"
    apply("lock", name="door", holder="alice", ttl_ms=500, at=2_000)
    assert apply("unlock", name="door", holder="bob", at=2_600)["error"] == "not_locked"


def test_a_holder_unlocking_after_expiry_is_told_its_lock_expired(kv, apply) -> None:
    apply("lock", name="door", holder="alice", ttl_ms=500, at=1_000)
    result = apply("unlock", name="door", holder="alice", at=1_600)
    assert (result["ok"], result["error"], result["expires_ms"]) == (False, "lock_expired", 1_500)


def test_renew_extends_the_holders_lease_from_the_entry_timestamp(kv, apply) -> None:
    apply("lock", name="door", holder="alice", ttl_ms=500, at=1_000)
    assert apply("renew", name="door", holder="alice", ttl_ms=500, at=1_400) == {
        "ok": True,
        "token": 1,
        "expires_ms": 1_900,
    }
    assert apply("lock", name="door", holder="bob", ttl_ms=500, at=1_600)["error"] == "lock_held"


def test_renew_by_another_holder_or_after_expiry_fails(apply) -> None:
    apply("lock", name="door", holder="alice", ttl_ms=500, at=1_000)
    assert apply("renew", name="door", holder="bob", ttl_ms=500, at=1_100)["error"] == "not_holder"
    assert apply("renew", name="door", holder="alice", ttl_ms=500, at=1_500)["error"] == (
        "lock_expired"
    )
    assert apply("renew", name="cellar", holder="alice", ttl_ms=500)["error"] == "not_locked"


def test_lock_info_judges_expiry_by_the_last_applied_timestamp(kv, apply) -> None:
    assert info(kv) == {
        "ok": True,
        "held": False,
        "holder": None,
        "expires_ms": 0,
        "token": 0,
        "as_of_ms": 0,
    }
    apply("lock", name="door", holder="alice", ttl_ms=500, at=1_000)
    apply("put", key="tick", value=1, at=1_500)
    assert info(kv)["held"] is False and info(kv)["token"] == 1


def test_lock_changes_emit_lock_events(apply, events) -> None:
    apply("lock", name="door", holder="alice", ttl_ms=500, at=1_000)
    apply("renew", name="door", holder="alice", ttl_ms=500, at=1_100)
    apply("unlock", name="door", holder="alice", at=1_200)
    apply("unlock", name="door", holder="alice", at=1_200)  # fails: no event
    assert [(e["type"], e["lock"], e["action"], e["holder"], e["token"]) for e in events] == [
        ("lock:changed", "door", "acquired", "alice", 1),
        ("lock:changed", "door", "renewed", "alice", 1),
        ("lock:changed", "door", "released", None, 1),
    ]


def test_locks_and_keys_live_in_separate_namespaces(kv, apply) -> None:
    apply("lock", name="door", holder="alice", ttl_ms=500)
    assert kv.query({"op": "get", "key": "door"})["found"] is False
    assert kv.query({"op": "keys"})["keys"] == []


@pytest.mark.parametrize(
    "op, fields, code",
    [
        ("lock", {"name": "door", "holder": "a", "ttl_ms": 0}, "bad_command"),
        ("lock", {"name": "door", "holder": "a", "ttl_ms": 1.5}, "bad_command"),
        ("lock", {"name": "door", "holder": "a"}, "bad_command"),
        ("lock", {"name": "door", "holder": "a", "ttl_ms": 10**15}, "bad_command"),
        ("lock", {"name": "", "holder": "a", "ttl_ms": 5}, "bad_key"),
        ("lock", {"name": "door", "holder": "", "ttl_ms": 5}, "bad_holder"),
        ("unlock", {"name": "door", "holder": 3}, "bad_holder"),
        ("renew", {"name": "door", "holder": "a", "ttl_ms": -5}, "bad_command"),
    ],
)
def test_bad_lock_commands_are_errors_that_change_nothing(kv, apply, events, op, fields, code):
    before = kv.snapshot()
    result = apply(op, **fields)
    assert result["ok"] is False and result["error"] == code
    assert kv.snapshot() == before and events == []
