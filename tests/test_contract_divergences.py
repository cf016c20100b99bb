"""The accuracy contract of the divergences and the VAE loss, in every dtype.

Values and gradients against mpmath evaluated exactly at the same rounded inputs
(``mp_reference``), errors in ULP of the output dtype: distributions with tiny and
zero probabilities, q close to p, posteriors close to the prior and far from it,
large logits, empty batches, and no RuntimeWarning for any of them.
"""

from __future__ import annotations

import mp_reference as ref
import mpmath
import numpy as np
import pytest

import lossutils as L
from lossutils import divergences as V

DTYPES = [np.float16, np.float32, np.float64]


def _distributions(dtype, seed, rel=None):
    """Rows of probabilities in ``dtype``: Dirichlet draws, sparse ones, and q near p."""
    rng = np.random.default_rng(seed)
    p = np.concatenate([rng.dirichlet(np.ones(5), 8), rng.dirichlet(0.05 * np.ones(5), 8)])
    if rel is None:
        q = np.concatenate([rng.dirichlet(np.ones(5), 8), rng.dirichlet(0.3 * np.ones(5), 8)])
    else:
        q = p * np.exp(rel * rng.normal(size=p.shape))
        q /= q.sum(axis=-1, keepdims=True)
    with np.errstate(under="ignore"):
        p, q = p.astype(dtype), q.astype(dtype)
    p[0, 0], q[1, 1] = 0, 0  # 0 log 0 = 0 and an infinite divergence
    return p, q


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("rel", [None, 1e-3, 0.3])
def test_entropy_cross_entropy_kl_within_4_ulp(dtype, rel):
    p, q = _distributions(dtype, 21, rel)
    for name, f, mp_f in [
        ("entropy", lambda p, q: V.entropy(p), lambda p, q: ref.entropy(p)),
        ("cross-entropy", V.categorical_cross_entropy, ref.categorical_cross_entropy),
        ("kl", V.kl_divergence, ref.kl_divergence),
    ]:
        got = f(p, q)
        assert got.dtype == dtype
        ref.assert_ulp_in(got, mp_f(p, q), dtype, label=name)
    for grad in (V.kl_divergence_grad, V.categorical_cross_entropy_grad):
        g = grad(p, q)
        assert g.dtype == dtype
        ref.assert_ulp_in(g, ref.neg_ratio(p, q), dtype, label=grad.__name__)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_entropy_cross_entropy_kl_of_subnormal_probabilities_within_4_ulp(dtype):
    # every term p log p (p log q, q near 1; the pieces of KL) below the normal range was
    # rounded to the subnormal grid, and a row of 1000 of them summed those errors into a sum as small:
    # 117 ULP (float32) and 159 ULP (float64) for the entropy, 3.6 and growing for the
    # cross-entropy
    rng = np.random.default_rng(33)
    info = np.finfo(dtype)
    tiny = float(info.smallest_subnormal)
    p = np.concatenate(
        [rng.random((2, 1000)) * 16 * tiny, rng.random((2, 1000)) * float(info.tiny)]
    ).astype(dtype)
    p[:, :3] = [0, tiny, 2 * tiny]
    q = (1 - rng.random((4, 1000)) * 1e-3).astype(dtype)
    q[0, :2] = [1, 0]  # a zero p with q = 0 or 1
    for got, expected in [
        (V.entropy(p), ref.entropy(p)),
        (V.entropy(p.T, axis=0), ref.entropy(p)),  # the strided path
        # the distributions down the columns of a C-order array (the transposed rows of
        # terms were not C-contiguous: their 0 log 0 was left NaN)
        (V.entropy(np.ascontiguousarray(p.T), axis=0), ref.entropy(p)),
        (
            V.categorical_cross_entropy(np.ascontiguousarray(p.T), np.ascontiguousarray(q.T), 0),
            ref.categorical_cross_entropy(p, q),
        ),
        (V.entropy(p[1]), ref.entropy(p[1:2])[0]),  # one distribution
        (V.categorical_cross_entropy(p, q), ref.categorical_cross_entropy(p, q)),
        (V.categorical_cross_entropy(p.T, q.T, axis=0), ref.categorical_cross_entropy(p, q)),
        (V.categorical_cross_entropy_value_and_grad(p, q)[0], ref.categorical_cross_entropy(p, q)),
        # float64 KL: its pieces too (95 ULP at 1000 subnormal probabilities on both sides)
        (V.kl_divergence(p, p[::-1]), ref.kl_divergence(p, p[::-1])),
        (V.kl_divergence(p, q), ref.kl_divergence(p, q)),
    ]:
        assert got.dtype == dtype
        ref.assert_ulp_in(got, expected, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("reduction", ["none", "sum", "mean", "batchmean"])
@pytest.mark.parametrize("log_target", [False, True])
def test_kl_div_within_4_ulp(dtype, reduction, log_target):
    rng = np.random.default_rng(22)
    t = rng.dirichlet(np.ones(4), 6).astype(dtype)
    t[0, 0] = 0
    x = np.log(rng.dirichlet(np.ones(4), 6)).astype(dtype)
    with np.errstate(divide="ignore"):
        target = np.log(t.astype(np.float64)).astype(dtype) if log_target else t
        t_exact = np.exp(target.astype(np.float64)) if log_target else t
    if log_target:
        # exp of a rounded log-probability: the reference takes the same exp, exactly
        with mpmath.workdps(ref.DIGITS):
            per = np.empty(x.shape, dtype=object)
            for i in np.ndindex(x.shape):
                lt = ref.mp(target[i])
                per[i] = 0 if target[i] == -np.inf else mpmath.exp(lt) * (lt - ref.mp(x[i]))
            d_input = np.array(
                [[-mpmath.exp(ref.mp(v)) if v > -np.inf else 0 for v in row] for row in target],
                dtype=object,
            )
    else:
        per = ref.kl_div_pointwise(x, t_exact)
        with mpmath.workdps(ref.DIGITS):
            d_input = np.array([[-ref.mp(v) for v in row] for row in t], dtype=object)
    got = V.kl_div(x, target, reduction=reduction, log_target=log_target)
    assert np.asarray(got).dtype == dtype
    count = {"mean": x.size, "batchmean": x.shape[0]}.get(reduction)
    expected = ref.reduced(per, "mean" if reduction == "batchmean" else reduction, count)
    if dtype == np.float64 and reduction == "none" and not log_target:
        _assert_kl_div_pointwise_bound(got, expected, t)
    else:
        ref.assert_ulp_in(got, expected, dtype)
    g = V.kl_div_grad(x, target, reduction=reduction, log_target=log_target)
    assert g.dtype == dtype
    with mpmath.workdps(ref.DIGITS):
        scale = 1 if reduction in ("none", "sum") else mpmath.mpf(1) / count
        ref.assert_ulp_in(g, d_input * scale, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(2, 1), (3, 2), (9, 1), (4, 0)])
