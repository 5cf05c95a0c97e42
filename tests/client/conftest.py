"""Headless pygame and a scripted clock for the window tests.

The SDL variables are set before anything imports pygame's display, so no test
opens a real window even where a display exists.
"""

from __future__ import annotations

import os

os.environ["SDL_VIDEODRIVER"] = "dummy"
os.environ["SDL_AUDIODRIVER"] = "dummy"

from collections.abc import Iterator  # noqa: E402
from pathlib import Path  # noqa: E402

import pygame  # noqa: E402
import pytest  # noqa: E402
from client_helpers import SIZE, ScriptedClock  # noqa: E402

from nodes.clusterfile import Timing  # noqa: E402
from nodes.local import LocalCluster  # noqa: E402


@pytest.fixture
def clock() -> ScriptedClock:
    return ScriptedClock()


@pytest.fixture
def display() -> Iterator[pygame.Surface]:
    """An initialised pygame with a dummy-driver window of the default size."""
    pygame.init()
    yield pygame.display.set_mode(SIZE)
    pygame.quit()


@pytest.fixture
def live_cluster(tmp_path: Path) -> Iterator[LocalCluster]:
    """Three real node processes on free ports, data in ``tmp_path``; every process is
    killed by its pid when the test ends, pass or fail."""
    lc = LocalCluster.create(tmp_path / "cluster", 3, timing=Timing(election_ms=(150.0, 300.0)))
    try:
        lc.start_all()
        yield lc
    finally:
        lc.kill_all()
