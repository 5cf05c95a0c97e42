"""Linearizability checker for a per-key register with compare-and-swap.

Model
-----
Every key is an independent register that starts at ``initial`` (default
``None``). An operation is one of

* ``write(value)``: the register becomes ``value``;
* ``read`` answered ``value``: legal only while the register equals ``value``;
* ``cas(expected, value)`` that succeeded: legal only while the register
  equals ``expected``, which then becomes ``value``;
* ``cas(expected, value)`` answered "did not match" (``succeeded=False``): a
  read that observed something other than ``expected``; it changes nothing.

Each recorded operation also carries a status. ``"ok"`` ops took effect exactly
once, somewhere between ``invoke`` and ``complete``. ``"fail"`` ops definitely
never took effect and are dropped. ``"unknown"`` ops (a timeout, a crashed
client) may have taken effect at any instant after ``invoke``, or never: they
get ``complete = +inf`` and the search may leave them out. An unknown read
tells nothing and is dropped; an unknown cas is either a success or nothing,
because a cas that did not match has no effect to explain.

A history is linearizable when the ``ok`` ops, plus any chosen subset of the
``unknown`` ops, can be put in one sequence that the register accepts and that
keeps real-time order: if ``a.complete < b.invoke`` then ``a`` comes first.
Ops whose times touch (``a.complete == b.invoke``) count as concurrent, so a
coarse clock never produces a false alarm.

Algorithm
---------
Linearizability is local (Herlihy & Wing, "P-compositionality" in Horn &
Kroening): a history is linearizable iff each key's sub-history is, so every
key is checked on its own, which keeps each search small.

Per key we use Wing & Gong's search as refined by Lowe and by porcupine. The
calls and returns are sorted into one doubly linked event list. Walking it
from the head, a call whose op the register accepts in the current state is
*linearized*: its call and return are lifted out of the list, the state is
advanced and the walk restarts from the head. Meeting a return means that op
was not linearized before its completion, so the last choice is undone (the
two events are relinked, dancing-links style) and the walk continues after the
call that was undone. The search succeeds once every ``ok`` op is linearized;
unknown ops still in the list are taken never to have happened. The choices
live on an explicit stack (a parent-linked chain of frames), so histories of
thousands of ops per key need no recursion. Lowe's memoisation prunes the
search: the pair (bitset of linearized ops as a Python int, register state) is
recorded, and a choice leading to a recorded pair is not explored again,
because the rest of the search depends on nothing else.

Unknown ops never expire, so left alone they multiply the search by every
subset of them that might have happened. Five measures keep that in check:

1. The memo key is (bitset of linearized ``ok`` ops, state), and under it we
   keep the sets of unknown ops used so far. A set that includes one already
   explored is pruned: unknown ops are optional, so having used more of them
   only removes ways to go on.
2. At each point the ``ok`` calls are tried before the unknown ones, so the
   paths that use fewer unknown ops tend to be explored first and (1) prunes
   the others.
3. Unknown ops with the same effect are interchangeable once invoked, so the
   memo records how many of each kind were used, not which.
4. Two moves are never tried because a shorter linearization does the same:
   an unknown op that leaves the register unchanged, and a write right after
   an unknown op (that unknown op could as well not have happened).
5. A first, relaxed pass lets every unknown op take effect any number of
   times. It needs no record of used unknown ops, so it is fast; a violation
   it finds is real (the relaxation only makes linearizing easier), and only
   when it succeeds does the exact pass run.

The number of recorded states per key and pass is capped by ``max_states``.
When the cap is hit the answer is ``ok=False, timed_out=True``: the checker
never claims a history is linearizable when it did not finish.

Values are compared with ``==`` and must be hashable. The module is pure: no
I/O, no clock, no randomness.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

KINDS = frozenset({"read", "write", "cas"})
STATUSES = frozenset({"ok", "fail", "unknown"})

# How many ops of a failing prefix / pending set the explanation lists.
_EXPLAIN_TAIL = 12


@dataclass(frozen=True, slots=True)
class Op:
    """One client operation on one key, as recorded by the test harness.

    ``value`` is the value written (write), the new value (cas) or the value
    observed (ok read). ``succeeded`` is only meaningful for an ok cas: False
    means the server answered "did not match".
    """

    client: str
    key: str
    kind: str
    value: object = None
    expected: object = None
    invoke: float = 0.0
    complete: float | None = None
    status: str = "ok"
    succeeded: bool = True

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"{self.describe()}: kind must be one of {sorted(KINDS)}")
        if self.status not in STATUSES:
            raise ValueError(f"{self.describe()}: status must be one of {sorted(STATUSES)}")
        if self.status == "ok":
            if self.complete is None:
                raise ValueError(
                    f"{self.describe()}: an ok op needs a completion time; "
                    "record it as status 'unknown' if the answer never came"
                )
            if math.isinf(self.complete):
                raise ValueError(f"{self.describe()}: an ok op needs a finite completion time")
            if self.complete < self.invoke:
                raise ValueError(f"{self.describe()}: completes before it was invoked")
        if not self.succeeded and self.kind != "cas":
            raise ValueError(f"{self.describe()}: only a cas can report succeeded=False")

    def describe(self) -> str:
        """One line naming the op, its result and its time span."""
        if self.kind == "write":
            action = f"write({self.value!r})"
        elif self.kind == "read":
            action = "read" if self.status != "ok" else f"read -> {self.value!r}"
        else:
            action = f"cas({self.expected!r} -> {self.value!r})"
            if self.status == "ok":
                action += " succeeded" if self.succeeded else " did not match"
        end = "?" if self.complete is None or self.status == "unknown" else f"{self.complete:g}"
        return (
            f"{self.client} {action} on {self.key!r} [{self.invoke:g}, {end}]"
            f"{'' if self.status == 'ok' else ' ' + self.status}"
        )


@dataclass(frozen=True, slots=True)
class Result:
    """Outcome of a check. ``ok`` is True only when the search finished and
    found a linearization for every key; ``key`` names the first key (in sorted
    order) that failed, or that ran out of budget."""

    ok: bool
    key: str | None
    explanation: str
    checked_ops: int
    timed_out: bool = False


def check(history: Iterable[Op], initial: object = None, max_states: int = 2_000_000) -> Result:
    """Check a whole multi-key history, one key at a time.

    A definite violation on any key is reported in preference to a key whose
    search ran out of budget. ``max_states`` caps the memoised states per key.
    """
    by_key: dict[str, list[Op]] = {}
    for op in history:
        by_key.setdefault(op.key, []).append(op)
    checked = 0
    timed_out: Result | None = None
    for key in sorted(by_key):
        result = check_key(by_key[key], initial, max_states=max_states)
        checked += result.checked_ops
        if not result.ok and not result.timed_out:
            return Result(False, key, result.explanation, checked, False)
        if result.timed_out and timed_out is None:
            timed_out = result
    if timed_out is not None:
        return Result(False, timed_out.key, timed_out.explanation, checked, True)
    return Result(
        True, None, f"linearizable: {checked} ops over {len(by_key)} keys", checked, False
    )


def check_key(ops: Iterable[Op], initial: object = None, max_states: int = 2_000_000) -> Result:
    """Check the history of a single key (all ops must share one key)."""
    ops = list(ops)
    if not ops:
        return Result(True, None, "linearizable: empty history", 0, False)
    key = ops[0].key
    for op in ops:
        if op.key != key:
            raise ValueError(f"check_key got ops on {key!r} and {op.key!r}; use check() for many keys")
    kept = [op for op in ops if _takes_part(op)]
    search = _Search(key, kept, initial, max_states)
    if any(op.status == "unknown" for op in kept):
        relaxed = search.run(reuse_unknown=True)
        if not relaxed.ok:
            return relaxed
    return search.run()


def _takes_part(op: Op) -> bool:
    """Failed ops never happened; an unknown read observed nothing we know."""
    if op.status == "fail":
        return False
    return not (op.status == "unknown" and op.kind == "read")


_WRITE, _READ, _CAS, _CAS_MISS = range(4)


class _Search:
    """The Wing & Gong / Lowe search over one key's ops (see module docstring).

    Node ids in the event list: op ``i`` has its call at ``2*i`` and its
    return at ``2*i + 1``; the head sentinel is ``2*n``; ``-1`` ends the list.
    Register values are interned to small ints so states hash cheaply.
    """

    def __init__(self, key: str, ops: Sequence[Op], initial: object, max_states: int) -> None:
        self.key = key
        self.ops = ops
        self.max_states = max_states
        self.values: list[object] = []
        self._codes: dict[object, int] = {}
        self.initial = self._intern(initial, None)
        self.kinds: list[int] = []
        self.arg_a: list[int] = []
        self.arg_b: list[int] = []
        for op in ops:
            if op.kind == "write":
                self.kinds.append(_WRITE)
                self.arg_a.append(self._intern(op.value, op))
                self.arg_b.append(0)
            elif op.kind == "read":
                self.kinds.append(_READ)
                self.arg_a.append(self._intern(op.value, op))
                self.arg_b.append(0)
            else:
                miss = op.status == "ok" and not op.succeeded
                self.kinds.append(_CAS_MISS if miss else _CAS)
                self.arg_a.append(self._intern(op.expected, op))
                self.arg_b.append(self._intern(op.value, op))

    def _intern(self, value: object, op: Op | None) -> int:
        try:
            code = self._codes.get(value)
        except TypeError:
            where = op.describe() if op is not None else "the initial value"
            raise TypeError(
                f"register value {value!r} in {where} is unhashable; "
                "the checker compares values by hash and ==, record a hashable form"
            ) from None
        if code is None:
            code = len(self.values)
            self._codes[value] = code
            self.values.append(value)
        return code

    def _build_list(self) -> tuple[list[int], list[int]]:
        n = len(self.ops)
        events: list[tuple[float, int, int]] = []
        for i, op in enumerate(self.ops):
            end = math.inf if op.status == "unknown" else op.complete
            assert end is not None  # Op.__post_init__: ok ops have a completion
            # At equal times calls sort before returns: touching ops overlap.
            events.append((op.invoke, 0, 2 * i))
            events.append((end, 1, 2 * i + 1))
        events.sort()
        head = 2 * n
        nxt = [-1] * (2 * n + 1)
        prv = [-1] * (2 * n + 1)
        last = head
        for _, _, node in events:
            nxt[last] = node
            prv[node] = last
            last = node
        return nxt, prv

    def _unknown_classes(self) -> tuple[list[int], list[int], int]:
        """Group unknown ops that would have identical effects.

        Once invoked, such ops are interchangeable (their returns are all at
        +inf), so the memo records only how many of each group were used: the
        k-th use of group g sets bit ``base[g] + k``. Returns the group of
        every op (-1 for ok ops), each group's first bit, and the flag bit.
        """
        group_of: list[int] = []
        groups: dict[tuple[int, int, int], int] = {}
        sizes: list[int] = []
        for i, op in enumerate(self.ops):
            if op.status == "ok":
                group_of.append(-1)
                continue
            signature = (self.kinds[i], self.arg_a[i], self.arg_b[i])
            if signature not in groups:
                groups[signature] = len(sizes)
                sizes.append(0)
            group_of.append(groups[signature])
            sizes[groups[signature]] += 1
        base: list[int] = []
        total = 0
        for size in sizes:
            base.append(total)
            total += size
        return group_of, base, total

    def run(self, reuse_unknown: bool = False) -> Result:
        """Search for a linearization. With ``reuse_unknown`` every unknown op
        may take effect any number of times: a relaxation whose memo needs no
        record of used unknown ops, so a violation it finds is found fast and
        is real, while a success must be confirmed by the exact search."""
        n = len(self.ops)
        nxt, prv = self._build_list()
        head = 2 * n
        kinds, arg_a, arg_b = self.kinds, self.arg_a, self.arg_b
        definite = [op.status == "ok" for op in self.ops]
        ok_bit = [0] * n  # ok ops get their own dense bit numbering
        ok_index = 0
        for i, is_definite in enumerate(definite):
            if is_definite:
                ok_bit[i] = 1 << ok_index
                ok_index += 1
        remaining = ok_index
        group_of, group_base, flag_shift = self._unknown_classes()
        group_used = [0] * len(group_base)
        # Set in the memo mask while the last linearized op is an unknown one.
        # Unset dominates set: that configuration may try more moves.
        after_unknown_flag = 1 << flag_shift
        max_states = self.max_states

        state = self.initial
        done_ok = 0  # bitset of linearized ok ops
        unknown_mask = 0  # canonical use counts of unknown ops + the flag bit
        depth = 0
        # Phase 0 tries the ok calls of the current window, phase 1 the
        # unknown ones: finding paths that use fewest unknown ops first lets
        # the dominance check below prune the paths that use more.
        phase = 0
        # Frame: (call node, state before it, mask before it, parent frame).
        top: tuple | None = None
        # (done_ok, state) -> unknown masks explored with it. A mask including
        # an explored one is pruned too: unknown ops are optional, so having
        # used more of them only removes ways to go on.
        seen: dict[tuple[int, int], list[int]] = {(0, state): [0]}
        stored = 1
        best_depth = -1
        best_top: tuple | None = None
        best_state = state
        best_blocked = -1

        node = nxt[head]
        while remaining:
            assert node != -1, "an ok op's return is always still in the list"
            op_index = node >> 1
            if not node & 1:
                is_definite = definite[op_index]
                if is_definite == (phase == 1):
                    node = nxt[node]
                    continue
                kind = kinds[op_index]
                if kind == _WRITE:
                    # Unknown op then blind write: the unknown op could as well
                    # never have happened, so only that shorter order is tried.
                    new_state = -1 if unknown_mask >= after_unknown_flag else arg_a[op_index]
                elif kind == _READ:
                    new_state = state if state == arg_a[op_index] else -1
                elif kind == _CAS:
                    new_state = arg_b[op_index] if state == arg_a[op_index] else -1
                else:
                    new_state = state if state != arg_a[op_index] else -1
                # An unknown op that leaves the register as it was is likewise
                # better left out.
                if new_state >= 0 and (is_definite or new_state != state):
                    if is_definite:
                        new_ok = done_ok | ok_bit[op_index]
                        new_mask = unknown_mask & ~after_unknown_flag
                    elif reuse_unknown:
                        new_ok = done_ok
                        new_mask = after_unknown_flag
                    else:
                        new_ok = done_ok
                        group = group_of[op_index]
                        new_mask = (
                            unknown_mask | (1 << (group_base[group] + group_used[group]))
                            | after_unknown_flag
                        )
                    explored = seen.get((new_ok, new_state))
                    if explored is None:
                        seen[(new_ok, new_state)] = [new_mask]
                        fresh = True
                    else:
                        for old in explored:
                            if old & new_mask == old:
                                fresh = False
                                break
                        else:
                            # Masks that include the new one are now redundant.
                            explored[:] = [old for old in explored if old & new_mask != new_mask]
                            explored.append(new_mask)
                            fresh = True
                    if fresh:
                        stored += 1
                        if stored > max_states:
                            return self._timed_out()
                        top = (node, state, unknown_mask, top)
                        state = new_state
                        done_ok = new_ok
                        unknown_mask = new_mask
                        depth += 1
                        if is_definite:
                            remaining -= 1
                        elif reuse_unknown:
                            phase = 0  # a reusable op stays in the list
                            node = nxt[head]
                            continue
                        else:
                            group_used[group_of[op_index]] += 1
                        ret = node + 1
                        nxt[prv[node]] = nxt[node]
                        if nxt[node] != -1:
                            prv[nxt[node]] = prv[node]
                        nxt[prv[ret]] = nxt[ret]
                        if nxt[ret] != -1:
                            prv[nxt[ret]] = prv[ret]
                        phase = 0
                        node = nxt[head]
                        continue
                node = nxt[node]
                continue
            if phase == 0:
                phase = 1
                node = nxt[head]
                continue
            # A return whose op is not linearized yet: undo the last choice.
            if depth > best_depth:
                best_depth, best_top, best_state, best_blocked = depth, top, state, op_index
            if top is None:
                return self._violation(best_top, best_state, best_blocked, reuse_unknown)
            call, state, unknown_mask, top = top
            depth -= 1
            undone = call >> 1
            if definite[undone]:
                done_ok ^= ok_bit[undone]
                remaining += 1
                phase = 0
            elif reuse_unknown:
                phase = 1  # it was never lifted out of the list
                node = nxt[call]
                continue
            else:
                group_used[group_of[undone]] -= 1
                phase = 1
            ret = call + 1
            if nxt[ret] != -1:
                prv[nxt[ret]] = ret
            nxt[prv[ret]] = ret
            if nxt[call] != -1:
                prv[nxt[call]] = call
            nxt[prv[call]] = call
            node = nxt[call]
        return Result(True, None, f"linearizable: {n} ops on {self.key!r}", n, False)

    def _timed_out(self) -> Result:
        text = (
            f"key {self.key!r}: search budget exhausted after {self.max_states} memoised "
            f"states over {len(self.ops)} ops; linearizability is UNKNOWN, not claimed. "
            "Raise max_states, or shorten or split the history."
        )
        return Result(False, self.key, text, len(self.ops), True)

    def _violation(self, top: tuple | None, state: int, blocked: int, relaxed: bool) -> Result:
        prefix: list[int] = []
        while top is not None:
            prefix.append(top[0] >> 1)
            top = top[3]
        prefix.reverse()
        ops = self.ops
        op = ops[blocked]
        held = self.values[state]
        lines = [
            f"key {self.key!r} is not linearizable ({len(ops)} ops checked).",
            f"Longest linearizable prefix found: {len(prefix)} op{'' if len(prefix) == 1 else 's'}, "
            f"after which the register holds {held!r}:",
        ]
        if relaxed:
            lines.append(
                "  (found letting each unknown-status op take effect any number of times,"
                " which only makes linearizing easier; an op may be listed twice)"
            )
        if len(prefix) > _EXPLAIN_TAIL:
            lines.append(f"  ... {len(prefix) - _EXPLAIN_TAIL} earlier ops")
        for index in prefix[-_EXPLAIN_TAIL:]:
            lines.append(f"  {ops[index].describe()}")
        lines.append(f"Could not place: {op.describe()}")
        lines.append(f"  {_why(op, held)}")
        placed = set(prefix)
        assert op.complete is not None  # only ok ops block the search
        pending = [
            i for i, other in enumerate(ops)
            if i not in placed and i != blocked and other.invoke <= op.complete
        ]
        if pending:
            lines.append("Other ops not yet placed that began before it completed:")
            for index in pending[:_EXPLAIN_TAIL]:
                lines.append(f"  {ops[index].describe()}")
            if len(pending) > _EXPLAIN_TAIL:
                lines.append(f"  ... and {len(pending) - _EXPLAIN_TAIL} more")
        return Result(False, self.key, "\n".join(lines), len(ops), False)


def _why(op: Op, held: object) -> str:
    """Why ``op`` cannot take effect right after the prefix, in words."""
    if op.kind == "read" and op.value != held:
        return f"it returned {op.value!r} but the register held {held!r} and no pending op fixes that"
    if op.kind == "cas" and op.succeeded and op.expected != held:
        return (
            f"it succeeded expecting {op.expected!r} but the register held {held!r} "
            "and no pending op fixes that"
        )
    if op.kind == "cas" and not op.succeeded and op.expected == held:
        return (
            f"it reported a mismatch, yet the register held exactly {held!r} "
            "and no pending op changes that"
        )
    return "it can take effect here, but no order of the remaining ops then works"
