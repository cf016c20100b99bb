"""What the book says about PyTorch, torchvision and optax, run.

One test per statement in a chapter (mostly its "In practice" section); the name says the
chapter and the statement (``test_claim_<chapter>_<what>``) so that the chapter can cite it.
Exact values come from mpmath.
"""

import inspect
import math
import warnings

import jax
import jax.numpy as jnp
import mpmath
import numpy as np
import optax
import pytest
import scipy.special
import scipy.stats
import torch
import torch.nn.functional as F
from conftest import load_torchvision_ops, tt

import lossutils as lu

rng = np.random.default_rng(7)


def mp_softplus(x):
    x = mpmath.mpf(x)
    return mpmath.log1p(mpmath.exp(x))


def f64(x):
    return torch.tensor(x, dtype=torch.float64)


# --- activations (the toolchain facts the chapters rely on) -------------------------------


def test_claim_activations_torch_softplus_threshold_20():
    """F.softplus returns x itself above its threshold 20: up to ~5e5 ULP off in float64
    between 20 and ~36, exact again where log1p(e^-x) is below half an ULP of x."""
    x = np.array([20.5, 25.0, 30.0, 36.0, 40.0])
    theirs = F.softplus(tt(x)).numpy()
    assert (theirs == x).all()
    exact = np.array([float(mp_softplus(v)) for v in x])
    ulp = np.spacing(exact)
    err_ulp = np.abs(theirs - exact) / ulp
    assert err_ulp[0] > 1e5 and err_ulp[-1] < 1  # 20.5: ~4e5 ULP; 40: exact
    assert (lu.softplus(x) == exact).all()


# --- Bernoulli ------------------------------------------------------------------------------


def test_claim_bernoulli_bce_bceloss_clamps_log_at_minus_100():
    """BCELoss clamps each log at -100: p = 0 for a positive label costs 100, not inf."""
    p = f64([0.0, 1e-50, 1.0])
    y = f64([1.0, 1.0, 0.0])
    theirs = F.binary_cross_entropy(p, y, reduction="none").numpy()
    assert theirs.tolist() == [100.0, 100.0, 100.0]  # the exact loss at 1e-50 is 115.1
    assert lu.binary_cross_entropy(p.numpy(), y.numpy(), reduction="none").tolist() == [100.0] * 3


def test_claim_bernoulli_bce_torch_zero_loss_at_logit_minus_40():
    """In float64 F.binary_cross_entropy_with_logits(-40, target 0) is exactly 0.0; the exact
    loss softplus(-40) = 4.25e-18 is what lossutils returns."""
    theirs = F.binary_cross_entropy_with_logits(f64([-40.0]), f64([0.0])).item()
    exact = float(mp_softplus(-40))
    assert theirs == 0.0
    assert f"{exact:.2e}" == "4.25e-18"
    assert float(lu.binary_cross_entropy_with_logits(np.array([-40.0]), np.array([0.0]))) == exact


def test_claim_bernoulli_bce_logit_losses_agree(rng):
    """BCEWithLogitsLoss, F.binary_cross_entropy_with_logits and
    optax.sigmoid_binary_cross_entropy(logits, labels) are the same loss (as lossutils')."""
    z = rng.normal(scale=3, size=8)
    y = (rng.random(8) < 0.5).astype(float)
    module = torch.nn.BCEWithLogitsLoss(reduction="none")(tt(z), tt(y)).numpy()
    functional = F.binary_cross_entropy_with_logits(tt(z), tt(y), reduction="none").numpy()
    ox = np.asarray(optax.sigmoid_binary_cross_entropy(jnp.asarray(z), jnp.asarray(y)))
    ours = lu.binary_cross_entropy_with_logits(z, y, reduction="none")
    np.testing.assert_allclose(module, ours, rtol=1e-14)
    np.testing.assert_allclose(functional, ours, rtol=1e-14)
    np.testing.assert_allclose(ox, ours, rtol=1e-14)


def test_claim_bernoulli_bce_bceloss_inaccurate_near_0_and_1():
    """BCELoss on sigmoid outputs: once sigma(z) rounds to 0 or 1 the loss is the clamp (100)
    or 0, where the exact losses are 800 and 4.25e-18."""
    z = f64([-800.0, 40.0])
    theirs = F.binary_cross_entropy(torch.sigmoid(z), f64([1.0, 1.0]), reduction="none").numpy()
    assert theirs.tolist() == [100.0, 0.0]
    ours = lu.binary_cross_entropy_with_logits(z.numpy(), np.ones(2), reduction="none")
    assert ours.tolist() == [800.0, float(mp_softplus(-40))]


def test_claim_bernoulli_bce_sigmoid_twice_floor():
    """Logits passed through a sigmoid first lie in (0, 1): the loss of a positive label never
    drops below log(1 + e^-1) = 0.313, and the gradient picks up a second sigma'(z)."""
    z = f64([0.0, 2.0, 10.0, 40.0]).requires_grad_(True)
    loss = F.binary_cross_entropy_with_logits(torch.sigmoid(z), torch.ones(4, dtype=torch.float64),
                                              reduction="none")  # fmt: skip
    floor = math.log1p(math.exp(-1))
    assert (loss.detach().numpy() >= floor).all()
    assert loss[-1].item() == pytest.approx(floor, rel=1e-15)
    (grad,) = torch.autograd.grad(loss.sum(), [z])
    s = torch.sigmoid(z.detach())
    expected = (torch.sigmoid(s) - 1) * s * (1 - s)
    np.testing.assert_allclose(grad.numpy(), expected.numpy(), rtol=1e-13)


def test_claim_bernoulli_bce_pos_weight_multiplies_positive_term():
    """pos_weight gives -[w+ y log sigma(z) + (1 - y) log(1 - sigma(z))]."""
    z, y, w = 1.3, 0.7, 4.0
    theirs = F.binary_cross_entropy_with_logits(f64([z]), f64([y]), pos_weight=f64([w])).item()
    s = 1 / (1 + mpmath.exp(-z))
    exact = -(w * y * mpmath.log(s) + (1 - y) * mpmath.log(1 - s))
    assert theirs == pytest.approx(float(exact), rel=1e-14)


# --- categorical ----------------------------------------------------------------------------

Z3 = np.array([[5.0, 4.0, 2.0], [0.3, -1.2, 2.2]])
Y3 = np.array([0, 2])


def mp_cross_entropy(z, y):
    return float(mpmath.log(sum(mpmath.exp(mpmath.mpf(v)) for v in z)) - mpmath.mpf(z[y]))


def test_claim_categorical_losses_take_logits():
    """F.cross_entropy, CrossEntropyLoss, optax.softmax_cross_entropy (one-hot labels) and
    softmax_cross_entropy_with_integer_labels apply the log-softmax themselves; optax returns
    unreduced losses, the integer and one-hot forms agreeing."""
    exact = [mp_cross_entropy(z, y) for z, y in zip(Z3, Y3, strict=True)]
    functional = F.cross_entropy(tt(Z3), tt(Y3), reduction="none").numpy()
    module = torch.nn.CrossEntropyLoss(reduction="none")(tt(Z3), tt(Y3)).numpy()
    onehot = np.asarray(optax.softmax_cross_entropy(jnp.asarray(Z3), jnp.asarray(np.eye(3)[Y3])))
    integer = np.asarray(
        optax.softmax_cross_entropy_with_integer_labels(jnp.asarray(Z3), jnp.asarray(Y3))
    )
    for got in (functional, module, onehot, integer, lu.cross_entropy(Z3, Y3, reduction="none")):
        np.testing.assert_allclose(got, exact, rtol=1e-14)
    assert onehot.shape == integer.shape == (2,)


