"""Categorical losses: PyTorch semantics, accuracy, gradients, properties, argument checks.

Expected values come from the PyTorch rules written out below as plain formulas
(loops over samples and classes, ``math.fsum``), from mpmath at 400 digits
(``mp_reference``), from SymPy at C = 3, and from central finite differences.
"""

from __future__ import annotations

import math

import mp_reference as mr
import mpmath
import numpy as np
import pytest
import sympy as sp
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import lossutils as L
from lossutils import classification as C
from lossutils.testing import (
    assert_close_to_exact,
    assert_gradient_matches,
    assert_matches_sympy,
    assert_ulp_close,
)

REDUCTIONS = ("mean", "sum", "none")
SEED = 20240611


def rng(offset=0):
    return np.random.default_rng(SEED + offset)


# --- the PyTorch rules, written out independently ----------------------------------------------


def _neg_log_softmax(row):
    """-log softmax of one row, by mpmath at 50 digits (benign inputs only)."""
    with mpmath.workdps(50):
        lse = mpmath.log(mpmath.fsum(mpmath.exp(mpmath.mpf(float(v))) for v in row))
        return [float(lse - mpmath.mpf(float(v))) for v in row]


def _reduce(losses, denominator, reduction):
    if reduction == "none":
        return np.array(losses)
    total = math.fsum(losses)
    if reduction == "sum":
        return total
    return total / denominator if denominator != 0 else math.nan


def ref_nll(logp, target, weight, ignore_index, reduction):
    """PyTorch nll_loss: -w[y] x[y]; the mean divides by the summed w[y] of counted samples."""
    weight = np.ones(logp.shape[-1]) if weight is None else weight
    losses, total_weight = [], 0.0
    for row, y in zip(logp, target, strict=True):
        if y == ignore_index:
            losses.append(0.0)
            continue
        losses.append(-weight[y] * row[y])
        total_weight += weight[y]
    return _reduce(losses, total_weight, reduction)


def ref_cross_entropy_index(z, target, weight, ignore_index, reduction, eps):
    """PyTorch cross_entropy, index targets, as cross_entropy_loss_label_smoothing in ATen:
    (1 - eps) * nll_loss(log_softmax) + eps / C * smooth, where the smooth part is
    sum_c w_c (-log p_c) per sample, 0 for ignored samples, and its mean divides by the
    same summed w[y] as nll_loss (the number of counted samples without weights)."""
    n_classes = z.shape[-1]
    weight = np.ones(n_classes) if weight is None else weight
    nll, smooth, total_weight = [], [], 0.0
    for row, y in zip(z, target, strict=True):
        if y == ignore_index:
            nll.append(0.0)
            smooth.append(0.0)
            continue
        nl = _neg_log_softmax(row)
        nll.append(weight[y] * nl[y])
        smooth.append(math.fsum(w * v for w, v in zip(weight, nl, strict=True)))
        total_weight += weight[y]
    a = _reduce(nll, total_weight, reduction)
    b = _reduce(smooth, total_weight, reduction)
    return (1 - eps) * np.asarray(a) + eps / n_classes * np.asarray(b)


def ref_cross_entropy_prob(z, t, weight, reduction, eps):
    """PyTorch cross_entropy, probability targets: q = (1 - eps) t + eps / C,
    -sum_c w_c q_c log p_c per sample; the mean divides by N, whatever the weights."""
    n_classes = z.shape[-1]
    weight = np.ones(n_classes) if weight is None else weight
    losses = []
    for row, trow in zip(z, t, strict=True):
        nl = _neg_log_softmax(row)
        q = [(1 - eps) * tc + eps / n_classes for tc in trow]
        losses.append(math.fsum(w * qc * v for w, qc, v in zip(weight, q, nl, strict=True)))
    return _reduce(losses, len(losses), reduction)


def ref_focal(z, target, gamma, weight, ignore_index, reduction):
    """-w[y] (1 - p_y)^gamma log p_y, with nll_loss's weighted mean."""
    weight = np.ones(z.shape[-1]) if weight is None else weight
    losses, total_weight = [], 0.0
    for row, y in zip(z, target, strict=True):
        if y == ignore_index:
            losses.append(0.0)
            continue
        nl = _neg_log_softmax(row)[y]
        losses.append(weight[y] * (1 - math.exp(-nl)) ** gamma * nl)
        total_weight += weight[y]
    return _reduce(losses, total_weight, reduction)


def ref_multiclass_hinge(z, target, margin, reduction):
    losses = []
    for row, y in zip(z, target, strict=True):
        rival = max(v for k, v in enumerate(row) if k != y)
        losses.append(max(0.0, margin + rival - row[y]))
    return _reduce(losses, len(losses), reduction)


def ref_multi_margin(z, target, p, margin, weight, reduction):
    """PyTorch multi_margin_loss (MultiMarginCriterion.cpp): for i != y, z = margin - x[y] + x[i];
    if z > 0 add w[y] * z^p; divide the sample's sum by C; the mean divides by N."""
    n_classes = z.shape[-1]
    weight = np.ones(n_classes) if weight is None else weight
    losses = []
    for row, y in zip(z, target, strict=True):
        terms = [margin - row[y] + v for k, v in enumerate(row) if k != y]
        losses.append(math.fsum(weight[y] * h**p for h in terms if h > 0) / n_classes)
    return _reduce(losses, len(losses), reduction)


def _data(n=6, c=4, offset=0, ignore=False):
    g = rng(offset)
    z = g.normal(0, 2, (n, c))
    y = g.integers(0, c, n)
    if ignore:
        y[[1, n - 1]] = -100
    w = g.uniform(0.2, 2.0, c)
    t = g.dirichlet(np.ones(c), n)
    return z, y, w, t


def _close(actual, expected, rtol=1e-12):
    np.testing.assert_allclose(np.asarray(actual, float), np.asarray(expected, float), rtol=rtol)


# --- the worked example ---------------------------------------------------------------------------


def test_worked_example_logits_5_4_2():
    z = np.array([[5.0, 4.0, 2.0]])
    with mpmath.workdps(50):
        e = [mpmath.exp(v) for v in (5, 4, 2)]
        p = [float(v / mpmath.fsum(e)) for v in e]
        loss = float(mpmath.log(mpmath.fsum(e)) - 5)
    np.testing.assert_allclose(p, [0.705, 0.259, 0.035], atol=5e-4)
    assert float(C.cross_entropy(z, [0])) == pytest.approx(loss, rel=1e-15)
    _close(C.cross_entropy_grad(z, [0]), [[p[0] - 1, p[1], p[2]]], rtol=1e-14)


