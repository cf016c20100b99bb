"""Stable activations against mpmath at 400 digits, over both tails and the middle."""

from __future__ import annotations

import mp_reference as mr
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from lossutils import activations as A
from lossutils.testing import assert_ulp_close

_MAGNITUDES = np.concatenate(
    [np.logspace(-300, -20, 8), np.logspace(-16, 4, 41), [36.7, 37.5, 40.0, 709.0, 745.0, 800.0]]
)
X = np.concatenate(
    [[0.0], _MAGNITUDES, -_MAGNITUDES, np.random.default_rng(5).uniform(-50, 50, 60)]
)

WORST = mr.WorstUlp()
_ulp = WORST.check


@pytest.fixture(scope="module", autouse=True)
def _print_worst():
    yield
    print("\n" + str(WORST))


@pytest.mark.parametrize("name", ["sigmoid", "softplus", "log_sigmoid"])
def test_elementwise_ulp_both_tails(name):
    got = getattr(A, name)(X)
    reference = getattr(mr, name)(X)
    _ulp(name, got, reference)


def test_tails_are_not_flushed():
    # the two tails where the textbook forms lose everything
    assert A.softplus(-700.0) == pytest.approx(np.exp(-700.0), rel=1e-15)
    assert A.log_sigmoid(800.0) == -np.exp(-800.0)  # 0 in float64: exp(-800) underflows
    assert A.log_sigmoid(40.0) == pytest.approx(-np.exp(-40.0), rel=1e-15)
    assert A.softplus(1e4) == 1e4 and A.log_sigmoid(-1e4) == -1e4


def _rows(n=80, c=5, seed=0):
    """Rows at scales up to 1e4; half of them dominated by their maximum by up to 745."""
    g = np.random.default_rng(seed)
    x = g.normal(size=(n, c)) * g.choice([1.0, 10.0, 1e4], (n, 1)) + g.choice([0, 37.3], (n, 1))
    rows = np.arange(0, n, 2)
    top = g.integers(0, c, len(rows))
    x[rows, top] = x[rows].max(-1) + g.uniform(0, 745, len(rows))
    return x


def test_log_softmax_ulp_including_the_tiny_maximal_entry():
    x = _rows()
    got = A.log_softmax(x)
    assert np.min(np.abs(got[got != 0])) < 1e-300
    _ulp("log_softmax", got, mr.log_softmax(x))
    _ulp("log_softmax (axis=0)", A.log_softmax(x.T, axis=0), mr.log_softmax(x).T)


def test_logsumexp_ulp_away_from_cancellation():
    # m + log1p(s) is well conditioned where the result is not tiny next to the maximum m;
    # the rows here are shifted so that the maximum is >= 0 (no cancellation in the sum)
    x = _rows(seed=1)
    x = x - np.minimum(x.max(-1, keepdims=True), 0)
    _ulp("logsumexp", A.logsumexp(x), mr.logsumexp(x))
    # a maximum of exactly 0 leaves only log1p(s), down to s ~ 1e-300
    x0 = x - x.max(-1, keepdims=True)
    _ulp("logsumexp", A.logsumexp(x0), mr.logsumexp(x0))
    assert np.min(A.logsumexp(x0)[A.logsumexp(x0) > 0]) < 1e-300


def test_softmax_sums_to_one_and_matches_reference():
    x = _rows(seed=2)
    p = A.softmax(x)
    np.testing.assert_allclose(p.sum(-1), 1.0, rtol=1e-14)
    reference = np.exp(mr.log_softmax(x).astype(float))
    np.testing.assert_allclose(p, reference, rtol=1e-12, atol=1e-300)


def wide_float32_rows(n, c, seed=9):
    """float32 rows of C classes: N(0, 2^2) logits, the first raised by up to 12."""
    rng = np.random.default_rng(seed)
    x = (rng.standard_normal((n, c)) * 2).astype(np.float32)
    x[:, 0] += rng.uniform(0, 12, n).astype(np.float32)
    return x


