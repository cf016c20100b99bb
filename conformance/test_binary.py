"""Binary losses: lossutils against torch.nn.functional, torchvision.ops and optax."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import torch.nn.functional as F
from conftest import assert_close, load_torchvision_ops, torch_run, tt

import lossutils as lu

REDUCTIONS = ["mean", "sum", "none"]
rng = np.random.default_rng(3)
Z = rng.normal(scale=3.0, size=(5, 4))
Y = (rng.random((5, 4)) < 0.4).astype(float)
Y_SOFT = rng.random((5, 4))
P = 1 / (1 + np.exp(-Z))
W = rng.random((5, 4)) + 0.1
POS_WEIGHT = np.array([0.5, 1.0, 3.0, 10.0])


def both(ours, ours_grad, theirs, arrays, dtype, kw_ours=None, kw_theirs=None, grad_args=(0,)):
    """Values and gradients of ``ours`` and ``theirs`` on the same arrays, compared."""
    kw_ours = kw_ours or {}
    kw_theirs = kw_ours if kw_theirs is None else kw_theirs
    arrays = [None if a is None else np.asarray(a, dtype) for a in arrays]
    tensors = [None if a is None else tt(a, grad=i in grad_args) for i, a in enumerate(arrays)]
    value, grads = torch_run(lambda *t: theirs(*t, **kw_theirs), tensors, grad_args)
    assert_close(ours(*arrays, **kw_ours), value, dtype)
    g = ours_grad(*arrays, **kw_ours)
    g = g if isinstance(g, tuple) else (g,)
    for a, b in zip(g, grads, strict=True):
        assert_close(a, b, dtype)


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("weight", [None, "elementwise", "per-column"])
@pytest.mark.parametrize("target", ["hard", "soft"])
def test_binary_cross_entropy(target, weight, reduction, dtype):
    y = Y if target == "hard" else Y_SOFT
    w = {None: None, "elementwise": W, "per-column": W[0]}[weight]

    def theirs(p, y, w, reduction):
        return F.binary_cross_entropy(p, y, weight=w, reduction=reduction)

    def ours(p, y, w, reduction):
        return lu.binary_cross_entropy(p, y, weight=w, reduction=reduction)

    def ours_grad(p, y, w, reduction):
        return lu.binary_cross_entropy_grad(p, y, weight=w, reduction=reduction)

    both(ours, ours_grad, theirs, [P, y, w], dtype, {"reduction": reduction})


def test_binary_cross_entropy_clamps_at_100(dtype):
    """A probability of exactly 0 or 1 on the wrong side costs 100, as PyTorch's clamp."""
    p = np.array([0.0, 1.0, 0.0, 1.0])
    y = np.array([1.0, 0.0, 0.0, 1.0])
    arrays = [p.astype(dtype), y.astype(dtype)]
    value = F.binary_cross_entropy(tt(arrays[0]), tt(arrays[1]), reduction="none").numpy()
    assert_close(lu.binary_cross_entropy(*arrays, reduction="none"), value, dtype)
    assert value.tolist() == [100.0, 100.0, 0.0, 0.0]


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("pos_weight", [None, "per-class", "scalar"])
@pytest.mark.parametrize("weight", [None, "elementwise", "per-column"])
@pytest.mark.parametrize("target", ["hard", "soft"])
def test_binary_cross_entropy_with_logits(target, weight, pos_weight, reduction, dtype):
    y = Y if target == "hard" else Y_SOFT
    w = {None: None, "elementwise": W, "per-column": W[0]}[weight]
    pw = {None: None, "per-class": POS_WEIGHT, "scalar": np.array([4.0])}[pos_weight]

    def theirs(z, y, w, pw, reduction):
        return F.binary_cross_entropy_with_logits(
            z, y, weight=w, pos_weight=pw, reduction=reduction
        )

    def ours(z, y, w, pw, reduction):
        return lu.binary_cross_entropy_with_logits(
            z, y, weight=w, pos_weight=pw, reduction=reduction
        )

    def ours_grad(z, y, w, pw, reduction):
        return lu.binary_cross_entropy_with_logits_grad(
            z, y, weight=w, pos_weight=pw, reduction=reduction
        )

    both(ours, ours_grad, theirs, [Z, y, w, pw], dtype, {"reduction": reduction})


def test_deviation_bce_with_logits_infinite_logits(dtype):
    """Deviation: logits of +-inf give the limits (0 on the right side, inf on the wrong one).

    PyTorch returns NaN for three of the four (its max-shift computes inf - inf).
    """
    z = np.array([np.inf, -np.inf, np.inf, -np.inf], dtype)
    y = np.array([1.0, 0.0, 0.0, 1.0], dtype)
    ours = lu.binary_cross_entropy_with_logits(z, y, reduction="none")
    theirs = F.binary_cross_entropy_with_logits(tt(z), tt(y), reduction="none").numpy()
    assert ours.tolist() == [0.0, 0.0, np.inf, np.inf]
    assert np.isnan(theirs[[0, 1, 3]]).all() and theirs[2] == np.inf