def test_kl_div_batchmean_overflows_only_if_the_exact_value_does(dtype, shape):
    # kl_div at target 1 is -input: rows of -0.75 * the largest float sum beyond the range;
    # their mean over the batch is finite where each row is one element (it was inf: the
    # sum rounded to the dtype first, then divided), inf where a row's sum overflows
    big = dtype(0.75) * np.finfo(dtype).max
    x, t = np.full(shape, -big, dtype), np.ones(shape, dtype)
    x.reshape(-1)[1::4] = big  # a term of the other sign every 4 (NaN-prone partial sums)
    with mpmath.workdps(ref.DIGITS):
        exact = -mpmath.fsum(ref.mp(v) for v in x.reshape(-1)) / shape[0]
    got, g = V.kl_div_value_and_grad(x, t, reduction="batchmean")
    assert got.dtype == dtype and np.array_equal(got, V.kl_div(x, t, reduction="batchmean"))
    ref.assert_ulp_in(got, np.array(exact, dtype=object), dtype)


# log-targets whose e^t is subnormal in the working dtype (float16 is computed in float32),
# with inputs far below (t - x large, or overflowing in the dtype) and close to them
_LOW_LOG_TARGETS = {
    np.float32: (
        [-90.0, -100.0, -103.0, -87.5, -95.0, -3e38],
        [-3e38, -3e38, -3e38, -88.0, 3e38, 3e38],
    ),
    np.float64: (
        [-720.0, -713.6255348447286, -745.0, -709.0, -1000.0, -1e308],
        [-1e300, -1062.7984757440845, -1e305, -709.5, 1.7e308, 1e308],
    ),
}


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("reduction", ["none", "sum", "mean", "batchmean"])
def test_kl_div_log_target_with_a_subnormal_target_within_4_ulp(dtype, reduction):
    t, x = (np.array(v, dtype) for v in _LOW_LOG_TARGETS[dtype])
    with mpmath.workdps(ref.DIGITS):
        per = np.array(
            [mpmath.exp(ref.mp(a)) * (ref.mp(a) - ref.mp(b)) for a, b in zip(t, x, strict=True)],
            dtype=object,
        )
    expected = ref.reduced(per, "mean" if reduction == "batchmean" else reduction, t.size)
    got, g = V.kl_div_value_and_grad(x, t, reduction=reduction, log_target=True)
    assert np.array_equal(got, V.kl_div(x, t, reduction=reduction, log_target=True))
    ref.assert_ulp_in(got, expected, dtype)
    with mpmath.workdps(ref.DIGITS):
        scale = 1 if reduction in ("none", "sum") else mpmath.mpf(1) / t.size
        d_input = np.array([-mpmath.exp(ref.mp(a)) * scale for a in t], dtype=object)
    ref.assert_ulp_in(g, d_input, dtype)


