"""The patterns of the ``Consensus`` API, each one command done atomically inside
the replicated state machine (``nodes.kv``), never read-then-write from outside:
compare-and-swap, counters, atomic batches, distributed locks (holder = this
node, expiry on the leader's timestamps), and optimistic updates with rollback.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from . import checks
from .driver import Driver
from .events import EventBus
from .types import (
    ConsensusError,
    InvalidArgument,
    LockResult,
    NotStarted,
    ProposalResult,
    ValueInfo,
)


@dataclass(slots=True)
class _Optimistic:
    """One optimistic value shown for a key until its proposal is settled."""

    token: int
    value: Any


class Patterns:
    """Mixed into ``Consensus``."""

    _node_id: str
    _driver: Driver
    _bus: EventBus
    _optimistic: dict[str, list[_Optimistic]]
    _opt_token: int
    _tasks: set[asyncio.Task[Any]]

    if TYPE_CHECKING:  # provided by Consensus
        async def _submit(self, command: dict[str, Any], key: str | None, value: Any,
                          timeout: float | None) -> ProposalResult: ...
        def get_info(self, key: str) -> ValueInfo: ...

    async def compare_and_swap(self, key: str, expected: Any, new: Any, *,
                               timeout: float | None = None) -> bool:
        """Set ``key`` to ``new`` only if it holds ``expected`` (None: absent)."""
        check_key(key)
        command = {"op": "cas", "key": key, "expected": expected, "value": new}
        return (await self._submit(command, key, new, timeout)).accepted

    async def increment(self, key: str, by: int = 1, *, timeout: float | None = None) -> int:
        """Add ``by`` to the integer counter ``key`` (absent counts as 0); returns
        the new value. Raises ``ConsensusError`` if it could not be applied."""
        return await self._add("incr", key, by, timeout)

    async def decrement(self, key: str, by: int = 1, *, timeout: float | None = None) -> int:
        return await self._add("decr", key, by, timeout)

    async def _add(self, op: str, key: str, by: int, timeout: float | None) -> int:
        check_key(key)
        if not isinstance(by, int) or isinstance(by, bool):
            raise InvalidArgument(f"{op} {key!r}: by must be an int, got {by!r:.80}")
        result = await self._submit({"op": op, "key": key, "by": by}, key, by, timeout)
        if not result.accepted:
            detail = _message(result) or (
                "not committed within the timeout (no leader reachable?)"
                if result.error == "timeout" else "")
            raise ConsensusError(f"{op} {key!r} by {by} failed: {result.error}"
                                 + (f" -- {detail}" if detail else ""))
        return int(result.result["value"])

    async def batch(self, ops: Iterable[Any], conditions: Iterable[Any] | None = None, *,
                    timeout: float | None = None) -> ProposalResult:
        """Apply all ``ops`` or none, if every condition holds. An op is a kv command
        dict or a tuple: ``("put", key, value)``, ``("delete", key)``,
        ``("incr", key[, by])``, ``("decr", key[, by])``, ``("cas", key, expected,
        new)``. A condition is a dict ``{key, equals | version | absent}`` or a
        tuple ``(key, expected_value)``."""
        command: dict[str, Any] = {"op": "batch", "ops": [_op(o) for o in ops]}
        if conditions is not None:
            command["conditions"] = [_condition(c) for c in conditions]
        return await self._submit(command, None, command["ops"], timeout)

    async def acquire_lock(self, name: str, ttl: float = 10.0, *, wait: float = 0.0,
                           timeout: float | None = None) -> LockResult:
        """Take the lock ``name`` for ``ttl`` seconds (holder: this node; taking it
        again renews it). With ``wait``, keep trying that long while someone else
        holds it. Expiry is judged on the leader's timestamps, so all nodes agree."""
        check_key(name)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait
        command = {"op": "lock", "name": name, "holder": self._node_id,
                   "ttl_ms": max(1, int(ttl * 1000))}
        while True:
            result = await self._submit(command, name, self._node_id, timeout)
            r = result.result if isinstance(result.result, dict) else {}
            if result.accepted:
                return LockResult(name, True, self._node_id, int(r.get("token", 0)),
                                  int(r.get("expires_ms", 0)))
            if result.error != "lock_held" or loop.time() >= deadline:
                return LockResult(name, False, r.get("holder"), 0, int(r.get("expires_ms", 0)),
                                  result.error)
            await asyncio.sleep(min(0.05, max(0.0, deadline - loop.time())))

    async def release_lock(self, name: str, *, timeout: float | None = None) -> bool:
        """Release the lock if this node holds it (False if it expired or is not ours)."""
        check_key(name)
        command = {"op": "unlock", "name": name, "holder": self._node_id}
        return (await self._submit(command, name, None, timeout)).accepted

    def lock_info(self, name: str) -> dict[str, Any]:
        """The lock as this node's state has it (judged at the last applied timestamp)."""
        got = self._driver.kv.query({"op": "lock_info", "name": name})
        assert isinstance(got, dict)
        return got

    def optimistic_update(self, key: str, fn: Callable[[Any], Any], *,
                          timeout: float | None = None) -> asyncio.Task[ProposalResult]:
        """Show ``fn(current value)`` at once, then make it real.

        The new value is visible immediately through ``get`` (``get_info`` marks
        it ``optimistic``) and a ``state:changed`` with ``optimistic=True``. A
        compare-and-swap on the version read is proposed; if it is rejected or
        loses (someone changed the key meanwhile), the local view is restored and
        ``state:changed`` fires with ``rolled_back=True``. Returns a task with the
        ``ProposalResult``."""
        check_key(key)
        if not self._driver.started:
            raise NotStarted(f"node {self._node_id} is not started: call start() first")
        before = self.get_info(key)
        committed = self._driver.kv.query({"op": "get", "key": key})
        assert isinstance(committed, dict)
        version = int(committed.get("version", 0))
        new = fn(before.value if before.found else None)
        self._opt_token += 1
        layer = _Optimistic(self._opt_token, new)
        self._optimistic.setdefault(key, []).append(layer)
        self._bus.emit("state:changed", key, new, before.value if before.found else None,
                       version=version, index=None, optimistic=True, rolled_back=False)
        self._bus.flush()
        command = {"op": "cas", "key": key, "expected_version": version, "value": new}

        async def settle() -> ProposalResult:
            try:
                result = await self._submit(command, key, new, timeout)
            except BaseException:
                self._drop_layer(key, layer, rolled_back=True)
                raise
            self._drop_layer(key, layer, rolled_back=not result.accepted)
            return result

        task = asyncio.ensure_future(settle())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def _drop_layer(self, key: str, layer: _Optimistic, rolled_back: bool) -> None:
        layers = self._optimistic.get(key, [])
        if layer in layers:
            layers.remove(layer)
        if not layers:
            self._optimistic.pop(key, None)
        if rolled_back:
            now = self.get_info(key)
            self._bus.emit("state:changed", key, now.value if now.found else None, layer.value,
                           version=now.version, index=None, optimistic=bool(layers),
                           rolled_back=True)
            self._bus.flush()


