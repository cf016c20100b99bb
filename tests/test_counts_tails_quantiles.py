"""Tests of the count, heavy-tail and quantile losses: Poisson, negative binomial, Student-t, pinball.

Expected values come from mpmath at 60 digits evaluated at the same rounded inputs (the
textbook formulas, log-gammas and digammas included), from SciPy's distributions, from
SymPy, from limits and from finite differences, never from the code under test.
Accuracy is measured in ULP of the output dtype (float16, float32, float64).
"""

from __future__ import annotations

import math

import mpmath
import numpy as np
import pytest
import scipy.optimize
import scipy.stats
import sympy as sp
from hypothesis import given
from hypothesis import strategies as st

import lossutils
from lossutils import _beyond_gaussian as B
from lossutils.testing import assert_gradient_matches

DTYPES = (np.float16, np.float32, np.float64)
REDUCTIONS = ("mean", "sum", "none")
DIGITS = 60


# ---------------------------------------------------------------- references and ULP


def _lift(f):
    """A scalar mpmath function of float64 values, lifted elementwise (object array out)."""

    def lifted(*arrays):
        arrays = np.broadcast_arrays(*[np.asarray(a, dtype=np.float64) for a in arrays])
        out = np.empty(arrays[0].shape, dtype=object)
        with mpmath.workdps(DIGITS):
            for index in np.ndindex(out.shape):
                out[index] = f(*(mpmath.mpf(float(a[index])) for a in arrays))
        return out

    return lifted


def _sp(z):
    return mpmath.log1p(mpmath.exp(z))


def _sig(z):
    return 1 / (1 + mpmath.exp(-z))


def _stirling(y):
    return y * mpmath.log(y) - y + mpmath.log(2 * mpmath.pi * y) / 2 if y > 1 else 0


REF = {
    "poisson": _lift(lambda x, y: mpmath.exp(x) - (0 if y == 0 else y * x)),
    "poisson_full": _lift(lambda x, y: mpmath.exp(x) - (0 if y == 0 else y * x) + _stirling(y)),
    "poisson_grad": _lift(lambda x, y: mpmath.exp(x) - y),
    "poisson_rate": _lift(lambda x, y: x - (0 if y == 0 else y * mpmath.log(x + mpmath.mpf(1e-8)))),
    "poisson_rate_grad": _lift(lambda x, y: 1 - y / (x + mpmath.mpf(1e-8))),
    "nb": _lift(
        lambda z, y, r: (
            r * _sp(z)
            + y * _sp(-z)
            + mpmath.loggamma(y + 1)
            + mpmath.loggamma(r)
            - mpmath.loggamma(r + y)
        )
    ),
    "nb_grad_input": _lift(lambda z, y, r: r * _sig(z) - y * _sig(-z)),
    "nb_grad_count": _lift(lambda z, y, r: _sp(z) + mpmath.digamma(r) - mpmath.digamma(r + y)),
    "quantile": _lift(lambda x, y, q: max(q * (y - x), (q - 1) * (y - x))),
}


def _t_parts(x, y, s, nu):
    u = (x - y) / s
    c = mpmath.log(nu) / 2 + mpmath.loggamma(nu / 2) - mpmath.loggamma((nu + 1) / 2)
    return u, c


def _t_nll(x, y, s, nu):
    u, c = _t_parts(x, y, s, nu)
    return mpmath.log(s) + mpmath.log(mpmath.pi) / 2 + c + (nu + 1) / 2 * mpmath.log1p(u * u / nu)


def _t_grads(x, y, s, nu):
    u, _ = _t_parts(x, y, s, nu)
    g_x = (nu + 1) * u / (s * (nu + u * u))
    g_s = 1 / s - (nu + 1) * u * u / (s * (nu + u * u))
    g_nu = (
        1 / (2 * nu)
        + (mpmath.digamma(nu / 2) - mpmath.digamma((nu + 1) / 2)) / 2
        + mpmath.log1p(u * u / nu) / 2
        - (nu + 1) * u * u / (2 * nu * (nu + u * u))
    )
    return g_x, g_s, g_nu


REF["student_t"] = _lift(_t_nll)
for _k, _name in enumerate(("x", "s", "nu")):
    REF[f"student_t_grad_{_name}"] = _lift(lambda x, y, s, nu, k=_k: _t_grads(x, y, s, nu)[k])


def _abs_error(actual, reference):
    """|actual - reference| at high precision, as float64 (inf where they disagree on inf/NaN)."""
    actual = np.asarray(actual, dtype=np.float64)
    out = np.empty(actual.shape)
    with mpmath.workdps(DIGITS):
        for index in np.ndindex(actual.shape):
            a, r = float(actual[index]), mpmath.mpf(reference[index])
            if mpmath.isinf(r) or np.isinf(a) or np.isnan(a) or mpmath.isnan(r):
                out[index] = 0.0 if float(r) == a or (np.isnan(a) and mpmath.isnan(r)) else np.inf
            else:
                out[index] = float(abs(mpmath.mpf(a) - r))
    return out


def _ulp(dtype, values):
    """The spacing of ``dtype`` at |values| (values exact, given in float64)."""
    finfo = np.finfo(dtype)
    top = float(np.spacing(np.nextafter(finfo.max, 0, dtype=dtype)))
    v = np.minimum(np.abs(np.asarray(values, dtype=np.float64)), float(finfo.max) / 2)
    with np.errstate(over="ignore"):
        unit = np.spacing(v.astype(dtype)).astype(np.float64)
    return np.clip(unit, float(finfo.smallest_subnormal), top)


def _check(actual, reference, dtype, scale, max_ulp, label):
    """Accuracy in ULP of the output dtype, allowing for cancellation of the terms.

    Every entry must be within ``max_ulp`` ULP of the exact result plus ``max_ulp`` float64
    ULP of ``scale`` (the sum of the magnitudes of the terms that cancel). Where the terms do
    not cancel (scale at most twice the result) the first bound alone must hold, and most
    points must be of that kind, so that the second bound cannot hide a wrong formula.
    """
    actual = np.asarray(actual)
    assert actual.dtype == dtype, label
    exact = np.array([float(r) for r in reference.ravel()]).reshape(reference.shape)
    finite = np.isfinite(exact) & (np.abs(exact) < float(np.finfo(dtype).max))
    err = _abs_error(actual, reference)
    with np.errstate(over="ignore", invalid="ignore"):
        scale = np.broadcast_to(np.asarray(scale, dtype=np.float64), exact.shape)
        bound = max_ulp * _ulp(dtype, exact) + max_ulp * np.spacing(np.abs(scale))
    bad = finite & ~(err <= bound)
    assert not bad.any(), (
        f"{label} ({np.dtype(dtype).name}): error {err[bad][0]:.3g} > bound {bound[bad][0]:.3g} "
        f"at index {np.flatnonzero(bad)[0]} (exact {exact[bad][0]!r}, got {actual[bad][0]!r})"
    )
    calm = finite & (np.abs(scale) <= 2 * np.abs(exact))
    assert calm.sum() >= 0.3 * finite.sum(), f"{label}: too few well-conditioned points"
    ulps = err[calm] / _ulp(dtype, exact[calm])
    assert ulps.max(initial=0) <= max_ulp, f"{label}: {ulps.max():.3g} ULP where nothing cancels"
    # Values whose exact result overflows the dtype must come out infinite.
    over = np.isfinite(exact) & (np.abs(exact) >= float(np.finfo(dtype).max) * 1.001)
    assert np.all(np.isinf(np.asarray(actual, dtype=np.float64)[over])), label


# Narrow dtypes are computed in float64 and rounded once: 1 ULP. float64: a few ULP.
MAX_ULP = {np.float16: 1.0, np.float32: 1.0, np.float64: 4.0}


def _rounded(dtype, *arrays):
    """The arrays rounded to ``dtype`` and back: the inputs the references see."""
    with np.errstate(over="ignore"):
        return [np.asarray(a, dtype=np.float64).astype(dtype) for a in arrays]


# ---------------------------------------------------------------- Poisson sweeps


def _poisson_cases(dtype, rng, log_input):
    big = float(np.finfo(dtype).max)
    lim = math.log(big)
    n = 150
    counts = np.concatenate(
        [
            np.zeros(20),
            rng.integers(1, 10, 30),
            np.floor(10.0 ** rng.uniform(1, math.log10(big) * 0.6, n - 50)),
        ]
    )
    if log_input:
        eta = np.concatenate(
            [
                rng.uniform(-lim, lim, n),  # tiny rates (e^-700) to huge ones
                np.log(np.maximum(counts, 1)) * (1 + rng.uniform(-1e-3, 1e-3, n)),  # best fit
            ]
        )
    else:
        eta = np.concatenate(
            [10.0 ** rng.uniform(-30, math.log10(big) * 0.6, n), np.maximum(counts, 1e-3)]
        )
    y = np.concatenate([counts, counts])
    return _rounded(dtype, eta, y)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("log_input", [True, False])
@pytest.mark.parametrize("full", [False, True])
def test_poisson_accuracy(dtype, log_input, full):
    rng = np.random.default_rng(11)
    x, y = _poisson_cases(dtype, rng, log_input)
    x64, y64 = x.astype(np.float64), y.astype(np.float64)
    loss = B.poisson_nll_loss(x, y, log_input=log_input, full=full, reduction="none")
    grad = B.poisson_nll_loss_grad(x, y, log_input=log_input, full=full, reduction="none")
    with np.errstate(all="ignore"):
        stirling = np.where(y64 > 1, y64 * (np.abs(np.log(y64)) + 1) + 2 + np.log(y64), 0)
        if log_input:
            reference = REF["poisson_full" if full else "poisson"](x64, y64)
            scale = np.exp(x64) + np.abs(y64 * x64) + (stirling if full else 0)
            g_ref, g_scale = REF["poisson_grad"](x64, y64), np.exp(x64) + y64
        else:
            reference = REF["poisson_rate"](x64, y64)
            if full:
                reference = reference + _lift(_stirling)(y64)
            scale = x64 + np.abs(y64 * np.log(x64 + 1e-8)) + (stirling if full else 0)
            g_ref, g_scale = REF["poisson_rate_grad"](x64, y64), 1 + y64 / (x64 + 1e-8)
    _check(loss, reference, dtype, scale, MAX_ULP[dtype], "poisson_nll_loss")
    _check(grad, g_ref, dtype, g_scale, MAX_ULP[dtype], "poisson_nll_loss_grad")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("log_input", [True, False])
def test_poisson_gradient_at_the_best_fit(dtype, log_input):
    # e^eta - y and 1 - y / (lambda + eps) vanish at the best fit; as differences they kept
    # only the absolute accuracy of e^eta (and of y / lambda): 1e15 ULP of float64 here
    rng = np.random.default_rng(14)
    n = 200
    top = 8.0 if dtype is np.float64 else 4.0
    y = np.floor(10.0 ** rng.uniform(0, top, n))
    rel = rng.uniform(-1, 1, n) * 10.0 ** rng.uniform(-16, -1, n)
    x = np.log(y) + rel if log_input else y * (1 + rel)
    x, y = _rounded(dtype, x, y)
    x64, y64 = x.astype(np.float64), y.astype(np.float64)
    grad = B.poisson_nll_loss_grad(x, y, log_input=log_input, reduction="none")
    g_ref = REF["poisson_grad" if log_input else "poisson_rate_grad"](x64, y64)
    _check(grad, g_ref, dtype, 0 * y64, MAX_ULP[dtype], "poisson_nll_loss_grad at the best fit")
    # the reported kind of case: eta the float64 nearest log y
    x = np.log(np.array([3.0, 7.0, 1e6]))
    y = np.array([3.0, 7.0, 1e6])
    exact = _lift(lambda x, y: mpmath.exp(x) - y)(x, y)
    grad = B.poisson_nll_loss_grad(x, y, reduction="none")
    assert (_abs_error(grad, exact) <= 1 * _ulp(np.float64, [float(v) for v in exact])).all()


@pytest.mark.parametrize("reduction", ["none", "mean"])
def test_poisson_float64_gradient_at_the_best_fit_of_non_integer_targets(reduction):
    # x = fl(log y) and its neighbours for non-integer y: e^x - y cancels to about 2^-53 |x|
    # and, for a fraction 2^-k of them, 2^-k further, beyond a double-double exponential
    # (3270 ULP at the first reported point); y near 1 makes x small and the cancellation deep
    rng = np.random.default_rng(15)
    y = np.concatenate(
        [
            np.exp(rng.uniform(-30, 30, 1500)),
            1 + rng.uniform(-1e-4, 1e-4, 300),
            [1.9204787420298541],
        ]
    )
    x = np.log(y)
    x = np.concatenate([x, np.nextafter(x, np.inf)])
    y = np.concatenate([y, y])
    x = np.append(x, -0.004136428539531755)
    y = np.append(y, 0.9958721146974439)
    grad, both = (
        f(x, y, reduction=reduction)
        for f in (B.poisson_nll_loss_grad, B.poisson_nll_loss_value_and_grad)
    )
    assert np.array_equal(grad, both[1])
    with mpmath.workdps(DIGITS):
        scale = 1 if reduction == "none" else mpmath.mpf(1) / x.size
        exact = _lift(lambda x, y: (mpmath.exp(x) - y) * scale)(x, y)
    _check(grad, exact, np.float64, 0 * y, 4.0, "poisson_nll_loss_grad at log y")


def _poisson_crossings(dtype):
    """Log-rates around the crossings of e^x and y x (solved in mpmath) in ``dtype``, with
    their counts: for each crossing 120 of them, the 40 narrow numbers from the nearest
    up (each followed by its negative) and the 40 below."""
    roots = []
    for count in range(3, 40):
        for start in (0.5, 3.0 + math.log(count)):
            roots.append((mpmath.findroot(lambda t, c=count: mpmath.exp(t) - c * t, start), count))
    x, y = [], []
    for root, count in roots:
        near = np.array(float(root), dtype=dtype)
        for _ in range(40):  # the narrow numbers on each side of the crossing
            x += [near, -near]
            y += [count, count]
            near = np.nextafter(near, dtype(np.inf))
        near = np.array(float(root), dtype=dtype)
        for _ in range(40):
            near = np.nextafter(near, dtype(-np.inf))
            x.append(near)
            y.append(count)
    return np.array(x, dtype=dtype), np.array(y, dtype=dtype)


