"""Eq. 4-5 against hand-computed values (sigma(0.5) = 0.6224593312, sigma(1) =
0.7310585786, sigma(1.5) = 0.8175744762, sigma(3) = 0.9525741268)."""

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from irgpt.config.sections import WeightsConfig
from irgpt.scoring.weights import (
    alpha,
    eq5_weights,
    exact_partials,
    weight_medians,
    weights_from_config,
)

S05, S1, S15, S3 = 0.6224593312, 0.7310585786, 0.8175744762, 0.9525741268
MIXED = [0.2, 0.4, 0.6, -0.1, -0.3, 0.0]
# positive median 0.4; non-positive: -alpha = [0.1, 0.3, 0.0] -> median 0.1
MIXED_W = [1 - S05, 1 - S1, 1 - S15, 1 + S1, 1 + S3, 1.5]


def test_eq4_alpha_hand_values():
    assert alpha(1.0, 1.5) == pytest.approx(0.5)
    assert alpha(2.0, 1.0) == pytest.approx(-0.5)
    np.testing.assert_allclose(alpha([4.0, 1.0], [3.0, 1.0]), [-0.25, 0.0])


def test_eq4_zero_loss_before_is_defined():
    assert alpha(0.0, 0.0) == 0.0  # no change
    assert alpha(0.0, 0.7) == math.inf  # worse from perfect: weight -> 0
    assert eq5_weights([math.inf, 0.2, 0.4])[0] == 0.0


@pytest.mark.parametrize("bad", [(-1.0, 1.0), (1.0, float("nan")), (float("inf"), 1.0)])
def test_eq4_rejects_invalid_losses(bad):
    with pytest.raises(ValueError):
        alpha(*bad)


def test_eq5_both_branches_and_zero():
    np.testing.assert_allclose(eq5_weights(MIXED), MIXED_W, atol=1e-9)
    assert weight_medians(MIXED) == pytest.approx((0.4, 0.1))


def test_eq5_all_positive():
    # median 0.75: sigma(0.5/0.75) = 0.6607563688, sigma(1/0.75) = 0.7913914727
    np.testing.assert_allclose(eq5_weights([0.5, 1.0]), [1 - 0.6607563688, 1 - 0.7913914727], atol=1e-9)
    assert weight_medians([0.5, 1.0]) == (0.75, None)


def test_eq5_all_non_positive():
    np.testing.assert_allclose(eq5_weights([-0.2, -0.4, -0.6]), [1 + S05, 1 + S1, 1 + S15], atol=1e-9)
    assert weight_medians([-0.2, -0.4, -0.6]) == (None, pytest.approx(0.4))


def test_eq5_single_sample():
    assert eq5_weights([0.3])[0] == pytest.approx(1 - S1)
    assert eq5_weights([-0.5])[0] == pytest.approx(1 + S1)
    assert eq5_weights([0.0])[0] == 1.5


def test_eq5_zero_median_has_no_nan():
    np.testing.assert_array_equal(eq5_weights([0.0, 0.0, 0.0]), [1.5, 1.5, 1.5])
    # median of [0, 0, 0.5] is 0: limit of x / (tau * 0) -> 0 for x = 0, +inf for x > 0
    np.testing.assert_array_equal(eq5_weights([0.0, 0.0, -0.5]), [1.5, 1.5, 2.0])


def test_eq5_temperature():
    w = eq5_weights([0.4, -0.1, 0.2, -0.3], temperature=2.0)  # medians 0.3 / 0.2
    np.testing.assert_allclose(w[:2], [1 - 1 / (1 + math.exp(-0.4 / 0.6)), 1 + 1 / (1 + math.exp(-0.1 / 0.4))])
    np.testing.assert_allclose(eq5_weights(MIXED, temperature=2.0)[[1, 3]], [1 - S05, 1 + S05], atol=1e-9)


def test_eq5_normalize_and_clip_last():
    w = eq5_weights(MIXED, normalize=True)
    assert w.mean() == pytest.approx(1.0)
    np.testing.assert_allclose(w, np.array(MIXED_W) / np.mean(MIXED_W), atol=1e-9)
    np.testing.assert_allclose(eq5_weights(MIXED, clip=[0.3, 1.6]), [1 - S05, 0.3, 0.3, 1.6, 1.6, 1.5], atol=1e-9)
    both = eq5_weights(MIXED, normalize=True, clip=[0.3, 1.6])
    np.testing.assert_allclose(both, np.clip(w, 0.3, 1.6))


def test_eq5_precomputed_medians_and_config():
    assert eq5_weights([0.2], medians=(0.4, 0.1))[0] == pytest.approx(1 - S05)
    part = eq5_weights(MIXED[:3], medians=weight_medians(MIXED))
    np.testing.assert_allclose(part, MIXED_W[:3], atol=1e-9)
    cfg = WeightsConfig(temperature=2.0, normalize=True, clip=[0.0, 1.8])
    np.testing.assert_array_equal(weights_from_config(MIXED, cfg), eq5_weights(MIXED, 2.0, True, [0.0, 1.8]))
    with pytest.raises(ValueError):
        eq5_weights([0.2], medians=(None, 0.1))


def test_eq5_rejects_nan():
    with pytest.raises(ValueError):
        eq5_weights([0.1, float("nan")])


def test_exact_partials_merge_is_order_free():
    rng = np.random.default_rng(0)
    x = rng.normal(size=1000) * 10.0 ** rng.integers(-8, 8, 1000)
    whole = math.fsum(x)
    merged = math.fsum(exact_partials(x[:317]) + exact_partials(x[317:]))
    assert merged == whole


@settings(max_examples=60, deadline=None)
@given(st.lists(st.floats(min_value=-1.0, max_value=50.0, allow_nan=False), min_size=1, max_size=60))
def test_eq5_ranges_hold_for_any_alpha(values):
    a = np.array(values)
    w = eq5_weights(a)
    assert np.all(np.isfinite(w))
    assert np.all((w[a > 0] >= 0) & (w[a > 0] <= 0.5))
    assert np.all((w[a <= 0] >= 1.5) & (w[a <= 0] <= 2.0))
    # monotone: a larger alpha never gets a larger weight
    order = np.argsort(a, kind="stable")
    assert np.all(np.diff(w[order]) <= 1e-12)
