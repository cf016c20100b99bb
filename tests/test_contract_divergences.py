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
    if dtype != np.float16 and reduction == "none":
        # the pointwise t (log t - x) cancels where x ~ log t: a few ULP of t max(|log t|, |x|)
        with np.errstate(divide="ignore", invalid="ignore"):
            larger = t_exact * np.maximum(np.abs(np.log(t_exact)), np.abs(x))
        error = np.abs(got - np.array([[float(v) for v in row] for row in expected]))
        assert np.all(error <= 4 * np.spacing(np.nan_to_num(larger).astype(dtype)))
    else:
        ref.assert_ulp_in(got, expected, dtype)
    g = V.kl_div_grad(x, target, reduction=reduction, log_target=log_target)
    assert g.dtype == dtype
    with mpmath.workdps(ref.DIGITS):
        scale = 1 if reduction in ("none", "sum") else mpmath.mpf(1) / count
        ref.assert_ulp_in(g, d_input * scale, dtype)


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
    d_recon, d_mu, d_logvar = V.vae_loss_grad(x, recon, mu, logvar, likelihood, "sum")
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
        e_lv = np.array(
            [[mpmath.expm1(ref.mp(v)) / 2 for v in row] for row in logvar], dtype=object
        )
    ref.assert_ulp_in(d_recon, e_recon, dtype, label="d_recon")
    ref.assert_ulp_in(d_mu, mu, dtype, label="d_mu")
    ref.assert_ulp_in(d_logvar, e_lv, dtype, label="d_logvar")


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
