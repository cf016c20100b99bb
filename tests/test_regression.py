"""Tests for lossutils.regression.

Expected values come from the textbook / PyTorch formulas evaluated in mpmath at
high precision (``mp_reference``), written out again here in NumPy where an
exact comparison is possible, from SymPy, and from finite differences.
"""

import math

import mp_reference as ref
import numpy as np
import pytest
import sympy as sp
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from lossutils import regression as R
from lossutils.testing import (
    assert_gradient_matches,
    assert_matches_sympy,
    assert_ulp_close,
    ulp_error,
)

REDUCTIONS = ("mean", "sum", "none")


# ---------------------------------------------------------------- residual sweeps


def _signed(rng, values):
    signs = np.where(rng.random(values.shape) < 0.5, -1.0, 1.0)
    return np.concatenate([values, signs * values])


def _sweep(rng):
    """Residuals over the hard regimes: tiny, moderate, near 1 and the defaults, huge."""
    tiny = 10.0 ** rng.uniform(-300, -5, 150)
    moderate = 10.0 ** rng.uniform(-5, 3, 150)
    near_one = 1.0 + rng.uniform(-1, 1, 60) * 10.0 ** rng.uniform(-16, -1, 60)
    huge = 10.0 ** rng.uniform(3, 300, 60)
    edges = np.array([0.0, 5e-324, 1e-300, 1e300, 1.7e308, 1.0, np.nextafter(1.0, 0)])
    return _signed(rng, np.concatenate([tiny, moderate, near_one, huge, edges]))


RESIDUALS = _sweep(np.random.default_rng(20240601))


def _near(rng, delta, n=40):
    """Residuals within a few ULP to a few percent of the transition |r| = delta."""
    rel = rng.uniform(-1, 1, n) * 10.0 ** rng.uniform(-16, -1, n)
    steps = [np.nextafter(delta, 0), delta, np.nextafter(delta, np.inf)]
    return _signed(rng, np.concatenate([delta * (1 + rel), steps]))


def _pairs(rng, r):
    """(input, target) pairs with these residuals: target 0 (exact), and a random target."""
    y = rng.normal(size=r.shape)
    x = y + r  # rounded: the reference uses the exact difference of these floats
    return [(r, np.zeros_like(r)), (x, y)]


WORST = {}


def _check(name, actual, expected, max_ulp=4.0):
    worst = assert_ulp_close(actual, expected, max_ulp=max_ulp, label=name)
    WORST[name] = max(WORST.get(name, 0.0), worst)


@pytest.mark.parametrize("which", [0, 1])
def test_accuracy_of_residual_losses(rng, which):
    r = RESIDUALS
    x, y = _pairs(rng, r)[which]
    with np.errstate(over="ignore"):  # x - y overflows only where the true loss does too
        _check("mse_loss", R.mse_loss(x, y, "none"), ref.mse(x, y))
        _check("l1_loss", R.l1_loss(x, y, "none"), ref.l1(x, y))
        _check("log_cosh_loss", R.log_cosh_loss(x, y, "none"), ref.log_cosh(x, y))
        for d in (1.0, 0.37, 1e3):
            _check("huber_loss", R.huber_loss(x, y, d, "none"), ref.huber(x, y, d))
            _check("smooth_l1_loss", R.smooth_l1_loss(x, y, d, "none"), ref.smooth_l1(x, y, d))


@pytest.mark.parametrize("threshold", [1.0, 0.37, 2.5e-300, 1e200])
def test_accuracy_near_the_huber_transition(rng, threshold):
    r = _near(rng, threshold)
    y = np.zeros_like(r)
    with np.errstate(over="ignore"):  # r^2 / 2 near 1e200 overflows: so does the exact loss
        huber = R.huber_loss(r, y, threshold, "none")
    _check("huber_loss", huber, ref.huber(r, y, threshold))
    _check(
        "smooth_l1_loss",
        R.smooth_l1_loss(r, y, threshold, "none"),
        ref.smooth_l1(r, y, threshold),
    )


