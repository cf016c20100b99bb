"""Regression losses: lossutils against torch.nn.functional, torch.distributions and optax."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import torch
import torch.nn.functional as F
from conftest import assert_close, torch_run, tt

import lossutils as lu

REDUCTIONS = ["mean", "sum", "none"]
rng = np.random.default_rng(2)
X = rng.normal(scale=2.0, size=(6, 4))
Y = rng.normal(scale=2.0, size=(6, 4))
# Residuals on both sides of the thresholds 0.5, 1 and 2, and exactly at them.
Y[0, :] = X[0, :] - np.array([0.5, -1.0, 2.0, 0.0])


def compare(ours, ours_grad, theirs, arrays, n_grad, dtype, rtol=None, **kw):
    arrays = [np.asarray(a, dtype) for a in arrays]
    tensors = [tt(a, grad=i < n_grad) for i, a in enumerate(arrays)]
    value, grads = torch_run(lambda *t: theirs(*t, **kw), tensors, range(n_grad))
    assert_close(ours(*arrays, **kw), value, dtype, rtol=rtol)
    g = ours_grad(*arrays, **kw)
    g = g if isinstance(g, tuple) else (g,)
    for a, b in zip(g, grads, strict=True):
        assert_close(a, b, dtype, rtol=rtol)


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_mse_l1(reduction, dtype):
    compare(lu.mse_loss, lu.mse_loss_grad, F.mse_loss, [X, Y], 1, dtype, reduction=reduction)
    compare(lu.l1_loss, lu.l1_loss_grad, F.l1_loss, [X, Y], 1, dtype, reduction=reduction)


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("delta", [0.5, 1.0, 2.0])
def test_huber(delta, reduction, dtype):
    compare(
        lu.huber_loss, lu.huber_loss_grad, F.huber_loss, [X, Y], 1, dtype,
        delta=delta, reduction=reduction,
    )  # fmt: skip


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("beta", [0.0, 0.5, 1.0, 2.0])
def test_smooth_l1(beta, reduction, dtype):
    compare(
        lu.smooth_l1_loss, lu.smooth_l1_loss_grad, F.smooth_l1_loss, [X, Y], 1, dtype,
        beta=beta, reduction=reduction,
    )  # fmt: skip


def test_zero_residual_subgradients(dtype):
    """At r = 0 the L1 gradient is sign(0) = 0, PyTorch's choice."""
    x = np.array([0.0, 1.0, -2.0])
    compare(lu.l1_loss, lu.l1_loss_grad, F.l1_loss, [x, x], 1, dtype, reduction="sum")
    compare(lu.smooth_l1_loss, lu.smooth_l1_loss_grad, F.smooth_l1_loss, [x, x], 1, dtype, beta=0.0)


VARS = {
    "same-shape": np.exp(rng.normal(size=(6, 4))),
    "last-dim-1": np.exp(rng.normal(size=(6, 1))),
    # var below eps: the clamp, with the gradient of the clamped value
    "clamped": np.where(rng.random((6, 4)) < 0.5, 1e-9, np.exp(rng.normal(size=(6, 4)))),
}


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("full", [False, True])
@pytest.mark.parametrize("var", VARS, ids=list(VARS))
def test_gaussian_nll(var, full, reduction, dtype):
    v = VARS[var]
    eps = 1e-6 if dtype == np.float64 else 1e-3

    def ours_grad(x, y, v, **kw):
        return lu.gaussian_nll_loss_grad(x, y, v, **kw)

    arrays = [np.asarray(a, dtype) for a in (X, Y, v)]
    tensors = [tt(arrays[0], grad=True), tt(arrays[1]), tt(arrays[2], grad=True)]
    kw = dict(full=full, eps=eps, reduction=reduction)
    value, (gx, gv) = torch_run(lambda *t: F.gaussian_nll_loss(*t, **kw), tensors, [0, 2])
    assert_close(
        lu.gaussian_nll_loss(*arrays, **kw),
        value,
        dtype,
        rtol=1e-4 if dtype == np.float32 else None,
    )
    ox, ov = ours_grad(*arrays, **kw)
    assert_close(ox, gx, dtype)
    assert_close(ov, gv, dtype)


