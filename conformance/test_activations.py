"""Activations: lossutils against torch and jax.nn, over moderate and extreme inputs."""

import jax.nn
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import assert_close, tt

import lossutils as lu

# Moderate values, where every library is accurate; the extremes are tested separately.
X = np.array([-15.0, -3.5, -1.0, -1e-3, 0.0, 2e-8, 0.7, 4.0, 15.0])
Z = np.random.default_rng(1).normal(scale=3.0, size=(4, 5))


@pytest.mark.parametrize(
    ("ours", "theirs", "jax_fn"),
    [
        (lu.sigmoid, torch.sigmoid, jax.nn.sigmoid),
        (lu.log_sigmoid, F.logsigmoid, jax.nn.log_sigmoid),
        (lu.softplus, F.softplus, jax.nn.softplus),
    ],
    ids=["sigmoid", "log_sigmoid", "softplus"],
)
def test_elementwise_activations(ours, theirs, jax_fn, dtype):
    x = X.astype(dtype)
    assert_close(ours(x), theirs(tt(x)).numpy(), dtype)
    assert_close(ours(x), np.asarray(jax_fn(jnp.asarray(x))), dtype)


@pytest.mark.parametrize("axis", [-1, 0])
def test_softmax_family(axis, dtype):
    z = Z.astype(dtype)
    assert_close(lu.softmax(z, axis=axis), torch.softmax(tt(z), dim=axis).numpy(), dtype)
    assert_close(lu.log_softmax(z, axis=axis), F.log_softmax(tt(z), dim=axis).numpy(), dtype)
    assert_close(lu.logsumexp(z, axis=axis), torch.logsumexp(tt(z), dim=axis).numpy(), dtype)
    assert_close(
        lu.logsumexp(z, axis=axis, keepdims=True),
        torch.logsumexp(tt(z), dim=axis, keepdim=True).numpy(),
        dtype,
    )
    assert_close(lu.softmax(z, axis=axis), np.asarray(jax.nn.softmax(jnp.asarray(z), axis)), dtype)
    assert_close(
        lu.log_softmax(z, axis=axis), np.asarray(jax.nn.log_softmax(jnp.asarray(z), axis)), dtype
    )


def test_activations_at_infinities(dtype):
    x = np.array([-np.inf, np.inf], dtype)
    for ours, theirs in [(lu.sigmoid, torch.sigmoid), (lu.log_sigmoid, F.logsigmoid)]:
        assert_close(ours(x), theirs(tt(x)).numpy(), dtype)
    assert_close(lu.softplus(x), F.softplus(tt(x)).numpy(), dtype)
    z = np.array([[0.0, -np.inf, 1.0]], dtype)
    assert_close(lu.softmax(z), torch.softmax(tt(z), -1).numpy(), dtype)
    assert_close(lu.log_softmax(z), F.log_softmax(tt(z), -1).numpy(), dtype)


def test_large_shift_softmax(dtype):
    """Logits of 1e4 in every entry: both shift by the maximum and neither overflows."""
    z = (Z + 1e4).astype(dtype)
    assert_close(lu.log_softmax(z), F.log_softmax(tt(z), -1).numpy(), dtype, atol=1e-3)
