"""Lesson 1 maths against an independent float64 reference (docs/method.md Eq. 1-3).

The reference never uses the implementation's algebra: it builds the full
kernel matrix K over Z = [ir; vis] with explicit broadcasting and writes every
RKHS vector as a weight vector w over Z (phi = sum_z w_z phi(z)), so that
<a, b>_H = w_a^T K w_b. c_ir, c_vis, phi(x_i) - c_ir ... are just weight vectors.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import spearmanr

from irgpt.config.sections import Lesson1Config
from irgpt.data.schema import stable_hash
from irgpt.scoring import mmd
from irgpt.scoring.ranks import normalized_rank


# ------------------------------------------------------------ reference ----
def ref_kernel(a, b, s):
    d2 = ((a[:, None, :] - b[None, :, :]) ** 2).sum(axis=-1)
    return np.exp(-d2 / (2.0 * s * s))


def ref_lesson1(ir, vis, s):
    """(mmd2_biased, mmd2_unbiased, p, d) by weighted quadratic forms in the RKHS."""
    n, m = len(ir), len(vis)
    z = np.concatenate([ir, vis])
    K = ref_kernel(z, z, s)
    c_ir = np.r_[np.full(n, 1.0 / n), np.zeros(m)]
    c_vis = np.r_[np.zeros(n), np.full(m, 1.0 / m)]
    delta = c_vis - c_ir  # c_vis - c_ir (Eq. 2)
    mmd2_b = float(delta @ K @ delta)  # Eq. 1
    Kxx, Kvv, Kxv = K[:n, :n], K[n:, n:], K[:n, n:]
    mmd2_u = float("nan")
    if n > 1 and m > 1:
        mmd2_u = (
            (Kxx.sum() - np.trace(Kxx)) / (n * (n - 1))
            + (Kvv.sum() - np.trace(Kvv)) / (m * (m - 1))
            - 2.0 * Kxv.mean()
        )
    mmd_ = math.sqrt(mmd2_b)
    p = np.empty(n)
    for i in range(n):
        e_i = np.zeros(n + m)
        e_i[i] = 1.0
        p[i] = (e_i - c_ir) @ K @ delta / mmd_  # Eq. 3 projection
    return mmd2_b, float(mmd2_u), p, mmd_ - p  # Decision: d = MMD - p


def shifted_sets(rng, n, m, dim, strength=3.0):
    """IR = N(0, I) shifted by a per-sample amount t_i along one direction; vis = N(0, I)."""
    direction = rng.standard_normal(dim)
    direction /= np.linalg.norm(direction)
    t = rng.uniform(0.0, 1.0, n)
    ir = rng.standard_normal((n, dim)) + (strength * t)[:, None] * direction
    vis = rng.standard_normal((m, dim))
    return ir, vis, t


def rel_err(a, b):
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-300))


# ------------------------------------------------------- exact vs reference ----
@pytest.mark.parametrize("chunk", [7, 1024])
def test_mmd2_biased_and_unbiased_match_reference(chunk):
    rng = np.random.default_rng(1)
    ir, vis, _ = shifted_sets(rng, 37, 23, 5)
    s = 1.7
    ref_b, ref_u, _, _ = ref_lesson1(ir, vis, s)
    assert rel_err(mmd.mmd2(ir, vis, s, chunk=chunk), ref_b) <= 1e-6
    assert rel_err(mmd.mmd2(ir, vis, s, unbiased=True, chunk=chunk), ref_u) <= 1e-6


@pytest.mark.parametrize("chunk", [5, 16, 1024])
def test_exact_distances_match_reference(chunk):
    rng = np.random.default_rng(2)
    ir, vis, _ = shifted_sets(rng, 41, 19, 8)
    s = mmd.pooled_bandwidth(ir, vis, seed=0, sample=100)
    ref_b, ref_u, ref_p, ref_d = ref_lesson1(ir, vis, s)
    d, stats = mmd.exact_distances(ir, vis, s, chunk=chunk)
    assert d.dtype == np.float64 and d.shape == (41,)
    assert rel_err(d, ref_d) <= 1e-6
    assert rel_err(stats["mmd"] - d, ref_p) <= 1e-6  # p_i = MMD - d_i
    assert rel_err(stats["mmd2"], ref_b) <= 1e-6
    assert rel_err(stats["mmd2_unbiased"], ref_u) <= 1e-6
    assert stats["bandwidth"] == s and not stats["degenerate"]


def test_closer_to_visible_is_smaller_d():
    rng = np.random.default_rng(3)
    ir, vis, t = shifted_sets(rng, 300, 200, 6)
    d, _ = mmd.exact_distances(ir, vis, mmd.pooled_bandwidth(ir, vis, 0, 500))
    assert spearmanr(d, t).statistic > 0.5  # larger shift -> farther from visible


# ------------------------------------------------------------- RFF ----
def _rff_vs_exact(n, m, dim):
    rng = np.random.default_rng(4)
    ir, vis, _ = shifted_sets(rng, n, m, dim)
    s = mmd.pooled_bandwidth(ir, vis, seed=0, sample=2000)
    d_exact, st_exact = mmd.exact_distances(ir, vis, s)
    d_rff, st_rff = mmd.rff_estimate(ir, vis, s, D=4096, seed=0)
    assert spearmanr(d_rff, d_exact).statistic >= 0.99
    assert abs(st_rff["mmd"] - st_exact["mmd"]) / st_exact["mmd"] < 0.05


def test_rff_agrees_with_exact():
    _rff_vs_exact(1500, 600, 16)


@pytest.mark.slow
def test_rff_agrees_with_exact_at_scale():
    _rff_vs_exact(5000, 2000, 32)  # ~3 s on an idle 2-core machine, more when shared


def test_rff_kernel_approximation():
    rng = np.random.default_rng(5)
    x = rng.standard_normal((50, 4))
    phi = mmd.RFF(4, 8192, 2.0, seed=3).features(x)
    assert phi.dtype == np.float64 and phi.shape == (50, 8192)
    assert np.abs(phi @ phi.T - ref_kernel(x, x, 2.0)).max() < 0.06


def test_rff_sums_are_partition_and_order_invariant():
    rng = np.random.default_rng(6)
    x = rng.standard_normal((300, 10))
    rff = mmd.RFF(10, 512, 3.0, seed=1)
    whole = mmd.rff_partial_sums(rff.features(x))
    perm = rng.permutation(300)
    cuts = [0, 7, 100, 101, 250, 300]
    parts = [mmd.rff_partial_sums(rff.features(x[perm[a:b]])) for a, b in zip(cuts, cuts[1:])]
    for combined in (mmd.combine_sums(parts), mmd.combine_sums(parts[::-1])):
        assert combined[1] == whole[1] == 300
        assert np.array_equal(combined[0], whole[0])
    c = mmd.centroid_from_sums(*whole)
    assert np.abs(c - rff.features(x).mean(axis=0)).max() < 1e-11


def test_rff_rows_are_batch_invariant():
    rng = np.random.default_rng(7)
    ir, vis, _ = shifted_sets(rng, 40, 30, 6)
    rff = mmd.RFF(6, 256, 2.0, seed=0)
    c_ir = mmd.centroid_from_sums(*mmd.rff_partial_sums(rff.features(ir)))
    c_vis = mmd.centroid_from_sums(*mmd.rff_partial_sums(rff.features(vis)))
    full = mmd.rff_distances(rff.features(ir), c_ir, c_vis)
    singles = np.concatenate([mmd.rff_distances(rff.features(ir[i : i + 1]), c_ir, c_vis) for i in range(40)])
    pieces = np.concatenate([mmd.rff_distances(rff.features(ir[i : i + 13]), c_ir, c_vis) for i in range(0, 40, 13)])
    assert np.array_equal(full, singles) and np.array_equal(full, pieces)


def test_rff_is_seeded():
    a, b, c = mmd.RFF(3, 16, 1.0, 5), mmd.RFF(3, 16, 1.0, 5), mmd.RFF(3, 16, 1.0, 6)
    assert np.array_equal(a.W, b.W) and np.array_equal(a.b, b.b) and not np.array_equal(a.W, c.W)
    assert np.all((a.b >= 0) & (a.b <= 2 * math.pi))


# --------------------------------------------------------- edge cases ----
def test_one_ir_sample():
    rng = np.random.default_rng(8)
    ir, vis = rng.standard_normal((1, 4)) + 1.0, rng.standard_normal((20, 4))
    d, stats = mmd.exact_distances(ir, vis, 1.5)
    ref_b, _, ref_p, ref_d = ref_lesson1(ir, vis, 1.5)
    assert rel_err(d, ref_d) <= 1e-6 and abs(ref_p[0]) < 1e-12  # p = 0, d = MMD
    assert stats["mmd2_unbiased"] is None
    d_rff, _ = mmd.rff_estimate(ir, vis, 1.5, D=256, seed=0)
    assert d_rff.shape == (1,) and np.isfinite(d_rff).all()
    with pytest.raises(ValueError):
        mmd.mmd2(ir, vis, 1.5, unbiased=True)
    assert normalized_rank(d, ["only"]).tolist() == [0.0]


def test_identical_features_no_nan():
    x = np.ones((10, 5))
    s = mmd.median_bandwidth(x, seed=0, sample=100)
    assert s == mmd.BANDWIDTH_FALLBACK
    d, stats = mmd.exact_distances(x, x[:4], s)
    assert stats["degenerate"] and stats["mmd"] == 0.0 and np.array_equal(d, np.zeros(10))
    d_rff, st_rff = mmd.rff_estimate(x, x[:4], s, D=128, seed=0)
    assert st_rff["degenerate"] and np.array_equal(d_rff, np.zeros(10))


def test_identical_domains_give_zero():
    rng = np.random.default_rng(9)
    x = rng.standard_normal((25, 3))
    d, stats = mmd.exact_distances(x, x[::-1].copy(), 1.0)
    assert stats["degenerate"] and np.array_equal(d, np.zeros(25))


def test_bandwidth_median_mean_fallback():
    x = np.array([[0.0], [0.0], [0.0], [3.0]])  # median distance 0, mean 1.5
    assert mmd.median_bandwidth(x, seed=0, sample=10) == pytest.approx(1.5)
    rng = np.random.default_rng(10)
    y = rng.standard_normal((30, 4))
    all_rows = mmd.median_bandwidth(y, seed=0, sample=1000)
    diffs = [np.linalg.norm(y[i] - y[j]) for i in range(30) for j in range(i + 1, 30)]
    assert all_rows == pytest.approx(float(np.median(diffs)), rel=1e-12)
    assert mmd.median_bandwidth(y, 1, 10) == mmd.median_bandwidth(y, 1, 10)
    assert mmd.median_bandwidth(y[:1], 0, 10) == mmd.BANDWIDTH_FALLBACK


def test_nan_detection():
    x = np.zeros((4, 3))
    x[1, 2], x[3, 0] = np.nan, np.inf
    assert mmd.finite_rows(x).tolist() == [True, False, True, False]
    with pytest.raises(ValueError, match="non-finite"):
        mmd.exact_distances(x, np.zeros((2, 3)), 1.0)
    with pytest.raises(ValueError, match="non-finite"):
        mmd.median_bandwidth(x, 0, 10)
    with pytest.raises(ValueError):
        mmd.exact_distances(np.zeros((2, 3)), np.zeros((2, 4)), 1.0)


def test_choose_estimator():
    cfg = Lesson1Config(exact_max_pairs=100)
    assert mmd.choose_estimator(10, 10, cfg) == "exact"
    assert mmd.choose_estimator(10, 11, cfg) == "rff"
    assert mmd.choose_estimator(10**6, 10**6, Lesson1Config(estimator="exact")) == "exact"
    assert mmd.choose_estimator(1, 1, Lesson1Config(estimator="rff")) == "rff"


def test_lesson1_distances_dispatch():
    rng = np.random.default_rng(11)
    ir, vis, _ = shifted_sets(rng, 30, 20, 4)
    _, st_exact = mmd.lesson1_distances(ir, vis, Lesson1Config())
    _, st_rff = mmd.lesson1_distances(ir, vis, Lesson1Config(estimator="rff", rff_dim=64))
    assert st_exact["estimator"] == "exact" and st_rff["estimator"] == "rff"
    assert st_exact["bandwidth"] == st_rff["bandwidth"] > 0


# --------------------------------------------------------------- ranks ----
def test_normalized_rank_ascending_with_hash_ties():
    ids = [f"s{i}" for i in range(6)]
    values = [0.5, 0.1, 0.5, 0.9, 0.5, 0.1]
    r = normalized_rank(values, ids)
    assert r.min() == 0.0 and r.max() == 1.0 and len(set(r.tolist())) == 6
    assert r[3] == 1.0
    tied = [i for i, v in enumerate(values) if v == 0.5]
    by_hash = sorted(tied, key=lambda i: stable_hash(ids[i]))
    assert [r[i] for i in by_hash] == sorted(r[i] for i in tied)
    assert max(r[1], r[5]) < min(r[i] for i in tied)
    perm = [4, 2, 0, 5, 3, 1]
    r_perm = normalized_rank([values[i] for i in perm], [ids[i] for i in perm])
    assert np.array_equal(r_perm, r[perm])
    assert normalized_rank([], []).shape == (0,)
    with pytest.raises(ValueError):
        normalized_rank([1.0, np.nan], ["a", "b"])
    with pytest.raises(ValueError):
        normalized_rank([1.0, 2.0], ["a", "a"])


# -------------------------------------------------- permutation property ----
@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), n=st.integers(1, 12), m=st.integers(1, 9))
def test_d_invariant_to_row_permutation(seed, n, m):
    rng = np.random.default_rng(seed)
    ir, vis, _ = shifted_sets(rng, n, m, 3)
    s = 1.3
    p_ir, p_vis = rng.permutation(n), rng.permutation(m)
    d, _ = mmd.exact_distances(ir, vis, s, chunk=4)
    d_perm, _ = mmd.exact_distances(ir[p_ir], vis[p_vis], s, chunk=4)
    np.testing.assert_allclose(d_perm, d[p_ir], rtol=1e-9, atol=1e-12)
    r, _ = mmd.rff_estimate(ir, vis, s, D=64, seed=seed, chunk=5)
    r_perm, _ = mmd.rff_estimate(ir[p_ir], vis[p_vis], s, D=64, seed=seed, chunk=5)
    assert np.array_equal(r_perm, r[p_ir])  # RFF path: bit-identical