@pytest.mark.parametrize(("n", "c"), [(8, 1000), (2, 100000)])
def test_softmax_float32_wide_rows_ulp(n, c):
    # each probability is divided by a row sum of C terms: summed in float32 that sum
    # carried up to about log2(C) ULP into every entry (7.2 ULP at C = 1000); with the
    # shifted float32 exponentials corrected and the sum in float64, 3.8 ULP remained.
    # Unshifted in float64 and rounded once, every entry is within half an ULP and a hair.
    x = wide_float32_rows(n, c)
    got = A.softmax(x)
    assert got.dtype == np.float32
    assert_ulp_close(got, mr.softmax(x, digits=30), 0.501, "softmax float32", np.float32)


def float32_rows_around_the_wide_path():
    """float32 rows on both sides of each limit of the unshifted float64 evaluation.

    Rows of 4 classes: maxima from 700 to 712 (e^x overflows float64 at 709.78); every
    entry from -590 to -602 (the row sum falls below the 2^-860 ~ e^-596.1 floor); a
    maximum at 0 with the rest from -700 to -760 (float64 subnormal exponentials); and a
    dominant first entry, ``[b, b - t, b - t, b - t]``, whose other probabilities
    ``3 e^-t`` straddle 2^-20 (1 + |logsumexp|) for b in {0, 60, -60}.
    """
    rows = []
    for top in np.linspace(700, 712, 25):
        rows.append([top, top - 1, top - 30, 0])
    for level in np.linspace(-590, -602, 25):
        rows.append([level, level - 0.5, level - 1, level - 2])
    for low in np.linspace(-700, -760, 13):
        rows.append([0, -1, low, low - 20])
    for b in (0, 60, -60):
        threshold = 2.0**-20 * (1 + abs(b))
        for t in np.log(3 / threshold) + np.linspace(-1, 1, 21):
            rows.append([b, b - t, b - t, b - t])
    return np.array(rows, dtype=np.float32)


def test_softmax_float32_around_the_limits_of_the_wide_path():
    # rows past each limit are shifted by their maximum instead: within the bound of 4 ULP
    x = float32_rows_around_the_wide_path()
    got = A.softmax(x)
    assert got.dtype == np.float32
    assert_ulp_close(got, mr.softmax(x, digits=40), 4.0, "softmax float32", np.float32)


@pytest.mark.parametrize(("n", "c"), [(48, 1000), (6, 5000)])
def test_logsumexp_float32_ulp_across_the_unshifted_range(n, c):
    # float32 results of magnitude 8 or more are log(sum(exp(x))) without the max-shift,
    # the others shifted: the rows place the result from -100 to 100, on both sides of
    # |result| = 8 and past the overflow (88.7) and underflow of float32's exponential;
    # a few near 0 that the unshifted sum would get wrong
    rng = np.random.default_rng(11)
    base = rng.standard_normal((n, c)) * rng.uniform(0.01, 10, (n, 1))
    lse = np.log(np.sum(np.exp(base - base.max(-1, keepdims=True)), -1)) + base.max(-1)
    wanted = np.concatenate([[-8.01, -7.99, 7.99, 8.01], np.linspace(-100, 100, n - 4)])
    x = (base + (wanted - lse)[:, None]).astype(np.float32)
    # rows dominated by their maximum, near 0: the result is that maximum plus ~1e-5
    x[-4:] = np.float32(-20) - np.abs(x[-4:] - x[-4:].max(-1, keepdims=True))
    x[-4:, 0] = [0, 1e-3, -1e-3, 0.5]
    got = A.logsumexp(x)
    assert got.dtype == np.float32
    assert_ulp_close(got, mr.logsumexp(x), 4.0, "logsumexp float32", np.float32)


def test_log_softmax_float32_rows_dominated_by_their_maximum_ulp():
    # the maximal entry is -log1p(s) with s < 1, down to ~1e-13: s is compensated and
    # summed in float64, then r = log1p(s) is rounded to float32 and subtracted there
    rng = np.random.default_rng(12)
    x = rng.standard_normal((300, 10)) * rng.uniform(0.3, 10, (300, 1))
    x[:, 0] += rng.uniform(0, 30, 300)
    x = x.astype(np.float32)
    got = A.log_softmax(x)
    assert got.dtype == np.float32
    assert np.max(got[:, 0]) > -1e-9
    assert_ulp_close(got, mr.log_softmax(x, digits=30), 4.0, "log_softmax float32", np.float32)


