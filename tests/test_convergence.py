"""Convergence measures against hand-computed answers."""

import numpy as np
import pytest

from dtrl_jax import convergence as cv

X = np.arange(1, 11) * 10.0


def test_smooth_is_a_trailing_nan_aware_mean():
    y = np.array([1.0, np.nan, 3.0, 5.0])
    np.testing.assert_allclose(cv.smooth(y, 2), [1.0, 1.0, 3.0, 4.0])
    np.testing.assert_allclose(cv.smooth(y, 1), [1.0, np.nan, 3.0, 5.0])
    two = cv.smooth(np.stack([y, 2 * y]), 3)
    np.testing.assert_allclose(two[1], [2.0, 2.0, 4.0, 16.0 / 2])
    with pytest.raises(ValueError, match="window"):
        cv.smooth(y, 0)


def test_plateau_is_the_mean_of_the_last_quarter():
    y = np.array([0, 0, 0, 0, 0, 0, 0, 0, 4.0, 6.0, np.nan, 8.0])
    assert cv.plateau(y) == pytest.approx(7.0)  # last 3 points, NaN skipped
    np.testing.assert_allclose(cv.plateau(np.stack([y, y + 1])), [7.0, 8.0])
    assert np.isnan(cv.plateau(np.full(4, np.nan)))


def test_first_reach_and_direction():
    y = np.array([0, 1, 2, 5, 3, 6, 7, 7, 7, 7.0])
    assert cv.first_reach(X, y, 5.0) == 40.0
    assert cv.first_reach(X, y, 6.5) == 70.0
    assert np.isnan(cv.first_reach(X, y, 8.0))
    gap = np.array([1, 0.5, 0.2, 0.01, 0.02, 0.0, 0, 0, 0, 0])
    assert cv.first_reach(X, gap, 0.01, higher_is_better=False) == 40.0


def test_settle_ignores_early_lucky_points():
    y = np.array([0, 7, 0, 2, 5, 6.8, 7.1, 6.9, 7.0, 7.0])
    # plateau = mean(last 2 or 3 points) ~ 7; the lucky 7 at x=20 is followed by 0, so settle at x=60
    assert cv.settle(X, y, 0.5) == 60.0
    assert cv.settle(X, y, 0.5, level=7.0) == 60.0
    assert cv.settle(X, y, 10.0) == 10.0
    assert np.isnan(cv.settle(X, np.array([1, 1, 1, 1, 1, 1, 1, 1, 1, 9.0]), 0.1, level=1.0))


def test_reach_ratios_per_seed_and_paired():
    ref = np.array([[0, 0, 0, 0, 5, 5, 5, 5, 5, 5.0], [0, 0, 0, 0, 0, 0, 0, 5, 5, 5.0]])  # 50, 80
    var = np.array([[0, 5, 5, 5, 5, 5, 5, 5, 5, 5.0], [0, 0, 0, 5, 5, 5, 5, 5, 5, 5.0]])  # 20, 40
    (row,) = cv.reach_ratios(X, ref, var, [5.0])
    assert row["reference"]["per_seed"] == [50.0, 80.0]
    assert row["variant"]["per_seed"] == [20.0, 40.0]
    assert row["ratio"] == pytest.approx(30.0 / 65.0)
    assert row["paired_ratio"]["mean"] == pytest.approx((0.4 + 0.5) / 2)
    (never,) = cv.reach_ratios(X, ref, var, [9.0])
    assert never["ratio"] is None and never["reference"]["reached"] == 0