def test_claim_categorical_softmax_twice_floor():
    """Probabilities fed as logits (K = 3): the loss never falls below log(1 + 2/e) = 0.551."""
    z = f64([[60.0, 0.0, 0.0], [3.0, 1.0, 0.0], [0.0, 0.0, 0.0]])
    loss = F.cross_entropy(torch.softmax(z, -1), torch.tensor([0, 0, 0]), reduction="none")
    floor = math.log1p(2 / math.e)
    assert f"{floor:.3f}" == "0.551"
    assert (loss.numpy() >= floor - 1e-15).all()
    assert loss[0].item() == pytest.approx(floor, rel=1e-15)


def test_claim_categorical_nll_of_log_softmax_is_cross_entropy():
    """nll_loss(log_softmax(z), y) is cross_entropy(z, y), in PyTorch and in lossutils."""
    a = F.nll_loss(F.log_softmax(tt(Z3), -1), tt(Y3)).item()
    b = F.cross_entropy(tt(Z3), tt(Y3)).item()
    assert a == pytest.approx(b, rel=1e-15)
    assert lu.nll_loss(lu.log_softmax(Z3), Y3) == pytest.approx(lu.cross_entropy(Z3, Y3), rel=1e-15)


def test_claim_categorical_class_axis(rng):
    """PyTorch takes the classes on dimension 1 ((N, C, H, W)); optax and lossutils on the
    last axis: the same losses after np.moveaxis."""
    z = rng.normal(size=(2, 3, 4, 5))  # (N, H, W, C)
    y = rng.integers(0, 5, size=(2, 3, 4))
    torch_loss = F.cross_entropy(tt(np.moveaxis(z, -1, 1)), tt(y), reduction="none").numpy()
    optax_loss = np.asarray(
        optax.softmax_cross_entropy_with_integer_labels(jnp.asarray(z), jnp.asarray(y))
    )
    np.testing.assert_allclose(torch_loss, optax_loss, rtol=1e-13)
    np.testing.assert_allclose(lu.cross_entropy(z, y, reduction="none"), torch_loss, rtol=1e-13)


def test_claim_categorical_label_smoothing_target():
    """PyTorch's label_smoothing=eps is the cross-entropy to (1 - eps) y + eps / K."""
    eps, k = 0.1, 3
    smoothed = (1 - eps) * np.eye(k)[Y3] + eps / k
    a = F.cross_entropy(tt(Z3), tt(Y3), label_smoothing=eps, reduction="none").numpy()
    b = F.cross_entropy(tt(Z3), tt(smoothed), reduction="none").numpy()
    np.testing.assert_allclose(a, b, rtol=1e-14)


def test_claim_categorical_torch_loses_tiny_loss_of_confident_rows():
    """F.cross_entropy (log_softmax) returns 0 for a confident, correct row, whose exact loss is
    log(1 + 2 e^-40) = 8.5e-18; lossutils' log1p keeps it."""
    z = np.array([[40.0, 0.0, 0.0]])
    theirs = F.cross_entropy(tt(z), tt(np.array([0]))).item()
    exact = mp_cross_entropy(z[0], 0)
    assert theirs == 0.0
    assert float(lu.cross_entropy(z, np.array([0]))) == pytest.approx(exact, rel=4e-16)


# --- focal loss and label smoothing --------------------------------------------------------

W3 = np.array([1.0, 5.0, 0.5])


def test_claim_focal_label_smoothing_weighted_mean_divides_by_weights():
    """reduction="mean" with class weights divides by the summed weights of the targets."""
    per = F.cross_entropy(tt(Z3), tt(Y3), weight=tt(W3), reduction="none").numpy()
    mean = F.cross_entropy(tt(Z3), tt(Y3), weight=tt(W3)).item()
    assert mean == pytest.approx(per.sum() / W3[Y3].sum(), rel=1e-15)
    assert mean != pytest.approx(per.mean(), rel=1e-3)


def test_claim_focal_label_smoothing_loss_scale_sgd_and_adam(rng):
    """A constant factor c on the loss scales an SGD step by c; an Adam step is unchanged up to
    its eps (torch.optim)."""
    w0 = rng.normal(size=5)
    g = rng.normal(size=5)

    def step(opt_class, c, **kw):
        w = tt(w0, grad=True)
        w.grad = tt(c * g)
        opt_class([w], lr=0.1, **kw).step()
        return w.detach().numpy() - w0

    np.testing.assert_allclose(step(torch.optim.SGD, 7.0), 7.0 * step(torch.optim.SGD, 1.0),
                               rtol=1e-12)  # fmt: skip
    adam1, adam7 = step(torch.optim.Adam, 1.0), step(torch.optim.Adam, 7.0)
    # the first step is lr * g / (|g| + eps): relatively eps / |g| apart
    np.testing.assert_allclose(adam7, adam1, rtol=1e-8 / np.abs(g).min())
    assert not np.array_equal(adam7, adam1)  # eps = 1e-8 makes it approximate


def test_claim_focal_label_smoothing_all_ignored_is_nan():
    """ignore_index leaves both sums; every target ignored gives NaN."""
    y = np.array([0, -100])
    part = F.cross_entropy(tt(Z3), tt(y), weight=tt(W3)).item()
    assert part == pytest.approx(mp_cross_entropy(Z3[0], 0), rel=1e-14)
    assert math.isnan(F.cross_entropy(tt(Z3), tt(np.array([-100, -100]))).item())


def mp_focal(z, y, alpha, gamma):
    z = mpmath.mpf(z)
    p = 1 / (1 + mpmath.exp(-z))
    ce = -(y * mpmath.log(p) + (1 - y) * mpmath.log(1 - p))
    p_t = p * y + (1 - p) * (1 - y)
    a_t = 1 if alpha is None else alpha * y + (1 - alpha) * (1 - y)
    return float(a_t * (1 - p_t) ** gamma * ce)


def test_claim_focal_label_smoothing_torchvision_formula_and_defaults():
    """torchvision.ops.sigmoid_focal_loss(inputs, targets, alpha=0.25, gamma=2, reduction="none")
    is alpha_t (1 - p_t)^gamma BCE(z, y), for soft targets too."""
    ops = load_torchvision_ops()
    params = inspect.signature(ops.sigmoid_focal_loss).parameters
    assert params["alpha"].default == 0.25
    assert params["gamma"].default == 2
    assert params["reduction"].default == "none"
    z = np.array([-3.0, -0.5, 0.2, 2.5])
    y = np.array([1.0, 0.0, 0.3, 1.0])
    theirs = ops.sigmoid_focal_loss(tt(z), tt(y)).numpy()
    assert theirs.shape == (4,)
    exact = [mp_focal(a, b, 0.25, 2) for a, b in zip(z, y, strict=True)]
    np.testing.assert_allclose(theirs, exact, rtol=1e-13)


def test_claim_focal_label_smoothing_torchvision_negative_alpha_disables_weighting():
    ops = load_torchvision_ops()
    z = np.array([-3.0, 0.2, 2.5])
    y = np.array([1.0, 0.0, 1.0])
    theirs = ops.sigmoid_focal_loss(tt(z), tt(y), alpha=-1).numpy()
    np.testing.assert_allclose(theirs, [mp_focal(a, b, None, 2) for a, b in zip(z, y, strict=True)],
                               rtol=1e-13)  # fmt: skip
    ours = lu.sigmoid_focal_loss(z, y, alpha=None, reduction="none")
    np.testing.assert_allclose(ours, theirs, rtol=1e-13)


