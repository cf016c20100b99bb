"""Entropies, KL divergences, the Gaussian KL and the VAE loss.

Expected values come from mpmath at 400 digits (where the float64 formulas
cancel), from a SymPy integration of the Gaussian KL, from PyTorch's documented
``kl_div`` semantics written out as explicit formulas, and from finite differences.
"""

from __future__ import annotations

import math

import mpmath
import numpy as np
import pytest
import sympy as sp
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import lossutils
from lossutils import (
    categorical_cross_entropy,
    categorical_cross_entropy_grad,
    entropy,
    gaussian_kl,
    gaussian_kl_grad,
    kl_div,
    kl_div_grad,
    kl_div_value_and_grad,
    kl_divergence,
    kl_divergence_grad,
    vae_loss,
    vae_loss_grad,
)
from lossutils.testing import assert_gradient_matches, assert_matches_sympy, assert_ulp_close

DIGITS = 400


def _mp_rows(f, *arrays):
    """Apply ``f`` (lists of exact mpmath numbers -> mpmath number) to each last-axis row."""
    arrays = [np.asarray(a, dtype=np.float64) for a in arrays]
    out = np.empty(arrays[0].shape[:-1], dtype=object)
    with mpmath.workdps(DIGITS):
        for index in np.ndindex(out.shape):
            out[index] = f(*([mpmath.mpf(float(v)) for v in a[index]] for a in arrays))
    return out


def mp_kl(p, q):
    def row(p, q):
        if any(a > 0 and b == 0 for a, b in zip(p, q, strict=True)):
            return mpmath.inf
        return mpmath.fsum(a * mpmath.log(a / b) for a, b in zip(p, q, strict=True) if a > 0)

    return _mp_rows(row, p, q)


def mp_cross_entropy(p, q):
    return _mp_rows(
        lambda p, q: -mpmath.fsum(a * mpmath.log(b) for a, b in zip(p, q, strict=True) if a > 0),
        p,
        q,
    )


def mp_entropy(p):
    return _mp_rows(lambda p: -mpmath.fsum(a * mpmath.log(a) for a in p if a > 0), p)


def mp_gaussian_kl(mu, logvar, mu_prior, logvar_prior):
    """The textbook formula, which cannot cancel at 400 digits for these inputs."""

    def row(mu, lv, mu0, lv0):
        return mpmath.fsum(
            (b0 - b + (mpmath.exp(b) + (m - m0) ** 2) / mpmath.exp(b0) - 1) / 2
            for m, b, m0, b0 in zip(mu, lv, mu0, lv0, strict=True)
        )

    return _mp_rows(row, mu, logvar, mu_prior, logvar_prior)


def mp_bce_with_logits(x, z):
    """-[x log sigmoid(z) + (1 - x) log(1 - sigmoid(z))], summed over the row."""

    def row(x, z):
        return mpmath.fsum(
            -(a * -mpmath.log1p(mpmath.exp(-b)) + (1 - a) * -mpmath.log1p(mpmath.exp(b)))
            for a, b in zip(x, z, strict=True)
        )

    return _mp_rows(row, x, z)


def _close_distributions(rng, shape, rel):
    p = rng.dirichlet(np.ones(shape[-1]), size=shape[:-1])
    q = p * np.exp(rel * rng.normal(size=p.shape))
    return p, q / q.sum(axis=-1, keepdims=True)


# --- entropy, cross-entropy, KL ---------------------------------------------------------


def test_zero_log_zero_is_zero_and_infinite_divergence():
    p = np.array([[0.5, 0.5, 0.0], [0.5, 0.5, 0.0], [0.0, 1.0, 0.0]])
    q = np.array([[0.5, 0.0, 0.5], [0.25, 0.25, 0.5], [0.0, 1.0, 0.0]])
    assert entropy(p).tolist() == [math.log(2), math.log(2), 0.0]
    assert kl_divergence(p, q).tolist() == [math.inf, math.log(2), 0.0]
    assert categorical_cross_entropy(p, q).tolist() == [math.inf, math.log(4), 0.0]
    with np.errstate(divide="ignore"):
        grad = kl_divergence_grad(p, q)
    assert grad[0].tolist() == [-1.0, -math.inf, 0.0]
    assert np.array_equal(grad, categorical_cross_entropy_grad(p, q))


