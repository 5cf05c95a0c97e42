"""Argument checks of the ``Consensus`` API, done before anything is stored or sent.

Every check raises ``InvalidArgument`` (a ``ConsensusError`` and a
``ValueError``) with a message naming the argument, what was given and what to
give instead. Durations are in seconds: a value that only makes sense in
milliseconds (``timeout=3000``, ``heartbeat_interval=1000``) is refused with a
hint, rather than accepted and turned into a node that ticks every 200 s.
"""

from __future__ import annotations

import math
from typing import Any

import msgpack

from nodes.statemachine import MAX_COMMAND_BYTES

from .types import InvalidArgument

# Upper bounds of the durations, in seconds: above them a value is taken for
# milliseconds given by mistake (the lesson's code writes timeout=3000).
MAX_SECONDS = {
    "timeout": 600.0,
    "heartbeat_interval": 10.0,
    "election_timeout": 60.0,
    "tick_interval": 10.0,
    "failure_timeout": 600.0,
    "batch_window": 1.0,
}


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def seconds(name: str, value: object, *, allow_zero: bool = False) -> float:
    """A duration in seconds: a real number, positive (or zero), not milliseconds."""
    if not _is_number(value) or not math.isfinite(float(value)):  # type: ignore[arg-type]
        raise InvalidArgument(
            f"{name} must be a number of seconds (e.g. {name}=0.05), got {value!r:.80}")
    seconds_ = float(value)  # type: ignore[arg-type]
    if seconds_ < 0 or (seconds_ == 0 and not allow_zero):
        need = "zero or more" if allow_zero else "positive"
        raise InvalidArgument(f"{name} must be {need} (seconds), got {value!r}")
    limit = MAX_SECONDS[name]
    if seconds_ > limit:
        raise InvalidArgument(
            f"{name}={value!r} is {seconds_:g} seconds, above the {limit:g} s this setting "
            f"allows: durations are in seconds, not milliseconds (did you mean "
            f"{name}={seconds_ / 1000:g}?)")
    return seconds_


def election_window(value: object) -> tuple[float, float]:
    if not isinstance(value, tuple | list) or len(value) != 2:
        raise InvalidArgument(
            f"election_timeout must be (min, max) in seconds, e.g. (0.15, 0.30), got {value!r:.80}")
    lo = seconds("election_timeout", value[0])
    hi = seconds("election_timeout", value[1])
    return lo, hi


def flag(name: str, value: object) -> bool:
    """A bool option: ``compression="yes"`` is refused (it reads as True, as "no" would)."""
    if not isinstance(value, bool):
        raise InvalidArgument(f"{name} must be True or False, got {value!r:.80}")
    return value


def count(name: str, value: object) -> int:
    """A whole number, zero or more (0 turns the feature off)."""
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise InvalidArgument(
            f"{name} must be a whole number, 0 or more (0: never), got {value!r:.80}")
    return value


def quorum_fraction(value: object) -> float:
    if not _is_number(value) or not 0 < float(value) <= 1:  # type: ignore[arg-type]
        raise InvalidArgument(
            f"quorum must be a number in (0, 1], e.g. 0.5 for 'more than half' or 1.0 for "
            f"unanimity, got {value!r:.80}")
    return float(value)  # type: ignore[arg-type]


def key(value: object, what: str = "key") -> str:
    if not isinstance(value, str) or not value:
        raise InvalidArgument(f"a {what} must be a non-empty str, got {value!r:.80}")
    return value


def node_id(value: object) -> str:
    if not isinstance(value, str) or not 0 < len(value) <= 64:
        raise InvalidArgument(
            f"node_id must be a non-empty str of at most 64 chars, got {value!r:.80}")
    return value


def replicable(command: dict[str, Any], key_: str | None) -> None:
    """The command can go on the wire and in the log: plain msgpack data (dict,
    list, str, bytes, int, float, bool, None) within the size limit. Checked
    before a proposal is stored, so a bad value never reaches the log, a vote or
    a resend."""
    try:
        size = len(msgpack.packb(command, use_bin_type=True))
    except (TypeError, ValueError, OverflowError) as exc:
        about = f"the value for key {key_!r}" if key_ is not None else "this command"
        raise InvalidArgument(
            f"{about} cannot be replicated: {exc}; use plain data (dict, list, str, bytes, "
            "int within 64 bits, float, bool, None)") from exc
    if size > MAX_COMMAND_BYTES:
        raise InvalidArgument(
            f"the command for key {key_!r} is {size} bytes encoded, above the limit of "
            f"{MAX_COMMAND_BYTES}: store large data elsewhere and replicate a reference")
