"""Count and heavy-tailed regression losses: lossutils against torch.nn.functional and
torch.distributions (NegativeBinomial, StudentT)."""

import inspect

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import assert_close, torch_run, tt

import lossutils as lu

REDUCTIONS = ["mean", "sum", "none"]
rng = np.random.default_rng(8)
ETA = rng.normal(scale=1.5, size=(5, 4))
COUNTS = rng.poisson(3.0, size=(5, 4)).astype(float)
COUNTS[0, :4] = [0.0, 1.0, 2.0, 40.0]  # the Stirling term applies above 1 only
RATES = np.exp(ETA)
RATES[1, 0] = 0.0  # a zero rate: eps keeps the log finite


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("eps", [1e-8, 1e-3])
@pytest.mark.parametrize("full", [False, True])
@pytest.mark.parametrize("log_input", [True, False])
def test_poisson_nll_loss(log_input, full, eps, reduction, dtype):
    x = np.asarray(ETA if log_input else RATES, dtype)
    y = COUNTS.astype(dtype)
    kw = {"log_input": log_input, "full": full, "eps": eps, "reduction": reduction}
    tensors = [tt(x, grad=True), tt(y)]
    value, (grad,) = torch_run(lambda a, b: F.poisson_nll_loss(a, b, **kw), tensors, [0])
    assert_close(lu.poisson_nll_loss(x, y, **kw), value, dtype)
    assert_close(lu.poisson_nll_loss_grad(x, y, **kw), grad, dtype)


@pytest.mark.parametrize("total_count", ["elementwise", "scalar-like", "large"])
def test_negative_binomial_is_torch_distributions(total_count, dtype):
    """-NegativeBinomial(total_count, logits=input).log_prob(target), value and gradients."""
    z = ETA.astype(dtype)
    y = COUNTS.astype(dtype)
    r = {
        "elementwise": np.exp(rng.normal(size=ETA.shape)),
        "scalar-like": np.full(ETA.shape, 2.5),
        "large": np.full(ETA.shape, 1e3),
    }[total_count].astype(dtype)
    tz, tr = tt(z, grad=True), tt(r, grad=True)
    nll = -torch.distributions.NegativeBinomial(total_count=tr, logits=tz).log_prob(tt(y))
    gz, gr = torch.autograd.grad(nll.sum(), [tz, tr])
    rtol = 1e-4 if dtype == np.float32 else 1e-9  # torch's lgamma differences cancel
    assert_close(lu.negative_binomial_nll_loss(z, y, r, reduction="none"), nll.detach().numpy(),
                 dtype, rtol=rtol, atol=1e-5 if dtype == np.float32 else 1e-10)  # fmt: skip
    oz, orr = lu.negative_binomial_nll_loss_grad(z, y, r, reduction="sum")
    assert_close(oz, gz.numpy(), dtype, rtol=rtol)
    assert_close(orr, gr.numpy(), dtype, rtol=rtol, atol=1e-5 if dtype == np.float32 else 1e-10)


def test_student_t_is_torch_distributions(dtype):
    """-StudentT(df, loc=input, scale).log_prob(target), value and the three gradients."""
    x = rng.normal(size=(4, 3)).astype(dtype)
    y = rng.normal(size=(4, 3)).astype(dtype)
    s = np.exp(rng.normal(scale=0.5, size=(4, 3))).astype(dtype)
    df = np.exp(rng.normal(scale=1.0, size=(4, 3))).astype(dtype) + np.asarray(0.5, dtype)
    tx, ts, tdf = tt(x, grad=True), tt(s, grad=True), tt(df, grad=True)
    nll = -torch.distributions.StudentT(tdf, loc=tx, scale=ts).log_prob(tt(y))
    grads = torch.autograd.grad(nll.sum(), [tx, ts, tdf])
    rtol = 1e-4 if dtype == np.float32 else 1e-10
    assert_close(lu.student_t_nll_loss(x, y, s, df, reduction="none"), nll.detach().numpy(), dtype,
                 rtol=rtol, atol=1e-5 if dtype == np.float32 else 1e-12)  # fmt: skip
    ours = lu.student_t_nll_loss_grad(x, y, s, df, reduction="sum")
    for a, b in zip(ours, grads, strict=True):
        assert_close(a, b.numpy(), dtype, rtol=rtol, atol=1e-5 if dtype == np.float32 else 1e-12)


def test_claim_count_data_pytorch_calls():
    """The count chapter's calls: F.poisson_nll_loss(input, target, log_input, full, eps=1e-8)
    and -NegativeBinomial(total_count, logits=input).log_prob(target) are lossutils'
    poisson_nll_loss and negative_binomial_nll_loss (defaults included)."""
    params = inspect.signature(F.poisson_nll_loss).parameters
    assert (params["log_input"].default, params["full"].default, params["eps"].default) == (
        True, False, 1e-8,
    )  # fmt: skip
    ours = inspect.signature(lu.poisson_nll_loss).parameters
    assert (ours["log_input"].default, ours["full"].default, ours["eps"].default) == (
        True,
        False,
        1e-8,
    )
    a = F.poisson_nll_loss(tt(ETA), tt(COUNTS)).item()
    assert float(lu.poisson_nll_loss(ETA, COUNTS)) == pytest.approx(a, rel=1e-13)
    r = np.full(ETA.shape, 2.0)
    b = -torch.distributions.NegativeBinomial(tt(r), logits=tt(ETA)).log_prob(tt(COUNTS)).mean()
    assert float(lu.negative_binomial_nll_loss(ETA, COUNTS, r)) == pytest.approx(
        b.item(), rel=1e-12
    )