@pytest.mark.parametrize("rel", [0.0, 1e-14, 1e-9, 1e-5, 1e-2, 0.3, 2.0])
@pytest.mark.parametrize("classes", [2, 5, 40])
def test_kl_divergence_within_4_ulp_also_when_q_is_close_to_p(rng, rel, classes):
    p, q = _close_distributions(rng, (12, classes), rel)
    assert_ulp_close(kl_divergence(p, q), mp_kl(p, q), 4, "kl_divergence")
    assert_ulp_close(categorical_cross_entropy(p, q), mp_cross_entropy(p, q), 4, "cross-entropy")


def test_kl_divergence_extremes_within_4_ulp():
    # ratios far from 1, tiny and subnormal probabilities, zeros in p
    p = np.array([[1e-300, 1 - 1e-300, 0.0], [0.5, 0.5 - 1e-310, 1e-310], [1e-5, 1 - 1e-5, 0.0]])
    q = np.array([[1e-20, 1 - 1e-20, 0.0], [0.5, 0.5 - 3e-310, 3e-310], [0.5, 0.5, 0.0]])
    assert_ulp_close(kl_divergence(p, q), mp_kl(p, q), 4)
    assert_ulp_close(kl_divergence(p, q, axis=0), mp_kl(p.T, q.T), 4)


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
@pytest.mark.parametrize("rel", [0.0, 1e-9, 1e-6, 1e-3, 0.3, 2.0])
@pytest.mark.parametrize("classes", [3, 1000])
def test_kl_divergence_rows_on_both_sides_of_the_fast_sum(rng, dtype, rel, classes):
    # large divergences keep the fast row sum (float64 terms for float32, extraction for
    # float64); tiny ones (q close to p) fail its error bound and are recomputed
    p, q = (a.astype(dtype) for a in _close_distributions(rng, (6, classes), rel))
    assert_ulp_close(kl_divergence(p, q), mp_kl(p, q), 4, "kl_divergence", dtype)


def test_entropy_within_4_ulp(rng):
    p = np.concatenate([rng.dirichlet(np.ones(6), size=20), rng.dirichlet(0.01 * np.ones(6), 20)])
    assert_ulp_close(entropy(p), mp_entropy(p), 4)


def test_tiny_kl_example():
    # q = p + (e, -e) with e = 2**-30 sums to 1 exactly: KL = 2e^2 + O(e^4)
    value = kl_divergence([0.5, 0.5], [0.5 + 2**-30, 0.5 - 2**-30])
    assert value == pytest.approx(2 * 2.0**-60, rel=1e-15)


def test_axis_argument(rng):
    p, q = _close_distributions(rng, (3, 4), 0.5)
    assert np.allclose(kl_divergence(p.T, q.T, axis=0), kl_divergence(p, q), rtol=1e-14)
    assert np.allclose(entropy(p.T, axis=0), entropy(p), rtol=1e-14)
    assert np.allclose(
        categorical_cross_entropy(p.T, q.T, axis=0), categorical_cross_entropy(p, q), rtol=1e-14
    )


@pytest.mark.parametrize(
    "loss, grad",
    [
        (kl_divergence, kl_divergence_grad),
        (categorical_cross_entropy, categorical_cross_entropy_grad),
    ],
)
def test_gradients_w_r_t_q(rng, loss, grad):
    p, q = _close_distributions(rng, (3, 4), 0.5)
    p[0, 1] = 0.0  # a zero of p has a zero gradient
    assert_gradient_matches(loss, grad, [p, q], (1,), rtol=1e-6, atol=1e-8)
    assert_gradient_matches(loss, grad, [p.T, q.T], (1,), kwargs={"axis": 0})


probabilities = hnp.arrays(
    np.float64,
    st.tuples(st.integers(1, 4), st.integers(1, 6)),
    elements=st.floats(0.0, 1.0),
)


def _normalise(w):
    w = w + 1e-3
    return w / w.sum(axis=-1, keepdims=True)


