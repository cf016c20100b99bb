"""The preference losses (Bradley-Terry, DPO) against mpmath, in every dtype.

The exact references evaluate the textbook formulas at the same rounded inputs with
400 digits; errors are in ULP of the output dtype, over large scores with small gaps
(where the margin cancels), confident comparisons (losses near 1e-300), label
smoothing near its optimum, infinities, empty batches and bad input.
"""

from __future__ import annotations

import mp_reference as ref
import mpmath
import numpy as np
import pytest

import lossutils
from lossutils import preference as P
from lossutils.testing import assert_gradient_matches

DTYPES = [np.float16, np.float32, np.float64]
REDUCTIONS = ("mean", "sum", "none")


def _exact_margin(pc, pr, rc, rr, beta):
    with mpmath.workdps(ref.DIGITS):
        return ref.mp(beta) * ((ref.mp(pc) - ref.mp(rc)) - (ref.mp(pr) - ref.mp(rr)))


def _exact(pc, pr, rc, rr, beta, eps):
    """Per comparison: the loss and d loss / d pc (exact, at 400 digits)."""
    pc, pr, rc, rr = (np.asarray(a, dtype=np.float64) for a in (pc, pr, rc, rr))
    loss = np.empty(pc.shape, dtype=object)
    grad = np.empty(pc.shape, dtype=object)
    with mpmath.workdps(ref.DIGITS):
        e = ref.mp(eps)
        for i in np.ndindex(pc.shape):
            z = _exact_margin(pc[i], pr[i], rc[i], rr[i], beta)
            loss[i] = (1 - e) * mpmath.log1p(mpmath.exp(-z)) + e * mpmath.log1p(mpmath.exp(z))
            grad[i] = ref.mp(beta) * (e - 1 / (1 + mpmath.exp(z)))
    return loss, grad


def _scaled(values, reduction, n):
    if reduction != "mean":
        return values
    out = np.empty(values.shape, dtype=object)
    with mpmath.workdps(ref.DIGITS):
        for i in np.ndindex(values.shape):
            out[i] = values[i] / n
    return out


def _cases(dtype, rng):
    """(pc, pr, rc, rr): ordinary, large log-probabilities with small margins, confident."""
    big = 3e4 if dtype == np.float16 else 1e4
    n = 16
    ordinary = [rng.normal(-20, 5, size=n) for _ in range(4)]
    # log-probabilities of size big whose margin is a few units: the differences cancel
    base = -big * rng.uniform(0.5, 1, size=n)
    large = [base, base + rng.normal(0, 4, size=n), base + rng.normal(0, 4, size=n), base]
    # confident: margins of 30 to 700 (float64) or to the dtype's range
    top = 700 if dtype == np.float64 else 80
    gaps = np.linspace(30, top, n)
    confident = [-gaps * 0.5, gaps * 0.5 - 1000, -np.ones(n), np.full(n, -1000.0)]
    with np.errstate(over="ignore"):
        return [
            [np.asarray(a).astype(dtype) for a in case] for case in (ordinary, large, confident)
        ]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("beta,eps", [(1.0, 0.0), (0.1, 0.0), (0.5, 0.1), (2.0, 0.3)])
def test_dpo_within_3_ulp(dtype, beta, eps):
    rng = np.random.default_rng(1)
    for pc, pr, rc, rr in _cases(dtype, rng):
        exact, exact_grad = _exact(pc, pr, rc, rr, beta, eps)
        for reduction in REDUCTIONS:
            got = P.dpo_loss(pc, pr, rc, rr, beta, eps, reduction)
            assert np.asarray(got).dtype == dtype
            # with eps > 0 a weighted sum of two softplus terms: one rounding more
            bound = 2 if eps == 0 else 3
            ref.assert_ulp_in(got, ref.reduced(exact, reduction), dtype, bound, label=reduction)
            d_c, d_r = P.dpo_loss_grad(pc, pr, rc, rr, beta, eps, reduction)
            assert d_c.dtype == d_r.dtype == dtype and d_c.shape == pc.shape
            expected = _scaled(exact_grad, reduction, pc.size)
            if eps == 0 or dtype != np.float64:
                bound = _grad_bound(dtype, beta, reduction)
                ref.assert_ulp_in(d_c, expected, dtype, max_ulp=bound, label="d_chosen")
            else:
                # eps - sigma(-z) cancels near its zero: a few float64 ULP of beta (Notes)
                scale = beta / (pc.size if reduction == "mean" else 1)
                error = np.abs(d_c - np.array([float(v) for v in expected.ravel()]))
                assert np.all(error <= 4 * np.spacing(scale))
            np.testing.assert_array_equal(d_r, -d_c)


