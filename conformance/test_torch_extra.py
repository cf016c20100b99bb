"""The soft-margin, multilabel, ranking and embedding losses: lossutils against torch.nn.functional.

soft_margin_loss, multilabel_soft_margin_loss, multilabel_margin_loss, margin_ranking_loss,
cosine_embedding_loss and hinge_embedding_loss: values and autograd gradients in float64 and
float32, over every reduction, weight and margin, and the edge cases; and, explicitly, where
lossutils differs on purpose.
"""

import math

import mpmath
import numpy as np
import pytest
import torch.nn.functional as F
from conftest import assert_close, torch_run, tt

import lossutils as lu

REDUCTIONS = ["mean", "sum", "none"]
rng = np.random.default_rng(9)
Z = rng.normal(scale=3.0, size=(6, 5))
T = np.where(rng.random((6, 5)) < 0.5, -1.0, 1.0)
Y = (rng.random((6, 5)) < 0.4).astype(float)
Y_SOFT = rng.random((6, 5))
W = rng.random(5) + 0.1
X1 = rng.normal(size=(7, 4))
X2 = X1 + rng.normal(scale=0.8, size=(7, 4))
TT = np.where(rng.random(7) < 0.5, -1.0, 1.0)


def compare(ours, ours_grad, theirs, arrays, dtype, grad_args=(0,), kinds=None):
    """Values and gradients (autograd of the summed output) of both sides, compared.

    ``kinds`` marks arrays that are integer (class indices) rather than ``dtype``.
    """
    kinds = kinds or {}
    arrays = [
        None if a is None else np.asarray(a, kinds.get(i, dtype)) for i, a in enumerate(arrays)
    ]
    tensors = [None if a is None else tt(a, grad=i in grad_args) for i, a in enumerate(arrays)]
    value, grads = torch_run(theirs, tensors, grad_args)
    assert_close(ours(*arrays), value, dtype)
    g = ours_grad(*arrays)
    g = g if isinstance(g, tuple) else (g,)
    for a, b in zip(g, grads, strict=True):
        assert_close(a, b, dtype)


# --- soft margin ----------------------------------------------------------------------------------


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_soft_margin_loss(reduction, dtype):
    compare(
        lambda x, t: lu.soft_margin_loss(x, t, reduction=reduction),
        lambda x, t: lu.soft_margin_loss_grad(x, t, reduction=reduction),
        lambda x, t: F.soft_margin_loss(x, t, reduction=reduction),
        [Z, T],
        dtype,
    )


def test_soft_margin_loss_is_logistic_loss_base_e(dtype):
    z, t = Z.astype(dtype), T.astype(dtype)
    np.testing.assert_array_equal(
        lu.soft_margin_loss(z, t, reduction="none"),
        lu.logistic_loss(z, t, base=math.e, reduction="none"),
    )


def test_deviation_soft_margin_loss_float32_at_minus_100():
    """PyTorch's log1p(exp(-t x)) is inf in float32 at t x = -100; lossutils gives 100, the
    correctly rounded value (mpmath agrees); the float64 gradients agree."""
    z = np.array([-100.0, 100.0], np.float32)
    t = np.array([1.0, -1.0], np.float32)
    theirs = F.soft_margin_loss(tt(z), tt(t), reduction="none").numpy()
    assert theirs.tolist() == [math.inf, math.inf]
    ours = lu.soft_margin_loss(z, t, reduction="none")
    exact = float(mpmath.log1p(mpmath.exp(100)))
    assert ours.dtype == np.float32
    assert ours.tolist() == [np.float32(exact)] * 2 == [100.0, 100.0]


def test_soft_margin_loss_empty_batch(dtype):
    for reduction in REDUCTIONS:
        compare(
            lambda x, t, r=reduction: lu.soft_margin_loss(x, t, reduction=r),
            lambda x, t, r=reduction: lu.soft_margin_loss_grad(x, t, reduction=r),
            lambda x, t, r=reduction: F.soft_margin_loss(x, t, reduction=r),
            [np.zeros(0), np.zeros(0)],
            dtype,
        )


# --- multilabel soft margin -----------------------------------------------------------------------


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("weight", [None, "per-class", "elementwise"])
@pytest.mark.parametrize("target", ["hard", "soft"])
def test_multilabel_soft_margin_loss(rng, target, weight, reduction, dtype):
    y = Y if target == "hard" else Y_SOFT
    w = {None: None, "per-class": W, "elementwise": rng.random(Z.shape) + 0.1}[weight]
    compare(
        lambda x, y, w: lu.multilabel_soft_margin_loss(x, y, weight=w, reduction=reduction),
        lambda x, y, w: lu.multilabel_soft_margin_loss_grad(x, y, weight=w, reduction=reduction),
        lambda x, y, w: F.multilabel_soft_margin_loss(x, y, weight=w, reduction=reduction),
        [Z, y, w],
        dtype,
    )