@settings(max_examples=60, deadline=None)
@given(probabilities, st.data())
def test_properties_of_kl_and_cross_entropy(w, data):
    p = _normalise(w)
    q = _normalise(data.draw(hnp.arrays(np.float64, w.shape, elements=st.floats(0.0, 1.0))))
    kl = kl_divergence(p, q)
    # KL = sum(non-negative remainders) + sum(p) - sum(q): below 0 by at most the
    # normalisation error of the inputs
    excess = np.array([math.fsum(a) - math.fsum(b) for a, b in zip(p, q, strict=True)])
    assert np.all(kl >= np.minimum(excess, 0) - 1e-15)
    np.testing.assert_allclose(
        categorical_cross_entropy(p, q), entropy(p) + kl, rtol=1e-12, atol=1e-14
    )
    np.testing.assert_allclose(
        kl_div(np.log(q), p, reduction="sum"), kl.sum(), rtol=1e-12, atol=1e-13
    )


# --- kl_div (PyTorch) -------------------------------------------------------------------


def _torch_kl_div_pointwise(input, target, log_target):
    """PyTorch's documented pointwise loss, written out with 0 log 0 = 0."""
    out = np.zeros_like(input)
    for index in np.ndindex(input.shape):
        x, t = input[index], target[index]
        if log_target and t > -math.inf:
            out[index] = math.exp(t) * (t - x)
        elif not log_target and t > 0:
            out[index] = t * (math.log(t) - x)
    return out


@pytest.mark.parametrize("log_target", [False, True])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none", "batchmean"])
def test_kl_div_reductions_and_gradient(rng, reduction, log_target):
    q = rng.dirichlet(np.ones(5), size=(3, 2))
    p = rng.dirichlet(np.ones(5), size=(3, 2))
    p[0, 0, :2] = 0
    p[0, 0] /= p[0, 0].sum()
    with np.errstate(divide="ignore"):
        target = np.log(p) if log_target else p
    pointwise = _torch_kl_div_pointwise(np.log(q), target, log_target)
    expected = {
        "none": pointwise,
        "sum": pointwise.sum(),
        "mean": pointwise.sum() / pointwise.size,  # over ALL elements
        "batchmean": pointwise.sum() / 3,
    }[reduction]
    kwargs = {"reduction": reduction, "log_target": log_target}
    np.testing.assert_allclose(kl_div(np.log(q), target, **kwargs), expected, rtol=1e-13)
    assert_gradient_matches(kl_div, kl_div_grad, [np.log(q), target], (0,), kwargs=kwargs)


def test_kl_div_batchmean_is_the_mean_kl_per_sample(rng):
    p, q = _close_distributions(rng, (4, 3), 1.0)
    assert kl_div(np.log(q), p, reduction="batchmean") == pytest.approx(
        kl_divergence(p, q).mean(), rel=1e-13
    )


@pytest.mark.parametrize(
    ("reduction", "x", "t"),
    [
        (
            "batchmean",
            [[-0.66650390625, -0.037872314453125], [-0.94873046875, -1.4404296875],
             [-0.2369384765625, -0.5693359375]],
            [[0.8828125, 0.329833984375], [0.2193603515625, 0.1873779296875],
             [0.1568603515625, 0.1917724609375]],
        ),
        (
            "mean",
            [[-0.66650390625, -0.037872314453125], [-0.94873046875, -1.4404296875],
             [-0.2369384765625, -0.5693359375]],
            [[0.8828125, 0.329833984375], [0.2193603515625, 0.1873779296875],
             [0.1568603515625, 0.1917724609375]],
        ),
        (
            "sum",
            [[-0.047119140625, -0.97509765625], [-0.55712890625, -0.445556640625],
             [-0.552734375, -0.43212890625]],
            [[0.480224609375, 0.52685546875], [0.333740234375, 0.55224609375],
             [0.0787353515625, 0.318359375]],
        ),
    ],
)  # fmt: skip
def test_kl_div_float16_reduction_is_rounded_once(reduction, x, t):
    # exact values within a hair of a float16 midpoint: a total rounded to float32 first
    # landed on the midpoint and then on the wrong float16 (one ULP off)
    x, t = np.array(x, np.float16), np.array(t, np.float16)
    with mpmath.workdps(50):
        terms = [
            mpmath.mpf(float(b)) * (mpmath.log(mpmath.mpf(float(b))) - mpmath.mpf(float(a)))
            for a, b in zip(x.ravel(), t.ravel(), strict=True)
        ]
        divisor = {"batchmean": x.shape[0], "mean": x.size, "sum": 1}[reduction]
        exact = mpmath.fsum(terms) / divisor
    got = kl_div(x, t, reduction=reduction)
    assert got.dtype == np.float16
    assert_ulp_close(np.array([got]), np.array([exact], dtype=object), 0.5, dtype=np.float16)