def test_gaussian_nll_scalar_var(dtype):
    x, y = X.astype(dtype), Y.astype(dtype)
    value = F.gaussian_nll_loss(tt(x), tt(y), 0.5).numpy()
    assert_close(lu.gaussian_nll_loss(x, y, dtype(0.5)), value, dtype)


def test_laplace_nll_is_torch_laplace(rng, dtype):
    """full=True is -log of torch.distributions.Laplace."""
    x, y = X.astype(dtype), Y.astype(dtype)
    b = np.exp(rng.normal(size=X.shape)).astype(dtype)
    tx, tb = tt(x, grad=True), tt(b, grad=True)
    nll = -torch.distributions.Laplace(tx, tb).log_prob(tt(y))
    gx, gb = torch.autograd.grad(nll.sum(), [tx, tb])
    kw = dict(full=True, reduction="none")
    assert_close(lu.laplace_nll_loss(x, y, b, **kw), nll.detach().numpy(), dtype)
    ox, ob = lu.laplace_nll_loss_grad(x, y, b, **kw)
    assert_close(ox, gx.numpy(), dtype)
    assert_close(ob, gb.numpy(), dtype)


def jax_value_and_grad(fn, x, y):
    value = fn(jnp.asarray(x), jnp.asarray(y))
    grad = jax.grad(lambda a: fn(a, jnp.asarray(y)).sum())(jnp.asarray(x))
    return np.asarray(value), np.asarray(grad)


@pytest.mark.parametrize("delta", [0.5, 1.0, 2.0])
def test_optax_huber(delta, dtype):
    x, y = X.astype(dtype), Y.astype(dtype)
    value, grad = jax_value_and_grad(lambda a, b: optax.losses.huber_loss(a, b, delta=delta), x, y)
    assert_close(lu.huber_loss(x, y, delta=delta, reduction="none"), value, dtype)
    assert_close(lu.huber_loss_grad(x, y, delta=delta, reduction="none"), grad, dtype)


def test_optax_log_cosh(dtype):
    """optax.log_cosh on residuals of moderate size, where its formula is accurate."""
    x, y = X.astype(dtype), Y.astype(dtype)
    value, grad = jax_value_and_grad(optax.losses.log_cosh, x, y)
    r = np.abs(x - y)
    big = r > 0.1  # below that, optax has only absolute accuracy (claim test in test_claims)
    assert_close(lu.log_cosh_loss(x, y, reduction="none")[big], value[big], dtype)
    assert_close(lu.log_cosh_loss_grad(x, y, reduction="none"), grad, dtype)


def test_optax_l2_loss_is_half_mse(dtype):
    x, y = X.astype(dtype), Y.astype(dtype)
    value, grad = jax_value_and_grad(optax.losses.l2_loss, x, y)
    assert_close(lu.mse_loss(x, y, reduction="none") / 2, value, dtype)
    assert_close(lu.mse_loss_grad(x, y, reduction="none") / 2, grad, dtype)
    value, grad = jax_value_and_grad(optax.losses.squared_error, x, y)
    assert_close(lu.mse_loss(x, y, reduction="none"), value, dtype)
    assert_close(lu.mse_loss_grad(x, y, reduction="none"), grad, dtype)


@pytest.mark.parametrize(
    ("ours", "theirs"),
    [(lu.mse_loss, F.mse_loss), (lu.l1_loss, F.l1_loss), (lu.huber_loss, F.huber_loss)],
    ids=["mse", "l1", "huber"],
)
def test_empty_batch(ours, theirs, dtype):
    x = np.zeros((0, 3), dtype)
    for reduction in REDUCTIONS:
        with np.errstate(all="raise"):
            got = ours(x, x, reduction=reduction)
        assert_close(got, theirs(tt(x), tt(x), reduction=reduction).numpy(), dtype)
