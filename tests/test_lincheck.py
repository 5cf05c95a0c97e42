"""Tests for nodes.lincheck: the per-key register + cas linearizability checker.

Each test name is the sentence it checks. Randomized tests derive everything
from one seed and print "reproduce with seed=..." when they fail.
"""

from __future__ import annotations

import itertools
import random

import pytest

from nodes.lincheck import Op, Result, check, check_key

# ---------------------------------------------------------------- helpers


def w(client: str, value: object, start: float, end: float | None, *, key: str = "x",
      status: str = "ok") -> Op:
    return Op(client, key, "write", value=value, invoke=start, complete=end, status=status)


def r(client: str, value: object, start: float, end: float | None, *, key: str = "x",
      status: str = "ok") -> Op:
    return Op(client, key, "read", value=value, invoke=start, complete=end, status=status)


def cas(client: str, expected: object, new: object, start: float, end: float | None, *,
        key: str = "x", status: str = "ok", succeeded: bool = True) -> Op:
    return Op(client, key, "cas", value=new, expected=expected, invoke=start, complete=end,
              status=status, succeeded=succeeded)


def assert_linearizable(history: list[Op], initial: object = None) -> Result:
    result = check(history, initial)
    assert result.ok, result.explanation
    assert not result.timed_out
    return result


def assert_violation(history: list[Op], initial: object = None, key: str = "x") -> Result:
    result = check(history, initial)
    assert not result.ok, "expected a violation but the checker linearized the history"
    assert not result.timed_out, result.explanation
    assert result.key == key
    return result


# ------------------------------------------------- known linearizable histories


def test_sequential_history_of_writes_reads_and_cas_is_linearizable() -> None:
    assert_linearizable([
        r("a", None, 0, 1),
        w("a", 1, 2, 3),
        r("b", 1, 4, 5),
        cas("b", 1, 2, 6, 7),
        cas("a", 1, 3, 8, 9, succeeded=False),
        r("a", 2, 10, 11),
    ])


def test_read_overlapping_a_write_may_see_the_new_value() -> None:
    assert_linearizable([w("a", 1, 0, 1), w("a", 2, 2, 10), r("b", 2, 3, 4)])


def test_read_overlapping_a_write_may_see_the_old_value() -> None:
    assert_linearizable([w("a", 1, 0, 1), w("a", 2, 2, 10), r("b", 1, 3, 4)])


def test_ops_whose_times_touch_count_as_concurrent() -> None:
    # The read is invoked at the instant the write completes: either order is allowed.
    assert_linearizable([w("a", 1, 0, 2), r("b", None, 2, 3)])


def test_concurrent_cas_race_where_exactly_one_wins_is_linearizable() -> None:
    assert_linearizable([
        cas("a", 0, 1, 0, 5),
        cas("b", 0, 2, 1, 6, succeeded=False),
        r("c", 1, 7, 8),
    ], initial=0)


def test_the_later_invoked_cas_may_be_the_winner_of_a_race() -> None:
    assert_linearizable([
        cas("a", 0, 1, 0, 5, succeeded=False),
        cas("b", 0, 2, 1, 6),
        r("c", 2, 7, 8),
    ], initial=0)


def test_unknown_write_that_took_effect_explains_a_later_read() -> None:
    assert_linearizable([w("a", 1, 0, None, status="unknown"), r("b", 1, 5, 6)])


def test_unknown_write_that_never_took_effect_is_left_out() -> None:
    assert_linearizable([w("a", 1, 0, None, status="unknown"), r("b", None, 5, 6)])


def test_unknown_write_may_take_effect_long_after_its_invocation() -> None:
    assert_linearizable([
        w("a", 1, 0, None, status="unknown"),
        r("b", None, 5, 6),
        w("b", 2, 7, 8),
        r("b", 1, 9, 10),
    ])


def test_unknown_cas_may_succeed_or_be_left_out() -> None:
    assert_linearizable([cas("a", None, 1, 0, None, status="unknown"), r("b", 1, 2, 3)])
    assert_linearizable([cas("a", None, 1, 0, None, status="unknown"), r("b", None, 2, 3)])


def test_failed_ops_and_unknown_reads_are_dropped() -> None:
    result = assert_linearizable([
        w("a", 1, 0, 1, status="fail"),
        r("b", 7, 0, None, status="unknown"),
        r("b", None, 2, 3),
    ])
    assert result.checked_ops == 1


def test_empty_history_is_linearizable() -> None:
    assert_linearizable([])


def test_initial_value_is_what_the_register_holds_before_any_write() -> None:
    assert_linearizable([r("a", "start", 0, 1)], initial="start")
    assert_violation([r("a", None, 0, 1)], initial="start")


