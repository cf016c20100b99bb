"""Divergences: lossutils against torch.nn.functional.kl_div, torch.distributions and optax."""

import warnings

import jax
import jax.numpy as jnp
import mpmath
import numpy as np
import optax
import pytest
import torch
import torch.nn.functional as F
from conftest import assert_close, torch_run, tt

import lossutils as lu

rng = np.random.default_rng(5)
C = 4
LOGQ = np.log(rng.dirichlet(np.ones(C), size=6))
P = rng.dirichlet(np.ones(C), size=6)
P[0, 1] = 0.0  # a zero in the target: 0 log 0 = 0
P[0] /= P[0].sum()


@pytest.mark.parametrize("log_target", [False, True])
@pytest.mark.parametrize("reduction", ["mean", "batchmean", "sum", "none"])
def test_kl_div(reduction, log_target, dtype):
    # (a log-target of -inf is a deviation, asserted below)
    target = np.log(P[1:]) if log_target else P[1:]
    z, t = LOGQ[1:].astype(dtype), np.asarray(target, dtype)
    kw = {"reduction": reduction, "log_target": log_target}
    with warnings.catch_warnings():
        # PyTorch warns about "mean" (asserted in test_kl_div_mean_warns_in_torch)
        warnings.filterwarnings("ignore", "reduction: 'mean'", UserWarning)
        value, (grad,) = torch_run(
            lambda a, b: F.kl_div(a, b, **kw), [tt(z, grad=True), tt(t)], [0]
        )
    assert_close(lu.kl_div(z, t, **kw), value, dtype)
    assert_close(lu.kl_div_grad(z, t, **kw), grad, dtype)


def test_deviation_kl_div_zero_target():
    """Deviation: target 0 where the input (log q) is -inf contributes 0 (0 log 0 = 0);
    PyTorch's pointwise formula computes 0 * (log 0 - (-inf)) = NaN."""
    z = np.array([[-np.inf, np.log(0.5), np.log(0.5)]])
    t = np.array([[0.0, 0.5, 0.5]])
    ours = lu.kl_div(z, t, reduction="sum")
    theirs = F.kl_div(tt(z), tt(t), reduction="sum").item()
    # the zero target adds exactly 0 to the other terms (which are the tiny exact value of
    # 0.5 (log 0.5 - fl(log 0.5)), not 0)
    assert ours == lu.kl_div(z[:, 1:], t[:, 1:], reduction="sum")
    assert np.isnan(theirs)
    # the same with the target given as its log (log 0 = -inf): PyTorch's exp(t) (t - input)
    with np.errstate(divide="ignore"):
        log_t = np.log(t)
    ours = lu.kl_div(z, log_t, reduction="sum", log_target=True)
    theirs = F.kl_div(tt(z), tt(log_t), reduction="sum", log_target=True).item()
    assert ours == 0.0
    assert np.isnan(theirs)


def test_kl_div_mean_warns_in_torch():
    """PyTorch warns that reduction="mean" is not the divergence; it divides by N*C."""
    z, t = tt(LOGQ), tt(P)
    with pytest.warns(UserWarning, match="batchmean"):
        mean = F.kl_div(z, t, reduction="mean").item()
    batchmean = F.kl_div(z, t, reduction="batchmean").item()
    assert mean == pytest.approx(batchmean / C, rel=1e-14)
    assert lu.kl_div(LOGQ, P) == pytest.approx(mean, rel=1e-14)


def jax_value_and_grad(fn, x, y):
    y = jnp.asarray(y)
    value = fn(jnp.asarray(x), y)
    grad = jax.grad(lambda a: fn(a, y).sum())(jnp.asarray(x))
    return np.asarray(value), np.asarray(grad)


def test_optax_kl_divergence(dtype):
    """optax's per-example divergences; their mean is kl_div's "batchmean"."""
    z, p = LOGQ.astype(dtype), P.astype(dtype)
    value, grad = jax_value_and_grad(optax.losses.kl_divergence, z, p)
    assert_close(lu.kl_div(z, p, reduction="none").sum(-1), value, dtype)
    assert_close(np.asarray(lu.kl_div(z, p, reduction="batchmean")), value.mean(), dtype)
    assert_close(lu.kl_div_grad(z, p, reduction="sum"), grad, dtype)
    logp = np.log(P[1:]).astype(dtype)
    value, grad = jax_value_and_grad(optax.losses.kl_divergence_with_log_targets, z[1:], logp)
    assert_close(lu.kl_div(z[1:], logp, log_target=True, reduction="none").sum(-1), value, dtype)
    assert_close(lu.kl_div_grad(z[1:], logp, log_target=True, reduction="sum"), grad, dtype)


