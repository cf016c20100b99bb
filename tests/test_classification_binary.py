"""Binary classification losses: PyTorch/torchvision semantics, accuracy, gradients, properties.

Expected values come from the literal PyTorch / torchvision formulas evaluated by mpmath at
high precision (``mp_reference``), from explicit NumPy formulas on benign inputs, from SymPy,
and from central finite differences.
"""

from __future__ import annotations

import zlib

import mp_reference as mr
import mpmath
import numpy as np
import pytest
import sympy as sp
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from lossutils import _blocks
from lossutils import classification as C
from lossutils.activations import sigmoid
from lossutils.testing import assert_gradient_matches, assert_matches_sympy, assert_ulp_close

REDUCTIONS = ("mean", "sum", "none")
RNG_SEED = 20240607

# --- sweeps for the accuracy tests ----------------------------------------------------------------

_MAGNITUDES = np.concatenate(
    [np.logspace(-20, 4, 25), [0.0, 0.5, 1.0, 2.0, 30.0, 36.7, 40.0, 700.0, 740.0, 1e4]]
)
LOGITS = np.concatenate(
    [_MAGNITUDES, -_MAGNITUDES, np.random.default_rng(RNG_SEED).uniform(-40, 40, 40)]
)


def _labels(kind, size, rng):
    """Hard labels 1 or 0, or soft labels including values next to 0 and 1."""
    if kind == "one":
        return np.ones(size)
    if kind == "zero":
        return np.zeros(size)
    y = rng.uniform(0, 1, size)
    y[:4] = [1e-300, 2.0**-53, 1 - 2.0**-53, 0.5]
    return y


# A table of the worst ULP found, filled by the accuracy tests (printed with ``pytest -s``).
WORST_ULP: dict[str, float] = {}


def _record(name, worst):
    WORST_ULP[name] = max(WORST_ULP.get(name, 0.0), worst)


@pytest.fixture(scope="module", autouse=True)
def _print_worst_ulp():
    yield
    if WORST_ULP:
        print("\nworst ULP against mpmath:")
        for name, worst in sorted(WORST_ULP.items()):
            print(f"  {name:36s} {worst:.3f}")


# --- accuracy against mpmath ----------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["one", "zero", "soft"])
def test_bce_with_logits_within_4_ulp(kind):
    rng = np.random.default_rng(RNG_SEED + 1)
    y = _labels(kind, LOGITS.size, rng)
    w, pw = rng.uniform(0.1, 3, LOGITS.size), rng.uniform(0.1, 3, LOGITS.size)
    plain = C.binary_cross_entropy_with_logits(LOGITS, y, reduction="none")
    worst = assert_ulp_close(
        plain, mr.binary_cross_entropy_with_logits(LOGITS, y, 1.0, 1.0), label=kind
    )
    # pos_weight broadcasting along the last axis: one value per column
    x2, y2, pw2 = LOGITS.reshape(-1, 5), y.reshape(-1, 5), pw[:5]
    weighted = C.binary_cross_entropy_with_logits(x2, y2, w.reshape(-1, 5), pw2, reduction="none")
    worst_w = assert_ulp_close(
        weighted, mr.binary_cross_entropy_with_logits(x2, y2, w.reshape(-1, 5), pw2), label=kind
    )
    _record("binary_cross_entropy_with_logits", max(worst, worst_w))


def test_bce_with_logits_extreme_logits_exact():
    x = np.array([1e4, -1e4, 1e4, -1e4, 800.0, -800.0])
    y = np.array([1.0, 0.0, 0.0, 1.0, 1.0, 0.0])
    loss = C.binary_cross_entropy_with_logits(x, y, reduction="none")
    # confident and right: e^-1e4 and e^-800 underflow to 0; confident and wrong: |x| exactly
    np.testing.assert_array_equal(loss, [0.0, 0.0, 1e4, 1e4, 0.0, 0.0])
    # a confident correct prediction keeps its tiny loss instead of rounding to 0
    tiny = C.binary_cross_entropy_with_logits([40.0], [1.0], reduction="none")
    assert_ulp_close(tiny, mr.binary_cross_entropy_with_logits([40.0], [1.0], 1.0, 1.0))
    assert 4e-18 < tiny[0] < 5e-18


@pytest.mark.parametrize("kind", ["one", "zero", "soft"])
@pytest.mark.parametrize("gamma", [0.5, 2.0])
@pytest.mark.parametrize("alpha", [None, 0.25])
def test_sigmoid_focal_loss_within_4_ulp(kind, gamma, alpha):
    y = _labels(kind, LOGITS.size, np.random.default_rng(RNG_SEED + 2))
    loss = C.sigmoid_focal_loss(LOGITS, y, alpha=alpha, gamma=gamma, reduction="none")
    # float64 only, no wider type: hard labels take sigma(u)**gamma with the exponent in
    # twice the precision; soft labels raise a rounded q, which multiplies its error by gamma
    bound = 4.0 if kind != "soft" else 2.0 + 1.5 * (1 + gamma)
    worst = assert_ulp_close(
        loss,
        mr.sigmoid_focal_loss(LOGITS, y, alpha, gamma),
        max_ulp=bound,
        label=f"{kind} {gamma} {alpha}",
    )
    _record("sigmoid_focal_loss", worst)


@pytest.mark.parametrize("kind", ["one", "zero", "soft"])
def test_binary_cross_entropy_within_4_ulp(kind):
    rng = np.random.default_rng(RNG_SEED + 3)
    p = np.concatenate(
        [
            np.logspace(-320, -1, 60),  # down to subnormal probabilities
            1 - np.logspace(-16, -1, 30),  # confident near 1
            [0.0, 1.0, 0.5, 3e-44, 4e-44],  # around the clamp e^-100 = 3.72e-44
            rng.uniform(0, 1, 40),
        ]
    )
    y = _labels(kind, p.size, rng)
    w = rng.uniform(0.1, 3, p.size)
    worst = max(
        assert_ulp_close(
            C.binary_cross_entropy(p, y, reduction="none"), mr.binary_cross_entropy(p, y, 1.0)
        ),
        assert_ulp_close(
            C.binary_cross_entropy(p, y, w, reduction="none"), mr.binary_cross_entropy(p, y, w)
        ),
    )
    _record("binary_cross_entropy", worst)


def _pm1(size, rng):
    return np.where(rng.uniform(size=size) < 0.5, -1.0, 1.0)