def test_claim_focal_label_smoothing_torchvision_autograd_nan():
    """Autograd of torchvision's formula with gamma < 1 is NaN for confident correct logits
    (from where 1 - p_t rounds to 0, z ~ 37 in float64); lossutils' gradient stays finite.
    At z = -1e4 (a positive label) it is finite: torchvision takes log p_t from
    binary_cross_entropy_with_logits, so no -inf * 0 arises there."""
    ops = load_torchvision_ops()
    z = f64([30.0, 36.0, 37.0, 40.0, -1e4]).requires_grad_(True)
    y = torch.ones(5, dtype=torch.float64)
    (grad,) = torch.autograd.grad(ops.sigmoid_focal_loss(z, y, gamma=0.5).sum(), [z])
    grad = grad.numpy()
    assert np.isfinite(grad[:2]).all() and np.isnan(grad[2:4]).all()
    assert grad[4] == -0.25
    ours = lu.sigmoid_focal_loss_grad(z.detach().numpy(), y.numpy(), gamma=0.5, reduction="sum")
    assert np.isfinite(ours).all()
    assert ours[4] == -0.25


def test_claim_focal_label_smoothing_weights_with_label_smoothing():
    """Index targets, class weights and label smoothing: the loss of the true class weighted by
    w_y times (1 - eps), plus eps/K times the weighted sum over all classes, both divided by
    the summed weights of the targets (the worked example: weights (1, 5, 0.5), eps = 0.2)."""
    eps, k = 0.2, 3
    theirs = F.cross_entropy(tt(Z3), tt(Y3), weight=tt(W3), label_smoothing=eps).item()
    num = mpmath.mpf(0)
    for z, y in zip(Z3, Y3, strict=True):
        lse = mpmath.log(sum(mpmath.exp(mpmath.mpf(v)) for v in z))
        ell = [lse - mpmath.mpf(v) for v in z]
        num += (1 - eps) * W3[y] * ell[y] + eps / k * sum(W3[j] * ell[j] for j in range(k))
    exact = num / sum(W3[Y3])
    assert theirs == pytest.approx(float(exact), rel=1e-14)
    assert float(lu.cross_entropy(Z3, Y3, weight=W3, label_smoothing=eps)) == pytest.approx(
        theirs, rel=1e-14
    )


def test_claim_focal_label_smoothing_probability_target_mean_divides_by_n():
    """With a probability (one-hot float) target PyTorch's weighted mean divides by N, not by
    the summed weights: index and one-hot give means in the ratio sum w_y / N = 1.5 / 2."""
    y = np.array([0, 2])
    index = F.cross_entropy(tt(Z3), tt(y), weight=tt(W3)).item()
    onehot = F.cross_entropy(tt(Z3), tt(np.eye(3)[y]), weight=tt(W3)).item()
    assert W3[y].sum() / 2 == 1.5 / 2
    assert onehot / index == pytest.approx(1.5 / 2, rel=1e-14)
    ours = lu.cross_entropy(Z3, np.eye(3)[y], weight=W3)
    assert float(ours) == pytest.approx(onehot, rel=1e-14)


def test_claim_focal_label_smoothing_no_softmax_focal_in_torch():
    """No softmax focal loss in torch.nn.functional or torchvision.ops; torchvision has the
    sigmoid one."""
    ops = load_torchvision_ops()
    assert not [n for n in dir(F) if "focal" in n.lower()]
    functions = [n for n in dir(ops) if callable(getattr(ops, n))]
    assert [n for n in functions if "focal" in n.lower()] == ["sigmoid_focal_loss"]


def test_claim_focal_label_smoothing_optax_smooth_labels():
    """optax.smooth_labels(labels, alpha) is (1 - alpha) y + alpha / K."""
    y = np.eye(4)[[0, 3, 1]]
    got = np.asarray(optax.smooth_labels(jnp.asarray(y), 0.1))
    np.testing.assert_allclose(got, 0.9 * y + 0.1 / 4, rtol=1e-15)


def test_claim_focal_label_smoothing_optax_focal_defaults():
    """optax.sigmoid_focal_loss(logits, labels, alpha=None, gamma=2.0): unreduced, no alpha."""
    params = inspect.signature(optax.sigmoid_focal_loss).parameters
    assert params["alpha"].default is None
    assert params["gamma"].default == 2.0
    z = np.array([-3.0, 0.2, 2.5])
    y = np.array([1.0, 0.0, 1.0])
    got = np.asarray(optax.sigmoid_focal_loss(jnp.asarray(z), jnp.asarray(y)))
    assert got.shape == (3,)
    np.testing.assert_allclose(got, [mp_focal(a, b, None, 2) for a, b in zip(z, y, strict=True)],
                               rtol=1e-13)  # fmt: skip


# --- margin losses --------------------------------------------------------------------------


def test_claim_margin_relu_subgradient_zero_at_kink():
    """torch.relu's backward passes no gradient where its output is 0: at the hinge's kink
    (t x = 1) the subgradient is 0, as lossutils.hinge_loss_grad returns."""
    x = f64([1.0, -1.0, 0.5]).requires_grad_(True)
    t = f64([1.0, -1.0, 1.0])
    (grad,) = torch.autograd.grad(torch.relu(1 - t * x).sum(), [x])
    assert grad.tolist() == [0.0, 0.0, -1.0]
    assert (
        lu.hinge_loss_grad(x.detach().numpy(), t.numpy(), reduction="sum").tolist() == grad.tolist()
    )


def mp_weston_watkins(z, y, p, margin, k):
    return float(sum(max(0, margin - z[y] + z[j]) ** p for j in range(k) if j != y) / k)


@pytest.mark.parametrize("p", [1, 2])
def test_claim_margin_multi_margin_is_weston_watkins_over_k(p):
    """MultiMarginLoss(p, margin) is the Weston-Watkins sum divided by the number of classes."""
    z = np.array([[1.0, 3.0, 2.0], [0.2, 0.1, 0.5]])
    y = np.array([0, 2])
    theirs = torch.nn.MultiMarginLoss(p=p, reduction="none")(tt(z), tt(y)).numpy()
    exact = [mp_weston_watkins(r, c, p, 1.0, 3) for r, c in zip(z, y, strict=True)]
    np.testing.assert_allclose(theirs, exact, rtol=1e-15)


def test_claim_margin_hinge_embedding_loss_is_not_the_hinge():
    """HingeEmbeddingLoss: x itself for y = 1, max(0, margin - x) for y = -1."""
    x = f64([-2.0, 0.5, 3.0, -2.0, 0.5, 3.0])
    y = f64([1, 1, 1, -1, -1, -1])
    theirs = F.hinge_embedding_loss(x, y, margin=1.0, reduction="none").tolist()
    assert theirs == [-2.0, 0.5, 3.0, 3.0, 0.5, 0.0]


def test_claim_margin_optax_hinge_loss():
    """optax.hinge_loss(scores, targets) with labels +-1 is max(0, 1 - t x), unreduced."""
    x = np.array([-2.0, 0.5, 3.0, 0.3])
    t = np.array([1.0, -1.0, 1.0, -1.0])
    got = np.asarray(optax.hinge_loss(jnp.asarray(x), jnp.asarray(t)))
    assert got.tolist() == np.maximum(0, 1 - t * x).tolist()
    assert got.tolist() == lu.hinge_loss(x, t, reduction="none").tolist()


