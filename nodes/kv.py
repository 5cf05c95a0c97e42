"""The replicated key-value state machine ("kv"): keys, counters, compare-and-swap,
atomic batches and distributed locks, all done atomically inside the state machine.

Commands (``apply``), each a dict with ``"op"``:

    put     {key, value}                      -> {ok, version}
    delete  {key}                             -> {ok, deleted}
    cas     {key, expected?, expected_version?, value}
                                              -> {ok, succeeded, version} or, when the
                                                 current state differs, {ok: False,
                                                 succeeded: False, error: "cas_failed",
                                                 found, value, version}
    incr    {key, by=1} / decr {key, by=1}    -> {ok, value, version}
    batch   {ops: [...], conditions: [...]}   -> {ok, succeeded, results}
    lock    {name, holder, ttl_ms}            -> {ok, acquired, renewed, token, expires_ms}
    unlock  {name, holder}                    -> {ok, released, token}
    renew   {name, holder, ttl_ms}            -> {ok, token, expires_ms}

Queries (``query``): ``get {key}`` -> {ok, found, value, version}; ``keys {prefix="",
after=None, limit=1000}`` -> {ok, keys, truncated}; ``lock_info {name}`` -> {ok, held,
holder, expires_ms, token, as_of_ms}: a query carries no time, so ``held`` is judged
at ``as_of_ms``, the timestamp of the last command that took effect.

Rules:

- ``ok`` is True exactly when the command took effect as asked. Otherwise the
  result is ``{"ok": False, "error": code, "message": ...}`` and nothing changed
  (no state, no event).
- A key is a non-empty str of at most 256 chars; a value is msgpack-able, at
  most 1 MiB encoded, and not None (None means "absent": delete the key instead).
- ``version``: a key's version goes up by one with every change to it. A key
  created (again) starts at the store's revision (the count of all changes so
  far), so a key deleted and created again never reuses a version and an
  ``expected_version`` can't be fooled by such an ABA. Version 0 means absent.
- cas compares values strictly (``1`` does not equal ``1.0`` nor ``True``).
  ``expected`` None means "key absent"; with both ``expected`` and
  ``expected_version`` both must match.
- A batch checks its ``conditions`` (``{key, equals | version | absent}``) first,
  then runs its ops (put, delete, cas, incr, decr) on a copy-on-write overlay and
  commits only if every op succeeded: all apply or none.
- Locks live in their own namespace. A lock is held until ``expires_ms``
  (exclusive), judged by the entry's leader timestamp so every node agrees. Each
  new acquisition gets a fencing token one above the lock's previous one (tokens
  survive unlock); an acquire by the current holder renews and keeps the token.
  Expiry itself produces no event: no entry is applied at that moment.

Events: each change to a key emits ``{"type": "state:changed", "key", "old",
"new", "version"}`` (``old``/``new`` None for absent); each lock change emits
``{"type": "lock:changed", "lock", "action", "holder", "token", "expires_ms"}``.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass, field
from typing import Any

import msgpack

from .statemachine import ApplyContext, StateMachine, error_result

MAX_KEY_CHARS = 256
MAX_HOLDER_CHARS = 256
MAX_VALUE_BYTES = 1024 * 1024
MAX_BATCH_OPS = 1000
MAX_KEYS_LIMIT = 10_000
DEFAULT_KEYS_LIMIT = 1000
MAX_LOCK_TTL_MS = 30 * 24 * 3600 * 1000
INT64_MIN, INT64_MAX = -(1 << 63), (1 << 63) - 1
KEY_OPS = frozenset({"put", "delete", "cas", "incr", "decr"})
CONDITION_FIELDS = frozenset({"equals", "version", "absent"})

Item = tuple[Any, int]
"""A stored key: (value, version)."""


class KvRefusal(Exception):
    """A command that can't take effect; becomes ``{"ok": False, "error": code, ...}``."""

    def __init__(self, code: str, message: str, **extra: object) -> None:
        super().__init__(message)
        self.code = code
        self.extra = extra

    def result(self) -> dict[str, object]:
        return error_result(self.code, str(self), **self.extra)


# --- validation ----------------------------------------------------------------------