# --------------------------------------------- known non-linearizable histories


def test_stale_read_after_a_completed_write_is_a_violation() -> None:
    assert_violation([w("a", 1, 0, 1), r("b", None, 2, 3)])


def test_two_successful_cas_with_the_same_expected_value_in_sequence_is_a_violation() -> None:
    assert_violation([cas("a", 0, 1, 0, 1), cas("b", 0, 2, 2, 3)], initial=0)


def test_two_successful_concurrent_cas_with_the_same_expected_value_is_a_violation() -> None:
    assert_violation([cas("a", 0, 1, 0, 5), cas("b", 0, 2, 1, 6)], initial=0)


def test_cas_reporting_a_mismatch_when_the_value_matched_is_a_violation() -> None:
    assert_violation([w("a", 1, 0, 1), cas("b", 1, 2, 2, 3, succeeded=False)])


def test_read_of_a_value_never_written_is_a_violation() -> None:
    assert_violation([w("a", 1, 0, 1), r("b", 42, 2, 3)])


def test_lost_write_observed_later_as_the_old_value_is_a_violation() -> None:
    assert_violation([w("a", 1, 0, 1), w("b", 2, 2, 3), r("c", 1, 4, 5)])


def test_read_seeing_a_value_then_a_later_read_seeing_an_older_one_is_a_violation() -> None:
    # Both reads overlap the write of 2, but they are ordered with each other.
    assert_violation([
        w("a", 1, 0, 1),
        w("a", 2, 2, 10),
        r("b", 2, 3, 4),
        r("c", 1, 5, 6),
    ])


def test_unknown_write_cannot_explain_a_read_that_finished_before_it_was_invoked() -> None:
    assert_violation([r("b", 1, 0, 1), w("a", 1, 2, None, status="unknown")])


def test_unknown_write_takes_effect_at_most_once() -> None:
    # Applying the unknown write twice would explain both reads of 1; once cannot.
    assert_violation([
        w("u", 1, 0, None, status="unknown"),
        r("a", 1, 1, 2),
        w("b", 2, 3, 4),
        r("c", 1, 5, 6),
    ])


def test_unknown_cas_needs_its_expected_value_to_take_effect() -> None:
    assert_violation([cas("u", 5, 1, 0, None, status="unknown"), r("a", 1, 1, 2)], initial=0)


def test_failed_write_cannot_explain_a_read() -> None:
    assert_violation([w("a", 1, 0, 1, status="fail"), r("b", 1, 2, 3)])


def test_violation_explanation_names_the_prefix_and_the_op_that_could_not_be_placed() -> None:
    result = assert_violation([
        w("a", 1, 0, 1),
        w("a", 2, 2, 3),
        r("b", 1, 4, 5),
    ])
    text = result.explanation
    assert "Longest linearizable prefix found: 2 ops" in text
    assert "Could not place: b read -> 1 on 'x' [4, 5]" in text
    assert "register held 2" in text


# ------------------------------------------------------------ per-key independence


def test_violation_on_one_key_is_reported_with_that_key() -> None:
    history = [
        w("a", 1, 0, 1, key="good"),
        r("b", 1, 2, 3, key="good"),
        w("a", 1, 0, 1, key="bad"),
        r("b", None, 2, 3, key="bad"),
        w("c", 5, 0, 1, key="zzz"),
    ]
    result = assert_violation(history, key="bad")
    assert "'bad'" in result.explanation


def test_keys_are_independent_registers() -> None:
    # Merged into one register this would be a stale read; per key it is fine.
    assert_linearizable([w("a", 1, 0, 1, key="k1"), r("b", None, 2, 3, key="k2")])


def test_check_key_rejects_ops_on_several_keys() -> None:
    with pytest.raises(ValueError, match="check\\(\\)"):
        check_key([w("a", 1, 0, 1, key="k1"), w("a", 1, 0, 1, key="k2")])


# ------------------------------------------------------------------ validation


def test_ok_op_without_a_completion_time_is_rejected() -> None:
    with pytest.raises(ValueError, match="unknown"):
        r("a", 1, 0, None)


def test_op_completing_before_its_invocation_is_rejected() -> None:
    with pytest.raises(ValueError, match="before"):
        w("a", 1, 5, 4)


def test_succeeded_false_is_only_for_cas() -> None:
    with pytest.raises(ValueError, match="cas"):
        Op("a", "x", "write", value=1, complete=1.0, succeeded=False)


def test_unhashable_value_is_rejected_naming_the_op() -> None:
    with pytest.raises(TypeError, match="unhashable"):
        check([w("a", [1], 0, 1)])


# ------------------------------------------------------------------- budget


