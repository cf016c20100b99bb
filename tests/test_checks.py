"""The shared argument checks and reductions every loss relies on."""

from __future__ import annotations

import re

import numpy as np
import pytest

import lossutils
from lossutils import _checks


def test_mean_of_zero_elements_is_nan_without_a_warning():
    # pytest turns warnings into errors here, so a RuntimeWarning would fail the test
    assert np.isnan(_checks.reduce(np.array([], dtype=np.float64), "mean"))
    assert _checks.reduce(np.array([], dtype=np.float32), "sum") == 0


def test_mean_whose_sum_overflows_is_still_finite():
    # (1.3e154)^2 = 1.69e308 is finite; the sum of two of them is not
    loss = lossutils.mse_loss([1.3e154, 1.3e154], [0.0, 0.0])
    assert loss == pytest.approx(1.69e308, rel=1e-15)


def test_a_true_overflow_stays_inf():
    # the square itself overflows (NumPy warns about that, as for any overflow)
    with np.errstate(over="ignore"):
        assert lossutils.mse_loss([1e200], [0.0]) == np.inf


def test_result_dtype_follows_numpy_promotion_with_weak_scalars():
    f32 = np.ones(2, np.float32)
    assert _checks.result_dtype(f32, 1.0) == np.float32
    assert _checks.result_dtype(f32, np.ones(2)) == np.float64
    assert _checks.result_dtype(np.ones(2, int), f32) == np.float64


def test_messages_name_the_argument_the_expectation_and_the_value():
    with pytest.raises(ValueError, match=r"^delta must be a positive finite number; got -1\.0$"):
        lossutils.huber_loss([1.0], [2.0], delta=np.float64(-1))
    with pytest.raises(
        ValueError, match=r"target must have the same shape as input \(2,\); got shape \(3,\)"
    ):
        lossutils.mse_loss([1.0, 2.0], [1.0, 2.0, 3.0])


RAGGED = [
    (lossutils.mse_loss, ([[1.0, 2.0], [3.0]], [[1.0, 2.0], [3.0, 4.0]]), "input"),
    (lossutils.mse_loss, ([[1.0, 2.0], [3.0, 4.0]], [[1.0, 2.0], [3.0]]), "target"),
    (lossutils.gaussian_nll_loss, ([1.0, 2.0], [1.0, 2.0], [[1.0], [1.0, 2.0]]), "var"),
    (lossutils.cross_entropy, ([[1.0, 2.0], [3.0]], [0, 1]), "input"),
    (lossutils.kl_div, ([[-1.0, -2.0], [-3.0]], [[0.5, 0.5], [0.5, 0.5]]), "input"),
    (lossutils.poisson_nll_loss, ([[1.0, 2.0], [3.0]], [[0.0, 1.0], [1.0, 0.0]]), "input"),
    (lossutils.contrastive_loss, ([[1.0, 2.0], [3.0]], [[0.0, 1.0], [1.0, 0.0]], [1, 0]), "x1"),
    (lossutils.ctc_loss, (np.zeros((2, 1, 3)), [[1], [1, 2]], [2], [1]), "targets"),
    (lossutils.ddpm_noise_loss, ([[1.0], [2.0, 3.0]], [[0.0], [0.0]], [1, 1], [0.1]), "noise_pred"),
    # class-index and label targets, converted by each family
    (lossutils.cross_entropy, ([[1.0, 2.0], [3.0, 4.0]], [[0, 1], [1]]), "target"),
    (lossutils.multilabel_margin_loss, ([[1.0, 2.0], [3.0, 4.0]], [[0, -1], [1]]), "target"),
    (lossutils.cosine_embedding_loss, ([[1.0, 2.0]], [[3.0, 4.0]], [[1], []]), "target"),
    (lossutils.triplet_margin_loss, ([[1.0, 2.0]], [[3.0, 4.0]], [[0.0], [1.0, 2.0]]), "negative"),
    (lossutils.contrastive_loss, ([[1.0, 2.0]], [[0.0, 1.0]], [[1], []]), "target"),
]


@pytest.mark.parametrize("index", range(len(RAGGED)))
def test_ragged_input_is_a_value_error_naming_the_argument(index):
    # NumPy's own message ("setting an array element with a sequence ... inhomogeneous
    # shape") names no argument; every loss converts through _checks.as_array
    f, args, name = RAGGED[index]
    message = rf"^{name} must be a rectangular array of numbers; got a ragged sequence"
    with pytest.raises(ValueError, match=message):
        f(*args)
    with pytest.raises(ValueError, match=message):
        getattr(lossutils, f.__name__ + "_grad")(*args)