def test_log_cosh_on_a_dense_grid_and_at_its_branch_point(rng):
    r = np.concatenate([np.linspace(0, 40, 2001), _near(rng, 1.0, 100)])
    y = np.zeros_like(r)
    _check("log_cosh_loss", R.log_cosh_loss(r, y, "none"), ref.log_cosh(r, y))
    # The textbook forms fail where this one does not.
    with np.errstate(over="ignore"):
        assert np.isinf(np.log(np.cosh(1e300)))
    naive = 1e-10 + np.log1p(np.exp(-2e-10)) - np.log(2)
    assert ulp_error(naive, ref.log_cosh(1e-10, 0.0)) > 1e3
    assert float(R.log_cosh_loss(1e300, 0.0)) == 1e300


# ------------------------------------------------ Gaussian / Laplace NLL accuracy


def _nll_cases(rng):
    """Residuals and variances covering clamped, tiny, moderate and huge variances."""
    n = 400
    v = 10.0 ** rng.uniform(-12, 12, n)
    v[:20] = rng.uniform(0, 1e-6, 20)  # clamped at eps
    r = np.sqrt(v) * 10.0 ** rng.uniform(-8, 4, n) * rng.choice([-1.0, 1.0], n)
    # Residuals tuned so that r^2 / v ~ -log v: the two terms nearly cancel.
    vc = 10.0 ** rng.uniform(-12, -0.01, n)
    rc = np.sqrt(-vc * np.log(vc)) * (1 + rng.uniform(-1e-3, 1e-3, n))
    return np.concatenate([r, rc]), np.concatenate([v, vc])


NLL_R, NLL_V = _nll_cases(np.random.default_rng(20240602))


def _terms(r, v, eps, full, kind):
    """Magnitudes of the terms that are added (float64 is enough for a scale)."""
    vc = np.maximum(v, eps)
    if kind == "gaussian":
        return 0.5 * (np.abs(np.log(vc)) + r * r / vc + (math.log(2 * math.pi) if full else 0))
    return np.abs(np.log(vc)) + np.abs(r) / vc + (math.log(2) if full else 0)


@pytest.mark.parametrize("kind", ["gaussian", "laplace"])
@pytest.mark.parametrize("full", [False, True])
def test_accuracy_of_likelihood_losses(kind, full):
    eps = 1e-6
    r, v = NLL_R, NLL_V
    y = np.zeros_like(r)
    loss_fn = R.gaussian_nll_loss if kind == "gaussian" else R.laplace_nll_loss
    ref_fn = ref.gaussian_nll if kind == "gaussian" else ref.laplace_nll
    actual = loss_fn(r, y, v, full=full, eps=eps, reduction="none")
    expected = ref_fn(r, y, v, eps, float(full))
    scale = _terms(r, v, eps, full, kind)
    exact = np.array([float(e) for e in expected])
    # Condition of the sum of the terms: how much the cancellation magnifies their rounding.
    condition = scale / np.abs(exact)
    errors = ulp_error(actual, expected)
    # Everywhere: within a few ULP of the size of the terms (backward stable).
    scaled = errors * np.spacing(np.abs(exact)) / np.spacing(scale)
    assert scaled.max() <= 4, f"{scaled.max()} ULP of the terms"
    # Away from cancellation (condition <= 2): within a few ULP of the result itself.
    calm = condition <= 2
    assert calm.sum() > 300
    name = f"{kind}_nll_loss{' full' if full else ''}"
    _check(name, actual[calm], expected[calm])
    WORST[name + " (ULP of terms, all)"] = float(scaled.max())
    WORST[name + " (max condition)"] = float(condition.max())