# --- semantics: each option against the written-out PyTorch rule --------------------------------


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("ignore", [False, True])
def test_nll_loss_matches_pytorch_rule(reduction, weighted, ignore):
    z, y, w, _ = _data(ignore=ignore)
    logp = z - np.log(np.exp(z).sum(-1, keepdims=True))
    w = w if weighted else None
    got = C.nll_loss(logp, y, weight=w, reduction=reduction)
    _close(got, ref_nll(logp, y, w, -100, reduction))


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("ignore", [False, True])
@pytest.mark.parametrize("eps", [0.0, 0.1, 1.0])
def test_cross_entropy_index_targets_match_pytorch_rule(reduction, weighted, ignore, eps):
    z, y, w, _ = _data(ignore=ignore, offset=1)
    w = w if weighted else None
    got = C.cross_entropy(z, y, weight=w, reduction=reduction, label_smoothing=eps)
    _close(got, ref_cross_entropy_index(z, y, w, -100, reduction, eps))


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("eps", [0.0, 0.2, 1.0])
def test_cross_entropy_probability_targets_match_pytorch_rule(reduction, weighted, eps):
    z, _, w, t = _data(offset=2)
    w = w if weighted else None
    got = C.cross_entropy(z, t, weight=w, reduction=reduction, label_smoothing=eps)
    _close(got, ref_cross_entropy_prob(z, t, w, reduction, eps))


def test_weighted_smoothed_mean_is_not_the_unweighted_mean():
    # guards the rule: both parts of the index-target mean divide by sum w[y], the
    # probability-target mean by N
    z, y, w, _ = _data(offset=3)
    per_sample = C.cross_entropy(z, y, weight=w, reduction="none", label_smoothing=0.3)
    got = C.cross_entropy(z, y, weight=w, label_smoothing=0.3)
    assert got == pytest.approx(per_sample.sum() / w[y].sum(), rel=1e-13)
    assert got != pytest.approx(per_sample.mean(), rel=1e-3)
    onehot = np.eye(z.shape[-1])[y]
    per_sample = C.cross_entropy(z, onehot, weight=w, reduction="none")
    assert C.cross_entropy(z, onehot, weight=w) == pytest.approx(per_sample.mean(), rel=1e-13)


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("gamma", [0.0, 0.5, 2.0])
@pytest.mark.parametrize("weighted", [False, True])
def test_softmax_focal_loss_matches_formula(reduction, gamma, weighted):
    z, y, w, _ = _data(ignore=True, offset=4)
    w = w if weighted else None
    got = C.softmax_focal_loss(z, y, gamma=gamma, weight=w, reduction=reduction)
    _close(got, ref_focal(z, y, gamma, w, -100, reduction))


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("margin", [1.0, 0.25])
def test_multiclass_hinge_matches_formula(reduction, margin):
    z, y, _, _ = _data(offset=5)
    got = C.multiclass_hinge_loss(z, y, margin=margin, reduction=reduction)
    _close(got, ref_multiclass_hinge(z, y, margin, reduction))


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("p", [1, 2])
@pytest.mark.parametrize("weighted", [False, True])
def test_multi_margin_matches_pytorch_rule(reduction, p, weighted):
    z, y, w, _ = _data(offset=6)
    w = w if weighted else None
    got = C.multi_margin_loss(z, y, p=p, margin=1.5, weight=w, reduction=reduction)
    _close(got, ref_multi_margin(z, y, p, 1.5, w, reduction))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("p", [1, 2])
def test_multi_margin_many_rows_against_exact_arithmetic(dtype, p):
    """Enough rows for several blocks; quarter-integer scores (exact ties at the kink):
    values and gradient against exact rational arithmetic."""
    from fractions import Fraction

    g = rng(21)
    n, c = 12000, 6
    z = (g.integers(-8, 9, (n, c)) / 4).astype(dtype)
    y = g.integers(0, c, n)
    w = np.array([0.5, 1.0, 2.0, 1.0, 0.25, 4.0], dtype)
    value, grad = C.multi_margin_loss_value_and_grad(z, y, p=p, weight=w, reduction="none")
    exact_value = np.zeros(n)
    exact_grad = np.zeros((n, c))
    for i in range(n):
        row, t = [Fraction(float(v)) for v in z[i]], int(y[i])
        scale = Fraction(float(w[t])) / c
        gaps = [1 - row[t] + v if j != t else Fraction(0) for j, v in enumerate(row)]
        slopes = [scale * p * gap ** (p - 1) if gap > 0 else Fraction(0) for gap in gaps]
        exact_value[i] = float(scale * sum(gap**p for gap in gaps if gap > 0))
        exact_grad[i] = [float(s) for s in slopes]
        exact_grad[i, t] = float(-sum(slopes))
    eps = np.finfo(dtype).eps
    np.testing.assert_allclose(value, exact_value, rtol=4 * eps, atol=0)
    np.testing.assert_allclose(grad, exact_grad, rtol=4 * eps, atol=0)
    assert (exact_grad == 0).any() and (exact_grad > 0).any()


def test_multi_margin_weight_multiplies_after_the_square():
    # PyTorch's kernel: w[y] * max(0, h)^2, not max(0, w[y] h)^2 as its docs write
    z, y, w = np.array([[0.0, 1.0]]), np.array([0]), np.array([3.0, 1.0])
    assert C.multi_margin_loss(z, y, p=2, weight=w) == pytest.approx(3.0 * 2.0**2 / 2)


def test_all_ignored_mean_is_nan_sum_is_zero_and_gradient_zero():
    z, y, w, _ = _data()
    y[:] = -100
    for f in (C.nll_loss, C.cross_entropy, C.softmax_focal_loss):
        assert np.isnan(f(z, y)) and f(z, y, reduction="sum") == 0
    assert np.isnan(C.cross_entropy(z, y, weight=w, label_smoothing=0.1))
    for g in (C.nll_loss_grad, C.cross_entropy_grad, C.softmax_focal_loss_grad):
        assert np.all(g(z, y) == 0)


@pytest.mark.parametrize("dtype", [np.float64, np.float32, np.float16])
@pytest.mark.parametrize("eps", [0.0, 0.1])
def test_mean_over_zero_total_weight_is_nan_and_so_is_its_gradient(dtype, eps):
    # every counted target in a class of weight 0: the weighted mean divides by 0. Under
    # label smoothing the samples' losses are not 0 (the other classes weigh), yet the mean
    # is NaN, not infinite: in PyTorch 2.13 cross_entropy(x, y, weight=w,
    # label_smoothing=0.1) of these arrays is nan and its autograd gradient NaN in every
    # entry of a counted row and 0 in an ignored one (0/0 times the softmax's derivative);
    # nll_loss's is NaN at the target entry only (it depends on nothing else), 0 elsewhere.
    x = np.array([[0.0, 0, 0], [1, 2, 3], [4, 5, 6]], dtype=dtype)
    y, w = np.array([0, 0, -100]), np.array([0.0, 1, 1], dtype=dtype)
    counted = np.array([True, True, False])
    value, grad = C.cross_entropy_value_and_grad(x, y, weight=w, label_smoothing=eps)
    assert np.isnan(value) and value.dtype == dtype and grad.dtype == dtype
    assert np.all(np.isnan(grad[counted])) and np.all(grad[~counted] == 0)
    assert np.isnan(C.cross_entropy(x, y, weight=w, label_smoothing=eps))
    g = C.cross_entropy_grad(x, y, weight=w, label_smoothing=eps)
    np.testing.assert_array_equal(g, grad)
    focal, focal_grad = C.softmax_focal_loss_value_and_grad(x, y, weight=w)
    assert np.isnan(focal)
    assert np.all(np.isnan(focal_grad[counted])) and np.all(focal_grad[~counted] == 0)
    nll, nll_grad = C.nll_loss_value_and_grad(x, y, weight=w)
    assert np.isnan(nll)
    assert np.all(np.isnan(nll_grad[counted, 0])) and np.all(nll_grad[counted, 1:] == 0)
    assert np.all(nll_grad[~counted] == 0)
    # "sum" is finite: the smoothing terms of the zero-weight samples, as PyTorch sums them
    if eps > 0 and dtype == np.float64:
        total = C.cross_entropy(x, y, weight=w, label_smoothing=eps, reduction="sum")
        ref = ref_cross_entropy_index(x, y, w, -100, "sum", eps)
        assert total == pytest.approx(ref, rel=1e-14)