@pytest.mark.parametrize("dtype", [np.float16, np.float32])
def test_poisson_loss_of_narrow_dtypes_where_its_terms_cancel(dtype):
    # e^x - y x in float64 is within 2^-52 e^x; only where it is below 2^-27 e^x is it redone.
    # Around the crossings the narrow inputs give results on both sides of that switch,
    # which must all be within 1 ULP (no allowance for the terms)
    x, y = _poisson_crossings(dtype)
    loss = B.poisson_nll_loss(x, y, reduction="none")
    exact = REF["poisson"](x.astype(np.float64), y.astype(np.float64))
    err = _abs_error(loss, exact)
    exact = np.array([float(v) for v in exact])
    assert (err <= _ulp(dtype, exact)).all()
    if dtype is np.float32:  # both sides of the switch are reached (float16 is too coarse)
        e = np.exp(x.astype(np.float64))
        assert (np.abs(exact) < 2.0**-27 * e).any() and (np.abs(exact) > 2.0**-27 * e).any()


@pytest.mark.parametrize(
    ("dtype", "reduction"), [(np.float16, "mean"), (np.float32, "sum"), (np.float32, "mean")]
)
def test_poisson_reduced_loss_of_narrow_dtypes_where_its_terms_cancel(dtype, reduction):
    # a reduced narrow loss keeps the plain float64 terms (each within 2^-52 e^x) unless
    # their errors may reach 2^-30 of the total, as they may for the crossings alone (their
    # total is about 1e-4, their e^x up to 400): within 1 ULP of the exact total either way
    # (the float16 sum is beyond its range)
    x, y = _poisson_crossings(dtype)
    cases = [(x, y)] + ([(x[::120], y[::120])] if dtype is np.float32 else [])  # the nearest
    for xs, ys in cases:
        loss = B.poisson_nll_loss(xs, ys, reduction=reduction)
        terms = REF["poisson"](xs.astype(np.float64), ys.astype(np.float64))
        with mpmath.workdps(DIGITS):
            exact = mpmath.fsum(terms) / (xs.size if reduction == "mean" else 1)
        err = _abs_error(np.array([loss]), np.array([exact], dtype=object))
        assert err[0] <= _ulp(dtype, [float(exact)])[0]


def test_poisson_float64_gradient_on_both_sides_of_its_switch():
    # e^x - y is redone where |e^x - y| < 2^k / 4 for fl(e^x) in [2^k, 2^(k + 1)) (the plain
    # difference, exact for fl(e^x), is within 4 ULP beyond): targets just inside and
    # outside that edge, with e^x on both ends of its binade, against mpmath
    rng = np.random.default_rng(37)
    n = 240
    x = rng.uniform(-30, 30, n)
    e = np.exp(x)
    edge = np.ldexp(1.0, np.frexp(e)[1] - 3)  # 2^k / 4
    y = e - rng.choice([-1.0, 1.0], n) * edge * (
        1 + rng.uniform(-1, 1, n) * 10.0 ** rng.uniform(-12, -1, n)
    )
    grad = B.poisson_nll_loss_grad(x, y, reduction="none")
    _check(grad, REF["poisson_grad"](x, y), np.float64, 0 * y, 4.0, "gradient at the switch")
    assert (np.abs(e - y) < edge).sum() > 50 and (np.abs(e - y) > edge).sum() > 50


@pytest.mark.parametrize("dtype", DTYPES)
def test_poisson_gradient_of_counts_on_both_sides_of_the_count_table(dtype):
    # near its optimum e^x - y of an integer count below 4096 comes from a table of log y,
    # other targets (4096 and above, fractional ones) from the exponential: both kinds, and
    # x = 0 with y = 1, next to each other, against mpmath
    from lossutils._numerics import COUNT_LOGS

    rng = np.random.default_rng(41)
    y = np.concatenate(
        [
            [1.0, 1.0, 2.0, COUNT_LOGS - 1, COUNT_LOGS, COUNT_LOGS + 1, 2.5, 0.75],
            rng.integers(1, 3 * COUNT_LOGS, 120),
            rng.integers(1, 20, 60) + rng.choice([0.0, 0.5, 0.25], 60),
        ]
    )
    if dtype is np.float16:
        y = np.minimum(y, 2000.0)
    top = 1e-3 if dtype is np.float64 else 1e-1
    rel = rng.choice([-1.0, 1.0], y.size) * 10.0 ** rng.uniform(-17, np.log10(top), y.size)
    x = np.log(y) * (1 + rel)
    x[0] = 0.0
    x, y = _rounded(dtype, x, y)
    x64, y64 = x.astype(np.float64), y.astype(np.float64)
    grad = B.poisson_nll_loss_grad(x, y, reduction="none")
    g_ref = REF["poisson_grad"](x64, y64)
    if dtype is np.float64:
        # the table's counts within 4 ULP; other targets as test_poisson_gradient_at_the_best_fit
        counts = (y64 >= 1) & (y64 < COUNT_LOGS) & (y64 == np.floor(y64))
        exact = np.array([float(v) for v in g_ref])
        assert counts.sum() > 50 and (~counts).sum() > 60
        _check(grad[counts], g_ref[counts], dtype, 0 * y64[counts], 4.0, "counts")
        bound = 4 * _ulp(np.float64, exact) + 2.0**-104 * np.exp(x64)
        assert (_abs_error(grad, g_ref) <= bound).all()
    else:
        _check(grad, g_ref, dtype, 0 * y64, MAX_ULP[dtype], "poisson_nll_loss_grad near counts")
    assert grad[0] == 0


@pytest.mark.parametrize("dtype", [np.float16, np.float32])
def test_poisson_narrow_blocks_with_special_values(dtype):
    # a narrow block is checked for special values and for cancellation in one reduction;
    # blocks with an infinite or NaN input (or 0 times inf) next to ordinary elements must
    # give the float64 results rounded (the limits), and those without them the same bits
    inf, nan = np.inf, np.nan
    x = np.array([inf, -inf, inf, nan, 0.5, -2.0, 1.0986123, 3.0, -inf, 0.0], dtype=dtype)
    y = np.array([0.0, 3.0, 2.0, 1.0, 2.0, 0.0, 3.0, 7.0, 0.0, 0.0], dtype=dtype)
    for reduction in ("none", "sum"):
        loss, grad = B.poisson_nll_loss_value_and_grad(x, y, reduction=reduction)
        wide = B.poisson_nll_loss_value_and_grad(
            x.astype(np.float64), y.astype(np.float64), reduction=reduction
        )
        np.testing.assert_array_equal(loss, np.asarray(wide[0]).astype(dtype))
        np.testing.assert_array_equal(grad, wide[1].astype(dtype))
    ordinary = slice(4, 8)
    loss = B.poisson_nll_loss(x[ordinary], y[ordinary], reduction="none")
    np.testing.assert_array_equal(loss, B.poisson_nll_loss(x, y, reduction="none")[ordinary])


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("log_input", [True, False])
def test_poisson_in_blocks_on_two_threads(dtype, log_input, monkeypatch):
    # blocks of 96 elements in pieces of 32, shared by two threads (each takes the next
    # block when done with one): per-element results against mpmath (cancelling terms, best
    # fits, whose gradients are redone at the end of their block, plain elements), the
    # same bits as in one block, and the reduced losses the same with or without the
    # gradient (the blocks' sums added in their order, whichever thread did them)
    from lossutils import _blocks

    rng = np.random.default_rng(43)
    x, y = _poisson_cases(dtype, rng, log_input)
    whole = {r: B.poisson_nll_loss_value_and_grad(x, y, log_input, reduction=r) for r in REDUCTIONS}
    monkeypatch.setattr(B, "CHUNK", 32)
    monkeypatch.setattr(_blocks, "BLOCK_BYTES", 96 * 8)
    monkeypatch.setattr(_blocks, "_THREAD_MIN_BYTES", 0)
    monkeypatch.setattr(_blocks, "WORKERS", 2)
    x64, y64 = x.astype(np.float64), y.astype(np.float64)
    with np.errstate(all="ignore"):
        if log_input:
            reference, g_ref = REF["poisson"](x64, y64), REF["poisson_grad"](x64, y64)
            scale, g_scale = np.exp(x64) + np.abs(y64 * x64), np.exp(x64) + y64
        else:
            reference, g_ref = REF["poisson_rate"](x64, y64), REF["poisson_rate_grad"](x64, y64)
            scale = x64 + np.abs(y64 * np.log(x64 + 1e-8))
            g_scale = 1 + y64 / (x64 + 1e-8)
    for reduction in REDUCTIONS:
        loss, grad = B.poisson_nll_loss_value_and_grad(x, y, log_input, reduction=reduction)
        np.testing.assert_array_equal(
            loss, B.poisson_nll_loss(x, y, log_input, reduction=reduction)
        )
        np.testing.assert_array_equal(
            grad, B.poisson_nll_loss_grad(x, y, log_input, reduction=reduction)
        )
        np.testing.assert_array_equal(grad, whole[reduction][1])
        if reduction == "none":
            np.testing.assert_array_equal(loss, whole["none"][0])
            _check(loss, reference, dtype, scale, MAX_ULP[dtype], "poisson_nll_loss in blocks")
            _check(grad, g_ref, dtype, g_scale, MAX_ULP[dtype], "poisson_nll_loss_grad in blocks")
        else:  # the sums of the pieces in another grouping: within an ULP or two
            np.testing.assert_allclose(loss, whole[reduction][0], rtol=4 * np.finfo(dtype).eps)
    # the signs are checked piece by piece: a negative count or rate in a late piece (and
    # one in an early piece besides) raises the error of the first, a NaN none
    for name, v in (("target", y), ("input", x)) if not log_input else (("target", y),):
        bad = v.copy()
        bad[-3] = -2
        with pytest.raises(ValueError, match=f"{name} must hold non-negative counts; got -2"):
            B.poisson_nll_loss_value_and_grad(
                *((x, bad) if name == "target" else (bad, y)), log_input
            )
        bad[5] = -1
        with pytest.raises(ValueError, match=f"{name} must hold non-negative counts; got -1"):
            B.poisson_nll_loss(*((x, bad) if name == "target" else (bad, y)), log_input)
    y_nan = y.copy()
    y_nan[-3] = np.nan
    assert np.isnan(B.poisson_nll_loss(x, y_nan, log_input, reduction="none")[-3])


@pytest.mark.parametrize("dtype", [np.float16, np.float32])
def test_poisson_rate_gradient_of_narrow_dtypes_at_the_best_fit_and_at_the_switch(dtype):
    # float16/float32 rates: ((x - y) + eps) / (x + eps) in float64, redone exactly only where
    # eps cancels x - y (|(x - y) + eps| < eps / 2). Rates equal to the counts (1 - y / s is
    # about eps / y there: 1 - fl(y / s) would keep 2^-53 of it); then a large eps with
    # rates on both sides of that switch, and rates so small that x - y rounds to -y
    rng = np.random.default_rng(15)
    top = 6 if dtype is np.float32 else 3
    y = np.floor(10.0 ** rng.uniform(0, top, 200))
    cases = [
        (2.0**-20, y, y),
        (64.0, [0, 2.0**-24, 1e-30, 31.9, 32, 32.1, 33, 48], [64] * 8),
    ]
    for eps, x, y in cases:
        x, y = _rounded(dtype, x, y)
        grad = B.poisson_nll_loss_grad(x, y, log_input=False, eps=eps, reduction="none")
        g_ref = _lift(lambda x, y, eps=eps: 1 - y / (x + mpmath.mpf(eps)))(x, y)
        _check(grad, g_ref, dtype, 0 * y, MAX_ULP[dtype], f"rate gradient, eps = {eps}")


# ---------------------------------------------------------------- negative binomial sweeps


def _nb_cases(dtype, rng):
    big = float(np.finfo(dtype).max)
    n = 200
    top = min(6.0, math.log10(big) - 1)
    z = np.concatenate([rng.uniform(-30, 30, n), rng.normal(size=n)])
    y = np.concatenate(
        [np.floor(10.0 ** rng.uniform(0, top, n)) * (rng.random(n) < 0.85), rng.integers(0, 20, n)]
    )
    r = np.concatenate([10.0 ** rng.uniform(-3, top, n), 10.0 ** rng.uniform(-1, top, n)])
    # Near the Poisson limit: huge total_count with the logit of a moderate mean.
    mean = rng.uniform(0.5, 30, 50)
    r_big = 10.0 ** rng.uniform(4, 8 if dtype is np.float64 else 4.5, 50)
    z = np.concatenate([z, np.log(mean / r_big)])
    y = np.concatenate([y, rng.poisson(mean)])
    r = np.concatenate([r, r_big])
    return _rounded(dtype, z, y, r)


