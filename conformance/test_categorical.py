"""Categorical losses: lossutils against torch.nn.functional and optax.

The class axis is the last one in lossutils (and optax), dimension 1 in PyTorch: for 2-D
input the two agree, for N-D input the class axis is moved before calling PyTorch.
"""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import torch.nn.functional as F
from conftest import assert_close, torch_run, tt

import lossutils as lu

REDUCTIONS = ["mean", "sum", "none"]
C = 5
rng = np.random.default_rng(4)
Z = rng.normal(scale=2.0, size=(6, C))
LABELS = np.array([0, 3, 4, 1, 3, 2])
PROBS = rng.dirichlet(np.ones(C), size=6)
WEIGHT = np.array([0.2, 1.0, 3.0, 0.5, 2.0])
# Spatial input: lossutils (N, H, W, C); PyTorch (N, C, H, W).
Z_ND = rng.normal(scale=2.0, size=(2, 3, 4, C))
LABELS_ND = rng.integers(0, C, size=(2, 3, 4))
PROBS_ND = rng.dirichlet(np.ones(C), size=(2, 3, 4))


def to_torch_layout(a):
    return np.moveaxis(a, -1, 1) if a.ndim > 2 else a


def from_torch_layout(a, nd):
    return np.moveaxis(a, 1, -1) if nd > 2 else a


def compare(ours, ours_grad, theirs, z, target, dtype, **kw):
    z = np.asarray(z, dtype)
    if np.issubdtype(np.asarray(target).dtype, np.floating):
        target = np.asarray(target, dtype)
        t_target = tt(to_torch_layout(target))
    else:
        t_target = tt(target)
    kw_t = dict(kw)
    if kw.get("weight") is not None:
        kw["weight"] = np.asarray(kw["weight"], dtype)
        kw_t["weight"] = tt(kw["weight"])
    tz = tt(to_torch_layout(z), grad=True)
    value, (grad,) = torch_run(lambda a, b: theirs(a, b, **kw_t), [tz, t_target], [0])
    assert_close(ours(z, target, **kw), value, dtype)
    assert_close(ours_grad(z, target, **kw), from_torch_layout(grad, z.ndim), dtype)


CE_TARGETS = {
    "index": (Z, LABELS),
    "index-ignored": (Z, np.where(np.arange(6) % 3 == 1, -100, LABELS)),
    "index-ignore-7": (Z, np.where(np.arange(6) % 3 == 1, 7, LABELS)),
    "probability": (Z, PROBS),
    "index-nd": (Z_ND, LABELS_ND),
    "probability-nd": (Z_ND, PROBS_ND),
}


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("label_smoothing", [0.0, 0.1, 0.5])
@pytest.mark.parametrize("weight", [None, WEIGHT], ids=["no-weight", "weight"])
@pytest.mark.parametrize("target", CE_TARGETS, ids=list(CE_TARGETS))
def test_cross_entropy(target, weight, label_smoothing, reduction, dtype):
    z, y = CE_TARGETS[target]
    kw = {"weight": weight, "reduction": reduction, "label_smoothing": label_smoothing}
    if target == "index-ignore-7":
        kw["ignore_index"] = 7
    compare(lu.cross_entropy, lu.cross_entropy_grad, F.cross_entropy, z, y, dtype, **kw)


NLL_TARGETS = {k: v for k, v in CE_TARGETS.items() if "probability" not in k}


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("weight", [None, WEIGHT], ids=["no-weight", "weight"])
@pytest.mark.parametrize("target", NLL_TARGETS, ids=list(NLL_TARGETS))
def test_nll_loss(target, weight, reduction, dtype):
    z, y = NLL_TARGETS[target]
    logp = lu.log_softmax(z)
    kw = {"weight": weight, "reduction": reduction}
    if target == "index-ignore-7":
        kw["ignore_index"] = 7
    compare(lu.nll_loss, lu.nll_loss_grad, F.nll_loss, logp, y, dtype, **kw)


@pytest.mark.parametrize("weight", [None, WEIGHT], ids=["no-weight", "weight"])
@pytest.mark.parametrize("loss", ["cross_entropy", "nll_loss"])
def test_all_targets_ignored(loss, weight, dtype):
    """A mean over no target is NaN (0/0) in both; sum is 0; the gradient is 0."""
    y = np.full(6, -100)
    for reduction in REDUCTIONS:
        compare(
            getattr(lu, loss), getattr(lu, loss + "_grad"), getattr(F, loss), Z, y, dtype,
            weight=weight, reduction=reduction,
        )  # fmt: skip
    assert np.isnan(getattr(lu, loss)(Z.astype(dtype), y))