@pytest.mark.parametrize(("n", "c"), [(8, 1000), (2, 100000)])
def test_cross_entropy_grad_float32_wide_rows_ulp(n, c):
    # p - onehot(y) entry by entry: the row sum divides every entry (7.2 ULP at C = 1000
    # when it was summed in float32)
    gen = np.random.default_rng(9)
    x = (gen.standard_normal((n, c)) * 2).astype(np.float32)
    x[:, 0] += gen.uniform(0, 12, n).astype(np.float32)
    y = np.concatenate([[0], gen.integers(0, c, n - 1)])
    reference = mr.cross_entropy_grad_sum(x, y, digits=30)
    got = C.cross_entropy_grad(x, y, reduction="sum")
    assert got.dtype == np.float32
    # unshifted in float64 and rounded once: half an ULP and a hair (3.8 ULP shifted)
    assert_ulp_close(got, reference, 0.501, "cross_entropy_grad float32", np.float32)


def test_cross_entropy_float32_around_the_limits_of_the_wide_path():
    # rows of the overflow, row-sum floor, subnormal and confident-target limits of the
    # unshifted float64 evaluation (tests/test_activations.py), labelled by every class;
    # rows past a limit are shifted by their maximum instead. Values and gradients.
    from test_activations import float32_rows_around_the_wide_path

    rows = float32_rows_around_the_wide_path()
    x = np.repeat(rows, 4, axis=0)
    y = np.tile(np.arange(4), len(rows))
    value, grad = C.cross_entropy_value_and_grad(x, y, reduction="none")
    assert value.dtype == grad.dtype == np.float32
    assert_ulp_close(value, mr.cross_entropy(x, y), 4.0, "cross_entropy float32", np.float32)
    reference = mr.cross_entropy_grad_sum(x, y, digits=40)
    assert_ulp_close(grad, reference, 4.0, "cross_entropy_grad float32", np.float32)


@pytest.mark.parametrize(
    ("dtype", "z", "weight"),
    [
        # shifted rows: the loss e^-90 and the probability e^-90 are float32 subnormals,
        # their products with w_y = 16 normal numbers
        (np.float32, [0.0, -90.0], [16.0, 1.0]),
        (np.float32, [0.0, -95.0], [2.0**20, 1.0]),
        (np.float32, [0.0, -150.0], [1e30, 1.0]),
        # an unshifted float32 row: e^-740 is a float64 subnormal, its quotient by the row
        # sum (near 2^-860) times w_y = 1e30 a normal float32
        (np.float32, [-596.0, -596.0, -740.0], [1e30, 1.0, 1.0]),
    ],
)
@pytest.mark.parametrize("reduction", ["sum", "none"])
def test_cross_entropy_class_weight_above_1_of_tiny_losses(dtype, z, weight, reduction):
    # a class weight w_y > 1 multiplies the loss and gradient of a sample of class y: a
    # loss or probability below the normal range must keep its digits until multiplied
    z, w, y = np.array([z], dtype), np.array(weight, dtype), np.array([0])
    value, grad = C.cross_entropy_value_and_grad(z, y, weight=w, reduction=reduction)
    with mpmath.workdps(mr.DIGITS):
        w_y = mpmath.mpf(float(w[0]))
        expected_value = mr.cross_entropy(z, y) * w_y
        expected_grad = mr.cross_entropy_grad_sum(z, y) * w_y
    name = f"cross_entropy {np.dtype(dtype).name} weight {weight[0]:g}"
    assert_ulp_close(np.reshape(value, 1), expected_value, 4.0, name, dtype)
    assert_ulp_close(grad, expected_grad, 4.0, name + " gradient", dtype)


@pytest.mark.parametrize("reduction", ["sum", "none"])
def test_cross_entropy_float64_class_weight_above_1_of_a_subnormal_loss(reduction):
    # the documented exception: float64 has no wider dtype, so a loss below its normal range
    # (e^-720 ~ 2e-313) carries an absolute error of a few subnormal ULP (2^-1074), which
    # the weight multiplies: within 4 w_y 2^-1074 of the exact weighted value, not 4 ULP
    z, w, y = np.array([[0.0, -720.0]]), np.array([1e10, 1.0]), np.array([0])
    value, grad = C.cross_entropy_value_and_grad(z, y, weight=w, reduction=reduction)
    bound = 4 * w[0] * 2.0**-1074
    with mpmath.workdps(mr.DIGITS):
        exact_value = mr.cross_entropy(z, y)[0] * mpmath.mpf(w[0])
        exact_grad = mr.cross_entropy_grad_sum(z, y) * mpmath.mpf(w[0])
        assert abs(mpmath.mpf(float(np.reshape(value, 1)[0])) - exact_value) <= bound
        for got, exact in zip(grad.reshape(-1), exact_grad.reshape(-1), strict=True):
            assert abs(mpmath.mpf(float(got)) - exact) <= max(bound, 4 * abs(exact) * 2.0**-52)


@pytest.mark.parametrize(
    ("z", "y", "weight", "reduction"),
    [
        ([[709.0, 709.0]], [0], [1e-30, 1.0], "sum"),
        ([[700.0, 699.0, 0.0]], [0], [1e-20, 1.0, 1.0], "sum"),
        ([[680.0, 679.0, 0.0]], [0], [1e-30, 1.0, 1.0], "sum"),
        ([[709.0, 708.0, 0.0], [1.0, 2.0, 3.0]], [0, 1], [1e-12, 1.0, 1.0], "mean"),
    ],
)
def test_cross_entropy_grad_float32_small_weight_share_of_a_huge_row_sum(z, y, weight, reduction):
    # each entry is (w_y / total) p_k: with logits near 700 and a small weight share the
    # factor (w_y / total) / sum_k e^{z_k} is below float64's normal range, though every
    # entry of the gradient is a normal float32 number
    z, w, y = np.array(z, np.float32), np.array(weight, np.float32), np.array(y)
    grad = C.cross_entropy_grad(z, y, weight=w, reduction=reduction)
    with mpmath.workdps(mr.DIGITS):
        w_y = [mpmath.mpf(float(w[k])) for k in y]
        total = mpmath.fsum(w_y) if reduction == "mean" else 1
        expected = mr.cross_entropy_grad_sum(z, y) * np.array([[v / total] for v in w_y])
    assert_ulp_close(grad, expected, 4.0, f"cross_entropy_grad float32 {reduction}", np.float32)