def _key(command: dict, name: str = "key") -> str:
    key = command.get(name)
    if not isinstance(key, str) or not 0 < len(key) <= MAX_KEY_CHARS:
        raise KvRefusal(
            "bad_key",
            f"{name} must be a non-empty str of at most {MAX_KEY_CHARS} chars, got {key!r:.80}",
        )
    return key


def _holder(command: dict) -> str:
    holder = command.get("holder")
    if not isinstance(holder, str) or not 0 < len(holder) <= MAX_HOLDER_CHARS:
        raise KvRefusal(
            "bad_holder",
            f"holder must be a non-empty str of at most {MAX_HOLDER_CHARS} chars, "
            f"got {holder!r:.80}",
        )
    return holder


def _int_field(command: dict, name: str, default: int | None, low: int, high: int) -> int:
    value = command.get(name, default)
    if type(value) is not int or not low <= value <= high:
        raise KvRefusal(
            "bad_command", f"{name} must be an int in [{low}, {high}], got {value!r:.80}"
        )
    return value


def _value(value: object, what: str = "value") -> object:
    """Validate a value and return it as it will read back after msgpack (tuples
    become lists...), so a snapshot restores exactly what was stored."""
    if value is None:
        raise KvRefusal("bad_value", f"{what} must not be None (None means absent: use delete)")
    kind = type(value)
    if kind is bool or kind is float or (kind is int and -(1 << 63) <= value < (1 << 64)):  # type: ignore[operator]
        return value  # a scalar reads back as itself: no round trip needed (the hot path)
    if kind is bytes and len(value) <= MAX_VALUE_BYTES // 2:  # type: ignore[arg-type]
        return value
    if kind is str and len(value) <= MAX_VALUE_BYTES // 2 and value.isascii():  # type: ignore[attr-defined]
        return value  # ASCII encodes as itself (other text may hold lone surrogates)
    try:
        packed = msgpack.packb(value, use_bin_type=True)
    except (TypeError, ValueError, OverflowError) as exc:
        raise KvRefusal("bad_value", f"{what} is not msgpack-able: {exc}") from None
    if len(packed) > MAX_VALUE_BYTES:
        raise KvRefusal(
            "value_too_large",
            f"{what} is {len(packed)} bytes encoded, above the limit of {MAX_VALUE_BYTES}",
        )
    try:
        return msgpack.unpackb(packed, raw=False, strict_map_key=False)
    except (TypeError, ValueError) as exc:  # e.g. a map keyed by a list
        raise KvRefusal("bad_value", f"{what} does not read back from msgpack: {exc}") from None