def test_likelihood_losses_on_python_scalars_and_huge_values():
    # r^2 / v evaluated as r * (r / v): no spurious overflow of r^2.
    x, v = np.array([1e200]), np.array([1e300])
    _check("gaussian_nll_loss", R.gaussian_nll_loss(x, 0 * x, v, reduction="none"),
           ref.gaussian_nll(x, 0 * x, v, 1e-6, 0.0))  # fmt: skip
    with np.errstate(over="ignore"):  # the true loss, 5e399, overflows
        assert np.isinf(R.gaussian_nll_loss(1e200, 0.0, 1.0))


# ---------------------------------------------------------------- PyTorch semantics


def _piecewise_huber(r, delta):
    a = np.abs(r)
    return np.where(a < delta, 0.5 * r**2, delta * (a - 0.5 * delta))


def test_huber_and_smooth_l1_follow_the_pytorch_formulas(rng):
    r = np.array([-3.0, -1.0, -0.999, -0.25, 0.0, 0.5, 1.0, 1.5, 7.0])
    y = rng.normal(size=r.shape).round(3)
    x = y + r
    rr = x - y
    for d in (1.0, 0.5, 2.0):
        np.testing.assert_allclose(R.huber_loss(x, y, d, "none"), _piecewise_huber(rr, d))
        expected = np.where(np.abs(rr) < d, 0.5 * rr**2 / d, np.abs(rr) - 0.5 * d)
        np.testing.assert_allclose(R.smooth_l1_loss(x, y, d, "none"), expected)
    # beta = 0 is exactly L1 (PyTorch dispatches to l1_loss), and so is its gradient.
    np.testing.assert_array_equal(R.smooth_l1_loss(x, y, 0.0, "none"), np.abs(rr))
    np.testing.assert_array_equal(R.smooth_l1_loss_grad(x, y, 0, "none"), np.sign(rr))
    assert R.smooth_l1_loss(x, y, beta=0.0) == R.l1_loss(x, y)


def test_subgradient_at_the_kinks_is_zero_as_in_pytorch():
    x = np.array([2.0, 2.0, 2.0])
    y = np.array([2.0, 1.0, 3.0])
    assert R.l1_loss_grad(x, y, "none").tolist() == [0.0, 1.0, -1.0]
    assert R.smooth_l1_loss_grad(x, y, 0.0, "none").tolist() == [0.0, 1.0, -1.0]
    g_input, g_scale = R.laplace_nll_loss_grad(x, y, 2.0, reduction="none")
    assert g_input.tolist() == [0.0, 0.5, -0.5]
    # The Huber gradient is continuous at |r| = delta: both sides give delta * sign(r).
    assert R.huber_loss_grad([1.0, -1.0], [0.0, 0.0], 1.0, "sum").tolist() == [1.0, -1.0]


VAR_SHAPES = {"same": (3, 4), "last1": (3, 1), "0-d": (), "float": None}


def _var(rng, shape_key, low=0.5, high=2.0):
    shape = VAR_SHAPES[shape_key]
    if shape is None:
        return float(rng.uniform(low, high))
    return rng.uniform(low, high, shape)


@pytest.mark.parametrize("shape_key", list(VAR_SHAPES))
@pytest.mark.parametrize("full", [False, True])
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_gaussian_nll_follows_the_pytorch_formula(rng, shape_key, full, reduction):
    x, y = rng.normal(size=(3, 4)), rng.normal(size=(3, 4))
    var = _var(rng, shape_key, 1e-8, 2.0)  # some entries below eps are clamped
    eps = 0.1
    v = np.maximum(np.asarray(var), eps)  # PyTorch: var.clamp(min=eps), then broadcast
    per = 0.5 * (np.log(v) + (x - y) ** 2 / v) + (0.5 * np.log(2 * np.pi) if full else 0.0)
    expected = {"mean": per.mean(), "sum": per.sum(), "none": per}[reduction]
    actual = R.gaussian_nll_loss(x, y, var, full=full, eps=eps, reduction=reduction)
    assert np.shape(actual) == np.shape(expected)
    np.testing.assert_allclose(actual, expected, rtol=1e-14)
    per_b = np.log(v) + np.abs(x - y) / v + (np.log(2) if full else 0.0)
    expected_b = {"mean": per_b.mean(), "sum": per_b.sum(), "none": per_b}[reduction]
    actual_b = R.laplace_nll_loss(x, y, var, full=full, eps=eps, reduction=reduction)
    np.testing.assert_allclose(actual_b, expected_b, rtol=1e-14)