def test_custom_ignore_index_and_empty_batch():
    z, y, _, _ = _data()
    y2 = y.copy()
    y2[0] = 2
    kept = C.cross_entropy(z[1:], y[1:])
    assert C.cross_entropy(z, np.where(np.arange(len(y)) == 0, 2, y), ignore_index=2) != kept
    mask = y2 != 2
    assert C.cross_entropy(z, y2, ignore_index=2) == pytest.approx(
        C.cross_entropy(z[mask], y2[mask]), rel=1e-14
    )
    assert np.isnan(C.cross_entropy(np.zeros((0, 3)), np.zeros(0, int)))
    assert C.cross_entropy(np.zeros((0, 3)), np.zeros(0, int), reduction="none").shape == (0,)


def test_class_axis_is_last_and_shapes():
    z = rng(7).normal(size=(2, 3, 5))
    y = rng(8).integers(0, 5, (2, 3))
    per = C.cross_entropy(z, y, reduction="none")
    assert per.shape == (2, 3)
    _close(per.ravel(), C.cross_entropy(z.reshape(6, 5), y.ravel(), reduction="none"))
    assert C.cross_entropy_grad(z, y).shape == z.shape
    assert np.ndim(C.cross_entropy([5.0, 4.0, 2.0], 0, reduction="none")) == 0
    one_class = C.cross_entropy(np.zeros((3, 1)), np.zeros(3, int), reduction="none")
    assert np.all(one_class == 0)
    assert np.all(
        C.multiclass_hinge_loss(np.zeros((3, 1)), np.zeros(3, int), reduction="none") == 0
    )


# --- accuracy against mpmath -------------------------------------------------------------------

WORST = mr.WorstUlp()
_ulp = WORST.check


@pytest.fixture(scope="module", autouse=True)
def _print_worst():
    yield
    print("\n" + str(WORST))


def _hard_logits(n=120, c=6, offset=0):
    """Logits at scales up to 1e4, half of the rows confident and correct with losses from
    about 1e-1 down to 1e-320 (target logit above the rest by up to 745)."""
    g = rng(100 + offset)
    scale = g.choice([1.0, 10.0, 100.0, 1e4], (n, 1))
    z = g.normal(size=(n, c)) * scale + g.choice([0.0, 37.3, -1234.5], (n, 1))
    y = g.integers(0, c, n)
    rows = np.arange(0, n, 2)
    others = np.where(np.eye(c, dtype=bool)[y[rows]], -np.inf, z[rows]).max(-1)
    z[rows, y[rows]] = others + g.uniform(0, 745, len(rows)) * g.choice([1e-2, 1], len(rows))
    return z, y


def test_cross_entropy_ulp_index_targets():
    z, y = _hard_logits()
    loss = C.cross_entropy(z, y, reduction="none")
    assert np.min(loss[loss > 0]) < 1e-300 and np.max(loss) > 1e3
    _ulp("cross_entropy", loss, mr.cross_entropy(z, y))


def test_cross_entropy_ulp_one_hot_probability_targets():
    z, y = _hard_logits(offset=1)
    loss = C.cross_entropy(z, np.eye(z.shape[-1])[y], reduction="none")
    _ulp("cross_entropy (probability targets)", loss, mr.cross_entropy(z, y))


def test_cross_entropy_ulp_with_weight_and_smoothing():
    z, y = _hard_logits(offset=2)
    w = rng(3).uniform(0.1, 2.0, z.shape[-1])
    loss = C.cross_entropy(z, y, weight=w, label_smoothing=0.1, reduction="none")
    _ulp("cross_entropy (weight, smoothing)", loss, mr.smoothed_cross_entropy(z, y, w, 0.1))
    t = rng(4).dirichlet(np.full(z.shape[-1], 0.2), len(z))
    loss = C.cross_entropy(z, t, weight=w, label_smoothing=0.1, reduction="none")
    _ulp("cross_entropy (soft targets)", loss, mr.soft_cross_entropy(z, t, w, 0.1))


def test_cross_entropy_ulp_many_classes():
    # the summation over 1000 classes and the compensation of each difference
    z, y = _hard_logits(n=8, c=1000, offset=5)
    _ulp("cross_entropy (C=1000)", C.cross_entropy(z, y, reduction="none"), mr.cross_entropy(z, y))


# The focal loss is computed in float64 on every platform (no long double). As p_y -> 1 it
# behaves like l**(1 + gamma) in l = -log p_y, so the error of -log p_y (up to ~1.5 ULP) is
# multiplied by 1 + gamma; float16 and float32 results are rounded once from float64.


@pytest.mark.parametrize("gamma", [0.5, 1.0, 2.0, 5.0])
def test_softmax_focal_loss_ulp(gamma):
    z, y = _hard_logits(offset=6)
    loss = C.softmax_focal_loss(z, y, gamma=gamma, reduction="none")
    _ulp(
        f"softmax_focal_loss (gamma={gamma})",
        loss,
        mr.softmax_focal_loss(z, y, gamma),
        max_ulp=2.0 + 1.5 * (1 + gamma),
    )
    # the same in float32: within one float32 ULP whatever long double is
    z32 = z.astype(np.float32)
    loss32 = C.softmax_focal_loss(z32, y, gamma=gamma, reduction="none")
    assert loss32.dtype == np.float32
    assert_close_to_exact(loss32, mr.softmax_focal_loss(z32.astype(np.float64), y, gamma), 1.0)


def test_margin_losses_ulp_near_the_kink():
    g = rng(9)
    z = g.normal(size=(80, 4)) * g.choice([1.0, 1e3], (80, 1))
    y = g.integers(0, 4, 80)
    # put the best rival at z_y - margin (+ a few ULP), where the plain sum cancels
    rival = (y + 1) % 4
    z[np.arange(80), rival] = z[np.arange(80), y] - 1.0 + g.integers(-3, 4, 80) * 1e-15
    _ulp(
        "multiclass_hinge_loss",
        C.multiclass_hinge_loss(z, y, reduction="none"),
        mr.multiclass_hinge_loss(z, y, 1.0),
    )
    w = g.uniform(0.5, 2, 4)
    for p in (1, 2):
        _ulp(
            f"multi_margin_loss (p={p})",
            C.multi_margin_loss(z, y, p=p, weight=w, reduction="none"),
            mr.multi_margin_loss(z, y, p, 1.0, w),
        )


def test_textbook_formula_would_fail_the_accuracy_test():
    # the check can fail: log-sum-exp minus z_y rounds a 1e-20 loss to 0
    z = np.array([[50.0, 4.0, 2.0]])
    textbook = np.log(np.exp(z).sum()) - 50.0
    assert textbook == 0.0
    _ulp("cross_entropy", C.cross_entropy(z, [0]), mr.cross_entropy(z, [0])[0])