def same_value(a: object, b: object) -> bool:
    """Strict equality of plain data: types must match too (``1 != 1.0 != True``)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, list):
        return len(a) == len(b) and all(same_value(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same_value(a[k], b[k]) for k in a)
    return a == b


def _command_dict(command: object) -> str:
    if not isinstance(command, dict):
        raise KvRefusal("bad_command", f"a command must be a map, got {type(command).__name__}")
    op = command.get("op")
    if not isinstance(op, str):
        raise KvRefusal("bad_command", f"a command needs an 'op' str, got {op!r:.80}")
    return op


# --- the copy-on-write overlay ------------------------------------------------------------


@dataclass(slots=True)
class _Overlay:
    """Changes to the store, kept aside until ``KeyValue._commit``; throwing the
    overlay away is the rollback. ``writes[key]`` None means deleted."""

    base: dict[str, Item]
    revision: int
    writes: dict[str, Item | None] = field(default_factory=dict)
    events: list[dict] = field(default_factory=list)

    def get(self, key: str) -> Item | None:
        if key in self.writes:
            return self.writes[key]
        return self.base.get(key)

    def put(self, key: str, value: object) -> int:
        old = self.get(key)
        self.revision += 1
        version = old[1] + 1 if old is not None else self.revision
        self.writes[key] = (value, version)
        self._event(key, old, value, version)
        return version

    def delete(self, key: str) -> int | None:
        old = self.get(key)
        if old is None:
            return None
        self.revision += 1
        self.writes[key] = None
        self._event(key, old, None, old[1] + 1)
        return old[1] + 1

    def _event(self, key: str, old: Item | None, new: object, version: int) -> None:
        self.events.append(
            {
                "type": "state:changed",
                "key": key,
                "old": None if old is None else old[0],
                "new": new,
                "version": version,
            }
        )


def _current(item: Item | None) -> dict[str, object]:
    if item is None:
        return {"found": False, "value": None, "version": 0}
    return {"found": True, "value": item[0], "version": item[1]}


@dataclass(slots=True)
class _Lock:
    holder: str | None  # None: released (the record stays to keep the fencing token)
    expires_ms: int
    token: int

    def held_at(self, now_ms: int) -> bool:
        return self.holder is not None and now_ms < self.expires_ms


# --- the state machine -------------------------------------------------------------------


class KeyValue(StateMachine):
    """The "kv" state machine: see the module docstring for commands and rules."""

    name = "kv"

    def __init__(self) -> None:
        self._data: dict[str, Item] = {}
        self._locks: dict[str, _Lock] = {}
        self.revision = 0  # count of all key changes; invariant: every version <= revision
        self.clock_ms = 0  # timestamp of the last command that took effect, for lock_info

    # --- commands ------------------------------------------------------------------

    def apply(self, command: dict, ctx: ApplyContext) -> tuple[dict[str, object], list[dict]]:
        result, events = self._apply(command, ctx)
        if result["ok"]:  # a command that failed changes nothing, not even the clock
            self.clock_ms = max(self.clock_ms, ctx.timestamp_ms)
        return result, events

    def _apply(self, command: dict, ctx: ApplyContext) -> tuple[dict[str, object], list[dict]]:
        try:
            op = _command_dict(command)
            if op in KEY_OPS:
                overlay = _Overlay(self._data, self.revision)
                result = self._key_op(op, command, overlay)
                return result, self._commit(overlay)
            if op == "batch":
                return self._batch(command)
            if op in ("lock", "unlock", "renew"):
                return self._lock_op(op, command, ctx.timestamp_ms)
            raise KvRefusal("unknown_op", f"unknown kv command op {op!r:.80}")
        except KvRefusal as rejected:
            return rejected.result(), []

    def _commit(self, overlay: _Overlay) -> list[dict]:
        for key, item in overlay.writes.items():
            if item is None:
                self._data.pop(key, None)
            else:
                self._data[key] = item
        self.revision = overlay.revision
        return overlay.events

    def _key_op(self, op: str, command: dict, overlay: _Overlay) -> dict[str, object]:
        key = _key(command)
        if op == "put":
            if "value" not in command:
                raise KvRefusal("bad_command", "put needs a value")
            return {"ok": True, "version": overlay.put(key, _value(command["value"]))}
        if op == "delete":
            return {"ok": True, "deleted": overlay.delete(key) is not None}
        if op == "cas":
            return self._cas(key, command, overlay)
        return self._add(key, command, overlay, sign=1 if op == "incr" else -1)

    def _cas(self, key: str, command: dict, overlay: _Overlay) -> dict[str, object]:
        if "expected" not in command and "expected_version" not in command:
            raise KvRefusal("bad_command", "cas needs expected (None: absent) or expected_version")
        if "value" not in command:
            raise KvRefusal("bad_command", "cas needs a value")
        value = _value(command["value"])
        current = overlay.get(key)
        matches = True
        if "expected" in command:
            expected = command["expected"]
            if expected is None:
                matches = current is None
            else:
                expected = _value(expected, "expected")
                matches = current is not None and same_value(current[0], expected)
        if "expected_version" in command:
            expected_version = _int_field(command, "expected_version", None, 0, INT64_MAX)
            matches = matches and (current[1] if current else 0) == expected_version
        if not matches:
            raise KvRefusal(
                "cas_failed",
                f"cas on {key!r}: the current value or version is not the expected one",
                succeeded=False,
                **_current(current),
            )
        return {"ok": True, "succeeded": True, "version": overlay.put(key, value)}

    def _add(self, key: str, command: dict, overlay: _Overlay, sign: int) -> dict[str, object]:
        by = _int_field(command, "by", 1, INT64_MIN, INT64_MAX)
        current = overlay.get(key)
        old = 0 if current is None else current[0]
        if type(old) is not int:
            raise KvRefusal(
                "not_integer",
                f"{key!r} holds a {type(old).__name__}, not an integer counter",
            )
        new = old + sign * by
        if not INT64_MIN <= new <= INT64_MAX:
            raise KvRefusal("out_of_range", f"{key!r} would become {new}, outside signed 64 bits")
        return {"ok": True, "value": new, "version": overlay.put(key, new)}

    def _batch(self, command: dict) -> tuple[dict[str, object], list[dict]]:
        ops, conditions = command.get("ops"), command.get("conditions", [])
        if not isinstance(ops, list) or not 0 < len(ops) <= MAX_BATCH_OPS:
            raise KvRefusal("bad_command", f"batch needs ops, a list of 1 to {MAX_BATCH_OPS} ops")
        if not isinstance(conditions, list) or len(conditions) > MAX_BATCH_OPS:
            raise KvRefusal("bad_command", f"conditions must be a list of at most {MAX_BATCH_OPS}")
        checks = [self._condition(i, c) for i, c in enumerate(conditions)]
        for i, (key, check) in enumerate(checks):
            item = self._data.get(key)
            if not check(item):
                raise KvRefusal(
                    "condition_failed",
                    f"batch condition {i} on {key!r} does not hold; nothing was applied",
                    succeeded=False,
                    failed_condition=i,
                    **_current(item),
                )
        overlay = _Overlay(self._data, self.revision)
        results: list[dict[str, object]] = []
        for i, op_command in enumerate(ops):
            try:
                op = _command_dict(op_command)
                if op not in KEY_OPS:
                    raise KvRefusal(
                        "bad_command",
                        f"op {op!r:.80} is not allowed in a batch "
                        f"(allowed: {', '.join(sorted(KEY_OPS))})",
                    )
                results.append(self._key_op(op, op_command, overlay))
            except KvRefusal as rejected:
                return error_result(
                    rejected.code,
                    f"batch op {i} failed, nothing was applied: {rejected}",
                    succeeded=False,
                    failed_op=i,
                    op_result=rejected.result(),
                ), []
        return {"ok": True, "succeeded": True, "results": results}, self._commit(overlay)

    def _condition(self, i: int, condition: object) -> tuple[str, Any]:
        if not isinstance(condition, dict):
            raise KvRefusal("bad_command", f"batch condition {i} must be a map")
        key = _key(condition)
        unknown = set(condition) - CONDITION_FIELDS - {"key"}
        present = CONDITION_FIELDS & set(condition)
        if unknown or not present:
            raise KvRefusal(
                "bad_command",
                f"batch condition {i} needs one or more of equals, version, "
                f"absent and nothing else (unknown: {sorted(map(str, unknown))})",
            )
        tests = []
        if "equals" in condition:
            equals = _value(condition["equals"], f"condition {i} equals")
            tests.append(lambda item: item is not None and same_value(item[0], equals))
        if "version" in condition:
            version = _int_field(condition, "version", None, 0, INT64_MAX)
            tests.append(lambda item: (item[1] if item else 0) == version)
        if "absent" in condition:
            absent = condition["absent"]
            if not isinstance(absent, bool):
                raise KvRefusal("bad_command", f"batch condition {i}: absent must be a bool")
            tests.append(lambda item: (item is None) == absent)
        return key, lambda item: all(test(item) for test in tests)

    # --- locks ---------------------------------------------------------------------

    def _lock_op(self, op: str, command: dict, now_ms: int) -> tuple[dict[str, object], list[dict]]:
        name, holder = _key(command, "name"), _holder(command)
        ttl_ms = 0 if op == "unlock" else _int_field(command, "ttl_ms", None, 1, MAX_LOCK_TTL_MS)
        lock = self._locks.get(name)
        if op == "lock":
            if lock is not None and lock.held_at(now_ms) and lock.holder != holder:
                raise KvRefusal(
                    "lock_held",
                    f"lock {name!r} is held by {lock.holder!r} until {lock.expires_ms}",
                    acquired=False,
                    holder=lock.holder,
                    expires_ms=lock.expires_ms,
                )
            renewed = lock is not None and lock.held_at(now_ms)
            if lock is None:
                lock = self._locks[name] = _Lock(holder, 0, 0)
            if not renewed:
                lock.holder, lock.token = holder, lock.token + 1
            lock.expires_ms = now_ms + ttl_ms
            action = "renewed" if renewed else "acquired"
            result = {
                "ok": True,
                "acquired": True,
                "renewed": renewed,
                "token": lock.token,
                "expires_ms": lock.expires_ms,
            }
        else:
            self._check_holder(name, lock, holder, now_ms)
            assert lock is not None
            if op == "unlock":
                lock.holder, lock.expires_ms, action = None, now_ms, "released"
                result = {"ok": True, "released": True, "token": lock.token}
            else:
                lock.expires_ms, action = now_ms + ttl_ms, "renewed"
                result = {"ok": True, "token": lock.token, "expires_ms": lock.expires_ms}
        event = {
            "type": "lock:changed",
            "lock": name,
            "action": action,
            "holder": lock.holder,
            "token": lock.token,
            "expires_ms": lock.expires_ms,
        }
        return result, [event]

    @staticmethod
    def _check_holder(name: str, lock: _Lock | None, holder: str, now_ms: int) -> None:
        if lock is None or lock.holder is None:
            raise KvRefusal("not_locked", f"lock {name!r} is not held")
        if lock.holder != holder:
            if not lock.held_at(now_ms):
                raise KvRefusal("not_locked", f"lock {name!r} is not held (it expired)")
            raise KvRefusal(
                "not_holder", f"lock {name!r} is held by {lock.holder!r}, not {holder!r}"
            )
        if not lock.held_at(now_ms):
            raise KvRefusal(
                "lock_expired",
                f"lock {name!r} held by {holder!r} expired at {lock.expires_ms} "
                f"(now {now_ms}); acquire it again",
                expires_ms=lock.expires_ms,
            )

    # --- queries -------------------------------------------------------------------

    def query(self, query: dict) -> dict[str, object]:
        try:
            op = _command_dict(query)
            if op == "get":
                return {"ok": True, **_current(self._data.get(_key(query)))}
            if op == "keys":
                return self._keys(query)
            if op == "lock_info":
                return self._lock_info(_key(query, "name"))
            raise KvRefusal("unknown_op", f"unknown kv query op {op!r:.80} (get, keys, lock_info)")
        except KvRefusal as rejected:
            return rejected.result()

    def _keys(self, query: dict) -> dict[str, object]:
        prefix, after = query.get("prefix", ""), query.get("after")
        if not isinstance(prefix, str) or not (after is None or isinstance(after, str)):
            raise KvRefusal("bad_command", "prefix and after must be str")
        limit = _int_field(query, "limit", DEFAULT_KEYS_LIMIT, 1, MAX_KEYS_LIMIT)
        matching = (k for k in self._data if k.startswith(prefix) and (after is None or k > after))
        keys = heapq.nsmallest(limit + 1, matching)
        return {"ok": True, "keys": keys[:limit], "truncated": len(keys) > limit}

    def _lock_info(self, name: str) -> dict[str, object]:
        lock = self._locks.get(name)
        held = lock is not None and lock.held_at(self.clock_ms)
        return {
            "ok": True,
            "held": held,
            "holder": lock.holder if held and lock else None,
            "expires_ms": lock.expires_ms if held and lock else 0,
            "token": lock.token if lock else 0,
            "as_of_ms": self.clock_ms,
        }

    # --- snapshots -----------------------------------------------------------------

    def snapshot(self) -> dict[str, object]:
        """Canonical (sorted) plain data: equal states give equal snapshots."""
        return {
            "revision": self.revision,
            "clock_ms": self.clock_ms,
            "keys": [[k, v, ver] for k, (v, ver) in sorted(self._data.items())],
            "locks": [
                [name, lock.holder, lock.expires_ms, lock.token]
                for name, lock in sorted(self._locks.items())
            ],
        }

    def restore(self, data: object) -> None:
        try:
            if not isinstance(data, dict):
                raise TypeError(f"expected a map, got {type(data).__name__}")
            revision, clock_ms = int(data["revision"]), int(data["clock_ms"])
            keys = {str(k): (v, int(ver)) for k, v, ver in data["keys"]}
            locks = {
                str(name): _Lock(holder, int(expires), int(token))
                for name, holder, expires, token in data["locks"]
            }
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"malformed kv snapshot: {exc!r}") from exc
        self._data, self._locks, self.revision, self.clock_ms = keys, locks, revision, clock_ms