@pytest.mark.parametrize("dtype", DTYPES)
def test_negative_binomial_accuracy(dtype):
    rng = np.random.default_rng(12)
    z, y, r = _nb_cases(dtype, rng)
    z64, y64, r64 = (a.astype(np.float64) for a in (z, y, r))
    loss = B.negative_binomial_nll_loss(z, y, r, reduction="none")
    g_z, g_r = B.negative_binomial_nll_loss_grad(z, y, r, reduction="none")
    # The terms of the loss, with the huge pair of log-gammas already combined.
    from scipy.special import digamma, gammaln

    sp_pos, sp_neg = np.logaddexp(0, z64), np.logaddexp(0, -z64)
    lg_pair = np.array(
        [
            float(mpmath.loggamma(mpmath.mpf(a) + b) - mpmath.loggamma(a))
            for a, b in zip(r64, y64, strict=True)
        ]
    )
    scale = r64 * sp_pos + y64 * sp_neg + gammaln(y64 + 1) + np.abs(lg_pair)
    _check(loss, REF["nb"](z64, y64, r64), dtype, scale, MAX_ULP[dtype], "negative_binomial")
    sig = 1 / (1 + np.exp(-np.abs(z64)))
    _check(g_z, REF["nb_grad_input"](z64, y64, r64), dtype, (r64 + y64) * sig, MAX_ULP[dtype],
           "negative_binomial_grad input")  # fmt: skip
    dpsi = np.abs(digamma(r64 + y64) - digamma(r64))
    _check(g_r, REF["nb_grad_count"](z64, y64, r64), dtype, sp_pos + dpsi, MAX_ULP[dtype],
           "negative_binomial_grad total_count")  # fmt: skip


def test_negative_binomial_float64_in_blocks_on_two_threads(monkeypatch):
    # float64 goes in blocks of CHUNK elements (two pieces each) on two threads: with
    # blocks of 64 the sweep's per-element losses and gradients are the bits of one piece
    # and within 4 ULP of mpmath, and a reduced loss the same with or without the gradient
    from lossutils import _blocks

    rng = np.random.default_rng(45)
    z, y, r = _nb_cases(np.float64, rng)
    whole = {
        red: B.negative_binomial_nll_loss_value_and_grad(z, y, r, reduction=red)
        for red in REDUCTIONS
    }
    monkeypatch.setattr(B, "CHUNK", 64)  # blocks of 64 elements (2^20 // (2^20 // 64))
    monkeypatch.setattr(_blocks, "_THREAD_MIN_BYTES", 0)
    monkeypatch.setattr(_blocks, "WORKERS", 2)
    for red in REDUCTIONS:
        loss, (g_z, g_r) = B.negative_binomial_nll_loss_value_and_grad(z, y, r, reduction=red)
        np.testing.assert_array_equal(loss, B.negative_binomial_nll_loss(z, y, r, reduction=red))
        grads = B.negative_binomial_nll_loss_grad(z, y, r, reduction=red)
        for got, alone, one_piece in zip((g_z, g_r), grads, whole[red][1], strict=True):
            np.testing.assert_array_equal(got, alone)
            np.testing.assert_array_equal(got, one_piece)
        if red == "none":
            np.testing.assert_array_equal(loss, whole["none"][0])
        else:  # the sums of the pieces in another grouping: within an ULP or two
            np.testing.assert_allclose(loss, whole[red][0], rtol=4 * np.finfo(np.float64).eps)
    loss, (g_z, g_r) = B.negative_binomial_nll_loss_value_and_grad(z, y, r, reduction="none")
    with np.errstate(all="ignore"):
        sig = 1 / (1 + np.exp(-np.abs(z)))
    _check(g_z, REF["nb_grad_input"](z, y, r), np.float64, (r + y) * sig, 4.0, "nb d_input")
    sample = np.arange(0, z.size, 5)  # the loss's reference: log-gammas of a fifth
    zs, ys, rs = z[sample], y[sample], r[sample]
    pair = np.array([float(mpmath.loggamma(mpmath.mpf(a) + b) - mpmath.loggamma(a))
                     for a, b in zip(rs, ys, strict=True)])  # fmt: skip
    from scipy.special import gammaln

    scale = rs * np.logaddexp(0, zs) + ys * np.logaddexp(0, -zs) + gammaln(ys + 1) + np.abs(pair)
    _check(loss[sample], REF["nb"](zs, ys, rs), np.float64, scale, 4.0, "nb in blocks")