def test_empty_batch(dtype):
    z = np.zeros((0, 4), dtype)
    for reduction in REDUCTIONS:
        ours = lu.binary_cross_entropy_with_logits(z, z, reduction=reduction)
        theirs = F.binary_cross_entropy_with_logits(tt(z), tt(z), reduction=reduction).numpy()
        assert_close(ours, theirs, dtype)
        assert_close(lu.binary_cross_entropy_with_logits_grad(z, z, reduction=reduction), z, dtype)


@pytest.fixture(scope="module")
def torchvision_ops():
    return load_torchvision_ops()


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("gamma", [0.0, 1.0, 2.0, 3.5])
@pytest.mark.parametrize("alpha", [0.25, 0.5, 0.9, None])
@pytest.mark.parametrize("target", ["hard", "soft"])
def test_sigmoid_focal_loss_is_torchvision(torchvision_ops, target, alpha, gamma, reduction, dtype):
    """torchvision.ops.sigmoid_focal_loss; its alpha=-1 is lossutils' alpha=None."""
    y = Y if target == "hard" else Y_SOFT
    kw = {"alpha": alpha, "gamma": gamma, "reduction": reduction}
    kw_tv = dict(kw, alpha=-1 if alpha is None else alpha)
    both(
        lu.sigmoid_focal_loss, lu.sigmoid_focal_loss_grad, torchvision_ops.sigmoid_focal_loss,
        [Z, y], dtype, kw, kw_tv,
    )  # fmt: skip


def jax_value_and_grad(fn, x, *rest):
    rest = [jnp.asarray(r) for r in rest]
    value = fn(jnp.asarray(x), *rest)
    grad = jax.grad(lambda a: fn(a, *rest).sum())(jnp.asarray(x))
    return np.asarray(value), np.asarray(grad)


@pytest.mark.parametrize("target", ["hard", "soft"])
def test_optax_sigmoid_binary_cross_entropy(target, dtype):
    y = (Y if target == "hard" else Y_SOFT).astype(dtype)
    z = Z.astype(dtype)
    value, grad = jax_value_and_grad(optax.losses.sigmoid_binary_cross_entropy, z, y)
    assert_close(lu.binary_cross_entropy_with_logits(z, y, reduction="none"), value, dtype)
    assert_close(lu.binary_cross_entropy_with_logits_grad(z, y, reduction="none"), grad, dtype)


@pytest.mark.parametrize("gamma", [0.0, 2.0])
@pytest.mark.parametrize("alpha", [0.25, None])
def test_optax_sigmoid_focal_loss(alpha, gamma, dtype):
    y, z = Y.astype(dtype), Z.astype(dtype)

    def fn(a, b):
        return optax.losses.sigmoid_focal_loss(a, b, alpha=alpha, gamma=gamma)

    value, grad = jax_value_and_grad(fn, z, y)
    kw = {"alpha": alpha, "gamma": gamma, "reduction": "none"}
    assert_close(lu.sigmoid_focal_loss(z, y, **kw), value, dtype)
    assert_close(lu.sigmoid_focal_loss_grad(z, y, **kw), grad, dtype)


T = np.where(Y > 0, 1.0, -1.0)


@pytest.mark.parametrize("margin", [1.0, 0.5])
def test_hinge_is_relu(margin, dtype):
    """The binary hinge is torch.relu(margin - t x); optax.hinge_loss for margin 1."""
    z = (Z / 3).astype(dtype)
    z[0, :3] = margin * T[0, :3]  # at the kink: relu's subgradient 0
    t = T.astype(dtype)
    both(
        lu.hinge_loss, lu.hinge_loss_grad, lambda z, t, margin, reduction: F.relu(margin - t * z),
        [z, t], dtype, {"margin": margin, "reduction": "none"},
    )  # fmt: skip
    if margin == 1.0:
        value, grad = jax_value_and_grad(optax.losses.hinge_loss, z, t)
        assert_close(lu.hinge_loss(z, t, reduction="none"), value, dtype)
        nonkink = np.abs(t * z - 1) > 1e-3  # optax's subgradient at the kink is its own
        assert_close(lu.hinge_loss_grad(z, t, reduction="none")[nonkink], grad[nonkink], dtype)


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_logistic_loss_in_nats_is_soft_margin_loss(reduction, dtype):
    t = T.astype(dtype)
    both(
        lu.logistic_loss, lu.logistic_loss_grad, F.soft_margin_loss, [Z, t], dtype,
        {"base": np.e, "reduction": reduction}, {"reduction": reduction},
    )  # fmt: skip