@pytest.mark.parametrize("kind", ["gaussian", "laplace"])
def test_clamped_variance_gets_the_gradient_at_eps(kind):
    # PyTorch clamps a clone of var in place under no_grad: the clamp is invisible to
    # autograd, so the gradient is d/dv of the loss evaluated at v = eps (straight through).
    x = np.array([0.3, -1.0, 0.0, 2.0])
    y = np.array([0.0, 0.5, 0.0, 1.0])
    var = np.array([0.0, 1e-9, 0.5e-2, 0.2])
    eps = 1e-2
    r, v = x - y, np.maximum(var, eps)
    if kind == "gaussian":
        g_in, g_var = R.gaussian_nll_loss_grad(x, y, var, eps=eps, reduction="sum")
        np.testing.assert_allclose(g_in, r / v, rtol=1e-15)
        np.testing.assert_allclose(g_var, 0.5 * (1 / v - r**2 / v**2), rtol=1e-14)
    else:
        g_in, g_var = R.laplace_nll_loss_grad(x, y, var, eps=eps, reduction="sum")
        np.testing.assert_allclose(g_in, np.sign(r) / v, rtol=1e-15)
        np.testing.assert_allclose(g_var, 1 / v - np.abs(r) / v**2, rtol=1e-14)
    assert np.all(g_var[:3] != 0)  # not zeroed where the clamp is active


# ---------------------------------------------------------------- gradients


def _away_from(r, points, gap=1e-3):
    """Move residuals at least ``gap`` away from the kinks in ``points``."""
    for p in points:
        for sign in (-1.0, 1.0):
            close = np.abs(r - sign * p) < gap
            r = np.where(close, r + 3 * gap, r)
    return r


SIMPLE = {
    "mse_loss": (R.mse_loss, R.mse_loss_grad, {}),
    "l1_loss": (R.l1_loss, R.l1_loss_grad, {}),
    "huber_loss": (R.huber_loss, R.huber_loss_grad, {"delta": 0.7}),
    "smooth_l1_loss": (R.smooth_l1_loss, R.smooth_l1_loss_grad, {"beta": 0.7}),
    "smooth_l1_loss beta=0": (R.smooth_l1_loss, R.smooth_l1_loss_grad, {"beta": 0.0}),
    "log_cosh_loss": (R.log_cosh_loss, R.log_cosh_loss_grad, {}),
}


@pytest.mark.parametrize("name", list(SIMPLE))
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_gradients_match_finite_differences(rng, name, reduction):
    loss, grad, kwargs = SIMPLE[name]
    y = rng.normal(size=(3, 4))
    x = y + _away_from(rng.normal(scale=1.5, size=(3, 4)), [0.0, 0.7])
    assert_gradient_matches(loss, grad, [x, y], kwargs={**kwargs, "reduction": reduction})