@pytest.mark.parametrize("margin", [1.0, 0.3, 0.0])
def test_hinge_losses_within_4_ulp(margin):
    t = _pm1(LOGITS.size, np.random.default_rng(RNG_SEED + 4))
    worst = assert_ulp_close(
        C.hinge_loss(LOGITS, t, margin, reduction="none"), mr.hinge(LOGITS, t, margin)
    )
    _record("hinge_loss", worst)
    worst = assert_ulp_close(
        C.squared_hinge_loss(LOGITS, t, margin, reduction="none"),
        mr.squared_hinge(LOGITS, t, margin),
    )
    _record("squared_hinge_loss", worst)


def test_square_loss_within_4_ulp():
    t = _pm1(LOGITS.size, np.random.default_rng(RNG_SEED + 5))
    x = np.concatenate([LOGITS, 1 + np.logspace(-15, -1, 10), 1 - np.logspace(-16, -1, 10)])
    t = np.concatenate([t, np.ones(20)])
    _record("square_loss", assert_ulp_close(C.square_loss(x, t, reduction="none"), mr.square(x, t)))


@pytest.mark.parametrize("base", [2.0, np.e, 10.0, 1.5, 0.5])
def test_logistic_loss_within_4_ulp(base):
    t = _pm1(LOGITS.size, np.random.default_rng(RNG_SEED + 6))
    loss = C.logistic_loss(LOGITS, t, base=base, reduction="none")
    _record("logistic_loss", assert_ulp_close(loss, mr.logistic(LOGITS, t, base)))


def test_zero_one_loss_values():
    x = np.array([2.0, -2.0, 0.0, -0.0, 1e-300, -1e4, np.nan])
    t = np.array([1.0, 1.0, 1.0, -1.0, -1.0, -1.0, 1.0])
    np.testing.assert_array_equal(
        C.zero_one_loss(x, t, reduction="none"), [0.0, 1.0, 1.0, 1.0, 1.0, 0.0, np.nan]
    )
    assert C.zero_one_loss(x[:6], t[:6]) == np.float64(4 / 6)


# --- PyTorch / torchvision semantics, as explicit formulas ------------------------------------------


def test_bce_clamps_each_log_at_minus_100():
    p = np.array([0.0, 1.0, 0.0, 1.0, 1e-50, 0.3])
    y = np.array([1.0, 0.0, 0.0, 1.0, 1.0, 0.25])
    expected = [100.0, 100.0, 0.0, 0.0, 100.0, -(0.25 * np.log(0.3) + 0.75 * np.log(0.7))]
    np.testing.assert_allclose(C.binary_cross_entropy(p, y, reduction="none"), expected, rtol=1e-15)


def test_bce_weight_broadcasts_and_mean_is_plain():
    rng = np.random.default_rng(RNG_SEED + 7)
    p, y = rng.uniform(0.05, 0.95, (4, 3)), rng.uniform(0, 1, (4, 3))
    w = np.array([0.5, 2.0, 1.5])
    per = -w * (y * np.log(p) + (1 - y) * np.log(1 - p))
    np.testing.assert_allclose(C.binary_cross_entropy(p, y, w, reduction="none"), per, rtol=1e-13)
    np.testing.assert_allclose(C.binary_cross_entropy(p, y, w), per.sum() / 12, rtol=1e-13)


def test_bce_with_logits_pos_weight_formula():
    rng = np.random.default_rng(RNG_SEED + 8)
    x, y = rng.normal(0, 3, (5, 3)), rng.uniform(0, 1, (5, 3))
    w, pw = rng.uniform(0.2, 2, (5, 1)), np.array([1.0, 3.0, 0.5])
    s = 1 / (1 + np.exp(-x))
    expected = -w * (pw * y * np.log(s) + (1 - y) * np.log(1 - s))
    got = C.binary_cross_entropy_with_logits(x, y, w, pw, reduction="none")
    np.testing.assert_allclose(got, expected, rtol=1e-12)
    np.testing.assert_allclose(
        C.binary_cross_entropy_with_logits(x, y, w, pw), expected.mean(), rtol=1e-12
    )


@pytest.mark.parametrize("alpha", [None, 0.25, 0.0, 1.0])
def test_sigmoid_focal_loss_torchvision_formula(alpha):
    rng = np.random.default_rng(RNG_SEED + 9)
    x = rng.normal(0, 3, 30)
    y = np.concatenate([rng.integers(0, 2, 20).astype(float), rng.uniform(0, 1, 10)])
    p = 1 / (1 + np.exp(-x))
    ce = -(y * np.log(p) + (1 - y) * np.log(1 - p))
    p_t = p * y + (1 - p) * (1 - y)
    expected = ce * (1 - p_t) ** 1.5
    if alpha is not None:
        expected = (alpha * y + (1 - alpha) * (1 - y)) * expected
    got = C.sigmoid_focal_loss(x, y, alpha=alpha, gamma=1.5, reduction="none")
    np.testing.assert_allclose(got, expected, rtol=1e-10)
    np.testing.assert_allclose(
        C.sigmoid_focal_loss(x, y, alpha=alpha, gamma=1.5, reduction="sum"),
        expected.sum(),
        rtol=1e-10,
    )


def test_margin_loss_formulas():
    x = np.array([-2.0, -0.5, 0.0, 0.5, 1.0, 3.0])
    t = np.array([1.0, -1.0, 1.0, 1.0, 1.0, -1.0])
    u = t * x
    np.testing.assert_array_equal(C.hinge_loss(x, t, reduction="none"), np.maximum(0, 1 - u))
    np.testing.assert_array_equal(
        C.hinge_loss(x, t, margin=2.0, reduction="none"), np.maximum(0, 2 - u)
    )
    np.testing.assert_array_equal(
        C.squared_hinge_loss(x, t, reduction="none"), np.maximum(0, 1 - u) ** 2
    )
    np.testing.assert_array_equal(C.square_loss(x, t, reduction="none"), (1 - u) ** 2)
    np.testing.assert_allclose(
        C.logistic_loss(x, t, reduction="none"), np.log2(1 + np.exp(-u)), rtol=1e-15
    )
    # base 2 passes through 1 at the margin 0, like the 0-1 loss it bounds
    assert C.logistic_loss([0.0], [1.0], reduction="sum") == 1.0


# --- gradients ------------------------------------------------------------------------------------


def _benign_case(rng, shape=(3, 4)):
    return rng.normal(0, 2, shape), rng.uniform(0, 1, shape), rng.uniform(0.2, 2, shape[-1:])


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_bce_grad_matches_finite_differences(reduction):
    rng = np.random.default_rng(RNG_SEED + 10)
    p, y = rng.uniform(0.05, 0.95, (3, 4)), rng.uniform(0, 1, (3, 4))
    for weight in (None, rng.uniform(0.2, 2, 4)):
        assert_gradient_matches(
            C.binary_cross_entropy,
            C.binary_cross_entropy_grad,
            [p, y, weight],
            kwargs={"reduction": reduction},
        )


