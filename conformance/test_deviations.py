"""Where lossutils differs from PyTorch on purpose, the difference asserted.

Each test shows what PyTorch (or torchvision) returns, what lossutils returns, and, where the
difference is one of accuracy, that mpmath agrees with lossutils. The deviation table of the
book lists every one of them with its reason; deviations that the chapters also state are
asserted by the ``test_claim_*`` tests named there.
"""

import inspect
import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import load_torchvision_ops, tt

import lossutils as lu


def test_deviation_no_silent_broadcasting():
    """input and target of different shapes: PyTorch broadcasts (with a UserWarning) and
    returns a loss over the broadcast pairs; lossutils raises ValueError."""
    x = np.arange(3.0).reshape(3, 1)
    y = np.arange(3.0)
    with pytest.warns(UserWarning, match="different to the input size"):
        theirs = F.mse_loss(tt(x), tt(y)).item()
    assert theirs == pytest.approx(((x - y) ** 2).mean())  # 3 x 3 pairs, not 3
    assert theirs != 0.0
    with pytest.raises(ValueError, match="target"):
        lu.mse_loss(x, y)


def test_deviation_gaussian_nll_var_one_dim_short():
    """PyTorch accepts a var of shape input.shape[:-1] (as var[..., None]); lossutils asks
    for that trailing 1 explicitly (a var with as many dimensions as the input that
    broadcasts to it, e.g. (N, 1, H, W), or a scalar), so that a var of the wrong length is
    never broadcast along the wrong axis."""
    x = np.zeros((3, 4))
    v = np.ones(3)
    theirs = F.gaussian_nll_loss(tt(x), tt(x + 1), tt(v)).item()
    assert theirs == pytest.approx(0.5)
    with pytest.raises(ValueError, match="var"):
        lu.gaussian_nll_loss(x, x + 1, v)
    assert float(lu.gaussian_nll_loss(x, x + 1, v[:, None])) == pytest.approx(theirs, rel=1e-15)


def test_deviation_margin_labels_must_be_plus_minus_one():
    """Binary margin losses take t in {-1, +1}: a 0/1 label is refused by lossutils, while
    PyTorch's formulas (relu(1 - t x), soft_margin_loss) silently treat t = 0 as a constant
    loss with zero gradient."""
    x = np.array([-2.0, 0.5, 3.0])
    t01 = np.array([0.0, 1.0, 0.0])
    assert torch.relu(1 - tt(t01) * tt(x)).tolist()[0::2] == [1.0, 1.0]
    for loss in (lu.hinge_loss, lu.squared_hinge_loss, lu.square_loss, lu.logistic_loss):
        with pytest.raises(ValueError, match="target"):
            loss(x, t01)


def test_deviation_sigmoid_focal_loss_api():
    """torchvision's sigmoid_focal_loss defaults to reduction="none" and disables alpha with
    alpha=-1; lossutils defaults to "mean" like every lossutils loss and disables it with
    alpha=None (a negative alpha is refused). The values agree (see test_binary.py)."""
    ops = load_torchvision_ops()
    theirs = inspect.signature(ops.sigmoid_focal_loss).parameters
    ours = inspect.signature(lu.sigmoid_focal_loss).parameters
    assert theirs["reduction"].default == "none" and ours["reduction"].default == "mean"
    z, y = np.array([-1.0, 2.0]), np.array([1.0, 0.0])
    no_alpha = ops.sigmoid_focal_loss(tt(z), tt(y), alpha=-1, reduction="mean").item()
    assert float(lu.sigmoid_focal_loss(z, y, alpha=None)) == pytest.approx(no_alpha, rel=1e-14)
    with pytest.raises(ValueError, match="alpha"):
        lu.sigmoid_focal_loss(z, y, alpha=-1)


def test_deviation_sigmoid_focal_loss_gradient_gamma_below_one():
    """With gamma < 1 autograd of torchvision's formula is NaN for confident correct logits
    ((1 - p_t)^(gamma - 1) at 1 - p_t = 0); lossutils' gradient is finite, the exact limit."""
    ops = load_torchvision_ops()
    z = tt(np.array([40.0, -40.0]), grad=True)
    y = tt(np.array([1.0, 0.0]))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        (grad,) = torch.autograd.grad(ops.sigmoid_focal_loss(z, y, gamma=0.5).sum(), [z])
    assert np.isnan(grad.numpy()).all()
    ours = lu.sigmoid_focal_loss_grad(z.detach().numpy(), y.numpy(), gamma=0.5, reduction="sum")
    assert np.isfinite(ours).all()
    assert ours[0] <= 0.0 <= ours[1] and np.all(np.abs(ours) < 1e-8)


def test_deviation_softmax_inf_logit_limit():
    """A +inf logit on the class axis: PyTorch's softmax, log_softmax and cross_entropy give
    NaN (inf - inf in the max-shift); lossutils gives the limit, the one the logit 1e4 gives
    already (all the probability on the +inf class)."""
    z = np.array([[np.inf, 0.0, 1.0]])
    assert torch.isnan(torch.softmax(tt(z), dim=-1)[0, 0])
    assert torch.isnan(F.cross_entropy(tt(z), torch.tensor([0])))
    np.testing.assert_array_equal(lu.softmax(z), [[1.0, 0.0, 0.0]])
    np.testing.assert_array_equal(lu.log_softmax(z), [[0.0, -np.inf, -np.inf]])
    assert float(lu.cross_entropy(z, np.array([0]))) == 0.0
    assert float(lu.cross_entropy(z, np.array([1]))) == np.inf
    np.testing.assert_array_equal(lu.cross_entropy_grad(z, np.array([0])), [[0.0, 0.0, 0.0]])
    big = np.array([[1e4, 0.0, 1.0]])
    assert F.cross_entropy(tt(big), torch.tensor([0])).item() == 0.0
    np.testing.assert_array_equal(lu.softmax(big), lu.softmax(z))


@pytest.mark.parametrize("p", [1, 2])
def test_deviation_multi_margin_loss_nan_score(p):
    """A NaN score: PyTorch's multi_margin_loss drops its term (max(0, NaN) compares false),
    a finite loss with gradient 0 at that score; lossutils propagates NaN to the loss and to
    the entries the term depends on (the NaN score and the target), as every loss does."""
    z = np.array([[1.0, np.nan, 0.5]])
    y = np.array([0])
    zt = tt(z, grad=True)
    theirs = F.multi_margin_loss(zt, torch.tensor(y), p=p, reduction="sum")
    (grad,) = torch.autograd.grad(theirs, [zt])
    assert np.isfinite(theirs.item()) and grad[0, 1].item() == 0.0
    assert np.isnan(lu.multi_margin_loss(z, y, p=p, reduction="sum"))
    ours = lu.multi_margin_loss_grad(z, y, p=p, reduction="sum")
    assert np.isnan(ours[0, :2]).all() and np.isfinite(ours[0, 2])
