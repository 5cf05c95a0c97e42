"""The node loop's timing arithmetic (the loop itself runs in tests/integration)."""

from __future__ import annotations

import pytest

from nodes.server import poll_timeout_ms


@pytest.mark.parametrize(("left_s", "expected"), [
    (0.0104, 11), (0.0004, 1), (0.000001, 1), (0.0, 0), (-0.003, 0), (0.01, 10),
])
def test_the_poll_waits_whole_milliseconds_rounded_up_so_it_never_spins(
        left_s: float, expected: int) -> None:
    """A sub-millisecond wait must not become 0: ZeroMQ truncates float timeouts,
    and polling with 0 until the tick is due spun about a tenth of a core per node."""
    now = 1000.0
    got = poll_timeout_ms(now + left_s, now)
    assert got == expected and isinstance(got, int)