def test_claim_margin_multilabel_margin_loss():
    """MultiLabelMarginLoss sums max(0, 1 - (z_j - z_i)) over target classes j and non-target
    classes i, divided by K (targets are class indices up to the first -1)."""
    z = np.array([[0.1, 0.2, 0.4, 0.8]])
    y = np.array([[3, 0, -1, 1]])
    theirs = F.multilabel_margin_loss(tt(z), tt(y), reduction="none").item()
    targets, others = [3, 0], [1, 2]
    exact = sum(max(0, 1 - (z[0, j] - z[0, i])) for j in targets for i in others) / 4
    assert theirs == pytest.approx(exact, rel=1e-15)


def test_claim_margin_soft_margin_is_logistic_loss_in_nats(rng):
    """SoftMarginLoss is the mean of log(1 + e^(-t z)); BCEWithLogitsLoss and
    optax.sigmoid_binary_cross_entropy give the same numbers on y = (1 + t) / 2."""
    z = rng.normal(scale=3, size=6)
    t = np.where(rng.random(6) < 0.5, -1.0, 1.0)
    exact = np.mean([float(mp_softplus(-a * b)) for a, b in zip(z, t, strict=True)])
    y = (1 + t) / 2
    assert F.soft_margin_loss(tt(z), tt(t)).item() == pytest.approx(exact, rel=1e-14)
    assert F.binary_cross_entropy_with_logits(tt(z), tt(y)).item() == pytest.approx(
        exact, rel=1e-14
    )
    ox = np.asarray(optax.sigmoid_binary_cross_entropy(jnp.asarray(z), jnp.asarray(y))).mean()
    assert ox == pytest.approx(exact, rel=1e-14)
    assert lu.logistic_loss(z, t, base=np.e) == pytest.approx(exact, rel=1e-14)


def test_claim_margin_soft_margin_float32_overflows_at_minus_100():
    """F.soft_margin_loss in float32 returns inf at t z = -100 (the loss is 100); lossutils'
    softplus form returns 100."""
    z = np.array([-100.0], np.float32)
    t = np.array([1.0], np.float32)
    assert F.soft_margin_loss(tt(z), tt(t)).item() == math.inf
    assert F.soft_margin_loss(tt(z, np.float64), tt(t, np.float64)).item() == 100.0
    ours = lu.logistic_loss(z, t, base=np.e)
    assert ours.dtype == np.float32 and float(ours) == 100.0


def test_claim_margin_crammer_singer_not_in_torch_but_in_optax(rng):
    """No Crammer-Singer module in PyTorch; optax.losses.multiclass_hinge_loss is
    max(0, 1 + max_{j != y} z_j - z_y), lossutils.multiclass_hinge_loss."""
    assert not [n for n in dir(torch.nn) if "crammer" in n.lower()]
    z = rng.normal(size=(6, 4))
    y = rng.integers(0, 4, size=6)
    got = np.asarray(optax.losses.multiclass_hinge_loss(jnp.asarray(z), jnp.asarray(y)))
    np.testing.assert_allclose(lu.multiclass_hinge_loss(z, y, reduction="none"), got, rtol=1e-14)


# --- choosing a loss ------------------------------------------------------------------------


def test_claim_choosing_a_loss_soft_margin_label_zero_is_log2():
    """soft_margin_loss with a label 0 (not +-1) returns log 2 whatever the score; lossutils
    refuses such labels."""
    z = np.array([-30.0, 0.0, 5.0, 1e3])
    theirs = F.soft_margin_loss(tt(z), tt(np.zeros(4)), reduction="none").numpy()
    np.testing.assert_allclose(theirs, math.log(2), rtol=1e-15)
    with pytest.raises(ValueError):
        lu.logistic_loss(z, np.zeros(4), base=np.e)


def test_claim_choosing_a_loss_kl_div_mean_divides_by_entries(rng):
    """kl_div(reduction="mean") divides by the number of entries N * C; "batchmean" by N."""
    logq = np.log(rng.dirichlet(np.ones(4), size=3))
    p = rng.dirichlet(np.ones(4), size=3)
    with pytest.warns(UserWarning, match="batchmean"):
        mean = F.kl_div(tt(logq), tt(p), reduction="mean").item()
    total = F.kl_div(tt(logq), tt(p), reduction="sum").item()
    assert mean == pytest.approx(total / 12, rel=1e-14)
    assert F.kl_div(tt(logq), tt(p), reduction="batchmean").item() == pytest.approx(
        total / 3, rel=1e-14
    )


# --- KL divergence --------------------------------------------------------------------------


def test_claim_kl_divergence_kl_div_is_forward_kl():
    """F.kl_div(log q, p) sums p (log p - log q): KL(target || model)."""
    q = np.array([0.2, 0.5, 0.3])
    p = np.array([0.1, 0.6, 0.3])
    theirs = F.kl_div(tt(np.log(q)), tt(p), reduction="sum").item()
    exact = float(sum(mpmath.mpf(a) * mpmath.log(mpmath.mpf(a) / mpmath.mpf(b))
                      for a, b in zip(p, q, strict=True)))  # fmt: skip
    assert theirs == pytest.approx(exact, rel=1e-14)


def test_claim_kl_divergence_log_target_for_underflowing_targets():
    """log_target=True takes log p itself: exact where p is subnormal and log(p) is not."""
    log_p = np.array([-744.0, -0.1])  # e^-744 is subnormal in float64
    log_q = np.array([-3.0, -0.2])
    exact = [float(mpmath.exp(a) * (mpmath.mpf(a) - b)) for a, b in zip(log_p, log_q, strict=True)]
    with_log = F.kl_div(tt(log_q), tt(log_p), reduction="none", log_target=True).numpy()
    with_p = F.kl_div(tt(log_q), tt(np.exp(log_p)), reduction="none").numpy()
    assert with_log[0] == pytest.approx(exact[0], rel=1e-14)
    assert abs(with_p[0] / exact[0] - 1) > 1e-3  # the subnormal p has lost its digits


def test_claim_kl_divergence_distillation_gradient(rng):
    """F.kl_div(log_softmax(z_s / T), log_softmax(z_t / T), "batchmean", log_target=True) has
    the gradient (q - p) / (T N) with respect to the student's logits."""
    n, t = 4, 3.0
    zs, zt = rng.normal(size=(n, 5)), rng.normal(size=(n, 5))
    tzs = tt(zs, grad=True)
    loss = F.kl_div(F.log_softmax(tzs / t, -1), F.log_softmax(tt(zt) / t, -1),
                    reduction="batchmean", log_target=True)  # fmt: skip
    (grad,) = torch.autograd.grad(loss, [tzs])
    expected = (lu.softmax(zs / t) - lu.softmax(zt / t)) / (t * n)
    np.testing.assert_allclose(grad.numpy(), expected, rtol=1e-12, atol=1e-16)


def test_claim_kl_divergence_cross_entropy_with_soft_targets(rng):
    """F.cross_entropy(logits, p) and optax.softmax_cross_entropy(logits, p) compute
    H(p, softmax z) = H(p) + KL(p || softmax z), with the gradient of the divergence."""
    z = rng.normal(size=(3, 4))
    p = rng.dirichlet(np.ones(4), size=3)
    tz = tt(z, grad=True)
    ce = F.cross_entropy(tz, tt(p), reduction="sum")
    (g_ce,) = torch.autograd.grad(ce, [tz])
    tz2 = tt(z, grad=True)
    kl = F.kl_div(F.log_softmax(tz2, -1), tt(p), reduction="sum")
    (g_kl,) = torch.autograd.grad(kl, [tz2])
    h = scipy.stats.entropy(p, axis=-1).sum()
    assert ce.item() == pytest.approx(h + kl.item(), rel=1e-13)
    np.testing.assert_allclose(g_ce.numpy(), g_kl.numpy(), rtol=1e-12, atol=1e-16)
    ox = np.asarray(optax.softmax_cross_entropy(jnp.asarray(z), jnp.asarray(p))).sum()
    assert ox == pytest.approx(ce.item(), rel=1e-13)


