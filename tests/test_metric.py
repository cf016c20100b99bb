"""Metric-learning losses: contrastive, triplet margin and NT-Xent.

Expected values are the definitions written out per sample (PyTorch's documented
``pairwise_distance``/``triplet_margin_loss`` semantics, SimCLR's loss with an
explicit loop over the views), and gradients are checked by finite differences.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lossutils import (
    contrastive_loss,
    contrastive_loss_grad,
    nt_xent_loss,
    nt_xent_loss_grad,
    triplet_margin_loss,
    triplet_margin_loss_grad,
)
from lossutils.testing import assert_gradient_matches

REDUCTIONS = ["mean", "sum", "none"]


def _reduce(values, reduction):
    return {"mean": np.mean, "sum": np.sum, "none": lambda v: v}[reduction](values)


# --- contrastive ---------------------------------------------------------------------------


def _pairs(rng, n=6, d=3):
    x1, x2 = rng.normal(size=(n, d)), rng.normal(size=(n, d))
    x2[1] = x1[1] + 0.05  # a dissimilar pair well inside the margin
    target = np.array([1, 0, 1, 0, 0, 1])[:n]
    return x1, x2, target


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("margin", [0.0, 1.0, 3.0])
def test_contrastive_loss_definition_and_gradient(rng, reduction, margin):
    x1, x2, target = _pairs(rng)
    expected = []
    for a, b, y in zip(x1, x2, target, strict=True):
        d = math.sqrt(sum((u - v) ** 2 for u, v in zip(a, b, strict=True)))
        expected.append(d**2 if y == 1 else max(0.0, margin - d) ** 2)
    kwargs = {"margin": margin, "reduction": reduction}
    np.testing.assert_allclose(
        contrastive_loss(x1, x2, target, **kwargs), _reduce(np.array(expected), reduction), 1e-13
    )
    assert_gradient_matches(
        contrastive_loss, contrastive_loss_grad, [x1, x2, target], (0, 1), kwargs=kwargs
    )


def test_contrastive_gradient_at_zero_distance():
    # y = 1: 2 (x1 - x2) = 0; y = 0: the hinge's gradient at d = 0 is taken as 0
    # (PyTorch's norm backward), never NaN; a pair exactly at the margin has gradient 0
    x = np.array([[1.0, 2.0], [1.0, 2.0], [0.0, 0.0]])
    y = np.array([[1.0, 2.0], [1.0, 2.0], [0.6, 0.8]])
    g1, g2 = contrastive_loss_grad(x, y, [1, 0, 0], reduction="sum")
    assert g1.tolist() == [[0.0, 0.0], [0.0, 0.0], [0.0, 0.0]]
    assert g2.tolist() == [[0.0, 0.0], [0.0, 0.0], [0.0, 0.0]]
    assert contrastive_loss(x, y, [1, 0, 0], reduction="none").tolist() == [0.0, 1.0, 0.0]


def test_contrastive_errors(rng):
    x1, x2, target = _pairs(rng)
    with pytest.raises(ValueError, match=r"target.*\{0, 1\}.*2"):
        contrastive_loss(x1, x2, target * 2)
    with pytest.raises(ValueError, match=r"target.*\{0, 1\}.*-1"):
        contrastive_loss_grad(x1, x2, 2 * target - 1)
    with pytest.raises(ValueError, match=r"target.*batch shape"):
        contrastive_loss(x1, x2, target[:3])
    with pytest.raises(ValueError, match=r"x2.*shape"):
        contrastive_loss(x1, x2[:, :2], target)
    with pytest.raises(ValueError, match=r"margin.*-1"):
        contrastive_loss(x1, x2, target, margin=-1.0)
    with pytest.raises(ValueError, match=r"reduction.*'avg'"):
        contrastive_loss(x1, x2, target, reduction="avg")


def test_contrastive_dtype_of_labels(rng):
    x1, x2, target = _pairs(rng)
    x1, x2 = x1.astype(np.float32), x2.astype(np.float32)
    # integer labels do not promote float32 embeddings; float64 labels do
    assert contrastive_loss(x1, x2, target).dtype == np.float32
    assert contrastive_loss(x1, x2, target.astype(bool)).dtype == np.float32
    assert contrastive_loss(x1, x2, target.astype(np.float64)).dtype == np.float64
    assert all(g.dtype == np.float32 for g in contrastive_loss_grad(x1, x2, target))


# --- triplet margin ------------------------------------------------------------------------


def _torch_triplet(a, p, n, margin, norm_p, eps, swap, squared):
    """PyTorch's documented triplet loss (or the FaceNet form), one triplet at a time."""
    out = []
    for x, y, z in zip(a, p, n, strict=True):
        if squared:
            d_ap, d_an, d_pn = (float(np.sum((u - v) ** 2)) for u, v in ((x, y), (x, z), (y, z)))
        else:
            d_ap, d_an, d_pn = (
                float(np.sum(np.abs(u - v + eps) ** norm_p) ** (1 / norm_p))
                for u, v in ((x, y), (x, z), (y, z))
            )
        if swap:
            d_an = min(d_an, d_pn)
        out.append(max(0.0, d_ap - d_an + margin))
    return np.array(out)


