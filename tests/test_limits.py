"""Scalar (0-d) input and the limits at infinite logits, with their right values.

The references come from mpmath or from the limit of the formula (derived in the
comment of each case), never from lossutils itself.
"""

from __future__ import annotations

import mpmath
import numpy as np
import pytest

import lossutils as L
from lossutils.testing import assert_close_to_exact

inf = np.inf
REDUCTIONS = ["mean", "sum", "none"]
# 0-d arrays, NumPy scalars of both dtypes and Python floats
SCALARS = [np.array, np.float64, np.float32, float]


def _sig(x):
    return mpmath.mpf(1) / (1 + mpmath.exp(-mpmath.mpf(x)))


def _check(got, exact, dtype):
    got = np.asarray(got)
    assert got.shape == ()
    assert got.dtype == dtype
    tol = 4 * np.finfo(dtype).eps
    assert abs(float(got) - float(exact)) <= tol * max(abs(float(exact)), 1e-300)


# --- 0-d input -----------------------------------------------------------------------------------

# (function, arguments, exact loss, exact gradients: one per differentiable argument)
_SIG1 = _sig(1)
_DPO_MARGIN = mpmath.mpf("0.1")  # beta * ((1 - 0) - (0 - 0))
SCALAR_CASES = [
    # log(1 + e^-1); d/dx = sigma(1) - 1
    (L.binary_cross_entropy_with_logits, (1.0, 1.0), -mpmath.log(_SIG1), [_SIG1 - 1]),
    # alpha (1 - p)^2 (-log p) with p = sigma(1); d/dx of it
    (
        L.sigmoid_focal_loss,
        (1.0, 1.0),
        mpmath.mpf("0.25") * (1 - _SIG1) ** 2 * -mpmath.log(_SIG1),
        [mpmath.diff(lambda x: mpmath.mpf("0.25") * (1 - _sig(x)) ** 2 * -mpmath.log(_sig(x)), 1)],
    ),
    # -log sigma(1 - 0); d/d chosen = sigma(1) - 1, d/d rejected = 1 - sigma(1)
    (L.bradley_terry_loss, (1.0, 0.0), -mpmath.log(_SIG1), [_SIG1 - 1, 1 - _SIG1]),
    # -log sigma(0.1); d/d policy chosen = 0.1 (sigma(0.1) - 1), d/d policy rejected = -that
    (
        L.dpo_loss,
        (1.0, 0.0, 0.0, 0.0),
        -mpmath.log(_sig(_DPO_MARGIN)),
        [_DPO_MARGIN * (_sig(_DPO_MARGIN) - 1), -_DPO_MARGIN * (_sig(_DPO_MARGIN) - 1)],
    ),
]


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("convert", SCALARS, ids=lambda c: c.__name__)
@pytest.mark.parametrize("case", SCALAR_CASES, ids=lambda c: c[0].__name__)
def test_zero_dimensional_input(case, convert, reduction):
    f, args, loss, grads = case
    grad_f = getattr(L, f.__name__ + "_grad")
    dtype = np.float32 if convert is np.float32 else np.float64
    inputs = [convert(a) for a in args]
    _check(f(*inputs, reduction=reduction), loss, dtype)
    got = grad_f(*inputs, reduction=reduction)
    got = got if isinstance(got, tuple) else (got,)
    assert len(got) == len(grads)
    for g, exact in zip(got, grads, strict=True):
        _check(g, exact, dtype)


# --- +inf on the class axis ----------------------------------------------------------------------

DTYPES = [np.float16, np.float32, np.float64]
# softmax([inf, 0, 1]) -> [1, 0, 0]: the +inf entry takes all the mass
ROW = [[inf, 0.0, 1.0]]


def _close(got, expected, dtype):
    got = np.asarray(got)
    assert got.dtype == dtype
    np.testing.assert_allclose(got, expected, rtol=4 * np.finfo(dtype).eps, atol=0)