def test_kl_div_zero_target_and_nan():
    # t = 0 contributes 0 even where q = 0 (input = -inf); a NaN input propagates
    out = kl_div([-np.inf, 0.0, np.nan], [0.0, 1.0, 0.0], reduction="none")
    assert out[:2].tolist() == [0.0, 0.0] and np.isnan(out[2])
    out = kl_div([-np.inf, -1.0], [-np.inf, 0.0], reduction="none", log_target=True)
    assert out.tolist() == [0.0, 1.0]
    assert np.isnan(kl_div([0.0, 1.0], [0.5, np.nan], reduction="sum"))


def test_kl_div_errors():
    with pytest.raises(ValueError, match=r"reduction.*'batch'"):
        kl_div([0.0], [1.0], reduction="batch")
    with pytest.raises(ValueError, match=r"target.*\[0, 1\].*1\.5"):
        kl_div([0.0], [1.5])
    with pytest.raises(ValueError, match=r"target.*log-probabilities.*0\.5"):
        kl_div([0.0], [0.5], log_target=True)
    with pytest.raises(ValueError, match=r"target.*shape"):
        kl_div([0.0, 0.0], [1.0])
    with pytest.raises(ValueError, match="batchmean"):
        kl_div(0.0, 1.0, reduction="batchmean")


@pytest.mark.parametrize("flag", [1, 0, "yes", None, np.float64(1.0), [True]])
@pytest.mark.parametrize("function", [kl_div, kl_div_grad, kl_div_value_and_grad])
def test_kl_div_log_target_must_be_a_bool(function, flag):
    # a truthy value is not taken for True (as poisson_nll_loss's full and log_input)
    with pytest.raises(ValueError, match=r"log_target must be True or False; got"):
        function([-1.0], [0.5], log_target=flag)
    for ok in (True, False, np.True_, np.False_):
        target = [-0.5] if ok else [0.5]
        function([-1.0], target, log_target=ok)


# --- Gaussian KL --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def sympy_gaussian_kl():
    """KL(N(m1, s1^2) || N(m0, s0^2)) by integrating q log(q/p) over the real line."""
    x, m1, m0 = sp.symbols("x m1 m0", real=True)
    s1, s0 = sp.symbols("s1 s0", positive=True)

    def density(m, s):
        return sp.exp(-((x - m) ** 2) / (2 * s**2)) / sp.sqrt(2 * sp.pi * s**2)

    q, p = density(m1, s1), density(m0, s0)
    kl = sp.simplify(sp.integrate(q * sp.expand_log(sp.log(q / p), force=True), (x, -sp.oo, sp.oo)))
    v1, v0 = sp.symbols("v1 v0", real=True)  # log-variances
    return kl.subs({s1: sp.exp(v1 / 2), s0: sp.exp(v0 / 2)}), (m1, v1, m0, v0)


def test_gaussian_kl_matches_sympy_integration(rng, sympy_gaussian_kl):
    expr, symbols = sympy_gaussian_kl
    mu, logvar, mu0, logvar0 = (rng.normal(size=(6, 3)) for _ in range(4))
    # per dimension (a latent axis of length 1) and summed over the latent axis
    assert_matches_sympy(
        expr,
        symbols,
        [mu, logvar, mu0, logvar0],
        gaussian_kl(mu[..., None], logvar[..., None], mu0[..., None], logvar0[..., None]),
    )
    f = sp.lambdify(symbols, expr, modules="numpy")
    np.testing.assert_allclose(
        gaussian_kl(mu, logvar, mu0, logvar0), f(mu, logvar, mu0, logvar0).sum(-1), rtol=1e-12
    )
    # the VAE's prior N(0, 1)
    assert_matches_sympy(
        expr.subs({symbols[2]: 0, symbols[3]: 0}),
        symbols[:2],
        [mu, logvar],
        gaussian_kl(mu[..., None], logvar[..., None]),
    )


