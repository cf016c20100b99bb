"""DDPM noise loss: the "simple" weighting against PyTorch's mean squared error."""

import numpy as np
import pytest
import torch.nn.functional as F
from conftest import assert_close, torch_run, tt

import lossutils as lu


@pytest.mark.parametrize("shape", [(6, 4), (3, 2, 5)])
def test_claim_ddpm_simple_mean_is_features_times_mse_loss(rng, dtype, shape):
    # ddpm_noise_loss(..., "simple") sums over a sample's features; F.mse_loss averages over
    # every element: the two differ by the number of features per sample, in value and gradient
    rng = np.random.default_rng(5)
    pred, noise = rng.normal(size=(2, *shape)).astype(dtype)
    features = int(np.prod(shape[1:]))
    t = rng.integers(1, 11, size=shape[0])
    betas = np.linspace(0.01, 0.2, 10).astype(dtype)  # float64 betas would promote the loss
    value, (grad,) = torch_run(F.mse_loss, [tt(pred, dtype, grad=True), tt(noise, dtype)], [0])
    ours = lu.ddpm_noise_loss(pred, noise, t, betas, weighting="simple")
    assert_close(ours, (features * value).astype(dtype), dtype)
    ours_grad = lu.ddpm_noise_loss_grad(pred, noise, t, betas, weighting="simple")
    assert_close(ours_grad, (features * grad).astype(dtype), dtype)
