"""Mixed floating dtypes (a float32 input, a float64 target): PyTorch's autograd gives each
leaf's gradient the leaf's own dtype, and lossutils each gradient its argument's dtype (the
API page's contract). These four PyTorch losses also compute in the promotion, float64, as
lossutils does."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import assert_close, tt

import lossutils as lu

rng = np.random.default_rng(11)
X = rng.normal(scale=2.0, size=(5, 3))
Y = rng.normal(scale=2.0, size=(5, 3))
SIGNS = 2 * rng.integers(0, 2, size=5).astype(np.float64) - 1

# name: (lossutils' loss, its gradient, PyTorch's, the arguments, how many lead with a gradient)
CASES = {
    "mse_loss": (lu.mse_loss, lu.mse_loss_grad, F.mse_loss, (X, Y), 1),
    "l1_loss": (lu.l1_loss, lu.l1_loss_grad, F.l1_loss, (X, Y), 1),
    "kl_div": (
        lambda *a: lu.kl_div(*a, reduction="batchmean"),
        lambda *a: lu.kl_div_grad(*a, reduction="batchmean"),
        lambda *a: F.kl_div(*a, reduction="batchmean"),
        (lu.log_softmax(X), lu.softmax(Y)),
        1,
    ),
    "margin_ranking_loss": (
        lu.margin_ranking_loss,
        lu.margin_ranking_loss_grad,
        F.margin_ranking_loss,
        (X[:, 0], Y[:, 0], SIGNS),
        2,
    ),
}


@pytest.mark.parametrize("name", list(CASES))
def test_gradient_in_each_arguments_own_dtype(name):
    ours, ours_grad, theirs, arrays, n_grad = CASES[name]
    # the first argument float32, the others float64
    arrays = [a.astype(np.float32 if i == 0 else np.float64) for i, a in enumerate(arrays)]
    tensors = [tt(a, grad=i < n_grad) for i, a in enumerate(arrays)]
    value = theirs(*tensors)
    grads = torch.autograd.grad(value, tensors[:n_grad])
    assert value.dtype == torch.float64
    assert [g.dtype for g in grads] == [t.dtype for t in tensors[:n_grad]]
    assert_close(ours(*arrays), value.detach().numpy(), np.float64)
    ours_grads = ours_grad(*arrays)
    ours_grads = ours_grads if isinstance(ours_grads, tuple) else (ours_grads,)
    for mine, reference, array in zip(ours_grads, grads, arrays, strict=False):
        assert_close(mine, reference.numpy(), array.dtype.type)