def test_multilabel_soft_margin_loss_empty_batch(dtype):
    for reduction in REDUCTIONS:
        compare(
            lambda x, y, r=reduction: lu.multilabel_soft_margin_loss(x, y, reduction=r),
            lambda x, y, r=reduction: lu.multilabel_soft_margin_loss_grad(x, y, reduction=r),
            lambda x, y, r=reduction: F.multilabel_soft_margin_loss(x, y, reduction=r),
            [np.zeros((0, 3)), np.zeros((0, 3))],
            dtype,
        )


# --- multilabel margin ----------------------------------------------------------------------------


def _multilabel_targets(n, c, seed):
    """Rows of class indices padded with -1: no label, one, several, a repeated one, all."""
    g = np.random.default_rng(seed)
    out = np.full((n, c), -1, dtype=np.int64)
    for i in range(n):
        k = i % (c + 1)
        out[i, :k] = g.permutation(c)[:k]
        if k < c:
            out[i, k + 1 :] = g.integers(-1, c, size=c - k - 1)  # ignored after the first -1
    out[1, :3] = [2, 2, -1]  # a repeated label counts twice
    return out


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_multilabel_margin_loss(rng, reduction, dtype):
    x = rng.normal(size=(8, 5))
    y = _multilabel_targets(8, 5, 1)
    compare(
        lambda x, y: lu.multilabel_margin_loss(x, y, reduction=reduction),
        lambda x, y: lu.multilabel_margin_loss_grad(x, y, reduction=reduction),
        lambda x, y: F.multilabel_margin_loss(x, y, reduction=reduction),
        [x, y],
        dtype,
        kinds={1: np.int64},
    )


def test_multilabel_margin_loss_one_sample_and_all_minus_one(rng, dtype):
    """1-D input (one sample), and targets that are all -1 (no label: loss 0, gradient 0)."""
    for x, y in [
        (rng.normal(size=4), np.array([1, 3, -1, 0])),
        (rng.normal(size=(3, 4)), np.full((3, 4), -1)),
    ]:
        for reduction in REDUCTIONS:
            compare(
                lambda x, y, r=reduction: lu.multilabel_margin_loss(x, y, reduction=r),
                lambda x, y, r=reduction: lu.multilabel_margin_loss_grad(x, y, reduction=r),
                lambda x, y, r=reduction: F.multilabel_margin_loss(x, y, reduction=r),
                [x, y],
                dtype,
                kinds={1: np.int64},
            )
    assert lu.multilabel_margin_loss(np.ones((3, 4)), np.full((3, 4), -1)) == 0


def test_deviation_multilabel_margin_loss_empty_batch(dtype):
    """PyTorch's "mean" and "sum" over an empty batch return an uninitialised value (seen:
    6.9e-310 in float64, 1.5e37 in float32), not NaN and 0 as every other PyTorch loss;
    lossutils gives NaN and 0. "none" and the zero-size gradients agree."""
    x, y = np.zeros((0, 3), dtype), np.zeros((0, 3), np.int64)
    compare(
        lambda x, y: lu.multilabel_margin_loss(x, y, reduction="none"),
        lambda x, y: lu.multilabel_margin_loss_grad(x, y, reduction="none"),
        lambda x, y: F.multilabel_margin_loss(x, y, reduction="none"),
        [x, y],
        dtype,
        kinds={1: np.int64},
    )
    runs = [F.multilabel_margin_loss(tt(x), tt(y)).item() for _ in range(4)]
    assert not all(math.isnan(v) for v in runs)
    assert math.isnan(lu.multilabel_margin_loss(x, y))
    assert lu.multilabel_margin_loss(x, y, reduction="sum") == 0
    assert lu.multilabel_margin_loss_grad(x, y).shape == (0, 3)
    assert math.isnan(F.soft_margin_loss(tt(np.zeros(0, dtype)), tt(np.zeros(0, dtype))).item())


def test_multilabel_margin_loss_out_of_range_targets_rejected_by_both():
    x = np.zeros((1, 3))
    for bad in ([[3, -1, -1]], [[-2, 0, -1]], [[0, -1, 7]]):
        with pytest.raises(RuntimeError, match="out of range"):
            F.multilabel_margin_loss(tt(x), tt(np.array(bad)))
        with pytest.raises(ValueError, match="target must hold class indices"):
            lu.multilabel_margin_loss(x, np.array(bad))


