"""Counts, heavy tails and quantiles: lossutils against PyTorch.

``F.poisson_nll_loss``, ``torch.distributions.NegativeBinomial(total_count, logits=...)``,
``torch.distributions.StudentT(df, loc, scale)`` and the pinball loss written with
``torch.maximum`` (as forecasting code commonly writes it): values and the autograd
gradients of the summed output, in float64 and float32. The ``test_claim_*`` tests back
statements of the chapters count-data and heavy-tails-quantiles.
"""

import mpmath
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import assert_close, torch_run, tt

import lossutils as lu

REDUCTIONS = ["mean", "sum", "none"]
rng = np.random.default_rng(11)
ETA = rng.normal(scale=1.5, size=(5, 4))
COUNTS = rng.poisson(np.exp(ETA)).astype(np.float64)
COUNTS[0] = [0.0, 1.0, 2.0, 40.0]  # both sides of the Stirling mask (target > 1)
RATES = np.exp(rng.normal(size=(5, 4)))
RATES[1, 0] = 0.0  # a zero rate: eps keeps the logarithm finite


def compare(ours, ours_grad, theirs, arrays, grad_positions, dtype, rtol=None, atol=None, **kw):
    arrays = [np.asarray(a, dtype) for a in arrays]
    tensors = [tt(a, grad=i in grad_positions) for i, a in enumerate(arrays)]
    value, grads = torch_run(lambda *t: theirs(*t), tensors, grad_positions)
    assert_close(ours(*arrays, **kw), value, dtype, rtol=rtol, atol=atol)
    g = ours_grad(*arrays, **kw)
    g = g if isinstance(g, tuple) else (g,)
    for a, b in zip(g, grads, strict=True):
        assert_close(a, b, dtype, rtol=rtol, atol=atol)


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("full", [False, True])
@pytest.mark.parametrize("log_input", [True, False])
def test_claim_count_data_poisson_nll_loss_options(log_input, full, reduction, dtype):
    """log_input, full (Stirling's term where target > 1) and eps mean the same in both."""
    inputs = ETA if log_input else RATES
    compare(
        lu.poisson_nll_loss, lu.poisson_nll_loss_grad,
        lambda x, y: F.poisson_nll_loss(x, y, log_input=log_input, full=full, eps=1e-8,
                                        reduction=reduction),
        [inputs, COUNTS], (0,), dtype, log_input=log_input, full=full, eps=1e-8,
        reduction=reduction,
    )  # fmt: skip


def _nb(z, y, r):
    return -torch.distributions.NegativeBinomial(total_count=r, logits=z).log_prob(y)


def test_claim_count_data_negative_binomial_logits_and_total_count(rng, dtype):
    z = rng.normal(size=(4, 5))
    r = rng.uniform(0.3, 30.0, size=(4, 5))
    y = rng.poisson(r * np.exp(z)).astype(np.float64)
    y[0, :2] = 0.0
    compare(lu.negative_binomial_nll_loss, lu.negative_binomial_nll_loss_grad, _nb, [z, y, r],
            (0, 2), dtype, reduction="none")  # fmt: skip


def test_claim_count_data_negative_binomial_total_count_zero(dtype):
    """total_count = 0: a point mass at 0 (loss 0 for the count 0, inf otherwise) in both.

    Where total_count + target = 0, PyTorch masks the normalizer; its autograd gradient with
    respect to total_count is then NaN, while lossutils gives softplus(z), the derivative of the
    one term that remains (r softplus(z)).
    """
    z = np.array([0.3, -1.2], dtype)
    y = np.array([0.0, 2.0], dtype)
    r = np.zeros(2, dtype)
    tensors = [tt(z, grad=True), tt(y), tt(r, grad=True)]
    value, (g_z, g_r) = torch_run(_nb, tensors, (0, 2))
    ours = lu.negative_binomial_nll_loss(z, y, r, reduction="none")
    assert ours.tolist() == value.tolist() == [0.0, np.inf]
    ours_z, ours_r = lu.negative_binomial_nll_loss_grad(z, y, r, reduction="none")
    assert_close(ours_z[:1], g_z[:1], dtype)
    assert np.isnan(g_r[0]) and ours_r[0] == lu.softplus(z[0])