def test_claim_kl_divergence_optax_per_example_divergences(rng):
    """optax.kl_divergence(log_predictions, targets) and kl_divergence_with_log_targets return
    one divergence per example; their mean is kl_div's "batchmean". The second exists only as
    optax.losses.kl_divergence_with_log_targets (not at optax's top level)."""
    assert not hasattr(optax, "kl_divergence_with_log_targets")
    logq = np.log(rng.dirichlet(np.ones(4), size=3))
    p = rng.dirichlet(np.ones(4), size=3)
    a = np.asarray(optax.kl_divergence(jnp.asarray(logq), jnp.asarray(p)))
    b = np.asarray(
        optax.losses.kl_divergence_with_log_targets(jnp.asarray(logq), jnp.asarray(np.log(p)))
    )
    assert a.shape == b.shape == (3,)
    batchmean = F.kl_div(tt(logq), tt(p), reduction="batchmean").item()
    assert a.mean() == pytest.approx(batchmean, rel=1e-13)
    assert b.mean() == pytest.approx(batchmean, rel=1e-13)


def test_claim_kl_divergence_scipy_rel_entr_and_entropy():
    """scipy.special.rel_entr(p, q).sum(-1) is the same sum; scipy.stats.entropy(p, q)
    renormalizes both arguments first."""
    p = np.array([0.1, 0.6, 0.3])
    q = np.array([0.2, 0.5, 0.3])
    kl = lu.kl_divergence(p, q)
    assert scipy.special.rel_entr(p, q).sum(-1) == pytest.approx(kl, rel=1e-14)
    assert scipy.stats.entropy(2 * p, 3 * q) == pytest.approx(kl, rel=1e-14)
    assert scipy.special.rel_entr(2 * p, 3 * q).sum() != pytest.approx(kl, rel=1e-3)


def test_claim_kl_divergence_log_of_softmax_underflows():
    """log(softmax(z)) is -inf where the softmax underflows, and the divergence inf; the
    log_softmax gives the finite value."""
    z = f64([[0.0, -800.0]])
    p = f64([[0.5, 0.5]])
    assert F.kl_div(torch.log(torch.softmax(z, -1)), p, reduction="sum").item() == math.inf
    finite = F.kl_div(F.log_softmax(z, -1), p, reduction="sum").item()
    assert finite == pytest.approx(0.5 * 800 - math.log(2) + 0.5 * 0, rel=1e-12)


def test_claim_kl_divergence_kl_div_zero_target_nan():
    """PyTorch's kl_div is NaN where the target is 0 and the input -inf (0 * inf); lossutils 0."""
    z = np.array([-np.inf, -0.5])
    p = np.array([0.0, 1.0])
    assert math.isnan(F.kl_div(tt(z), tt(p), reduction="sum").item())
    assert float(lu.kl_div(z, p, reduction="sum")) == 0.5


def test_claim_kl_divergence_kl_div_grad_is_minus_p_over_n(rng):
    logq = np.log(rng.dirichlet(np.ones(4), size=3))
    p = rng.dirichlet(np.ones(4), size=3)
    tz = tt(logq, grad=True)
    (grad,) = torch.autograd.grad(F.kl_div(tz, tt(p), reduction="batchmean"), [tz])
    np.testing.assert_allclose(grad.numpy(), -p / 3, rtol=1e-15)


# --- ELBO -----------------------------------------------------------------------------------


def mp_kl_standard(mu, logvar):
    return float(sum(mpmath.mpf(0.5) * (mpmath.exp(v) + mpmath.mpf(m) ** 2 - 1 - v)
                     for m, v in zip(mu, logvar, strict=True)))  # fmt: skip


def test_claim_elbo_pytorch_kl_formula(rng):
    """-0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp()) is KL(N(mu, e^v) || N(0, I))."""
    mu, logvar = rng.normal(size=5), rng.normal(size=5)
    tmu, tlv = tt(mu), tt(logvar)
    theirs = (-0.5 * torch.sum(1 + tlv - tmu.pow(2) - tlv.exp())).item()
    assert theirs == pytest.approx(mp_kl_standard(mu, logvar), rel=1e-13)


def test_claim_elbo_official_example_and_stable_equivalent(rng):
    """The official example's F.binary_cross_entropy(torch.sigmoid(logits), x, "sum") equals
    F.binary_cross_entropy_with_logits(logits, x, "sum") for moderate logits; with the KL
    term the sum is vae_loss(x, logits, mu, logvar, reduction="sum")."""
    x = (rng.random((3, 6)) < 0.5).astype(float)
    logits = rng.normal(size=(3, 6))
    mu, logvar = rng.normal(size=(3, 2)), rng.normal(size=(3, 2))
    a = F.binary_cross_entropy(torch.sigmoid(tt(logits)), tt(x), reduction="sum").item()
    b = F.binary_cross_entropy_with_logits(tt(logits), tt(x), reduction="sum").item()
    assert a == pytest.approx(b, rel=1e-13)
    kl = (-0.5 * torch.sum(1 + tt(logvar) - tt(mu).pow(2) - tt(logvar).exp())).item()
    assert float(lu.vae_loss(x, logits, mu, logvar, reduction="sum")) == pytest.approx(
        b + kl, rel=1e-13
    )


def test_claim_elbo_textbook_kl_cancels_near_prior():
    """The textbook KL term cancels for logvar near 0 (absolute error near 1e-16, relative far
    larger); gaussian_kl and torch.distributions are the places to read tiny KL values from."""
    mu, logvar = np.array([0.0]), np.array([1e-6])
    exact = mp_kl_standard(mu, logvar)
    textbook = (-0.5 * torch.sum(1 + tt(logvar) - tt(mu).pow(2) - tt(logvar).exp())).item()
    assert abs(textbook - exact) < 1e-16
    assert abs(textbook / exact - 1) > 1e-6
    assert float(lu.gaussian_kl(mu, logvar)) == pytest.approx(exact, rel=1e-15)


def test_claim_elbo_torch_distributions_kl(rng):
    """kl_divergence(Normal(mu, (0.5 * logvar).exp()), Normal(0, 1)).sum(-1) is the KL term."""
    mu, logvar = rng.normal(size=(2, 3)), rng.normal(size=(2, 3))
    Normal = torch.distributions.Normal
    theirs = torch.distributions.kl_divergence(
        Normal(tt(mu), (0.5 * tt(logvar)).exp()), Normal(0.0, 1.0)
    ).sum(-1)
    exact = [mp_kl_standard(m, v) for m, v in zip(mu, logvar, strict=True)]
    np.testing.assert_allclose(theirs.numpy(), exact, rtol=1e-13)


def test_claim_evidence_torch_distributions_kl_cancels_near_prior():
    """torch.distributions' Gaussian KL to N(0, 1) near the prior: its terms of size |logvar|
    cancel to a KL of size logvar^2 / 4, so the relative error grows like 1e-16 / |logvar|
    (2e-10 at logvar = 1e-6, 2e-8 at 1e-8: a million ULP and more), while gaussian_kl stays
    within a few ULP of mpmath."""
    Normal = torch.distributions.Normal
    for logvar_value, lost in ((1e-6, 1e-11), (1e-8, 1e-9)):
        mu, logvar = np.array([0.0]), np.array([logvar_value])
        exact = mp_kl_standard(mu, logvar)
        theirs = (
            torch.distributions.kl_divergence(
                Normal(tt(mu), (0.5 * tt(logvar)).exp()), Normal(0.0, 1.0)
            )
            .sum()
            .item()
        )
        assert abs(theirs / exact - 1) > lost
        assert float(lu.gaussian_kl(mu, logvar)) == pytest.approx(exact, rel=4 * 2.0**-52)