@pytest.mark.parametrize("dtype", DTYPES)
def test_bradley_terry_within_2_ulp(dtype):
    rng = np.random.default_rng(2)
    for pc, pr, _, _ in _cases(dtype, rng):
        exact, exact_grad = _exact(pc, pr, np.zeros_like(pc), np.zeros_like(pr), 1.0, 0.0)
        for reduction in REDUCTIONS:
            got = P.bradley_terry_loss(pc, pr, reduction)
            assert np.asarray(got).dtype == dtype
            ref.assert_ulp_in(got, ref.reduced(exact, reduction), dtype, max_ulp=2)
            d_c, d_r = P.bradley_terry_loss_grad(pc, pr, reduction)
            expected = _scaled(exact_grad, reduction, pc.size)
            ref.assert_ulp_in(d_c, expected, dtype, _grad_bound(dtype, 1.0, reduction))
            np.testing.assert_array_equal(d_r, -d_c)


def _grad_bound(dtype, beta, reduction):
    """The gradients' bound in ULP: 2 where rounded once from float64; in float64 the
    sigmoid's exponential, 1 + u and the quotient round, and the product with beta
    (exact for 1) and a mean's scale beta / n (as the docstrings say)."""
    if dtype != np.float64:
        return 2.0
    return (3.5 if beta == 1 else 4.5) + (0.5 if reduction == "mean" else 0.0)


# The worst margins (times 1 / beta) of a sweep of 2.4e7 float64 margins in [-40, 40] against
# long double references: the float64 gradients were 2.4 to 2.5 ULP off (beta = 1; 2.9 to
# 3.0 for a mean) and 3.6 to 3.8 (beta = 0.1; 4.1 to 4.2 for a mean), beyond the 2 ULP the
# tests checked on a few points.
_WORST_MARGINS = {
    1.0: [4.848732687341339, 2.7106515936139477, 4.157442219872685, 3.4350813383570173]
    + [4.85018116138999, 3.4497159738427285, 2.0618895958406913, 2.015703356010298]
    + [2.0020268663473235, 2.762893061262833],
    0.1: [240.37890102190445, 302.8921999566124, 47.17871031718482, 53.84940381914717]
    + [192.7098214308242, 261.650455591387, 47.08730624186758, 53.8068665881255]
    + [171.6523435655376, 220.13019713928585],
}


@pytest.mark.parametrize("beta", [1.0, 0.1])
def test_float64_gradients_densely_within_their_stated_bound(beta):
    worst = np.array(_WORST_MARGINS[beta])
    steps = np.arange(-12, 13)
    near = np.concatenate([w + steps * np.spacing(w) for w in worst])
    through = np.linspace(-40, 40, 641) / beta
    pc = np.concatenate([near, through, -near])
    zeros = np.zeros_like(pc)
    exact, exact_grad = _exact(pc, zeros, zeros, zeros, beta, 0.0)
    for reduction in ("none", "mean"):
        expected = _scaled(exact_grad, reduction, pc.size)
        bound = _grad_bound(np.float64, beta, reduction)
        d_c, _ = P.dpo_loss_grad(pc, zeros, zeros, zeros, beta, 0.0, reduction)
        ref.assert_ulp_in(d_c, expected, np.float64, bound, label=f"dpo {reduction}")
        if beta == 1:
            d_c, _ = P.bradley_terry_loss_grad(pc, zeros, reduction)
            ref.assert_ulp_in(d_c, expected, np.float64, bound, label=f"bt {reduction}")