def test_exhausted_budget_reports_timed_out_and_never_claims_linearizable() -> None:
    history = [w(f"c{i}", i, 0, 10) for i in range(8)] + [r("z", 3, 11, 12)]
    result = check(history, max_states=5)
    assert not result.ok
    assert result.timed_out
    assert result.key == "x"
    assert "budget" in result.explanation


def test_definite_violation_is_preferred_over_a_timed_out_key() -> None:
    history = [w(f"c{i}", i, 0, 10, key="a-slow") for i in range(8)]
    history += [r("z", 3, 11, 12, key="a-slow")]
    history += [w("a", 1, 0, 1, key="b-bad"), r("b", 9, 2, 3, key="b-bad")]
    result = check(history, max_states=5)
    assert not result.ok
    assert not result.timed_out
    assert result.key == "b-bad"


# ----------------------------------------------------- randomized: ground truth

NEVER_WRITTEN = "never-written"


def generate_history(rng: random.Random, n_ops: int, keys: int, clients: int,
                     value_range: int | None = None, p_unknown: float = 0.02,
                     p_fail: float = 0.02) -> list[Op]:
    """A history produced by a real sequential register: every applied op takes
    effect at a random instant inside its [invoke, complete] span, and results
    are computed by replaying ops in the order of those instants. Linearizable
    by construction. ``value_range`` limits written values (repeats make the
    search harder); None writes unique values."""
    key_names = [f"k{i}" for i in range(keys)]
    clock = {f"c{i}": rng.uniform(0, 1) for i in range(clients)}
    planned: list[dict] = []
    next_value = itertools.count(1)
    for _ in range(n_ops):
        client = rng.choice(list(clock))
        invoke = clock[client] + rng.expovariate(2.0)
        duration = rng.expovariate(1.0)
        point = invoke + rng.uniform(0, duration)
        roll = rng.random()
        status = "unknown" if roll < p_unknown else "fail" if roll < p_unknown + p_fail else "ok"
        if status == "unknown":
            # The answer never came: it may land much later, or never.
            point = invoke + rng.expovariate(0.2)
        complete = invoke + duration
        clock[client] = complete
        if value_range is None:
            value = next(next_value)
        else:
            value = rng.randrange(value_range)
        planned.append({
            "client": client,
            "key": rng.choice(key_names),
            "kind": rng.choices(["read", "write", "cas"], weights=[5, 3, 2])[0],
            "value": value,
            "expected": None,
            "invoke": invoke,
            "complete": complete,
            "status": status,
            "point": point,
            "applies": status == "ok" or (status == "unknown" and rng.random() < 0.5),
        })
    register: dict[str, object] = {}
    history: list[Op] = []
    for p in sorted(planned, key=lambda p: p["point"]):
        current = register.get(p["key"])
        succeeded = True
        if p["kind"] == "cas":
            # Expect the current value most of the time, so many cas succeed.
            if rng.random() < 0.6:
                guess = current
            else:
                guess = rng.randrange(value_range) if value_range else rng.randrange(n_ops)
            p["expected"] = guess
            succeeded = current == guess
        if p["applies"]:
            if p["kind"] == "write" or (p["kind"] == "cas" and succeeded):
                register[p["key"]] = p["value"]
            if p["kind"] == "read":
                p["value"] = current
        history.append(Op(
            p["client"], p["key"], p["kind"], value=p["value"], expected=p["expected"],
            invoke=p["invoke"],
            complete=None if p["status"] == "unknown" else p["complete"],
            status=p["status"],
            succeeded=succeeded if p["status"] == "ok" else True,
        ))
    history.sort(key=lambda op: op.invoke)
    return history


@pytest.mark.parametrize("seed", range(60))
def test_histories_from_a_real_register_are_linearizable_and_a_corrupted_read_is_not(
        seed: int) -> None:
    rng = random.Random(seed)
    history = generate_history(rng, n_ops=rng.randrange(20, 300), keys=rng.randrange(1, 4),
                               clients=rng.randrange(2, 8),
                               value_range=rng.choice([None, 3, 10]),
                               p_unknown=rng.choice([0.0, 0.02, 0.1]))
    result = check(history)
    assert result.ok, f"reproduce with seed={seed}\n{result.explanation}"

    reads = [i for i, op in enumerate(history) if op.kind == "read" and op.status == "ok"]
    if not reads:
        pytest.skip(f"seed={seed} produced no ok reads")
    victim = rng.choice(reads)
    original = history[victim]
    corrupted = list(history)
    corrupted[victim] = Op(original.client, original.key, "read", value=NEVER_WRITTEN,
                           invoke=original.invoke, complete=original.complete)
    result = check(corrupted)
    assert not result.ok, f"reproduce with seed={seed}: corrupted read {corrupted[victim]}"
    assert not result.timed_out, f"reproduce with seed={seed}"
    assert result.key == original.key, f"reproduce with seed={seed}"


