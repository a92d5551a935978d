"""Seed statistics: t-intervals and paired differences (irgpt.tune.stats)."""

from __future__ import annotations

import math

import pytest

from irgpt.tune.stats import paired, spread, t_interval


def test_t_interval_matches_the_textbook_values():
    # n = 3, mean 2, s = 1: t(0.975, 2) = 4.302653 -> half-width 4.302653 / sqrt(3) = 2.484138
    low, high = t_interval([1.0, 2.0, 3.0])
    assert low == pytest.approx(2 - 2.484138, abs=1e-6) and high == pytest.approx(2 + 2.484138, abs=1e-6)
    assert t_interval([5.0]) is None


def test_spread_ignores_missing_values():
    s = spread([1.0, None, 3.0, float("nan")])
    assert s["n"] == 2 and s["mean"] == 2.0 and s["std"] == pytest.approx(math.sqrt(2))
    assert s["ci95"][0] < 1.0 and s["ci95"][1] > 3.0
    assert spread([None]) == {"mean": None, "std": None, "min": None, "max": None, "n": 0, "ci95": None}


def test_paired_difference_removes_the_shared_seed_effect():
    """Seeds move both rows a lot (1, 5, 9) but the row is always 0.1 lower: the paired
    interval excludes 0 while the two per-row intervals overlap."""
    ref = {0: 1.0, 1: 5.0, 2: 9.0}
    row = {0: 0.9, 1: 4.88, 2: 8.91}
    d = paired(row, ref)
    assert d["mean"] == pytest.approx(-0.103333, abs=1e-6) and d["within_noise"] is False
    r, f = spread(row.values())["ci95"], spread(ref.values())["ci95"]
    assert r[1] > f[0]  # overlapping per-row intervals
    noisy = paired({0: 1.1, 1: 4.9, 2: 9.0}, ref)
    assert noisy["within_noise"] is True
    assert paired({0: 1.0}, {0: 2.0, 1: 3.0})["within_noise"] is None  # one common seed: no interval