@pytest.mark.parametrize("kind", ["gaussian", "laplace"])
@pytest.mark.parametrize("shape_key", list(VAR_SHAPES))
@pytest.mark.parametrize("full", [False, True])
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_likelihood_gradients_match_finite_differences(rng, kind, shape_key, full, reduction):
    loss, grad = {
        "gaussian": (R.gaussian_nll_loss, R.gaussian_nll_loss_grad),
        "laplace": (R.laplace_nll_loss, R.laplace_nll_loss_grad),
    }[kind]
    y = rng.normal(size=(3, 4))
    x = y + _away_from(rng.normal(size=(3, 4)), [0.0])
    var = _var(rng, shape_key)
    kwargs = {"full": full, "reduction": reduction}
    g_input, g_var = grad(x, y, var, **kwargs)
    assert np.shape(g_var) == np.shape(var) and g_input.shape == x.shape
    if shape_key == "float":
        # A Python float is not an array the differences can perturb: go through a 0-d array.
        numeric = grad(x, y, np.array(var), **kwargs)[1]
        np.testing.assert_allclose(g_var, numeric, rtol=1e-15)
        var = np.array(var)
    assert_gradient_matches(loss, grad, [x, y, var], argnums=(0, 2), kwargs=kwargs)


@pytest.mark.parametrize("kind", ["gaussian", "laplace"])
def test_var_gradient_where_clamped_is_the_finite_difference_at_the_clamped_value(kind):
    loss, grad = {
        "gaussian": (R.gaussian_nll_loss, R.gaussian_nll_loss_grad),
        "laplace": (R.laplace_nll_loss, R.laplace_nll_loss_grad),
    }[kind]
    x, y = np.array([[0.5, -0.2], [1.0, 0.1]]), np.zeros((2, 2))
    eps = 0.25
    var = np.array([[0.0], [0.1]])  # both clamped
    clamped = np.maximum(var, eps)
    g_in, g_var = grad(x, y, var, eps=eps, reduction="mean")
    # "As if var were the clamped value": the unclamped loss, differentiated at max(var, eps).
    unclamped = {"eps": 0.0, "reduction": "mean"}
    assert_gradient_matches(
        loss, lambda *a, **k: (g_in, g_var), [x, y, clamped], argnums=(0, 2), kwargs=unclamped
    )
    e_in, e_var = grad(x, y, clamped, **unclamped)
    np.testing.assert_array_equal(g_in, e_in)
    np.testing.assert_array_equal(g_var, e_var)


def test_closed_form_gradients_agree_with_sympy(rng):
    x, y = sp.symbols("x y", real=True)
    v = sp.Symbol("v", positive=True)
    r = x - y
    xs, ys = rng.normal(size=20), rng.normal(size=20)
    vs = rng.uniform(0.1, 3.0, 20)

    d_mse = sp.diff(r**2, x)
    assert sp.simplify(d_mse - 2 * r) == 0
    assert_matches_sympy(d_mse, [x, y], [xs, ys], R.mse_loss_grad(xs, ys, "none"))

    d_lc = sp.diff(sp.log(sp.cosh(r)), x)
    assert sp.simplify(d_lc - sp.tanh(r)) == 0
    assert_matches_sympy(d_lc, [x, y], [xs, ys], R.log_cosh_loss_grad(xs, ys, "none"))

    nll = -sp.expand_log(sp.log(sp.exp(-(r**2) / (2 * v)) / sp.sqrt(2 * sp.pi * v)), force=True)
    d_x, d_v = sp.diff(nll, x), sp.diff(nll, v)
    assert sp.simplify(d_x - r / v) == 0
    assert sp.simplify(d_v - sp.Rational(1, 2) * (1 / v - r**2 / v**2)) == 0
    g_in, g_var = R.gaussian_nll_loss_grad(xs, ys, vs, full=True, reduction="none")
    assert_matches_sympy(d_x, [x, y, v], [xs, ys, vs], g_in)
    assert_matches_sympy(d_v, [x, y, v], [xs, ys, vs], g_var)