@pytest.mark.parametrize("scale", [1e-15, 1e-10, 1e-6, 1e-3, 0.1, 1.0, 5.0])
def test_gaussian_kl_within_4_ulp_near_zero_and_beyond(rng, scale):
    shape = (16, 3)
    mu, logvar = scale * rng.normal(size=shape), scale * rng.normal(size=shape)
    zeros = np.zeros(shape)
    assert_ulp_close(gaussian_kl(mu, logvar), mp_gaussian_kl(mu, logvar, zeros, zeros), 4)
    # a general prior, and a posterior very close to it
    mu0, logvar0 = rng.normal(size=shape), rng.normal(size=shape)
    assert_ulp_close(
        gaussian_kl(mu0 + mu, logvar0 + logvar, mu0, logvar0),
        mp_gaussian_kl(mu0 + mu, logvar0 + logvar, mu0, logvar0),
        4,
    )


def test_gaussian_kl_tiny_value():
    # e^v - 1 - v = v^2/2 + v^3/6 + ...: the naive formula returns 0 or noise here
    value = gaussian_kl([0.0], [1e-9])
    assert value == pytest.approx(1e-18 / 4 * (1 + 1e-9 / 3), rel=1e-15)


@pytest.mark.parametrize(
    "priors",
    [{}, {"mu_prior": 0.3, "logvar_prior": -0.5}, {"mu_prior": "array", "logvar_prior": "row"}],
)
def test_gaussian_kl_gradient(rng, priors):
    mu, logvar = rng.normal(size=(3, 4)), rng.normal(size=(3, 4))
    kwargs = dict(priors)
    if kwargs.get("mu_prior") == "array":
        kwargs = {"mu_prior": rng.normal(size=(3, 4)), "logvar_prior": rng.normal(size=4)}
    assert_gradient_matches(gaussian_kl, gaussian_kl_grad, [mu, logvar], (0, 1), kwargs=kwargs)
    assert_gradient_matches(gaussian_kl, gaussian_kl_grad, [mu, logvar], (0, 1), kwargs={"axis": 0})


def test_gaussian_kl_errors():
    with pytest.raises(ValueError, match=r"logvar.*shape"):
        gaussian_kl(np.zeros((2, 3)), np.zeros((2, 2)))
    with pytest.raises(ValueError, match=r"mu_prior.*broadcast"):
        gaussian_kl(np.zeros((2, 3)), np.zeros((2, 3)), mu_prior=np.zeros(2))
    with pytest.raises(ValueError, match=r"logvar_prior.*broadcast"):
        gaussian_kl(np.zeros((2, 3)), np.zeros((2, 3)), logvar_prior=np.zeros((4, 3)))


# --- VAE loss -------------------------------------------------------------------------------


def _vae_sample(rng, batch=(4,), features=5, latent=3, likelihood="bernoulli", scale=1.0):
    if likelihood == "bernoulli":
        x = rng.uniform(size=batch + (features,))
        x[..., 0] = 1.0
        x[..., 1] = 0.0
    else:
        x = rng.normal(size=batch + (features,))
    recon = scale * rng.normal(size=batch + (features,))
    return x, recon, rng.normal(size=batch + (latent,)), rng.normal(size=batch + (latent,))


@pytest.mark.parametrize("likelihood", ["bernoulli", "gaussian"])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_vae_loss_gradient(rng, likelihood, reduction):
    args = list(_vae_sample(rng, batch=(2, 3), likelihood=likelihood))
    kwargs = {"likelihood": likelihood, "reduction": reduction}
    assert_gradient_matches(vae_loss, vae_loss_grad, args, (1, 2, 3), kwargs=kwargs)


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_vae_loss_gaussian_includes_the_constant(rng, reduction):
    x, recon, mu, logvar = _vae_sample(rng, likelihood="gaussian")
    # -log N(x; recon, I) summed over the D = 5 features, written out
    nll = np.sum(0.5 * (x - recon) ** 2 + 0.5 * np.log(2 * np.pi), axis=-1)
    kl = 0.5 * np.sum(np.exp(logvar) + mu**2 - 1 - logvar, axis=-1)
    expected = {"mean": np.mean, "sum": np.sum, "none": lambda v: v}[reduction](nll + kl)
    np.testing.assert_allclose(
        vae_loss(x, recon, mu, logvar, "gaussian", reduction), expected, rtol=1e-13
    )


