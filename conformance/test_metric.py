"""Metric-learning losses: lossutils against torch.nn.functional and optax."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import torch.nn.functional as F
from conftest import assert_close, torch_run, tt

import lossutils as lu

REDUCTIONS = ["mean", "sum", "none"]
rng = np.random.default_rng(6)
A = rng.normal(size=(8, 3))
PO = A + rng.normal(scale=0.7, size=(8, 3))
NE = A + rng.normal(scale=1.0, size=(8, 3))


def compare_triplet(arrays, dtype, **kw):
    arrays = [np.asarray(a, dtype) for a in arrays]
    tensors = [tt(a, grad=True) for a in arrays]
    value, grads = torch_run(lambda *t: F.triplet_margin_loss(*t, **kw), tensors, [0, 1, 2])
    assert_close(lu.triplet_margin_loss(*arrays, **kw), value, dtype)
    for a, b in zip(lu.triplet_margin_loss_grad(*arrays, **kw), grads, strict=True):
        assert_close(a, b, dtype)


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("swap", [False, True])
@pytest.mark.parametrize("eps", [1e-6, 0.0, 0.1])
@pytest.mark.parametrize("p", [1.0, 2.0, 3.0])
@pytest.mark.parametrize("margin", [1.0, 0.2])
def test_triplet_margin_loss(margin, p, eps, swap, reduction, dtype):
    compare_triplet([A, PO, NE], dtype, margin=margin, p=p, eps=eps, swap=swap, reduction=reduction)


@pytest.mark.parametrize("swap", [False, True])
def test_triplet_zero_distances(swap, dtype):
    """Coincident points with eps=0: PyTorch's norm backward gives 0 at a zero norm."""
    a = A[:4].copy()
    po = a.copy()  # d(a, p) = 0
    ne = a.copy()
    ne[2:] += 1.0  # d(a, n) = 0 for the first two triplets
    compare_triplet([a, po, ne], dtype, eps=0.0, swap=swap, reduction="sum")


def test_triplet_empty_batch(dtype):
    z = np.zeros((0, 3), dtype)
    for reduction in REDUCTIONS:
        compare_triplet([z, z, z], dtype, reduction=reduction)


@pytest.mark.parametrize("temperature", [0.5, 0.07])
def test_nt_xent_is_optax_ntxent(rng, temperature, dtype):
    """nt_xent_loss(z1, z2, T) == optax.ntxent([z1; z2], [0..N-1, 0..N-1], T)."""
    n = 5
    z1 = rng.normal(size=(n, 4)).astype(dtype)
    z2 = (z1 + rng.normal(scale=0.5, size=(n, 4))).astype(dtype)
    labels = jnp.asarray(np.concatenate([np.arange(n), np.arange(n)]))

    def fn(z):
        return optax.losses.ntxent(z, labels, temperature=temperature)

    z = jnp.asarray(np.concatenate([z1, z2]))
    value = np.asarray(fn(z))
    grad = np.asarray(jax.grad(fn)(z))
    assert_close(lu.nt_xent_loss(z1, z2, temperature=temperature), value, dtype)
    g1, g2 = lu.nt_xent_loss_grad(z1, z2, temperature=temperature)
    assert_close(np.concatenate([g1, g2]), grad, dtype)
