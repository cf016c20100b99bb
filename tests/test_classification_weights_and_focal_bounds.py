"""Categorical losses at the edges of the range: class weights near the largest float.

A loss that weighs every class in every row (label smoothing, probability targets) sums
the class weights; a coefficient that multiplies the weight (the focal loss's) may exceed
1. Either may overflow where the loss or its gradient does not. Each value and gradient is
compared with mpmath on the same rounded inputs, in ULP of the output dtype, for every
reduction and dtype.
"""

from __future__ import annotations

import warnings

import mp_reference as mr
import mpmath
import numpy as np
import pytest

import lossutils as L
from lossutils.testing import assert_close_to_exact

DTYPES = [np.float16, np.float32, np.float64]
REDUCTIONS = ["none", "sum", "mean"]
# float16 is computed in float32 and rounded once
BOUND = {np.float16: 1.0, np.float32: 4.0, np.float64: 4.0}

LOGITS = np.array(
    [
        [-0.68, 0.68, 0.0],
        [3.0, -1.0, 0.5],
        [0.25, 0.5, 9.0],
        [-2.0, 4.0, 1.0],
        [12.0, -3.0, 0.0],
        [0.1, 0.2, 0.3],
    ]
)
TARGETS = np.array([0, 0, 2, 1, 2, 1])
SOFT = np.array(
    [
        [1.0, 0.0, 0.0],
        [0.5, 0.25, 0.25],
        [0.0, 0.125, 0.875],
        [0.75, 0.25, 0.0],
        [0.0, 0.0, 1.0],
        [0.375, 0.375, 0.25],
    ]
)


def _huge_weights(dtype):
    """Class weights whose total exceeds the largest number of the dtype, and a small one."""
    top = float(np.finfo(dtype).max)
    return np.array([top, top / 2, 0.75]).astype(dtype)


def _mp_rows(x):
    return [[mpmath.mpf(float(v)) for v in row] for row in np.asarray(x, dtype=np.float64)]


def _softmax(row):
    lse = mpmath.log(mpmath.fsum(mpmath.exp(v) for v in row))
    return [mpmath.exp(v - lse) for v in row], [lse - v for v in row]


def _reduce(per, grads, reduction, denominator, terms=None):
    """Exact reduced loss and gradient of per-sample losses and their gradient rows; and
    the larger of the two terms of each gradient entry (``terms``, default the entry)."""
    per = np.array(per, dtype=object)
    grads = np.array(grads, dtype=object)
    terms = grads if terms is None else np.array(terms, dtype=object)
    if reduction == "none":
        return per, grads, terms
    total = mpmath.fsum(per.tolist())
    if reduction == "sum":
        return total, grads, terms
    return total / denominator, grads / denominator, terms / denominator


def _exact_index(x, y, w, eps, reduction, gamma=None):
    """Smoothed weighted cross-entropy (or, with ``gamma``, the focal loss), exact."""
    weight = [mpmath.mpf(float(v)) for v in np.asarray(w, dtype=np.float64)]
    with mpmath.workdps(mr.DIGITS):
        num_classes = len(weight)
        per, grads, terms = [], [], []
        for row, t in zip(_mp_rows(x), y, strict=True):
            p, nl = _softmax(row)
            one_hot = [1 if k == t else 0 for k in range(num_classes)]
            if gamma is None:
                coef = (1 - eps) * weight[t] + eps / num_classes * mpmath.fsum(weight)
                smooth = mpmath.fsum(wc * v for wc, v in zip(weight, nl, strict=True))
                per.append((1 - eps) * weight[t] * nl[t] + eps / num_classes * smooth)
                first = [coef * pk for pk in p]
                second = [
                    (1 - eps) * weight[t] * one_hot[k] + eps / num_classes * wk
                    for k, wk in enumerate(weight)
                ]
                grads.append([a - b for a, b in zip(first, second, strict=True)])
                terms.append([max(a, b) for a, b in zip(first, second, strict=True)])
            else:
                g = mpmath.mpf(gamma)
                u = -mpmath.expm1(-nl[t])
                per.append(weight[t] * u**g * nl[t])
                factor = weight[t] * (u**g + g * u ** (g - 1) * p[t] * nl[t])
                grads.append([factor * (p[k] - one_hot[k]) for k in range(num_classes)])
                terms.append([abs(v) for v in grads[-1]])
        return _reduce(per, grads, reduction, mpmath.fsum(weight[t] for t in y), terms)


