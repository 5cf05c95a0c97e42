"""Fixtures shared by every test folder."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from nodes.sim.cluster import Cluster


@pytest.fixture
def closing() -> Iterator[list[Cluster]]:
    """Simulated clusters a test makes (on disk, some hold temporary directories):
    closed when the test ends, pass or fail."""
    made: list[Cluster] = []
    yield made
    for c in made:
        c.close()
