"""The private kernels and reductions every loss is built from, against exact values."""

from __future__ import annotations

import math
from fractions import Fraction

import mpmath
import numpy as np
import pytest

from lossutils import _numerics as nx
from lossutils import _reduction as red
from lossutils.testing import assert_close_to_exact, exact_inputs, ulp_error

DTYPES = [np.float16, np.float32, np.float64]


def test_two_sum_is_exact():
    g = np.random.default_rng(0)
    a = g.normal(size=200) * 10.0 ** g.integers(-20, 20, 200)
    b = g.normal(size=200) * 10.0 ** g.integers(-20, 20, 200)
    s, err = nx.two_sum(a, b)
    with mpmath.workprec(3000):
        for i in range(200):
            assert mpmath.mpf(s[i]) + mpmath.mpf(err[i]) == mpmath.mpf(a[i]) + mpmath.mpf(b[i])


def test_float32_difference_into_is_the_float64_difference():
    # the float32 difference where it is exact, the float64 one elsewhere: bit for bit the
    # float64 difference of the inputs (exponents far apart, close, equal, opposite signs,
    # subnormal, overflowing in float32, infinite, NaN)
    rng = np.random.default_rng(7)
    scales = 2.0 ** rng.integers(-140, 120, 4000)
    a = (rng.standard_normal(4000) * scales).astype(np.float32)
    b = (rng.standard_normal(4000) * scales[rng.permutation(4000)]).astype(np.float32)
    b[:1000] = (a[:1000] * rng.uniform(0.3, 3, 1000)).astype(np.float32)
    special = [3e38, -3e38, np.inf, -np.inf, np.nan, 0.0, -0.0, 1e-45, -1e-45]
    a[-81:] = np.repeat(special, 9)
    b[-81:] = np.tile(special, 9)
    out = np.empty(a.size)
    spare = [np.empty(a.size, dt) for dt in (np.float32, np.float32, bool, bool)]
    with np.errstate(all="ignore"):
        nx.float32_difference_into(a, b, out, spare)
        expected = np.subtract(a, b, dtype=np.float64)
        plain = (a - b).astype(np.float64)
    np.testing.assert_array_equal(out, expected, strict=True)
    assert not np.array_equal(out, plain, equal_nan=True)  # some are not exact in float32


def test_two_diff_skips_a_zero_subtrahend_and_masks_infinities():
    d, err = nx.two_diff(np.array([1.0, 2.0]), 0.0)
    assert err is None and d.tolist() == [1.0, 2.0]
    d, err = nx.two_diff(np.array([np.inf, 1.0]), np.array([1.0, 1e-20]))
    assert d[0] == np.inf and err[0] == 0 and err[1] == -1e-20


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_halved_difference_is_exact_where_the_difference_overflows(dtype, rng):
    top = float(np.finfo(dtype).max)
    a = (rng.choice([-1.0, 1.0], 300) * rng.uniform(0.5, 1.0, 300) * top).astype(dtype)
    b = (rng.choice([-1.0, 1.0], (1, 300)) * rng.uniform(0.0, 1.0, (1, 300)) * top).astype(dtype)
    a[:5] = [np.inf, -np.inf, np.nan, 1.0, -0.0]
    b[0, 5:8] = [np.nan, np.inf, -np.inf]
    shape = (2, 300)  # b broadcast along the first axis
    index = np.arange(600)[::3]
    kept, h, h_err = nx.halved_difference(a, b, index, shape)
    aa, bb = np.broadcast_to(a, shape).reshape(-1), np.broadcast_to(b, shape).reshape(-1)
    finite = index[np.isfinite(aa[index]) & np.isfinite(bb[index])]
    assert kept.tolist() == finite.tolist() and h.dtype == dtype
    for i, hi, lo in zip(kept, h, h_err, strict=True):
        assert (
            Fraction(float(hi)) + Fraction(float(lo))
            == (Fraction(float(aa[i])) - Fraction(float(bb[i]))) / 2
        )
    _, plain, none = nx.halved_difference(a, b, index, shape, with_error=False)
    assert none is None and plain.tobytes() == h.tobytes()


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_margin_gaps_sign_exact_within_one_ulp(dtype):
    """margin - pivot + x against exact rational arithmetic: scores of every scale, and
    rivals within a few ULP of pivot - margin (the plain formula cancels there)."""
    g = np.random.default_rng(5)
    n, c = 200, 8
    x = (g.normal(size=(n, c)) * 10.0 ** g.integers(-6, 6, (n, c))).astype(dtype)
    pivot = (g.normal(size=n) * 10.0 ** g.integers(-6, 6, n)).astype(dtype)
    margin = dtype(1.5)
    near = (pivot - margin)[:, None] * (1 + g.integers(-4, 5, (n, 4)) * np.finfo(dtype).eps)
    x[:, :4] = near.astype(dtype)
    gaps = nx.margin_gaps(x, pivot, margin)
    with mpmath.workprec(3000):  # exact: the exponents span less than 3000 bits
        exact = np.array(
            [
                [mpmath.mpf(float(margin)) - float(pivot[i]) + float(v) for v in r]
                for i, r in enumerate(x)
            ],
            dtype=object,
        )
        signs = np.vectorize(lambda e: int(mpmath.sign(e)))(exact)
        np.testing.assert_array_equal(np.sign(gaps), signs)
        assert ulp_error(gaps, exact, dtype).max() <= 1.0
    assert (signs[:, :4] == 0).any() and (signs[:, :4] != 0).all(axis=1).any()  # ties, near-ties


@pytest.mark.parametrize("dtype", DTYPES)
def test_clipped_hinges_and_their_indicator_are_np_sign(dtype):
    tiny = np.finfo(dtype).smallest_subnormal
    big = np.finfo(dtype).max
    h = np.array([[0, tiny, -tiny, np.nan, np.inf, -np.inf, 1, big, -big, 2 * tiny]], dtype)
    clipped = nx.clip_hinges(h.copy())
    np.testing.assert_array_equal(clipped, np.maximum(h, 0))
    np.testing.assert_array_equal(nx.active_hinges(clipped.copy()), np.sign(clipped))


def test_accurate_sum_keeps_a_cancelled_sum():
    x = np.array([[1e16, 1.0, -1e16, 3.0e-3]])
    assert nx.accurate_sum(x, -1)[0] == 1.003
    assert np.sum(x) != 1.003  # the plain sum loses it: the check can fail