def test_bce_grad_rule_near_0_and_1():
    p = np.array([0.3, 1e-6, 1 - 1e-6, 1e-20, 1e-40, 1e-50, 0.0, 1.0, 1 - 2.0**-53])
    y = np.array([0.2, 1.0, 0.0, 1.0, 1.0, 1.0, 0.0, 1.0, 0.0])
    grad = C.binary_cross_entropy_grad(p, y, reduction="none")
    # PyTorch's backward (p - y) / max(p (1 - p), 1e-12) where p (1 - p) >= 1e-12
    torch_rule = (p - y) / np.maximum(p * (1 - p), 1e-12)
    np.testing.assert_allclose(grad[:3], torch_rule[:3], rtol=1e-12)
    # closer to 0 or 1: the derivative of the loss itself, -y/p while log p >= -100 ...
    np.testing.assert_allclose(grad[3:5], -1 / p[3:5], rtol=1e-15)
    # ... and 0 through a clamped log (e^-100 = 3.7e-44 > 1e-50), while the unclamped log of
    # the other term keeps its derivative: 1/(1 - p) = 1 at p = 0 and -1/p = -1 at p = 1
    np.testing.assert_array_equal(grad[5:8], [0.0, 1.0, -1.0])
    np.testing.assert_allclose(grad[8], 2.0**53, rtol=1e-15)


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_bce_with_logits_grad_matches_finite_differences(reduction):
    rng = np.random.default_rng(RNG_SEED + 11)
    x, y, pw = _benign_case(rng)
    for weight, pos_weight in [(None, None), (rng.uniform(0.2, 2, (3, 1)), None), (None, pw)]:
        assert_gradient_matches(
            C.binary_cross_entropy_with_logits,
            C.binary_cross_entropy_with_logits_grad,
            [x, y, weight, pos_weight],
            kwargs={"reduction": reduction},
        )
    assert_gradient_matches(
        C.binary_cross_entropy_with_logits,
        C.binary_cross_entropy_with_logits_grad,
        [x, y, rng.uniform(0.2, 2, (3, 4)), pw],
        kwargs={"reduction": reduction},
    )