# --- margin ranking -------------------------------------------------------------------------------


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("margin", [0.0, 0.5, -0.3])
def test_margin_ranking_loss(margin, reduction, dtype):
    kw = {"margin": margin, "reduction": reduction}
    compare(
        lambda a, b, t: lu.margin_ranking_loss(a, b, t, **kw),
        lambda a, b, t: lu.margin_ranking_loss_grad(a, b, t, **kw),
        lambda a, b, t: F.margin_ranking_loss(a, b, t, **kw),
        [Z, Z[::-1], T],
        dtype,
        grad_args=(0, 1),
    )


def test_margin_ranking_loss_kink_and_empty_batch(dtype):
    """At a gap of exactly 0 the gradient passes (clamp_min's backward), on both sides."""
    a = np.array([1.0, 2.0, 0.5])
    b = np.array([0.5, 2.0, 1.0])
    t = np.array([1.0, -1.0, -1.0])
    for margin, reduction in [(0.5, "sum"), (0.0, "none")]:
        kw = {"margin": margin, "reduction": reduction}
        compare(
            lambda a, b, t, kw=kw: lu.margin_ranking_loss(a, b, t, **kw),
            lambda a, b, t, kw=kw: lu.margin_ranking_loss_grad(a, b, t, **kw),
            lambda a, b, t, kw=kw: F.margin_ranking_loss(a, b, t, **kw),
            [a, b, t],
            dtype,
            grad_args=(0, 1),
        )
    z = np.zeros(0)
    for reduction in REDUCTIONS:
        compare(
            lambda a, b, t, r=reduction: lu.margin_ranking_loss(a, b, t, reduction=r),
            lambda a, b, t, r=reduction: lu.margin_ranking_loss_grad(a, b, t, reduction=r),
            lambda a, b, t, r=reduction: F.margin_ranking_loss(a, b, t, reduction=r),
            [z, z, z],
            dtype,
            grad_args=(0, 1),
        )


# --- hinge embedding ------------------------------------------------------------------------------


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("margin", [1.0, 2.5, 0.0])
def test_hinge_embedding_loss(margin, reduction, dtype):
    d = np.abs(Z)
    d[0, :2] = margin  # the kink: the gradient passes
    kw = {"margin": margin, "reduction": reduction}
    compare(
        lambda x, t: lu.hinge_embedding_loss(x, t, **kw),
        lambda x, t: lu.hinge_embedding_loss_grad(x, t, **kw),
        lambda x, t: F.hinge_embedding_loss(x, t, **kw),
        [d, T],
        dtype,
    )


def test_hinge_embedding_loss_empty_batch(dtype):
    for reduction in REDUCTIONS:
        compare(
            lambda x, t, r=reduction: lu.hinge_embedding_loss(x, t, reduction=r),
            lambda x, t, r=reduction: lu.hinge_embedding_loss_grad(x, t, reduction=r),
            lambda x, t, r=reduction: F.hinge_embedding_loss(x, t, reduction=r),
            [np.zeros(0), np.zeros(0)],
            dtype,
        )


# --- cosine embedding -----------------------------------------------------------------------------


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("margin", [0.0, 0.5, -0.2])
def test_cosine_embedding_loss(margin, reduction, dtype):
    kw = {"margin": margin, "reduction": reduction}
    compare(
        lambda a, b, t: lu.cosine_embedding_loss(a, b, t, **kw),
        lambda a, b, t: lu.cosine_embedding_loss_grad(a, b, t, **kw),
        lambda a, b, t: F.cosine_embedding_loss(a, b, t, **kw),
        [X1, X2, TT],
        dtype,
        grad_args=(0, 1),
    )


def test_cosine_embedding_loss_zero_and_tiny_vectors(dtype):
    """A zero vector has cosine 0 (PyTorch's eps of 1e-12 on each squared norm), and a
    vector of norm 1e-6 a cosine visibly shrunk by it: both sides agree, gradients too."""
    a = np.array([[0.0, 0.0, 0.0], [1.0, 2.0, 3.0], [0.0, 0.0, 0.0], [1e-6, 0.0, 0.0]])
    b = np.array([[1.0, 2.0, 3.0], [0.0, 0.0, 0.0], [1.0, -1.0, 0.5], [2e-6, 1e-6, 0.0]])
    t = np.array([1.0, 1.0, -1.0, 1.0])
    for margin in [0.0, -0.5]:
        kw = {"margin": margin, "reduction": "none"}
        compare(
            lambda a, b, t, kw=kw: lu.cosine_embedding_loss(a, b, t, **kw),
            lambda a, b, t, kw=kw: lu.cosine_embedding_loss_grad(a, b, t, **kw),
            lambda a, b, t, kw=kw: F.cosine_embedding_loss(a, b, t, **kw),
            [a, b, t],
            dtype,
            grad_args=(0, 1),
        )
    assert lu.cosine_embedding_loss(a[:1], b[:1], t[:1]) == 1.0