def _triplets(rng, n=7, d=4):
    a, p, neg = (rng.normal(size=(n, d)) for _ in range(3))
    neg[0] = a[0] + 5.0  # an inactive triplet (zero loss, zero gradient)
    return a, p, neg


TRIPLET_CASES = [
    {"p": 2.0},
    {"p": 1.0},
    {"p": 1.5, "margin": 0.5},
    {"p": 3.0, "eps": 0.0},
    {"p": 2.0, "swap": True},
    {"p": 1.0, "swap": True, "margin": 2.0},
    {"squared": True},
    {"squared": True, "swap": True, "margin": 0.3},
]


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("case", TRIPLET_CASES)
def test_triplet_definition_and_gradient(rng, case, reduction):
    a, p, n = _triplets(rng)
    kwargs = {"reduction": reduction, **case}
    options = {"margin": 1.0, "p": 2.0, "eps": 1e-6, "swap": False, "squared": False, **case}
    expected = _torch_triplet(
        a,
        p,
        n,
        options["margin"],
        options["p"],
        options["eps"],
        options["swap"],
        options["squared"],
    )
    assert expected[0] == 0.0 and expected.max() > 0
    np.testing.assert_allclose(
        triplet_margin_loss(a, p, n, **kwargs), _reduce(expected, reduction), rtol=1e-12
    )
    assert_gradient_matches(
        triplet_margin_loss, triplet_margin_loss_grad, [a, p, n], (0, 1, 2), kwargs=kwargs
    )


def test_triplet_batch_shapes_and_single_triplet(rng):
    a, p, n = (rng.normal(size=(2, 3, 4)) for _ in range(3))
    out = triplet_margin_loss(a, p, n, reduction="none")
    assert out.shape == (2, 3)
    np.testing.assert_allclose(
        out.ravel(), triplet_margin_loss(*(v.reshape(6, 4) for v in (a, p, n)), reduction="none")
    )
    assert np.ndim(triplet_margin_loss(a[0, 0], p[0, 0], n[0, 0])) == 0


def test_triplet_subgradients_at_kinks():
    a = np.array([[0.0, 0.0]])
    p = np.array([[0.5, 0.0]])
    n = np.array([[1.5, 0.0]])
    # the hinge at exactly 0 passes the gradient (clamp_min's backward: input >= 0)
    assert triplet_margin_loss(a, p, n, eps=0.0) == 0.0
    da, dp, dn = triplet_margin_loss_grad(a, p, n, eps=0.0)
    assert (
        da.tolist() == [[0.0, 0.0]] and dp.tolist() == [[1.0, 0.0]] and dn.tolist() == [[-1.0, 0.0]]
    )
    # a zero distance has gradient 0, not NaN (norm's backward)
    da, dp, dn = triplet_margin_loss_grad(a, a, n, margin=2.0, eps=0.0)
    assert (
        da.tolist() == [[1.0, 0.0]] and dp.tolist() == [[0.0, 0.0]] and dn.tolist() == [[-1.0, 0.0]]
    )
    # swap with a tie d(a, n) = d(p, n) (a = p): minimum's backward splits it in halves
    da, dp, dn = triplet_margin_loss_grad(a, a, n, margin=2.0, eps=0.0, swap=True)
    assert (
        da.tolist() == [[0.5, 0.0]] and dp.tolist() == [[0.5, 0.0]] and dn.tolist() == [[-1.0, 0.0]]
    )


def test_triplet_errors(rng):
    a, p, n = _triplets(rng)
    with pytest.raises(ValueError, match=r"p must be.*>= 1.*0\.5"):
        triplet_margin_loss(a, p, n, p=0.5)
    with pytest.raises(ValueError, match=r"p must be 2 with squared=True.*1\.0"):
        triplet_margin_loss_grad(a, p, n, p=1.0, squared=True)
    with pytest.raises(ValueError, match=r"margin.*-0\.1"):
        triplet_margin_loss(a, p, n, margin=-0.1)
    with pytest.raises(ValueError, match=r"eps"):
        triplet_margin_loss(a, p, n, eps=-1.0)
    with pytest.raises(ValueError, match=r"negative.*shape"):
        triplet_margin_loss(a, p, n[:3])
    with pytest.raises(ValueError, match=r"reduction.*'avg'"):
        triplet_margin_loss_grad(a, p, n, reduction="avg")


# --- NT-Xent -------------------------------------------------------------------------------