@pytest.mark.parametrize("scale", [1.0, 30.0, 1e4])
def test_vae_loss_bernoulli_within_4_ulp_for_huge_logits(rng, scale):
    x, recon, mu, logvar = _vae_sample(rng, batch=(8,), scale=scale)
    x = np.round(x) if scale > 1 else x  # confident correct and wrong predictions
    zeros = np.zeros_like(mu)
    reference = mp_bce_with_logits(x, recon) + mp_gaussian_kl(mu, logvar, zeros, zeros)
    assert_ulp_close(vae_loss(x, recon, mu, logvar, reduction="none"), reference, 4)
    d_recon, *_ = vae_loss_grad(x, recon, mu, logvar, reduction="sum")
    assert np.all(np.isfinite(d_recon)) and np.all(np.abs(d_recon) <= 1)


@settings(max_examples=40, deadline=None)
@given(
    st.integers(1, 4),
    st.integers(1, 5),
    st.integers(1, 3),
    st.floats(-50, 50),
    st.sampled_from(["mean", "sum", "none"]),
    st.integers(0, 2**32 - 1),
)
def test_vae_bernoulli_is_bce_with_logits_plus_gaussian_kl(n, d, latent, spread, reduction, seed):
    rng = np.random.default_rng(seed)
    x = rng.uniform(size=(n, d))
    recon = spread * rng.normal(size=(n, d))
    mu, logvar = rng.normal(size=(n, latent)), rng.normal(size=(n, latent))
    # BCE with logits: max(z, 0) - x z + log(1 + e^{-|z|}) (the standard stable form)
    bce = np.sum(np.maximum(recon, 0) - x * recon + np.log1p(np.exp(-np.abs(recon))), axis=-1)
    per_sample = bce + gaussian_kl(mu, logvar)
    expected = {"mean": np.mean, "sum": np.sum, "none": lambda v: v}[reduction](per_sample)
    np.testing.assert_allclose(
        vae_loss(x, recon, mu, logvar, reduction=reduction), expected, rtol=1e-10, atol=1e-12
    )


def test_vae_loss_errors(rng):
    x, recon, mu, logvar = _vae_sample(rng)
    with pytest.raises(ValueError, match=r"likelihood.*'poisson'"):
        vae_loss(x, recon, mu, logvar, likelihood="poisson")
    with pytest.raises(ValueError, match=r"likelihood"):
        vae_loss_grad(x, recon, mu, logvar, likelihood="Gaussian")
    with pytest.raises(ValueError, match=r"x.*\[0, 1\]"):
        vae_loss(x + 1.5, recon, mu, logvar)
    vae_loss(x + 1.5, recon, mu, logvar, likelihood="gaussian")  # any real data
    with pytest.raises(ValueError, match=r"recon.*shape"):
        vae_loss(x, recon[:, :2], mu, logvar)
    with pytest.raises(ValueError, match=r"mu.*batch shape"):
        vae_loss(x, recon, mu[:2], logvar[:2])
    with pytest.raises(ValueError, match=r"logvar.*shape"):
        vae_loss(x, recon, mu, logvar[:, :2])
    with pytest.raises(ValueError, match=r"reduction.*'avg'"):
        vae_loss(x, recon, mu, logvar, reduction="avg")


# --- conventions shared by all ----------------------------------------------------------------


def _all_calls(rng):
    p, q = _close_distributions(rng, (3, 4), 0.5)
    x, recon, mu, logvar = _vae_sample(rng)
    return [
        (entropy, None, (p,)),
        (categorical_cross_entropy, categorical_cross_entropy_grad, (p, q)),
        (kl_divergence, kl_divergence_grad, (p, q)),
        (kl_div, kl_div_grad, (np.log(q), p)),
        (gaussian_kl, gaussian_kl_grad, (mu, logvar)),
        (vae_loss, vae_loss_grad, (x, recon, mu, logvar)),
    ]


@pytest.mark.parametrize("index", range(6))
def test_float32_in_float32_out_and_inputs_untouched(rng, index):
    loss, grad, args = _all_calls(rng)[index]
    args32 = tuple(a.astype(np.float32) for a in args)
    copies = [a.copy() for a in args32]
    assert np.asarray(loss(*args32)).dtype == np.float32
    # the reference is the float64 loss of the same (rounded) inputs: a KL of close
    # distributions is ill-conditioned in its inputs, so their rounding alone moves it
    np.testing.assert_allclose(
        loss(*args32), loss(*(a.astype(np.float64) for a in args32)), rtol=1e-5
    )
    if grad is not None:
        grads = grad(*args32)
        grads = grads if isinstance(grads, tuple) else (grads,)
        assert all(g.dtype == np.float32 for g in grads)
    for before, after in zip(copies, args32, strict=True):
        np.testing.assert_array_equal(before, after)