def _assert_kl_div_pointwise_bound(got, expected, t):
    """float64 kl_div terms: 4 ULP, plus 2^-104 t where x is within 2^-50 of log t.

    There t e^{-x} - 1, formed in double-double, is below 2^-50 and its last bits are
    those of the double-double (about 2^-106): a few ULP of the term t (log t - x)
    unless that is below about 2^-100 t.
    """
    errors = ref.ulp_in(got, expected, np.float64)
    unit = np.spacing(np.abs(np.asarray(got, dtype=np.float64)))
    allowed = 4 + 2.0**-104 * np.asarray(t, dtype=np.float64) / np.maximum(unit, 5e-324)
    assert np.all(errors <= allowed), float(np.max(errors - allowed))


def _near_log_targets(dtype, rng, n=200):
    """(x, t) with t = exp(x) rounded to ``dtype`` and its neighbours: x ~ log t.

    Log-probabilities from -1e-30 down to the log of the smallest normal number, and
    the targets' neighbours one ULP up and down, so that log t - x takes every size
    from about an ULP of x down to 2^-20 of it.
    """
    low = np.log(float(np.finfo(dtype).tiny))
    x = np.concatenate(
        [-np.logspace(-30, 0, n), -rng.uniform(0, 1, n), low * rng.uniform(0, 1, n) ** 2]
    ).astype(dtype)
    with np.errstate(under="ignore"):
        t = np.exp(x.astype(np.float64)).astype(dtype)
    x = np.concatenate([x, x, x])
    t = np.concatenate([t, np.nextafter(t, dtype(0)), np.nextafter(t, dtype(1))])
    keep = (t > 0) & (t <= 1) & (x < 0)
    return x[keep], t[keep]


@pytest.mark.parametrize("dtype", DTYPES)
def test_kl_div_near_its_optimum(dtype):
    # x ~ log t: the pointwise t (log t - x) cancels (found 8.6e8 ULP off in float32)
    x, t = _near_log_targets(dtype, np.random.default_rng(25))
    # the hard regimes: t = 1, x = 0, subnormal and tiny targets, x far above and below log t
    tiny = np.finfo(dtype).smallest_subnormal
    hard_x = np.array([0.0, -1e-7, 0.0, -5.0, -30.0, 3.0, -1.0, -2.0], dtype=dtype)
    hard_t = np.array([1.0, 1.0, 0.5, tiny, 1e-30, 0.25, 1.0, 0.75], dtype=dtype)
    x, t = np.concatenate([x, hard_x]), np.concatenate([t, hard_t.astype(dtype)])
    got = V.kl_div(x, t, reduction="none")
    assert got.dtype == dtype
    expected = ref.kl_div_pointwise(x, t)
    if dtype == np.float64:
        _assert_kl_div_pointwise_bound(got, expected, t)
    else:
        ref.assert_ulp_in(got, expected, dtype, label="kl_div terms")
    for reduction in ("none", "mean"):
        g = V.kl_div_grad(x, t, reduction=reduction)
        with mpmath.workdps(ref.DIGITS):
            scale = 1 if reduction == "none" else mpmath.mpf(1) / x.size
            e = np.array([-ref.mp(v) * scale for v in t], dtype=object)
        ref.assert_ulp_in(g, e, dtype, label=f"kl_div_grad, {reduction}")


def test_kl_div_near_its_optimum_in_float64_is_within_4_ulp_down_to_2_pow_minus_54():
    # the float64 allowance above matters only where |log t - x| < 2^-54 (2^-104 t is then
    # more than 4 ULP of t (log t - x)); above, the terms are within 4 ULP
    x, t = _near_log_targets(np.float64, np.random.default_rng(26))
    got = V.kl_div(x, t, reduction="none")
    expected = ref.kl_div_pointwise(x, t)
    with mpmath.workdps(ref.DIGITS):
        large = np.array([abs(e) >= 2.0**-54 * ref.mp(v) for e, v in zip(expected, t, strict=True)])
    assert len(t) // 4 < large.sum() < len(t)  # the sweep reaches both sides of that line
    ref.assert_ulp_in(got[large], expected[large], np.float64)