# --- gradients ------------------------------------------------------------------------------------


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("ignore", [False, True])
@pytest.mark.parametrize("eps", [0.0, 0.3])
def test_cross_entropy_grad_index_targets_fd(reduction, weighted, ignore, eps):
    z, y, w, _ = _data(n=4, c=3, ignore=ignore, offset=10)
    kwargs = {"weight": w if weighted else None, "reduction": reduction, "label_smoothing": eps}
    assert_gradient_matches(C.cross_entropy, C.cross_entropy_grad, [z, y], kwargs=kwargs)


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("eps", [0.0, 0.3])
def test_cross_entropy_grad_probability_targets_fd(reduction, weighted, eps):
    z, _, w, t = _data(n=4, c=3, offset=11)
    kwargs = {"weight": w if weighted else None, "reduction": reduction, "label_smoothing": eps}
    assert_gradient_matches(C.cross_entropy, C.cross_entropy_grad, [z, t], kwargs=kwargs)


def test_cross_entropy_grad_confident_rows_fd():
    # rows that take the compensated path: the target entry is expm1(-loss)
    z = np.array([[9.0, 1.0, -2.0], [0.5, 12.0, 3.0], [30.0, 0.0, 0.0]])
    y = np.array([0, 1, 0])
    assert_gradient_matches(C.cross_entropy, C.cross_entropy_grad, [z, y], rtol=1e-5, atol=1e-12)
    g = C.cross_entropy_grad(z, y, reduction="sum")
    with mpmath.workdps(50):
        exact = -(1 - 1 / (1 + 2 * mpmath.exp(-30)))
    assert g[2, 0] == pytest.approx(float(exact), rel=1e-15)


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("ignore", [False, True])
def test_nll_loss_grad_fd(reduction, weighted, ignore):
    z, y, w, _ = _data(n=4, c=3, ignore=ignore, offset=12)
    kwargs = {"weight": w if weighted else None, "reduction": reduction}
    assert_gradient_matches(C.nll_loss, C.nll_loss_grad, [z, y], kwargs=kwargs)


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("gamma", [0.0, 0.5, 2.0])
@pytest.mark.parametrize("weighted", [False, True])
def test_softmax_focal_grad_fd(reduction, gamma, weighted):
    z, y, w, _ = _data(n=4, c=3, ignore=True, offset=13)
    kwargs = {"gamma": gamma, "weight": w if weighted else None, "reduction": reduction}
    assert_gradient_matches(C.softmax_focal_loss, C.softmax_focal_loss_grad, [z, y], kwargs=kwargs)


def test_softmax_focal_grad_finite_for_small_gamma_when_confident():
    g = C.softmax_focal_loss_grad(np.array([[800.0, 0.0, 0.0]]), [0], gamma=0.5)
    assert np.all(np.isfinite(g)) and np.all(g == 0)
    g = C.softmax_focal_loss_grad(np.array([[40.0, 0.0, 0.0]]), [0], gamma=0.5)
    u = 2 * math.exp(-40)  # 1 - p_y, to first order
    assert g[0, 1] == pytest.approx(math.exp(-40) * u**0.5 * 1.5, rel=1e-10)


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("margin", [1.0, 0.3])
def test_multiclass_hinge_grad_fd(reduction, margin):
    z, y, _, _ = _data(n=5, c=4, offset=14)
    kwargs = {"margin": margin, "reduction": reduction}
    assert_gradient_matches(
        C.multiclass_hinge_loss, C.multiclass_hinge_loss_grad, [z, y], kwargs=kwargs
    )


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("p", [1, 2])
@pytest.mark.parametrize("weighted", [False, True])
def test_multi_margin_grad_fd(reduction, p, weighted):
    z, y, w, _ = _data(n=5, c=4, offset=15)
    kwargs = {"p": p, "margin": 1.5, "weight": w if weighted else None, "reduction": reduction}
    assert_gradient_matches(C.multi_margin_loss, C.multi_margin_loss_grad, [z, y], kwargs=kwargs)


def test_hinge_subgradient_at_the_kink_is_zero():
    # margin + z_1 - z_0 == 0 exactly: PyTorch's multi_margin backward needs h > 0,
    # relu's backward a positive result
    z = np.array([[2.0, 1.0, -5.0]])
    assert np.all(C.multiclass_hinge_loss_grad(z, [0]) == 0)
    assert np.all(C.multi_margin_loss_grad(z, [0]) == 0)
    assert np.all(C.multi_margin_loss_grad(z, [0], p=2) == 0)
    # ties among rivals: the first one gets the gradient, as torch.max(dim)
    assert C.multiclass_hinge_loss_grad([[0.0, 1.0, 1.0]], [0]).tolist() == [[-1.0, 1.0, 0.0]]


def test_closed_forms_against_sympy_at_three_classes():
    z0, z1, z2 = sp.symbols("z0 z1 z2", real=True)
    zs = [z0, z1, z2]
    denominator = sum(sp.exp(v) for v in zs)
    p = [sp.exp(v) / denominator for v in zs]
    values = [np.array([0.3, -1.2, 2.5]), np.array([1.0, 0.0, -0.5])]
    for y in range(3):
        ce = -sp.log(p[y])
        for k in range(3):
            grad = sp.diff(ce, zs[k])
            # the textbook closed form softmax - onehot, and lossutils, agree with SymPy
            assert sp.simplify(grad - (p[k] - (1 if k == y else 0))) == 0
            for v in values:
                assert_matches_sympy(grad, zs, list(v), C.cross_entropy_grad(v[None], [y])[0, k])
        # focal, gamma = 2: the stable form u^g (1 + g p_y l/u) of the gradient factor
        focal = -((1 - p[y]) ** 2) * sp.log(p[y])
        for v in values:
            got = C.softmax_focal_loss_grad(v[None], [y], gamma=2.0)[0]
            for k in range(3):
                assert_matches_sympy(sp.diff(focal, zs[k]), zs, list(v), got[k], rtol=1e-11)
    # label smoothing, eps = 1/5, weights (2, 1, 3), one sample: gradient of the per-sample loss
    eps, w = sp.Rational(1, 5), [2, 1, 3]
    smooth = (1 - eps) * w[1] * -sp.log(p[1]) + eps / 3 * sum(
        -wc * sp.log(pc) for wc, pc in zip(w, p, strict=True)
    )
    v = values[0]
    got = C.cross_entropy_grad(
        v[None], [1], weight=np.array(w, float), label_smoothing=0.2, reduction="sum"
    )[0]
    for k in range(3):
        assert_matches_sympy(sp.diff(smooth, zs[k]), zs, list(v), got[k], rtol=1e-12)


# --- properties ------------------------------------------------------------------------------------

finite = st.floats(-30, 30, allow_nan=False, allow_infinity=False)


@st.composite
def logits_and_labels(draw, max_classes=6):
    c = draw(st.integers(1, max_classes))
    n = draw(st.integers(1, 5))
    z = draw(hnp.arrays(np.float64, (n, c), elements=finite))
    y = draw(hnp.arrays(np.int64, (n,), elements=st.integers(0, c - 1)))
    return z, y


@settings(max_examples=60, deadline=None)
@given(logits_and_labels(), st.floats(-50, 50))
def test_cross_entropy_invariant_to_a_constant_shift(data, shift):
    z, y = data
    a = C.cross_entropy(z, y, reduction="none")
    b = C.cross_entropy(z + shift, y, reduction="none")
    # the shift itself rounds the logits: allow the resulting error, relative to the logits
    np.testing.assert_allclose(b, a, rtol=1e-9, atol=1e-12 * (1 + np.abs(z).max() + abs(shift)))


