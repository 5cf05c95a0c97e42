"""Events a ``Consensus`` node emits, what triggers each, and how callbacks are called.

Callbacks get the positional arguments listed below; the details after ``*``
are passed as keyword arguments only to callbacks that declare them (or take
``**kwargs``), so ``lambda leader_id: ...`` and ``lambda key, new, old: ...``
just work. A callback may be a plain function or a coroutine function (run as a
task on the node's loop). A callback that raises is logged and never breaks the
node.

=====================  ==============================  ==========================================
event                  arguments                       triggered when
=====================  ==============================  ==========================================
leader:elected         leader_id, *, term              raft: this node learns of a new leader
                                                       (itself included), once per leader and term
state:changed          key, new, old, *, version,      a key's value changed in this node's view:
                       index, optimistic, rolled_back  applied (every node, for every change),
                                                       shown optimistically (``optimistic=True``),
                                                       or an optimistic value withdrawn
                                                       (``rolled_back=True``). ``None`` = absent.
node:unreachable       node_id                         nothing heard from a peer for the failure
                                                       timeout (pings flow every ping interval)
node:reconnected       node_id                         a peer marked unreachable is heard again
partition:detected     reachable, unreachable          this node reaches fewer than a majority of
                                                       the voters (itself counted): it is cut off
                                                       in a minority, or as a leader it lost its
                                                       quorum
partition:healed       reachable, unreachable          it reaches a majority again
vote:requested         requester, *, term /            raft: a candidate asked this node for its
                       proposal_id, key, value         vote (real elections, not pre-votes);
                                                       simple_majority: a proposal asks this node
                                                       (the proposer's own vote included)
vote:granted           requester, *, term /            this node granted that vote (the voter's
                       proposal_id, key, value         side of vote:requested)
log:appended           index, term, *, key, op,        an entry was appended to this node's log
                       first_index, count              and persisted (raft: one event per entry;
                                                       ``first_index``/``count`` describe the
                                                       persisted batch it came in; ``key`` None
                                                       for a batch, a no-op or a membership
                                                       change, ``op`` then "batch", "noop",
                                                       "config" or "members"); an accepted
                                                       proposal was appended to the local log
                                                       (simple_majority, term 0)
consensus:accepted     key, value, *, proposal_id,     a proposal was accepted and applied here:
                       index, op, result, votes        every node, every command (for a batch
                                                       ``key`` is None and ``value`` the ops)
lock:changed           name, *, action, holder,        a distributed lock was acquired, renewed
                       token, expires_ms               or released (applied here)
node:failed            node_id, *, error               this node's tick task failed (``error``,
                                                       also logged): the node stopped and
                                                       ``running`` is False
=====================  ==============================  ==========================================
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

log = logging.getLogger("arena.consensus")

EVENTS: frozenset[str] = frozenset({
    "leader:elected",
    "state:changed",
    "node:unreachable",
    "node:reconnected",
    "partition:detected",
    "partition:healed",
    "vote:requested",
    "vote:granted",
    "log:appended",
    "consensus:accepted",
    "lock:changed",
    "node:failed",
})

Callback = Callable[..., Any]


@dataclass(frozen=True, slots=True)
class _Listener:
    callback: Callback
    max_positional: int | None  # None: takes *args
    keywords: frozenset[str] | None  # None: takes **kwargs
    positional_names: tuple[str, ...] = ()
    first_arg: Any = None  # only events whose first argument equals this (None: all)


def _listener(callback: Callback, first_arg: Any = None) -> _Listener:
    try:
        sig = inspect.signature(callback)
    except (TypeError, ValueError):  # builtins without a signature: give everything
        return _Listener(callback, None, None, (), first_arg)
    names: list[str] = []
    positional = 0
    var_positional = False
    keywords: set[str] = set()
    var_keyword = False
    for p in sig.parameters.values():
        if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD):
            positional += 1
            names.append(p.name)
            keywords.add(p.name)
        elif p.kind is p.VAR_POSITIONAL:
            var_positional = True
        elif p.kind is p.KEYWORD_ONLY:
            keywords.add(p.name)
        elif p.kind is p.VAR_KEYWORD:
            var_keyword = True
    return _Listener(
        callback,
        None if var_positional else positional,
        None if var_keyword else frozenset(keywords),
        tuple(names),
        first_arg,
    )


def positional_arity(callback: Callback) -> int | None:
    """How many positional arguments ``callback`` takes (None: ``*args`` or unknown)."""
    return _listener(callback).max_positional


class EventBus:
    """Named events with sync or async listeners.

    Emitting never runs a listener inside the driver's Ready handling: the driver
    ``emit``s into a queue and ``flush``es once the core is between Readies, so a
    listener may call back into the node (propose, read...) safely.
    """

    def __init__(self, extra_events: frozenset[str] = frozenset()) -> None:
        self._known = EVENTS | extra_events
        self._listeners: dict[str, list[_Listener]] = {}
        self._queue: list[tuple[str, tuple[Any, ...], dict[str, Any]]] = []
        self._tasks: set[asyncio.Task[Any]] = set()
        self.history_counts: dict[str, int] = {}

    def on(self, event: str, callback: Callback, first_arg: Any = None) -> Callable[[], None]:
        """Listen to ``event`` (only to those whose first argument is ``first_arg``,
        if given); returns a function that stops listening."""
        if event not in self._known:
            raise ValueError(
                f"unknown event {event!r}; known events: {', '.join(sorted(self._known))}"
            )
        if not callable(callback):
            raise TypeError(f"callback for {event!r} must be callable, got {callback!r}")
        listener = _listener(callback, first_arg)
        self._listeners.setdefault(event, []).append(listener)

        def unsubscribe() -> None:
            self._listeners[event] = [li for li in self._listeners[event] if li is not listener]

        return unsubscribe

    def off(self, event: str, callback: Callback) -> None:
        self._listeners[event] = [
            li for li in self._listeners.get(event, []) if li.callback is not callback
        ]

    def has_listeners(self, event: str) -> bool:
        return bool(self._listeners.get(event))

    def emit(self, event: str, *args: Any, **details: Any) -> None:
        """Queue an event; listeners run at the next ``flush``."""
        assert event in self._known, event
        self._queue.append((event, args, details))

    def flush(self) -> None:
        while self._queue:
            queue, self._queue = self._queue, []
            for event, args, details in queue:
                self.history_counts[event] = self.history_counts.get(event, 0) + 1
                for listener in list(self._listeners.get(event, ())):
                    if listener.first_arg is None or (args and args[0] == listener.first_arg):
                        self._call(event, listener, args, details)

    def _call(
        self, event: str, listener: _Listener, args: tuple[Any, ...], details: dict[str, Any]
    ) -> None:
        if listener.max_positional is not None:
            args = args[: listener.max_positional]
        if listener.keywords is not None:
            # a name already given positionally must not be given twice
            taken = set(listener.positional_names[: len(args)])
            details = {k: v for k, v in details.items() if k in listener.keywords and k not in taken}
        try:
            outcome = listener.callback(*args, **details)
        except Exception:
            log.exception("listener %r of %s failed", listener.callback, event)
            return
        if inspect.isawaitable(outcome):
            task = asyncio.ensure_future(outcome)
            self._tasks.add(task)
            task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("an async listener failed", exc_info=task.exception())

    def cancel_tasks(self) -> None:
        for task in list(self._tasks):
            task.cancel()