@pytest.mark.parametrize("dtype", DTYPES)
def test_softmax_of_an_infinite_logit(dtype):
    x = np.array(ROW, dtype)
    _close(L.softmax(x), [[1, 0, 0]], dtype)
    _close(L.log_softmax(x), [[0, -inf, -inf]], dtype)
    _close(L.softmax(x.T, axis=0), [[1], [0], [0]], dtype)
    _close(L.logsumexp(x), [inf], dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_several_infinite_logits_share_the_mass(dtype):
    # defined as the limit with the +inf entries growing together: uniform over them
    x = np.array([[inf, 0.0, inf, -inf], [inf, inf, inf, 5.0]], dtype)
    _close(L.softmax(x), [[0.5, 0, 0.5, 0], [1 / 3, 1 / 3, 1 / 3, 0]], dtype)
    lg2, lg3 = float(mpmath.log(2)), float(mpmath.log(3))
    _close(L.log_softmax(x), [[-lg2, -inf, -lg2, -inf], [-lg3, -lg3, -lg3, -inf]], dtype)
    _close(L.cross_entropy(x, np.array([0, 1]), reduction="none"), [lg2, lg3], dtype)
    _close(L.cross_entropy_grad(x, np.array([0, 1]), reduction="none"),
           [[-0.5, 0, 0.5, 0], [1 / 3, -2 / 3, 1 / 3, 0]], dtype)  # fmt: skip


@pytest.mark.parametrize("dtype", DTYPES)
def test_infinite_logit_with_nan_stays_nan(dtype):
    x = np.array([[inf, np.nan, 0.0]], dtype)
    assert np.isnan(L.softmax(x)).all()
    assert np.isnan(L.log_softmax(x)).all()
    assert np.isnan(L.cross_entropy(x, np.array([0])))
    assert np.isnan(L.cross_entropy_grad(x, np.array([0]))).all()


# (target class, loss, gradient) in the limit p = [1, 0, 0]: -log p_t and p - onehot(t)
CE_LIMITS = [(0, 0.0, [0, 0, 0]), (1, inf, [1, -1, 0]), (2, inf, [1, 0, -1])]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", CE_LIMITS)
def test_cross_entropy_of_an_infinite_logit(case, dtype):
    t, loss, grad = case
    x = np.array(ROW, dtype)
    index, prob = np.array([t]), np.eye(3, dtype=dtype)[[t]]
    for target in (index, prob):
        _close(L.cross_entropy(x, target), loss, dtype)
        _close(L.cross_entropy_grad(x, target), [grad], dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("t", [0, 1])
def test_smoothed_cross_entropy_of_an_infinite_logit(t, dtype):
    # q = 0.9 onehot(t) + 0.1 / 3 puts mass on the classes of log p = -inf: the loss is inf;
    # the gradient p - q tends to [1, 0, 0] - q
    x = np.array(ROW, dtype)
    q = 0.9 * np.eye(3)[t] + 0.1 / 3
    expected = [[1 - q[0], -q[1], -q[2]]]
    for target in (np.array([t]), np.eye(3, dtype=dtype)[[t]]):
        _close(L.cross_entropy(x, target, label_smoothing=0.1), inf, dtype)
        got = L.cross_entropy_grad(x, target, label_smoothing=0.1)
        assert got.dtype == dtype
        np.testing.assert_allclose(got, expected, rtol=8 * np.finfo(dtype).eps)


@pytest.mark.parametrize("dtype", DTYPES)
def test_focal_loss_of_an_infinite_logit(dtype):
    x = np.array([[inf, 0.0]], dtype)
    # p = [1, 0]: (1 - p_y)^gamma (-log p_y) is 0 for y = 0 and inf for y = 1
    _close(L.softmax_focal_loss(x, np.array([0])), 0.0, dtype)
    _close(L.softmax_focal_loss_grad(x, np.array([0])), [[0, 0]], dtype)
    _close(L.softmax_focal_loss(x, np.array([1])), inf, dtype)
    # u = 1 - p_y -> 1 and p_y log p_y -> 0: the gradient tends to p - onehot(1)
    _close(L.softmax_focal_loss_grad(x, np.array([1])), [[1, -1]], dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("p", [1, 2])
def test_multi_margin_loss_of_an_infinite_logit(p, dtype):
    x = np.array(ROW, dtype)
    # the target's score beats every rival by more than the margin: no active term
    _close(L.multi_margin_loss(x, np.array([0]), p=p), 0.0, dtype)
    _close(L.multi_margin_loss_grad(x, np.array([0]), p=p), [[0, 0, 0]], dtype)
    # a rival of score +inf: an infinite hinge
    _close(L.multi_margin_loss(x, np.array([1]), p=p), inf, dtype)
    assert np.isnan(L.multi_margin_loss(np.array([[np.nan, 0.0]], dtype), np.array([0]), p=p))


# --- masking -------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES)
def test_zero_weight_masks_an_infinite_element(dtype):
    x = np.array([[-inf, 0.0]], dtype)
    w = np.array([0.0, 1.0], dtype)
    _close(L.cross_entropy(x, np.array([0]), weight=w, reduction="none"), [0], dtype)
    _close(L.cross_entropy_grad(x, np.array([0]), weight=w, reduction="sum"), [[0, 0]], dtype)
    _close(L.softmax_focal_loss(x, np.array([0]), weight=w, reduction="none"), [0], dtype)
    _close(L.softmax_focal_loss_grad(x, np.array([0]), weight=w, reduction="sum"), [[0, 0]], dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("row", [[inf, 0.0], [-inf, 0.0], [inf, -inf]])
def test_ignored_target_masks_an_infinite_row(row, dtype):
    x = np.array([row, [0.0, 1.0]], dtype)
    y = np.array([-100, 0])
    s1 = float(_sig(1))  # softmax([0, 1]) = [1 - sigma(1), sigma(1)]
    _close(L.cross_entropy(x, y, reduction="none"), [0, -float(mpmath.log(1 - _sig(1)))], dtype)
    grad = L.cross_entropy_grad(x, y)
    _close(grad[0], [0, 0], dtype)
    np.testing.assert_allclose(grad[1], [-s1, s1], rtol=4 * np.finfo(dtype).eps)
    focal = L.softmax_focal_loss_grad(x, y)
    _close(focal[0], [0, 0], dtype)
    assert np.isfinite(focal[1]).all()


# --- embeddings with an infinite entry -----------------------------------------------------------

# PyTorch's eps of the cosine, float32's 1e-12: cos([inf, 0], [1, 0]) -> 1 / sqrt(1 + eps)
# (the eps of the infinite row vanishes in the limit), so the loss for t = 1 is
# 1 - 1 / sqrt(1 + eps) (about what [1e4, 0] gives: eps / 2)
with mpmath.workdps(50):
    _COS_EPS = mpmath.mpf(float(np.float32(1e-12)))
    _ONE_MINUS_COS = float(1 - 1 / mpmath.sqrt(1 + _COS_EPS))
    # d/dx2 of -cos at x2 = [1, 0]: -eps / (1 + eps)^(3/2) along the first axis
    _D_X2 = float(-_COS_EPS / (1 + _COS_EPS) ** mpmath.mpf(1.5))
    # t = -1, margin 0: max(0, cos) with cos([inf, 0], [1, 1]) -> 1 / sqrt(2 + eps)
    _COS_DIAGONAL = float(1 / mpmath.sqrt(2 + _COS_EPS))


@pytest.mark.parametrize("dtype", DTYPES)
def test_cosine_embedding_loss_of_an_infinite_row(dtype):
    a, b = np.array([[inf, 0.0]], dtype), np.array([[1.0, 0.0]], dtype)
    got = L.cosine_embedding_loss(a, b, np.array([1]), reduction="none")
    _close(got, [np.array(_ONE_MINUS_COS, dtype)], dtype)
    d1, d2 = L.cosine_embedding_loss_grad(a, b, np.array([1]), reduction="none")
    _close(d1, [[0, 0]], dtype)  # the gradient w.r.t. an infinite row tends to 0
    # the largest term of the gradient is 1: accurate to a few ULP of it
    np.testing.assert_allclose(d2, [[_D_X2, 0]], atol=4 * np.finfo(dtype).eps)
    c = np.array([[1.0, 1.0]], dtype)
    got = L.cosine_embedding_loss(a, c, np.array([-1]), reduction="none")
    _close(got, [np.array(_COS_DIAGONAL, dtype)], dtype)
    # the signs of the infinite entries give the direction; a NaN in the row propagates
    got = L.cosine_embedding_loss(np.array([[inf, -inf]], dtype), c, np.array([1]))
    _close(got, dtype(1.0), dtype)
    nan_row = np.array([[inf, np.nan]], dtype)
    assert np.isnan(L.cosine_embedding_loss(nan_row, b, np.array([1])))
    assert all(np.isnan(g).all() for g in L.cosine_embedding_loss_grad(nan_row, b, np.array([1])))


@pytest.mark.parametrize("dtype", DTYPES)
def test_nt_xent_loss_of_an_infinite_view(dtype):
    # [inf, 0] tends to the direction [1, 0]: the views are [1, 0], [0, 1] twice, and each
    # row's loss is -2 + log(e^2 + 2) = log(1 + 2 e^-2) at temperature 0.5
    z1, z2 = np.array([[inf, 0.0], [0.0, 1.0]], dtype), np.array([[1.0, 0.0], [0.0, 1.0]], dtype)
    exact = float(mpmath.log(1 + 2 * mpmath.exp(-2)))
    _close(L.nt_xent_loss(z1, z2), dtype(exact), dtype)
    d1, d2 = L.nt_xent_loss_grad(z1, z2)
    finite = L.nt_xent_loss_grad(np.array([[1.0, 0.0], [0.0, 1.0]], dtype), z2)
    np.testing.assert_array_equal(d1[0], [0, 0])  # w.r.t. the infinite view: the limit 0
    np.testing.assert_array_equal(d1[1], finite[0][1])
    np.testing.assert_array_equal(d2, finite[1])
    assert np.isnan(L.nt_xent_loss(np.array([[inf, np.nan], [0.0, 1.0]], dtype), z2))


@pytest.mark.parametrize("dtype", DTYPES)
def test_contrastive_loss_of_an_infinite_distance(dtype):
    x1, x2 = np.array([[inf, 0.0]], dtype), np.array([[0.0, 0.0]], dtype)
    # a dissimilar pair beyond the margin: loss 0, gradient 0
    _close(L.contrastive_loss(x1, x2, np.array([0])), dtype(0), dtype)
    for g in L.contrastive_loss_grad(x1, x2, np.array([0])):
        _close(g, [[0, 0]], dtype)
    # a similar pair infinitely apart: d^2 and its gradient 2 (x1 - x2) are infinite
    _close(L.contrastive_loss(x1, x2, np.array([1])), dtype(inf), dtype)
    d1, d2 = L.contrastive_loss_grad(x1, x2, np.array([1]))
    _close(d1, [[inf, 0]], dtype)
    _close(d2, [[-inf, 0]], dtype)
    nan_pair = np.array([[np.nan, 0.0]], dtype)
    assert all(np.isnan(g).all() for g in L.contrastive_loss_grad(nan_pair, x2, np.array([0])))


@pytest.mark.parametrize("dtype", DTYPES)
def test_nll_loss_takes_log_probabilities_as_they_are(dtype):
    # nll_loss is -x_y of log-probabilities: no softmax limit of a row holding +inf
    x = np.array([[inf, 0.0], [0.0, -inf]], dtype)
    _close(L.nll_loss(x, np.array([0, 1]), reduction="none"), [-inf, inf], dtype)
    _close(L.nll_loss_grad(x, np.array([0, 1]), reduction="sum"), [[-1, 0], [0, -1]], dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_info_nce_and_siglip_keep_nan_next_to_inf(dtype):
    q = np.array([[inf, np.nan], [0.0, 1.0]], dtype)
    k = np.array([[1.0, 0.0], [0.0, 1.0]], dtype)
    assert np.isnan(L.info_nce_loss(q, k))
    assert np.isnan(L.siglip_loss(q, k))
    # without the NaN the row is its limit direction [1, 0]
    q[0, 1] = 0
    _close(L.info_nce_loss(q, k), L.info_nce_loss(k, k), dtype)


F64_MAX = float(np.finfo(np.float64).max)
F32_MAX = float(np.finfo(np.float32).max)


@pytest.mark.parametrize(
    "grad, args, index, exact",
    [
        # d/dx mean((x - y)^2) = 2 (x - y) / n: 2 (x - y) overflows, the gradient does not
        (L.mse_loss_grad, ([F64_MAX, 0.0], [0.0, 0.0]), 0, F64_MAX),
        (
            L.mse_loss_grad,
            (np.float32([3e38, 0.0]), np.float32([0.0, 0.0])),
            0,
            float(np.float32(3e38)),
        ),
        # squared hinge: -2 t max(0, 1 - t x) / n with n = 4, t = 1, 1 - x = 3e38 (float32)
        (
            L.squared_hinge_loss_grad,
            (np.float32([-3e38, 0, 0, 0]), np.float32([1, 1, 1, 1])),
            0,
            -2 * (1 + float(np.float32(3e38))) / 4,
        ),
        # square loss: -2 t (1 - t x) / n with n = 2, t = -1, 1 + x = 1.5e308
        (L.square_loss_grad, ([1.5e308, 0.0], [-1.0, -1.0]), 0, 2 * (1 + 1.5e308) / 2),
    ],
)
def test_a_finite_gradient_is_not_lost_to_an_intermediate_overflow(grad, args, index, exact):
    got = grad(*args)
    dtype = np.asarray(args[0]).dtype
    assert got.dtype == dtype and np.isfinite(got[index])
    assert abs(float(got[index]) - exact) <= 4 * np.finfo(dtype).eps * abs(exact)


@pytest.mark.parametrize(
    "function, args",
    [
        # the exact results overflow too: inf is the right answer, without a warning
        (L.squared_hinge_loss, ([-1e300], [1.0])),
        (L.squared_hinge_loss_grad, ([-1.5e308], [1.0])),
        (L.square_loss, ([1e300], [-1.0])),
        (L.square_loss_grad, ([1.5e308], [-1.0])),
        (L.logistic_loss, ([-1.5e308], [1.0])),
    ],
)
def test_an_overflowing_result_is_inf_without_a_warning(function, args):
    got = np.asarray(function(*args))  # warnings are errors in the test suite
    assert np.all(np.isinf(got))


@pytest.mark.parametrize("dtype, big", [(np.float32, 2e19), (np.float64, 2e154)])
@pytest.mark.parametrize(
    "function, offset", [(L.square_loss, 1), (L.squared_hinge_loss, 1), (L.mse_loss, 0)]
)
def test_a_finite_mean_is_not_lost_to_an_overflowing_square(function, offset, dtype, big):
    # ten elements whose terms are (offset + big)^2 and nine offset^2: (1 - t x)^2 and
    # max(0, 1 - t x)^2 with t = 1, x = -big, then x = 0; (x - y)^2 with x = big, then 0.
    # The first square overflows, the mean (4e37, 4e307) does not.
    x = np.zeros(10, dtype)
    x[0] = -big if offset else big
    second = np.ones(10, dtype) if offset else np.zeros(10, dtype)
    exact = ((offset + mpmath.mpf(float(x[0] * (-1 if offset else 1)))) ** 2 + 9 * offset) / 10
    got = function(x, second)
    assert got.dtype == dtype
    assert_close_to_exact(got, exact, 4, function.__name__)
    # the value of value_and_grad is the same
    assert getattr(L, function.__name__ + "_value_and_grad")(x, second)[0] == got


def _hinge_mean(row, target, margin, p):
    """Weston-Watkins: sum over j != target of max(0, margin - z_target + z_j)^p / C."""
    z = [mpmath.mpf(float(v)) for v in row]
    terms = [max(0, margin - z[target] + v) ** p for j, v in enumerate(z) if j != target]
    return mpmath.fsum(terms) / len(z)


@pytest.mark.parametrize(
    "dtype, big", [(np.float32, float(np.float32(1.7e38))), (np.float64, 8.9e307)]
)
@pytest.mark.parametrize("p", [1, 2])
def test_a_finite_multi_margin_loss_is_not_lost_to_an_overflowing_hinge(dtype, big, p):
    # a hinge 1 + 2 big (p = 1) or its square (p = 2: 1 + 2 big = 1.48e154 in float64,
    # 2.6e19 in float32) overflows; the per-sample loss, a mean over C = 3 classes (in
    # float32 beyond its range: 4.5e38), and the mean over samples do not
    if p == 2:
        big = float(dtype(np.sqrt(big) if dtype == np.float32 else 7.4e153))
    rows = np.array([[big, big, -big], [0.0, 0.5, 2.0]], dtype)
    target = [2, 2]
    exact = [_hinge_mean(r, t, 1, p) for r, t in zip(rows, target, strict=True)]
    got = L.multi_margin_loss(rows, target, p=p, reduction="none")
    assert got.dtype == dtype
    assert_close_to_exact(got, np.array(exact, dtype=object), 4, "multi_margin_loss")
    # a weight of 0.5 on the class: the sum over samples too
    weight = np.array([1.0, 1.0, 0.5], dtype)
    got = L.multi_margin_loss(rows, target, p=p, weight=weight, reduction="sum")
    assert_close_to_exact(got, mpmath.fsum(exact) / 2, 4, "multi_margin_loss weighted sum")
    value, grad = L.multi_margin_loss_value_and_grad(rows, target, p=p, reduction="mean")
    assert_close_to_exact(value, mpmath.fsum(exact) / 2, 4, "multi_margin_loss mean")
    # the gradient of the mean: w p h^(p-1) / (C n) for each active rival, minus their sum
    # at the target (2 h / 6 = 8.7e18 and 4.9e153 for p = 2, with 2 h beyond the range)
    h = [1 + 2 * mpmath.mpf(float(rows[0, 0]))] * 2
    d = [p * hj ** (p - 1) / 6 for hj in h]
    assert_close_to_exact(grad[0], np.array([d[0], d[1], -d[0] - d[1]], dtype=object), 4, "grad")


@pytest.mark.parametrize("dtype, big", [(np.float32, 3e38), (np.float64, 1.7e308)])
def test_a_finite_multilabel_margin_loss_is_not_lost_to_an_overflowing_hinge(dtype, big):
    # label 1 (score -big): the hinges 1 + 2 big and 1 + big over C = 3 classes
    rows = np.array([[big, -big, 0.0], [0.0, 1.0, 0.0]], dtype)
    target = np.array([[1, -1, -1], [1, -1, -1]])
    b = mpmath.mpf(float(rows[0, 0]))
    exact = [(1 + 2 * b + 1 + b) / 3, mpmath.mpf(0)]
    got = L.multilabel_margin_loss(rows, target, reduction="none")
    assert got.dtype == dtype
    assert_close_to_exact(got, np.array(exact, dtype=object), 4, "multilabel_margin_loss")
    value, _ = L.multilabel_margin_loss_value_and_grad(rows, target, reduction="mean")
    assert_close_to_exact(value, exact[0] / 2, 4, "multilabel_margin_loss mean")


@pytest.mark.parametrize("p", [1, 2])
@pytest.mark.parametrize("bad", [-inf, np.nan])
def test_a_zero_class_weight_masks_multi_margin_gradient_rows(p, bad):
    # the target class 0 has weight 0: its sample's loss is 0 and so is its gradient row,
    # also where a hinge is infinite or NaN; the other row is unaffected
    z = np.array([[bad, 0.0, 1.0], [0.0, 0.5, 0.25]])
    weight = np.array([0.0, 1.0, 1.0])
    value, grad = L.multi_margin_loss_value_and_grad(
        z, [0, 1], p=p, weight=weight, reduction="none"
    )
    assert value[0] == 0
    assert grad[0].tolist() == [0.0, 0.0, 0.0]
    h = [1 - 0.5 + 0.0, 0.0, 1 - 0.5 + 0.25]  # row 1: hinges of classes 0 and 2
    d = [2 * hj / 3 for hj in h] if p == 2 else [1 / 3, 0, 1 / 3]
    assert grad[1].tolist() == pytest.approx([d[0], -(d[0] + d[2]), d[2]], rel=1e-15)


@pytest.mark.parametrize("dtype, big", [(np.float32, 3e38), (np.float64, 1.7e308)])
def test_a_finite_multi_margin_gradient_is_not_lost_to_an_overflowing_hinge(dtype, big):
    # p = 2, class 1 of score -big: the hinges 1 + 2 big (beyond the range) and 1 + big;
    # the gradient of the mean over n = 2 rows and C = 3 classes is 2 h / 6 each
    rows = np.array([[big, -big, 0.0], [0.0, 0.0, 0.0]], dtype)
    b = mpmath.mpf(float(rows[0, 0]))
    d = [2 * (1 + 2 * b) / 6, 2 * (1 + b) / 6]
    grad = L.multi_margin_loss_grad(rows, [1, 1], p=2)
    assert grad.dtype == dtype
    exact = np.array([d[0], -d[0] - d[1], d[1]], dtype=object)
    assert_close_to_exact(grad[0], exact, 4, "multi_margin_loss_grad")


@pytest.mark.parametrize(
    "dtype, big", [(np.float16, 6e4), (np.float32, 3e38), (np.float64, 1.7e308)]
)
def test_a_finite_multiclass_hinge_mean_is_not_lost_to_an_overflowing_gap(dtype, big):
    # the first sample's gap 1 + big - -big is beyond the range; the mean over two is not
    rows = np.array([[big, -big, 0.0], [0.0, 0.0, 0.0]], dtype)
    b = mpmath.mpf(float(rows[0, 0]))
    exact = (1 + 2 * b + 1) / 2
    value, grad = L.multiclass_hinge_loss_value_and_grad(rows, [1, 1])
    assert value.dtype == dtype
    assert_close_to_exact(value, exact, 4, "multiclass_hinge_loss")
    assert grad[0].tolist() == [0.5, -0.5, 0.0]
    assert np.isinf(L.multiclass_hinge_loss(rows, [1, 1], reduction="none")[0])


@pytest.mark.parametrize("dtype, big", [(np.float32, 3e38), (np.float64, 1.7e308)])
@pytest.mark.parametrize("margin", [0.0, 1.0])
def test_a_finite_margin_ranking_mean_is_not_lost_to_an_overflowing_gap(dtype, big, margin):
    # t = -1: the gap m + (x1 - x2) = m + 2 big is beyond the range; its mean with a pair
    # of gap m is not (the gradient was right: -t [gap >= 0] / n)
    x1 = np.array([big, 0.0], dtype)
    x2 = np.array([-big, 0.0], dtype)
    t = np.array([-1.0, 1.0], dtype)
    b = mpmath.mpf(float(x1[0]))
    exact = (margin + 2 * b + margin) / 2
    value, grads = L.margin_ranking_loss_value_and_grad(x1, x2, t, margin=margin)
    assert value.dtype == dtype
    assert_close_to_exact(value, exact, 4, "margin_ranking_loss")
    assert L.margin_ranking_loss(x1, x2, t, margin=margin) == value
    assert grads[0].tolist() == [0.5, -0.5]


@pytest.mark.parametrize("p, big", [(1, 1.7e308), (2, 1.3e154)])
def test_a_finite_multi_margin_mean_is_not_lost_to_a_float64_sample_beyond_the_range(p, big):
    # the first sample's loss (two hinges 1 + 2 big, over C = 3) is beyond float64's
    # range; the mean over three samples is not
    rows = np.array([[big, big, -big], [0.0, 0.0, 0.0], [0.0, 0.0, 0.0]])
    exact = sum(_hinge_mean(r, 2, 1, p) for r in rows) / 3
    value, _ = L.multi_margin_loss_value_and_grad(rows, [2, 2, 2], p=p)
    assert_close_to_exact(value, exact, 4, "multi_margin_loss")
    assert L.multi_margin_loss(rows, [2, 2, 2], p=p) == value
    assert np.isinf(L.multi_margin_loss(rows, [2, 2, 2], p=p, reduction="none")[0])


def test_a_finite_multilabel_margin_mean_is_not_lost_to_a_float64_sample_beyond_the_range():
    # label 2 (score -big): two hinges 1 + 2 big over C = 3, beyond float64's range;
    # the mean over three samples is not
    big = 1.7e308
    rows = np.array([[big, big, -big], [0.0, 0.0, 0.0], [0.0, 0.0, 0.0]])
    target = np.array([[2, -1, -1]] * 3)
    b = mpmath.mpf(big)
    exact = (2 * (1 + 2 * b) / 3 + 2 * mpmath.mpf(2) / 3) / 3
    value, _ = L.multilabel_margin_loss_value_and_grad(rows, target)
    assert_close_to_exact(value, exact, 4, "multilabel_margin_loss")
    assert L.multilabel_margin_loss(rows, target) == value
    assert np.isinf(L.multilabel_margin_loss(rows, target, reduction="none")[0])


@pytest.mark.parametrize(
    "dtype, margin, big", [(np.float32, 2.0**127, 3e38), (np.float64, 1e308, 1e308)]
)
def test_a_finite_hinge_mean_is_not_lost_to_a_huge_margin(dtype, margin, big):
    # the first gap m + big is beyond the range (t = 1, x = -big; hinge embedding: t = -1,
    # x = -big), the mean with three gaps m is not
    x = np.array([-big, 0.0, 0.0, 0.0], dtype)
    b, m = mpmath.mpf(float(x[0])), mpmath.mpf(margin)
    exact = (m - b + 3 * m) / 4
    for name, t in (("hinge_loss", 1.0), ("hinge_embedding_loss", -1.0)):
        value, grad = getattr(L, name + "_value_and_grad")(x, np.full(4, t, dtype), margin=margin)
        assert value.dtype == dtype
        assert_close_to_exact(value, exact, 4, name)
        assert grad.tolist() == [-0.25] * 4


_M = mpmath.mpf(F64_MAX)


def _near_top_cases(n):
    """(name, call, exact mean): float64 losses of n equal samples whose loss is at (or a
    few units from) the largest float; their sum overflows, their mean does not."""
    ones, zeros, full = np.ones(n), np.zeros(n), lambda v: np.full(n, v)
    half, rows = F64_MAX / 2, np.tile([-F64_MAX, 0.0], (n, 1))
    first = np.zeros(n, int)
    return [
        ("l1_loss", lambda: L.l1_loss(full(F64_MAX), zeros), _M),
        ("smooth_l1_loss", lambda: L.smooth_l1_loss(full(F64_MAX), zeros), _M - 0.5),
        ("huber_loss", lambda: L.huber_loss(full(F64_MAX), zeros), _M - 0.5),
        ("log_cosh_loss", lambda: L.log_cosh_loss(full(F64_MAX), zeros), _M - mpmath.log(2)),
        ("quantile_loss", lambda: L.quantile_loss(full(F64_MAX), zeros, 0.25), 0.75 * _M),
        ("laplace_nll_loss", lambda: L.laplace_nll_loss(full(F64_MAX), zeros, ones), _M),
        ("hinge_loss", lambda: L.hinge_loss(full(-F64_MAX), ones), _M + 1),
        ("hinge_embedding_loss", lambda: L.hinge_embedding_loss(full(F64_MAX), ones), _M),
        ("soft_margin_loss", lambda: L.soft_margin_loss(full(-F64_MAX), ones), _M),
        (
            "binary_cross_entropy_with_logits",
            lambda: L.binary_cross_entropy_with_logits(full(-F64_MAX), ones),
            _M,
        ),
        ("poisson_nll_loss", lambda: L.poisson_nll_loss(full(-F64_MAX), ones), _M),
        ("kl_div", lambda: L.kl_div(full(-F64_MAX), ones), _M),
        ("margin_ranking_loss", lambda: L.margin_ranking_loss(full(-half), full(half), ones), _M),
        ("bradley_terry_loss", lambda: L.bradley_terry_loss(full(-half), full(half)), _M),
        (
            "dpo_loss",
            lambda: L.dpo_loss(full(-half), full(half), zeros, zeros, beta=1.0),
            _M,
        ),
        ("multi_margin_loss", lambda: L.multi_margin_loss(rows, first), (_M + 1) / 2),
        ("nll_loss", lambda: L.nll_loss(rows, first), _M),
        ("cross_entropy", lambda: L.cross_entropy(rows, first), _M),
        # class weights: the weighted mean sum(w l) / sum(w) is l
        ("nll_loss (weight)", lambda: L.nll_loss(rows, first, weight=np.array([3.0, 1])), _M),
        (
            "cross_entropy (weight)",
            lambda: L.cross_entropy(rows, first, weight=np.array([3.0, 1])),
            _M,
        ),
        ("softmax_focal_loss", lambda: L.softmax_focal_loss(rows, first, gamma=0.0), _M),
    ]


@pytest.mark.parametrize("n", [3, 9, 11])
def test_a_mean_at_the_largest_float_does_not_overflow(n):
    # n losses at the largest float (within a few units of it: exact there, mpmath): their
    # sum overflows, their mean is finite; each term divided by n first rounded up (three
    # terms of the largest float gave inf)
    for name, call, exact in _near_top_cases(n):
        got = call()
        assert got.dtype == np.float64, name
        assert np.isfinite(got), (name, n)
        assert_close_to_exact(got, exact, 4, name)


def test_a_block_reduction_mean_at_the_largest_float_does_not_overflow():
    # the same through the block reduction's own paths: one block (its total overflows),
    # three blocks (their totals are finite, their sum is not), and a block whose
    # overflowing squares come with their shares
    from lossutils import _reduction as red

    top = np.float64(F64_MAX)
    one = red.BlockReduction("mean", 3, np.float64)
    one.add(np.full(3, top))
    three = red.BlockReduction("mean", 3, np.float64)
    for _ in range(3):
        three.add(np.array([top]))
    mixed = red.BlockReduction("mean", 3, np.float64)
    mixed.add(np.array([top]))
    gaps = np.full(2, np.sqrt(top))
    mixed.add(gaps * gaps, shares=lambda count: red.square_shares(gaps, count))
    exact = (_M + 2 * mpmath.mpf(float(gaps[0])) ** 2) / 3
    for reduced, expected in ((one, _M), (three, _M), (mixed, exact)):
        assert_close_to_exact(reduced.result(), expected, 4)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("share", [1.0, 0.5, 2.0**-20])
def test_a_squared_hinge_gradient_whose_gaps_overflow_among_gaps_of_the_other_sign(dtype, share):
    # t = -1 at x = the largest float: the gap m + x overflows (+inf in -t gap); the other
    # 7 entries, t = 1 at x = 0, give -m each, whose sum overflows to -inf: inf - inf was
    # NaN, and the overflowing gap went unnoticed (inf for 2 (m + x) / 8, which is finite)
    top = np.finfo(dtype).max
    margin = float(dtype(share) * top)
    x = np.zeros(8, dtype)
    x[0] = top
    t = np.ones(8, dtype)
    t[0] = -1
    gaps = [mpmath.mpf(margin) - int(b) * mpmath.mpf(float(a)) for a, b in zip(x, t, strict=True)]
    got = L.squared_hinge_loss_grad(x, t, margin=margin)
    assert_close_to_exact(got, [-2 * int(b) * g / 8 for g, b in zip(gaps, t, strict=True)], 4)
    np.testing.assert_array_equal(L.squared_hinge_loss_value_and_grad(x, t, margin=margin)[1], got)


@pytest.mark.parametrize("dtype, margin", [(np.float64, 1e300), (np.float32, 1e38)])
def test_a_squared_hinge_gradient_is_not_lost_to_an_overflowing_gap(dtype, margin):
    # t = -1, x = the largest float: the gap m + x overflows (float64: 1e300 + 1.8e308),
    # the mean's gradient 2 (m + x) / n does not for n >= 3 (the exact values from mpmath;
    # one input 0: gap m); "sum" and n = 2 overflow exactly: inf, without a warning
    top = np.finfo(dtype).max
    for n in (3, 4, 7):
        x = np.full(n, top, dtype)
        x[0] = 0
        t = np.full(n, -1.0, dtype)
        gaps = [mpmath.mpf(margin) + mpmath.mpf(float(v)) for v in x]
        got = L.squared_hinge_loss_grad(x, t, margin=margin)
        assert got.dtype == dtype
        assert_close_to_exact(got, [2 * g / n for g in gaps], 4, "squared_hinge_loss_grad")
        _, both = L.squared_hinge_loss_value_and_grad(x, t, margin=margin)
        np.testing.assert_array_equal(both, got)
        summed = L.squared_hinge_loss_grad(x, t, margin=margin, reduction="sum")
        assert summed[0] == dtype(2 * margin) and np.all(np.isposinf(summed[1:]))
    assert np.all(np.isposinf(L.squared_hinge_loss_grad(x[1:3], t[1:3], margin=margin)))