def test_likelihood_losses_are_the_negative_log_densities(rng):
    from sympy.stats import Laplace, Normal, density

    x, y = sp.symbols("x y", real=True)
    s = sp.Symbol("s", positive=True)
    xs, ys = rng.normal(size=20), rng.normal(size=20)
    vs = rng.uniform(0.1, 3.0, 20)
    gauss = -sp.log(density(Normal("Y", x, sp.sqrt(s)))(y))
    got = R.gaussian_nll_loss(xs, ys, vs, full=True, reduction="none")
    assert_matches_sympy(gauss, [x, y, s], [xs, ys, vs], got)
    lap = -sp.log(density(Laplace("Y", x, s))(y))
    got = R.laplace_nll_loss(xs, ys, vs, full=True, reduction="none")
    assert_matches_sympy(lap, [x, y, s], [xs, ys, vs], got)
    # Without `full`, the constants are dropped.
    diff = R.laplace_nll_loss(xs, ys, vs, reduction="none") - got
    np.testing.assert_allclose(diff, -np.log(2), rtol=1e-13)


# ---------------------------------------------------------------- properties

FINITE = st.floats(-1e6, 1e6, allow_nan=False, width=64)
ARRAYS = hnp.arrays(np.float64, hnp.array_shapes(max_dims=2, max_side=5), elements=FINITE)
POSITIVE = st.floats(1e-3, 1e3)


@settings(max_examples=60, deadline=None)
@given(ARRAYS, POSITIVE)
def test_non_negativity(x, delta):
    y = np.zeros_like(x)
    for loss in (R.mse_loss, R.l1_loss, R.log_cosh_loss):
        assert np.all(loss(x, y, "none") >= 0)
    assert np.all(R.huber_loss(x, y, delta, "none") >= 0)
    assert np.all(R.smooth_l1_loss(x, y, delta, "none") >= 0)


@settings(max_examples=60, deadline=None)
@given(ARRAYS, POSITIVE)
def test_smooth_l1_is_huber_over_delta(x, b):
    y = np.zeros_like(x)
    np.testing.assert_allclose(
        R.smooth_l1_loss(x, y, b, "none"),
        R.huber_loss(x, y, b, "none") / b,
        rtol=1e-15,
        atol=1e-290,  # Huber's r^2 / 2 is subnormal for |r| < 1e-154
    )
    np.testing.assert_allclose(
        R.smooth_l1_loss_grad(x, y, b, "none"), R.huber_loss_grad(x, y, b, "none") / b, rtol=4e-16
    )


@settings(max_examples=60, deadline=None)
@given(ARRAYS)
def test_huber_limits(x):
    y = np.zeros_like(x)
    big = 1e7  # beyond every |r|: Huber is half the squared error (optax.l2_loss)
    # 0.5 r r and (r r) / 2 round differently where r^2 is subnormal: allow one step there
    tiny = np.finfo(np.float64).smallest_subnormal
    np.testing.assert_allclose(
        R.huber_loss(x, y, big, "none"), R.mse_loss(x, y, "none") / 2, atol=tiny
    )
    np.testing.assert_allclose(
        R.huber_loss_grad(x, y, big, "sum"), R.mse_loss_grad(x, y, "sum") / 2, atol=tiny
    )
    delta = 1e-3  # far out (|r| >= delta): delta * (l1 - delta / 2)
    far = np.abs(x) >= delta
    np.testing.assert_allclose(
        (R.huber_loss(x, y, delta, "none") / delta)[far],
        (R.l1_loss(x, y, "none") - delta / 2)[far],
        rtol=1e-15,
    )
    np.testing.assert_array_equal(
        R.huber_loss(x, y, 1.0, "none")[np.abs(x) >= 1],
        (R.l1_loss(x, y, "none") - 0.5)[np.abs(x) >= 1],
    )


ALL_LOSSES = {
    **{k: (f, g, kw, ()) for k, (f, g, kw) in SIMPLE.items()},
    "gaussian_nll_loss": (R.gaussian_nll_loss, R.gaussian_nll_loss_grad, {}, ("var",)),
    "laplace_nll_loss": (R.laplace_nll_loss, R.laplace_nll_loss_grad, {}, ("scale",)),
}