# The switches of kl_div's pointwise t (log t - x) between its kernels, as sizes of
# |log t - x|: float64 takes the table-and-log1p difference from 2^-7 up, the 90-bit table
# from 2^-36 (an estimate below 2^-37 goes straight to the double-double); float32 takes
# the plain float64 difference from 104 * 2^-26 up, the table-and-log1p one from 2^-33.
# (2^-5, 2^-18, 2^-19 and 2^-31: the switches of earlier, smaller tables.)
_KL_DIV_SWITCHES = {
    np.float64: (
        [0.3, 1e-3, 0.97, 1e-300, 5e-324],
        [2.0**-5, 2.0**-7, 2.0**-18, 2.0**-19, 2.0**-36, 2.0**-37],
    ),
    np.float32: ([0.3, 1e-3, 0.97, 1e-40, 1 - 2.0**-20], [104 * 2.0**-26, 2.0**-31, 2.0**-33]),
}


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_kl_div_terms_on_both_sides_of_each_switch(dtype):
    targets, switches = _KL_DIV_SWITCHES[dtype]
    t, x = [], []
    with mpmath.workdps(ref.DIGITS):
        for target in np.array(targets, dtype=dtype):
            log_t = mpmath.log(ref.mp(target))
            # just inside and outside each switch, and every size between (each kernel
            # is exact enough over its whole range, not only at its edges)
            near = [g * f for g in switches for f in (1 - 2.0**-8, 1 - 2**-30, 1 + 2**-30, 1.004)]
            for gap in near + [1.37 * 2.0**-k for k in range(45)]:
                for sign in (1, -1):
                    t.append(target)
                    x.append(float(log_t - sign * mpmath.mpf(gap)))
    t, x = np.array(t, dtype=dtype), np.array(x, dtype=dtype)
    expected = ref.kl_div_pointwise(x, t)
    with mpmath.workdps(ref.DIGITS):
        gaps = [abs(mpmath.log(ref.mp(a)) - ref.mp(b)) for a, b in zip(t, x, strict=True)]
    for gap in switches:  # the rounded inputs still fall on both sides of every switch
        assert any(gap / 2 < g < gap for g in gaps) and any(gap < g < 2 * gap for g in gaps)
    # float32: a quarter of an ULP before the one rounding (the float64 sums of the kernels)
    bound = 1.0 if dtype == np.float32 else 4.0
    got = V.kl_div(x, t, reduction="none")
    ref.assert_ulp_in(got, expected, dtype, bound, label="kl_div terms")
    # the same among many easy terms (a block with few elements to redo gathers them)
    easy = np.full(8 * t.size, 0.25, dtype=dtype)
    mixed = V.kl_div(np.concatenate([easy, x]), np.concatenate([easy, t]), reduction="none")
    ref.assert_ulp_in(mixed[easy.size :], expected, dtype, bound, label="among easy terms")
    # the same terms reduced: the recomputed elements are counted once, in every reduction
    # (the terms have both signs: the sum is within a few ULP of the sum of their sizes)
    with mpmath.workdps(ref.DIGITS):
        size = float(mpmath.fsum(abs(e) for e in expected))
    for reduction in ("sum", "mean"):
        exact = float(ref.reduced(expected, reduction))
        got = float(V.kl_div(x, t, reduction=reduction))
        count = 1 if reduction == "sum" else t.size
        assert abs(got - exact) <= 4 * np.finfo(dtype).eps * size / count, reduction


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_kl_div_few_terms_to_redo_among_many_are_done_after_the_blocks(dtype):
    # blocks (of about a megabyte, on two threads) where at most 1/64 of the terms cancel
    # leave those to one call after the last block, and a block with more does its own:
    # both kinds side by side, against mpmath, in every reduction
    rng = np.random.default_rng(43)
    size = 1_000_000
    t = np.full(size, 0.25, dtype=dtype)
    x = np.full(size, -1.0, dtype=dtype)  # log t - x = -0.386: the fast formula
    with mpmath.workdps(ref.DIGITS):
        easy = ref.kl_div_pointwise(x[:1], t[:1])[0]
        hard_t = np.array(rng.uniform(0.01, 0.99, 300), dtype=dtype)
        gaps = 1.37 * 2.0 ** -rng.integers(8, 45, 300)
        hard_x = np.array(
            [float(mpmath.log(ref.mp(v)) - g) for v, g in zip(hard_t, gaps, strict=True)]
        ).astype(dtype)
    # few per block (more than one call's worth in all, the last call for fewer), and 6000 in
    # a row (their block does its own)
    dense = size // 2 + 1000 + np.arange(6000)
    sparse = rng.choice(
        np.setdiff1d(np.arange(size), np.arange(size // 2, dense[-1] + 1)), 3000, replace=False
    )
    where = np.concatenate([sparse, dense])
    pick = np.concatenate([np.arange(3000), np.arange(6000)]) % 300
    t[where], x[where] = hard_t[pick], hard_x[pick]
    expected = ref.kl_div_pointwise(hard_x, hard_t)[pick]
    bound = 1.0 if dtype == np.float32 else 4.0
    got = V.kl_div(x, t, reduction="none")
    ref.assert_ulp_in(got[where], expected, dtype, bound, label="terms to redo")
    rest = np.ones(size, bool)
    rest[where] = False
    assert (got[rest] == V.kl_div(x[:1], t[:1], reduction="none")[0]).all()
    with mpmath.workdps(ref.DIGITS):
        terms = list(expected) + [easy] * int(rest.sum())
        exact_sum = mpmath.fsum(terms)
        magnitude = float(mpmath.fsum(abs(e) for e in expected) + abs(easy) * int(rest.sum()))
    for reduction, count in (("sum", 1), ("mean", size)):
        got = float(V.kl_div(x, t, reduction=reduction))
        assert abs(got - float(exact_sum / count)) <= 4 * np.finfo(dtype).eps * magnitude / count


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_kl_div_block_of_terms_to_redo_with_special_values(dtype):
    # a block where most terms cancel takes the careful kernel on the whole block; an
    # infinite input or a zero target there sends the float64 block back to the gathered
    # path: both, with the limits (inf, 0) and the cancelling terms against mpmath
    rng = np.random.default_rng(47)
    t = rng.uniform(0.01, 0.99, 400)
    gaps = rng.choice([-1.0, 1.0], 400) * 2.0 ** rng.uniform(-45, -8, 400)
    with mpmath.workdps(ref.DIGITS):
        x = np.array([float(mpmath.log(ref.mp(a)) - g) for a, g in zip(t, gaps, strict=True)])
    t, x = t.astype(dtype), x.astype(dtype)
    expected = ref.kl_div_pointwise(x, t)
    bound = 1.0 if dtype == np.float32 else 4.0
    for special in (False, True):
        ts, xs = t.copy(), x.copy()
        if special:
            ts[[5, 6]], xs[[5, 6]] = [0.5, 0.0], [-np.inf, 1.0]  # inf, and the limit 0
        got = V.kl_div(xs, ts, reduction="none")
        rest = np.ones(t.size, bool)
        rest[[5, 6]] = not special
        ref.assert_ulp_in(got[rest], expected[rest], dtype, bound, label="block to redo")
        if special:
            assert got[5] == np.inf and got[6] == 0


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("scale", [1e-3, 0.1, 1.0, 4.0])
def test_gaussian_kl_and_gradient_within_4_ulp(dtype, scale):
    rng = np.random.default_rng(23)
    mu = (scale * rng.normal(size=(10, 3))).astype(dtype)
    logvar = (scale * rng.normal(size=(10, 3))).astype(dtype)
    mu0, logvar0 = rng.normal(size=3).astype(dtype), rng.normal(size=3).astype(dtype)
    for priors in [(0.0, 0.0), (mu0, logvar0)]:
        m0, v0 = priors
        mu_q = (mu + m0).astype(dtype) if np.ndim(m0) else mu
        lv_q = (logvar + v0).astype(dtype) if np.ndim(v0) else logvar
        got = V.gaussian_kl(mu_q, lv_q, m0, v0)
        assert got.dtype == dtype
        ref.assert_ulp_in(got, ref.gaussian_kl(mu_q, lv_q, m0, v0), dtype)
        d_mu, d_logvar = V.gaussian_kl_grad(mu_q, lv_q, m0, v0)
        assert d_mu.dtype == dtype and d_logvar.dtype == dtype
        m0b, v0b = (np.broadcast_to(np.asarray(a, np.float64), mu.shape) for a in priors)
        with mpmath.workdps(ref.DIGITS):
            e_mu = np.empty(mu.shape, dtype=object)
            e_lv = np.empty(mu.shape, dtype=object)
            for i in np.ndindex(mu.shape):
                e_mu[i] = (ref.mp(mu_q[i]) - ref.mp(m0b[i])) / mpmath.exp(ref.mp(v0b[i]))
                e_lv[i] = mpmath.expm1(ref.mp(lv_q[i]) - ref.mp(v0b[i])) / 2
        ref.assert_ulp_in(d_mu, e_mu, dtype, label="d_mu")
        ref.assert_ulp_in(d_logvar, e_lv, dtype, label="d_logvar")


# (mu - mu0, v0) whose (mu - mu0)^2, e^{-v0} or their product leaves the normal range while
# the scaled square and d_mu need not
_EXTREME_PRIORS = {
    np.float32: [(1e-30, -80.0), (1e30, 80.0), (1e20, 95.0), (1e-25, -95.0), (3e-20, 10.0)],
    np.float64: [
        (1e-200, -700.0),
        (1e200, 700.0),
        (1e-160, -700.0),
        (1e200, 720.0),
        (1e-300, -720.0),
        (3e-160, 10.0),
    ],
}


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("second", [0.0, 1e-3])
def test_gaussian_kl_with_extreme_priors_within_4_ulp(dtype, second):
    # each row: the latent of the table (logvar = v0) and one whose log-variance is v0 + second
    # (0: the row is summed from the fast terms; 1e-3: it is recomputed term by term)
    diff, v0 = (np.array(c, dtype) for c in zip(*_EXTREME_PRIORS[dtype], strict=True))
    mu = np.stack([diff, np.zeros_like(diff)], axis=-1)
    logvar_prior = np.stack([v0, v0], axis=-1)
    logvar = (logvar_prior + np.array([0, second])).astype(dtype)
    mu_prior = np.zeros_like(mu)
    got = V.gaussian_kl(mu, logvar, mu_prior, logvar_prior)
    ref.assert_ulp_in(got, ref.gaussian_kl(mu, logvar, mu_prior, logvar_prior), dtype)
    d_mu, _ = V.gaussian_kl_grad(mu, logvar, mu_prior, logvar_prior)
    with mpmath.workdps(ref.DIGITS):
        e_mu = np.empty(mu.shape, dtype=object)
        for i in np.ndindex(mu.shape):
            e_mu[i] = ref.mp(mu[i]) / mpmath.exp(ref.mp(logvar_prior[i]))
    ref.assert_ulp_in(d_mu, e_mu, dtype, label="d_mu")


@pytest.mark.parametrize("dtype", DTYPES)
def test_gaussian_kl_long_rows_within_4_ulp(dtype):
    # rows of 1000 latents: summed from expm1(v) - v where sum |expm1(v)| is at most the
    # row's sum of terms, recomputed term by term otherwise; rows on both sides of that line
    rng = np.random.default_rng(27)
    scales = [
        (0.4, 0.5),
        (0.5, 0.5),
        (0.6, 0.5),
        (0.7, 0.5),
        (0.01, 1.0),
        (0.01, 2.0),
        (1e-3, 1e-3),
    ]
    mu = np.stack([a * rng.normal(size=1000) for a, _ in scales]).astype(dtype)
    logvar = np.stack([b * rng.normal(size=1000) for _, b in scales]).astype(dtype)
    zeros = np.zeros(mu.shape)
    expected = ref.gaussian_kl(mu, logvar, zeros, zeros)
    value, (d_mu, d_logvar) = V.gaussian_kl_value_and_grad(mu, logvar)
    ref.assert_ulp_in(value, expected, dtype, label="gaussian_kl")
    ref.assert_ulp_in(d_mu, mu, dtype, label="d_mu")
    with mpmath.workdps(ref.DIGITS):
        e_lv = np.array([[mpmath.expm1(ref.mp(v)) / 2 for v in row] for row in logvar])
    ref.assert_ulp_in(d_logvar, e_lv, dtype, label="d_logvar")
    # the transposed layout (axis=0) gives the same numbers
    value_t, (d_mu_t, _) = V.gaussian_kl_value_and_grad(mu.T, logvar.T, axis=0)
    np.testing.assert_array_equal(value_t, value)
    np.testing.assert_array_equal(d_mu_t, d_mu.T)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_blocks_do_not_change_the_results(dtype):
    # the divergences are computed in cache-sized blocks of rows or elements: many rows at
    # once give bit for bit what each row alone gives (a wrong block offset would not)
    rng = np.random.default_rng(28)
    mu, logvar = rng.normal(size=(2, 20000, 3)).astype(dtype)
    logvar[::7] *= 1e-3  # near the prior: the careful rows, spread over the blocks
    value, (d_mu, d_logvar) = V.gaussian_kl_value_and_grad(mu, logvar)
    rows = rng.choice(len(mu), 40, replace=False)
    for i in rows:
        one, (g_mu, g_logvar) = V.gaussian_kl_value_and_grad(mu[i : i + 1], logvar[i : i + 1])
        assert one[0] == value[i] and np.array_equal(g_logvar[0], d_logvar[i])
    x = np.log(rng.dirichlet(np.ones(4), 20000)).astype(dtype)
    t = np.exp(x.astype(np.float64) + 1e-3 * rng.normal(size=x.shape)).astype(dtype)
    t /= t.sum(axis=-1, keepdims=True)
    terms = V.kl_div(x, t, reduction="none")
    for i in rows:
        assert np.array_equal(V.kl_div(x[i], t[i], reduction="none"), terms[i])
    data = (rng.uniform(size=(20000, 5)) > 0.5).astype(dtype)
    recon = rng.normal(size=(20000, 5)).astype(dtype)
    loss = V.vae_loss(data, recon, mu, logvar, reduction="none")
    (d_recon,) = V.vae_loss_grad(data, recon, mu, logvar, reduction="sum")[:1]
    for i in rows:
        s = slice(i, i + 1)
        assert V.vae_loss(data[s], recon[s], mu[s], logvar[s], reduction="none")[0] == loss[i]
        g = V.vae_loss_grad(data[s], recon[s], mu[s], logvar[s], reduction="sum")[0]
        assert np.array_equal(g[0], d_recon[i])


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("likelihood", ["bernoulli", "gaussian"])
def test_vae_loss_within_4_ulp(dtype, likelihood):
    rng = np.random.default_rng(24)
    x = rng.uniform(size=(6, 5)).astype(dtype)
    if likelihood == "bernoulli":
        x = (x > 0.5).astype(dtype)
        big = 20.0 if dtype == np.float16 else 200.0
        recon = (big * rng.normal(size=(6, 5))).astype(dtype)  # confident logits
    else:
        recon = rng.normal(size=(6, 5)).astype(dtype)
    mu, logvar = rng.normal(size=(6, 2)).astype(dtype), rng.normal(size=(6, 2)).astype(dtype)
    _assert_vae_within_4_ulp(x, recon, mu, logvar, likelihood, dtype)


def _assert_vae_within_4_ulp(x, recon, mu, logvar, likelihood, dtype):
    """vae_loss for every reduction and vae_loss_grad for "sum" and "mean" against mpmath."""
    zeros = np.zeros(mu.shape)
    if likelihood == "bernoulli":
        nll = ref.bce_with_logits_rows(x, recon)
    else:
        with mpmath.workdps(ref.DIGITS):
            nll = ref._last_axis_rows(
                lambda a, b: (
                    mpmath.fsum((u - v) ** 2 for u, v in zip(a, b, strict=True)) / 2
                    + len(a) * mpmath.log(2 * mpmath.pi) / 2
                ),
                x,
                recon,
            )
    kl = ref.gaussian_kl(mu, logvar, zeros, zeros)
    with mpmath.workdps(ref.DIGITS):
        per = nll + kl
    for reduction in ("none", "sum", "mean"):
        got = V.vae_loss(x, recon, mu, logvar, likelihood, reduction)
        assert np.asarray(got).dtype == dtype
        # the reconstruction and KL terms are both non-negative (up to the constant)
        ref.assert_ulp_in(got, ref.reduced(per, reduction), dtype, label=reduction)
    with mpmath.workdps(ref.DIGITS):
        if likelihood == "bernoulli":
            e_recon = np.array(
                [
                    [
                        1 / (1 + mpmath.exp(-ref.mp(b))) - ref.mp(a)
                        for a, b in zip(r, s, strict=True)
                    ]
                    for r, s in zip(x, recon, strict=True)
                ],
                dtype=object,
            )
        else:
            e_recon = np.array(
                [
                    [ref.mp(b) - ref.mp(a) for a, b in zip(r, s, strict=True)]
                    for r, s in zip(x, recon, strict=True)
                ],
                dtype=object,
            )
        e_mu = np.array([[ref.mp(v) for v in row] for row in mu], dtype=object)
        e_lv = np.array(
            [[mpmath.expm1(ref.mp(v)) / 2 for v in row] for row in logvar], dtype=object
        )
    for reduction, scale in [("sum", 1), ("mean", len(x))]:
        d_recon, d_mu, d_logvar = V.vae_loss_grad(x, recon, mu, logvar, likelihood, reduction)
        with mpmath.workdps(ref.DIGITS):
            expected = [e / scale for e in (e_recon, e_mu, e_lv)]
        labels = ("recon", "mu", "lv")
        for got, e, label in zip((d_recon, d_mu, d_logvar), expected, labels, strict=True):
            assert got.dtype == dtype
            ref.assert_ulp_in(got, e, dtype, label=f"d_{label} {reduction}")


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_gaussian_kl_terms_beyond_the_working_range(dtype):
    # e^v and mu^2 overflow the working dtype where half of them is finite: float32 rows
    # are redone in float64, float64 ones from halved terms (the kernel the VAE loss
    # shares); with a prior, e^(v - v0) likewise
    b = BEYOND[dtype]
    mu = np.array([[0, 0], [b["mu"], 0], [0, 0], [1, 0]], dtype)
    logvar = np.array([[b["v"], 0], [0, 0], [b["v"] + 0.3, 1], [0, 0]], dtype)
    for prior in (0.0, dtype(-0.5)):
        zeros = np.zeros(mu.shape)
        exact = ref.gaussian_kl(mu, logvar, zeros, zeros + prior)
        got = V.gaussian_kl(mu, logvar, 0.0, prior)
        assert got.dtype == dtype
        ref.assert_ulp_in(got, exact, dtype, label="kl")
        d_mu, d_logvar = V.gaussian_kl_grad(mu, logvar, 0.0, prior)
        with mpmath.workdps(ref.DIGITS):
            e_lv = np.array(
                [[mpmath.expm1(ref.mp(v) - ref.mp(prior)) / 2 for v in r] for r in logvar],
                dtype=object,
            )
        ref.assert_ulp_in(d_logvar, e_lv, dtype, label="d_logvar")


# per dtype: residuals whose squares overflow but not half their sum, a log-variance whose
# e^v overflows but not (e^v - 1 - v) / 2, a mean mu whose square overflows but not its
# half, a residual that overflows itself, logits whose softpluses overflow summed
BEYOND = {
    np.float32: {"r": (3e19, 2e19), "v": 89.0, "mu": 2e19, "x": 3e38, "z": (3e38, -2e38)},
    np.float64: {
        "r": (1.5e154, 1e154),
        "v": 709.9,
        "mu": 1.5e154,
        "x": 1e308,
        "z": (8e307, -1.7e308),
    },
}


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("likelihood", ["bernoulli", "gaussian"])
def test_vae_loss_terms_beyond_the_working_range(dtype, likelihood):
    # float32 is computed in float32, float64 in float64: these sums of squares, softpluses,
    # e^v, mu^2 and the residual x - (-x) overflowed there: an infinite loss, mean or
    # gradient where the exact one is finite (float32 rows are redone in float64, float64
    # rows from halved terms)
    b = BEYOND[dtype]
    x = np.zeros((4, 2), dtype)
    recon = np.zeros((4, 2), dtype)
    mu, logvar = np.zeros((4, 2), dtype), np.zeros((4, 2), dtype)
    if likelihood == "gaussian":
        recon[0], recon[1, 0] = b["r"], b["r"][0]
    else:
        x[1] = 1
        recon[0], recon[1, 0] = b["z"][0], b["z"][1]
    logvar[2, 0], mu[3, 0] = b["v"], b["mu"]
    _assert_vae_within_4_ulp(x, recon, mu, logvar, likelihood, dtype)
    if likelihood == "gaussian":  # (its loss overflows: a sample of its own)
        x[2, 1], recon[2, 1] = b["x"], -b["x"]
        _assert_vae_within_4_ulp(x, recon, mu, logvar, likelihood, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_float16_many_samples_and_empty_batches(dtype):
    # 70,000 samples: the count is beyond float16's largest number
    x = np.zeros((70000, 1), dtype=dtype)
    recon = np.zeros_like(x)
    mu, logvar = np.zeros((70000, 1), dtype=dtype), np.zeros((70000, 1), dtype=dtype)
    mean = V.vae_loss(x, recon, mu, logvar, "gaussian")
    assert mean.dtype == dtype
    ref.assert_ulp_in(mean, mpmath.log(2 * mpmath.pi) / 2, dtype)
    g = V.vae_loss_grad(x, recon + np.asarray(1, dtype), mu, logvar, "gaussian")[0]
    assert np.all(g == g.flat[0])
    ref.assert_ulp_in(g.flat[0], mpmath.mpf(1) / 70000, dtype)
    t = np.full((70000, 1), 1.0, dtype=dtype)
    ref.assert_ulp_in(V.kl_div(np.zeros_like(t), t, reduction="mean"), 0, dtype)
    # empty batches
    e = np.zeros((0, 3), dtype=dtype)
    assert np.isnan(V.vae_loss(e, e, e, e)) and V.vae_loss(e, e, e, e, reduction="sum") == 0
    assert all(g.shape == (0, 3) for g in V.vae_loss_grad(e, e, e, e))
    assert np.isnan(V.kl_div(e, e, reduction="batchmean"))
    assert V.gaussian_kl(e, e).shape == (0,)


@pytest.mark.parametrize("dtype", DTYPES)
def test_an_empty_distribution_axis_is_an_error_an_empty_batch_is_not(dtype):
    # a distribution over no outcomes is none (its probabilities cannot sum to 1): refused
    # by name, as softmax and cross_entropy refuse an empty class axis (the sums over it
    # were 0); an empty batch of distributions gives an empty result
    none, batch = np.zeros((3, 0), dtype), np.zeros((0, 3), dtype)
    message = r"p must have at least one element along axis -1; got shape \(3, 0\)"
    for name in ("categorical_cross_entropy", "kl_divergence"):
        for suffix in ("", "_grad", "_value_and_grad"):
            with pytest.raises(ValueError, match=message):
                getattr(V, name + suffix)(none, none)
        assert getattr(V, name)(batch, batch).shape == (0,)
        assert getattr(V, name + "_grad")(batch, batch).shape == (0, 3)
    with pytest.raises(ValueError, match=message):
        V.entropy(none)
    with pytest.raises(ValueError, match=r"along axis 0; got shape \(0, 3\)"):
        V.entropy(batch, axis=0)
    assert V.entropy(batch).shape == (0,)
    with pytest.raises(ValueError, match=r"input must have a non-empty class axis"):
        L.cross_entropy(none, np.zeros((3, 0), dtype))  # (probability targets: the same)