@settings(max_examples=60, deadline=None)
@given(logits_and_labels())
def test_focal_with_gamma_zero_is_cross_entropy_and_smoothing_zero_is_plain(data):
    z, y = data
    ce = C.cross_entropy(z, y, reduction="none")
    # the focal loss is evaluated one precision up, so the two agree to rounding
    np.testing.assert_allclose(
        C.softmax_focal_loss(z, y, gamma=0.0, reduction="none"), ce, rtol=4e-16, atol=1e-300
    )
    # each probability exp(z_j - m) inherits the rounding of z_j - m: ~|z| eps relative
    np.testing.assert_allclose(
        C.softmax_focal_loss_grad(z, y, gamma=0.0),
        C.cross_entropy_grad(z, y),
        rtol=4e-16 * (1 + 2 * np.abs(z).max()),
        atol=1e-300,
    )
    np.testing.assert_array_equal(C.cross_entropy(z, y, label_smoothing=0.0, reduction="none"), ce)
    expected = mr.cross_entropy(z, y).astype(float)
    np.testing.assert_allclose(ce, expected, rtol=1e-14, atol=1e-300)


@settings(max_examples=60, deadline=None)
@given(logits_and_labels(), st.sampled_from(REDUCTIONS), st.floats(0, 1))
def test_index_targets_equal_their_one_hot_probabilities(data, reduction, eps):
    z, y = data
    onehot = np.eye(z.shape[-1])[y]
    w = np.linspace(0.5, 1.5, z.shape[-1])
    if reduction == "mean":  # the index mean divides by sum w[y], the probability mean by N
        w = np.ones(z.shape[-1])
    a = C.cross_entropy(z, y, weight=w, reduction=reduction, label_smoothing=eps)
    b = C.cross_entropy(z, onehot, weight=w, reduction=reduction, label_smoothing=eps)
    np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-300)
    ga = C.cross_entropy_grad(z, y, weight=w, reduction=reduction, label_smoothing=eps)
    gb = C.cross_entropy_grad(z, onehot, weight=w, reduction=reduction, label_smoothing=eps)
    np.testing.assert_allclose(ga, gb, rtol=1e-9, atol=1e-15)


@settings(max_examples=40, deadline=None)
@given(logits_and_labels(), st.sampled_from(REDUCTIONS))
def test_float32_in_float32_out(data, reduction):
    z, y = data
    z32 = z.astype(np.float32)
    t32 = np.eye(z.shape[-1], dtype=np.float32)[y]
    w32 = np.ones(z.shape[-1], np.float32)
    calls = [
        (C.nll_loss, C.nll_loss_grad, (z32, y), {"weight": w32}),
        (C.cross_entropy, C.cross_entropy_grad, (z32, y), {"label_smoothing": 0.1}),
        (C.cross_entropy, C.cross_entropy_grad, (z32, t32), {"weight": w32}),
        (C.softmax_focal_loss, C.softmax_focal_loss_grad, (z32, y), {}),
        (C.multiclass_hinge_loss, C.multiclass_hinge_loss_grad, (z32, y), {}),
        (C.multi_margin_loss, C.multi_margin_loss_grad, (z32, y), {"p": 2, "weight": w32}),
    ]
    for f, g, args, kwargs in calls:
        assert f(*args, reduction=reduction, **kwargs).dtype == np.float32, f.__name__
        assert g(*args, reduction=reduction, **kwargs).dtype == np.float32, g.__name__
    assert C.cross_entropy(z32, y, weight=np.ones(z.shape[-1])).dtype == np.float64


# --- NaN, immutability, bad input -------------------------------------------------------------------


def test_nan_propagates_to_its_sample():
    z, y, _, t = _data(n=3, c=3)
    z[1, 2] = np.nan
    for f in (C.cross_entropy, C.softmax_focal_loss, C.multiclass_hinge_loss, C.multi_margin_loss):
        per = f(z, y, reduction="none")
        assert np.isnan(per[1]) and np.all(np.isfinite(per[[0, 2]])), f.__name__
        assert np.isnan(f(z, y))
    assert np.isnan(C.cross_entropy(z, t, reduction="none")[1])
    assert np.all(np.isnan(C.cross_entropy_grad(z, y, reduction="none")[1]))


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
@pytest.mark.parametrize("p", [1, 2])
def test_multi_margin_nan_term_gives_nan_where_it_depends(p, dtype):
    # a NaN gap makes its sample's loss NaN; the gradient is NaN in the entries that term
    # depends on (its rival and the target), as multiclass_hinge_loss_grad and
    # hinge_loss_grad are NaN where their term is; the other terms keep their slopes
    # w_y (1 or 2 h_k) / C, here h = 1.5 and 1.25 (margin 1, C = 4); a NaN target score
    # makes every term NaN. For p = 1 the slope of a NaN hinge is NaN as for p = 2,
    # not the 1 (or 0) of a finite one.
    nan = np.nan
    z = np.array([[0.0, nan, 0.5, 0.25], [nan, 0.0, 0.5, 0.25], [0.0, -3.0, 0.5, 0.25]], dtype)
    y = np.array([0, 0, 0])
    per = C.multi_margin_loss(z, y, p=p, reduction="none")
    assert np.isnan(per[:2]).all() and np.isfinite(per[2])
    assert np.isnan(C.multi_margin_loss(z, y, p=p))
    g = C.multi_margin_loss_grad(z, y, p=p, reduction="sum")
    slopes = [0.25, 0.25] if p == 1 else [0.75, 0.625]
    assert np.isnan(g[0, :2]).all() and g[0, 2:].tolist() == slopes
    assert np.isnan(g[1]).all()
    assert g[2].tolist() == [-sum(slopes), 0.0, *slopes]
    value, grad = C.multi_margin_loss_value_and_grad(z, y, p=p, reduction="sum")
    np.testing.assert_array_equal(grad, g)
    assert np.isnan(value)


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
def test_infinite_class_weight_gives_the_same_infinities_in_every_dtype(dtype):
    # the weight w_0 = inf multiplies p - e_y, whose entries are exactly nonzero for every
    # finite logit (p_k = e^-203 / S underflows float32, e^-803 / S float64): the gradient
    # is -inf at the target and +inf elsewhere (inf * 0 = NaN only where p_k is exactly 0,
    # a logit of -inf); a mean over an infinite total weight is inf / inf = NaN, and so is
    # each entry of that sample, 0 for the others (whose share w / inf is 0), as nll_loss
    z = np.array([[0.0, -200.0, 3.0], [0.0, -800.0, 3.0], [30.0, -200.0, 0.0], [1.0, 2.0, -9.0]])
    if dtype == np.float16:
        z = np.array([[0.0, -20.0, 3.0], [0.0, -60000.0, 3.0], [9.0, -20.0, 0.0], [1, 2, -9]])
    z = z.astype(dtype)
    y = np.array([0, 0, 0, 1])
    w = np.array([np.inf, 1.0, 1.0], dtype)
    expected = [[-np.inf, np.inf, np.inf]] * 3
    for grad in (C.cross_entropy_grad, C.softmax_focal_loss_grad):
        for reduction in ("sum", "none"):
            g = grad(z, y, weight=w, reduction=reduction)
            assert g.dtype == dtype and g[:3].tolist() == expected, (grad.__name__, reduction)
            assert np.all(np.isfinite(g[3]))
        g = grad(z, y, weight=w, reduction="mean")
        assert np.isnan(g[:3]).all() and np.all(g[3] == 0)
    logp = L.log_softmax(z)
    for loss in (C.cross_entropy, C.softmax_focal_loss):
        per = loss(z, y, weight=w, reduction="none")
        assert per[:3].tolist() == [np.inf] * 3 and np.isfinite(per[3])
        assert np.isnan(loss(z, y, weight=w)) and np.isnan(C.nll_loss(logp, y, weight=w))
    assert C.nll_loss(logp, y, weight=w, reduction="none")[:3].tolist() == [np.inf] * 3