def _call_args(extra, x, dtype):
    return [np.ones(x.shape[:-1] + (1,), dtype=dtype) * dtype(0.8) for _ in extra]


@pytest.mark.parametrize("name", list(ALL_LOSSES))
@settings(max_examples=15, deadline=None)
@given(x=hnp.arrays(np.float32, (2, 3), elements=st.floats(-100, 100, width=32)))
def test_float32_stays_float32_and_reductions_agree(name, x):
    loss, grad, kwargs, extra = ALL_LOSSES[name]
    y = np.linspace(-1, 1, x.size, dtype=np.float32).reshape(x.shape)
    args = [x, y, *_call_args(extra, x, np.float32)]
    for reduction in REDUCTIONS:
        value = loss(*args, **kwargs, reduction=reduction)
        assert value.dtype == np.float32
        grads = grad(*args, **kwargs, reduction=reduction)
        for g, a in zip(grads if extra else (grads,), [x, *args[2:]], strict=True):
            assert g.dtype == np.float32 and g.shape == a.shape
    # Reductions in float64, where the sums can be compared tightly.
    args64 = [a.astype(np.float64) for a in args]
    per = loss(*args64, **kwargs, reduction="none")
    np.testing.assert_allclose(loss(*args64, **kwargs, reduction="sum"), per.sum(), rtol=1e-13)
    np.testing.assert_allclose(
        loss(*args64, **kwargs, reduction="mean"), per.sum() / per.size, rtol=1e-13
    )
    g_none = grad(*args64, **kwargs, reduction="none")
    g_mean = grad(*args64, **kwargs, reduction="mean")
    for a, b in zip(g_none if extra else (g_none,), g_mean if extra else (g_mean,), strict=True):
        np.testing.assert_allclose(b, a / per.size, rtol=1e-13)


def test_mixed_and_integer_dtypes():
    x32 = np.array([1.0, 2.0], dtype=np.float32)
    assert R.mse_loss(x32, np.array([0, 1])).dtype == np.float64  # integer data is float64
    assert R.mse_loss([1, 2], [0, 0]).dtype == np.float64
    assert R.gaussian_nll_loss(x32, x32 * 0, 2.0).dtype == np.float32  # Python scalar is weak
    g_in, g_var = R.gaussian_nll_loss_grad(x32, x32 * 0, 2.0)
    assert g_in.dtype == np.float32 and g_var.dtype == np.float32 and g_var.shape == ()
    g_in, g_var = R.gaussian_nll_loss_grad([1, 2], [0, 0], np.array([2], dtype=np.int64))
    assert g_in.dtype == np.float64 and g_var.dtype == np.float64 and g_var.shape == (1,)


# ---------------------------------------------------------------- bad input, NaN, purity


@pytest.mark.parametrize("name", list(ALL_LOSSES))
def test_bad_reduction_and_shape_mismatch(name):
    loss, grad, kwargs, extra = ALL_LOSSES[name]
    x, y = np.ones((2, 3)), np.zeros((2, 3))
    more = [1.0 for _ in extra]
    for f in (loss, grad):
        with pytest.raises(ValueError, match=r"reduction must be one of .*'mean'.*got 'avg'"):
            f(x, y, *more, **kwargs, reduction="avg")
        with pytest.raises(ValueError, match=r"target must have the same shape as input \(2, 3\)"):
            f(x, np.zeros((1, 3)), *more, **kwargs)
        with pytest.raises(ValueError, match=r"target .* got shape \(3,\)"):
            f(x, np.zeros(3), *more, **kwargs)