def test_claim_elbo_distrax_kl(rng):
    """distrax.Normal(mu, jnp.exp(0.5 * logvar)).kl_divergence(distrax.Normal(0.0, 1.0)).sum(-1)
    is the KL term."""
    with warnings.catch_warnings():
        # distrax's dependencies touch deprecated jax.core names when imported
        warnings.simplefilter("ignore", DeprecationWarning)
        import distrax
    mu, logvar = rng.normal(size=(2, 3)), rng.normal(size=(2, 3))
    q = distrax.Normal(jnp.asarray(mu), jnp.exp(0.5 * jnp.asarray(logvar)))
    got = np.asarray(q.kl_divergence(distrax.Normal(0.0, 1.0)).sum(-1))
    exact = [mp_kl_standard(m, v) for m, v in zip(mu, logvar, strict=True)]
    np.testing.assert_allclose(got, exact, rtol=1e-13)
    np.testing.assert_allclose(lu.gaussian_kl(mu, logvar), exact, rtol=1e-15)


def test_claim_elbo_optax_has_no_gaussian_kl():
    """optax's kl_divergence is between categorical distributions; no Gaussian KL in optax."""
    assert not [n for n in dir(optax.losses) if "gauss" in n.lower() or "normal" in n.lower()]
    logq = np.log(np.array([0.2, 0.8]))
    p = np.array([0.5, 0.5])
    got = float(optax.losses.kl_divergence(jnp.asarray(logq), jnp.asarray(p)))
    assert got == pytest.approx(lu.kl_divergence(p, np.exp(logq)), rel=1e-14)


def test_claim_elbo_mse_mean_divides_by_nd(rng):
    """F.mse_loss's default mean divides by all N * D entries."""
    x, r = rng.normal(size=(4, 6)), rng.normal(size=(4, 6))
    assert F.mse_loss(tt(r), tt(x)).item() == pytest.approx(((r - x) ** 2).sum() / 24, rel=1e-14)


# --- Gaussian regression --------------------------------------------------------------------


def test_claim_gaussian_l2_mse_mean_over_all_elements(rng):
    """MSELoss() / F.mse_loss: reduction="mean" averages over all n * D elements."""
    x, y = rng.normal(size=(5, 3)), rng.normal(size=(5, 3))
    theirs = torch.nn.MSELoss()(tt(x), tt(y)).item()
    assert theirs == pytest.approx(((x - y) ** 2).sum() / 15, rel=1e-14)
    assert float(lu.mse_loss(x, y)) == pytest.approx(theirs, rel=1e-14)


def test_claim_gaussian_l2_gaussian_nll_formula():
    """gaussian_nll_loss is 1/2 (log v + (y - mu)^2 / v), plus 1/2 log 2 pi with full=True;
    var is a variance."""
    mu, y, v = 0.3, 1.1, 0.7
    exact = mpmath.mpf(0.5) * (mpmath.log(v) + (mpmath.mpf(y) - mu) ** 2 / v)
    const = mpmath.log(2 * mpmath.pi) / 2
    a = F.gaussian_nll_loss(f64([mu]), f64([y]), f64([v])).item()
    b = F.gaussian_nll_loss(f64([mu]), f64([y]), f64([v]), full=True).item()
    assert a == pytest.approx(float(exact), rel=1e-14)
    assert b == pytest.approx(float(exact + const), rel=1e-14)


def test_claim_gaussian_l2_var_clamp_gradient():
    """var is floored at eps = 1e-6; the gradient where the floor is active is the formula at
    eps (PyTorch clamps a copy under no_grad), not 0."""
    assert inspect.signature(F.gaussian_nll_loss).parameters["eps"].default == 1e-6
    mu, y = f64([0.0]), f64([1e-3])
    v = f64([1e-9]).requires_grad_(True)
    loss = F.gaussian_nll_loss(mu, y, v, reduction="sum")
    (grad,) = torch.autograd.grad(loss, [v])
    eps, r2 = 1e-6, 1e-6
    assert loss.item() == pytest.approx(0.5 * (math.log(eps) + r2 / eps), rel=1e-14)
    assert grad.item() == pytest.approx(0.5 * (1 / eps - r2 / eps**2), rel=1e-12, abs=1e-6)
    assert grad.item() != 0.0 or (1 / eps - r2 / eps**2) == 0.0
    ours = lu.gaussian_nll_loss_grad(mu.numpy(), y.numpy(), v.detach().numpy(), reduction="sum")
    assert ours[1].item() == pytest.approx(grad.item(), rel=1e-12, abs=1e-6)


def test_claim_gaussian_l2_var_one_dim_short(rng):
    """PyTorch accepts a var with one dimension less than input, as var[..., None]."""
    x, y = rng.normal(size=(4, 3)), rng.normal(size=(4, 3))
    v = np.exp(rng.normal(size=4))
    short = F.gaussian_nll_loss(tt(x), tt(y), tt(v)).item()
    explicit = F.gaussian_nll_loss(tt(x), tt(y), tt(v[:, None])).item()
    assert short == explicit
    assert float(lu.gaussian_nll_loss(x, y, v[:, None])) == pytest.approx(short, rel=1e-14)


def test_claim_gaussian_l2_optax_l2_loss_is_half(rng):
    """optax.l2_loss is 1/2 (y_hat - y)^2 with gradient y_hat - y; optax.squared_error is the
    full square."""
    x, y = rng.normal(size=5), rng.normal(size=5)
    half = np.asarray(optax.l2_loss(jnp.asarray(x), jnp.asarray(y)))
    full = np.asarray(optax.squared_error(jnp.asarray(x), jnp.asarray(y)))
    grad = np.asarray(jax.grad(lambda a: optax.l2_loss(a, jnp.asarray(y)).sum())(jnp.asarray(x)))
    np.testing.assert_allclose(half, 0.5 * (x - y) ** 2, rtol=1e-15)
    np.testing.assert_allclose(full, (x - y) ** 2, rtol=1e-15)
    np.testing.assert_allclose(grad, x - y, rtol=1e-15)


# --- robust regression ----------------------------------------------------------------------


def test_claim_robust_regression_abs_subgradient_zero():
    """PyTorch's autograd of abs (and of F.l1_loss) gives 0 at a zero residual."""
    x = f64([0.0, 1.0, -2.0]).requires_grad_(True)
    (g_abs,) = torch.autograd.grad(x.abs().sum(), [x])
    (g_l1,) = torch.autograd.grad(
        F.l1_loss(x, torch.zeros(3, dtype=torch.float64), reduction="sum"), [x]
    )
    assert g_abs.tolist() == g_l1.tolist() == [0.0, 1.0, -1.0]


@pytest.mark.parametrize("b", [0.1, 1.0, 3.0])
def test_claim_robust_regression_smooth_l1_is_huber_over_beta(b):
    """SmoothL1Loss(beta=b) equals HuberLoss(delta=b) / b; they agree only at b = 1."""
    r = np.linspace(-5, 5, 41)
    z = np.zeros_like(r)
    smooth = torch.nn.SmoothL1Loss(beta=b, reduction="none")(tt(r), tt(z)).numpy()
    huber = torch.nn.HuberLoss(delta=b, reduction="none")(tt(r), tt(z)).numpy()
    np.testing.assert_allclose(smooth, huber / b, rtol=1e-14)
    assert np.allclose(smooth, huber) == (b == 1.0)