def test_nan_propagates(rng):
    p, q = _close_distributions(rng, (2, 3), 0.5)
    p_nan, q_nan = p.copy(), q.copy()
    p_nan[0, 0], q_nan[0, 0] = np.nan, np.nan
    for f in (kl_divergence, categorical_cross_entropy):
        for a, b in ((p_nan, q), (p, q_nan)):
            out = f(a, b)
            assert np.isnan(out[0]) and np.isfinite(out[1])
    assert np.isnan(entropy(p_nan)[0])
    mu = np.array([[np.nan, 0.0], [0.0, 0.0]])
    assert np.isnan(gaussian_kl(mu, np.zeros((2, 2)))).tolist() == [True, False]
    x, recon, mu, logvar = _vae_sample(rng)
    recon[1, 2] = np.nan
    assert np.isnan(vae_loss(x, recon, mu, logvar, reduction="none")).tolist() == [
        False,
        True,
        False,
        False,
    ]


def test_probability_errors_name_the_argument():
    with pytest.raises(ValueError, match=r"p must lie in \[0, 1\]"):
        entropy([0.5, 1.5])
    with pytest.raises(ValueError, match=r"q must lie in \[0, 1\]"):
        kl_divergence([0.5, 0.5], [-0.1, 1.1])
    with pytest.raises(ValueError, match=r"q must have the same shape"):
        categorical_cross_entropy([0.5, 0.5], [1.0])
    with pytest.raises(ValueError, match=r"p must have at least one dimension"):
        kl_divergence_grad(0.5, 0.5)


@pytest.mark.parametrize("axis", [2, -3, 0.0, True, None])
def test_an_axis_that_is_not_one_of_the_arrays_axes_is_named(axis):
    # NumPy's own messages escaped ("source: axis 2 is out of bounds", or a TypeError for a
    # float axis), and categorical_cross_entropy_grad ignored such an axis
    p = np.full((2, 2), 0.5)
    calls = [
        lambda: entropy(p, axis=axis),
        lambda: categorical_cross_entropy(p, p, axis=axis),
        lambda: lossutils.categorical_cross_entropy_grad(p, p, axis=axis),
        lambda: lossutils.categorical_cross_entropy_value_and_grad(p, p, axis=axis),
        lambda: kl_divergence(p, p, axis=axis),
        lambda: kl_divergence_grad(p, p, axis=axis),
        lambda: lossutils.gaussian_kl(p, p, axis=axis),
        lambda: lossutils.gaussian_kl_grad(p, p, axis=axis),
    ]
    for call in calls:
        with pytest.raises(ValueError, match=r"axis must be an integer in \[-2, 1\]; got"):
            call()


def test_a_zero_entropy_is_plus_zero():
    # -sum(p log p) of [1, 0] was -0.0 (the negated +0.0)
    for value in (
        entropy([1.0, 0.0]),
        categorical_cross_entropy([1.0, 0.0], [1.0, 0.5]),
        categorical_cross_entropy(np.float32([[1.0, 0.0]]).T, np.float32([[1.0, 0.5]]).T, axis=0)[
            0
        ],
    ):
        assert value == 0 and not np.signbit(value)


def test_kl_divergence_float32_tiny_divergence_of_distributions_with_different_sums():
    # float32 distributions need not sum to the same total: here sum(p - q) exceeds the
    # divergence (4.9e-10), which its pieces cancel against; in float32 those pieces were
    # 10 ULP off, in float64 the row is within half an ULP and a hair
    p = np.array([0.21533261239528656, 0.5304980874061584, 0.2541692852973938], np.float32)
    q = np.array([0.21540291607379913, 0.53052395582199097, 0.25407314300537109], np.float32)
    assert abs(float(np.sum(p.astype(np.float64) - q))) > 1e-8
    assert_ulp_close(kl_divergence(p, q), mp_kl(p, q), 1.0, "kl_divergence float32", np.float32)