@pytest.mark.parametrize(
    "loss, name",
    [
        (R.gaussian_nll_loss, "var"),
        (R.gaussian_nll_loss_grad, "var"),
        (R.laplace_nll_loss, "scale"),
        (R.laplace_nll_loss_grad, "scale"),
    ],
)
def test_bad_var_or_scale(loss, name):
    x, y = np.ones((2, 3)), np.zeros((2, 3))
    with pytest.raises(ValueError, match=rf"{name} must be non-negative; got .*-0.5"):
        loss(x, y, np.array([[1.0], [-0.5]]))
    with pytest.raises(ValueError, match=rf"{name} must be non-negative"):
        loss(x, y, -1.0)
    # PyTorch would unsqueeze a (2,) var; here it is refused rather than broadcast wrongly
    # (a (3,) var would broadcast along the last axis, a (2,) one not at all).
    for shape in [(2,), (3,), (2, 3, 1), (1, 2, 3), (2, 2), (3, 1)]:
        with pytest.raises(
            ValueError,
            match=rf"{name} must broadcast to the shape of input \(2, 3\) with as many "
            rf"dimensions \(each equal to input's or 1\), or be a scalar; "
            rf"got shape {re_shape(shape)}",
        ):
            loss(x, y, np.ones(shape))
    with pytest.raises(ValueError, match=rf"one dimension short: pass {name}\[\.\.\., None\]"):
        loss(x, y, np.ones(2))
    with pytest.raises(ValueError, match=r"eps must be a non-negative finite number; got -1e-06"):
        loss(x, y, 1.0, eps=-1e-6)
    with pytest.raises(ValueError, match=rf"{name} must be a real numeric array"):
        loss(x, y, "one")


def re_shape(shape):
    return str(shape).replace("(", r"\(").replace(")", r"\)")


@pytest.mark.parametrize("f", [R.huber_loss, R.huber_loss_grad])
@pytest.mark.parametrize("delta", [0.0, -1.0, np.inf, np.nan, "1", True])
def test_bad_delta(f, delta):
    with pytest.raises(ValueError, match=r"delta must be a positive finite number; got "):
        f([1.0], [0.0], delta)


@pytest.mark.parametrize("f", [R.smooth_l1_loss, R.smooth_l1_loss_grad])
@pytest.mark.parametrize("beta", [-1.0, -1e-300, np.inf, None])
def test_bad_beta(f, beta):
    with pytest.raises(ValueError, match=r"beta must be a non-negative finite number; got "):
        f([1.0], [0.0], beta)


@pytest.mark.parametrize("name", list(ALL_LOSSES))
def test_nan_propagates_and_inputs_are_not_modified(name):
    loss, grad, kwargs, extra = ALL_LOSSES[name]
    x = np.array([[1.0, np.nan, -2.0], [0.5, 3.0, -1e-3]])
    y = np.array([[0.0, 1.0, np.nan], [0.0, -2.0, 1.0]])
    more = [np.array([[np.nan], [0.5]]) for _ in extra]
    originals = [a.copy() for a in (x, y, *more)]
    for a in (x, y, *more):
        a.flags.writeable = False  # an in-place write would raise
    per = loss(x, y, *more, **kwargs, reduction="none")
    expected_nan = np.isnan(x) | np.isnan(y)
    if extra:
        expected_nan = expected_nan | np.isnan(more[0])
    np.testing.assert_array_equal(np.isnan(per), expected_nan)
    assert np.isnan(loss(x, y, *more, **kwargs))
    grads = grad(x, y, *more, **kwargs, reduction="sum")
    g_in = grads[0] if extra else grads
    assert np.all(np.isnan(g_in[expected_nan]))
    for a, b in zip((x, y, *more), originals, strict=True):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("name", list(ALL_LOSSES))
def test_mean_over_no_elements_is_nan(name):
    loss, grad, kwargs, extra = ALL_LOSSES[name]
    x = np.zeros((0, 2))
    more = [1.0 for _ in extra]
    assert np.isnan(loss(x, x, *more, **kwargs))
    assert loss(x, x, *more, **kwargs, reduction="sum") == 0
    g = grad(x, x, *more, **kwargs)
    assert (g[0] if extra else g).shape == (0, 2)