def _nb_half_near_the_mean(dtype, seed, y_top, log_r, far):
    """300 cases: counts 1 to 10^y_top, total_count 10^log_r; the first half with the mean
    within 1e-8 to 100 % of the count, the rest 10^-far to 10^far times it (rounded, float64)."""
    rng = np.random.default_rng(seed)
    n = 300
    y = np.floor(10.0 ** rng.uniform(0, y_top, n))
    r = 10.0 ** rng.uniform(*log_r, n)
    near = 1 + rng.uniform(-1, 1, n) * 10.0 ** rng.uniform(-8, 0, n)
    mean = y * np.where(np.arange(n) < n // 2, near, 10.0 ** rng.uniform(-far, far, n))
    z, y, r = _rounded(dtype, np.log(mean / r), y, r)
    return (z, y, r), tuple(a.astype(np.float64) for a in (z, y, r))


@pytest.mark.parametrize("dtype", DTYPES)
def test_negative_binomial_large_counts_within_a_few_ulp(dtype):
    # total_count >= 10, counts from 1, half near the mode: the textbook sum of terms of size
    # y log y cancels to the loss (3e6 ULP off at y = 1e6), and both slopes vanish at the
    # mode (the total_count slope was 160 ULP off near it)
    top = {np.float16: 3.0, np.float32: 5.0, np.float64: 7.0}[dtype]
    r_top = min(top + 2, 4.5) if dtype is np.float16 else top + 2
    (z, y, r), (z64, y64, r64) = _nb_half_near_the_mean(dtype, 16, top, (1, r_top), 6)
    loss = B.negative_binomial_nll_loss(z, y, r, reduction="none")
    g_z, g_r = B.negative_binomial_nll_loss_grad(z, y, r, reduction="none")
    for actual, key in ((loss, "nb"), (g_z, "nb_grad_input"), (g_r, "nb_grad_count")):
        _check(actual, REF[key](z64, y64, r64), dtype, 0 * z64, MAX_ULP[dtype], key)
    # the reported case: a million counts at their mean, total_count a million
    z, y, r = np.array([0.0]), np.array([1e6]), np.array([1e6])
    loss = B.negative_binomial_nll_loss(z, y, r, reduction="none")
    exact = REF["nb"](z, y, r)
    assert _abs_error(loss, exact)[0] <= 4 * _ulp(np.float64, [float(exact[0])])[0]


@pytest.mark.parametrize("dtype", DTYPES)
def test_negative_binomial_for_small_total_count(dtype):
    # total_count below 10: the loss's log-gammas cancel (12 ULP off), and the total_count
    # slope is sp(z) minus a digamma difference, both about log(y / r) near the mean (160 ULP
    # off at y = 1e6 from SciPy's digammas)
    top = {np.float16: 3.0, np.float32: 5.0, np.float64: 6.0}[dtype]
    (z, y, r), (z64, y64, r64) = _nb_half_near_the_mean(dtype, 18, top, (-1, 1), 3)
    n = len(z)
    loss = B.negative_binomial_nll_loss(z, y, r, reduction="none")
    _check(loss, REF["nb"](z64, y64, r64), dtype, 0 * z64, MAX_ULP[dtype], "loss")
    g_z, g_r = B.negative_binomial_nll_loss_grad(z, y, r, reduction="none")
    _check(g_z, REF["nb_grad_input"](z64, y64, r64), dtype, 0 * z64, MAX_ULP[dtype], "input")
    # d/dr = log((r + r e^z) / (r + y)) - (psi(r + y) - psi(r) - log1p(y / r)): both parts
    # exact to a few ULP; next to the zero of d/dr (far above the mean for small r) they cancel,
    # and the bound allows a few float64 ULP of the two parts there (the documented accuracy)
    from scipy.special import digamma

    log_part = np.log((r64 + r64 * np.exp(z64)) / (r64 + y64))
    rest = digamma(r64 + y64) - digamma(r64) - np.log1p(y64 / r64)
    _check(g_r, REF["nb_grad_count"](z64, y64, r64), dtype, np.abs(log_part) + np.abs(rest),
           MAX_ULP[dtype], "total_count")  # fmt: skip
    # near the mean (the first half) nothing cancels: 4 ULP without the allowance
    half = slice(0, n // 2)
    _check(g_r[half], REF["nb_grad_count"](z64, y64, r64)[half], dtype, 0 * z64[half],
           MAX_ULP[dtype], "total_count near the mean")  # fmt: skip


@pytest.mark.parametrize("dtype", (np.float16, np.float32))
def test_negative_binomial_narrow_on_both_sides_of_the_careful_switch(dtype):
    # float16/float32 output: the textbook sums in float64 where their terms' magnitudes (plus
    # 1) are at most 2^16 times the result, the careful forms beyond. Points whose terms cancel
    # (measured here with SciPy) by 2^14 to 2^16 and by 2^16 to 2^18 (both sides of the
    # switch), and for float32 by more than 2^26 (where the float64 sums lose the float32
    # digits): all within 1 ULP of mpmath
    from scipy.special import digamma, gammaln

    rng = np.random.default_rng(30)
    n = 40_000
    top = 4.5 if dtype is np.float16 else 7.0
    y = np.floor(10.0 ** rng.uniform(0, top, n))
    r = 10.0 ** rng.uniform(-1, top + (0 if dtype is np.float16 else 1), n)
    near = 1 + rng.uniform(-1, 1, n) * 10.0 ** rng.uniform(-6, 0, n)
    z, y, r = _rounded(dtype, np.log(y * near / r), y, r)
    z64, y64, r64 = (a.astype(np.float64) for a in (z, y, r))
    sp_pos, sp_neg = np.logaddexp(0, z64), np.logaddexp(0, -z64)
    lg = (gammaln(y64 + 1), gammaln(r64), gammaln(r64 + y64))
    loss = r64 * sp_pos + y64 * sp_neg + lg[0] + lg[1] - lg[2]
    dg = (digamma(r64), digamma(r64 + y64))
    slope = sp_pos + dg[0] - dg[1]
    with np.errstate(divide="ignore"):
        ratio = (r64 * sp_pos + y64 * sp_neg + lg[0] + np.abs(lg[1]) + np.abs(lg[2]) + 1) / loss
        ratio_r = (sp_pos + np.abs(dg[0]) + np.abs(dg[1]) + 1) / np.abs(slope)
    bands = [(2.0**14, 2.0**16), (2.0**16, 2.0**18)]
    if dtype is np.float32:
        bands.append((2.0**26, np.inf))
    for key, cancel in (("nb", ratio), ("nb_grad_count", ratio_r)):
        picks = [np.flatnonzero((cancel > lo) & (cancel <= hi))[:30] for lo, hi in bands]
        assert all(p.size >= 10 for p in picks), key
        pick = np.concatenate(picks)
        zp, yp, rp = z[pick], y[pick], r[pick]
        if key == "nb":
            actual = B.negative_binomial_nll_loss(zp, yp, rp, reduction="none")
        else:
            actual = B.negative_binomial_nll_loss_grad(zp, yp, rp, reduction="none")[1]
        exact = REF[key](z64[pick], y64[pick], r64[pick])
        _check(actual, exact, dtype, 0 * z64[pick], MAX_ULP[dtype], key)


# Found failing: the input slope where the mean r e^z rounds to the count (z, y, r), 15, 9, 9
# and 6 ULP off (the double-double e^z, to 2^-105, leaves too few digits of r e^z - y)
_NB_EXACT_MEAN_FOUND = (
    (25.329436523268086, 1e12, 9.99),
    (-11.265374648991086, 2210.0, 172537030.93827733),
    (-1.010842695442081, 4792614.0, 13169699.23367914),
    (3.482308953414612, 70.0, 2.151545214975304),
)


def _z_of_exact_mean(y, r, dtype):
    """A ``dtype`` logit near log(y / r) whose mean r e^z rounds to y in ``dtype`` (float64:
    the nearest; narrower: log(y / r) rounded, the mean then within the spacing of z)."""
    with mpmath.workdps(DIGITS):
        target = mpmath.log(mpmath.mpf(y) / mpmath.mpf(r))
        z = np.asarray(float(target), dtype=dtype)
        if dtype is not np.float64:
            return z
        for _ in range(64):
            mean = float(mpmath.mpf(r) * mpmath.exp(mpmath.mpf(float(z))))
            if mean == y:
                return z
            z = np.nextafter(z, -np.inf if mean > y else np.inf)
    return None


@pytest.mark.parametrize("dtype", DTYPES)
def test_negative_binomial_input_slope_where_the_mean_is_the_count(dtype):
    # at the optimum r e^z - y is 2^-53 of y or less: its digits need e^z beyond the 2^-105
    # of the double-double exponential (2 to 8 % of such points were 5 to 400 ULP off)
    rng = np.random.default_rng(40)
    top = {np.float16: (3.0, 3.0), np.float32: (7.0, 8.0), np.float64: (12.0, 9.0)}[dtype]
    cases = list(_NB_EXACT_MEAN_FOUND) if dtype is np.float64 else []
    while len(cases) < 400:
        y = float(np.floor(10.0 ** rng.uniform(0, top[0]))) + 1
        r = float(np.asarray(10.0 ** rng.uniform(-1, top[1]), dtype=dtype))
        z = _z_of_exact_mean(y, r, dtype)
        if z is not None and np.isfinite(z):
            cases.append((float(z), y, r))
    z, y, r = _rounded(dtype, *np.array(cases).T)
    z64, y64, r64 = (a.astype(np.float64) for a in (z, y, r))
    g_z = B.negative_binomial_nll_loss_grad(z, y, r, reduction="none")[0]
    _check(g_z, REF["nb_grad_input"](z64, y64, r64), dtype, 0 * z64, MAX_ULP[dtype], "input")
    if dtype is np.float64:
        for z0, y0, r0 in _NB_EXACT_MEAN_FOUND:  # each one alone too (a block of one)
            g = B.negative_binomial_nll_loss_grad([z0], [y0], r0, reduction="none")[0]
            exact = REF["nb_grad_input"]([z0], [y0], [r0])
            _check(g, exact, dtype, [0.0], MAX_ULP[dtype], "input, found")


def test_negative_binomial_stirling_error_table():
    # log y! - (y log y - y + log(2 pi y) / 2) for y = 1..9, recomputed at 40 digits
    with mpmath.workdps(40):
        for y, value in enumerate(B._STIRLING_ERRORS, start=1):
            exact = mpmath.loggamma(y + 1) - (
                y * mpmath.log(y) - y + mpmath.log(2 * mpmath.pi * y) / 2
            )
            assert value == float(exact)


def test_negative_binomial_stirling_error_of_real_arguments():
    x = np.concatenate([10.0 ** np.linspace(-3, 1.5, 60), [0.125, 1 / 3, 0.5, 1.0, 9.99, 10.0]])
    with mpmath.workdps(40):
        exact = [
            mpmath.loggamma(v + 1) - (v * mpmath.log(v) - v + mpmath.log(2 * mpmath.pi * v) / 2)
            for v in (mpmath.mpf(float(a)) for a in x)
        ]
    actual = B._stirling_error_real(x)
    assert (_abs_error(actual, np.array(exact, dtype=object)) <= 4 * _ulp(np.float64, actual)).all()


def test_negative_binomial_stirling_difference_on_both_sides_of_the_switch():
    # corr(r) - corr(r + y): a sum of y positive steps for r < 10 and y <= 10, within 4 ULP
    # of the difference; elsewhere the difference of two Stirling errors, within 4 ULP of
    # corr(r), the larger one
    r = np.repeat(np.concatenate([10.0 ** np.linspace(-3, 1.5, 25), [9.99, 10.0]]), 6)
    y = np.tile([1.0, 2.0, 9.0, 10.0, 11.0, 300.0], 27)

    def corr(v):
        return mpmath.loggamma(v + 1) - (v * mpmath.log(v) - v + mpmath.log(2 * mpmath.pi * v) / 2)

    with mpmath.workdps(50):
        exact = [
            corr(mpmath.mpf(a)) - corr(mpmath.mpf(a) + int(b)) for a, b in zip(r, y, strict=True)
        ]
    actual = B._stirling_difference(r, y)
    steps = (r < 10) & (y <= 10)
    assert steps.any() and not steps.all()
    size = np.where(steps, [float(v) for v in exact], B._stirling_error_real(r))
    bound = 4 * _ulp(np.float64, size)
    assert (_abs_error(actual, np.array(exact, dtype=object)) <= bound).all()


def test_negative_binomial_large_total_count_keeps_its_digits():
    """Two log-gammas of 1.3e7 whose difference is 41: the textbook form loses 7 digits."""
    z, y, r = np.array([math.log(3e-6)]), np.array([3.0]), np.array([1e6])
    reference = REF["nb"](z, y, r)
    from scipy.special import gammaln

    naive = np.logaddexp(0, z) * r + y * np.logaddexp(0, -z) + gammaln(y + 1)
    naive = naive + gammaln(r) - gammaln(r + y)
    exact = np.array([float(reference[0])])
    assert _abs_error(naive, reference)[0] > 1e3 * _ulp(np.float64, exact)[0]
    # The loss (1.4) is what remains of terms of size 40: a few ULP of it, not 1e3.
    actual = B.negative_binomial_nll_loss(z, y, r, reduction="none")
    assert _abs_error(actual, reference)[0] <= 8 * _ulp(np.float64, exact)[0]


# ---------------------------------------------------------------- Student-t sweeps


def _t_cases(dtype, rng):
    big = float(np.finfo(dtype).max)
    n = 300
    nu = 10.0 ** rng.uniform(math.log10(0.5), 6, n)  # df from 0.5 to 1e6
    nu[:10] = [0.5, 1.0, 2.0, 19.9, 20.0, 20.1, 1e6, 999_999.0, 3.0, 30.0]
    s = 10.0 ** rng.uniform(-2, 2, n)
    top = min(8.0, math.log10(big) - 1)
    bottom = -6.0 if dtype is np.float16 else -30.0
    r = rng.choice([-1.0, 1.0], n) * 10.0 ** rng.uniform(bottom, top, n)
    y = np.zeros(n)
    y[n // 2 :] = rng.normal(size=n - n // 2)
    x = y + r
    return _rounded(dtype, x, y, s, nu)


@pytest.mark.parametrize("dtype", DTYPES)
def test_student_t_accuracy(dtype):
    rng = np.random.default_rng(13)
    x, y, s, nu = _t_cases(dtype, rng)
    x64, y64, s64, nu64 = (a.astype(np.float64) for a in (x, y, s, nu))
    loss = B.student_t_nll_loss(x, y, s, nu, reduction="none")
    g_x, g_s, g_nu = B.student_t_nll_loss_grad(x, y, s, nu, reduction="none")
    with np.errstate(all="ignore"):
        u = (x64 - y64) / s64
        body = (nu64 + 1) / 2 * np.log1p(u * u / nu64)
        scale = np.abs(np.log(s64)) + 1.35 + body
    _check(loss, REF["student_t"](x64, y64, s64, nu64), dtype, scale, MAX_ULP[dtype], "student_t")
    ref_gx = REF["student_t_grad_x"](x64, y64, s64, nu64)
    _check(g_x, ref_gx, dtype, 0 * u, MAX_ULP[dtype], "student_t_grad input")
    ref_gs = REF["student_t_grad_s"](x64, y64, s64, nu64)
    _check(g_s, ref_gs, dtype, 0 * u, MAX_ULP[dtype], "student_t_grad scale")
    # the df gradient alone, relative to its own exact value (no allowance for its terms)
    ref_gnu = REF["student_t_grad_nu"](x64, y64, s64, nu64)
    _check(g_nu, ref_gnu, dtype, 0 * u, MAX_ULP[dtype], "student_t_grad df")


def _t_df_cancelling(dtype, rng, n=240):
    """Inputs where the df gradient's terms cancel: u^2 near the root of
    C'(df) + (log1p(u^2/df) - p) / 2 - p / (2 df) (1 + sqrt 2 for large df), and the
    neighbourhoods of the plain and the careful forms (relative offsets 1e-9 to 1)."""
    nu = 10.0 ** rng.uniform(math.log10(0.3), 7 if dtype is np.float64 else 4, n)
    root = np.empty(n)
    with mpmath.workdps(30):
        for i, v in enumerate(nu):
            v = mpmath.mpf(float(v))
            c = (1 / v + mpmath.digamma(v / 2) - mpmath.digamma((v + 1) / 2)) / 2

            def g(t, v=v, c=c):
                p = t / (v + t)
                return c + (mpmath.log1p(t / v) - p) / 2 - p / (2 * v)

            root[i] = float(
                mpmath.findroot(g, (mpmath.mpf("0.1"), 1e4 * (1 + v)), solver="anderson")
            )
    rel = rng.choice([-1.0, 1.0], n) * 10.0 ** rng.uniform(-9, 0, n)
    s = 10.0 ** rng.uniform(-2, 2, n)
    y = np.where(np.arange(n) % 2 == 0, 0.0, rng.normal(size=n))
    x = y + s * np.sqrt(root * (1 + rel)) * rng.choice([-1.0, 1.0], n)
    return _rounded(dtype, x, y, s, nu)


@pytest.mark.parametrize("dtype", DTYPES)
def test_student_t_df_gradient_where_its_terms_cancel(dtype):
    # C'(df), (log1p(u^2/df) - p) / 2 and -p / (2 df) cancel near the root of the sum: the
    # float64 sum of the terms was 206 ULP off at df = 4.7e4, u = 1.55, 9e7 ULP nearer the
    # root. Both sides of the switch to the double-double form, against mpmath.
    args = _t_df_cancelling(dtype, np.random.default_rng(29))
    g_nu = B.student_t_nll_loss_grad(*args, reduction="none")[2]
    _check_df_gradient_cancelling(g_nu, args, dtype)


def _check_df_gradient_cancelling(g_nu, args, dtype):
    x64, y64, s64, nu64 = (a.astype(np.float64) for a in args)
    exact = REF["student_t_grad_nu"](x64, y64, s64, nu64)
    # within 4 ULP where the terms cancel to 2^-17 of their magnitudes; below, 2^-70 of them
    with np.errstate(all="ignore"):
        u = (x64 - y64) / s64
        p = u * u / (nu64 + u * u)
        terms = 1 / (2 * nu64) + np.abs(np.log1p(u * u / nu64) - p) + p / nu64
    floor = 2.0**-70 * terms if dtype is np.float64 else 0 * terms
    err = _abs_error(g_nu, exact)
    unit = _ulp(dtype, np.array([float(v) for v in exact]))
    assert (err <= MAX_ULP[dtype] * unit + floor).all(), np.max(err / unit)
    assert (err <= MAX_ULP[dtype] * unit).mean() > 0.9


@pytest.mark.parametrize("df", ["per element", "per element in groups", "per row", "one"])
def test_student_t_df_gradient_of_typical_residuals(df, monkeypatch):
    # float64: the sum of the float64 terms is kept where its first-order error bound is
    # within 3.5 ULP of it, the rest redone in double-double; residuals of a model that
    # fits (u of order 1, df from 1 to 30, where the terms cancel by a factor of 1 to 10):
    # both sides of that switch taken, every element within 4 ULP of mpmath. In groups:
    # C'(df) in double-double per group of blocks and the redone elements of a group
    # gathered across its blocks (groups of 3 blocks of 32, the last one partial), redone
    # in parts of at most 40
    if df == "per element in groups":
        monkeypatch.setattr(B, "_STUDENT_T_GRAD_BLOCK", 32)
        monkeypatch.setattr(B, "_STUDENT_T_DD_BLOCK", 96)
        monkeypatch.setattr(B, "_STUDENT_T_REDO_BLOCK", 40)
    rng = np.random.default_rng(43)
    n = 400
    x, y = rng.normal(size=n), rng.normal(size=n)
    s = rng.uniform(0.5, 2, n)
    nu = np.full(n, 5.0) if df == "one" else rng.uniform(1, 30, n)
    careful = B._student_t_df_slope_careful
    redone = []

    def spy(*args):
        redone.append(args[0].size)
        return careful(*args)

    monkeypatch.setattr(B, "_student_t_df_slope_careful", spy)
    if df.startswith("per element"):
        g_nu = B.student_t_nll_loss_grad(x, y, s, nu, reduction="none")[2]
    elif df == "per row":  # two equal elements per row: twice the gradient, exactly
        pair = [np.stack([a, a], axis=1) for a in (x, y, s)]
        g_nu = B.student_t_nll_loss_grad(*pair, nu[:, None], reduction="sum")[2][:, 0] / 2
    else:
        pick = slice(0, n, 8)
        x, y, s, nu = x[pick], y[pick], s[pick], nu[pick]
        g_nu = np.array(
            [
                B.student_t_nll_loss_grad([a, a], [b, b], [c, c], 5.0, "sum")[2] / 2
                for a, b, c in zip(x, y, s, strict=True)
            ]
        )
    assert 0 < sum(redone) < 0.8 * x.size * (1 if df.startswith("per element") else 2)
    if df == "per element in groups":
        assert len(redone) > x.size // 96 and max(redone) <= 40  # every group, in parts
    exact = REF["student_t_grad_nu"](x, y, s, nu)
    err = _abs_error(g_nu, exact)
    unit = _ulp(np.float64, np.array([float(v) for v in exact]))
    assert (err <= 4 * unit).all(), np.max(err / unit)


def test_student_t_where_the_square_overflows():
    # log1p(u^2 / df) as it is where u^2 / df is finite, as 2 log w + log1p(1 / w^2)
    # where it overflows: both sides of that switch (u^2 / df just below and above the
    # largest float64, u^2 itself overflowing with a finite u^2 / df, u = r / s overflowing),
    # the loss and the df gradient against mpmath
    x = np.array([1.3e154, 1.3e154, 1.3e154, 1e200, 1e150, 1e300, 1e10, 3e153])
    s = np.array([1.0, 1.0, 1.0, 1.0, 1.0, 1e-10, 1.0, 0.5])
    nu = np.array([1.0, 0.9, 0.95, 1e100, 1e-10, 3.0, 7.0, 2.0])
    y = np.zeros_like(x)
    loss = B.student_t_nll_loss(x, y, s, nu, reduction="none")
    g_nu = B.student_t_nll_loss_grad(x, y, s, nu, reduction="none")[2]
    for actual, name in ((loss, "student_t"), (g_nu, "student_t_grad_nu")):
        exact = REF[name](x, y, s, nu)
        err = _abs_error(actual, exact)
        unit = _ulp(np.float64, np.array([float(v) for v in exact]))
        assert (err <= 4 * unit).all(), (name, err / unit)


def _t_far_grads(x, y, s, nu):
    """The input and scale gradients in forms without cancellation (df = inf: the Gaussian)."""
    u = (x - y) / s
    if mpmath.isinf(nu):
        return u / s, (1 - u) * (1 + u) / s
    den = s * (nu + u * u)
    return (nu + 1) * u / den, nu * (1 - u) * (1 + u) / den


def _t_far_cases(rng, n=600):
    """Residuals, scales and df from 1e-300 to 1e300 (some df infinite, some residuals 0 or
    of the scale's size), where the plain forms' products overflow or underflow."""
    s = 10.0 ** rng.uniform(-300, 300, n)
    x = rng.standard_normal(n) * 10.0 ** rng.uniform(-300, 300, n)
    x[rng.random(n) < 0.2] = 0.0
    near = rng.random(n) < 0.3
    x[near] = (s * rng.standard_normal(n) * 10.0 ** rng.uniform(-8, 8, n))[near]
    y = np.where(rng.random(n) < 0.5, 0.0, x * (1 + rng.choice([0.0, 1e-16, 1e-8], n)))
    nu = np.where(
        rng.random(n) < 0.3, 10.0 ** rng.uniform(-3, 20, n), 10.0 ** rng.uniform(-300, 300, n)
    )
    nu[rng.random(n) < 0.2] = np.inf
    return x, y, s, nu


def test_student_t_gradients_of_extreme_arguments():
    # s (df + u^2) underflowed (s = 1.7e-282, df = 1.6e-258: 0 / 0 for u = 0, inf for a
    # small u), r (1 + df / u^2) overflowed (0 for r = 1.2e255, df = 6.4e250) and so did
    # (1 - u^2) at df = inf: the input and scale gradients against mpmath, within 4 ULP,
    # overflowing exactly where the exact value does
    x, y, s, nu = _t_far_cases(np.random.default_rng(47))
    g_x, g_s, _ = B.student_t_nll_loss_grad(x, y, s, nu, reduction="none")
    with mpmath.workdps(60):
        exact = [np.empty(x.size, dtype=object) for _ in range(2)]
        for i in range(x.size):
            args = (mpmath.mpf(float(a[i])) for a in (x, y, s, nu))
            exact[0][i], exact[1][i] = _t_far_grads(*args)
    top = mpmath.mpf(float(np.finfo(np.float64).max))
    for actual, ref, name in ((g_x, exact[0], "input"), (g_s, exact[1], "scale")):
        over = np.array([abs(v) > top for v in ref])
        assert np.all(np.isinf(actual[over])), name
        assert np.all(np.sign(actual[over]) == [mpmath.sign(v) for v in ref[over]]), name
        err = _abs_error(actual[~over], ref[~over])
        unit = _ulp(np.float64, np.array([float(v) for v in ref[~over]]))
        assert (err <= 4 * unit).all(), (name, np.max(err / unit))


def test_student_t_df_gradient_for_a_huge_df():
    # beyond df = 2^511 the df gradient's terms, of order 1/df^2, are subnormal: the plain
    # sum was -3.5e-312 for exact -1.38e-310 (df = 4.3e154) and 0 for a zero residual;
    # from df = 2^200 on (below, the careful form), against mpmath within 4 ULP
    rng = np.random.default_rng(53)
    n = 200
    nu = 10.0 ** rng.uniform(61, 300, n)
    nu[:4] = [4.3193788439089403e154, 1e155, 2.0**200 * 0.999, 2.0**200 * 1.001]
    u = rng.choice([-1.0, 1.0], n) * 10.0 ** rng.uniform(-5, 5, n)
    u[4:40] = np.sqrt(nu[4:40]) * 2.0 ** rng.uniform(-45, -41, 36)  # u^2 up to 2^-82 df
    u[:2] = [-0.11540096320841374, 0.0]
    s = 10.0 ** rng.uniform(-2, 2, n)
    x, y = u * s, np.zeros(n)
    g_nu = B.student_t_nll_loss_grad(x, y, s, nu, reduction="none")[2]
    exact = np.empty(n, dtype=object)
    for i in range(n):  # C'(df)'s terms cancel to 1/df^2 of themselves: digits to spare
        with mpmath.workdps(80 + 2 * int(math.log10(nu[i]))):
            args = (mpmath.mpf(float(a[i])) for a in (x, y, s, nu))
            exact[i] = +_t_grads(*args)[2]
    err = _abs_error(g_nu, exact)
    unit = _ulp(np.float64, np.array([float(v) for v in exact]))
    assert (err <= 4 * unit).all(), np.max(err / unit)


def test_student_t_minus_log1m_minus_against_mpmath():
    # -log(1 - p) - p (about p^2 / 2 near 0): the atanh series below p = 1/2, log1p(q) - p
    # from q = p / (1 - p) above; both sides of the switch, within 4 ULP of mpmath
    rng = np.random.default_rng(41)
    p = np.concatenate(
        [
            10.0 ** rng.uniform(-12, -0.31, 300),
            0.5 + rng.uniform(-1e-3, 1e-3, 100),
            np.nextafter(0.5, [0.0, 1.0]),
            [0.5, 0.25, 1e-300, 0.0],
            rng.uniform(0.5, 0.999, 100),
        ]
    )
    with mpmath.workdps(40):
        exact = np.array([-mpmath.log1p(-mpmath.mpf(v)) - mpmath.mpf(v) for v in p], object)
        log1p_q = np.array([float(mpmath.log1p(mpmath.mpf(v) / (1 - mpmath.mpf(v)))) for v in p])
    actual = B._log1p_minus_ratio(p, log1p_q)
    err = _abs_error(actual, exact)
    unit = _ulp(np.float64, np.array([float(v) for v in exact]))
    assert (err <= 4 * unit).all(), np.max(err / unit)


def test_student_t_norm_slope_double_double_against_mpmath():
    # C'(df) as a double-double: the recurrence (every number of its steps, df down to
    # 2^-200, each side of a = df / 2 = 10 where the series takes over) to 2^-74 of it
    rng = np.random.default_rng(43)
    nu = np.concatenate(
        [
            rng.uniform(0.01, 22.0, 300),
            2.0 ** rng.uniform(-200, 4, 100),
            20.0 + rng.uniform(-1e-6, 1e-6, 20),
            np.arange(1.0, 21.0),
            [2.0**-200, 0.5, np.nextafter(20.0, 0.0), 20.0, 1e6],
        ]
    )
    hi, lo = B._student_t_norm_slope_dd(nu)
    for v, h, lo_ in zip(nu, hi, lo, strict=True):
        with mpmath.workprec(200 + 3 * abs(math.frexp(v)[1])):
            d = mpmath.mpf(float(v))
            exact = (1 / d + mpmath.digamma(d / 2) - mpmath.digamma((d + 1) / 2)) / 2
            err = abs(mpmath.mpf(float(h)) + mpmath.mpf(float(lo_)) - exact)
            assert err <= 2.0**-74 * abs(exact), (v, float(err / abs(exact)))


@pytest.mark.parametrize("dtype", DTYPES)
def test_student_t_df_gradient_of_a_broadcast_df(dtype):
    # a df broadcast to the loss (one per row, or one value) takes its normalizer's
    # derivative from df's own shape: each row of two equal elements has twice the
    # per-element df gradient (the sum of two equal numbers is exact), against mpmath on
    # both sides of the careful form's switch
    args = _t_df_cancelling(dtype, np.random.default_rng(29), n=120)
    x, y, s = (np.stack([a, a], axis=1) for a in args[:3])
    nu = args[3][:, None]
    g_nu = B.student_t_nll_loss_grad(x, y, s, nu, reduction="sum")[2]
    assert g_nu.shape == (120, 1)
    _check_df_gradient_cancelling(g_nu[:, 0] / 2, args, dtype)
    one = [
        B.student_t_nll_loss_grad(*(np.stack([a[i], a[i]]) for a in args[:3]), args[3][i], "sum")
        for i in range(0, 120, 4)
    ]
    assert all(g[2].shape == () for g in one)
    picked = tuple(a[::4] for a in args)
    _check_df_gradient_cancelling(np.array([g[2] / 2 for g in one], dtype), picked, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_student_t_in_blocks(dtype, monkeypatch):
    # blocks of 64 elements with the gradient (groups of 3 for its double-double parts) and
    # of 256 for the loss alone: the per-element results against mpmath across the block
    # and group edges, a scale and a df broadcast from one value, and the reduced loss the
    # same bits with or without the gradient
    monkeypatch.setattr(B, "CHUNK", 256)
    monkeypatch.setattr(B, "_STUDENT_T_GRAD_BLOCK", 64)
    monkeypatch.setattr(B, "_STUDENT_T_DD_BLOCK", 192)
    rng = np.random.default_rng(17)
    x, y, s, nu = _t_cases(dtype, rng)
    for s_arg, nu_arg in ((s, nu), (s[:1], nu), (s, nu[:1].reshape(()))):
        s_b, nu_b = (np.broadcast_to(a, x.shape).astype(np.float64) for a in (s_arg, nu_arg))
        x64, y64 = x.astype(np.float64), y.astype(np.float64)
        loss, (g_x, g_s, g_nu) = B.student_t_nll_loss_value_and_grad(
            x, y, s_arg, nu_arg, reduction="none"
        )
        assert np.array_equal(loss, B.student_t_nll_loss(x, y, s_arg, nu_arg, reduction="none"))
        with np.errstate(all="ignore"):
            u = (x64 - y64) / s_b
            scale = np.abs(np.log(s_b)) + 1.35 + (nu_b + 1) / 2 * np.log1p(u * u / nu_b)
        _check(loss, REF["student_t"](x64, y64, s_b, nu_b), dtype, scale, MAX_ULP[dtype], "t")
        _check(g_x, REF["student_t_grad_x"](x64, y64, s_b, nu_b), dtype, 0 * u,
               MAX_ULP[dtype], "student_t_grad input in blocks")  # fmt: skip
        if s_arg.shape == x.shape:
            _check(g_s, REF["student_t_grad_s"](x64, y64, s_b, nu_b), dtype, 0 * u,
                   MAX_ULP[dtype], "student_t_grad scale in blocks")  # fmt: skip
        else:
            assert g_s.shape == s_arg.shape
        for reduction in ("mean", "sum"):
            value, grads = B.student_t_nll_loss_value_and_grad(x, y, s_arg, nu_arg, reduction)
            alone = B.student_t_nll_loss(x, y, s_arg, nu_arg, reduction)
            assert value.tobytes() == alone.tobytes() and value.dtype == dtype
            for g, g_alone in zip(
                grads, B.student_t_nll_loss_grad(x, y, s_arg, nu_arg, reduction), strict=True
            ):
                assert g.tobytes() == g_alone.tobytes()


@pytest.mark.parametrize("dtype", DTYPES)
def test_student_t_scale_gradient_at_the_optimum(dtype):
    # d/ds = nu (1 - u^2) / (s (nu + u^2)) vanishes at |u| = 1; with u = r / s rounded,
    # (1 - u)(1 + u) kept only its absolute accuracy (about 1e9 ULP of float64 here)
    rng = np.random.default_rng(31)
    n = 200
    s = 10.0 ** rng.uniform(-3, 3, n)
    nu = 10.0 ** rng.uniform(-0.3, 6, n)
    rel = rng.uniform(-1, 1, n) * 10.0 ** rng.uniform(-8, -1, n)
    y = np.where(np.arange(n) < n // 2, 0.0, rng.normal(size=n))
    x = y + s * (1 + rel) * rng.choice([-1.0, 1.0], n)
    x, y, s, nu = _rounded(dtype, x, y, s, nu)
    x64, y64, s64, nu64 = (a.astype(np.float64) for a in (x, y, s, nu))
    _, g_s, _ = B.student_t_nll_loss_grad(x, y, s, nu, reduction="none")
    _check(g_s, REF["student_t_grad_s"](x64, y64, s64, nu64), dtype, 0 * s64, MAX_ULP[dtype],
           "student_t_grad scale near |u| = 1")  # fmt: skip
    # df = inf: the Gaussian's (1 - u^2) / s
    _, g_s, _ = B.student_t_nll_loss_grad(x, y, s, np.inf, reduction="none")
    gauss = _lift(lambda x, y, s: (1 - ((x - y) / s) ** 2) / s)(x64, y64, s64)
    _check(g_s, gauss, dtype, 0 * s64, MAX_ULP[dtype], "student_t_grad scale, df = inf")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("reduction", ["sum", "mean"])
@pytest.mark.parametrize("df_shape", [(), (1, 6)])
def test_student_t_broadcast_scale_gradient_at_its_optimum(dtype, reduction, df_shape):
    # One scale per row at the row's optimum (the root of the summed gradient, found in
    # float64 and rounded to the dtype): the terms cancel to about an ULP of their sum of
    # magnitudes, and the plain sum of the rounded terms was off by up to 1e15 ULP. Against
    # the exact sum of the exact terms; df = inf is the Gaussian's (one case of the issue).
    rng = np.random.default_rng(37)
    rows = 12
    x = rng.standard_normal((rows, 6)) * 10.0 ** rng.uniform(-2, 2, (rows, 1))
    y = np.zeros_like(x)
    nu = 10.0 ** rng.uniform(-0.5, 2, df_shape)
    x, y, nu = _rounded(dtype, x, y, nu)
    x64, nu64 = x.astype(np.float64), np.broadcast_to(nu.astype(np.float64), x.shape)

    def summed(s, i):  # the row's gradient in float64 (its sign is what the root needs)
        r2 = x64[i] ** 2
        return np.sum(nu64[i] * (s * s - r2) / (s * (nu64[i] * s * s + r2)))

    top = np.max(np.abs(x64), axis=1)
    s = np.array([[scipy.optimize.brentq(summed, top[i] * 1e-3, top[i], args=(i,),
                                         xtol=1e-300, rtol=8.9e-16)] for i in range(rows)])  # fmt: skip
    s = s.astype(dtype)
    count = x.size if reduction == "mean" else 1
    for s_arg, nu_arg in ((s, nu), (s[:1, :1].reshape(()), np.inf)):
        g_s = B.student_t_nll_loss_grad(x, y, s_arg, nu_arg, reduction)[1]
        assert g_s.shape == s_arg.shape and g_s.dtype == dtype
        s_b, nu_b = (np.broadcast_to(np.float64(a), x.shape) for a in (s_arg, nu_arg))
        terms = REF["student_t_grad_s"](x64, 0 * x64, s_b, nu_b)
        axis = None if s_arg.ndim == 0 else 1
        with mpmath.workdps(DIGITS):
            exact = np.array([mpmath.fsum(row) / count for row in np.atleast_2d(terms)])
        if axis is None:
            exact = np.array(mpmath.fsum(terms.ravel()) / count, dtype=object)
        _check(g_s.reshape(exact.shape), exact, dtype, 0 * exact.astype(float), MAX_ULP[dtype],
               f"student_t_grad broadcast scale ({reduction})")  # fmt: skip


def _assert_broadcast_sum_bound(g, terms, count, dtype, label):
    """``g`` (one entry per row of ``terms``) within 4 ULP of the exact sum of the row's
    ``terms`` / ``count`` plus 4 ULP of 1 (float64; the dtype's own where narrower) of the
    sum of their magnitudes / ``count``: the documented bound of a gradient summed over the
    elements a parameter was broadcast to, where its terms cancel."""
    unit = max(2.0**-52, float(np.finfo(dtype).eps))
    with mpmath.workdps(DIGITS):
        for i, row in enumerate(terms):
            exact = mpmath.fsum(row) / count
            size = mpmath.fsum(abs(v) for v in row) / count
            bound = 4 * _ulp(dtype, np.array([float(exact)]))[0] + 4 * unit * float(size)
            err = abs(mpmath.mpf(float(g[i])) - exact)
            assert err <= bound, (label, i, float(g[i]), float(exact), float(size))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("reduction", ["sum", "mean"])
def test_broadcast_df_and_total_count_gradients_at_their_optimum(dtype, reduction):
    # a df per column and a total_count per row at the optimum (the root of the float64
    # summed gradient, rounded to the dtype): the summed gradient keeps the absolute
    # accuracy its docstring states
    rng = np.random.default_rng(41)
    x = rng.standard_t(5, (40, 6)).astype(dtype)
    x64 = x.astype(np.float64)

    def t_sum(nu, j):
        r2 = x64[:, j] ** 2
        return float(sum(REF["student_t_grad_nu"](x64[:, j], 0 * r2, 1 + 0 * r2, nu + 0 * r2)).real)

    df = np.array([[scipy.optimize.brentq(t_sum, 0.3, 400, args=(j,), xtol=1e-12)
                    for j in range(6)]]).astype(dtype)  # fmt: skip
    count = x.size if reduction == "mean" else 1
    g = B.student_t_nll_loss_grad(x, 0 * x, np.ones((40, 1), dtype), df, reduction)[2]
    assert g.shape == (1, 6) and g.dtype == dtype
    df_b = np.broadcast_to(df.astype(np.float64), x.shape)
    terms = REF["student_t_grad_nu"](x64, 0 * x64, 1 + 0 * x64, df_b).T
    _assert_broadcast_sum_bound(g[0], terms, count, dtype, f"t df {reduction}")

    z = (0.5 * rng.standard_normal((5, 30))).astype(dtype)
    y = rng.negative_binomial(4, 0.5, (5, 30)).astype(dtype)
    z64, y64 = z.astype(np.float64), y.astype(np.float64)

    def nb_sum(r, i):
        return float(sum(REF["nb_grad_count"](z64[i], y64[i], r + 0 * z64[i])).real)

    r = np.array([[scipy.optimize.brentq(nb_sum, 0.05, 1e4, args=(i,), xtol=1e-12)]
                  for i in range(5)]).astype(dtype)  # fmt: skip
    count = z.size if reduction == "mean" else 1
    g = B.negative_binomial_nll_loss_grad(z, y, r, reduction)[1]
    assert g.shape == (5, 1) and g.dtype == dtype
    terms = REF["nb_grad_count"](z64, y64, np.broadcast_to(r.astype(np.float64), z.shape))
    _assert_broadcast_sum_bound(g[:, 0], terms, count, dtype, f"nb total_count {reduction}")


def test_student_t_normalizer_for_large_df():
    """log Gamma(df/2) - log Gamma((df+1)/2) at df = 1e6 cancels; the loss keeps its digits."""
    nu = np.array([1e6, 1e8, 1e12, 1e15])
    zero = np.zeros_like(nu)
    one = np.ones_like(nu)
    reference = REF["student_t"](zero, zero, one, nu)
    actual = B.student_t_nll_loss(zero, zero, one, nu, reduction="none")
    assert (_abs_error(actual, reference) <= 2 * _ulp(np.float64, actual)).all()
    from scipy.special import gammaln

    naive = 0.5 * np.log(nu * np.pi) + gammaln(nu / 2) - gammaln((nu + 1) / 2)
    assert (_abs_error(naive, reference)[0]) > 1e3 * _ulp(np.float64, [0.9189])[0]
    # The df gradient at u = 0 is C'(df) ~ 1/(4 df^2): its digamma difference keeps no digits.
    g_nu = B.student_t_nll_loss_grad(zero, zero, one, nu, reduction="none")[2]
    g_ref = REF["student_t_grad_nu"](zero, zero, one, nu)
    assert (_abs_error(g_nu, g_ref) <= 4 * _ulp(np.float64, g_nu)).all()


def test_student_t_series_coefficients_from_sympy():
    """The asymptotic coefficients of log Gamma(a) - log Gamma(a + 1/2) + log(a)/2 in 1/a."""
    w = sp.Symbol("w", positive=True)
    a = 1 / w

    def corr(x, terms=12):
        return sum(
            sp.bernoulli(2 * k) / (2 * k * (2 * k - 1) * x ** (2 * k - 1))
            for k in range(1, terms + 1)
        )

    f = sp.Rational(1, 2) - a * sp.log(1 + w / 2) + corr(a) - corr(a + sp.Rational(1, 2))
    series = sp.series(f, w, 0, 2 * len(B._T_SERIES)).removeO()
    coefficients = [series.coeff(w, 2 * k - 1) for k in range(1, len(B._T_SERIES) + 1)]
    assert [float(c) for c in coefficients] == list(B._T_SERIES)
    assert all(series.coeff(w, 2 * k) == 0 for k in range(len(B._T_SERIES)))


def test_student_t_meets_the_gaussian():
    rng = np.random.default_rng(3)
    x, y, s = rng.normal(size=(3, 20))
    s = np.abs(s) + 0.1
    gauss = lossutils.gaussian_nll_loss(x, y, s * s, full=True, eps=0.0, reduction="none")
    t_inf = B.student_t_nll_loss(x, y, s, np.inf, reduction="none")
    np.testing.assert_allclose(t_inf, gauss, rtol=1e-14)
    t_big = B.student_t_nll_loss(x, y, s, 1e8, reduction="none")
    np.testing.assert_allclose(t_big, gauss, rtol=1e-6)
    g = B.student_t_nll_loss_grad(x, y, s, np.inf, reduction="none")
    np.testing.assert_allclose(g[0], (x - y) / s**2, rtol=1e-14)
    np.testing.assert_allclose(g[1], 1 / s - (x - y) ** 2 / s**3, rtol=1e-12, atol=1e-14)
    assert float(g[2]) == 0.0
    # df = 1 is the Cauchy: log(pi s (1 + u^2)).
    cauchy = np.log(np.pi * s * (1 + ((x - y) / s) ** 2))
    np.testing.assert_allclose(B.student_t_nll_loss(x, y, s, 1.0, reduction="none"), cauchy,
                               rtol=1e-14)  # fmt: skip


# ---------------------------------------------------------------- quantile sweeps


@pytest.mark.parametrize("dtype", DTYPES)
def test_quantile_accuracy(dtype):
    rng = np.random.default_rng(14)
    big = float(np.finfo(dtype).max)
    n = 300
    r = rng.choice([-1.0, 1.0], n) * 10.0 ** rng.uniform(-30, math.log10(big) - 0.5, n)
    y = np.where(rng.random(n) < 0.5, 0.0, rng.normal(size=n))
    q = np.array([1e-6, 1e-3, 0.1, 0.5, 0.9, 0.999, 1 - 1e-6])[rng.integers(0, 7, n)]
    x, y, q = _rounded(dtype, y + r, y, q)
    q = np.clip(q, np.finfo(dtype).smallest_normal, np.nextafter(dtype(1), dtype(0)))
    x64, y64, q64 = (a.astype(np.float64) for a in (x, y, q))
    loss = B.quantile_loss(x, y, q, reduction="none")
    _check(loss, REF["quantile"](x64, y64, q64), dtype, 0 * x64, 1.0, "quantile_loss")
    g = B.quantile_loss_grad(x, y, q, reduction="none")
    u = y64 - x64
    expected = np.where(u > 0, -q64, np.where(u < 0, 1 - q64, 0.5 - q64)).astype(dtype)
    np.testing.assert_array_equal(g, expected)


@pytest.mark.parametrize("dtype", DTYPES)
def test_quantile_scalar_level_over_several_blocks(dtype):
    # a scalar level and a target of the input's shape go in cache-sized blocks: values,
    # the gradient (also at r = 0, in a later block) and the mean across block boundaries
    rng = np.random.default_rng(16)
    n = 3 * lossutils._numerics.CHUNK + 5
    x = rng.normal(size=n) * 10.0 ** rng.uniform(-3, 3, n)
    y = x * (1 + rng.uniform(-1, 1, n) * 10.0 ** rng.uniform(-12, 0, n))
    y[-7:] = x[-7:]  # r = 0
    x, y = _rounded(dtype, x, y)
    x64, y64 = x.astype(np.float64), y.astype(np.float64)
    sample = np.concatenate([np.arange(0, n, 97), np.arange(n - 20, n)])
    loss = B.quantile_loss(x, y, 0.9, reduction="none")
    reference = REF["quantile"](x64[sample], y64[sample], np.full(sample.size, 0.9))
    _check(loss[sample], reference, dtype, 0 * x64[sample], 1.0, "quantile_loss")
    u = y64 - x64
    expected = np.where(u > 0, -0.9, np.where(u < 0, 1 - 0.9, 0.5 - 0.9)) / n
    g = B.quantile_loss_grad(x, y, 0.9)
    np.testing.assert_array_equal(g, expected.astype(dtype))
    exact = math.fsum(np.maximum(0.9 * u, (0.9 - 1) * u).tolist()) / n
    assert abs(B.quantile_loss(x, y, 0.9) - exact) <= 4 * np.spacing(dtype(exact))


@pytest.mark.parametrize("dtype", DTYPES)
def test_quantile_in_blocks_on_two_threads(dtype, monkeypatch):
    # blocks of 40 elements in pieces of 16, shared by two threads: the per-element losses
    # (in float64 some of them redone exactly) and gradients the same bits as in
    # one block and within 1 ULP of mpmath, and a reduced loss the same with or without the
    # gradient (the blocks' sums added in their order, whichever thread did them)
    from lossutils import _blocks

    rng = np.random.default_rng(44)
    n = 1000
    x = rng.normal(size=n) * 10.0 ** rng.uniform(-3, 3, n)
    y = x * (1 + rng.uniform(-1, 1, n) * 10.0 ** rng.uniform(-12, 0, n))
    y[::50] = x[::50]  # r = 0
    x, y = _rounded(dtype, x, y)
    whole = {r: B.quantile_loss_value_and_grad(x, y, 0.9, reduction=r) for r in REDUCTIONS}
    monkeypatch.setattr(B, "_QUANTILE_BLOCK", 16)
    monkeypatch.setattr(_blocks, "BLOCK_BYTES", 40 * 8)
    monkeypatch.setattr(_blocks, "_THREAD_MIN_BYTES", 0)
    monkeypatch.setattr(_blocks, "WORKERS", 2)
    for reduction in REDUCTIONS:
        loss, grad = B.quantile_loss_value_and_grad(x, y, 0.9, reduction=reduction)
        np.testing.assert_array_equal(loss, B.quantile_loss(x, y, 0.9, reduction=reduction))
        np.testing.assert_array_equal(grad, B.quantile_loss_grad(x, y, 0.9, reduction=reduction))
        np.testing.assert_array_equal(grad, whole[reduction][1])
        if reduction == "none":
            np.testing.assert_array_equal(loss, whole["none"][0])
            x64, y64 = x.astype(np.float64), y.astype(np.float64)
            reference = REF["quantile"](x64, y64, np.full(n, 0.9))
            _check(loss, reference, dtype, 0 * x64, 1.0, "quantile_loss in blocks")
        else:  # the sums of the pieces in another grouping: within an ULP or two
            np.testing.assert_allclose(loss, whole[reduction][0], rtol=4 * np.finfo(dtype).eps)


@pytest.mark.parametrize("level", [0.5, 0.75, 0.9, 1 - 2**-40])
def test_quantile_float64_scalar_upper_level_within_1_ulp(level):
    # a scalar level of at least 1/2 makes q - 1 exact: each side is one exact factor times
    # the exact residual; residuals of every size, both signs, and not finite
    rng = np.random.default_rng(17)
    n = 400
    x = rng.normal(size=n) * 10.0 ** rng.uniform(-300, 300, n)
    y = np.where(rng.random(n) < 0.5, x * (1 + rng.uniform(-1, 1, n) * 1e-9), rng.normal(size=n))
    y[:3] = x[:3]  # r = 0
    loss = B.quantile_loss(x, y, level, reduction="none")
    finite = np.isfinite(y - x)
    q = np.full(n, level)
    _check(loss[finite], REF["quantile"](x[finite], y[finite], q[finite]), np.float64,
           0 * x[finite], 1.0, "quantile_loss")  # fmt: skip
    special = np.array([np.inf, -np.inf, np.nan, 1.0])
    got = B.quantile_loss(np.zeros(4), special, level, reduction="none")
    np.testing.assert_array_equal(got, [level * np.inf, np.inf, np.nan, level])


@pytest.mark.parametrize("level", [0.5, 0.75, 0.9, 0.99, 0.1])
@pytest.mark.parametrize("reduction", ["none", "sum"])
def test_quantile_float64_plain_and_exact_elements_within_1_ulp(level, reduction):
    # float64 takes the plain formula where the mantissa of the rounded residual is above a
    # limit per sign (B._fraction_limits) and computes the others exactly: residuals on both
    # sides of each limit, both signs, rounded (y and -x of one sign, so y - x is inexact)
    rng = np.random.default_rng(18)
    n = 600
    limits = [int(v) for v in B._fraction_limits(level)]
    sign = rng.choice([-1.0, 1.0], n)
    limit = np.where(sign > 0, limits[0], limits[1]).astype(float)
    fraction = np.clip(limit + rng.choice([-1.0, 1.0], n) * 2.0 ** rng.uniform(0, 52, n),
                       0, 2.0**52 - 1)  # fmt: skip
    r0 = sign * (1 + np.floor(fraction) / 2.0**52) * 2.0 ** rng.integers(-40, 40, n)
    w = rng.uniform(0.05, 0.95, n)
    y, x = r0 * w, -r0 * (1 - w)
    loss = B.quantile_loss(x, y, level, reduction="none")
    reference = REF["quantile"](x, y, np.full(n, level))
    _check(loss, reference, np.float64, 0 * x, 1.0, "quantile_loss float64 switch")
    r = y - x
    mask = B._inexact(r, B._fraction_limits(level), loss, np.empty((2, n)), np.empty(n, bool))
    # both sides of the switch (no switch where q and q - 1 are powers of 2)
    assert (mask.any() or not any(limits)) and (level < 0.5 or not mask.all())
    total = B.quantile_loss(x, y, level, reduction=reduction)
    if reduction == "sum":
        assert total == math.fsum(loss.tolist()) or abs(total - math.fsum(loss.tolist())) <= (
            4 * np.spacing(total)
        )
    heads = B.quantile_loss(x[:, None], y[:, None], np.array([level]), reduction="none")
    np.testing.assert_array_equal(heads[:, 0], loss)  # an array of levels: the same bits


def test_quantile_float64_within_1_ulp_without_a_wider_type():
    # float64 is computed in float64 (long double is plain double on some platforms): the
    # residual and the products must not be rounded before the end. The textbook formula in
    # float64 rounds y - x, q * r and q - 1, and is off by more than 1 ULP on these inputs.
    rng = np.random.default_rng(15)
    n = 300
    x = rng.normal(size=n) * 10.0 ** rng.uniform(-3, 3, n)
    y = x * (1 + rng.uniform(-1, 1, n) * 10.0 ** rng.uniform(-12, -1, n)) + 2.0**-70
    q = rng.uniform(0.01, 0.49, n)
    reference = REF["quantile"](x, y, q)
    loss = B.quantile_loss(x, y, q, reduction="none")
    _check(loss, reference, np.float64, 0 * x, 1.0, "quantile_loss float64")
    plain = np.maximum(q * (y - x), (q - 1) * (y - x))
    exact = np.array([float(v) for v in reference])
    assert (_abs_error(plain, reference) > _ulp(np.float64, exact)).any()


# ---------------------------------------------------------------- SciPy's distributions


def test_losses_are_the_negative_log_pmfs_and_pdfs_of_scipy():
    rng = np.random.default_rng(5)
    eta = rng.normal(size=50)
    y = rng.poisson(np.exp(eta)).astype(np.float64)
    from scipy.special import gammaln

    logpmf = scipy.stats.poisson.logpmf(y, np.exp(eta))
    np.testing.assert_allclose(B.poisson_nll_loss(eta, y, reduction="none"),
                               -logpmf - gammaln(y + 1), rtol=1e-12, atol=1e-13)  # fmt: skip
    # NB: PyTorch's probs = sigmoid(z) is the probability of a count; SciPy's p is 1 - probs.
    z, r = rng.normal(size=50), rng.uniform(0.2, 20, 50)
    counts = rng.integers(0, 30, 50).astype(np.float64)
    logpmf = scipy.stats.nbinom.logpmf(counts, r, 1 / (1 + np.exp(z)))
    np.testing.assert_allclose(B.negative_binomial_nll_loss(z, counts, r, reduction="none"),
                               -logpmf, rtol=1e-12, atol=1e-13)  # fmt: skip
    x, t, s, nu = (
        rng.normal(size=50),
        rng.normal(size=50),
        rng.uniform(0.1, 3, 50),
        rng.uniform(0.5, 50, 50),
    )
    logpdf = scipy.stats.t.logpdf(t, nu, loc=x, scale=s)
    np.testing.assert_allclose(B.student_t_nll_loss(x, t, s, nu, reduction="none"), -logpdf,
                               rtol=1e-12, atol=1e-13)  # fmt: skip


def test_poisson_full_is_stirling_and_rate_form_agrees():
    y = np.array([0.0, 1.0, 2.0, 5.0, 100.0, 1e6])
    eta = np.log(y + 0.5)
    plain = B.poisson_nll_loss(eta, y, reduction="none")
    full = B.poisson_nll_loss(eta, y, full=True, reduction="none")
    big = np.maximum(y, 2)
    stirling = np.where(y > 1, big * np.log(big) - big + 0.5 * np.log(2 * np.pi * big), 0)
    np.testing.assert_allclose(full - plain, stirling, rtol=1e-12)
    from scipy.special import gammaln

    # Stirling's term approaches log y! (relative error ~ 1/(12 y)).
    assert abs(stirling[-1] - gammaln(1e6 + 1)) < 1e-6
    rate = B.poisson_nll_loss(np.exp(eta), y, log_input=False, eps=0.0, reduction="none")
    np.testing.assert_allclose(rate, plain, rtol=1e-13, atol=1e-14)


def test_negative_binomial_tends_to_poisson():
    """At a fixed mean, total_count -> inf is the Poisson (log y! included)."""
    from scipy.special import gammaln

    mean, y = 4.0, np.arange(0.0, 12.0)
    poisson = B.poisson_nll_loss(np.full_like(y, math.log(mean)), y, reduction="none")
    poisson = poisson + gammaln(y + 1)
    gaps = []
    for r in (1e2, 1e4, 1e6, 1e8):
        z = np.full_like(y, math.log(mean / r))
        gaps.append(
            np.max(np.abs(B.negative_binomial_nll_loss(z, y, r, reduction="none") - poisson))
        )
    assert gaps[-1] < 1e-6 and all(b < a / 50 for a, b in zip(gaps[:-1], gaps[1:], strict=True))


# ---------------------------------------------------------------- gradients: finite differences


def _fd_cases():
    rng = np.random.default_rng(7)
    x, y = rng.normal(size=(2, 4, 3))
    counts = rng.poisson(3.0, size=(4, 3)).astype(np.float64)
    positive = rng.uniform(0.5, 3.0, size=(4, 3))
    return {
        "poisson": (B.poisson_nll_loss, B.poisson_nll_loss_grad, [x, counts], (0,), {}),
        "poisson_rate_full": (
            B.poisson_nll_loss,
            B.poisson_nll_loss_grad,
            [positive, counts],
            (0,),
            {"log_input": False, "full": True},
        ),
        "nb": (
            B.negative_binomial_nll_loss,
            B.negative_binomial_nll_loss_grad,
            [x, counts, positive],
            (0, 2),
            {},
        ),  # fmt: skip
        "nb_row": (
            B.negative_binomial_nll_loss,
            B.negative_binomial_nll_loss_grad,
            [x, counts, positive[:, :1] * 20],
            (0, 2),
            {},
        ),  # fmt: skip
        "student_t": (
            B.student_t_nll_loss,
            B.student_t_nll_loss_grad,
            [x, y, positive, positive[::-1] * 3],
            (0, 2, 3),
            {},
        ),  # fmt: skip
        "student_t_big_df": (
            B.student_t_nll_loss,
            B.student_t_nll_loss_grad,
            [x, y, positive[:, :1], np.full((4, 1), 40.0)],
            (0, 2, 3),
            {},
        ),  # fmt: skip
        "quantile": (B.quantile_loss, B.quantile_loss_grad, [x, y, 0.3], (0,), {}),
        "quantile_heads": (
            B.quantile_loss,
            B.quantile_loss_grad,
            [x, y[:, :1], np.array([0.1, 0.5, 0.9])],
            (0,),
            {},
        ),  # fmt: skip
    }


FD = _fd_cases()


@pytest.mark.parametrize("name", sorted(FD))
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_gradients_match_finite_differences(name, reduction):
    loss, grad, args, argnums, kwargs = FD[name]
    assert_gradient_matches(loss, grad, args, argnums, kwargs={**kwargs, "reduction": reduction},
                            rtol=1e-6, atol=1e-8)  # fmt: skip


def test_scalar_parameters_get_the_summed_gradient():
    rng = np.random.default_rng(8)
    x, y = rng.normal(size=(2, 5))
    g = B.student_t_nll_loss_grad(x, y, 1.5, 4.0, reduction="mean")
    full = B.student_t_nll_loss_grad(x, y, np.full(5, 1.5), np.full(5, 4.0), reduction="mean")
    assert g[1].shape == () and g[2].shape == ()
    np.testing.assert_allclose(g[1], full[1].sum(), rtol=1e-14)
    np.testing.assert_allclose(g[2], full[2].sum(), rtol=1e-14)
    counts = rng.poisson(2.0, 5).astype(np.float64)
    gz, gr = B.negative_binomial_nll_loss_grad(x, counts, 2.0, reduction="sum")
    assert gr.shape == () and gr.dtype == np.float64 and gz.shape == (5,)


# ---------------------------------------------------------------- limits, infinities, empty


def test_limits_at_infinity():
    inf = np.inf
    p = B.poisson_nll_loss([inf, -inf, -inf, 0.0], [2.0, 0.0, 3.0, 0.0], reduction="none")
    assert p.tolist() == [inf, 0.0, inf, 1.0]
    assert B.poisson_nll_loss_grad([-inf, inf], [3.0, 1.0], reduction="none").tolist() == [-3, inf]
    rate = B.poisson_nll_loss([inf, 0.0], [2.0, 0.0], log_input=False, eps=0.0, reduction="none")
    assert rate.tolist() == [inf, 0.0]
    g = B.poisson_nll_loss_grad([0.0], [0.0], log_input=False, eps=0.0, reduction="none")
    assert g.tolist() == [1.0]
    nb = B.negative_binomial_nll_loss([inf, -inf, -inf, 3.0], [0, 0, 2, 0], [1.0, 1.0, 1.0, 0.0],
                                      reduction="none")  # fmt: skip
    assert nb.tolist() == [inf, 0.0, inf, 0.0]
    gz, gr = B.negative_binomial_nll_loss_grad([inf, -inf], [2, 2], [1.0, 1.0], reduction="none")
    assert gz.tolist() == [1.0, -2.0] and gr[0] == inf
    # Student-t: infinite residuals give an infinite loss, a zero input gradient (redescending)
    # and the scale gradient -df/s.
    t = B.student_t_nll_loss([inf, -inf], [0.0, 0.0], 2.0, 3.0, reduction="none")
    assert t.tolist() == [inf, inf]
    gx, gs, gnu = B.student_t_nll_loss_grad([inf, -inf], [0.0, 0.0], [2.0, 2.0], [3.0, 3.0],
                                            reduction="none")  # fmt: skip
    assert gx.tolist() == [0.0, 0.0] and gs.tolist() == [-1.5, -1.5] and np.all(gnu == inf)
    # Huge but finite residuals: no overflow of u^2, the log-form limit.
    huge = B.student_t_nll_loss([1e300], [0.0], 1e-10, 3.0, reduction="none")
    reference = REF["student_t"](np.array([1e300]), np.zeros(1), np.array([1e-10]), np.array([3.0]))
    assert _abs_error(huge, reference)[0] <= 4 * _ulp(np.float64, huge)[0]
    q = B.quantile_loss([inf, -inf], [0.0, 0.0], 0.25, reduction="none")
    assert q.tolist() == [inf, inf]


FUNCS = {
    "poisson": (B.poisson_nll_loss, B.poisson_nll_loss_grad, lambda n: (np.zeros(n), np.ones(n))),
    "nb": (
        B.negative_binomial_nll_loss,
        B.negative_binomial_nll_loss_grad,
        lambda n: (np.zeros(n), np.ones(n), np.full(n, 2.0)),
    ),  # fmt: skip
    "student_t": (
        B.student_t_nll_loss,
        B.student_t_nll_loss_grad,
        lambda n: (np.zeros(n), np.ones(n), np.full(n, 2.0), np.full(n, 3.0)),
    ),  # fmt: skip
    "quantile": (B.quantile_loss, B.quantile_loss_grad, lambda n: (np.zeros(n), np.ones(n), 0.3)),
}


DIFFERENTIABLE = {"poisson": (0,), "nb": (0, 2), "student_t": (0, 2, 3), "quantile": (0,)}


@pytest.mark.parametrize("name", sorted(FUNCS))
@pytest.mark.parametrize("dtype", DTYPES)
def test_dtypes_and_empty_batches(name, dtype):
    loss, grad, make = FUNCS[name]
    args = [a.astype(dtype) if isinstance(a, np.ndarray) else a for a in make(6)]
    for reduction in REDUCTIONS:
        value = loss(*args, reduction=reduction)
        assert value.dtype == dtype, (name, reduction)
        gradient = grad(*args, reduction=reduction)
        for g, a in zip(
            gradient if isinstance(gradient, tuple) else (gradient,),
            [args[i] for i in DIFFERENTIABLE[name]],
            strict=True,
        ):
            assert g.dtype == dtype and g.shape == np.shape(a)
    empty = [a.astype(dtype) if isinstance(a, np.ndarray) else a for a in make(0)]
    assert np.isnan(loss(*empty)) and loss(*empty).dtype == dtype
    assert loss(*empty, reduction="sum") == 0
    assert loss(*empty, reduction="none").shape == (0,)
    gradient = grad(*empty)
    for g in gradient if isinstance(gradient, tuple) else (gradient,):
        assert g.size == 0 and g.dtype == dtype


def test_float16_mean_is_computed_wide_and_rounded_once():
    # 70000 elements of loss 1: a float16 sum would overflow, a float16 count is inf.
    x = np.zeros(70000, dtype=np.float16)
    y = np.zeros(70000, dtype=np.float16)
    assert B.poisson_nll_loss(x, y) == np.float16(1.0)
    assert B.poisson_nll_loss_grad(x, y).dtype == np.float16
    # A float16 loss whose exact value overflows float16 is inf, silently.
    assert np.isinf(B.poisson_nll_loss(np.float16(12.0), np.float16(0.0)))


def test_nan_propagates_and_inputs_are_not_modified():
    x = np.array([0.5, np.nan])
    y = np.array([1.0, 1.0])
    before = x.copy()
    for f in (B.poisson_nll_loss, B.quantile_loss):
        args = (x, y) if f is B.poisson_nll_loss else (x, y, 0.5)
        assert np.isnan(f(*args, reduction="none")[1]) and not np.isnan(
            f(*args, reduction="none")[0]
        )
    assert np.isnan(B.quantile_loss_grad(x, y, 0.5, reduction="none")[1])
    assert np.isnan(B.student_t_nll_loss(x, y, 1.0, 2.0, reduction="none")[1])
    nb = B.negative_binomial_nll_loss(x, [1, np.nan], 2.0, reduction="none")
    assert np.isnan(nb[1]) and np.isfinite(nb[0])
    np.testing.assert_array_equal(x, before)


# ---------------------------------------------------------------- multi-quantile heads


def test_multi_quantile_heads_equal_one_loss_per_level():
    rng = np.random.default_rng(9)
    x = rng.normal(size=(8, 3))
    y = rng.normal(size=(8, 1))
    levels = np.array([0.1, 0.5, 0.9])
    heads = B.quantile_loss(x, y, levels, reduction="none")
    for k, tau in enumerate(levels):
        np.testing.assert_array_equal(heads[:, k], B.quantile_loss(x[:, k], y[:, 0], tau, "none"))
    g = B.quantile_loss_grad(x, y, levels, reduction="mean")
    assert g.shape == (8, 3)
    np.testing.assert_allclose(g[:, 1] * 24, B.quantile_loss_grad(x[:, 1], y[:, 0], 0.5, "sum"))


@given(
    st.floats(-1e6, 1e6, allow_subnormal=False),
    st.floats(1e-6, 1 - 1e-6),
)
def test_pinball_symmetries(u, tau):
    """rho_tau(u) = rho_{1-tau}(-u), rho_tau(u) + rho_tau(-u) = |u|, rho_1/2 = |u|/2."""
    a = float(B.quantile_loss(0.0, u, tau))
    b = float(B.quantile_loss(0.0, -u, 1 - tau))
    assert math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-300)  # 1 - tau is rounded
    total = a + float(B.quantile_loss(0.0, -u, tau))
    assert math.isclose(total, abs(u), rel_tol=1e-12, abs_tol=1e-300)
    assert float(B.quantile_loss(0.0, u, 0.5)) == abs(u) / 2


def test_expected_pinball_is_minimized_at_the_quantile():
    rng = np.random.default_rng(10)
    sample = rng.exponential(size=2001)
    for tau in (0.1, 0.5, 0.9):
        grid = np.linspace(0, 4, 4001)
        risks = [float(B.quantile_loss(np.full_like(sample, c), sample, tau)) for c in grid]
        best = grid[int(np.argmin(risks))]
        assert abs(best - np.quantile(sample, tau, method="inverted_cdf")) <= 1e-3


@pytest.mark.parametrize("name", ["negative_binomial_nll_loss", "student_t_nll_loss"])
def test_parameters_of_any_broadcasting_shape(name):
    # the rule of gaussian_nll_loss's var: any shape broadcasting to input's without changing
    # it, e.g. (1, C) (one parameter per output) was refused here while gaussian accepts it
    rng = np.random.default_rng(17)
    x = rng.normal(size=(4, 3))
    target = (
        rng.poisson(3.0, size=(4, 3)) if name.startswith("negative") else rng.normal(size=(4, 3))
    )
    loss, grad = getattr(B, name), getattr(B, name + "_grad")
    n_params = 1 if name.startswith("negative") else 2
    for shape in [(1, 3), (4, 1), (1, 1), (4, 3), (1,), ()]:
        params = [rng.uniform(0.5, 3.0, size=shape) for _ in range(n_params)]
        full = [np.broadcast_to(p, x.shape).copy() for p in params]
        np.testing.assert_array_equal(
            loss(x, target, *params, reduction="none"), loss(x, target, *full, reduction="none")
        )
        grads = grad(x, target, *params, reduction="sum")
        grads_full = grad(x, target, *full, reduction="sum")
        np.testing.assert_array_equal(grads[0], grads_full[0])
        for g, g_full, p in zip(grads[1:], grads_full[1:], params, strict=True):
            assert g.shape == p.shape
            axes = tuple(i for i in range(2) if len(shape) < 2 or shape[i] == 1)
            expected = g_full.sum(axis=axes, keepdims=True).reshape(shape)
            np.testing.assert_allclose(g, expected, rtol=1e-13)
    first = "total_count" if name.startswith("negative") else "scale"
    ones = [np.ones(4)] + [np.ones((4, 3))] * (n_params - 1)
    with pytest.raises(ValueError, match=rf"one dimension short: pass {first}\[\.\.\., None\]"):
        loss(x, target, *ones)
    with pytest.raises(ValueError, match=rf"{first} must broadcast to the shape of input"):
        loss(x, target, np.ones((2, 3)), *ones[1:])


# ---------------------------------------------------------------- bad input


BAD = [
    (B.poisson_nll_loss, ([0.0], [-1.0]), {}, "target must hold non-negative counts; got -1.0"),
    (B.poisson_nll_loss, ([-0.5], [1.0]), {"log_input": False}, "input must hold non-negative"),
    (B.poisson_nll_loss, ([0.0, 1.0], [1.0]), {}, "target must have the same shape"),
    (B.poisson_nll_loss, ([0.0], [1.0]), {"eps": -1.0}, "eps must be a non-negative"),
    (B.poisson_nll_loss, ([0.0], [1.0]), {"log_input": 1}, "log_input must be True or False"),
    (B.poisson_nll_loss, ([0.0], [1.0]), {"full": "yes"}, "full must be True or False"),
    (B.poisson_nll_loss, ([0.0], [1.0]), {"reduction": "avg"}, "reduction must be one of"),
    (B.negative_binomial_nll_loss, ([0.0], [1.5], 2.0), {}, "non-negative integer counts; got 1.5"),
    (B.negative_binomial_nll_loss, ([0.0], [-2], 2.0), {}, "non-negative integer counts; got -2"),
    (B.negative_binomial_nll_loss, ([0.0], [1], -2.0), {}, "total_count must be finite non-negative"),
    (B.negative_binomial_nll_loss, ([0.0], [1], np.nan), {}, "total_count must be"),
    (B.negative_binomial_nll_loss, ([0.0, 1.0], [1, 2], [1.0, 2.0, 3.0]), {}, "total_count must broadcast"),
    (B.student_t_nll_loss, ([0.0], [1.0], 0.0, 2.0), {}, "scale must be finite positive; got 0.0"),
    (B.student_t_nll_loss, ([0.0], [1.0], 1.0, -1.0), {}, "df must be positive; got -1.0"),
    (B.student_t_nll_loss, ([0.0], [1.0], 1.0, 0.0), {}, "df must be positive; got 0.0"),
    (B.student_t_nll_loss, ([0.0], [1.0], np.inf, 2.0), {}, "scale must be finite positive"),
    (B.student_t_nll_loss, ([0.0, 1.0], [1.0, 2.0], [1.0, 2.0, 3.0], 2.0), {}, "scale must broadcast"),
    (B.quantile_loss, ([0.0], [1.0], 0.0), {}, "quantile must lie in the open interval (0, 1); got 0.0"),
    (B.quantile_loss, ([0.0], [1.0], 1.0), {}, "got 1.0"),
    (B.quantile_loss, ([0.0], [1.0], np.array([0.5, 1.5])), {}, "quantile must"),
    (B.quantile_loss, ([0.0], [1.0], np.nan), {}, "got nan"),
    (B.quantile_loss, (np.zeros((2, 3)), np.zeros((2, 2))), {"quantile": 0.5}, "target must have"),
    (B.quantile_loss, (np.zeros((2, 3)), np.zeros((2, 3)), np.ones(2) / 2), {}, "quantile must broadcast"),
]  # fmt: skip


@pytest.mark.parametrize("index", range(len(BAD)))
def test_bad_input_is_a_value_error_naming_the_argument(index):
    f, args, kwargs, message = BAD[index]
    with pytest.raises(ValueError) as info:
        f(*args, **kwargs)
    assert message in str(info.value)
    grad = getattr(B, f.__name__ + "_grad")
    with pytest.raises(ValueError):
        grad(*args, **kwargs)


@pytest.mark.parametrize("full", [False, True])
def test_poisson_loss_where_both_terms_overflow_float64(full):
    # e^x and y x both beyond float64 (inf - inf): the loss takes the sign of the exact
    # e^x - y x, +inf where x - log x > log y (e^x wins) and -inf otherwise
    x = np.array([1e308, 1e306, 710.0, 800.0])
    y = np.array([7.4, 200.0, 1e308, 1e308])
    if full:  # (the Stirling term of y = 1e308 overflows too: counts of that size are left out)
        x, y = x[[0, 1, 3]], np.array([7.4, 200.0, 300.0])
    expected = []
    with mpmath.workdps(50):
        for xi, yi in zip(x, y, strict=True):
            exact = mpmath.exp(mpmath.mpf(xi)) - mpmath.mpf(yi) * mpmath.mpf(xi)
            expected.append(np.inf if exact > 0 else -np.inf)
    got = lossutils.poisson_nll_loss(x, y, full=full, reduction="none")
    np.testing.assert_array_equal(np.sign(got), np.sign(expected))
    assert np.all(np.isinf(got))
    assert lossutils.poisson_nll_loss(x[:2], y[:2], full=full, reduction="sum") == np.inf


@pytest.mark.parametrize("as_array", [False, True])
def test_quantile_float64_tiny_and_subnormal_levels_within_1_ulp(as_array):
    # a level below 2^-960 times a residual gives a loss below 2^-960, which is formed by
    # scaling; the level must be scaled too (Dekker's product of a tiny level and a residual
    # in [1/2, 1) underflows: 3e15 ULP off at a subnormal level). Levels subnormal and normal
    # on both sides of 2^-1022, residuals of both signs, losses from subnormal to 1e-250
    rng = np.random.default_rng(61)
    levels = [
        5e-324,
        1.5e-323,
        2.0**-1060 * 3,
        1e-310,
        2.0**-1022,
        2.0**-1000 * 1.3,
        1e-300,
        1e-250,
    ]
    n = 40
    for level in levels:
        x = rng.normal(size=n) * 10.0 ** rng.uniform(-5, 30, n)
        r = rng.choice([-1.0, 1.0], n) * 10.0 ** rng.uniform(-300, 307, n)
        y = x + r
        x[:3], y[:3] = (
            [0.0, 0.0, 5.071552186091763e19],
            [3.485055514717338e30, -7e200, 1.9038081692367341e21],
        )
        q = np.full(n, level)
        loss = B.quantile_loss(x, y, q if as_array else level, reduction="none")
        _check(loss, REF["quantile"](x, y, q), np.float64, 0 * x, 1.0, f"quantile_loss q={level!r}")
        g = B.quantile_loss_grad(x, y, q if as_array else level, reduction="none")
        np.testing.assert_array_equal(
            g, np.where(y > x, -level, np.where(y < x, 1 - level, 0.5 - level))
        )
    # levels of one array: subnormal, tiny and ordinary entries side by side
    q = np.array([5e-324, 0.3, 1.5e-323, 0.9, 1e-300, 2.0**-1074 * 7])
    x, y = np.zeros(6), np.full(6, 3.485055514717338e30)
    loss = B.quantile_loss(x, y, q, reduction="none")
    _check(loss, REF["quantile"](x, y, q), np.float64, 0 * x, 1.0, "quantile_loss mixed levels")


@pytest.mark.parametrize("level", [0.1, 0.25, 0.5, 0.9])
def test_quantile_float64_residual_beyond_the_largest_float(level):
    # y - x overflows while rho(y - x) may not (y = 1e308, x = -1e308 at q = 1/4: 5e307, it
    # was inf): the loss from the halved arguments, inf only where it overflows; levels as
    # a scalar (blocks), as an array (broadcast), with ordinary elements beside
    big = np.finfo(np.float64).max
    x = np.array([-1e308, 1e308, -0.9 * big, big, 3.0, -big, 0.5 * big])
    y = np.array([1e308, -1e308, 0.9 * big, -big, 1.0, 0.6 * big, -0.6 * big])
    expected = REF["quantile"](x, y, np.full(x.size, level))
    exact = np.array([float(v) if abs(v) <= big else np.inf for v in expected])
    for q in (level, np.full(x.size, level)):
        loss = B.quantile_loss(x, y, q, reduction="none")
        ulps = _abs_error(loss, expected)[np.isfinite(exact)] / _ulp(
            np.float64, exact[np.isfinite(exact)]
        )
        assert ulps.max() <= 1.0, (level, loss)
        np.testing.assert_array_equal(np.isinf(loss), np.isinf(exact))
        total = B.quantile_loss(x[4:5], y[4:5], q if np.ndim(q) == 0 else q[4:5], reduction="sum")
        assert total == loss[4]
    g = B.quantile_loss_grad(x, y, level, reduction="none")
    np.testing.assert_array_equal(g, np.where(y > x, -level, 1 - level))


@pytest.mark.parametrize("dtype", [np.float32, np.float16])
def test_quantile_subnormal_levels_of_narrow_dtypes_within_1_ulp(dtype):
    # a subnormal level of the dtype is normal in float64, where float32 and float16 compute
    rng = np.random.default_rng(62)
    tiny = np.finfo(dtype).smallest_subnormal
    n = 60
    big = float(np.finfo(dtype).max) / 4
    x = (rng.normal(size=n) * 10.0 ** rng.uniform(-2, np.log10(big), n)).astype(dtype)
    y = (rng.normal(size=n) * 10.0 ** rng.uniform(-2, np.log10(big), n)).astype(dtype)
    for level in (tiny, 3 * tiny, np.finfo(dtype).smallest_normal / 2):
        level = dtype(level)
        loss = B.quantile_loss(x, y, level, reduction="none")
        x64, y64 = x.astype(np.float64), y.astype(np.float64)
        q = np.full(n, float(level))
        _check(loss, REF["quantile"](x64, y64, q), dtype, 0 * x64, 1.0, f"quantile_loss {level!r}")
