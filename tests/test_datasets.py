"""Tests of lossutils.datasets: the seeded data sets that several chapters share."""

import numpy as np
import pytest

from lossutils.datasets import line_with_outlier


def test_same_seed_same_data_other_seed_other_data():
    first, again, other = line_with_outlier(), line_with_outlier(seed=0), line_with_outlier(seed=1)
    for a, b in zip(first, again, strict=True):
        np.testing.assert_array_equal(a, b)
    assert not np.array_equal(first[0], other[0])


def test_independent_of_earlier_draws():
    expected = line_with_outlier(seed=3)
    line_with_outlier(n=50, seed=3)
    np.random.default_rng(3).normal(size=100)
    for a, b in zip(line_with_outlier(seed=3), expected, strict=True):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("n", [2, 30, 101])
def test_shapes_and_sorted_inputs(n):
    x, y, y_outlier = line_with_outlier(n=n)
    assert x.shape == y.shape == y_outlier.shape == (n,)
    assert x.dtype == y.dtype == y_outlier.dtype == np.float64
    assert np.all(np.diff(x) > 0) and x[0] >= 0 and x[-1] < 1


def test_the_outlier_is_the_last_point_and_only_it():
    x, y, y_outlier = line_with_outlier(outlier=-7.5, seed=2)
    assert x[-1] == x.max()
    assert y_outlier[-1] == y[-1] - 7.5
    np.testing.assert_array_equal(y_outlier[:-1], y[:-1])


def test_clean_least_squares_fit_is_near_the_true_line():
    x, y, _ = line_with_outlier(n=200, slope=-1.5, intercept=0.25, noise=0.05, seed=5)
    design = np.column_stack([x, np.ones_like(x)])
    slope, intercept = np.linalg.lstsq(design, y, rcond=None)[0]
    # standard errors here are about 0.012 (slope) and 0.007 (intercept)
    assert abs(slope + 1.5) < 0.05 and abs(intercept - 0.25) < 0.03
    residual_std = np.std(y - design @ np.array([slope, intercept]))
    assert 0.04 < residual_std < 0.06


def test_without_noise_the_points_are_on_the_line():
    x, y, y_outlier = line_with_outlier(noise=0.0, outlier=0.0)
    np.testing.assert_allclose(y, 2 * x + 1, rtol=0, atol=1e-15)
    np.testing.assert_array_equal(y_outlier, y)


@pytest.mark.parametrize("n", [1, 0, 2.5])
def test_too_few_points_is_an_error(n):
    with pytest.raises(ValueError, match="n: expected an integer of at least 2"):
        line_with_outlier(n=n)