def test_bradley_terry_is_dpo_with_zero_reference_and_beta_one():
    rng = np.random.default_rng(3)
    c, r = rng.normal(size=(2, 5, 3))
    zero = np.zeros_like(c)
    for reduction in REDUCTIONS:
        np.testing.assert_array_equal(
            P.bradley_terry_loss(c, r, reduction), P.dpo_loss(c, r, zero, zero, 1.0, 0.0, reduction)
        )


def test_a_large_margin_that_cancels_keeps_its_digits():
    # the margin 1e4 - (1e4 - 2**-40) is 2**-40; a naive float64 evaluation is exact here
    # too, but at 1e4 + 0.1 - 1e4 it is not: the exact margin of the rounded inputs counts
    c = np.array([1e4 + 0.1])
    r = np.array([1e4])
    exact, _ = _exact(c, r, np.zeros(1), np.zeros(1), 1.0, 0.0)
    ref.assert_ulp_in(P.bradley_terry_loss(c, r, "none"), exact, np.float64, max_ulp=1)


def test_confident_comparison_has_a_tiny_loss_not_zero():
    loss = P.bradley_terry_loss([700.0], [0.0])
    exact = mpmath.log1p(mpmath.exp(-700))
    ref.assert_ulp_in(loss, exact, np.float64, max_ulp=1)
    assert 0 < loss < 1e-300


def test_infinite_scores_give_the_limits():
    c = np.array([np.inf, 0.0, -np.inf, 5.0])
    r = np.array([0.0, np.inf, 0.0, -np.inf])
    np.testing.assert_array_equal(P.bradley_terry_loss(c, r, "none"), [0, np.inf, np.inf, 0])
    d_c, d_r = P.bradley_terry_loss_grad(c, r, "sum")
    np.testing.assert_array_equal(d_c, [0, -1, -1, 0])
    np.testing.assert_array_equal(d_r, [0, 1, 1, 0])
    # a policy that gives the rejected response probability 0: margin +inf, loss 0
    z = [0.0]
    assert P.dpo_loss(z, [-np.inf], [-1.0], [-1.0]) == 0
    # with label smoothing the loss of an infinite margin is infinite (the flipped label)
    assert P.dpo_loss(z, [-np.inf], [-1.0], [-1.0], label_smoothing=0.1) == np.inf
    g = P.dpo_loss_grad(z, [-np.inf], [-1.0], [-1.0], beta=0.5, label_smoothing=0.1)
    assert g[0][0] == pytest.approx(0.05) and g[1][0] == pytest.approx(-0.05)


def test_nan_propagates():
    assert np.isnan(P.bradley_terry_loss([np.nan, 1.0], [0.0, 0.0], "none")[0])
    assert np.isnan(P.dpo_loss([np.nan], [0.0], [0.0], [0.0]))


@pytest.mark.parametrize("dtype", DTYPES)
def test_empty_batches(dtype):
    e = np.zeros(0, dtype=dtype)
    for loss, grad, args in (
        (P.bradley_terry_loss, P.bradley_terry_loss_grad, (e, e)),
        (P.dpo_loss, P.dpo_loss_grad, (e, e, e, e)),
    ):
        assert np.isnan(loss(*args)) and loss(*args).dtype == dtype
        assert loss(*args, reduction="sum") == 0
        none = loss(*args, reduction="none")
        assert none.shape == (0,) and none.dtype == dtype
        for reduction in REDUCTIONS:
            grads = grad(*args, reduction=reduction)
            assert len(grads) == 2 and all(g.shape == (0,) and g.dtype == dtype for g in grads)


def test_gradients_match_finite_differences():
    rng = np.random.default_rng(4)
    pc, pr, rc, rr = rng.normal(-5, 2, size=(4, 3, 2))
    for reduction in REDUCTIONS:
        kwargs = {"reduction": reduction}
        assert_gradient_matches(
            P.bradley_terry_loss, P.bradley_terry_loss_grad, (pc, pr), (0, 1), kwargs
        )
        for eps in (0.0, 0.2):
            kw = dict(kwargs, beta=0.7, label_smoothing=eps)
            assert_gradient_matches(P.dpo_loss, P.dpo_loss_grad, (pc, pr, rc, rr), (0, 1), kw)


