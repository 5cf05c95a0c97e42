"""Shared fixtures for the state machine tests: a KeyValue and a way to apply to it."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from nodes.kv import KeyValue
from nodes.statemachine import ApplyContext

Apply = Callable[..., dict]


@pytest.fixture
def kv() -> KeyValue:
    return KeyValue()


@pytest.fixture
def events() -> list[dict]:
    """Every event the ``apply`` fixture has seen, in order."""
    return []


@pytest.fixture
def apply(kv: KeyValue, events: list[dict]) -> Apply:
    """``apply(op, at=timestamp_ms, **fields)``: apply one command, return its result."""
    index = iter(range(1, 1 << 30))

    def run(op: str, at: int = 1_000, **fields: object) -> dict:
        result, new_events = kv.apply({"op": op, **fields}, ApplyContext(next(index), 1, at, "c"))
        events.extend(new_events)
        return result

    return run