@pytest.mark.parametrize("target", ["index", "probability"])
def test_cross_entropy_empty_batch(target, dtype):
    z = np.zeros((0, C))
    y = np.zeros(0, int) if target == "index" else np.zeros((0, C))
    for reduction in REDUCTIONS:
        compare(lu.cross_entropy, lu.cross_entropy_grad, F.cross_entropy, z, y, dtype,
                reduction=reduction)  # fmt: skip


def test_cross_entropy_infinite_logit(dtype):
    """A logit of -inf in a wrong class is a probability of exactly 0: both handle it."""
    z = Z.copy()
    z[:, 2] = np.where(LABELS == 2, z[:, 2], -np.inf)
    compare(lu.cross_entropy, lu.cross_entropy_grad, F.cross_entropy, z, LABELS, dtype)


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("weight", [None, WEIGHT], ids=["no-weight", "weight"])
@pytest.mark.parametrize("margin", [1.0, 0.3])
@pytest.mark.parametrize("p", [1, 2])
def test_multi_margin_loss(p, margin, weight, reduction, dtype):
    z = Z / 2
    kw = {"p": p, "margin": margin, "weight": weight, "reduction": reduction}
    compare(lu.multi_margin_loss, lu.multi_margin_loss_grad, F.multi_margin_loss, z, LABELS,
            dtype, **kw)  # fmt: skip


def jax_value_and_grad(fn, x, y):
    y = jnp.asarray(y)
    value = fn(jnp.asarray(x), y)
    grad = jax.grad(lambda a: fn(a, y).sum())(jnp.asarray(x))
    return np.asarray(value), np.asarray(grad)


@pytest.mark.parametrize("shape", ["2-D", "N-D"])
def test_optax_softmax_cross_entropy(shape, dtype):
    z, y, p = (Z, LABELS, PROBS) if shape == "2-D" else (Z_ND, LABELS_ND, PROBS_ND)
    z, p = z.astype(dtype), p.astype(dtype)
    value, grad = jax_value_and_grad(optax.losses.softmax_cross_entropy, z, p)
    assert_close(lu.cross_entropy(z, p, reduction="none"), value, dtype)
    assert_close(lu.cross_entropy_grad(z, p, reduction="none"), grad, dtype)
    value, grad = jax_value_and_grad(optax.losses.softmax_cross_entropy_with_integer_labels, z, y)
    assert_close(lu.cross_entropy(z, y, reduction="none"), value, dtype)
    assert_close(lu.cross_entropy_grad(z, y, reduction="none"), grad, dtype)


@pytest.mark.parametrize("alpha", [0.1, 0.3])
def test_optax_smooth_labels_is_label_smoothing(alpha, dtype):
    """softmax_cross_entropy on optax.smooth_labels == cross_entropy(label_smoothing=alpha)."""
    z = Z.astype(dtype)
    smoothed = optax.smooth_labels(jnp.asarray(np.eye(C)[LABELS], dtype), alpha)
    value, grad = jax_value_and_grad(optax.losses.softmax_cross_entropy, z, smoothed)
    kw = {"label_smoothing": alpha, "reduction": "none"}
    assert_close(lu.cross_entropy(z, LABELS, **kw), value, dtype)
    assert_close(lu.cross_entropy_grad(z, LABELS, **kw), grad, dtype)


def test_deviation_cross_entropy_class_axis_last(rng):
    """Deviation: the class axis is the last one. With a 3-D input of shape (N, A, A) both
    libraries accept the same array and compute different losses without an error."""
    z = rng.normal(size=(2, 3, 3))
    y = np.array([[0, 1, 2], [2, 1, 0]])
    ours = lu.cross_entropy(z, y, reduction="none")
    theirs = F.cross_entropy(tt(z), tt(y), reduction="none").numpy()
    moved = F.cross_entropy(tt(np.moveaxis(z, -1, 1)), tt(y), reduction="none").numpy()
    assert ours.shape == theirs.shape == (2, 3)
    assert not np.allclose(ours, theirs)
    assert_close(ours, moved, np.float64)