def test_bce_with_logits_grad_is_sigmoid_minus_y_by_sympy():
    z, y, c = sp.symbols("z y c", real=True)
    s = 1 / (1 + sp.exp(-z))
    nll = -(y * sp.log(s) + (1 - y) * sp.log(1 - s))
    derivative = sp.diff(nll, z)
    assert sp.simplify(derivative - (s - y)) == 0
    rng = np.random.default_rng(RNG_SEED + 12)
    x, yv = rng.normal(0, 4, 20), rng.uniform(0, 1, 20)
    grad = C.binary_cross_entropy_with_logits_grad(x, yv, reduction="none")
    assert_matches_sympy(derivative, [z, y], [x, yv], grad, rtol=1e-12, atol=1e-15)
    # with pos_weight c: d/dz of -(c y log s + (1 - y) log(1 - s))
    weighted = sp.diff(-(c * y * sp.log(s) + (1 - y) * sp.log(1 - s)), z)
    assert sp.simplify(weighted - ((1 - y) * s - c * y * (1 - s))) == 0
    grad_c = C.binary_cross_entropy_with_logits_grad(x, yv, pos_weight=2.5, reduction="none")
    assert_matches_sympy(weighted, [z, y, c], [x, yv, 2.5], grad_c, rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize(("alpha", "gamma"), [(0.25, 2.0), (None, 0.5), (0.7, 0.0), (None, 3.0)])
def test_focal_grad_matches_finite_differences(reduction, alpha, gamma):
    rng = np.random.default_rng(RNG_SEED + 13)
    x, y, _ = _benign_case(rng)
    y[0] = [0.0, 1.0, 0.0, 1.0]
    assert_gradient_matches(
        C.sigmoid_focal_loss,
        C.sigmoid_focal_loss_grad,
        [x, y, alpha, gamma],
        kwargs={"reduction": reduction},
    )


@pytest.mark.parametrize("gamma", [0.1, 0.5, 0.9, 2.0])
def test_focal_grad_against_mpmath_derivative_in_the_tails(gamma):
    x = np.array([-60.0, -25.0, -8.0, 8.0, 25.0, 60.0, 300.0])
    for y in (np.ones_like(x), np.zeros_like(x), np.full_like(x, 0.3)):
        grad = C.sigmoid_focal_loss_grad(x, y, alpha=0.25, gamma=gamma, reduction="none")
        expected = mr.sigmoid_focal_loss_derivative(x, y, 0.25, gamma)
        np.testing.assert_allclose(grad, np.array(expected, dtype=np.float64), rtol=1e-13, atol=0.0)


@pytest.mark.parametrize("gamma", [0.05, 0.5, 0.99])
def test_focal_stable_for_gamma_below_one(gamma):
    # the chain rule's (1 - p_t)^(gamma - 1) is infinite where 1 - p_t underflows
    mag = np.logspace(-3, 4, 30)
    x = np.concatenate([mag, -mag, [0.0, 745.0, -745.0, 1e4, -1e4]])
    for y in (np.ones_like(x), np.zeros_like(x), np.full_like(x, 0.5), np.full_like(x, 1e-300)):
        for alpha in (None, 0.25):
            loss = C.sigmoid_focal_loss(x, y, alpha, gamma, reduction="none")
            grad = C.sigmoid_focal_loss_grad(x, y, alpha, gamma, reduction="none")
            assert np.all(np.isfinite(loss)) and np.all(loss >= 0)
            assert np.all(np.isfinite(grad))
    # the modulated loss where 1 - p_t underflows in float64: (e^-800)^0.5 ~ e^-400 times ce
    y = np.array([1.0])
    grad = C.sigmoid_focal_loss_grad([-5.0], y, None, gamma, reduction="sum")
    assert grad < 0  # a wrong prediction is still pushed up


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_margin_grads_match_finite_differences(reduction):
    rng = np.random.default_rng(RNG_SEED + 14)
    x = rng.normal(0, 2, (3, 4))
    t = _pm1((3, 4), rng)
    # keep clear of the hinge kinks t x = margin, where finite differences average two slopes
    x = np.where(np.abs(t * x - 1.0) < 0.05, x + 0.2, x)
    x = np.where(np.abs(t * x - 0.5) < 0.05, x + 0.2, x)
    kw = {"reduction": reduction}
    for loss, grad, extra in [
        (C.hinge_loss, C.hinge_loss_grad, [1.0]),
        (C.hinge_loss, C.hinge_loss_grad, [0.5]),
        (C.squared_hinge_loss, C.squared_hinge_loss_grad, [1.0]),
        (C.squared_hinge_loss, C.squared_hinge_loss_grad, [0.5]),
        (C.square_loss, C.square_loss_grad, []),
        (C.logistic_loss, C.logistic_loss_grad, [2.0]),
        (C.logistic_loss, C.logistic_loss_grad, [np.e]),
        (C.logistic_loss, C.logistic_loss_grad, [0.5]),
    ]:
        assert_gradient_matches(loss, grad, [x, t, *extra], kwargs=kw)


def test_hinge_subgradient_at_the_kink_is_zero():
    x = np.array([1.0, -1.0, 0.5, -0.5])
    t = np.array([1.0, -1.0, 1.0, -1.0])
    np.testing.assert_array_equal(C.hinge_loss_grad(x, t, reduction="none"), [0, 0, -1, 1])
    np.testing.assert_array_equal(
        C.hinge_loss_grad(x, t, margin=0.5, reduction="none"), [0, 0, 0, 0]
    )
    np.testing.assert_array_equal(C.squared_hinge_loss_grad(x, t, reduction="none"), [0, 0, -1, 1])


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
def test_hinge_grad_is_nan_exactly_where_the_score_is(dtype):
    # long enough for several blocks; NaNs in one block only, next to +-inf and the kink
    rng = np.random.default_rng(3)
    n = 200_000
    x = rng.normal(0, 2, n).astype(dtype)
    t = np.where(rng.random(n) < 0.5, -1, 1).astype(dtype)
    x[[70_000, 70_001, 70_002, 70_003]] = [np.nan, np.inf, -np.inf, 1.0]
    t[[70_001, 70_002, 70_003]] = [-1, 1, 1]
    nan = np.isnan(x)
    grad = C.hinge_loss_grad(x, t, reduction="sum")
    # -t [1 - t x > 0], from exact comparisons of the rounded inputs
    active = 1.0 - t.astype(np.float64) * x.astype(np.float64) > 0
    expected = np.where(nan, np.nan, np.where(active, -t.astype(np.float64), 0.0))
    np.testing.assert_array_equal(grad, expected.astype(dtype))
    assert not np.signbit(grad[~nan & ~active]).any()  # a zero gradient is +0
    values = C.hinge_loss(x, t, reduction="none")
    np.testing.assert_array_equal(np.isnan(values), nan)


def test_logistic_grad_closed_form():
    x = np.array([-3.0, 0.0, 2.0, 40.0])
    t = np.array([1.0, -1.0, -1.0, 1.0])
    with mpmath.workdps(50):
        expected = [
            float(-ti / (1 + mpmath.exp(ti * xi)) / mpmath.log(2))
            for xi, ti in zip(x, t, strict=True)
        ]
    np.testing.assert_allclose(C.logistic_loss_grad(x, t, reduction="none"), expected, rtol=1e-14)


# --- properties (hypothesis) ----------------------------------------------------------------------

_finite = st.floats(-50, 50, allow_nan=False, allow_subnormal=False)
_logit_arrays = hnp.arrays(
    np.float64, hnp.array_shapes(min_dims=1, max_dims=2, max_side=5), elements=_finite
)


def _rng_from(x):
    return np.random.default_rng(zlib.crc32(x.tobytes()))


@settings(max_examples=40, deadline=None)
@given(_logit_arrays, st.floats(0.0, 1.0), st.floats(0.0, 4.0))
def test_all_losses_non_negative(x, alpha, gamma):
    rng = _rng_from(x)
    y, t = rng.uniform(0, 1, x.shape), _pm1(x.shape, rng)
    p = sigmoid(x)
    for value in [
        C.binary_cross_entropy(p, y, reduction="none"),
        C.binary_cross_entropy_with_logits(x, y, rng.uniform(0, 2, x.shape), reduction="none"),
        C.sigmoid_focal_loss(x, y, alpha, gamma, reduction="none"),
        C.sigmoid_focal_loss(x, y, None, gamma, reduction="none"),
        C.hinge_loss(x, t, reduction="none"),
        C.squared_hinge_loss(x, t, reduction="none"),
        C.square_loss(x, t, reduction="none"),
        C.logistic_loss(x, t, reduction="none"),
        C.logistic_loss(x, t, base=10.0, reduction="none"),
        C.zero_one_loss(x, t, reduction="none"),
    ]:
        assert np.all(value >= 0)


@settings(max_examples=40, deadline=None)
@given(_logit_arrays)
def test_logistic_base_e_is_bce_with_logits(x):
    t = _pm1(x.shape, _rng_from(x))
    np.testing.assert_allclose(
        C.logistic_loss(x, t, base=np.e, reduction="none"),
        C.binary_cross_entropy_with_logits(x, (1 + t) / 2, reduction="none"),
        rtol=4 * np.finfo(np.float64).eps,
    )
    np.testing.assert_allclose(
        C.logistic_loss_grad(x, t, base=np.e, reduction="none"),
        C.binary_cross_entropy_with_logits_grad(x, (1 + t) / 2, reduction="none"),
        rtol=4 * np.finfo(np.float64).eps,
        atol=1e-300,
    )


@settings(max_examples=40, deadline=None)
@given(hnp.arrays(np.float64, st.integers(1, 8), elements=st.floats(-15, 15)))
def test_bce_on_sigmoid_is_bce_with_logits_where_the_clamp_is_inactive(x):
    y = _rng_from(x).uniform(0, 1, x.shape)
    # sigmoid(x) is rounded; log1p(-p) amplifies that by up to 1/(1-p) <= e^15
    np.testing.assert_allclose(
        C.binary_cross_entropy(sigmoid(x), y, reduction="none"),
        C.binary_cross_entropy_with_logits(x, y, reduction="none"),
        rtol=1e-8,
    )


@settings(max_examples=40, deadline=None)
@given(_logit_arrays)
def test_focal_with_gamma_0_and_no_alpha_is_bce_with_logits(x):
    y = _rng_from(x).uniform(0, 1, x.shape)
    y[..., 0] = 1.0
    np.testing.assert_allclose(
        C.sigmoid_focal_loss(x, y, alpha=None, gamma=0.0, reduction="none"),
        C.binary_cross_entropy_with_logits(x, y, reduction="none"),
        rtol=2 * np.finfo(np.float64).eps,
    )
    np.testing.assert_allclose(
        C.sigmoid_focal_loss_grad(x, y, alpha=None, gamma=0.0, reduction="none"),
        C.binary_cross_entropy_with_logits_grad(x, y, reduction="none"),
        # (1 - y) sigma(x) - y sigma(-x) cancels for soft labels: compare on the terms' scale
        rtol=2 * np.finfo(np.float64).eps,
        atol=4 * np.finfo(np.float64).eps,
    )


def _all_cases(x, rng):
    """(loss, grad or None, args) for every function, on logits x."""
    y, t = rng.uniform(0, 1, x.shape), _pm1(x.shape, rng)
    w = rng.uniform(0.2, 2, x.shape[-1:]).astype(x.dtype)
    p = rng.uniform(0.05, 0.95, x.shape).astype(x.dtype)
    y = y.astype(x.dtype)
    t = t.astype(x.dtype)
    return [
        (C.binary_cross_entropy, C.binary_cross_entropy_grad, [p, y, w]),
        (C.binary_cross_entropy_with_logits, C.binary_cross_entropy_with_logits_grad, [x, y, w, w]),
        (C.sigmoid_focal_loss, C.sigmoid_focal_loss_grad, [x, y, 0.25, 2.0]),
        (C.sigmoid_focal_loss, C.sigmoid_focal_loss_grad, [x, y, None, 0.5]),
        (C.hinge_loss, C.hinge_loss_grad, [x, t, 1.0]),
        (C.squared_hinge_loss, C.squared_hinge_loss_grad, [x, t, 1.0]),
        (C.square_loss, C.square_loss_grad, [x, t]),
        (C.logistic_loss, C.logistic_loss_grad, [x, t, 2.0]),
        (C.zero_one_loss, None, [x, t]),
    ]


@settings(max_examples=25, deadline=None)
@given(_logit_arrays)
def test_reductions_agree(x):
    for loss, grad, args in _all_cases(x, _rng_from(x)):
        per = loss(*args, reduction="none")
        assert per.shape == x.shape
        total = loss(*args, reduction="sum")
        np.testing.assert_allclose(total, per.sum(), rtol=1e-12, atol=1e-300)
        np.testing.assert_allclose(loss(*args, reduction="mean"), total / x.size, rtol=1e-12)
        if grad is not None:
            np.testing.assert_allclose(
                grad(*args, reduction="mean"), grad(*args, reduction="sum") / x.size, rtol=1e-12
            )
            np.testing.assert_array_equal(
                grad(*args, reduction="none"), grad(*args, reduction="sum")
            )


@settings(max_examples=15, deadline=None)
@given(
    hnp.arrays(
        np.float32,
        hnp.array_shapes(min_dims=1, max_dims=2, max_side=4),
        elements=st.floats(-30, 30, width=32),
    ),
    st.sampled_from(REDUCTIONS),
)
def test_float32_in_float32_out(x, reduction):
    for loss, grad, args in _all_cases(x, _rng_from(x)):
        value = loss(*args, reduction=reduction)
        assert value.dtype == np.float32, loss.__name__
        if reduction != "none":
            assert isinstance(value, np.float32), loss.__name__
        if grad is not None:
            g = grad(*args, reduction=reduction)
            assert g.dtype == np.float32 and g.shape == args[0].shape, grad.__name__
    # float64 data promote a float32 input, as NumPy does
    assert C.hinge_loss(x, np.ones(x.shape)).dtype == np.float64
    assert C.binary_cross_entropy_with_logits([1, 0], [1, 0]).dtype == np.float64


def test_inputs_are_never_modified():
    rng = np.random.default_rng(RNG_SEED + 16)
    x = rng.normal(0, 3, (3, 4))
    for reduction in REDUCTIONS:
        for loss, grad, args in _all_cases(x, rng):
            copies = [a.copy() if isinstance(a, np.ndarray) else a for a in args]
            loss(*args, reduction=reduction)
            if grad is not None:
                grad(*args, reduction=reduction)
            for a, c in zip(args, copies, strict=True):
                if isinstance(a, np.ndarray):
                    np.testing.assert_array_equal(a, c)


def test_nan_propagates():
    rng = np.random.default_rng(RNG_SEED + 17)
    x = rng.normal(0, 3, (2, 4))
    for loss, grad, args in _all_cases(x, rng):
        args = [a.copy() if isinstance(a, np.ndarray) else a for a in args]
        args[0][0, 1] = np.nan
        per = loss(*args, reduction="none")
        assert np.isnan(per[0, 1]) and not np.isnan(per[1]).any(), loss.__name__
        assert np.isnan(loss(*args, reduction="mean")), loss.__name__
        if grad is not None:
            g = grad(*args, reduction="none")
            assert np.isnan(g[0, 1]) and not np.isnan(g[1]).any(), grad.__name__
    # NaN soft targets too
    y = np.array([0.5, np.nan])
    assert np.isnan(C.binary_cross_entropy_with_logits([1.0, 1.0], y, reduction="none")[1])
    assert np.isnan(C.binary_cross_entropy([0.5, 0.5], y, reduction="none")[1])
    assert np.isnan(C.sigmoid_focal_loss_grad([1.0, 1.0], y, reduction="none")[1])


def test_empty_mean_is_nan_and_infinite_logits_are_exact():
    empty = np.zeros((0, 3))
    assert np.isnan(C.binary_cross_entropy_with_logits(empty, empty))
    assert C.hinge_loss(empty, empty, reduction="sum") == 0.0
    assert C.hinge_loss_grad(empty, empty).shape == (0, 3)
    x, y = np.array([np.inf, -np.inf, np.inf]), np.array([1.0, 0.0, 0.0])
    np.testing.assert_array_equal(
        C.binary_cross_entropy_with_logits(x, y, reduction="none"), [0.0, 0.0, np.inf]
    )
    np.testing.assert_array_equal(
        C.binary_cross_entropy_with_logits_grad(x, y, reduction="none"), [0.0, 0.0, 1.0]
    )


# --- bad input --------------------------------------------------------------------------------------

X, Y, T = np.zeros((2, 3)), np.full((2, 3), 0.5), np.ones((2, 3))


@pytest.mark.parametrize(
    ("call", "pattern"),
    [
        (
            lambda: C.binary_cross_entropy(Y, Y, reduction="avg"),
            r"reduction must be one of .*'avg'",
        ),
        (lambda: C.hinge_loss_grad(X, T, reduction=None), r"reduction must be one of .*None"),
        (lambda: C.binary_cross_entropy(Y, Y[0]), r"target must have the same shape .*\(3,\)"),
        (lambda: C.binary_cross_entropy_with_logits(X, Y[:1]), r"target must have the same shape"),
        (lambda: C.sigmoid_focal_loss_grad(X, Y.T), r"target must have the same shape"),
        (lambda: C.square_loss(X, T[:, :1]), r"target must have the same shape"),
        (lambda: C.binary_cross_entropy(Y + 1, Y), r"input must lie in \[0, 1\]; got .*1\.5"),
        (lambda: C.binary_cross_entropy_grad(-Y, Y), r"input must lie in \[0, 1\]; got .*-0\.5"),
        (lambda: C.binary_cross_entropy(Y, Y * 3), r"target must lie in \[0, 1\]; got .*1\.5"),
        (lambda: C.binary_cross_entropy_with_logits(X, -Y), r"target must lie in \[0, 1\]"),
        (lambda: C.sigmoid_focal_loss(X, Y + 2), r"target must lie in \[0, 1\]; got .*2\.5"),
        (lambda: C.hinge_loss(X, Y), r"target must hold labels in \{-1, \+1\}; got .*0\.5"),
        (
            lambda: C.logistic_loss_grad(X, 0 * T),
            r"target must hold labels in \{-1, \+1\}; got .*0",
        ),
        (lambda: C.zero_one_loss(X, 2 * T), r"target must hold labels .*got .*2"),
        (lambda: C.squared_hinge_loss(X, Y), r"target must hold labels"),
        (lambda: C.square_loss_grad(X, Y), r"target must hold labels"),
        (lambda: C.sigmoid_focal_loss(X, Y, alpha=1.5), r"alpha must be a number in \[0, 1\]; got"),
        (lambda: C.sigmoid_focal_loss_grad(X, Y, alpha=-0.25), r"alpha must be .*got -0\.25"),
        (lambda: C.sigmoid_focal_loss(X, Y, gamma=-1.0), r"gamma must be a non-negative .*got -1"),
        (lambda: C.sigmoid_focal_loss_grad(X, Y, gamma=np.nan), r"gamma must be .*got nan"),
        (
            lambda: C.binary_cross_entropy(Y, Y, weight=np.ones(2)),
            r"weight must broadcast .*\(2,\)",
        ),
        (
            lambda: C.binary_cross_entropy_with_logits_grad(X, Y, weight=np.ones((3, 3))),
            r"weight must broadcast to the shape of input \(2, 3\); got shape \(3, 3\)",
        ),
        (
            lambda: C.binary_cross_entropy_with_logits(X, Y, pos_weight=np.ones(4)),
            r"pos_weight must broadcast to the shape of input \(2, 3\); got shape \(4,\)",
        ),
        (lambda: C.logistic_loss(X, T, base=1.0), r"base must be a finite number > 0 .*got 1\.0"),
        (lambda: C.logistic_loss_grad(X, T, base=-2.0), r"base must be .*got -2\.0"),
        (lambda: C.logistic_loss(X, T, base=0), r"base must be .*got 0"),
        (lambda: C.hinge_loss(X, T, margin=np.inf), r"margin must be a finite real number; got"),
        (lambda: C.binary_cross_entropy_with_logits(X, np.array(["a"] * 3)), r"target must be"),
    ],
)
def test_bad_input_raises_value_error_naming_the_argument(call, pattern):
    with pytest.raises(ValueError, match=pattern):
        call()


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_focal_in_several_blocks(monkeypatch, dtype, reduction):
    # evaluated block by block: blocks of 4 elements here, the last one short; the losses
    # are reduced and the gradient written per block, against mpmath
    from lossutils import _binary

    monkeypatch.setattr(_binary, "_FOCAL_BLOCK", 4)
    x = np.array([-30.0, -4.0, -1.0, -0.25, 0.0, 0.5, 2.0, 6.0, 20.0, 3.0, -2.0]).astype(dtype)
    y = np.array([1.0, 0.0, 1.0, 0.3, 1.0, 0.0, 1.0, 0.0, 1.0, 0.7, 0.0]).astype(dtype)
    value, grad = C.sigmoid_focal_loss_value_and_grad(x, y, 0.25, 2.0, reduction)
    assert np.asarray(value).dtype == grad.dtype == dtype and grad.shape == x.shape
    xs, ys = x.astype(np.float64), y.astype(np.float64)
    exact = mr.sigmoid_focal_loss(xs, ys, 0.25, 2.0)
    slope = np.array(mr.sigmoid_focal_loss_derivative(xs, ys, 0.25, 2.0), dtype=object)
    if reduction == "mean":
        with mpmath.workdps(mr.DIGITS):
            slope = np.array([v / x.size for v in slope], dtype=object)
    # soft labels raise a rounded q to the power: 2 + 1.5 (1 + gamma) ULP for the value
    # (the documented bound), a few more for the gradient (6.4 in float64 here)
    mr.assert_ulp_in(grad, slope, dtype, max_ulp=8)
    mr.assert_ulp_in(value, mr.reduced(exact, reduction), dtype, max_ulp=6.5)


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("broadcast", [False, True])
def test_binary_cross_entropy_in_several_blocks(monkeypatch, dtype, reduction, broadcast):
    # evaluated block by block: blocks of 4 of the 15 elements here (the last one short),
    # with clamped logs (p = 0, p = 1) in some blocks; a weight of the input's shape or one
    # that broadcasts; against mpmath
    from lossutils import _binary

    monkeypatch.setattr(_binary, "_BCE_BLOCK", 4)
    p = np.array([0.5, 1e-3, 0.0, 0.9, 0.25, 1.0, 0.01, 0.75, 0.3, 0.999, 0.6, 0.1, 0.2, 0.8, 0.4])
    y = np.array([1.0, 0.0, 0.0, 1.0, 0.3, 1.0, 1.0, 0.0, 0.5, 1.0, 0.0, 1.0, 0.0, 0.9, 1.0])
    p, y = p.astype(dtype).reshape(3, 5), y.astype(dtype).reshape(3, 5)
    w = np.array([0.5, 2.0, 1.0, 3.0, 0.25]).astype(dtype)
    if not broadcast:
        w = np.tile(w, (3, 1))
    value, grad = C.binary_cross_entropy_value_and_grad(p, y, w, reduction)
    assert np.asarray(value).dtype == grad.dtype == dtype and grad.shape == p.shape
    ps, ys, ws = (np.broadcast_to(a, p.shape).astype(np.float64).ravel() for a in (p, y, w))
    exact = np.asarray(mr.binary_cross_entropy(ps, ys, ws), dtype=object).reshape(p.shape)
    mr.assert_ulp_in(value, mr.reduced(exact, reduction), dtype, max_ulp=4)
    with mpmath.workdps(mr.DIGITS):
        slope = np.empty(ps.size, dtype=object)
        for i, (pi, yi, wi) in enumerate(zip(ps, ys, ws, strict=True)):
            pi, yi, wi = mpmath.mpf(pi), mpmath.mpf(yi), mpmath.mpf(wi)
            d_pos = -yi / pi if pi > 0 else 0  # a clamped log has no slope
            d_neg = (1 - yi) / (1 - pi) if pi < 1 else 0
            slope[i] = wi * (d_pos + d_neg) / (ps.size if reduction == "mean" else 1)
    mr.assert_ulp_in(grad.ravel(), slope, dtype, max_ulp=4)


@pytest.mark.parametrize("dtype", [np.float16, np.float32])
@pytest.mark.parametrize(("alpha", "gamma"), [(0.25, 2.0), (None, 0.5), (1.0, 0.0), (0.6, 3.5)])
def test_focal_hard_labels_in_plain_float64_for_narrow_dtypes(dtype, alpha, gamma):
    # float32 and float16 results of hard labels are formed in plain float64 (no
    # double-double power): within 1 ULP of the exact value, over both tails
    x = np.concatenate([-np.geomspace(100, 1e-3, 12), [0.0], np.geomspace(1e-3, 100, 12)])
    x = x.astype(dtype)
    xs = x.astype(np.float64)
    for label in (0.0, 1.0):
        y = np.full_like(x, label)
        value, grad = C.sigmoid_focal_loss_value_and_grad(x, y, alpha, gamma, "none")
        ys = y.astype(np.float64)
        mr.assert_ulp_in(value, mr.sigmoid_focal_loss(xs, ys, alpha, gamma), dtype, max_ulp=1)
        slope = np.array(mr.sigmoid_focal_loss_derivative(xs, ys, alpha, gamma), dtype=object)
        mr.assert_ulp_in(grad, slope, dtype, max_ulp=1)
    # infinite logits: the limits (a confident right answer costs 0, a wrong one inf)
    x = np.array([np.inf, -np.inf, np.inf, -np.inf], dtype=dtype)
    y = np.array([1.0, 0.0, 0.0, 1.0], dtype=dtype)
    value, grad = C.sigmoid_focal_loss_value_and_grad(x, y, alpha, gamma, "none")
    w_pos, w_neg = (1.0, 1.0) if alpha is None else (alpha, 1 - alpha)  # alpha_t; 0 masks
    np.testing.assert_array_equal(value, [0, 0, np.inf if w_neg else 0, np.inf])
    np.testing.assert_array_equal(grad, np.array([0, 0, w_neg, -w_pos], dtype=dtype))


# --- weights above 1 on float32 and float16: subnormal losses, overflowing weighted losses -------


def _mp_bce_logits_slope(x, y, w, c):
    """d/dx of w [c y softplus(-x) + (1 - y) softplus(x)], by mpmath."""
    out = []
    with mpmath.workdps(60):
        for xi, yi, wi, ci in zip(*np.broadcast_arrays(x, y, w, c), strict=True):
            xm, ym, wm, cm = (mpmath.mpf(float(v)) for v in (xi, yi, wi, ci))
            s_pos, s_neg = 1 / (1 + mpmath.exp(-xm)), 1 / (1 + mpmath.exp(xm))
            out.append(float(wm * ((1 - ym) * s_pos - cm * ym * s_neg)))
    return np.array(out)


@pytest.mark.parametrize("dtype", [np.float32, np.float16])
@pytest.mark.parametrize("where", ["weight", "pos_weight"])
def test_bce_with_logits_weight_above_one_on_a_subnormal_loss(dtype, where):
    # the loss e^-x is subnormal in the dtype; a weight above 1 must not lift its rounding
    top = 103.0 if dtype == np.float32 else 17.0
    x = np.linspace(top - 16, top, 41).astype(dtype)
    rng = np.random.default_rng(RNG_SEED + 7)
    w = (2.0 ** rng.uniform(1, 12, x.size)).astype(dtype)
    y, one = np.ones_like(x), np.ones_like(x)
    kwargs = {where: w}
    weight, pos_weight = (w, one) if where == "weight" else (one, w)
    value, grad = C.binary_cross_entropy_with_logits_value_and_grad(
        x, y, reduction="none", **kwargs
    )
    assert value.dtype == grad.dtype == dtype
    ref = mr.binary_cross_entropy_with_logits(
        x.astype(float), y.astype(float), weight.astype(float), pos_weight.astype(float)
    )
    assert_ulp_close(value, ref, dtype=dtype)
    slope = _mp_bce_logits_slope(x, y, weight, pos_weight)
    assert_ulp_close(grad, slope, dtype=dtype)


def test_weighted_means_overflow_only_if_the_exact_mean_does():
    f = np.float32
    p, y, w = (
        np.array([1e-10, 0.5, 0.5, 0.5], f),
        np.array([1.0, 0, 0, 0], f),
        np.array([1.5e37, 1, 1, 1], f),
    )
    exact = np.mean(mr.binary_cross_entropy(p.astype(float), y.astype(float), w.astype(float)))
    assert_ulp_close(C.binary_cross_entropy(p, y, w), exact, dtype=f)
    x = np.array([[20407.619140625, -8134.1953125], [-7652.83251953125, 12207.681640625],
                  [7900.5234375, 13253.9169921875]], f)  # fmt: skip
    t = np.array([[1.0, 0.0], [0.0, 0.9990000128746033], [0.0, 1.0]], f)
    w2 = np.array([[2.0, 8.5070586659632215e37]], f)
    ref = mr.binary_cross_entropy_with_logits(
        x.astype(float), t.astype(float), np.broadcast_to(w2, x.shape).astype(float), 1.0
    )
    for reduction in ("mean", "sum"):
        got = C.binary_cross_entropy_with_logits(x, t, w2, None, reduction)
        want = np.mean(ref) if reduction == "mean" else np.sum(ref)
        if want < np.finfo(f).max:  # (the sum exceeds float32: its inf is exact)
            assert_ulp_close(got, want, dtype=f)
    grad = C.binary_cross_entropy_with_logits_grad(x, t, w2, None, "mean")
    slope = _mp_bce_logits_slope(
        x.reshape(-1), t.reshape(-1), np.broadcast_to(w2, x.shape).reshape(-1), 1.0
    )
    assert_ulp_close(grad.reshape(-1), slope / x.size, dtype=f)


def test_float64_weighted_mean_overflows_only_if_the_exact_mean_does():
    # each weighted loss near the largest float: the first overflows, the mean does not
    x, y = np.array([-8.186598515214158, 0.0, 0.0, 0.0]), np.array([1.0, 0, 0, 0])
    w = np.array([4.4942328371557893e307])
    exact = mpmath.fsum(
        mpmath.mpf(v) for v in mr.binary_cross_entropy_with_logits(x, y, w / 4, 1.0)
    )
    value, grad = C.binary_cross_entropy_with_logits_value_and_grad(x, y, w, reduction="mean")
    assert_ulp_close(value, float(exact))
    assert_ulp_close(grad, _mp_bce_logits_slope(x, y, w / 4, 1.0))
    assert np.isinf(C.binary_cross_entropy_with_logits(x, y, w * 2, reduction="mean"))


def test_float64_mean_with_a_huge_pos_weight_or_probability_weight_stays_finite():
    big = 2.0**1022
    x, y = np.array([-8.186598515214158, 0.0, 0.0, 0.0]), np.array([1.0, 0, 0, 0])
    for w, c in ((None, [big, 1, 1, 1]), ([2.0, 1, 1, 1], [big / 2, 1, 1, 1])):
        ref = mr.binary_cross_entropy_with_logits(
            x, y, np.asarray(1.0 if w is None else w) / 4, np.asarray(c)
        )
        got = C.binary_cross_entropy_with_logits(x, y, w, np.asarray(c), reduction="mean")
        assert_ulp_close(got, float(mpmath.fsum(mpmath.mpf(v) for v in ref)))
    p, t, w = np.array([np.exp(-8.0), 0.5, 0.5, 0.5]), y, np.array([big, 1, 1, 1])
    ref = mr.binary_cross_entropy(p, t, w / 4)
    got = C.binary_cross_entropy(p, t, w, reduction="mean")
    assert_ulp_close(got, float(mpmath.fsum(mpmath.mpf(v) for v in ref)))
    assert np.isinf(C.binary_cross_entropy(p, t, 2 * w, reduction="mean"))


def test_float64_mean_gradient_with_a_huge_weight_stays_finite():
    # weight times the derivative overflows; the mean's gradient (divided by 4) does not
    x, y = np.array([0.0, 0, 0, 0]), np.array([1.0, 0, 0, 0])
    w, c = np.array([1e308, 1, 1, 1]), np.array([4.0, 1, 1, 1])
    grad = C.binary_cross_entropy_with_logits_grad(x, y, w, c, reduction="mean")
    assert_ulp_close(grad, _mp_bce_logits_slope(x, y, w / 4, c))
    p, w2 = np.array([0.5, 0.5, 0.5, 0.5]), np.array([1.5e308, 1, 1, 1])
    grad = C.binary_cross_entropy_grad(p, y, w2, reduction="mean")
    exact = [-mpmath.mpf(1.5e308) * 2 / 4, 0.5, 0.5, 0.5]  # w (p - y) / (p (1 - p)) / 4
    assert_ulp_close(grad, np.array([float(e) for e in exact]))
    c[0] = 40.0  # the exact first entry is beyond the largest float
    assert np.isneginf(C.binary_cross_entropy_with_logits_grad(x, y, w, c)[0])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_signed_losses_on_two_threads_give_the_bits_of_one_thread(dtype, monkeypatch):
    # 1.2e6 scores: spans of about a megabyte on up to two threads, each with its own
    # buffers; the spans' sums are added in order, so nothing depends on the threads
    rng = np.random.default_rng(RNG_SEED + 9)
    x = (30 * rng.standard_normal(1_200_000)).astype(dtype)
    t = rng.choice([-1.0, 1.0], x.size).astype(dtype)
    calls = [
        (C.square_loss_value_and_grad, ()),
        (C.logistic_loss_value_and_grad, (2.0,)),
        (C.logistic_loss_value_and_grad, (np.e,)),
        (C.hinge_loss_value_and_grad, (1.0,)),
    ]
    results = {}
    for workers in (1, 2):
        monkeypatch.setattr(_blocks, "WORKERS", workers)
        results[workers] = [f(x, t, *a, reduction=r) for f, a in calls for r in REDUCTIONS]
    for (v1, g1), (v2, g2) in zip(results[1], results[2], strict=True):
        np.testing.assert_array_equal(v1, v2, strict=True)
        np.testing.assert_array_equal(g1, g2, strict=True)


@pytest.mark.parametrize("base", [2.0, 0.5, 1.1, np.e, 10.0])
def test_float64_logistic_mean_of_losses_beyond_the_range_is_finite(base):
    # softplus(1.7e308) / ln b is beyond float64's range for |ln b| < 0.94, but the mean
    # over two elements (or three) is not; the sum is then beyond the range too
    x = np.array([-1.7e308, 0.0, 3.0])
    t = np.array([1.0, 1.0, -1.0])
    with mpmath.workdps(60):
        terms = [
            mpmath.log1p(mpmath.exp(-a * b)) / mpmath.log(base) for a, b in zip(x, t, strict=True)
        ]
        exact = {"mean": mpmath.fsum(terms) / 3, "sum": mpmath.fsum(terms)}
    for reduction in ("mean", "sum"):
        got = C.logistic_loss(x, t, base=base, reduction=reduction)
        assert np.array_equal(got, C.logistic_loss_value_and_grad(x, t, base, reduction)[0])
        assert_ulp_close(np.array([got]), np.array([exact[reduction]], dtype=object), max_ulp=4)


@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_float64_weighted_bce_of_products_of_both_signs_that_overflow(reduction):
    # weights of 3 and -3 on losses of 0.9 and 0.8 of the largest float: the products
    # overflow to inf and -inf and the mean (and the sum) was NaN, exact 1.3e307 (5.4e307)
    top = np.finfo(np.float64).max
    x, y = np.array([-0.9 * top, -0.8 * top, 0.0, 0.0]), np.ones(4)
    w = np.array([3.0, -3.0, 1.0, 1.0])
    divisor = 4 if reduction == "mean" else 1
    ref = mr.binary_cross_entropy_with_logits(x, y, w / divisor, 1.0)
    exact = float(mpmath.fsum(mpmath.mpf(v) for v in ref))
    got = C.binary_cross_entropy_with_logits(x, y, w, reduction=reduction)
    assert_ulp_close(got, exact)
    got = C.binary_cross_entropy_with_logits(x, y, None, w, reduction=reduction)  # pos_weight
    assert_ulp_close(got, exact)
    # probabilities: losses of 1.5 and -log 0.25 = 1.39 under weights of +-top, which
    # cancel to 0.11 top: within a few ULP of the largest product (over the divisor)
    p, t = np.array([np.exp(-1.5), 0.75, 0.5, 0.5]), np.array([1.0, 0, 0, 0])
    ref = mr.binary_cross_entropy(p, t, np.array([top, -top, 1, 1]) / divisor)
    got = C.binary_cross_entropy(p, t, np.array([top, -top, 1, 1]), reduction)
    exact = mpmath.fsum(mpmath.mpf(v) for v in ref)
    assert np.isfinite(got)
    largest = max(abs(mpmath.mpf(v)) for v in ref)  # (beyond the range for the sum)
    unit = mpmath.mpf(2) ** (mpmath.floor(mpmath.log(largest, 2)) - 52)
    assert abs(mpmath.mpf(float(got)) - exact) <= 4 * unit, (got, exact)
