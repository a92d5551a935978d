"""Spread over seeds: means with Student-t intervals, and paired differences.

    spread([1.0, 3.0, 2.0])
    # {"mean": 2.0, "std": 1.0, "min": 1.0, "max": 3.0, "n": 3, "ci95": [-0.48, 4.48]}
    paired({0: 2.1, 1: 2.3, 2: 2.0}, {0: 2.4, 1: 2.5, 2: 2.2})
    # the row minus the reference, seed by seed: mean, std, n, ci95, and whether 0 is inside

The interval is the two-sided 95% t-interval mean +- t(0.975, n-1) * s / sqrt(n)
(`scipy.stats.t`); with one value there is no interval (None). A paired
difference takes the same seed of both rows (same base model, same data
order), which removes the seed-to-seed variation the rows share, so it can
resolve differences that two overlapping per-row intervals cannot.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence

CONFIDENCE = 0.95


def _finite(values: Sequence[float | None]) -> list[float]:
    return [float(v) for v in values if v is not None and math.isfinite(float(v))]


def t_interval(values: Sequence[float], confidence: float = CONFIDENCE) -> list[float] | None:
    """[low, high] of the two-sided t-interval of the mean; None for fewer than 2 values."""
    from scipy import stats

    n = len(values)
    if n < 2:
        return None
    mean, sd = statistics.fmean(values), statistics.stdev(values)
    half = float(stats.t.ppf(0.5 + confidence / 2, n - 1)) * sd / math.sqrt(n)
    return [mean - half, mean + half]


def spread(values: Sequence[float | None]) -> dict:
    """mean, sample std (None for one value), min, max, n and the 95% t-interval over the finite values."""
    vals = _finite(values)
    if not vals:
        return {"mean": None, "std": None, "min": None, "max": None, "n": 0, "ci95": None}
    return {"mean": statistics.fmean(vals), "std": statistics.stdev(vals) if len(vals) > 1 else None,
            "min": min(vals), "max": max(vals), "n": len(vals), "ci95": t_interval(vals)}


def paired(row: Mapping, reference: Mapping) -> dict:
    """row - reference over the seeds both have a finite value for; `within_noise`
    is True when the 95% interval holds 0 (None when there is no interval)."""
    diffs = [float(row[s]) - float(reference[s]) for s in row
             if s in reference and _finite([row[s]]) and _finite([reference[s]])]
    out = spread(diffs)
    ci = out["ci95"]
    out["within_noise"] = None if ci is None else bool(ci[0] <= 0.0 <= ci[1])
    return out