def test_label_smoothing_is_a_mixture_of_the_two_labels():
    # -(1 - eps) log sigma(z) - eps log sigma(-z): the likelihood of a label flipped w.p. eps
    rng = np.random.default_rng(5)
    pc, pr, rc, rr = rng.normal(-5, 2, size=(4, 6))
    flipped = P.dpo_loss(pr, pc, rr, rc, 0.3, 0.0, "none")
    plain = P.dpo_loss(pc, pr, rc, rr, 0.3, 0.0, "none")
    smoothed = P.dpo_loss(pc, pr, rc, rr, 0.3, 0.25, "none")
    np.testing.assert_allclose(smoothed, 0.75 * plain + 0.25 * flipped, rtol=1e-14)


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: P.bradley_terry_loss([1.0, 2.0], [1.0]), r"rejected must have the same shape"),
        (lambda: P.bradley_terry_loss(["a"], [1.0]), r"chosen must be a real numeric array"),
        (lambda: P.dpo_loss([1.0], [1.0], [1.0], [1.0], beta=0.0), r"beta must be a positive"),
        (lambda: P.dpo_loss([1.0], [1.0], [1.0], [1.0], beta=np.inf), r"beta must be a positive"),
        (
            lambda: P.dpo_loss([1.0], [1.0], [1.0], [1.0], label_smoothing=1.5),
            r"label_smoothing must be a number in \[0, 1\]; got 1.5",
        ),
        (
            lambda: P.dpo_loss([1.0], [1.0, 2.0], [1.0], [1.0]),
            r"policy_rejected_logps must have the same shape as policy_chosen_logps",
        ),
        (lambda: P.dpo_loss_grad([1.0], [1.0], [1.0], [1.0], reduction="avg"), r"reduction"),
    ],
)
def test_bad_arguments_are_named(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_exported_from_the_package():
    for name in P.__all__:
        assert getattr(lossutils, name) is getattr(P, name)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("beta", [1.0, 0.1])
def test_narrow_margins_on_both_sides_of_the_plain_float64_switch(dtype, beta):
    # float32 and float16 margins are formed in plain float64 while beta (|a - b| + |c - d|)
    # is at most 2^21, and exactly above it: there 2^60 + x rounds x away in float64 (the
    # plain margin would be 0), and just below it the plain margin is exact; float64 margins
    # are always exact (their error term here is most of the margin)
    x = np.linspace(-8, 8, 9)
    big = 2.0**14 if dtype == np.float16 else 2.0**60
    below = 2.0**10 if dtype == np.float16 else 2.0**19
    pc = np.concatenate([np.full(9, big), np.full(9, below), x]).astype(dtype)
    rc = np.concatenate([-x - 0.375, -below + x, x / 2]).astype(dtype)
    pr = np.concatenate([np.full(9, big), np.full(9, below), -x]).astype(dtype)
    rr = np.concatenate([np.zeros(9), -below * np.ones(9), np.zeros(9)]).astype(dtype)
    exact, exact_grad = _exact(pc, pr, rc, rr, beta, 0.0)
    for reduction in REDUCTIONS:
        loss, (d_c, d_r) = P.dpo_loss_value_and_grad(pc, pr, rc, rr, beta, 0.0, reduction)
        ref.assert_ulp_in(loss, ref.reduced(exact, reduction), dtype, max_ulp=2)
        expected = _scaled(exact_grad, reduction, pc.size)
        ref.assert_ulp_in(d_c, expected, dtype, max_ulp=2)


@pytest.mark.parametrize("beta", [0.1, 1e-3, 0.4, 0.24, 1e-10, 3.0])
@pytest.mark.parametrize("eps", [0.0, 0.1])
def test_margins_whose_differences_overflow_but_not_times_beta(beta, eps):
    # the differences of log-probabilities beyond 1e308 overflow float64, beta times them
    # need not: the loss is finite (it was inf); margins of both signs, all four inputs large;
    # differences beyond 1e300 are outside Dekker's product's domain (beta 1e-10 gave NaN)
    rng = np.random.default_rng(71)
    n = 20
    top = np.finfo(np.float64).max
    pc, pr, rc, rr = (rng.choice([-1.0, 1.0], n) * rng.uniform(0.3, 1, n) * top for _ in range(4))
    pc[:2], pr[:2], rc[:2], rr[:2] = [-1e308, 1e308], [1e308, -1e308], [0.0, 0.0], [0.0, 0.0]
    pc[2:4], pr[2:4], rc[2:4], rr[2:4] = -top, top, top, -top  # (-2 top) - (2 top)
    pc[4], pr[4], rc[4], rr[4] = (
        -3.3562566827756257e307,
        4.273872375278069e307,
        3.23238710019244e307,
        -1.0862516158246135e308,
    )
    pc[5], pr[5], rc[5], rr[5] = 1e308, 1e-300, -1e308, 5e-324  # a tiny term beside huge ones
    # differences near 1e308 that cancel to about 1e304: the margin's low part counts
    pc[6], pr[6], rc[6], rr[6] = 0.49 * top, 0.4901 * top, -0.495 * top, -0.4951 * top
    pc[7], pr[7], rc[7], rr[7] = 1.3e308, 0.0, 0.0, 1e-300  # one difference above 1e300
    exact_loss, exact_grad = _exact(pc, pr, rc, rr, beta, eps)
    loss = P.dpo_loss(pc, pr, rc, rr, beta=beta, label_smoothing=eps, reduction="none")
    assert np.isfinite(loss).sum() > n // 4  # most of the exact losses are finite
    ref.assert_ulp_in(loss, exact_loss, np.float64, max_ulp=3, label="dpo overflowing differences")
    d_pc, d_pr = P.dpo_loss_grad(pc, pr, rc, rr, beta=beta, label_smoothing=eps, reduction="none")
    ref.assert_ulp_in(d_pc, exact_grad, np.float64, max_ulp=3, label="dpo gradient")
    np.testing.assert_array_equal(d_pr, -d_pc)


def test_margins_that_overflow_give_inf_or_zero():
    # neighbours: where beta times the differences overflows too, the loss is inf (or 0)
    top = np.finfo(np.float64).max
    loss = P.dpo_loss(
        [-1e308, 1e308], [1e308, -1e308], [0.0, 0.0], [0.0, 0.0], beta=1.0, reduction="none"
    )
    np.testing.assert_array_equal(loss, [np.inf, 0.0])
    loss = P.dpo_loss([-top], [top], [top], [-top], beta=0.26, reduction="none")
    assert loss[0] == np.inf  # 0.26 * 4 top overflows
    assert P.dpo_loss([-1e308], [1e308], [np.inf], [0.0], reduction="none")[0] == np.inf
    assert np.isnan(P.dpo_loss([-1e308], [1e308], [np.nan], [0.0], reduction="none")[0])
    # with label smoothing the loss of a margin beyond 2^1024 is eps z or (1 - eps) |z|
    args = [-1e308, 1e308, 1e308], [1e308, -1e308, -1e308], [0.0] * 3, [0.0] * 3
    loss = P.dpo_loss(*args, beta=1.0, label_smoothing=0.1, reduction="none")
    exact, _ = _exact(*(np.array(a) for a in args), 1.0, 0.1)
    assert loss[0] == np.inf  # 0.9 * 2e308
    ref.assert_ulp_in(loss[1:], exact[1:], np.float64, max_ulp=3, label="smoothed, 0.1 * 2e308")
    loss = P.dpo_loss(*args, beta=1.0, label_smoothing=1.0, reduction="none")
    np.testing.assert_array_equal(loss, [0.0, np.inf, np.inf])
    # Bradley-Terry: the margin of two scores is the loss itself where it overflows
    np.testing.assert_array_equal(
        P.bradley_terry_loss([1e308, -1e308, -1e308], [-1e308, 1e308, 8e307], "none"),
        [0.0, np.inf, np.inf],
    )
    exact, _ = _exact(np.array([-1e308]), np.array([7.9e307]), np.zeros(1), np.zeros(1), 1.0, 0.0)
    ref.assert_ulp_in(
        P.bradley_terry_loss([-1e308], [7.9e307], "none"), exact, np.float64, max_ulp=2
    )


@pytest.mark.parametrize("eps", [0.0, 0.1])
def test_a_mean_of_losses_beyond_the_range_that_is_not(eps):
    # a loss of 2e308 beside small ones: the mean of three is about 1.3e308 (8e307 with
    # eps = 0.1 on the large margin's side); without label smoothing it was inf
    pc, pr = np.array([-1e308, 5.0, 1.0]), np.array([1e308, 0.0, 2.0])
    zero = np.zeros(3)
    loss, _ = _exact(pc, pr, zero, zero, 1.0, eps)
    expected = ref.reduced(loss, "mean")
    got = P.dpo_loss(pc, pr, zero, zero, beta=1.0, label_smoothing=eps)
    ref.assert_ulp_in(got, expected, np.float64, max_ulp=3)
    assert got == P.dpo_loss_value_and_grad(pc, pr, zero, zero, 1.0, eps)[0]
    assert P.dpo_loss(pc, pr, zero, zero, beta=1.0, label_smoothing=eps, reduction="sum") == np.inf
    if eps == 0:
        ref.assert_ulp_in(P.bradley_terry_loss(pc, pr), expected, np.float64, max_ulp=3)


@pytest.mark.parametrize("dtype", [np.float16, np.float32])
def test_plain_margins_on_both_sides_of_the_one_exp_range(dtype):
    # float32 and float16 margins take softplus(-z) and sigma(-z) from one exp(-z) while
    # |z| <= 708 (exp(-z) and exp(z) normal in float64), the careful pair beyond: margins
    # of a few units, next to 708, where exp(-z) overflows (709.8) or sigma(-z) underflows
    # (745), and far beyond, of either sign
    top = 6e4 if dtype == np.float16 else 1e5
    gaps = np.array([0.0, 0.5, 3.0, 30.0, 707.5, 708.5, 709.5, 710.0, 744.0, 746.0, 800.0, top])
    pc = np.concatenate([gaps / 2, -gaps / 2]).astype(dtype)
    pr = np.concatenate([-gaps / 2, gaps / 2]).astype(dtype)
    zeros = np.zeros_like(pc)
    exact, exact_grad = _exact(pc, pr, zeros, zeros, 1.0, 0.0)
    for reduction in REDUCTIONS:
        loss, (d_c, d_r) = P.bradley_terry_loss_value_and_grad(pc, pr, reduction)
        ref.assert_ulp_in(loss, ref.reduced(exact, reduction), dtype, max_ulp=2)
        ref.assert_ulp_in(d_c, _scaled(exact_grad, reduction, pc.size), dtype, max_ulp=2)
        assert not np.signbit(d_r[d_r == 0]).any()
    exact, exact_grad = _exact(pc, pr, zeros, zeros, 0.5, 0.0)
    loss, (d_c, _) = P.dpo_loss_value_and_grad(pc, pr, zeros, zeros, 0.5, 0.0, "none")
    ref.assert_ulp_in(loss, exact, dtype, max_ulp=2)
    ref.assert_ulp_in(d_c, exact_grad, dtype, max_ulp=2)


@pytest.mark.parametrize("scale", [50.0, 1e4, 1e12])
def test_float64_margins_whose_differences_round_and_cancel(scale):
    # differences of about 2 scale that round (the policy's and the reference's
    # log-probabilities not within a factor 2) cancel to margins of a few units: their
    # error terms (about 1e-14, 1e-12 and 1e-4) count; the margins are formed negated
    rng = np.random.default_rng(3)
    n = 64
    base = -scale * rng.uniform(0.5, 1, n)
    pc, pr = base + rng.normal(0, 4, n), base + rng.normal(0, 3, n) * rng.choice([1, 1e-6], n)
    rc, rr = 3 * base, 3 * base
    exact, exact_grad = _exact(pc, pr, rc, rr, 0.1, 0.0)
    for reduction in REDUCTIONS:
        loss, (d_c, _) = P.dpo_loss_value_and_grad(pc, pr, rc, rr, 0.1, 0.0, reduction)
        ref.assert_ulp_in(loss, ref.reduced(exact, reduction), np.float64, max_ulp=2)
        ref.assert_ulp_in(d_c, _scaled(exact_grad, reduction, n), np.float64, max_ulp=2)


@pytest.mark.parametrize("beta", [1.0, 0.9, 0.1])
def test_float64_margins_that_are_error_terms_alone(beta):
    # 1e20 - 1000 rounds to 1e20: the rounded differences cancel to 0 and the margin, -1000
    # beta (beyond the one exp's range but for beta 0.1), is its error term alone: the loss
    # is about 1000 beta, not inf, and the gradient beta
    pc, pr, rc, rr = [1e20, 1e20], [1e20, -1e20], [1000.0, 1000.0], [0.0, -2e20]
    exact, exact_grad = _exact(pc, pr, rc, rr, beta, 0.0)
    loss, (d_c, _) = P.dpo_loss_value_and_grad(pc, pr, rc, rr, beta, 0.0, "none")
    ref.assert_ulp_in(loss, exact, np.float64, max_ulp=1)
    ref.assert_ulp_in(d_c, exact_grad, np.float64, max_ulp=2)


HUGE = -3.7248492932906924e21
REFERENCE = -5.775327799344426


@pytest.mark.parametrize(
    "pc, pr, rc, rr, beta, eps",
    [
        (HUGE, HUGE, REFERENCE - 705.0, REFERENCE, 1.0, 0.0),
        (HUGE, HUGE, 10 * (REFERENCE - 705.0), 10 * REFERENCE, 0.1, 0.0),
        (HUGE, -3.7248492932904685e21, -223863934.31494558, REFERENCE, 0.1, 1.0),
    ],
)
def test_float64_margins_of_huge_log_probabilities_that_cancel(pc, pr, rc, rr, beta, eps):
    # (pc - rc) and (pr - rr) round to the same float64 or to neighbours: the margin, a few
    # hundred (a loss near 1e-306), is carried by their error terms, whose difference needs
    # more than 53 bits (it was rounded: 373 ULP off in the first case, 86 in the last)
    exact, exact_grad = _exact([pc], [pr], [rc], [rr], beta, eps)
    loss, (d_c, _) = P.dpo_loss_value_and_grad([pc], [pr], [rc], [rr], beta, eps, "none")
    ref.assert_ulp_in(loss, exact, np.float64, max_ulp=2)
    ref.assert_ulp_in(d_c, exact_grad, np.float64, max_ulp=5)


@pytest.mark.parametrize("beta", [1e10, 1e3, 2.0])
def test_float64_gradient_below_the_normal_range_times_a_large_beta(beta):
    # beta sigma(-z) with sigma(-z) subnormal (z beyond 708): within 4 beta 2^-1074, as the
    # docstring and the API page state (the sigmoid keeps only its absolute accuracy)
    z = np.array([709.0, 725.0, 740.0, 745.0])
    pc = z / beta  # (exact margins: pc, then zeros)
    zeros = np.zeros_like(pc)
    _, exact_grad = _exact(pc, zeros, zeros, zeros, beta, 0.0)
    _, (d_c, _) = P.dpo_loss_value_and_grad(pc, zeros, zeros, zeros, beta, 0.0, "none")
    with mpmath.workdps(ref.DIGITS):
        errors = [abs(ref.mp(g) - e) for g, e in zip(d_c, exact_grad, strict=True)]
        assert max(errors) <= 4 * beta * ref.mp(2) ** -1074


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_spans_on_two_threads_give_the_bits_of_one_thread(dtype, monkeypatch):
    # 600,000 comparisons: spans of about a megabyte of margins, on up to two threads; the
    # spans' sums are added in order, so neither the losses nor their reductions change
    rng = np.random.default_rng(9)
    args = [(-50 + 5 * rng.standard_normal(600_000)).astype(dtype) for _ in range(4)]
    results = {}
    for workers in (1, 2):
        monkeypatch.setattr(lossutils._blocks, "WORKERS", workers)
        results[workers] = [
            P.dpo_loss_value_and_grad(*args, 0.1, eps, reduction)
            for eps in (0.0, 0.1)
            for reduction in REDUCTIONS
        ] + [P.bradley_terry_loss_value_and_grad(*args[:2], reduction) for reduction in REDUCTIONS]
    for one, two in zip(results[1], results[2], strict=True):
        np.testing.assert_array_equal(one[0], two[0], strict=True)
        for g1, g2 in zip(one[1], two[1], strict=True):
            np.testing.assert_array_equal(g1, g2, strict=True)