def test_xlogy_zero_log_zero_is_zero_and_nan_propagates():
    out = nx.xlogy(np.array([0.0, 0.0, 2.0, np.nan, 0.0]), np.array([0.0, 5.0, 0.5, 1.0, np.nan]))
    assert out[0] == 0 and out[1] == 0 and out[2] == 2 * np.log(0.5)
    assert np.isnan(out[3]) and np.isnan(out[4])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_softplus_sigmoid_kernels_against_mpmath(dtype):
    x = np.array([-1e4, -700, -40, -5, -1e-8, 0, 1e-8, 3, 40, 700, 1e4], dtype=dtype)
    exact = exact_inputs(x)
    with mpmath.workdps(60):
        sp = [mpmath.log1p(mpmath.exp(v)) for v in exact]
        sg = [1 / (1 + mpmath.exp(-v)) for v in exact]
        sgn = [1 / (1 + mpmath.exp(v)) for v in exact]
    assert_close_to_exact(nx.softplus(x), sp, 2, "softplus")
    assert_close_to_exact(nx.log_sigmoid(-x), [-v for v in sp], 2, "log_sigmoid")
    assert_close_to_exact(nx.sigmoid(x), sg, 2, "sigmoid")
    (pos, neg), _ = nx.logistic_pairs(x, sigmoids=False)  # the softplus pair alone
    assert np.array_equal(pos, nx.softplus(x)) and np.array_equal(neg, nx.softplus(-x))
    pos, neg = nx.sigmoid_pair(x)
    assert np.array_equal(pos, nx.sigmoid(x))
    assert_close_to_exact(neg, sgn, 2, "sigmoid(-x)")


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_softplus_sigmoid_into_on_both_sides_of_its_plain_range(dtype):
    # plain range |z| <= 87 (float32) or 708 (float64): one exp(z); beyond it (exp(z) would
    # overflow, sigma(z) underflow) and at NaN the elements are redone by logistic_pairs
    limit = nx._PLAIN_LOGISTIC[np.dtype(dtype)]
    edges = [limit, np.nextafter(dtype(limit), dtype(np.inf)), 88.8, 103.5, 110.0, 709.9, 760.0]
    z = np.array([0.0, 1e-30, 0.5, 3.0, 30.0, *edges, 1e4, np.inf], dtype=dtype)
    z = np.concatenate([z, -z, np.array([np.nan], dtype)])
    softplus, sigma, spare = (np.empty_like(z) for _ in range(3))
    with np.errstate(all="ignore"):
        redone = nx.softplus_sigmoid_into(z, softplus, sigma, spare)
    assert set(redone) == set(np.flatnonzero(~(np.abs(z) <= limit)))
    finite = np.isfinite(z)
    exact = exact_inputs(z[finite])
    with mpmath.workdps(60):
        sp = [mpmath.log1p(mpmath.exp(v)) for v in exact]
        sg = [1 / (1 + mpmath.exp(-v)) for v in exact]
    assert_close_to_exact(softplus[finite], sp, 2, "softplus")
    assert_close_to_exact(sigma[finite], sg, 2, "sigmoid")
    assert np.all(sigma[finite] >= 0) and not np.signbit(sigma[finite]).any()
    (pairs_sp, _), (pairs_sg, _) = nx.logistic_pairs(z, (True, False), (True, False))
    plain = np.abs(z) <= limit
    # for z <= 0 the same operations as logistic_pairs; beyond the plain range its values
    np.testing.assert_array_equal(softplus[~plain | (z <= 0)], pairs_sp[~plain | (z <= 0)])
    np.testing.assert_array_equal(sigma[~plain | (z <= 0)], pairs_sg[~plain | (z <= 0)])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_blocked_logistic_kernels_are_elementwise(dtype):
    # the cache-sized blocks, a strided input and 0-d input change no element's value
    rng = np.random.default_rng(5)
    x = (10 * rng.standard_normal(2 * nx.CHUNK + 7)).astype(dtype)
    x[[0, nx.CHUNK - 1, nx.CHUNK, 2 * nx.CHUNK + 6]] = [np.inf, -np.inf, np.nan, 0.0]
    y = rng.uniform(0, 1, x.size).astype(dtype)
    y[:: nx.CHUNK // 3] = 0.0  # a zero coefficient next to an infinite softplus: absent
    y[1 :: nx.CHUNK // 3] = 1.0
    strided = np.repeat(x, 2)[::2]
    for kernel in (nx.softplus, nx.log_sigmoid, nx.sigmoid):
        whole = kernel(strided)
        one_by_one = np.array([kernel(v) for v in x])
        np.testing.assert_array_equal(whole, one_by_one, strict=True)
    loss, slope = nx.logistic_terms(x, y, y)
    pairs = [
        nx.logistic_terms(np.array([a]), np.array([b]), np.array([b]))
        for a, b in zip(x, y, strict=True)
    ]
    np.testing.assert_array_equal(loss, np.concatenate([p[0] for p in pairs]))
    np.testing.assert_array_equal(slope, np.concatenate([p[1] for p in pairs]))
    assert not np.isnan(loss[0]) or y[0] not in (0.0, 1.0)


def test_log_cosh_into_against_mpmath():
    for dtype in (np.float32, np.float64):
        r = np.concatenate(
            [np.linspace(-3, 3, 61), [1e-30, -1e-8, 20, -88, 89, 200, 709, 711, 1e4]]
        )
        r = r.astype(dtype)
        out = np.empty_like(r)
        with np.errstate(over="ignore"):
            nx.log_cosh_into(r, out)
        with mpmath.workdps(400):
            exact = [mpmath.log(mpmath.cosh(v)) for v in exact_inputs(r)]
        assert_close_to_exact(out, exact, 3.5, f"log_cosh {np.dtype(dtype).name}")


def test_logistic_slope_exact_at_the_optimum():
    # float64 y = sigma(x) rounded: (1 - y) sigma(x) - y sigma(-x) is about an ULP of y or less
    x = np.linspace(-35, 35, 141)
    with mpmath.workdps(60):
        y = np.array([float(1 / (1 + mpmath.exp(-mpmath.mpf(v)))) for v in x])
    got = nx.logistic_slope_exact(x, y, y)
    with mpmath.workdps(400):
        pairs = list(zip(*exact_inputs(x, y), strict=True))
        second = [b / (1 + mpmath.exp(a)) for a, b in pairs]  # y sigma(-x), the size of a term
        exact = [
            (1 - b) / (1 + mpmath.exp(-a)) - t for (a, b), t in zip(pairs, second, strict=True)
        ]
        apart = [abs(d) >= mpmath.ldexp(t, -55) for d, t in zip(exact, second, strict=True)]
    apart = np.array(apart)
    assert apart.mean() > 0.5  # y = fl(sigma(x)) is within 2^-55 of sigma(x) a quarter of the time
    assert_close_to_exact(got[apart], np.array(exact, dtype=object)[apart], 4, "slope")
    for g, d, t, a in zip(got, exact, second, apart, strict=True):
        assert a or abs(mpmath.mpf(float(g)) - d) <= mpmath.ldexp(t, -103)


def test_exp_minus_1_minus_against_mpmath():
    d = np.array([-800, -30, -1.5, -1, -0.3, -1e-9, 0, 1e-9, 0.3, 1, 1.5, 30, 700])
    out, em1 = nx.exp_minus_1_minus(d)
    with mpmath.workdps(60):
        exact = [mpmath.exp(v) - 1 - v for v in exact_inputs(d)]
    assert_close_to_exact(out, exact, 3, "e^d - 1 - d")
    assert np.array_equal(em1, np.expm1(d))
    assert nx.exp_minus_1_minus(np.array([np.inf]))[0][0] == np.inf


def test_log1p_of_the_rest_against_mpmath():
    # logsumexp(x) - m as the row functions form it: log1p of the plain sum over the rest
    # (exp_row_blocks without the top entry), and log1p_rest where that sum is below 1
    x = np.array([[0.1, 700.3, -3.0], [40.0, 0.0, -1e4], [-2.0, -2.0, -2.0], [1.0, 0.5, 0.7]])
    m, s, _ = nx.exp_row_blocks(x, keep=False, correct=False, drop_top=True)
    assert np.array_equal(m, np.max(x, axis=-1))
    with mpmath.workprec(4000):
        ex = exact_inputs(x)
        mx = [max(row) for row in ex]
        # log1p of the sum over every entry but one maximal one (log of 1 + 1e-305 needs it)
        rest = [mpmath.log1p(sum(mpmath.exp(v - mx[i]) for v in ex[i]) - 1) for i in range(4)]
    plain = s >= 1
    assert plain.tolist() == [False, False, True, True]
    assert_close_to_exact(np.log1p(s[plain]), np.array(rest, dtype=object)[plain], 2, "plain")
    assert_close_to_exact(nx.log1p_rest(x, m, np.arange(4)), rest, 2, "log1p_rest")


# Rows for each branch of shift_error: Fast2Sum (positive maximum, every |x| below its
# power of two), the mirrored Fast2Sum (negative maximum), TwoSum (an entry far below a
# positive maximum; an infinite entry), and a zero maximum.
SHIFT_ROWS = np.array(
    [
        [0.1, 700.3, -3.0, 512.7, -699.99],
        [9.5, 0.001, -15.9, 3.3, -7.77],
        [-0.3, -700.3, -1e-3, -45.1, -3.9e3],
        [0.75, -40.1, -1e4, 0.5, 0.1],
        [2.5, -np.inf, 0.3, -1.1, -40.7],
        [0.0, -1e-300, -3.3, -700.1, -1.5],
        [3e38, -3e38, 1.0, -2.0, 0.5],  # near the overflow threshold (of float32, too)
    ]
)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_shift_error_is_exact_in_every_branch(dtype):
    g = np.random.default_rng(5)
    scales = g.choice([1e-3, 1.0, 30.0, 1e3], (60, 1))
    random = g.normal(size=(60, 5)) * scales + g.choice([-50.0, 0.0, 3.0], (60, 1)) * scales
    x = np.concatenate([SHIFT_ROWS, random]).astype(dtype)
    m = np.max(x, axis=-1)
    with np.errstate(over="ignore"):
        d = x - m[:, None]
    w = nx.shift_error(x, m, d, np.empty_like(x))
    finite = np.isfinite(d)  # (an overflowing difference has no error to correct)
    for i, j in zip(*np.nonzero(finite), strict=True):
        exact = Fraction(float(x[i, j])) - Fraction(float(m[i]))
        assert Fraction(float(d[i, j])) + Fraction(float(w[i, j])) == exact, (i, j)
    assert np.all(w[~finite] == 0)
    # the rows really are not exact without the error (the check can fail)
    assert np.count_nonzero(w) > 5


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_corrected_exponentials_against_mpmath(dtype):
    x = SHIFT_ROWS.astype(dtype)
    e = np.empty_like(x)
    m, s = nx.exp_rows(x, e)
    plain = np.empty_like(x)
    nx.exp_rows(x, plain, correct=False)
    with mpmath.workprec(4000):
        ex = exact_inputs(x)
        exact = [[mpmath.exp(v - max(row)) for v in row] for row in ex]
        sums = [mpmath.fsum(row) for row in exact]
    assert_close_to_exact(e, exact, 2, "corrected exp(x - m)")
    assert_close_to_exact(s, sums, 3, "row sums")
    # uncorrected, the tail entries are far off: the check can fail
    if dtype == np.float64:
        assert ulp_error(plain[0, 0], exact[0][0], dtype) > 20


def test_row_blocks_cover_every_row_once_and_agree_with_one_block():
    from lossutils import _blocks

    rows = _blocks.row_blocks(1000, 8000)
    covered = np.concatenate([np.arange(1000)[b] for b in rows])
    assert covered.tolist() == list(range(1000))
    x = np.random.default_rng(3).normal(size=(3000, 700)) * 5  # several blocks, threads
    m, s, e = nx.exp_row_blocks(x, keep=True)
    e1 = np.empty_like(x)
    m1, s1 = nx.exp_rows(x, e1)
    np.testing.assert_array_equal(e, e1)
    np.testing.assert_array_equal(s, s1)
    np.testing.assert_array_equal(m, m1)


def test_row_argmax_of_strided_rows_is_numpys_argmax():
    # the first maximal entry of each row of a transposed (and of a sliced) view: ties,
    # a NaN (NumPy's argmax: the first NaN), a row of -inf, a row with +inf
    x = np.random.default_rng(5).normal(size=(64, 48))
    x[3, 5] = x[:, 5].max() + 1
    x[7, 5] = x[3, 5]
    x[9, 6] = np.nan
    x[20, 6] = np.nan
    x[:, 11] = -np.inf
    x[4, 12] = np.inf
    x[40, 13] = x[:, 13].max() + 1
    x[41, 13] = np.nextafter(x[40, 13], -np.inf)
    for view in (x.T, x[::2].T, x[:, ::3].T, x):
        assert np.array_equal(nx.row_argmax(view), np.argmax(view, axis=-1))


def test_scaled_norm_neither_overflows_nor_underflows():
    assert nx.scaled_norm(np.float16([[256.0, 0.0]]))[0] == 256
    assert nx.scaled_norm(np.array([[1e-170, 0.0]]))[0] == 1e-170
    assert nx.scaled_norm(np.array([[3e300, 4e300]]))[0] == pytest.approx(5e300, rel=1e-15)
    out = nx.scaled_norm(np.array([[0.0, 0.0], [np.inf, 1.0], [np.nan, 1.0]]))
    assert out[0] == 0 and out[1] == np.inf and np.isnan(out[2])
    assert nx.scaled_norm(np.zeros((2, 0))).tolist() == [0.0, 0.0]


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
@pytest.mark.parametrize("weighted", [False, True])
def test_scaled_dot_is_the_sum_of_products_without_overflow(dtype, weighted):
    # rows of small terms (no scaling, k = 0) and of huge ones (scaled where float64): the
    # exact sum is s * 2**k, within a few float64 ULP, in every row
    g = np.random.default_rng(11)
    big = np.finfo(dtype).max
    v = np.stack([g.uniform(-1, 1, 5), g.uniform(0.25, 1, 5) * big, -g.uniform(0, 1, 5) * big])
    v = v.astype(dtype)
    w = g.uniform(0, 4, v.shape).astype(dtype) if weighted else None
    vm = v.astype(np.float64)
    wm = np.ones(v.shape) if w is None else w.astype(np.float64)
    s, k = nx.scaled_dot(w, v, axis=-1)
    assert s.shape == k.shape == (3,) and s.dtype == np.float64 and np.all(np.isfinite(s))
    assert k[0] == 0 and (np.all(k == 0) if dtype != np.float64 else np.all(k[1:] > 0))
    total, kt = nx.scaled_dot(w, v)
    with mpmath.workprec(3000):
        rows = [
            mpmath.fsum(mpmath.mpf(a) * mpmath.mpf(b) for a, b in zip(wr, vr, strict=True))
            for wr, vr in zip(wm, vm, strict=True)
        ]
        for row, si, ki in zip(rows, s, k, strict=True):
            assert abs(mpmath.ldexp(mpmath.mpf(si), int(ki)) - row) <= abs(row) * 2.0**-50
        whole = mpmath.fsum(rows)
        assert (
            abs(mpmath.ldexp(mpmath.mpf(float(total)), int(kt)) - whole)
            <= sum(abs(r) for r in rows) * 2.0**-50
        )


def test_float16_mean_divides_by_a_count_that_is_not_cast_to_float16():
    # float16(65520) is inf: a mean computed in float16 returns 0
    loss = np.full(65520, 0.25, np.float16)
    assert red.reduce(loss, "mean") == np.float16(0.25)
    assert red.reduce(loss, "mean").dtype == np.float16
    assert red.reduce(loss, "sum") == 16380
    assert red.reduce(np.full(65520, 2.0, np.float16), "sum") == np.inf  # the true sum overflows
    n = np.full(1000, 100.0, np.float16)
    assert red.weighted_reduce(n, red.total(np.ones(1000, np.float16)), "mean", (1000,)) == 100


@pytest.mark.parametrize("dtype", DTYPES)
def test_reductions_of_empty_and_of_overflowing_sums(dtype):
    empty = np.zeros(0, dtype)
    assert np.isnan(red.reduce(empty, "mean")) and red.reduce(empty, "sum") == 0
    assert red.reduce(empty, "mean").dtype == dtype
    big = np.full(4, np.finfo(dtype).max / 2, dtype)
    assert red.reduce(big, "mean") == np.finfo(dtype).max / 2
    assert red.reduce(big, "sum") == np.inf


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_block_reduction_is_the_reduction_of_all_the_values(dtype):
    # blocks summed one at a time give reduce_to of the whole (up to summation order),
    # including the overflow rules: finite values whose sum overflows, inf, NaN, empty
    big = np.finfo(dtype).max / 2
    cases = [
        np.random.default_rng(2).uniform(0, 1, 3 * nx.CHUNK + 5).astype(dtype),
        np.full(3 * nx.CHUNK, big, dtype),  # a block total overflows, the mean does not
        np.array([1.0, np.inf, 2.0], dtype),
        np.array([1.0, np.nan], dtype),
        np.zeros(0, dtype),
    ]
    for values in cases:
        for reduction in ("mean", "sum"):
            blocks = red.BlockReduction(reduction, values.size, dtype)
            for block in nx.chunks(values.size):
                blocks.add(values[block])
            got, expected = blocks.result(), red.reduce_to(values, reduction, dtype)
            assert type(got) is type(expected)
            if np.isfinite(expected) and expected != 0:
                assert float(ulp_error(got, float(expected), dtype)) <= 1, (reduction, values[:3])
            else:
                np.testing.assert_array_equal(got, expected)


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
def test_block_reduction_keeps_the_values_for_none(dtype):
    # "none": float64 blocks of uneven sizes (one empty), kept in order, each value rounded
    # once to the result dtype (as a scalar conversion of that one value rounds it); the
    # reductions of the same blocks still agree with reduce_to of all the values
    wide = np.random.default_rng(5).uniform(-3, 3, 1000) * 2.0 ** np.arange(-500, 500)
    wide = wide if dtype == np.float64 else np.clip(wide, -60000, 60000)
    cuts = [0, 1, 1, 8, 300, 301, 777, 1000]  # an empty block too
    blocks = [slice(a, b) for a, b in zip(cuts[:-1], cuts[1:], strict=True)]
    kept = red.BlockReduction("none", wide.size, dtype)
    reduced = {r: red.BlockReduction(r, wide.size, dtype) for r in ("mean", "sum")}
    for block in blocks:
        kept.add(wide[block], block)
        for r in reduced.values():
            r.add(wide[block].astype(dtype), block)
    got = kept.result((10, 100))
    assert got.dtype == dtype and got.shape == (10, 100)
    expected = np.array([dtype(float(v)) for v in wide], dtype)
    np.testing.assert_array_equal(got.reshape(-1), expected)
    for r, blocks_reduced in reduced.items():
        got, exact = blocks_reduced.result(), red.reduce_to(expected, r, dtype)
        assert type(got) is type(exact)
        assert float(ulp_error(got, float(exact), dtype)) <= 1, r
    one = red.BlockReduction("none", 1, dtype)
    one.add(np.array([0.1]), slice(0, 1))
    assert type(one.result(())) is np.dtype(dtype).type and one.result(()) == dtype(0.1)
    # a block formed in place (buffer) is not copied; a scratch of another dtype is used
    scratch = np.empty(4)
    place = red.BlockReduction("none", 4, np.float64).buffer(slice(1, 3), scratch)
    assert place.base is not scratch and place.size == 2
    assert red.BlockReduction("none", 4, np.float32).buffer(slice(1, 3), scratch) is scratch
    assert red.BlockReduction("mean", 4, np.float64).buffer(slice(1, 3), scratch) is scratch


def test_gradient_scale_of_a_float16_mean_is_not_rounded_to_float16():
    local = np.full(65520, 2.0, np.float16)
    g = red.scale_grad(local, local.shape, "mean", np.float16)
    assert g.dtype == np.float16
    assert g[0] == np.float16(2.0 / 65520)  # one rounding of the exact product
    assert red.scale_grad(np.float16(1), (0,), "mean", np.float16).shape == (0,)
    assert np.isnan(red.reduction_scale(0, "mean", np.float32))
    assert red.batchmean_scale((4, 3), np.float64) == 0.25


def test_to_dtype_overflow_is_silent():
    assert nx.to_dtype(np.float32([1e5]), np.float16)[0] == np.inf
    assert nx.working_dtype(np.float16) == np.float32
    assert nx.working_dtype(np.float64) == np.float64


def test_blocks_on_threads_agree_with_one_thread_also_from_concurrent_callers(monkeypatch):
    from concurrent.futures import ThreadPoolExecutor

    from lossutils import _blocks

    x = np.random.default_rng(6).normal(size=(1200, 1000)) * 4  # 9.6 MB: threads are used
    monkeypatch.setattr(_blocks, "WORKERS", 1)
    single = nx.exp_row_blocks(x, keep=True)
    monkeypatch.undo()
    assert _blocks.WORKERS == 2 or _blocks.WORKERS == 1
    with ThreadPoolExecutor(3) as callers:
        results = list(callers.map(lambda _: nx.exp_row_blocks(x, keep=True), range(3)))
    for result in results:
        for a, b in zip(result, single, strict=True):
            np.testing.assert_array_equal(a, b)

    def nested(rows):  # a block function that itself runs blocks: inline, no deadlock
        nx.exp_row_blocks(x[rows], keep=False)

    _blocks.for_each_block(nested, len(x), x.shape[-1] * x.itemsize)


def test_abs_gap_of_difference_is_accurate_for_every_ratio():
    # the Laplace scale gradient takes it on every element, not only where |x - y| / b is in
    # [1/2, 2] (where b - |x - y| cancels): also far outside, and just at the edges of that band
    rng = np.random.default_rng(5)
    b = 10.0 ** rng.uniform(-3, 3, 400)
    ratio = np.concatenate(
        [10.0 ** rng.uniform(-6, 6, 200), np.nextafter(0.5, [0, 1] * 50), [2.0, 1.0] * 50]
    )
    ratio *= np.where(rng.random(400) < 0.5, -1.0, 1.0)
    y = rng.standard_normal(400) * b
    x = y + ratio * b
    got = nx.abs_gap_of_difference(b, x, y)
    with mpmath.workdps(400):
        exact = [
            (bb - abs(xx - yy)) / bb**2 for bb, xx, yy in zip(*exact_inputs(b, x, y), strict=True)
        ]
    assert_close_to_exact(got, exact, 2.5, "(b - |x - y|) / b^2")


def test_double_double_exponential_against_mpmath():
    # e^z = 2^k (1 + m) from a table of 2^(j/256) and a short series: callers need about
    # 2^-104 of e^z (e^x - y may cancel to 2^-59 of e^x and must keep its 53 bits); z at the
    # switches between table entries (n + 1/2) ln 2 / 256 and just inside them, too
    rng = np.random.default_rng(8)
    step = math.log(2) / 256
    edges = (np.arange(-400, 400) + 0.5) * step
    z = np.concatenate(
        [
            rng.uniform(-745, 709, 400),
            rng.uniform(-1, 1, 400),
            10.0 ** rng.uniform(-300, 0, 100),
            edges,
            np.nextafter(edges, 0),
            [0.0, 5e-324, -5e-324, step / 2],
        ]
    )
    k, m_hi, m_lo = nx.dd_exp_parts(z)
    assert (1 + m_hi <= 1.42).all() and (1 + m_hi >= 0.7).all()
    with mpmath.workprec(300):
        worst = max(
            abs(mpmath.ldexp(1 + mpmath.mpf(h) + mpmath.mpf(lo), int(kk)) / mpmath.exp(v) - 1)
            for v, kk, h, lo in zip(exact_inputs(z), k, m_hi, m_lo, strict=True)
        )
    assert worst < 2.0**-104, float(mpmath.log(worst, 2))


def test_scaled_exp_minus_near_against_mpmath():
    # a e^z - b where a e^z rounds to b (the optimum of an exponential mean, a difference of
    # 2^-53 of b or less): within 2^-114 of b (the double-double exponential's 2^-105 is not),
    # z over the whole domain, at the switches between the table entries and near 0
    rng = np.random.default_rng(10)
    step = math.log(2) / 4096
    edges = (rng.integers(-8000, 8000, 60) + 0.5) * step
    z = np.concatenate(
        [
            rng.uniform(-700, 700, 200),
            rng.uniform(-30, 30, 200),
            edges,
            np.nextafter(edges, 0),
            [0.0, 1e-300, -1e-17, step / 2, -step / 2],
        ]
    )
    b = np.floor(10.0 ** rng.uniform(0, 15, z.size)) + 1
    with mpmath.workprec(300):
        a = np.array([float(mpmath.mpf(v) / mpmath.exp(t)) for v, t in zip(b, z, strict=True)])
        keep = (a > 1e-290) & (a < 1e290)
        a, z, b = a[keep], z[keep], b[keep]
        hi, lo = nx.scaled_exp_minus_near(a, z, b)
        dd_hi, dd_lo = nx.scaled_exp_minus_dd(a, z, b)
        exact = [
            mpmath.mpf(u) * mpmath.exp(t) - v
            for u, t, v in zip(*exact_inputs(a, z, b), strict=True)
        ]

        def worst(h, l_):
            return max(
                abs(mpmath.mpf(p) + mpmath.mpf(q) - e) / v
                for p, q, e, v in zip(h, l_, exact, b, strict=True)
            )

        assert worst(hi, lo) < 2.0**-114, float(mpmath.log(worst(hi, lo), 2))
        assert worst(dd_hi, dd_lo) > 2.0**-110  # the case for the finer kernel
    assert keep.sum() > 400


def test_log_minus_table_within_2_to_the_minus_90():
    # log t - x from the 4096-entry table of reciprocals: within 2^-90 of the exact value plus
    # half an ULP of the result, for t from subnormal to huge and x near log t (kl_div takes
    # it for |log t - x| from 2^-36 to 2^-7, the Poisson gradient through exp_minus_near)
    rng = np.random.default_rng(17)
    t = np.concatenate(
        [
            [5e-324, 2.0**-1022, 0.5, 1.0, 2.0, 1 - 2.0**-53, 1e300],
            10.0 ** rng.uniform(-320, 300, 400),
        ]
    )
    gaps = rng.choice([-1.0, 1.0], t.size) * 2.0 ** rng.uniform(-40, -1, t.size)
    with mpmath.workprec(400):
        x = np.array([float(mpmath.log(a) - g) for a, g in zip(exact_inputs(t), gaps, strict=True)])
        got = nx._log_minus_table(t, x)
        worst = max(
            (abs(mpmath.mpf(g) - (mpmath.log(a) - b)) - abs(mpmath.mpf(g)) * 2.0**-53)
            for g, a, b in zip(got, *exact_inputs(t, x), strict=True)
        )
    assert worst < 2.0**-90, float(mpmath.log(worst, 2))


def test_count_log_table_is_exact_and_far_from_every_double():
    # log k in double-double to 2^-106, and no double within 2^-14 ULP of log k (k > 1): the
    # error bound of exp_minus_count relies on both
    hi, lo = nx._count_log_table()
    assert hi.size == nx.COUNT_LOGS and hi[1] == 0 and lo[1] == 0
    with mpmath.workprec(300):
        for k in [2, 3, 7, 1000, nx.COUNT_LOGS - 1, *range(2, nx.COUNT_LOGS, 97)]:
            exact = mpmath.log(k)
            assert abs(mpmath.mpf(hi[k]) + mpmath.mpf(lo[k]) - exact) <= 2.0**-106 * exact
    spacing = np.spacing(hi[2:])
    gap = np.minimum(np.abs(lo[2:]), spacing / 2 - np.abs(lo[2:]))
    assert (gap >= 2.0**-14 * spacing).all()


def test_count_indices_keep_integer_counts_of_the_table_only():
    y = np.array(
        [0.0, 1.0, 2.0, 2.5, nx.COUNT_LOGS - 1, nx.COUNT_LOGS, -1.0, np.nan, np.inf, 1e300]
    )
    k, ok = nx.count_indices(y)
    assert ok.tolist() == [False, True, True, False, True] + [False] * 5
    assert k[ok].tolist() == [1, 2, nx.COUNT_LOGS - 1]


def test_exp_minus_count_against_mpmath():
    # y expm1(x - log y) for integer counts y: within 4 ULP from |x - log y| = 0.3 (the widest
    # the Poisson gradient gives it) down to x the double nearest log y (and its neighbours)
    rng = np.random.default_rng(21)
    y = np.concatenate(
        [[1.0, 1.0, 2.0, 3.0, nx.COUNT_LOGS - 1], rng.integers(1, nx.COUNT_LOGS, 400)]
    )
    log_y = np.log(y)
    d = np.concatenate(
        [
            [0.0, 0.3, -0.29, 1e-300, -0.3],
            rng.choice([-1.0, 1.0], 200) * 10.0 ** rng.uniform(-17, np.log10(0.3), 200),
            np.zeros(200),
        ]
    )
    x = log_y + d
    x[-200:] += np.spacing(log_y[-200:]) * rng.integers(-2, 3, 200)  # at the optimum
    k, ok = nx.count_indices(y)
    assert ok.all()
    got = nx.exp_minus_count(x, y, k)
    with mpmath.workprec(1200):
        exact = [mpmath.exp(a) - b for a, b in zip(*exact_inputs(x, y), strict=True)]
    assert_close_to_exact(got, np.array(exact, dtype=object), 4, "e^x - y for counts")


def test_exp_minus_near_against_mpmath():
    # e^x - y from fl(e^x) and the logarithm (within 2^-71 of e^x): the Poisson gradient takes
    # it where 2^-20 e^x <= |e^x - y| < e^x / 4 (4 ULP), and for float32 output down to 2^-42
    rng = np.random.default_rng(9)
    x = np.concatenate([[2.0**-20, -(2.0**-20), 600.0, -600.0], rng.uniform(-600, 600, 300)])
    x = np.concatenate([x, x])
    rel = np.concatenate(
        [
            np.repeat([2.0**-20, -(2.0**-20), 0.25, -0.25, 2.0**-42], 121)[: x.size // 2],
            np.where(rng.random(x.size // 2) < 0.5, -1, 1)
            * 2.0 ** rng.uniform(-42, -2, x.size // 2),
        ]
    )
    y = np.exp(x) * (1 - rel)  # e^x - y is about rel e^x
    got = nx.exp_minus_near(x, y)
    with mpmath.workprec(300):
        exact = [mpmath.exp(a) - b for a, b in zip(*exact_inputs(x, y), strict=True)]
        scale = [mpmath.exp(a) for a in exact_inputs(x)]
        # within 2^-70 of e^x beyond the result's own rounding (half an ULP)
        worst = max(
            (abs(mpmath.mpf(g) - e) - abs(e) * 2.0**-53) / s
            for g, e, s in zip(got, exact, scale, strict=True)
        )
    assert worst < 2.0**-70, float(mpmath.log(worst, 2))
    wide = np.abs(rel) >= 2.0**-20
    assert wide.sum() > 200
    assert_close_to_exact(got[wide], np.array(exact, dtype=object)[wide], 4, "e^x - y")


def test_double_double_quotient_logarithm_and_polynomial_against_mpmath():
    # the double-double kernels of the Student-t df gradient: a / b to about 2^-104 of it,
    # log w to about 2^-72 absolute, Horner's rule to about 2^-100 of the terms
    rng = np.random.default_rng(12)
    n = 200
    a_hi = rng.uniform(-1, 1, n) * 10.0 ** rng.uniform(-100, 100, n)
    b_hi = rng.uniform(0.5, 1, n) * 10.0 ** rng.uniform(-100, 100, n)
    a_lo, b_lo = a_hi * 2.0**-60 * rng.uniform(-1, 1, n), b_hi * 2.0**-60 * rng.uniform(-1, 1, n)
    q_hi, q_lo = nx.dd_div(a_hi, a_lo, b_hi, b_lo)
    w_hi = 10.0 ** rng.uniform(-30, 30, n)
    w_lo = w_hi * 2.0**-60 * rng.uniform(-1, 1, n)
    l_hi, l_lo = nx.dd_log(w_hi, w_lo)
    z_hi = rng.uniform(-0.5, 0.5, n)
    z_lo = z_hi * 2.0**-60 * rng.uniform(-1, 1, n)
    coefficients = [nx.dd_constant(Fraction(1, 2 * k + 1)) for k in range(12)]
    p_hi, p_lo = nx.dd_horner(coefficients, z_hi, z_lo)
    with mpmath.workprec(300):
        for i in range(n):
            a, b = mpmath.mpf(a_hi[i]) + a_lo[i], mpmath.mpf(b_hi[i]) + b_lo[i]
            q = mpmath.mpf(q_hi[i]) + q_lo[i]
            assert abs(q - a / b) <= 2.0**-100 * abs(a / b)
            w = mpmath.mpf(w_hi[i]) + w_lo[i]
            assert abs(mpmath.mpf(l_hi[i]) + l_lo[i] - mpmath.log(w)) <= 2.0**-70
            z = mpmath.mpf(z_hi[i]) + z_lo[i]
            exact = mpmath.fsum(mpmath.mpf(1) / (2 * k + 1) * z**k for k in range(12))
            assert abs(mpmath.mpf(p_hi[i]) + p_lo[i] - exact) <= 2.0**-100 * 2


@pytest.mark.parametrize("width", [1, 3, 128, 300])
def test_dd_distance_squared_against_mpmath(width):
    # rows from 2**-390 to 2**390 apart, some nearly equal entries, with and without a
    # shift at its limit 2**(e - 20), within 2**-64 of 4**e (the kernel's error is ~2**-67)
    g = np.random.default_rng(40)
    x = g.normal(size=(12, width)) * 2.0 ** g.uniform(-390, 390, size=(12, 1))
    y = g.normal(size=(12, width)) * np.abs(x).max(axis=1, keepdims=True)
    y[::3] = x[::3] * (1 + g.normal(size=(4, width)) * 1e-9)
    plain = np.sqrt(np.sum((x - y) ** 2, axis=-1))
    e = np.frexp(plain * (1 + 2.0**-20))[1]
    for shift in (0.0, float(np.ldexp(1.0, int(e.min()) - 20))):
        s, s_err = nx.dd_distance_squared(x, y, shift, e)
        with mpmath.workprec(3000):
            for i in range(len(x)):
                exact = mpmath.fsum(
                    (mpmath.mpf(u) - mpmath.mpf(v) + mpmath.mpf(shift)) ** 2
                    for u, v in zip(x[i], y[i], strict=True)
                )
                error = abs(mpmath.mpf(s[i]) + mpmath.mpf(s_err[i]) - exact)
                assert error <= mpmath.ldexp(1, 2 * int(e[i]) - 64), (width, shift, i)


@pytest.mark.parametrize("width", [1, 3, 128, 300])
def test_dd_distances_squared_against_mpmath(width):
    # triplets' distances (each array split once) from 2**-390 to 2**390, blocks whose
    # exponents differ by more than 1, embeddings far from the origin (entries beyond
    # 2**(e + 28): taken again by dd_distance_squared), rows gathered by index, with and
    # without a shift: within 2**-64 of 4**e, as dd_distance_squared
    g = np.random.default_rng(43)
    n = 300
    scales = 2.0 ** g.uniform(-390, 390, size=(n, 1))
    scales[: n // 2] = 2.0 ** g.integers(-3, 4, size=(n // 2, 1))  # blocks of close exponents
    a, p, q = (g.normal(size=(n, width)) * scales for _ in range(3))
    off = g.normal(size=(n, 1)) * scales * 2.0 ** g.uniform(0, 40, size=(n, 1))
    far = g.random(n) < 0.2
    for x in (a, p, q):
        x[far] += off[far]
    pairs = [(0, 1), (0, 2), (1, 2)]
    rows = [a, p, q]

    def bound(shift):
        plain = [np.sum((rows[i] - rows[j] + shift) ** 2, axis=-1) for i, j in pairs]
        return np.frexp(np.sqrt(np.maximum.reduce(plain)) * (1 + 2.0**-20))[1]

    for shift, index in ((False, None), (True, g.permutation(n))):
        e = bound(0.0)
        shift = float(np.ldexp(1.0, int(e.min()) - 20)) if shift else 0.0
        e = bound(shift)
        picked = np.arange(n) if index is None else index
        out = nx.dd_distances_squared(rows, pairs, shift, e[picked], index)
        with mpmath.workprec(3000):
            for (i, j), (s, s_err) in zip(pairs, out, strict=True):
                for r in range(0, n, 7):
                    row = picked[r]
                    exact = mpmath.fsum(
                        (mpmath.mpf(u) - mpmath.mpf(v) + mpmath.mpf(shift)) ** 2
                        for u, v in zip(rows[i][row], rows[j][row], strict=True)
                    )
                    error = abs(mpmath.mpf(s[r]) + mpmath.mpf(s_err[r]) - exact)
                    assert error <= mpmath.ldexp(1, 2 * int(e[row]) - 64), (width, i, j, r)


@pytest.mark.parametrize("dtype", [np.float16, np.float32])
def test_dd_distances_squared_of_narrow_rows_is_that_of_their_float64(dtype):
    # float16 / float32 rows are widened exactly: the same bits as their float64 values
    g = np.random.default_rng(44)
    rows = [g.normal(size=(200, 64)).astype(dtype) for _ in range(2)]
    e = np.frexp(np.sqrt(np.sum((rows[0] - rows[1]).astype(np.float64) ** 2, -1)) * 1.01)[1]
    wide = [x.astype(np.float64) for x in rows]
    index = g.permutation(200)[:90]
    for got, want in (
        (
            nx.dd_distances_squared(rows, [(0, 1)], 0.0, e),
            nx.dd_distances_squared(wide, [(0, 1)], 0.0, e),
        ),
        (
            nx.dd_distances_squared(rows, [(0, 1)], 0.0, e[index], index),
            nx.dd_distances_squared(wide, [(0, 1)], 0.0, e[index], index),
        ),
    ):
        np.testing.assert_array_equal(np.array(got), np.array(want))


@pytest.mark.parametrize("width", [1, 3, 128, 300])
def test_dd_abs_sum_distance_against_mpmath(width):
    # L1 distances of rows from 2**-390 to 2**390 apart, some nearly equal entries and
    # some entries where x - y + shift is 0 or changes sign, with and without a shift at
    # its limit 2**(e - 20): within 2**-64 of 2**e (the kernel's error is about
    # D 2**-53 shift + D**2 2**-104)
    g = np.random.default_rng(42)
    scales = 2.0 ** g.uniform(-390, 390, size=(12, 1))
    scales[1:3] = scales.min() / 4  # rows where the shift below is about their entries
    x = g.normal(size=(12, width)) * scales
    y = g.normal(size=(12, width)) * np.abs(x).max(axis=1, keepdims=True)
    y[::3] = x[::3] * (1 + g.normal(size=(4, width)) * 1e-9)
    plain = np.sum(np.abs(x - y), axis=-1)
    e = np.frexp(plain * (1 + 2.0**-20))[1]
    for shift in (0.0, float(np.ldexp(1.0, int(e.min()) - 20))):
        half = (width + 1) // 2
        y[1, :half] = x[1, :half] + shift  # entries about 0 with the shift
        y[2, :half] = x[2, :half] + shift / 2  # x - y < 0 < x - y + shift
        e[1:3] = np.frexp(np.sum(np.abs(x[1:3] - y[1:3] + shift), axis=-1) * (1 + 2.0**-20))[1]
        s, s_err = nx.dd_abs_sum_distance(x, y, shift, e)
        with mpmath.workprec(3000):
            for i in range(len(x)):
                exact = mpmath.fsum(
                    abs(mpmath.mpf(u) - mpmath.mpf(v) + mpmath.mpf(shift))
                    for u, v in zip(x[i], y[i], strict=True)
                )
                error = abs(mpmath.mpf(s[i]) + mpmath.mpf(s_err[i]) - exact)
                assert error <= mpmath.ldexp(1, int(e[i]) - 64), (width, shift, i)


@pytest.mark.parametrize("n", [0, 1, 63, 64, 65, 200])
def test_symmetric_sum_is_g_plus_its_transpose_bit_for_bit(n):
    g = np.random.default_rng(41).normal(size=(n, n))
    np.testing.assert_array_equal(nx.symmetric_sum(g.copy()), g + g.T)


@pytest.mark.parametrize("w_max", [1e-6, 1 / 64, 1 / 13, 1 / 4, 0.64])
def test_atanh_series_against_mpmath(w_max):
    """sum_j w^j / (2j + 3) = (atanh(u)/u - 1) / w for w = u^2, within 2 ULP, with as many
    terms as the largest w of the call needs (the smaller ones get the same terms)."""
    w = np.concatenate([[w_max], np.random.default_rng(9).uniform(0, w_max, 200), [0.0]])
    with mpmath.workdps(50):
        exact = [
            mpmath.mpf(1) / 3 if v == 0 else (mpmath.atanh(mpmath.sqrt(v)) / mpmath.sqrt(v) - 1) / v
            for v in (mpmath.mpf(float(x)) for x in w)
        ]
    assert_close_to_exact(nx.atanh_series(w), exact, max_ulp=2)


def test_exp_times_difference_where_the_exponential_is_subnormal():
    # e^t (t - x) for t below the normal range of e^t (and above, for the shared path),
    # differences from 1e-15 to beyond float64's range: within 2 ULP of mpmath
    rng = np.random.default_rng(41)
    n = 400
    t = rng.uniform(-1460, -600, n)
    sign = np.where(rng.random(n) < 0.5, 1.0, -1.0)
    x = t - sign * 10.0 ** rng.uniform(-15, 308, n)
    t = np.append(t, [-720.0, -745.0, -1e308, -2000.0])
    x = np.append(x, [-1e300, -1e305, 1e308, -1e308])
    got = nx.exp_times_difference(t, x)
    with mpmath.workdps(60):
        expected = [
            mpmath.exp(mpmath.mpf(a)) * (mpmath.mpf(a) - mpmath.mpf(b))
            for a, b in zip(t, x, strict=True)
        ]
    assert float(np.max(ulp_error(got, expected))) <= 2


def test_scaled_exp_minus_exact_where_the_difference_cancels_deeply():
    # a e^z - b with b the float64 nearest a e^z (and its neighbours): against mpmath
    rng = np.random.default_rng(43)
    z = rng.uniform(-30, 30, 60)
    a = rng.uniform(0.5, 2, 60)
    b = a * np.exp(z)
    b = np.concatenate([b, np.nextafter(b, np.inf)])
    a, z = np.tile(a, 2), np.tile(z, 2)
    with mpmath.workdps(80):
        expected = [
            mpmath.mpf(u) * mpmath.exp(mpmath.mpf(v)) - mpmath.mpf(w)
            for u, v, w in zip(a, z, b, strict=True)
        ]
    assert float(np.max(ulp_error(nx.scaled_exp_minus_exact(a, z, b), expected))) <= 0.5