@pytest.mark.parametrize(
    ("values", "bad"),
    [
        ([0.5, np.nan, 1.5], 1.5),
        ([np.nan, -0.0, -1e-300], -1e-300),
        ([np.nan, 1.0, 1.0000000000000002], 1.0000000000000002),
        ([np.inf, 0.0], np.inf),
    ],
)
def test_unit_interval_check_finds_a_value_outside_among_nan(values, bad):
    # the check reduces to the extremes ignoring NaN: a NaN next to the bad value hides nothing
    with pytest.raises(
        ValueError, match=rf"target must lie in \[0, 1\]; got {re.escape(str(bad))}$"
    ):
        _checks.check_unit_interval(np.array(values), "target")
    with pytest.raises(ValueError, match="target must lie in"):
        lossutils.binary_cross_entropy([0.5] * len(values), values)


@pytest.mark.parametrize("values", [[np.nan, np.nan], [], [0.0, -0.0, 1.0, np.nan]])
def test_unit_interval_check_passes_nan_empty_and_the_ends(values):
    _checks.check_unit_interval(np.array(values, dtype=np.float64), "target")
    _checks.check_nonnegative(np.array(values, dtype=np.float64), "count")


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
def test_unit_interval_check_in_one_pass_without_nan(dtype):
    # without NaN or -0 the check reads the largest unsigned bit pattern: every value just
    # outside [0, 1] (above 1, below 0 by the least subnormal, infinite) is still found
    tiny = np.finfo(dtype).smallest_subnormal
    inside = np.array([[0.0, tiny, 0.5, 1.0], [1.0, 0.25, tiny, 0.0]], dtype)
    for view in (inside, inside[:, ::2], inside.astype(inside.dtype.newbyteorder())):
        _checks.check_unit_interval(view, "target")
    for bad in (np.nextafter(dtype(1), dtype(2)), -tiny, dtype(-1), dtype(np.inf)):
        values = inside.copy()
        values[1, 2] = bad
        for view in (values, values[:, ::2], values.astype(values.dtype.newbyteorder())):
            with pytest.raises(ValueError, match="target must lie in"):
                _checks.check_unit_interval(view, "target")


def test_nonnegative_check_names_the_negative_value_among_nan():
    with pytest.raises(ValueError, match=r"count must be non-negative; got .*-2\.0"):
        _checks.check_nonnegative(np.array([np.nan, 3.0, -2.0]), "count")


@pytest.mark.parametrize("bad", [0.0, 0.5, -2.0, np.inf, -np.inf, 1.0000000000000002])
def test_pm1_label_check_finds_a_bad_label_beside_nan(bad):
    labels = np.array([1.0, np.nan, -1.0, bad, np.nan])
    with pytest.raises(
        ValueError, match=rf"target must hold labels in \{{-1, \+1\}}; got {re.escape(str(bad))}$"
    ):
        _checks.check_pm1_labels(labels, "target")
    _checks.check_pm1_labels(np.array([1.0, np.nan, -1.0, -0.0 + 1.0]), "target")
    _checks.check_pm1_labels(np.array([np.nan, np.nan]), "target")
    _checks.check_pm1_labels(np.array([]), "target")


# the second of each 8 negative (its own partial sum in NumPy's pairwise sum), and
# shorter sums whose first partial sums overflow though the exact sum does not
BOTH_SIGNS = [[-1, -1, 1, 1], [-1, -1, -1, 1, 1]] + [
    ([-1, 1, -1, -1, -1, -1, -1, -1] * 3)[:n] for n in (8, 9, 13, 16, 20)
]


@pytest.mark.parametrize("x", BOTH_SIGNS)
@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_mean_and_sum_of_huge_terms_of_both_signs(x, reduction):
    # The Poisson loss e^x - t x at x = +-1 and t = 3/4 of the largest float64 is -+t
    # (e^x is far below its last place). NumPy sums 8 or more values in interleaved
    # partial sums: the positive ones overflowed to inf, the negative ones to -inf, and
    # inf - inf made the mean NaN; a sum whose partial sums overflowed was inf or NaN
    # though its exact value is finite.
    import mpmath

    n, big = len(x), 0.75 * np.finfo(np.float64).max
    x, t = np.array(x, dtype=np.float64), np.full(n, big)
    with mpmath.workprec(1100):  # (e^x is 2^-1020 of t)
        terms = [
            mpmath.exp(float(a)) - mpmath.mpf(float(b)) * float(a)
            for a, b in zip(x, t, strict=True)
        ]
        exact = mpmath.fsum(terms) / (n if reduction == "mean" else 1)
    got = lossutils.poisson_nll_loss(x, t, log_input=True, reduction=reduction)
    if abs(exact) > np.finfo(np.float64).max:
        assert got == np.inf * mpmath.sign(exact)
    else:
        # within a few ULP of the summed (or mean) magnitude of the terms (they cancel)
        unit = np.spacing(big) * (n if reduction == "sum" else 1)
        assert np.isfinite(got) and abs(float(got) - float(exact)) <= 4 * unit, (got, exact)
