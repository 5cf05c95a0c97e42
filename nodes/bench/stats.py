"""Summary statistics for benchmark samples, and the ratio we report against a rival.

Percentiles use the **nearest-rank** method: the p-th percentile of n sorted samples
is the sample at rank ``ceil(p / 100 * n)`` (1-based, clamped to ``1..n``). It always
returns a value that was actually measured (never an interpolation between two
samples), p100 is the maximum and, for p > 0, the result is the smallest sample
such that at least p % of the samples are less than or equal to it. With few samples
a high percentile is the maximum: p99 of 50 samples is the 50th, i.e. the max.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

__all__ = ["percentile", "ratio", "summarize"]


def percentile(sorted_samples: Sequence[float], p: float) -> float:
    """Nearest-rank ``p``-th percentile (0 <= p <= 100) of already sorted samples.

    p == 0 gives the minimum. Raises ValueError on an empty sequence or p out of range.
    """
    if not sorted_samples:
        raise ValueError("percentile of no samples")
    if not 0.0 <= p <= 100.0:
        raise ValueError(f"percentile {p} outside [0, 100]")
    n = len(sorted_samples)
    rank = math.ceil(p / 100.0 * n)
    return float(sorted_samples[min(max(rank, 1), n) - 1])


def summarize(samples_ms: Sequence[float]) -> dict[str, float | int]:
    """``{"count", "p50", "p90", "p99", "max", "mean"}`` of samples in milliseconds.

    Percentiles are nearest-rank (see the module docstring). An empty input gives
    count 0 and NaN for every statistic, so a failed run still has the same keys.
    """
    values = sorted(float(s) for s in samples_ms)
    if not values:
        nan = float("nan")
        return {"count": 0, "p50": nan, "p90": nan, "p99": nan, "max": nan, "mean": nan}
    return {
        "count": len(values),
        "p50": percentile(values, 50),
        "p90": percentile(values, 90),
        "p99": percentile(values, 99),
        "max": values[-1],
        "mean": math.fsum(values) / len(values),
    }


def ratio(ours: float, theirs: float, higher_is_better: bool) -> float:
    """How many times better we are than them: > 1 means we win, < 1 that we lose.

    For a higher-is-better metric (throughput) it is ``ours / theirs``; for a
    lower-is-better one (latency, failover time, memory) it is ``theirs / ours``.
    A zero denominator gives ``inf`` (or NaN when both are zero), and NaN in either
    input gives NaN, so a missing measurement never looks like a result.
    """
    num, den = (ours, theirs) if higher_is_better else (theirs, ours)
    if math.isnan(num) or math.isnan(den):
        return float("nan")
    if den == 0:
        return float("nan") if num == 0 else math.copysign(math.inf, num)
    return num / den
