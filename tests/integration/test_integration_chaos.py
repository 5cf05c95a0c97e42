"""The short chaos run of the suite (the README documents a long soak): real node
processes under kill, pause, partition and restart, clients recording a history
that must be linearizable, and no acknowledged write lost."""

from __future__ import annotations

import random
from pathlib import Path

from nodes.chaos import run_chaos


def test_thirty_seconds_of_chaos_show_no_anomaly(tmp_path: Path) -> None:
    seed = random.SystemRandom().randrange(1 << 30)
    r = run_chaos(duration=30.0, clients=4, nodes=3, seed=seed, directory=tmp_path)
    why = f"reproduce with: arena chaos --seed {seed} --duration 30\n" + "\n".join(r.faults)
    assert r.faults, "the nemesis injected no fault\n" + why
    assert r.ok > 50, f"too few operations completed ({r.ok})\n" + why
    assert r.linearizable, r.lincheck_explanation + "\n" + why
    assert r.missing_writes == [], why
    assert r.anomalies == 0, why