def _exact_soft(x, t, w, eps, reduction):
    """Weighted cross-entropy with probability targets smoothed by ``eps``, exact."""
    weight = [mpmath.mpf(float(v)) for v in np.asarray(w, dtype=np.float64)]
    with mpmath.workdps(mr.DIGITS):
        num_classes = len(weight)
        per, grads, terms = [], [], []
        for row, target in zip(_mp_rows(x), np.asarray(t, dtype=np.float64), strict=True):
            p, nl = _softmax(row)
            q = [(1 - eps) * mpmath.mpf(float(v)) + eps / num_classes for v in target]
            wq = [wc * qc for wc, qc in zip(weight, q, strict=True)]
            per.append(mpmath.fsum(a * b for a, b in zip(wq, nl, strict=True)))
            total = mpmath.fsum(wq)
            grads.append([total * p[k] - wq[k] for k in range(num_classes)])
            terms.append([max(total * p[k], wq[k]) for k in range(num_classes)])
        return _reduce(per, grads, reduction, len(per), terms)


def _assert_close_to_larger_term(actual, exact, terms, bound, label):
    """Each entry within ``bound`` ULP (of its dtype) of the larger of its two terms, as the
    gradients document where an entry is the difference of two nearly equal terms."""
    dtype = actual.dtype
    top, tiny = float(np.finfo(dtype).max), float(np.finfo(dtype).smallest_subnormal)
    for index in np.ndindex(actual.shape):
        if abs(exact[index]) > top:  # beyond the range: the infinity of its sign
            assert actual[index] == np.sign(float(exact[index])) * np.inf, f"{label} at {index}"
            continue
        scale = min(float(max(abs(exact[index]), terms[index])), top)
        unit = max(2 * float(np.spacing(dtype.type(scale / 2))), tiny)  # (no overflow at top)
        error = abs(mpmath.mpf(float(actual[index])) - exact[index]) / unit
        assert error <= bound, f"{label}: {float(error):.3g} ULP of the larger term at {index}"


