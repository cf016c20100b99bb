"""Preference and contrastive losses: lossutils against their formulas written in PyTorch.

PyTorch has none of these losses as a function; each is written here as the papers and
the common training code write it (``F.logsigmoid`` of a margin, ``F.cross_entropy`` of
normalised similarities with the positives on the diagonal), and differentiated by
autograd.
"""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import assert_close, torch_run, tt

import lossutils as lu

REDUCTIONS = ["mean", "sum", "none"]
rng = np.random.default_rng(12)


def _reduce(losses, reduction):
    if reduction == "none":
        return losses
    return losses.mean() if reduction == "mean" else losses.sum()


def torch_bradley_terry(chosen, rejected, reduction):
    return _reduce(-F.logsigmoid(chosen - rejected), reduction)


def torch_dpo(pc, pr, rc, rr, beta, label_smoothing, reduction):
    # the DPO paper's loss, with the conservative DPO's label smoothing
    logits = (pc - pr) - (rc - rr)
    losses = (
        -F.logsigmoid(beta * logits) * (1 - label_smoothing)
        - F.logsigmoid(-beta * logits) * label_smoothing
    )
    return _reduce(losses, reduction)


def _logits(a, b, temperature):
    return F.normalize(a, dim=-1) @ F.normalize(b, dim=-1).T / temperature


def torch_info_nce(query, key, temperature, reduction):
    labels = torch.arange(len(query))
    return F.cross_entropy(_logits(query, key, temperature), labels, reduction=reduction)


def torch_clip(image, text, temperature, reduction):
    s = _logits(image, text, temperature)
    labels = torch.arange(len(image))
    rows = F.cross_entropy(s, labels, reduction="none")
    columns = F.cross_entropy(s.T, labels, reduction="none")
    return _reduce((rows + columns) / 2, reduction)


def torch_siglip(image, text, scale, bias, reduction):
    z = scale * (F.normalize(image, dim=-1) @ F.normalize(text, dim=-1).T) + bias
    labels = 2 * torch.eye(len(image), dtype=z.dtype) - 1
    return _reduce(-F.logsigmoid(labels * z).sum(dim=-1), reduction)


def compare(ours, ours_grad, theirs, arrays, grad_args, dtype, *params, reduction):
    arrays = [np.asarray(a, dtype) for a in arrays]
    tensors = [tt(a, grad=True) for a in arrays]
    value, grads = torch_run(lambda *t: theirs(*t, *params, reduction), tensors, grad_args)
    assert_close(ours(*arrays, *params, reduction=reduction), value, dtype)
    got = ours_grad(*arrays, *params, reduction=reduction)
    for a, b in zip(got, grads, strict=True):
        assert_close(a, b, dtype)


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_claim_preferences_bradley_terry_formula(rng, reduction, dtype):
    c, r = rng.normal(scale=3.0, size=(2, 4, 5))
    compare(
        lu.bradley_terry_loss,
        lu.bradley_terry_loss_grad,
        torch_bradley_terry,
        [c, r],
        [0, 1],
        dtype,
        reduction=reduction,
    )


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("beta,label_smoothing", [(0.1, 0.0), (0.5, 0.0), (1.0, 0.2)])
def test_claim_preferences_dpo_formula(rng, beta, label_smoothing, reduction, dtype):
    logps = -rng.uniform(5, 60, size=(4, 7))
    compare(
        lu.dpo_loss,
        lu.dpo_loss_grad,
        torch_dpo,
        list(logps),
        [0, 1],
        dtype,
        beta,
        label_smoothing,
        reduction=reduction,
    )


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("temperature", [0.07, 0.5])
def test_claim_contrastive_info_nce_formula(rng, temperature, reduction, dtype):
    q = rng.normal(size=(6, 4))
    k = q + rng.normal(scale=0.5, size=(6, 4))
    compare(
        lu.info_nce_loss,
        lu.info_nce_loss_grad,
        torch_info_nce,
        [q, k],
        [0, 1],
        dtype,
        temperature,
        reduction=reduction,
    )


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("temperature", [0.07, 0.5])
def test_claim_contrastive_clip_formula(rng, temperature, reduction, dtype):
    x = rng.normal(size=(6, 4))
    y = x + rng.normal(scale=0.5, size=(6, 4))
    compare(
        lu.clip_loss,
        lu.clip_loss_grad,
        torch_clip,
        [x, y],
        [0, 1],
        dtype,
        temperature,
        reduction=reduction,
    )


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("scale,bias", [(10.0, -10.0), (3.0, 0.5)])
def test_claim_contrastive_siglip_formula(rng, scale, bias, reduction, dtype):
    x = rng.normal(size=(6, 4))
    y = x + rng.normal(scale=0.5, size=(6, 4))
    compare(
        lu.siglip_loss,
        lu.siglip_loss_grad,
        torch_siglip,
        [x, y],
        [0, 1],
        dtype,
        scale,
        bias,
        reduction=reduction,
    )


def test_zero_embedding_is_normalised_as_f_normalize(rng, dtype):
    # F.normalize floors the norm at 1e-12: a zero row has zero similarities, no NaN
    x = rng.normal(size=(4, 3))
    x[2] = 0
    y = rng.normal(size=(4, 3))
    for ours, grad, theirs, params in (
        (lu.info_nce_loss, lu.info_nce_loss_grad, torch_info_nce, (0.1,)),
        (lu.clip_loss, lu.clip_loss_grad, torch_clip, (0.1,)),
        (lu.siglip_loss, lu.siglip_loss_grad, torch_siglip, (10.0, -10.0)),
    ):
        compare(ours, grad, theirs, [x, y], [0, 1], dtype, *params, reduction="mean")