def test_claim_robust_regression_smooth_l1_beta_zero_is_l1(rng):
    r = rng.normal(size=9)
    z = np.zeros(9)
    np.testing.assert_array_equal(
        F.smooth_l1_loss(tt(r), tt(z), beta=0.0, reduction="none").numpy(), np.abs(r)
    )


def test_claim_robust_regression_torch_has_no_log_cosh_or_laplace_nll():
    names = [n.lower() for n in dir(F) + dir(torch.nn)]
    assert not [n for n in names if "cosh" in n or "laplace" in n]


def test_claim_robust_regression_torch_laplace_log_prob_is_full_nll():
    """-Laplace(input, scale).log_prob(target) is log b + |x - y| / b + log 2."""
    x, y, b = 0.3, -1.2, 0.8
    theirs = -torch.distributions.Laplace(f64(x), f64(b)).log_prob(f64(y)).item()
    assert theirs == pytest.approx(math.log(b) + abs(x - y) / b + math.log(2), rel=1e-15)
    got = float(lu.laplace_nll_loss(np.array([x]), np.array([y]), np.array([b]), full=True))
    assert got == pytest.approx(theirs, rel=1e-15)


def test_claim_robust_regression_optax_huber_delta_keyword_only():
    """optax.huber_loss(predictions, targets, delta=1.0): per element, delta keyword-only."""
    param = inspect.signature(optax.huber_loss).parameters["delta"]
    assert param.kind is inspect.Parameter.KEYWORD_ONLY and param.default == 1.0
    r = np.array([-3.0, -0.5, 0.2, 2.0])
    got = np.asarray(optax.huber_loss(jnp.asarray(r), jnp.zeros(4), delta=1.0))
    np.testing.assert_allclose(got, [2.5, 0.125, 0.02, 1.5], rtol=1e-15)


def test_claim_robust_regression_optax_log_cosh_small_residuals():
    """optax.log_cosh (logaddexp(r, -r) - log 2) never overflows, has an absolute error near
    1e-16 (relative error growing like 1e-16 / r^2) and is rounding error only below
    |r| ~ 1e-8; its autodiff gradient is still tanh r, to an absolute 1e-16 (relatively
    2.7e-8 off at r = 1e-9)."""
    r = np.array([1e3, 1e-4, 1e-6, 1e-9])
    got = np.asarray(optax.log_cosh(jnp.asarray(r)))
    exact = np.array([float(mpmath.log(mpmath.cosh(mpmath.mpf(v)))) for v in r])
    assert got[0] == pytest.approx(exact[0], rel=1e-15)  # no overflow at 1e3
    assert np.all(np.abs(got - exact) < 2.3e-16)
    rel = np.abs(got / exact - 1)
    assert rel[1] > 1e-10 and rel[2] > 1e-6  # about 1e-16 / r^2
    assert got[3] == 0.0  # exact 5e-19
    ours = lu.log_cosh_loss(r, np.zeros(4), reduction="none")
    np.testing.assert_allclose(ours, exact, rtol=4 * 2.0**-52)
    grad = np.asarray(jax.grad(lambda a: optax.log_cosh(a).sum())(jnp.asarray(r)))
    np.testing.assert_allclose(grad, np.tanh(r), rtol=1e-15, atol=1e-16)
    assert abs(grad[3] / np.tanh(r[3]) - 1) > 1e-8


# --- foundations ----------------------------------------------------------------------------


def test_claim_likelihood_to_loss_sign_at_zero():
    """torch.sign(0) = 0 and autograd of |w| at 0 is 0: l1_penalty_grad's subgradient."""
    w = f64([0.0, -2.0, 3.0]).requires_grad_(True)
    (grad,) = torch.autograd.grad(w.abs().sum(), [w])
    assert torch.sign(f64(0.0)).item() == 0.0
    assert grad.tolist() == lu.l1_penalty_grad(w.detach().numpy(), 1.0).tolist() == [0.0, -1.0, 1.0]


def test_claim_likelihood_to_loss_weight_decay_is_half_l2_penalty(rng):
    """SGD(weight_decay=wd) and optax.add_decayed_weights(wd) add wd * w to the gradient: one
    step on a penalty-free loss equals a plain step on l2_penalty(w, wd / 2)."""
    w0 = rng.normal(size=4)
    wd, lr = 0.1, 0.5
    w = tt(w0, grad=True)
    opt = torch.optim.SGD([w], lr=lr, weight_decay=wd)
    w.grad = torch.zeros_like(w)
    opt.step()
    expected = w0 - lr * lu.l2_penalty_grad(w0, wd / 2)
    np.testing.assert_allclose(w.detach().numpy(), expected, rtol=1e-15)
    tx = optax.chain(optax.add_decayed_weights(wd), optax.sgd(lr))
    updates, _ = tx.update(jnp.zeros(4), tx.init(jnp.asarray(w0)), jnp.asarray(w0))
    np.testing.assert_allclose(np.asarray(optax.apply_updates(jnp.asarray(w0), updates)),
                               expected, rtol=1e-15)  # fmt: skip


def test_claim_likelihood_to_loss_adamw_is_not_l2_penalty(rng):
    """Decoupled weight decay (AdamW) differs from Adam on the loss plus an L2 penalty."""
    w0 = rng.normal(size=4)
    g0 = rng.normal(size=4)
    wd, lr = 0.1, 0.01
    w1 = tt(w0, grad=True)
    w1.grad = tt(g0)
    torch.optim.AdamW([w1], lr=lr, weight_decay=wd).step()
    w2 = tt(w0, grad=True)
    w2.grad = tt(g0 + lu.l2_penalty_grad(w0, wd / 2))
    torch.optim.Adam([w2], lr=lr).step()
    assert not np.allclose(w1.detach().numpy(), w2.detach().numpy(), rtol=1e-6)


# --- contrastive and triplet ----------------------------------------------------------------


def test_claim_contrastive_triplet_norm_grad_zero_at_zero(rng):
    """The backward of torch's norm is 0 at a zero norm: the push term of a dissimilar pair with
    x1 = x2 gets the gradient 0, as lossutils.contrastive_loss_grad returns."""
    x = rng.normal(size=(1, 3))
    t1, t2 = tt(x, grad=True), tt(x.copy(), grad=True)
    d = torch.linalg.vector_norm(t1 - t2, dim=-1)
    loss = torch.relu(1.0 - d).pow(2).sum()
    g1, g2 = torch.autograd.grad(loss, [t1, t2])
    assert loss.item() == 1.0
    assert g1.abs().sum().item() == 0.0 and g2.abs().sum().item() == 0.0
    o1, o2 = lu.contrastive_loss_grad(x, x.copy(), np.array([0.0]), reduction="sum")
    assert np.all(o1 == 0) and np.all(o2 == 0)


def test_claim_contrastive_triplet_pairwise_distance_eps(rng):
    """PyTorch's distance is ||x - z + eps||_p (eps added to every component): a point's
    distance to itself is eps sqrt(D), and d(x, z) != d(z, x)."""
    x = rng.normal(size=(1, 4))
    z = rng.normal(size=(1, 4))
    assert F.pairwise_distance(tt(x), tt(x)).item() == pytest.approx(1e-6 * 2, rel=1e-9)
    dxz = F.pairwise_distance(tt(x), tt(z)).item()
    assert dxz == pytest.approx(np.linalg.norm(x - z + 1e-6), rel=1e-14)
    assert dxz != F.pairwise_distance(tt(z), tt(x)).item()