def _check(fn, args, kwargs, exact, bound, label):
    """``fn``'s value, gradient and value-and-grad against the exact ones, no warnings."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        value = getattr(L, fn)(*args, **kwargs)
        grad = getattr(L, fn + "_grad")(*args, **kwargs)
        both = getattr(L, fn + "_value_and_grad")(*args, **kwargs)
    assert_close_to_exact(value, exact[0], bound, f"{label} value")
    _assert_close_to_larger_term(grad, exact[1], exact[2], bound, f"{label} gradient")
    np.testing.assert_array_equal(both[0], value)
    np.testing.assert_array_equal(both[1], grad)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("eps", [0.0, 0.1, 1e-6])
def test_cross_entropy_index_targets_with_weights_beyond_the_range(dtype, reduction, eps):
    x, w = LOGITS.astype(dtype), _huge_weights(dtype)
    exact = _exact_index(x, TARGETS, w, eps, reduction)
    kwargs = {"weight": w, "reduction": reduction, "label_smoothing": eps}
    label = f"cross_entropy {dtype.__name__} {reduction} eps={eps}"
    _check("cross_entropy", (x, TARGETS), kwargs, exact, BOUND[dtype], label)


@pytest.mark.parametrize("target", [[0], [[1.0, 0.0]]])
def test_cross_entropy_smoothed_gradient_with_weights_of_the_largest_float(target):
    # the case found: [[inf, inf]] for weights whose total is 3.6e308
    top = np.finfo(np.float64).max
    grad = L.cross_entropy_grad(
        [[-0.68, 0.68]], target, weight=[top, top], reduction="sum", label_smoothing=0.1
    )
    # top (p - q) with p = softmax, p_0 = 1 / (1 + e^1.36), and q = (0.95, 0.05)
    expected = top * (0.95 - 1 / (1 + np.exp(1.36)))
    np.testing.assert_allclose(grad, [[-expected, expected]], rtol=1e-14)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_cross_entropy_smoothed_target_entry_where_the_other_weights_dominate(dtype):
    # the target's entry is about eps / C sum_c w_c p_y there: p_y = exp(-nll) carried
    # nll's rounding times nll (7.5 ULP of float64 at nll = 30)
    x = np.array([[30.0, -3.0, 0.0], [12.0, -3.0, 0.0], [-20.0, 0.0, 5.0]], dtype)
    y = np.array([2, 2, 0])
    top = 1e300 if dtype == np.float64 else 1e30
    w = np.array([top, top / 2, 0.75], dtype)
    exact = _exact_index(x, y, w, 1e-6, "sum")
    _check(
        "cross_entropy",
        (x, y),
        {"weight": w, "reduction": "sum", "label_smoothing": 1e-6},
        exact,
        BOUND[dtype],
        f"cross_entropy {dtype.__name__}",
    )


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("eps", [0.0, 0.1])
def test_cross_entropy_probability_targets_with_weights_beyond_the_range(dtype, reduction, eps):
    x, t, w = LOGITS.astype(dtype), SOFT.astype(dtype), _huge_weights(dtype)
    exact = _exact_soft(x, t, w, eps, reduction)
    kwargs = {"weight": w, "reduction": reduction, "label_smoothing": eps}
    label = f"cross_entropy (probabilities) {dtype.__name__} {reduction} eps={eps}"
    _check("cross_entropy", (x, t), kwargs, exact, BOUND[dtype], label)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("gamma", [0.5, 2.0, 7.0])
def test_softmax_focal_loss_with_weights_beyond_the_range(dtype, reduction, gamma):
    # the gradient's coefficient w_y g, g up to 1 + gamma, overflowed where the gradient
    # w_y g (p - e_y) does not
    x, w = LOGITS.astype(dtype), _huge_weights(dtype)
    exact = _exact_index(x, TARGETS, w, 0.0, reduction, gamma=gamma)
    bound = 1.0 if dtype != np.float64 else 2.0 + 1.5 * (1 + gamma)
    kwargs = {"gamma": gamma, "weight": w, "reduction": reduction}
    label = f"softmax_focal_loss {dtype.__name__} {reduction} gamma={gamma}"
    _check("softmax_focal_loss", (x, TARGETS), kwargs, exact, bound, label)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_nll_loss_with_weights_beyond_the_range(dtype, reduction):
    x, w = (-np.abs(LOGITS)).astype(dtype), _huge_weights(dtype)
    weight = [mpmath.mpf(float(v)) for v in w.astype(np.float64)]
    with mpmath.workdps(mr.DIGITS):
        per, grads = [], []
        for row, t in zip(_mp_rows(x), TARGETS, strict=True):
            per.append(-weight[t] * row[t])
            grads.append([-weight[t] if k == t else mpmath.mpf(0) for k in range(3)])
        exact = _reduce(per, grads, reduction, mpmath.fsum(weight[t] for t in TARGETS))
    kwargs = {"weight": w, "reduction": reduction}
    _check("nll_loss", (x, TARGETS), kwargs, exact, BOUND[dtype], f"nll_loss {dtype.__name__}")


# confident rows (p_y from 1 - 1e-4 to 1 - 1e-15) where the gradient of the float64 focal
# loss was beyond its documented bound 2 + 1.5 (1 + gamma) (up to 4.4 ULP at gamma = 0.25 and
# 0.5, 4.1 at gamma = 0.1): six roundings of the row factor, each up to half an ULP
FOCAL_CONFIDENT = np.array(
    [
        [0.060496468120051806, 24.577655848348083, -0.1970365183583362, -0.00305337120922805],
        [-4.246353251369045, 12.93736087370144, -2.1510503865115496, -0.5940499769026699],
        [-0.673906954997572, 35.80185562646178, -1.3747239466570726, 3.9435326199493614],
        [-1.7602212893545381, 3.804401809288577, 38.14906821519948, -0.5928528917020665],
        [-0.0492008330004283, 0.6713624466370349, 34.4583557536284, 0.23089642990774156],
        [23.099825495916114, 1.5434351487246527, 0.17343792511462583, -1.0171991460933572],
        [0.03251742285993344, 0.18569115035751713, 23.211118102016183, 0.07023448063052151],
        [-0.019648761064489904, 0.10273984740426166, 0.10240150216385834, 21.90701484972549],
        [-0.4039617424879511, 1.7685516767422444, 17.842939348689562, -0.33773885246219426],
        [-0.0913069238949671, 12.41550842965796, 0.2071226620236275, -0.04084274516750651],
        [0.33304386104873257, 1.1770382933464418, 1.817634318446403, 34.85383036206147],
    ]
)


@pytest.mark.parametrize("gamma", [0.1, 0.25, 0.5, 2.0])
def test_softmax_focal_gradient_on_confident_rows_within_its_bound(gamma):
    x = FOCAL_CONFIDENT
    y = np.argmax(x, axis=-1)
    exact = _exact_index(x, y, np.ones(4), 0.0, "sum", gamma=gamma)[1]
    grad = L.softmax_focal_loss_grad(x, y, gamma=gamma, reduction="sum")
    assert_close_to_exact(grad, exact, 2.0 + 1.5 * (1 + gamma), f"gamma={gamma}")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_softmax_focal_rows_holding_inf_are_their_limit_rows(dtype, reduction):
    # the rows holding +inf are replaced where their maximum tells: the same bits as the
    # loss of their limit rows (0 at each +inf, -inf elsewhere)
    x = np.array(
        [[1.0, np.inf, 0.0], [np.inf, np.inf, -2.0], [0.5, -1.0, 2.0], [np.inf, -np.inf, 3.0]]
    ).astype(dtype)
    holds = (x == np.inf).any(axis=-1, keepdims=True)
    limit = np.where(holds, np.where(x == np.inf, 0.0, -np.inf), x).astype(dtype)
    y, w = np.array([1, 0, 2, 2]), np.array([0.5, 2.0, 1.0], dtype)
    kwargs = {"gamma": 2.0, "weight": w, "reduction": reduction}
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        got = L.softmax_focal_loss_value_and_grad(x, y, **kwargs)
        expected = L.softmax_focal_loss_value_and_grad(limit, y, **kwargs)
    assert np.asarray(got[0]).tobytes() == np.asarray(expected[0]).tobytes()
    assert got[1].tobytes() == expected[1].tobytes()


# rows whose target is not dominant (p_y below 1/2, or not the maximum), where the float64
# focal loss and its gradient were beyond 2 + 1.5 (1 + gamma): the gradient 18.0 ULP and
# the loss 18.5 at gamma = 8 (gamma p_y (-log p_y) / u multiplies the rounding of
# -log p_y in u), the gradient 3.9 at gamma = 0.1 (five roundings of the row factor)
FOCAL_GENERAL = np.array(
    [
        [0.9724166014771263, 2.1244626424812294, -1.4727070657101562, 1.737254191595544],
        [0.7625192460777664, -1.6593720394147429, -4.154646045764363, 0.7759529600041962],
        [0.06085523073901541, 0.11913073230173284, -2.9215892484651187, -1.9509163356688044],
        [1.2529526152303094, 2.1344412320849733, -0.9674217451555296, -0.5188990994240822],
        [-2.000948564381893, 2.1119649821092006, -1.120776310457152, -0.7724856632759177],
        [0.33684291816516626, -0.16357196255955006, -0.21438729475946733, -0.9564901602187862],
    ]
)
FOCAL_GENERAL_TARGETS = np.array([1, 3, 0, 3, 2, 1])


@pytest.mark.parametrize("gamma", [0.1, 1.0, 4.0, 8.0])
def test_softmax_focal_loss_and_gradient_on_rows_not_dominated_within_its_bound(gamma):
    x, y = FOCAL_GENERAL, FOCAL_GENERAL_TARGETS
    per, grads, _ = _exact_index(x, y, np.ones(4), 0.0, "none", gamma=gamma)
    bound = 2.0 + 1.5 * (1 + gamma)
    loss = L.softmax_focal_loss(x, y, gamma=gamma, reduction="none")
    assert_close_to_exact(loss, per, bound, f"loss gamma={gamma}")
    grad = L.softmax_focal_loss_grad(x, y, gamma=gamma, reduction="sum")
    assert_close_to_exact(grad, grads, bound, f"gradient gamma={gamma}")


# An infinite weight w_k of a class that enters every row (label smoothing; a probability
# target q_k > 0) adds w_k (p_j - [j = k]) to entry j and w_k (-log p_k) to the loss: as
# w_k -> inf the loss tends to +inf, entry k to -inf and the others to +inf; where p_j = 0
# (a logit of -inf) the entry's term is inf * 0 (NaN), and with two such weights entry k is
# inf - inf (NaN). Rows: finite, holding -inf, holding +inf (limit row p = (0, 0, 1)).
INF_ROWS = np.array([[-0.68, 0.68, 0.0], [3.0, 1.0, -2.0], [0.0, 1.0, -np.inf], [1.0, 2.0, np.inf]])
NAN = np.nan
INF_ONE = np.array(  # weights (inf, 1, 1)
    [
        [-np.inf, np.inf, np.inf],
        [-np.inf, np.inf, np.inf],
        [-np.inf, np.inf, NAN],
        [-np.inf, NAN, np.inf],
    ]
)
INF_TWO = np.array(  # weights (inf, inf, 1)
    [[NAN, NAN, np.inf], [NAN, NAN, np.inf], [NAN, NAN, NAN], [NAN, NAN, np.inf]]
)


def _same(actual, expected):
    np.testing.assert_array_equal(np.asarray(actual, dtype=np.float64), expected)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("reduction", ["none", "sum"])
@pytest.mark.parametrize("weights", ["one", "two"])
def test_cross_entropy_smoothed_with_an_infinite_class_weight_gives_the_limits(
    dtype, reduction, weights
):
    x = INF_ROWS.astype(dtype)
    w = np.array([np.inf, 1.0 if weights == "one" else np.inf, 1.0], dtype)
    y = np.array([0, 0, 1, -100])  # the last sample ignored: 0
    expected = (INF_ONE if weights == "one" else INF_TWO).copy()
    expected[3] = 0
    kwargs = {"weight": w, "reduction": reduction, "label_smoothing": 0.1}
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        value, grad = L.cross_entropy_value_and_grad(x, y, **kwargs)
    per = np.array([np.inf, np.inf, np.inf, 0.0])
    _same(value, per if reduction == "none" else np.inf)
    _same(grad, expected)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_cross_entropy_probability_targets_with_an_infinite_class_weight(dtype, reduction):
    # the mean of probability targets divides by N, not by the weights: the limits too
    x = INF_ROWS.astype(dtype)
    q = np.array([[1.0, 0, 0], [0.5, 0.5, 0], [0.25, 0.75, 0], [0.2, 0.3, 0.5]], dtype)
    w = np.array([np.inf, 1.0, 1.0], dtype)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        value, grad = L.cross_entropy_value_and_grad(x, q, weight=w, reduction=reduction)
        # a target of 0 at the class of infinite weight: no term of it, a finite row
        finite = L.cross_entropy_grad(x[:1], np.array([[0, 1.0, 0]], dtype), weight=w)
    _same(value, np.full(4, np.inf) if reduction == "none" else np.inf)
    _same(grad, INF_ONE)
    assert np.isfinite(finite).all()


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_cross_entropy_probability_target_with_a_tiny_weight_keeps_the_top_entry(dtype, reduction):
    # the row is dominated by class 0, whose entry is p_0 w_1 q_1 - w_0 q_0 (1 - p_0): the
    # sum of the other classes' w q must not come from the rounded total minus w_0 q_0
    tiny = 1e-30 if dtype == np.float64 else 1e-20
    x = np.array([[100.0, 0.0], [30.0, 0.0]], dtype)
    t = np.array([[0.5, 0.5], [0.25, 0.75]], dtype)
    w = np.array([1.0, tiny], dtype)
    exact = _exact_soft(x, t, w, 0.0, reduction)
    kwargs = {"weight": w, "reduction": reduction}
    label = f"cross_entropy {dtype.__name__} {reduction} tiny weight"
    _check("cross_entropy", (x, t), kwargs, exact, BOUND[dtype], label)
    # no cancellation in the exact entries: each within the bound of itself, sign included
    grad = L.cross_entropy_grad(x, t, **kwargs)
    assert_close_to_exact(grad, exact[1], BOUND[dtype], f"{label} gradient")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_cross_entropy_fully_smoothed_is_inf_at_an_infinite_logit(dtype, reduction):
    # at label_smoothing = 1 the loss is the mean over the classes of -log p_c, and p_0 = 0
    # in the limit row: +inf (the target's term has coefficient 0, not 0 * inf = NaN)
    x = np.array([[0.0, np.inf], [1.0, 2.0]], dtype)
    for weight in (None, np.array([1.0, 2.0], dtype)):
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            loss = L.cross_entropy(
                x, [0, 1], weight=weight, reduction=reduction, label_smoothing=1.0
            )
        assert np.ravel(loss)[0] == np.inf, f"{dtype.__name__} {reduction} {loss}"


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_cross_entropy_fully_smoothed_beyond_the_range_is_inf(dtype, reduction):
    # finite weights whose exact loss exceeds the largest float: +inf, not NaN (the mean,
    # divided by w_y, is back in range)
    if dtype == np.float64:
        x, w = np.array([[0.0, 780.0, 510.0]]), np.array([1e307, 1.0, 1e308])
    else:
        x = np.array([[0.0, 130.0, 85.0]], np.float32)
        w = np.array([1.7e38, 1.0, 3.4e38], np.float32)
    exact = _exact_index(x, [2], w, 1, reduction)[0]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        loss = L.cross_entropy(x, [2], weight=w, reduction=reduction, label_smoothing=1.0)
    if reduction == "mean":
        assert_close_to_exact(loss, exact, BOUND[dtype], f"{dtype.__name__} mean")
    else:
        assert abs(np.ravel(exact)[0]) > np.finfo(dtype).max  # (the premise)
        assert np.all(np.asarray(loss) == np.inf), f"{dtype.__name__} {reduction} {loss}"


DOMINATED_SMOOTHED = [
    # (logits, target, class weights, label_smoothing, dtype): rows dominated by their
    # maximum, where W p - w cancels at the maximal class or a huge weight drowns the rest
    ([[0.0, 1000.0]], 0, [1.0, 1e300], 0.1, np.float64),
    ([[0.0, 1e4]], 0, [1.0, 1e30], 0.1, np.float32),
    ([[30.0, 0.0]], 1, [1.0, 0.0], 1.0, np.float64),
    ([[0.0, 100.0]], 0, [0.0, 1e38], 1e-6, np.float32),
    ([[0.0, 100.0]], 1, [0.0, 1e38], 1e-6, np.float32),
    ([[0.0, 100.0]], 0, [0.0, 1e308], 1e-6, np.float64),
    ([[16.33, -129.26, -47.18]], 0, [1e-3, 0.0, 1.7e38], 1.0, np.float32),
    ([[0.0, -5.0]], 0, [1e300, 1.0], 1.0, np.float64),
    ([[0.0, -5.0]], 0, [2.0, 1.0], 1.0, np.float64),
]


@pytest.mark.parametrize("case", DOMINATED_SMOOTHED)
@pytest.mark.parametrize("reduction", ["none", "sum"])
def test_cross_entropy_smoothed_gradient_of_dominated_rows_entry_by_entry(case, reduction):
    logits, target, weight, eps, dtype = case
    x, w = np.array(logits, dtype), np.array(weight, dtype)
    exact = _exact_index(x, [target], w, eps, reduction)
    kwargs = {"weight": w, "reduction": reduction, "label_smoothing": eps}
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        grad = L.cross_entropy_grad(x, [target], **kwargs)
        both = L.cross_entropy_value_and_grad(x, [target], **kwargs)
    # no entry cancels in these rows: each within the bound of itself
    assert_close_to_exact(grad, exact[1], BOUND[dtype], f"{case} {reduction}")
    np.testing.assert_array_equal(both[1], grad)
    assert_close_to_exact(both[0], exact[0], BOUND[dtype], f"{case} {reduction} value")


@pytest.mark.parametrize("dtype", DTYPES)
def test_mean_over_a_zero_total_weight_gives_the_documented_nan_entries(dtype):
    # the mean's factor is 0/0: nll_loss's gradient is NaN at the target entry only (the
    # loss does not depend on the others), cross_entropy's at every entry of the sample
    x = np.array([[-1.0, -np.inf], [-1.0, -2.0]], dtype)
    kwargs = {"weight": np.array([1.0, 0.0], dtype), "reduction": "mean"}
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        nll = L.nll_loss_grad(x, [1, 1], **kwargs)
        ce = L.cross_entropy_grad(x, [1, 1], **kwargs)
    np.testing.assert_array_equal(nll, np.array([[0.0, np.nan], [0.0, np.nan]], dtype))
    assert np.isnan(ce).all()
    assert nll.dtype == ce.dtype == dtype


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("eps", [0.0, 0.1])
def test_cross_entropy_mean_with_weights_too_far_apart_to_share_one_scaling(dtype, eps):
    # the case found (float32): [[-inf, inf], [inf, -inf]] where row 0 is about
    # [-0.475, 0.475]; scaling the weights after the largest made 0.001 a subnormal, the
    # total of the targets' weights too, and its reciprocal inf
    top = float(np.finfo(dtype).max) / 2
    x = np.array([[-0.6778861880302429, 10000.0], [-1.570080041885376, -0.26296961307525635]])
    x, w, y = x.astype(dtype), np.array([0.001, top]).astype(dtype), np.array([0, 0])
    exact = _exact_index(x, y, w, eps, "mean")
    kwargs = {"weight": w, "reduction": "mean", "label_smoothing": eps}
    _check("cross_entropy", (x, y), kwargs, exact, BOUND[dtype], f"{dtype.__name__} eps={eps}")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("gamma", [1e300, np.finfo(np.float64).max])
def test_sigmoid_focal_loss_of_a_huge_gamma_is_its_limit_without_a_warning(dtype, gamma):
    # sigma(u)^gamma for sigma(u) < 1 is far below the smallest subnormal: the loss and its
    # derivative round to 0 (the float32 path formed gamma log sigma(u) with an overflow
    # warning at the largest gamma, and so did the soft labels' path), 0 also at a
    # confident logit
    x = np.array([10.0, -10.0, 0.0, 1e4, -0.7], dtype)
    y = np.array([1.0, 1.0, 0.0, 1.0, 1e-3], dtype)  # (a soft label: the other path)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        loss = L.sigmoid_focal_loss(x, y, gamma=gamma, reduction="none")
        grad = L.sigmoid_focal_loss_grad(x, y, gamma=gamma, reduction="sum")
    with mpmath.workdps(60):
        for xi, yi, got in zip(x.tolist(), y.tolist(), loss.tolist(), strict=True):
            xm = mpmath.mpf(xi)
            # q = 1 - p_t = y sigma(-x) + (1 - y) sigma(x); the cross-entropy with logits
            q = yi / (1 + mpmath.exp(xm)) + (1 - yi) / (1 + mpmath.exp(-xm))
            ce = yi * mpmath.log1p(mpmath.exp(-xm)) + (1 - yi) * mpmath.log1p(mpmath.exp(xm))
            exact = (0.25 * yi + 0.75 * (1 - yi)) * mpmath.exp(gamma * mpmath.log(q)) * ce
            assert got == float(exact) == 0.0
    assert grad.dtype == dtype and np.all(grad == 0)