def test_worked_example():
    np.testing.assert_allclose(A.softmax([5.0, 4.0, 2.0]), [0.705, 0.259, 0.035], atol=5e-4)
    reference = mr.log_softmax(np.array([5.0, 4.0, 2.0]))
    _ulp("log_softmax", A.log_softmax([5.0, 4.0, 2.0]), reference)


def test_infinities_and_nan():
    assert A.logsumexp([np.inf, 0.0]) == np.inf
    assert A.logsumexp([-np.inf, -np.inf]) == -np.inf
    assert A.logsumexp([-np.inf, 0.0]) == 0.0
    assert np.isnan(A.logsumexp([np.nan, 0.0]))
    np.testing.assert_array_equal(A.log_softmax([-np.inf, 0.0]), [-np.inf, 0.0])
    assert np.all(np.isnan(A.log_softmax([np.nan, 1.0])))
    assert np.isnan(A.sigmoid(np.nan)) and np.isnan(A.softplus(np.nan))


def test_shapes_axes_keepdims_and_dtypes():
    x = np.random.default_rng(3).normal(size=(2, 3, 4)).astype(np.float32)
    assert A.logsumexp(x, axis=1).shape == (2, 4)
    assert A.logsumexp(x, axis=1, keepdims=True).shape == (2, 1, 4)
    for f in (A.sigmoid, A.softplus, A.log_sigmoid, A.softmax, A.log_softmax, A.logsumexp):
        assert f(x).dtype == np.float32, f.__name__
        assert f(x.astype(int)).dtype == np.float64, f.__name__
    np.testing.assert_allclose(
        A.log_softmax(x, axis=1), np.moveaxis(A.log_softmax(np.moveaxis(x, 1, -1)), -1, 1)
    )
    np.testing.assert_allclose(
        A.logsumexp(x, axis=0), A.logsumexp(np.moveaxis(x, 0, -1)), rtol=1e-6
    )


def test_inputs_are_never_modified():
    x = _rows(seed=4)
    copy = x.copy()
    for f in (A.sigmoid, A.softplus, A.log_sigmoid, A.softmax, A.log_softmax, A.logsumexp):
        f(x)
    np.testing.assert_array_equal(x, copy)


@pytest.mark.parametrize(
    "call",
    [
        lambda: A.logsumexp(1.0),
        lambda: A.logsumexp(np.zeros((2, 0))),
        lambda: A.log_softmax(np.zeros((2, 0))),
        lambda: A.log_softmax(np.zeros(3), axis=2),
        lambda: A.sigmoid(np.array(["a"])),
    ],
)
def test_bad_input_raises_value_error(call):
    with pytest.raises(ValueError, match="x|axis"):
        call()


@settings(max_examples=60, deadline=None)
@given(
    hnp.arrays(
        np.float64, st.tuples(st.integers(1, 4), st.integers(1, 6)), elements=st.floats(-100, 100)
    ),
    st.floats(-1e3, 1e3),
)
def test_log_softmax_is_shift_invariant_and_normalised(x, shift):
    a = A.log_softmax(x)
    np.testing.assert_allclose(np.exp(a).sum(-1), 1.0, rtol=1e-13)
    b = A.log_softmax(x + shift)
    np.testing.assert_allclose(b, a, atol=1e-12 * (1 + np.abs(x).max() + abs(shift)))
    np.testing.assert_allclose(
        A.logsumexp(x + shift),
        A.logsumexp(x) + shift,
        rtol=1e-13,
        atol=1e-12 * (1 + np.abs(x).max() + abs(shift)),
    )


@settings(max_examples=60, deadline=None)
@given(hnp.arrays(np.float64, st.integers(1, 20), elements=st.floats(-800, 800)))
def test_softplus_identities(x):
    np.testing.assert_allclose(
        A.softplus(x) - A.softplus(-x), x, atol=1e-12 * (1 + np.abs(x).max())
    )
    np.testing.assert_array_equal(A.log_sigmoid(x), -A.softplus(-x))
    assert np.all(A.sigmoid(x) >= 0) and np.all(A.sigmoid(x) <= 1)