def test_claim_count_data_negative_binomial_large_total_count_digits():
    """Near the Poisson limit torch's log_prob (log-gammas as written) loses digits in float64;
    lossutils keeps them. Mean 3, count 3, total_count 1e6 and 1e9, against mpmath."""
    r = np.array([1e6, 1e9])
    z = np.log(3.0 / r)
    y = np.array([3.0, 3.0])
    exact = []
    with mpmath.workdps(50):
        for zz, rr in zip(z, r, strict=True):
            zz, rr = mpmath.mpf(float(zz)), mpmath.mpf(float(rr))
            value = rr * mpmath.log1p(mpmath.exp(zz)) + 3 * mpmath.log1p(mpmath.exp(-zz))
            value += mpmath.loggamma(4) + mpmath.loggamma(rr) - mpmath.loggamma(rr + 3)
            exact.append(float(value))
    ulp = np.spacing(np.abs(exact))
    theirs = _nb(tt(z), tt(y), tt(r)).numpy()
    ours = lu.negative_binomial_nll_loss(z, y, r, reduction="none")
    assert np.all(np.abs(theirs - exact) / ulp > 1e3)
    assert np.all(np.abs(ours - exact) / ulp <= 4)


def _student_t(x, y, s, nu):
    return -torch.distributions.StudentT(nu, loc=x, scale=s).log_prob(y)


@pytest.mark.parametrize("shape", ["same", "row", "scalar"])
def test_claim_heavy_tails_student_t_log_prob(rng, shape, dtype):
    x, y = rng.normal(scale=3.0, size=(2, 4, 5))
    s = rng.uniform(0.2, 3.0, size=(4, 5))
    nu = rng.uniform(0.5, 60.0, size=(4, 5))
    if shape == "row":
        s, nu = s[:, :1], nu[:, :1]
    elif shape == "scalar":
        s, nu = np.array(1.3), np.array(7.0)
    compare(
        lu.student_t_nll_loss, lu.student_t_nll_loss_grad,
        lambda a, b, c, d: _student_t(a, b, c, d).sum(),
        [x, y, s, nu], (0, 2, 3), dtype, rtol=1e-10 if dtype == np.float64 else 1e-4,
        reduction="sum",
    )  # fmt: skip


def _pinball(x, y, q):
    u = y - x
    return torch.maximum(q * u, (q - 1) * u)


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_claim_heavy_tails_quantiles_pinball_and_tie_gradient(rng, reduction, dtype):
    """max(tau u, (tau - 1) u) with u = y - y-hat; torch.maximum splits the gradient of a tie,
    so at u = 0 autograd gives 1/2 - tau, lossutils' subgradient. Multi-quantile heads on the
    last axis with one target per row."""
    x = rng.normal(size=(6, 3))
    y = rng.normal(size=(6, 1))
    x[0] = y[0, 0]  # ties in every head of the first row
    levels = np.array([0.1, 0.5, 0.9])

    def theirs(a, b):
        out = _pinball(a, b, torch.tensor(levels, dtype=a.dtype))
        return {"mean": out.mean(), "sum": out.sum(), "none": out}[reduction]

    compare(
        lambda a, b, **kw: lu.quantile_loss(a, b, levels.astype(a.dtype), **kw),
        lambda a, b, **kw: lu.quantile_loss_grad(a, b, levels.astype(a.dtype), **kw),
        theirs, [x, y], (0,), dtype, reduction=reduction,
    )  # fmt: skip


def test_deviation_poisson_nll_negative_target():
    """A negative count: PyTorch returns a number (e^eta - y eta with y < 0); lossutils raises
    ValueError naming target. Non-integer counts are accepted by both."""
    theirs = F.poisson_nll_loss(tt([0.5]), tt([-2.0]), reduction="sum").item()
    assert theirs == pytest.approx(np.exp(0.5) + 2 * 0.5)
    with pytest.raises(ValueError, match="target must hold non-negative counts"):
        lu.poisson_nll_loss([0.5], [-2.0])
    half = F.poisson_nll_loss(tt([0.5]), tt([2.5]), reduction="sum").item()
    assert float(lu.poisson_nll_loss([0.5], [2.5], reduction="sum")) == pytest.approx(half)