def test_cosine_embedding_loss_one_pair_and_empty_batch(dtype):
    """1-D embeddings with a 0-D target, and an empty batch."""
    for a, b, t in [
        (X1[0], X2[0], np.array(-1.0)),
        (np.zeros((0, 4)), np.zeros((0, 4)), np.zeros(0)),
    ]:
        for reduction in REDUCTIONS:
            compare(
                lambda a, b, t, r=reduction: lu.cosine_embedding_loss(a, b, t, reduction=r),
                lambda a, b, t, r=reduction: lu.cosine_embedding_loss_grad(a, b, t, reduction=r),
                lambda a, b, t, r=reduction: F.cosine_embedding_loss(a, b, t, reduction=r),
                [a, b, t],
                dtype,
                grad_args=(0, 1),
            )


def test_deviation_cosine_embedding_loss_huge_vectors():
    """PyTorch squares the entries in float32: for entries of 1e20 the squares overflow and
    its cosine is NaN (inf / inf); lossutils scales each row first and returns the cosine
    of the vectors (mpmath agrees)."""
    a = np.array([[1e20, 2e20, -1e20]], np.float32)
    b = np.array([[3e20, 1e20, 1e20]], np.float32)
    t = np.array([-1.0], np.float32)
    theirs = F.cosine_embedding_loss(tt(a), tt(b), tt(t), reduction="none").numpy()
    assert np.isnan(theirs).all()
    ours = lu.cosine_embedding_loss(a, b, t, reduction="none")
    va, vb = ([mpmath.mpf(float(v)) for v in row[0]] for row in (a, b))
    dot = mpmath.fsum(p * q for p, q in zip(va, vb, strict=True))
    exact = dot / mpmath.sqrt(mpmath.fsum(p * p for p in va) * mpmath.fsum(q * q for q in vb))
    assert ours.dtype == np.float32
    assert ours.tolist() == [np.float32(float(exact))]
    # the same vectors scaled down to where PyTorch's squares do not overflow agree
    small = F.cosine_embedding_loss(tt(a * 1e-20), tt(b * 1e-20), tt(t), reduction="none")
    assert_close(ours, small.numpy(), np.float32)


def test_deviation_labels_must_be_plus_minus_one():
    """PyTorch accepts any label in these losses (a 0 there adds nothing, or both terms);
    lossutils refuses a label other than -1 and +1."""
    x = np.array([0.5, 1.5])
    zero = np.array([0.0, 0.0])
    assert F.hinge_embedding_loss(tt(x), tt(zero), reduction="sum").item() == pytest.approx(
        0.5 + 1.5 + 0.5
    )
    assert F.margin_ranking_loss(tt(x), tt(x[::-1]), tt(zero), reduction="sum").item() == 0.0
    cos = F.cosine_embedding_loss(tt(X1[:2]), tt(X2[:2]), tt(zero), reduction="sum").item()
    assert cos == 0.0
    for call in (
        lambda: lu.hinge_embedding_loss(x, zero),
        lambda: lu.margin_ranking_loss(x, x[::-1], zero),
        lambda: lu.cosine_embedding_loss(X1[:2], X2[:2], zero),
        lambda: lu.soft_margin_loss(x, zero),
    ):
        with pytest.raises(ValueError, match=r"target must hold labels in \{-1, \+1\}"):
            call()


def test_cosine_embedding_loss_kink_passes_the_gradient():
    """At cos = margin exactly (t = -1) the loss is 0 and the gradient passes, on both sides
    (PyTorch's clamp_min backward passes where its argument is >= 0).

    Orthogonal rows have a cosine of exactly 0 in both libraries (with the eps in the
    norms, any other cosine is irrational and no float64 margin sits exactly on it), so
    the margin 0 is the kink.
    """
    a = np.array([[1.0, 0.0]])
    b = np.array([[0.0, 1.0]])
    t = np.array([-1.0])
    kw = {"margin": 0.0, "reduction": "sum"}
    compare(
        lambda a, b, t: lu.cosine_embedding_loss(a, b, t, **kw),
        lambda a, b, t: lu.cosine_embedding_loss_grad(a, b, t, **kw),
        lambda a, b, t: F.cosine_embedding_loss(a, b, t, **kw),
        [a, b, t],
        np.float64,
        grad_args=(0, 1),
    )
    assert lu.cosine_embedding_loss(a, b, t, **kw) == 0
    assert (
        lu.cosine_embedding_loss_grad(a, b, t, **kw)[0][0, 1] > 0.99
    )  # d cos / d a = b / (|a||b|)