def brute_force_linearizable(history: list[Op], initial: object = None) -> bool:
    """Reference oracle: try every subset of unknown ops and every order."""
    ops = [op for op in history
           if op.status != "fail" and not (op.status == "unknown" and op.kind == "read")]
    definite = [op for op in ops if op.status == "ok"]
    unknown = [op for op in ops if op.status == "unknown"]

    def end(op: Op) -> float:
        return float("inf") if op.status == "unknown" else op.complete  # type: ignore[return-value]

    def accepts(order: tuple[Op, ...]) -> bool:
        for i, later in enumerate(order):
            if any(end(later) < earlier.invoke for earlier in order[:i]):
                return False
        state = initial
        for op in order:
            if op.kind == "write":
                state = op.value
            elif op.kind == "read":
                if state != op.value:
                    return False
            elif op.status == "ok" and not op.succeeded:
                if state == op.expected:
                    return False
            else:
                if state != op.expected:
                    return False
                state = op.value
        return True

    for size in range(len(unknown) + 1):
        for chosen in itertools.combinations(unknown, size):
            for order in itertools.permutations(definite + list(chosen)):
                if accepts(order):
                    return True
    return False


def random_small_history(rng: random.Random) -> list[Op]:
    """Arbitrary small histories (results need not make sense), times on a
    coarse integer grid so that ties between call and return happen."""
    history = []
    for i in range(rng.randrange(1, 7)):
        start = rng.randrange(0, 8)
        end = start + rng.randrange(0, 4)
        kind = rng.choice(["read", "write", "cas"])
        status = rng.choices(["ok", "unknown", "fail"], weights=[6, 3, 1])[0]
        history.append(Op(
            f"c{i}", "x", kind, value=rng.choice([None, 0, 1, 2]), expected=rng.choice([None, 0, 1]),
            invoke=start, complete=None if status == "unknown" else end, status=status,
            succeeded=kind != "cas" or status != "ok" or rng.random() < 0.7,
        ))
    return history


def test_checker_agrees_with_brute_force_on_small_random_histories() -> None:
    base_seed = 20240601
    verdicts = {True: 0, False: 0}
    for case in range(2000):
        seed = base_seed + case
        rng = random.Random(seed)
        history = random_small_history(rng)
        expected = brute_force_linearizable(history)
        result = check_key(history)
        assert result.ok == expected, (
            f"reproduce with seed={seed}: brute force says {expected}\n"
            + "\n".join(op.describe() for op in history) + "\n" + result.explanation
        )
        verdicts[expected] += 1
    # Make sure both verdicts were actually exercised.
    assert min(verdicts.values()) > 100, verdicts


# ------------------------------------------------------------------ performance


def test_three_thousand_op_history_finishes_within_the_search_budget() -> None:
    seed = 7
    rng = random.Random(seed)
    history = generate_history(rng, n_ops=3000, keys=5, clients=10, value_range=20)
    result = check(history)
    assert not result.timed_out, f"reproduce with seed={seed}\n{result.explanation}"
    assert result.ok, f"reproduce with seed={seed}\n{result.explanation}"


def test_three_thousand_op_history_with_a_stale_read_is_refuted_within_the_budget() -> None:
    seed = 11
    rng = random.Random(seed)
    # Unique written values, so a value once overwritten can never be read again.
    history = generate_history(rng, n_ops=3000, keys=5, clients=10, p_unknown=0.05)
    last_read = max(i for i, op in enumerate(history) if op.kind == "read" and op.status == "ok")
    read = history[last_read]
    writes = [op for op in history
              if op.key == read.key and op.kind == "write" and op.status == "ok"
              and op.complete is not None and op.complete < read.invoke]
    old = writes[0]
    assert any(later.invoke > old.complete for later in writes), f"seed={seed}: no overwrite"
    stale = Op(read.client, read.key, "read", value=old.value, invoke=read.invoke,
               complete=read.complete)
    result = check(history[:last_read] + [stale] + history[last_read + 1:])
    assert not result.timed_out, f"reproduce with seed={seed}\n{result.explanation}"
    assert not result.ok, f"reproduce with seed={seed}"
    assert result.key == read.key, f"reproduce with seed={seed}"


def test_long_single_key_history_needs_no_recursion() -> None:
    history = []
    for i in range(5000):
        history.append(w("a", i, 4 * i, 4 * i + 1))
        history.append(r("b", i, 4 * i + 2, 4 * i + 3))
    assert_linearizable(history)