def test_claim_contrastive_triplet_worked_example():
    """a = (0, 0), p = (1, 1), n = (2, 0), margin 1: FaceNet 0, PyTorch sqrt 2 - 1 moved by
    (1 - sqrt 2) eps, with swap 1 (moved by O(eps) too)."""
    a, p, n = (tt(np.array([v], float)) for v in ([0, 0], [1, 1], [2, 0]))
    plain = F.triplet_margin_loss(a, p, n).item()
    swap = F.triplet_margin_loss(a, p, n, swap=True).item()
    exact0 = mpmath.sqrt(2) - 1
    assert plain - float(exact0) == pytest.approx((1 - math.sqrt(2)) * 1e-6, rel=1e-4)
    assert swap == pytest.approx(1.0, abs=1e-5)
    assert F.triplet_margin_loss(a, p, n, eps=0.0).item() == pytest.approx(float(exact0), rel=1e-15)
    assert F.triplet_margin_loss(a, p, n, swap=True, eps=0.0).item() == pytest.approx(
        1.0, rel=1e-15
    )
    facenet = lu.triplet_margin_loss(a.numpy(), p.numpy(), n.numpy(), squared=True)
    assert float(facenet) == 0.0


def test_claim_contrastive_triplet_defaults():
    """TripletMarginLoss(margin=1.0, p=2.0, eps=1e-6, swap=False) is triplet_margin_loss with
    its defaults."""
    params = inspect.signature(torch.nn.TripletMarginLoss).parameters
    assert (params["margin"].default, params["p"].default, params["eps"].default) == (
        1.0,
        2.0,
        1e-6,
    )
    assert params["swap"].default is False
    ours = inspect.signature(lu.triplet_margin_loss).parameters
    assert (ours["margin"].default, ours["p"].default, ours["eps"].default) == (1.0, 2.0, 1e-6)
    assert ours["swap"].default is False


def test_claim_contrastive_triplet_with_distance_squared_is_facenet(rng):
    """TripletMarginWithDistanceLoss(distance_function=lambda x, z: (x - z).pow(2).sum(-1)) is
    the FaceNet form, triplet_margin_loss(squared=True)."""
    a, p, n = (rng.normal(size=(6, 3)) for _ in range(3))
    loss = torch.nn.TripletMarginWithDistanceLoss(
        distance_function=lambda x, z: (x - z).pow(2).sum(-1), reduction="none"
    )
    theirs = loss(tt(a), tt(p), tt(n)).numpy()
    ours = lu.triplet_margin_loss(a, p, n, squared=True, reduction="none")
    np.testing.assert_allclose(ours, theirs, rtol=1e-13, atol=1e-15)


def test_claim_contrastive_triplet_optax_eps_inside_root(rng):
    """optax.losses.triplet_margin_loss returns per-triplet losses and puts eps inside the root:
    (sum |a - p|^2 + eps)^(1/2)."""
    a, p, n = (rng.normal(size=(5, 3)) for _ in range(3))
    got = np.asarray(
        optax.losses.triplet_margin_loss(jnp.asarray(a), jnp.asarray(p), jnp.asarray(n))
    )
    d_ap = np.sqrt(((a - p) ** 2).sum(-1) + 1e-6)
    d_an = np.sqrt(((a - n) ** 2).sum(-1) + 1e-6)
    assert got.shape == (5,)
    np.testing.assert_allclose(got, np.maximum(0, d_ap - d_an + 1.0), rtol=1e-13)
    torch_like = lu.triplet_margin_loss(a, p, n, reduction="none")
    assert not np.allclose(got, torch_like, rtol=1e-9, atol=0)


def test_claim_contrastive_triplet_cosine_embedding_loss(rng):
    """CosineEmbeddingLoss: 1 - cos for y = 1, max(0, cos - margin) for y = -1, margin 0.
    (PyTorch adds 1e-12 to each squared norm, hence the tolerance.)"""
    assert inspect.signature(torch.nn.CosineEmbeddingLoss).parameters["margin"].default == 0.0
    x1, x2 = rng.normal(size=(4, 3)), rng.normal(size=(4, 3))
    y = np.array([1, -1, 1, -1])
    cos = (x1 * x2).sum(-1) / np.linalg.norm(x1, axis=-1) / np.linalg.norm(x2, axis=-1)
    expected = np.where(y == 1, 1 - cos, np.maximum(0, cos))
    got = F.cosine_embedding_loss(tt(x1), tt(x2), tt(y), reduction="none").numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-9, atol=1e-15)


def test_claim_contrastive_triplet_hinge_embedding_loss():
    """HingeEmbeddingLoss takes a distance d and labels +-1: d and max(0, m - d)."""
    d = f64([0.2, 1.5, 0.2, 1.5])
    y = f64([1, 1, -1, -1])
    assert F.hinge_embedding_loss(d, y, margin=1.0, reduction="none").tolist() == [
        0.2,
        1.5,
        0.8,
        0.0,
    ]


def test_claim_contrastive_triplet_torch_has_no_contrastive_loss():
    assert not [n for n in dir(F) + dir(torch.nn) if "contrastive" in n.lower()]


def test_claim_contrastive_triplet_optax_ntxent(rng):
    """optax.ntxent(embeddings, labels, temperature=0.07): with embeddings [z1; z2] and labels
    [0..N-1, 0..N-1] it is nt_xent_loss(z1, z2, temperature)."""
    assert inspect.signature(optax.ntxent).parameters["temperature"].default == 0.07
    z1 = rng.normal(size=(4, 3))
    z2 = z1 + rng.normal(scale=0.3, size=(4, 3))
    labels = jnp.asarray(np.r_[np.arange(4), np.arange(4)])
    got = float(optax.ntxent(jnp.asarray(np.concatenate([z1, z2])), labels))
    assert got == pytest.approx(float(lu.nt_xent_loss(z1, z2, temperature=0.07)), rel=1e-12)


def test_claim_contrastive_triplet_optax_ntxent_more_positives(rng):
    """With more than two rows per label, optax.ntxent leaves the other positives out of each
    positive pair's denominator, and averages over the ordered positive pairs."""
    z = rng.normal(size=(6, 3))
    labels = np.array([0, 0, 0, 1, 1, 1])
    t = 0.5
    got = float(optax.ntxent(jnp.asarray(z), jnp.asarray(labels), temperature=t))
    h = z / np.linalg.norm(z, axis=-1, keepdims=True)
    s = h @ h.T / t
    losses = []
    for i in range(6):
        for j in range(6):
            if i != j and labels[i] == labels[j]:
                negatives = [k for k in range(6) if labels[k] != labels[i]]
                denom = np.exp(s[i, j]) + np.exp(s[i, negatives]).sum()
                losses.append(-(s[i, j] - np.log(denom)))
    assert got == pytest.approx(np.mean(losses), rel=1e-12)


def test_claim_contrastive_triplet_normalize_floor():
    """F.normalize floors the norm at eps = 1e-12 (a zero row stays 0, a tiny one is divided by
    1e-12), the floor lossutils uses for nt_xent_loss."""
    assert inspect.signature(F.normalize).parameters["eps"].default == 1e-12
    rows = f64([[0.0, 0.0], [3e-13, 4e-13]])
    got = F.normalize(rows, dim=-1).numpy()
    np.testing.assert_allclose(got, [[0.0, 0.0], [0.3, 0.4]], rtol=1e-15)