def test_minus_infinite_logits_are_probability_zero():
    z = np.array([[-np.inf, 0.0, 1.0], [-np.inf, 50.0, 0.0]])
    _ulp(
        "cross_entropy",
        C.cross_entropy(z, [2, 1], reduction="none"),
        mr.cross_entropy(np.array([[0.0, 1.0], [50.0, 0.0]]), [1, 0]),
    )
    assert C.cross_entropy(z, [0, 0], reduction="none").tolist() == [np.inf, np.inf]
    g = C.cross_entropy_grad(z, [2, 1])
    assert np.all(np.isfinite(g)) and np.all(g[:, 0] == 0)


def test_inputs_are_never_modified():
    z, y, w, t = _data(ignore=True)
    z[0, 0] = 50.0  # a confident row: the compensated path
    copies = [a.copy() for a in (z, y, w, t)]
    for f in (C.cross_entropy, C.cross_entropy_grad):
        f(z, y, weight=w, label_smoothing=0.1)
        f(z, t, weight=w, label_smoothing=0.1)
    y_valid = np.abs(y) % z.shape[-1]
    for f in (C.nll_loss, C.nll_loss_grad, C.softmax_focal_loss, C.softmax_focal_loss_grad):
        f(z, y, weight=w)
    for f in (C.multiclass_hinge_loss, C.multiclass_hinge_loss_grad):
        f(z, y_valid)
    for f in (C.multi_margin_loss, C.multi_margin_loss_grad):
        f(z, y_valid, weight=w)
    for a, b in zip((z, y, w, t), copies, strict=True):
        np.testing.assert_array_equal(a, b)


Z, Y = np.zeros((2, 3)), np.array([0, 2])


@pytest.mark.parametrize(
    ("call", "name"),
    [
        (lambda: C.cross_entropy(Z, Y, reduction="avg"), "reduction"),
        (lambda: C.nll_loss(Z, np.array([0, 3])), "target"),
        (lambda: C.cross_entropy(Z, np.array([0, -1])), "target"),
        (lambda: C.nll_loss(Z, np.array([0.0, 2.0])), "target"),
        (lambda: C.cross_entropy(np.zeros((2, 0)), np.array([0, 0])), "input"),
        (lambda: C.cross_entropy(Z, np.full((2, 3), 1.5)), "target"),
        (lambda: C.cross_entropy(Z, np.full((2, 3), -0.1)), "target"),
        (lambda: C.cross_entropy(Z, Y, label_smoothing=1.5), "label_smoothing"),
        (lambda: C.cross_entropy(Z, Y, label_smoothing=-0.1), "label_smoothing"),
        (lambda: C.softmax_focal_loss(Z, Y, gamma=-1.0), "gamma"),
        (lambda: C.softmax_focal_loss_grad(Z, Y, gamma=-1.0), "gamma"),
        (lambda: C.cross_entropy(Z, Y, weight=np.ones(2)), "weight"),
        (lambda: C.nll_loss(Z, Y, weight=np.ones(4)), "weight"),
        (lambda: C.multi_margin_loss(Z, Y, weight=np.ones(2)), "weight"),
        (lambda: C.multi_margin_loss(Z, Y, p=3), "p"),
        (lambda: C.multi_margin_loss_grad(Z, Y, p=1.5), "p"),
        (lambda: C.cross_entropy(Z, np.array([0, 1, 2])), "target"),
        (lambda: C.cross_entropy(Z, np.zeros((2, 4))), "target"),
        (lambda: C.cross_entropy(Z, np.array([0.0, 1.0])), "target"),
        (lambda: C.nll_loss(Z, np.array([[0, 1]])), "target"),
        (lambda: C.multiclass_hinge_loss(Z, np.array([0, 3])), "target"),
        (lambda: C.multiclass_hinge_loss(Z, Y, margin=np.inf), "margin"),
        (lambda: C.cross_entropy_grad(Z, Y, reduction=None), "reduction"),
        (lambda: C.multi_margin_loss(Z, np.array([0, -100])), "target"),
    ],
)
def test_bad_input_raises_value_error_naming_the_argument(call, name):
    with pytest.raises(ValueError, match=name):
        call()


# --- value and gradient in one pass ----------------------------------------------------------------


def _identical(actual, expected, what):
    assert type(actual) is type(expected), what
    np.testing.assert_array_equal(actual, expected, err_msg=what, strict=True)


def _hard_rows(dtype):
    """Random rows and hard ones: confident right and wrong, ties, +-inf, NaN, -1e4."""
    z = rng(90).normal(size=(12, 5)) * 4
    z[0] = [40.0, 0.0, -3.0, 1.0, 2.0]
    z[1] = [0.1, 70.3, -3.5, 2.0, 0.0]
    z[2] = [-2.0, -2.0, -2.0, -2.0, -2.0]
    z[3] = [np.inf, 0.0, 1.0, np.inf, -1.0]
    z[4] = [-np.inf, 0.0, 1.0, 2.0, -1e4]
    z[5] = [np.nan, 0.0, 1.0, 2.0, 3.0]
    return z.astype(dtype)