def check_key(key: object) -> None:
    """Raises ``InvalidArgument`` unless ``key`` is a non-empty str."""
    checks.key(key)


def _message(result: ProposalResult) -> str:
    r = result.result
    if isinstance(r, dict):
        return str(r.get("message", ""))
    return str(r or "")


def _op(op: Any) -> dict[str, Any]:
    if isinstance(op, Mapping):
        return dict(op)
    if not isinstance(op, tuple | list) or not op:
        raise ValueError(f"a batch op must be a dict or a tuple like ('put', key, value), got {op!r}")
    name, *args = op
    if name == "put" and len(args) == 2:
        return {"op": "put", "key": args[0], "value": args[1]}
    if name == "delete" and len(args) == 1:
        return {"op": "delete", "key": args[0]}
    if name in ("incr", "decr") and len(args) in (1, 2):
        return {"op": name, "key": args[0], "by": args[1] if len(args) == 2 else 1}
    if name == "cas" and len(args) == 3:
        return {"op": "cas", "key": args[0], "expected": args[1], "value": args[2]}
    raise ValueError(f"bad batch op {op!r}: use ('put', k, v), ('delete', k), ('incr', k[, by]), "
                     "('decr', k[, by]) or ('cas', k, expected, new)")


def _condition(cond: Any) -> dict[str, Any]:
    if isinstance(cond, Mapping):
        return dict(cond)
    if isinstance(cond, tuple | list) and len(cond) == 2:
        return {"key": cond[0], "equals": cond[1]}
    raise ValueError(f"a batch condition must be a dict or (key, expected_value), got {cond!r}")
