"""CTC: lossutils.ctc_loss against torch.nn.functional.ctc_loss.

Values agree for every reduction (``"mean"`` divides each loss by its target length first)
and with ``zero_infinity``. The gradients differ by design: PyTorch's gradient w.r.t.
``log_probs`` is the derivative of the loss plus ``exp(log_probs)`` times the sample's scale
in every frame inside the input length (the gradient w.r.t. logits that went through a
``log_softmax``); lossutils returns the derivative itself. Both facts are asserted here.
"""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import assert_close, tt

import lossutils as lu

REDUCTIONS = ["mean", "sum", "none"]
T, N, C = 12, 4, 5
rng = np.random.default_rng(12)
LOGITS = rng.normal(scale=2.0, size=(T, N, C))
# sample 0 cannot fit its target (two repeats need 2 + 2 + 1 = 5 frames, it has 4)
TARGETS = np.array([[1, 1, 2, 2], [3, 1, 4, 0], [2, 0, 0, 0], [0, 0, 0, 0]])
INPUT_LENGTHS = np.array([4, 12, 7, 9])
TARGET_LENGTHS = np.array([4, 3, 1, 0])
CONCATENATED = np.concatenate([TARGETS[i, :n] for i, n in enumerate(TARGET_LENGTHS)])


def log_softmax(z):
    return (z - z.max(-1, keepdims=True)) - np.log(
        np.exp(z - z.max(-1, keepdims=True)).sum(-1, keepdims=True)
    )


def torch_ctc(log_probs, targets, dtype, reduction, zero_infinity):
    lp = tt(log_probs, dtype, grad=True)
    out = F.ctc_loss(
        lp,
        torch.from_numpy(targets),
        torch.from_numpy(INPUT_LENGTHS),
        torch.from_numpy(TARGET_LENGTHS),
        blank=0,
        reduction=reduction,
        zero_infinity=zero_infinity,
    )
    (grad,) = torch.autograd.grad(out.sum(), [lp])
    return out.detach().numpy(), grad.numpy()


def sample_scale(reduction):
    if reduction == "mean":
        return 1.0 / (N * np.maximum(TARGET_LENGTHS, 1))
    return np.ones(N)


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("zero_infinity", [False, True])
@pytest.mark.parametrize("layout", ["padded", "concatenated"])
def test_claim_ctc_values_and_gradient_convention(dtype, reduction, zero_infinity, layout):
    log_probs = log_softmax(LOGITS).astype(dtype)
    targets = TARGETS if layout == "padded" else CONCATENATED
    args = (log_probs, targets, INPUT_LENGTHS, TARGET_LENGTHS)
    kwargs = {"reduction": reduction, "zero_infinity": zero_infinity}
    value, torch_grad = torch_ctc(log_probs, targets, dtype, reduction, zero_infinity)
    assert_close(lu.ctc_loss(*args, **kwargs), value, dtype)
    grad = lu.ctc_loss_grad(*args, **kwargs)
    # PyTorch adds exp(log_probs) times the sample's scale inside each input length
    inside = np.arange(T)[:, None] < INPUT_LENGTHS[None, :]
    extra = np.where(inside[:, :, None], np.exp(log_probs.astype(np.float64)), 0.0)
    extra = extra * sample_scale(reduction)[None, :, None]
    infinite = ~np.isfinite(lu.ctc_loss(*args, reduction="none"))
    assert infinite.tolist() == [True, False, False, False]
    if zero_infinity:
        extra[:, infinite] = 0  # the whole sample's gradient is 0 in both
    expected = torch_grad.astype(np.float64) - extra
    assert_close(grad, expected.astype(dtype), dtype)


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_claim_ctc_gradient_through_log_softmax(dtype, reduction):
    # chained through log_softmax, lossutils' gradient equals PyTorch's autograd w.r.t. logits
    z = tt(LOGITS, dtype, grad=True)
    lp = F.log_softmax(z, dim=-1)
    out = F.ctc_loss(
        lp,
        torch.from_numpy(TARGETS),
        torch.from_numpy(INPUT_LENGTHS),
        torch.from_numpy(TARGET_LENGTHS),
        reduction=reduction,
        zero_infinity=True,
    )
    (torch_grad,) = torch.autograd.grad(out.sum(), [z])
    log_probs = lp.detach().numpy()
    g = lu.ctc_loss_grad(
        log_probs, TARGETS, INPUT_LENGTHS, TARGET_LENGTHS, reduction=reduction, zero_infinity=True
    )
    p = np.exp(log_probs)
    chained = g - p * g.sum(axis=-1, keepdims=True)  # the Jacobian of log_softmax, transposed
    assert_close(chained, torch_grad.numpy(), dtype)


def test_claim_ctc_infinite_loss_gradient_is_nan():
    # inside the input length; 0 in the frames after it
    log_probs = log_softmax(LOGITS)
    _, torch_grad = torch_ctc(log_probs, TARGETS, np.float64, "sum", False)
    grad = lu.ctc_loss_grad(log_probs, TARGETS, INPUT_LENGTHS, TARGET_LENGTHS, reduction="sum")
    frames = INPUT_LENGTHS[0]
    assert np.isnan(torch_grad[:frames, 0]).all() and np.isnan(grad[:frames, 0]).all()
    assert not torch_grad[frames:, 0].any() and not grad[frames:, 0].any()


def test_deviation_ctc_unbatched_input():
    # PyTorch accepts unbatched (T, C) log-probabilities with a 1-D target; lossutils asks for
    # the batch axis (a 2-D array would be ambiguous with the concatenated-targets layout)
    log_probs = log_softmax(LOGITS[:, 1])
    target = TARGETS[1, : TARGET_LENGTHS[1]]
    value = F.ctc_loss(
        tt(log_probs), torch.from_numpy(target), torch.tensor(T), torch.tensor(len(target))
    )
    with pytest.raises(ValueError, match=r"log_probs must be a real array of shape \(T, N, C\)"):
        lu.ctc_loss(log_probs, target, [T], [len(target)])
    batched = lu.ctc_loss(log_probs[:, None], target[None], [T], [len(target)])
    assert_close(batched, value.numpy(), np.float64)