VALUE_AND_GRAD_CASES = [
    ("nll_loss", lambda z, y, w, q: ((L.log_softmax(z), y), {"weight": w, "ignore_index": 4})),
    ("cross_entropy", lambda z, y, w, q: ((z, y), {})),
    ("cross_entropy", lambda z, y, w, q: ((z, y), {"weight": w, "ignore_index": 4})),
    ("cross_entropy", lambda z, y, w, q: ((z, y), {"weight": w, "label_smoothing": 0.2})),
    ("cross_entropy", lambda z, y, w, q: ((z, q), {})),
    ("cross_entropy", lambda z, y, w, q: ((z, q), {"weight": w, "label_smoothing": 0.1})),
    ("softmax_focal_loss", lambda z, y, w, q: ((z, y), {"gamma": 0.5, "weight": w})),
    ("softmax_focal_loss", lambda z, y, w, q: ((z, y), {"gamma": 2.0, "ignore_index": 4})),
    ("multiclass_hinge_loss", lambda z, y, w, q: ((z, y), {"margin": 0.5})),
    ("multi_margin_loss", lambda z, y, w, q: ((z, y), {"p": 1, "weight": w})),
    ("multi_margin_loss", lambda z, y, w, q: ((z, y), {"p": 2, "margin": 2.0})),
]


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
@pytest.mark.parametrize(("name", "make"), VALUE_AND_GRAD_CASES)
def test_value_and_grad_is_bit_for_bit_the_two_calls(name, make, dtype):
    # also with weights, smoothing, probability targets, ignored samples and infinite rows
    z = _hard_rows(dtype)
    y = np.arange(len(z)) % 5
    w = np.array([0.5, 2.0, 0.0, 1.0, 3.0], dtype)
    q = L.softmax(rng(91).normal(size=z.shape)).astype(dtype)
    args, kwargs = make(z, y, w, q)
    loss, grad = getattr(C, name), getattr(C, name + "_grad")
    both = getattr(C, name + "_value_and_grad")
    for reduction in REDUCTIONS:
        what = f"{name} {kwargs} {reduction}"
        value, gradient = both(*args, **kwargs, reduction=reduction)
        _identical(value, loss(*args, **kwargs, reduction=reduction), what)
        _identical(gradient, grad(*args, **kwargs, reduction=reduction), what)


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
@pytest.mark.parametrize("reduction", ["none", "sum", "mean"])
def test_margin_losses_of_column_major_input_are_those_of_row_major_input(dtype, reduction):
    # the row blocks address each row's target (labels) by flat position: a column-major
    # array once had its target's own term counted
    gen = np.random.default_rng(51)
    x = gen.normal(size=(300, 9)).astype(dtype)
    y = gen.integers(0, 9, 300)
    labels = np.full((300, 9), -1)
    labels[:, :3] = np.argsort(gen.random((300, 9)), axis=1)[:, :3]
    calls = [
        (L.multi_margin_loss_value_and_grad, y),
        (L.multilabel_margin_loss_value_and_grad, labels),
    ]
    for call, target in calls:
        value, grad = call(x, target, reduction=reduction)
        value_f, grad_f = call(np.asfortranarray(x), target, reduction=reduction)
        np.testing.assert_array_equal(value_f, value)
        np.testing.assert_array_equal(grad_f, grad)
    assert (
        L.multi_margin_loss(np.asfortranarray(x[:2].astype(np.float64)), y[:2], reduction="none")[0]
        == (L.multi_margin_loss(x[:1].astype(np.float64), y[:1], reduction="none")[0])
    )


@pytest.mark.parametrize("loss", [L.cross_entropy, L.softmax_focal_loss])
def test_float32_weighted_loss_beyond_float32_is_rounded_only_by_the_reduction(loss):
    # -log p_y = 3e38 times the weight 2 is beyond float32, its weighted mean (3e38) is not;
    # the per-sample losses stay in float64 until the reduction rounds (no overflow warning)
    x, w = np.array([[-3e38, 0, 0]], np.float32), np.array([2, 1, 1], np.float32)
    assert loss(x, [0], weight=w, reduction="mean") == np.float32(3e38)
    assert loss(x, [0], weight=w, reduction="none")[0] == np.inf


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n", [2, 9])
def test_nll_loss_weighted_sum_of_huge_entries_of_both_signs(dtype, n):
    # -w x_y with a weight of 3 at x_y = -+0.9 and +-0.8 of the largest float: each product
    # overflows (inf and -inf), their exact sum does not (NaN before); n = 9 ignores a sample
    # and masks one by a zero weight, whose entries are infinite
    top = float(np.finfo(dtype).max)
    x = np.zeros((n, 3), dtype)
    x[0::2, 0], x[1::2, 0] = dtype(-0.9 * top), dtype(0.8 * top)
    y = np.zeros(n, int)
    w = np.array([3.0, 1.0, 0.0], dtype)
    if n > 2:
        x[2, 1], y[2] = -np.inf, -100
        x[3, 2], y[3] = -np.inf, 2
    with mpmath.workdps(mr.DIGITS):
        terms = [-mpmath.mpf(float(w[c])) * float(x[i, c]) for i, c in enumerate(y) if c == 0]
        exact = mpmath.fsum(terms)
    value = C.nll_loss(x, y, weight=w, reduction="sum")
    assert value.dtype == dtype
    assert_close_to_exact(np.reshape(value, 1), [exact], 4.0, f"nll_loss {dtype.__name__}")
    assert np.array_equal(value, C.nll_loss_value_and_grad(x, y, w, reduction="sum")[0])


@pytest.mark.parametrize(
    "dtype, huge",
    [
        (np.float32, -1e37),  # nothing overflows: the plain weighted sum
        (np.float32, -3e38),  # 2 x -3e38 overflows float32: the mean from the factors
        (np.float64, -1e306),
        (np.float64, -1e308),  # the products and their sum overflow float64
    ],
)
@pytest.mark.parametrize("weighted", [False, True])
def test_nll_loss_mean_of_huge_log_probabilities_overflows_only_if_the_mean_does(
    dtype, huge, weighted
):
    # issue 8: the weighted sum overflowed before its division by the weight total. The
    # ignored sample's -inf and the zero-weight class's -inf are absent from the mean.
    x = np.array(
        [
            [huge, 0, 0, 0],
            [0, huge / 2, 0, 0],
            [0, 0, huge, 0],
            [-np.inf, 0, 0, 0],
            [0] * 3 + [-np.inf],
        ],
        dtype,
    )
    y = np.array([0, 1, 2, -100, 3] if weighted else [0, 1, 2, -100, 0])
    w = np.array([2, 0.5, 3, 0], dtype) if weighted else np.ones(4, dtype)
    with mpmath.workdps(mr.DIGITS):
        counted = [i for i in range(len(y)) if y[i] != -100 and w[y[i]] != 0]
        weights = [mpmath.mpf(float(w[y[i]])) for i in counted]
        terms = [
            -wi * mpmath.mpf(float(x[i, y[i]])) for wi, i in zip(weights, counted, strict=True)
        ]
        exact = mpmath.fsum(terms) / mpmath.fsum(weights)
    value = C.nll_loss(x, y, weight=w if weighted else None)
    assert value.dtype == dtype
    assert_close_to_exact(np.reshape(value, 1), [exact], 4.0, f"nll_loss {dtype.__name__}")
    pair, grad = C.nll_loss_value_and_grad(x, y, weight=w if weighted else None)
    assert pair == value and np.all(np.isfinite(grad))
    # the sum is beyond the dtype where the exact sum is
    total = C.nll_loss(x, y, weight=w if weighted else None, reduction="sum")
    assert np.isinf(total) == (mpmath.fsum(terms) > np.finfo(dtype).max)


@pytest.mark.parametrize("name", ["multi_margin_loss", "multiclass_hinge_loss"])
def test_margin_loss_target_error_names_only_their_own_arguments(name):
    # they have no ignore_index: the message must not offer one
    with pytest.raises(ValueError) as info:
        getattr(C, name)(np.zeros((1, 3)), [3])
    assert str(info.value) == "target must hold class indices in [0, 2]; got 3"