def _simclr_reference(z1, z2, temperature):
    """SimCLR's loss, one view at a time."""
    z = np.concatenate([z1, z2])
    h = [v / math.sqrt(float(v @ v)) for v in z]
    m, n = len(z), len(z1)
    losses = []
    for i in range(m):
        positive = (i + n) % m
        s = [float(h[i] @ h[j]) / temperature for j in range(m)]
        others = [s[j] for j in range(m) if j != i]
        top = max(others)
        lse = top + math.log(sum(math.exp(v - top) for v in others))
        losses.append(-s[positive] + lse)
    return np.array(losses)


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("temperature", [0.05, 0.5, 2.0])
def test_nt_xent_definition_and_gradient(rng, temperature, reduction):
    z1, z2 = rng.normal(size=(4, 3)), rng.normal(size=(4, 3))
    kwargs = {"temperature": temperature, "reduction": reduction}
    expected = _simclr_reference(z1, z2, temperature)
    np.testing.assert_allclose(
        nt_xent_loss(z1, z2, **kwargs), _reduce(expected, reduction), rtol=1e-12
    )
    assert_gradient_matches(nt_xent_loss, nt_xent_loss_grad, [z1, z2], (0, 1), kwargs=kwargs)


def test_nt_xent_order_and_single_pair(rng):
    z1, z2 = rng.normal(size=(3, 5)), rng.normal(size=(3, 5))
    none = nt_xent_loss(z1, z2, reduction="none")
    # "none" lists z1's views first: swapping the views swaps the halves
    np.testing.assert_allclose(nt_xent_loss(z2, z1, reduction="none"), np.r_[none[3:], none[:3]])
    # N = 1: the positive is the only other view, so the loss is 0
    assert nt_xent_loss(z1[:1], z2[:1], reduction="sum") == 0.0
    # scale invariance of the normalisation
    np.testing.assert_allclose(nt_xent_loss(3 * z1, 0.5 * z2, reduction="none"), none, 1e-12)


@settings(max_examples=30, deadline=None)
@given(st.integers(1, 5), st.integers(1, 4), st.floats(0.05, 5.0), st.integers(0, 2**32 - 1))
def test_nt_xent_matches_reference_and_is_at_least_its_bound(n, d, temperature, seed):
    rng = np.random.default_rng(seed)
    z1, z2 = rng.normal(size=(n, d)), rng.normal(size=(n, d))
    losses = nt_xent_loss(z1, z2, temperature, reduction="none")
    # the reference's -s_pos + logsumexp cancels for a tiny loss: an absolute tolerance
    np.testing.assert_allclose(
        losses, _simclr_reference(z1, z2, temperature), rtol=1e-10, atol=1e-13 / temperature
    )
    # a cross-entropy, so >= 0; cosines lie in [-1, 1], so <= 2 / tau + log(2N - 1)
    assert np.all(losses >= -1e-12) and np.all(losses <= 2 / temperature + np.log(2 * n - 1) + 1e-9)


def test_nt_xent_zero_embedding_is_finite():
    z1 = np.array([[0.0, 0.0], [1.0, 0.0]])
    z2 = np.array([[0.0, 1.0], [1.0, 1.0]])
    assert np.isfinite(nt_xent_loss(z1, z2))
    assert all(np.all(np.isfinite(g)) for g in nt_xent_loss_grad(z1, z2))


def test_nt_xent_errors(rng):
    z = rng.normal(size=(3, 2))
    for t in (0.0, -1.0, float("inf")):
        with pytest.raises(ValueError, match="temperature"):
            nt_xent_loss(z, z, temperature=t)
    with pytest.raises(ValueError, match=r"z2.*shape"):
        nt_xent_loss(z, z[:2])
    with pytest.raises(ValueError, match=r"z1.*\(N, D\)"):
        nt_xent_loss_grad(z[None], z[None])
    with pytest.raises(ValueError, match=r"reduction.*'avg'"):
        nt_xent_loss(z, z, reduction="avg")


# --- conventions shared by all ------------------------------------------------------------


def _calls(rng):
    x1, x2, target = _pairs(rng)
    a, p, n = _triplets(rng)
    z1, z2 = rng.normal(size=(3, 4)), rng.normal(size=(3, 4))
    return [
        (contrastive_loss, contrastive_loss_grad, (x1, x2), (target,)),
        (triplet_margin_loss, triplet_margin_loss_grad, (a, p, n), ()),
        (nt_xent_loss, nt_xent_loss_grad, (z1, z2), ()),
    ]


@pytest.mark.parametrize("index", range(3))
def test_float32_in_float32_out_nan_and_inputs_untouched(rng, index):
    loss, grad, arrays, extra = _calls(rng)[index]
    arrays32 = tuple(a.astype(np.float32) for a in arrays)
    copies = [a.copy() for a in arrays32]
    assert loss(*arrays32, *extra).dtype == np.float32
    np.testing.assert_allclose(loss(*arrays32, *extra), loss(*arrays, *extra), rtol=1e-5)
    grads = grad(*arrays32, *extra)
    assert all(g.dtype == np.float32 and g.shape == arrays[0].shape for g in grads)
    for before, after in zip(copies, arrays32, strict=True):
        np.testing.assert_array_equal(before, after)
    with_nan = (arrays[0].copy(),) + arrays[1:]
    with_nan[0][1, 0] = np.nan
    out = loss(*with_nan, *extra, reduction="none")
    if loss is nt_xent_loss:
        assert np.all(np.isnan(out))  # every view's denominator includes the NaN view
    else:
        assert np.isnan(out[1]) and np.all(np.isfinite(np.delete(out, 1)))