def test_kl_divergence_of_distributions(dtype):
    """kl_divergence(p, q) against torch.distributions' Categorical divergence."""
    q = np.exp(LOGQ[1:]).astype(dtype)
    p = P[1:].astype(dtype)
    theirs = torch.distributions.kl_divergence(
        torch.distributions.Categorical(probs=tt(p)), torch.distributions.Categorical(probs=tt(q))
    )
    assert_close(lu.kl_divergence(p, q), theirs.numpy(), dtype)
    # Categorical renormalizes q, so its autograd is projected; F.kl_div's is -p/q.
    tq = tt(q, grad=True)
    (grad,) = torch.autograd.grad(F.kl_div(tq.log(), tt(p), reduction="sum"), [tq])
    assert_close(lu.kl_divergence_grad(p, q), grad.numpy(), dtype)
    assert_close(
        lu.entropy(p), torch.distributions.Categorical(probs=tt(p)).entropy().numpy(), dtype
    )


@pytest.mark.parametrize("prior", ["standard", "general"])
def test_gaussian_kl_is_torch_distributions(rng, prior, dtype):
    """gaussian_kl == kl_divergence(Normal(mu, e^(v/2)), Normal(mu0, e^(v0/2))).sum(-1)."""
    mu = rng.normal(size=(5, 3)).astype(dtype)
    logvar = rng.normal(size=(5, 3)).astype(dtype)
    mu0 = rng.normal(size=3).astype(dtype) if prior == "general" else np.zeros(3, dtype)
    lv0 = rng.normal(size=3).astype(dtype) if prior == "general" else np.zeros(3, dtype)
    tmu, tlv = tt(mu, grad=True), tt(logvar, grad=True)
    Normal = torch.distributions.Normal
    kl = torch.distributions.kl_divergence(
        Normal(tmu, (0.5 * tlv).exp()), Normal(tt(mu0), (0.5 * tt(lv0)).exp())
    ).sum(-1)
    gmu, glv = torch.autograd.grad(kl.sum(), [tmu, tlv])
    kw = {"mu_prior": mu0, "logvar_prior": lv0} if prior == "general" else {}
    rtol = 1e-4 if dtype == np.float32 else None  # torch's float32 formula cancels
    assert_close(lu.gaussian_kl(mu, logvar, **kw), kl.detach().numpy(), dtype, rtol=rtol)
    ours_mu, ours_lv = lu.gaussian_kl_grad(mu, logvar, **kw)
    assert_close(ours_mu, gmu.numpy(), dtype)
    assert_close(ours_lv, glv.numpy(), dtype, atol=1e-5 if dtype == np.float32 else None)


def test_deviation_gaussian_kl_near_the_prior():
    """Deviation (accuracy): near the prior, torch.distributions' formula cancels; gaussian_kl
    keeps the digits (mpmath agrees with lossutils)."""
    mu = np.array([1e-9])
    logvar = np.array([1e-7])
    exact = float(
        mpmath.mpf(0.5)
        * (mpmath.exp(mpmath.mpf(1e-7)) - 1 - mpmath.mpf(1e-7) + mpmath.mpf(1e-9) ** 2)
    )
    Normal = torch.distributions.Normal
    theirs = torch.distributions.kl_divergence(
        Normal(tt(mu), (0.5 * tt(logvar)).exp()), Normal(0.0, 1.0)
    ).item()
    ours = float(lu.gaussian_kl(mu, logvar))
    assert ours == pytest.approx(exact, rel=1e-14)
    assert abs(theirs - exact) > 1e-5 * exact  # 2e-4 relative


@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_vae_loss_is_the_pytorch_example(rng, reduction, dtype):
    """Bernoulli vae_loss == BCE with logits summed over features + the textbook KL term."""
    x = (rng.random((4, 6)) < 0.5).astype(dtype)
    recon = rng.normal(size=(4, 6)).astype(dtype)
    mu = rng.normal(size=(4, 2)).astype(dtype)
    logvar = rng.normal(size=(4, 2)).astype(dtype)
    tr, tmu, tlv = tt(recon, grad=True), tt(mu, grad=True), tt(logvar, grad=True)
    per_sample = F.binary_cross_entropy_with_logits(tr, tt(x), reduction="none").sum(-1) - 0.5 * (
        1 + tlv - tmu.pow(2) - tlv.exp()
    ).sum(-1)
    theirs = per_sample.mean() if reduction == "mean" else per_sample.sum()
    grads = torch.autograd.grad(theirs, [tr, tmu, tlv])
    assert_close(lu.vae_loss(x, recon, mu, logvar, reduction=reduction), theirs.detach().numpy(),
                 dtype)  # fmt: skip
    for a, b in zip(
        lu.vae_loss_grad(x, recon, mu, logvar, reduction=reduction), grads, strict=True
    ):
        assert_close(a, b.numpy(), dtype)
