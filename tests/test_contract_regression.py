"""The accuracy contract of the regression losses and the penalties, in every dtype.

Every loss and every gradient is compared, entry by entry, with mpmath evaluated
exactly at the same rounded inputs (``mp_reference``), the error measured in ULP of
the output dtype, over the hard regimes of each dtype: residuals from its smallest
subnormal to its largest number, the transitions of Huber and smooth L1, variances
and scales below and above the floor. The issue cases come first, with their right
values written out.
"""

from __future__ import annotations

import math

import mp_reference as ref
import mpmath
import numpy as np
import pytest

from lossutils import regression as R
from lossutils import regularization as P

DTYPES = [np.float16, np.float32, np.float64]
REDUCTIONS = ("mean", "sum", "none")


def _rounds_to(value, dtype):
    """The float ``value`` rounded once to ``dtype`` (the right answer of a dtype)."""
    return float(np.float64(value).astype(dtype))


# ---------------------------------------------------------------- the reported cases


@pytest.mark.parametrize("shape", [(65520,), (256, 256)])
def test_float16_mean_over_many_elements(shape):
    # 65,520 rounds to inf in float16 and the float16 sum of the losses overflows:
    # the mean used to be 0. The right values are those of one element.
    x = np.full(shape, 0.5, dtype=np.float16)
    y = np.zeros(shape, dtype=np.float16)
    n = math.prod(shape)
    expected = {
        "mse_loss": 0.25,
        "l1_loss": 0.5,
        "huber_loss": 0.125,
        "smooth_l1_loss": 0.125,
        "log_cosh_loss": math.log(math.cosh(0.5)),
    }
    for name, value in expected.items():
        loss = getattr(R, name)
        mean = loss(x, y)
        assert mean.dtype == np.float16
        assert float(mean) == _rounds_to(value, np.float16), name
        total = loss(x, y, reduction="sum")
        assert ref.ulp_in(total, mpmath.mpf(value) * n, np.float16) <= 1, name
    # gradients: d/dx of the mean is the per-element derivative over n (subnormal in float16)
    derivative = {
        "mse_loss": 1.0,
        "l1_loss": 1.0,
        "huber_loss": 0.5,
        "smooth_l1_loss": 0.5,
        "log_cosh_loss": math.tanh(0.5),
    }
    for name, value in derivative.items():
        grad = getattr(R, name + "_grad")(x, y)
        assert grad.dtype == np.float16 and grad.shape == shape
        assert np.all(grad == grad.flat[0]), name
        assert ref.ulp_in(grad.flat[0], mpmath.mpf(value) / n, np.float16) <= 1, name


def test_float16_variance_losses_over_many_elements():
    x = np.full((256, 256), 0.5, dtype=np.float16)
    y = np.zeros_like(x)
    var = np.full((256, 1), 0.25, dtype=np.float16)
    # 0.5 (log 0.25 + 0.25 / 0.25) and log 0.25 + 0.5 / 0.25
    assert float(R.gaussian_nll_loss(x, y, var)) == _rounds_to(
        0.5 * (math.log(0.25) + 1), np.float16
    )
    assert float(R.laplace_nll_loss(x, y, var)) == _rounds_to(math.log(0.25) + 2, np.float16)


def test_overflow_is_silent_and_only_where_the_result_overflows():
    # pytest turns warnings into errors: none may escape
    assert R.mse_loss([1e200], [0.0]) == np.inf
    assert R.mse_loss_grad([1e200], [0.0]) == 2e200
    assert np.isnan(R.mse_loss([np.inf], [np.inf]))
    # the float16 square of 256 overflows; the loss of the float32-rounded result does not
    x16, zero = np.float16([256.0]), np.float16([0.0])
    assert R.gaussian_nll_loss(x16, zero, np.float16([1.0])) == np.float16(32768.0)
    assert R.smooth_l1_loss(np.float16([60000.0]), np.float16([-10000.0]), beta=40000.0) == (
        np.float16(50000.0)
    )
    assert R.gaussian_nll_loss(x16, zero, 0.0, eps=0.0) == np.inf  # r^2 / 0
    assert R.laplace_nll_loss([0.0], [0.0], 0.0, eps=0.0) == -np.inf  # log 0


@pytest.mark.parametrize("kind", ["gaussian", "laplace"])
def test_spread_of_any_broadcasting_shape(kind):
    loss, grad, name = {
        "gaussian": (R.gaussian_nll_loss, R.gaussian_nll_loss_grad, "var"),
        "laplace": (R.laplace_nll_loss, R.laplace_nll_loss_grad, "scale"),
    }[kind]
    rng = np.random.default_rng(8)
    x, y = rng.normal(size=(2, 3, 4, 5)), rng.normal(size=(2, 3, 4, 5))
    for shape in [(2, 1, 4, 5), (1, 3, 1, 1), (2, 3, 4, 1), (1, 1, 1, 1), (1,), ()]:
        spread = rng.uniform(0.5, 2.0, size=shape)
        full = np.broadcast_to(spread, x.shape).copy()
        np.testing.assert_array_equal(
            loss(x, y, spread, reduction="none"), loss(x, y, full, reduction="none")
        )
        g_input, g_spread = grad(x, y, spread, reduction="sum")
        g_input_full, g_full = grad(x, y, full, reduction="sum")
        np.testing.assert_array_equal(g_input, g_input_full)
        assert g_spread.shape == spread.shape
        # summed over the elements it was broadcast to
        axes = tuple(i for i in range(4) if (len(shape) < 4 or shape[i] == 1))
        expected = g_full.sum(axis=axes, keepdims=True).reshape(shape)
        np.testing.assert_allclose(g_spread, expected, rtol=1e-13)
    # one dimension short would broadcast along the wrong axis: refused, with the fix
    with pytest.raises(ValueError, match=rf"got shape \(2, 3, 4\).*pass {name}\[\.\.\., None\]"):
        loss(x, y, np.ones((2, 3, 4)))
    with pytest.raises(ValueError, match=rf"{name} must broadcast to the shape of input"):
        loss(x, y, np.ones((3, 4, 5)))


def test_l2_penalty_in_float16_does_not_overflow():
    assert P.l2_penalty(np.float16([300.0]), 1e-4) == np.float16(9.0)
    assert P.l2_penalty(np.float16([300.0]), 1e-4).dtype == np.float16
    # the float64 analogues: a sum of squares that overflows or underflows
    assert P.l2_penalty(np.array([1e200, -1e200]), 1e-300) == 2e100
    assert ref.ulp_in(P.l2_penalty(np.array([1e-200]), 1e200), mpmath.mpf("1e-200"), "f8") <= 1
    assert P.l1_penalty([np.array([1.5e308]), np.array([1.5e308])], 0.25) == 7.5e307
    assert P.l2_penalty(np.array([1e200]), 1.0) == np.inf  # the true value overflows
    assert np.isnan(P.l2_penalty(np.array([np.nan, 1.0]), 1.0))


# ---------------------------------------------------------------- sweeps in every dtype


def _magnitudes(dtype, rng, n):
    """Magnitudes spread log-uniformly over the dtype's range, plus its edge values."""
    info = np.finfo(dtype)
    low, high = math.log10(float(info.smallest_subnormal)), math.log10(float(info.max))
    spread = 10.0 ** rng.uniform(low, high, n)
    edges = [0.0, float(info.smallest_subnormal), float(info.tiny), 1.0, float(info.max)]
    return np.concatenate([spread, edges, 1.0 + rng.uniform(-0.5, 0.5, 10)])


def _residual_inputs(dtype, seed):
    """(input, target) in ``dtype``: exact residuals (target 0) and rounded ones."""
    rng = np.random.default_rng(seed)
    r = _magnitudes(dtype, rng, 120)
    r = np.concatenate([r, -r])
    with np.errstate(over="ignore"):
        x = r.astype(dtype)
        y = rng.normal(size=r.shape).astype(dtype)
        shifted = (y.astype(np.float64) + r).astype(dtype)
    keep = np.isfinite(shifted)
    return [(x, np.zeros_like(x)), (shifted[keep], y[keep])]


def _near_transition(threshold, dtype, rng):
    """Residuals within a few ULP to a few percent of |r| = threshold, in ``dtype``."""
    rel = rng.uniform(-1, 1, 30) * 10.0 ** rng.uniform(-8, -1, 30)
    t = np.asarray(threshold, dtype=dtype)
    steps = [np.nextafter(t, t - 1), t, np.nextafter(t, t + 1)]
    r = np.concatenate([(threshold * (1 + rel)).astype(dtype), steps])
    return np.concatenate([r, -r]).astype(dtype)


RESIDUAL_LOSSES = {
    "mse_loss": (ref.mse, ref.mse_grad, {}),
    "l1_loss": (ref.l1, ref.l1_grad, {}),
    "huber_loss": (ref.huber, ref.huber_grad, {"delta": 0.75}),
    "smooth_l1_loss": (ref.smooth_l1, ref.smooth_l1_grad, {"beta": 0.75}),
    "smooth_l1_loss beta=0": (ref.smooth_l1, ref.smooth_l1_grad, {"beta": 0.0}),
    "log_cosh_loss": (ref.log_cosh, ref.log_cosh_grad, {}),
}


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", list(RESIDUAL_LOSSES))
def test_residual_losses_and_gradients_within_4_ulp(name, dtype):
    mp_loss, mp_grad, kwargs = RESIDUAL_LOSSES[name]
    loss, grad = getattr(R, name.split()[0]), getattr(R, name.split()[0] + "_grad")
    extra = list(kwargs.values())
    rng = np.random.default_rng(3)
    cases = _residual_inputs(dtype, 1)
    for threshold in kwargs.values():
        if threshold:
            r = _near_transition(threshold, dtype, rng)
            cases.append((r, np.zeros_like(r)))
    for x, y in cases:
        per = loss(x, y, **kwargs, reduction="none")
        assert per.dtype == dtype and per.shape == x.shape
        ref.assert_ulp_in(per, mp_loss(x, y, *extra), dtype, label=name)
        g = grad(x, y, **kwargs, reduction="sum")
        assert g.dtype == dtype and g.shape == x.shape
        ref.assert_ulp_in(g, mp_grad(x, y, *extra), dtype, label=name + "_grad")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", list(RESIDUAL_LOSSES))
def test_reductions_within_4_ulp(name, dtype):
    # moderate residuals, so that the sum of all of them stays finite in float16
    mp_loss, mp_grad, kwargs = RESIDUAL_LOSSES[name]
    loss, grad = getattr(R, name.split()[0]), getattr(R, name.split()[0] + "_grad")
    extra = list(kwargs.values())
    rng = np.random.default_rng(4)
    x = rng.normal(scale=3.0, size=(40, 25)).astype(dtype)
    y = rng.normal(size=(40, 25)).astype(dtype)
    per = mp_loss(x, y, *extra)
    for reduction in ("mean", "sum"):
        ref.assert_ulp_in(
            loss(x, y, **kwargs, reduction=reduction), ref.reduced(per, reduction), dtype
        )
    with mpmath.workdps(ref.DIGITS):
        expected = mp_grad(x, y, *extra) / x.size
    ref.assert_ulp_in(grad(x, y, **kwargs), expected, dtype, label=name + "_grad mean")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kind", ["gaussian", "laplace"])
@pytest.mark.parametrize("full", [False, True])
def test_likelihood_losses_and_gradients_within_4_ulp(kind, full, dtype):
    loss, grad = {
        "gaussian": (R.gaussian_nll_loss, R.gaussian_nll_loss_grad),
        "laplace": (R.laplace_nll_loss, R.laplace_nll_loss_grad),
    }[kind]
    mp_loss, mp_grads = {
        "gaussian": (ref.gaussian_nll, ref.gaussian_nll_grads),
        "laplace": (ref.laplace_nll, ref.laplace_nll_grads),
    }[kind]
    rng = np.random.default_rng(5)
    eps = 1e-6 if dtype != np.float16 else 1e-3
    (x, y), (x2, y2) = _residual_inputs(dtype, 2)
    n = min(len(x), 200)
    x, y = x[:n], y[:n]
    # spreads >= 1 (log >= 0), so the two terms of the loss never cancel; the floor is
    # exercised by the spreads below eps, where log eps < 0 and |r|/eps is checked apart
    spread = (10.0 ** rng.uniform(0, math.log10(float(np.finfo(dtype).max)) / 2, n)).astype(dtype)
    per = loss(x, y, spread, full=full, eps=eps, reduction="none")
    assert per.dtype == dtype
    ref.assert_ulp_in(per, mp_loss(x, y, spread, eps, full), dtype, label=kind)
    g_input, g_spread = grad(x, y, spread, full=full, eps=eps, reduction="sum")
    d_input, d_spread = mp_grads(x, y, spread, eps)
    ref.assert_ulp_in(g_input, d_input, dtype, label=kind + " d_input")
    # d/dspread = (1/v - r^2/v^2) / 2 (or 1/b - |r|/b^2) cancels where r^2 = v: there
    # its error is a few ULP of the larger of its two terms
    v = np.maximum(spread.astype(np.float64), eps)
    r = x.astype(np.float64) - y.astype(np.float64)
    with mpmath.workdps(ref.DIGITS):
        if kind == "gaussian":
            terms = [
                (1 / (2 * ref.mp(b)), ref.mp(a) ** 2 / (2 * ref.mp(b) ** 2))
                for a, b in zip(r, v, strict=True)
            ]
        else:
            terms = [
                (1 / ref.mp(b), abs(ref.mp(a)) / ref.mp(b) ** 2) for a, b in zip(r, v, strict=True)
            ]
        larger = np.array([max(a, b) for a, b in terms], dtype=object)
    ref.assert_ulp_in(g_spread, d_spread, dtype, max_ulp=np.inf)  # infinities where expected
    finite = np.isfinite(g_spread)
    with mpmath.workdps(ref.DIGITS):
        errors = np.array(
            [
                float(abs(ref.mp(g) - d))
                for g, d in zip(g_spread[finite], d_spread[finite], strict=True)
            ]
        )
    units = np.array(
        [float(np.spacing(np.float64(float(m)).astype(dtype))) for m in larger[finite]]
    )
    assert np.all(errors <= 4 * units)


@pytest.mark.parametrize("dtype", DTYPES)
def test_floored_spread_within_4_ulp(dtype):
    eps = 0.25
    rng = np.random.default_rng(6)
    x = rng.normal(scale=4.0, size=50).astype(dtype)
    y = np.zeros_like(x)
    spread = rng.uniform(0, eps, 50).astype(dtype)
    for loss, mp_loss in [
        (R.gaussian_nll_loss, ref.gaussian_nll),
        (R.laplace_nll_loss, ref.laplace_nll),
    ]:
        per = loss(x, y, spread, eps=eps, reduction="none")
        # log 0.25 < 0: keep the elements where the terms do not nearly cancel
        expected = mp_loss(x, y, spread, eps, False)
        keep = np.abs(x.astype(np.float64)) > 1.5
        ref.assert_ulp_in(per[keep], expected[keep], dtype)


# ---------------------------------------------------------------- penalties


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("power", [1, 2])
def test_penalties_and_gradients_within_4_ulp(power, dtype):
    penalty, grad = {1: (P.l1_penalty, P.l1_penalty_grad), 2: (P.l2_penalty, P.l2_penalty_grad)}[
        power
    ]
    rng = np.random.default_rng(9)
    info = np.finfo(dtype)
    for scale, lam in [(1.0, 1e-4), (float(info.max) / 4, 1e-30), (float(info.tiny), 1e30)]:
        with np.errstate(over="ignore", under="ignore"):
            params = [(rng.normal(size=s) * scale).astype(dtype) for s in [(7,), (3, 4)]]
        value = penalty(params, lam)
        assert value.dtype == dtype
        ref.assert_ulp_in(value, ref.penalty(params, lam, power), dtype, label=f"penalty {scale}")
        grads = grad(params, lam)
        for p, g in zip(params, grads, strict=True):
            assert g.dtype == dtype and g.shape == p.shape
            with mpmath.workdps(ref.DIGITS):
                if power == 2:
                    expected = np.array([2 * ref.mp(lam) * ref.mp(v) for v in p.ravel()])
                else:
                    expected = np.array([ref.mp(lam) * mpmath.sign(v) for v in p.ravel()])
            ref.assert_ulp_in(g.ravel(), expected, dtype, label=f"gradient {scale}")


def test_penalty_of_no_parameters_is_zero():
    assert P.l2_penalty([np.zeros((0, 3))], 1.0) == 0
    assert P.l1_penalty(np.zeros(0, dtype=np.float16), 2.0).dtype == np.float16
    assert P.l2_penalty_grad(np.zeros((0, 2)), 1.0).shape == (0, 2)


@pytest.mark.parametrize("dtype", DTYPES)
def test_infinite_residuals_give_the_limits(dtype):
    x = np.array([np.inf, -np.inf, 1.0], dtype=dtype)
    y = np.array([0.0, 0.0, np.inf], dtype=dtype)
    inf3 = [np.inf, np.inf, np.inf]
    for name in ("mse_loss", "l1_loss", "huber_loss", "smooth_l1_loss", "log_cosh_loss"):
        assert getattr(R, name)(x, y, reduction="none").tolist() == inf3, name
    # the slopes at +-inf: tanh -> +-1, clip -> +-delta, sign -> +-1
    assert R.log_cosh_loss_grad(x, y, reduction="sum").tolist() == [1.0, -1.0, -1.0]
    assert R.huber_loss_grad(x, y, delta=0.5, reduction="sum").tolist() == [0.5, -0.5, -0.5]
    assert R.l1_loss_grad(x, y, reduction="sum").tolist() == [1.0, -1.0, -1.0]
    assert R.gaussian_nll_loss(x, y, 2.0, reduction="none").tolist() == inf3
    assert R.laplace_nll_loss(x, y, 2.0, reduction="none").tolist() == inf3


# ---------------------------------------------------------------- spread gradients at the optimum


def _near_optimum_inputs(dtype, seed, power):
    """(input, target, spread) in ``dtype`` with |r|^power within 1e-8 to 10 % of the spread.

    Mixes exact residuals (target 0) and rounded ones (the residual x - y of the rounded
    inputs is not representable in ``dtype``), spreads from 1e-3 to 1e3.
    """
    rng = np.random.default_rng(seed)
    n = 200
    spread = (10.0 ** rng.uniform(-3, 3, n)).astype(dtype)
    rel = rng.uniform(-1, 1, n) * 10.0 ** rng.uniform(-8, -1, n)
    r = spread.astype(np.float64) ** (1 / power) * (1 + rel) * rng.choice([-1.0, 1.0], n)
    y = np.where(np.arange(n) < n // 2, 0.0, rng.normal(size=n)).astype(dtype)
    x = (y.astype(np.float64) + r).astype(dtype)
    return x, y, spread


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kind", ["gaussian", "laplace"])
def test_spread_gradient_at_the_optimum_within_4_ulp(kind, dtype):
    # 0.5 (1/v - r^2/v^2) and 1/b - |r|/b^2 vanish at r^2 = v and |r| = b: formed as a
    # difference they kept only the absolute accuracy of 1/v (about 1e9 ULP of float64 here)
    grad, mp_grads, power = {
        "gaussian": (R.gaussian_nll_loss_grad, ref.gaussian_nll_grads, 2),
        "laplace": (R.laplace_nll_loss_grad, ref.laplace_nll_grads, 1),
    }[kind]
    x, y, spread = _near_optimum_inputs(dtype, 21, power)
    eps = float(np.finfo(dtype).tiny)
    for reduction in ("sum", "mean"):
        g_input, g_spread = grad(x, y, spread, eps=eps, reduction=reduction)
        d_input, d_spread = mp_grads(x, y, spread, eps)
        if reduction == "mean":
            with mpmath.workdps(ref.DIGITS):
                d_input, d_spread = d_input / x.size, d_spread / x.size
        assert g_spread.dtype == dtype
        ref.assert_ulp_in(g_input, d_input, dtype, label=f"{kind} d_input")
        ref.assert_ulp_in(g_spread, d_spread, dtype, label=f"{kind} d_spread {reduction}")
    # the same through value_and_grad, and with one spread per row (summed gradient)
    _, (_, g_pair) = getattr(R, f"{kind}_nll_loss_value_and_grad")(
        x, y, spread, eps=eps, reduction="sum"
    )
    np.testing.assert_array_equal(g_pair, grad(x, y, spread, eps=eps, reduction="sum")[1])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("kind", ["gaussian", "laplace"])
@pytest.mark.parametrize("spread_shape", [(6,), (6, 1)])
def test_likelihood_gradients_where_the_residual_overflows(kind, dtype, spread_shape):
    # x - y (or r^2 / v, |r| / b) overflows while the loss's derivatives are finite:
    # x = 0.55 max, y = -0.55 max and v = 2^100 give r / v = 1.1 max / 2^100 (it was inf);
    # r = 2^-100 max, v = 2^40: r / v finite, r^2 / v overflows, d/dv = -r^2 / (2 v^2) not
    big = float(np.finfo(dtype).max)
    top = 100 if dtype is np.float64 else 30
    x = np.array([0.55 * big, 0.9 * big, 0.55 * big, 2.0**-top * big, 0.3 * big, 1e-3 * big])
    y = np.array([-0.55, -0.4, 0.0, 0.0, -0.3, 0.0]) * big
    spread = 2.0 ** np.array([top, 0.6 * top, 0.8 * top, 0.4 * top, 2, 0])
    x, y, spread = (a.astype(dtype) for a in (x, y, spread))
    spread = spread.reshape(spread_shape)
    if spread_shape == (6, 1):
        x, y = x.reshape(6, 1), y.reshape(6, 1)
    grad, mp_grads, loss, mp_loss = {
        "gaussian": (R.gaussian_nll_loss_grad, ref.gaussian_nll_grads, R.gaussian_nll_loss,
                     ref.gaussian_nll),
        "laplace": (R.laplace_nll_loss_grad, ref.laplace_nll_grads, R.laplace_nll_loss,
                    ref.laplace_nll),
    }[kind]  # fmt: skip
    g_input, g_spread = grad(x, y, spread, reduction="sum")
    d_input, d_spread = mp_grads(x, y, spread, 0.0)
    ref.assert_ulp_in(g_input, d_input, dtype, label=f"{kind} d_input")
    ref.assert_ulp_in(g_spread, d_spread, dtype, label=f"{kind} d_spread")
    for full in (False, True):
        value = loss(x, y, spread, full=full, reduction="none")
        ref.assert_ulp_in(value, mp_loss(x, y, spread, 0.0, full), dtype, label=f"{kind} loss")
    assert np.isfinite(g_input).all()  # the case as reported: finite derivatives
    both = getattr(R, f"{kind}_nll_loss_value_and_grad")(x, y, spread, reduction="sum")
    np.testing.assert_array_equal(both[1][1], g_spread)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_laplace_where_the_residual_overflows_at_a_moderate_ratio(dtype):
    # x - y overflows while |r| / b is small: b near the largest float. The loss is
    # log b + |r| / b (it was inf), d/db = (b - |r|) / b^2 (it was -inf), also where
    # |r| / b is within 2^-20 of 1 and the difference cancels
    big = float(np.finfo(dtype).max)
    nudge = 1 + 2.0**-20
    x = np.array([1.0, 1.0, 0.55, 0.9, 1.0, 0.5 * nudge, 0.5 * nudge]) * big
    y = -np.array([1.0, 1.0, 0.55, 0.9, 1.0, 0.5 * nudge, 0.5 * nudge]) * big
    scale = np.array([0.1, 0.85, 0.05, 1.0, 1.0, 1.0, 1 / nudge**2]) * big
    x, y, scale = (a.astype(dtype) for a in (x, y, scale))
    for full in (False, True):
        value = R.laplace_nll_loss(x, y, scale, eps=0.0, full=full, reduction="none")
        exact = ref.laplace_nll(x, y, scale, 0.0, full)
        ref.assert_ulp_in(value, exact, dtype, label=f"loss, full={full}")
    g_input, g_scale = R.laplace_nll_loss_grad(x, y, scale, eps=0.0, reduction="none")
    d_input, d_scale = ref.laplace_nll_grads(x, y, scale, 0.0)
    ref.assert_ulp_in(g_input, d_input, dtype, label="d_input")
    ref.assert_ulp_in(g_scale, d_scale, dtype, label="d_scale")


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("kind", ["gaussian", "laplace"])
def test_spread_gradient_that_overflows_stays_infinite(kind, dtype):
    # a subnormal spread (eps = 0): d/dspread is below minus the largest float, so -inf;
    # the redo of overflowed results must not turn it into inf - inf = NaN
    tiny = float(np.finfo(dtype).smallest_subnormal)
    x = np.array([1.0, 1e30, 0.0], dtype=dtype)
    y = np.array([0.0, -1e30, 0.0], dtype=dtype)
    spread = np.array([tiny, 2 * tiny, tiny], dtype=dtype)
    grad = getattr(R, f"{kind}_nll_loss_grad")
    _, g_spread = grad(x, y, spread, eps=0.0, reduction="none")
    assert np.all(g_spread[:2] == -np.inf), g_spread
    # at r = 0: 1 / (2 v) or 1 / b, beyond the largest float
    assert g_spread[2] == np.inf, g_spread


def test_gaussian_variance_gradient_of_the_reported_case():
    # r = fl(sqrt(2)) and v = 2: r^2 = 2 + 2.7e-16, so (v - r^2) / (2 v^2) = -3.42e-17; the
    # difference of 1/(2v) and r^2/(2v^2) gave -5.55e-17 (r^2 rounded to 2 + 4.4e-16)
    r = math.sqrt(2.0)
    with mpmath.workdps(60):
        exact = (2 - mpmath.mpf(r) ** 2) / 8
    _, g_var = R.gaussian_nll_loss_grad([r], [0.0], [2.0], reduction="sum")
    assert ref.ulp_in(g_var, exact, np.float64)[0] <= 1
    assert float(exact) == pytest.approx(-3.4179e-17, rel=1e-4)


@pytest.mark.parametrize("kind", ["gaussian", "laplace"])
@pytest.mark.parametrize("spread_shape", [(12, 5), (12, 1)])
def test_likelihood_blocks_of_elements_and_of_rows(kind, spread_shape, monkeypatch):
    # a spread of the input's shape is taken in blocks of elements, one of shape (N, 1) in
    # blocks of rows with its gradient summed per row block: blocks of 8 elements (one row)
    # here, so every block boundary is crossed; against mpmath, some residuals at r^2 = v
    import lossutils._numerics as numerics

    monkeypatch.setattr(numerics, "CHUNK", 8)
    monkeypatch.setattr(R, "CHUNK", 8)
    name = {"gaussian": "gaussian_nll_loss", "laplace": "laplace_nll_loss"}[kind]
    mp_loss, mp_grads = {
        "gaussian": (ref.gaussian_nll, ref.gaussian_nll_grads),
        "laplace": (ref.laplace_nll, ref.laplace_nll_grads),
    }[kind]
    rng = np.random.default_rng(17)
    spread = 10.0 ** rng.uniform(0, 3, spread_shape)  # log >= 0: the loss's terms never cancel
    y = rng.standard_normal((12, 5))
    r = np.sqrt(spread) if kind == "gaussian" else spread
    r = np.broadcast_to(r, (12, 5)) * np.where(rng.random((12, 5)) < 0.5, 1.0, 10 ** rng.normal())
    x = y + r * np.where(rng.random((12, 5)) < 0.5, -1, 1)
    per = getattr(R, name)(x, y, spread, reduction="none")
    ref.assert_ulp_in(per, mp_loss(x, y, spread, 1e-6, False), np.float64, label=kind)
    g_input, g_spread = getattr(R, name + "_value_and_grad")(x, y, spread, reduction="sum")[1]
    d_input, d_spread = mp_grads(x, y, spread, 1e-6)
    ref.assert_ulp_in(g_input, d_input, np.float64, label=kind + " d_input")
    if spread_shape == (12, 5):
        ref.assert_ulp_in(g_spread, d_spread, np.float64, label=kind + " d_spread")
        return
    # summed over each row: within 4 ULP of the sum plus 4 ULP of the sum of |terms|
    with mpmath.workdps(ref.DIGITS):
        for i in range(12):
            exact = mpmath.fsum(d_spread[i])
            size = mpmath.fsum(abs(t) for t in d_spread[i])
            bound = 4 * 2.0**-52 * (abs(exact) + size)
            assert abs(ref.mp(g_spread[i, 0]) - exact) <= bound, (i, g_spread[i, 0], exact)


# ------------------------------------- a broadcast spread's gradient at its optimum


def test_broadcast_spread_gradient_issue_cases():
    # two terms that cancel: the plain sum of the rounded terms was an ULP of 1 (1e15 ULP off)
    g = R.laplace_nll_loss_grad(np.array([0.1, 1.9]), np.zeros(2), 1.0, reduction="sum")[1]
    assert g == 8.3266726846886741e-17
    x = np.array([0.1, 1.4106735979665885])
    g = R.gaussian_nll_loss_grad(x, np.zeros(2), 1.0, reduction="sum")[1]
    assert g == -1.2786459366296071e-16


def _summed_to(terms, shape, count):
    """The exact per-element ``terms`` summed to ``shape`` (the broadcast axes), / count."""
    lead = terms.ndim - len(shape)
    axes = tuple(range(lead)) + tuple(
        lead + i for i, n in enumerate(shape) if n == 1 and terms.shape[lead + i] != 1
    )
    with mpmath.workdps(ref.DIGITS):
        out = np.empty(shape, dtype=object)
        moved = np.moveaxis(terms, axes, range(len(axes))).reshape(-1, *out.shape)
        for index in np.ndindex(out.shape):
            out[index] = mpmath.fsum(moved[(slice(None), *index)]) / count
    return out


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("reduction", ["sum", "mean"])
@pytest.mark.parametrize("kind", ["gaussian", "laplace"])
@pytest.mark.parametrize(
    "shape, spread_shape",
    [((1000,), ()), ((64, 8), (64, 1)), ((16, 40), (1, 40)), ((4, 6, 5), (4, 1, 5))],
)
@pytest.mark.parametrize("off", [1.0, 1.3])
@pytest.mark.parametrize("block", [None, 64])
def test_broadcast_spread_gradient_at_the_optimum(
    dtype, reduction, kind, shape, spread_shape, off, block, monkeypatch
):
    # The spread is the maximum-likelihood one (the mean of r^2, of |r|) rounded to the
    # dtype: the gradient's terms cancel to about an ULP of their sum of magnitudes, and
    # each term's rounding and the summation's must be kept (4 ULP entry by entry).
    rng = np.random.default_rng(23)
    x = rng.standard_normal(shape).astype(dtype)
    y = (0.3 * rng.standard_normal(shape)).astype(dtype)
    r = x.astype(np.float64) - y.astype(np.float64)
    stat = r**2 if kind == "gaussian" else np.abs(r)
    lead = len(shape) - len(spread_shape)
    axes = tuple(range(lead)) + tuple(
        lead + i for i, n in enumerate(spread_shape) if n == 1 and shape[lead + i] != 1
    )
    if block:  # in blocks of rows (of elements for a 1-D input), each block's sum kept
        monkeypatch.setattr(R, "CHUNK", block)
    # (off: away from the optimum, where the sum does not cancel, the same bound)
    spread = (off * np.mean(stat, axis=axes)).reshape(spread_shape).astype(dtype)
    name = {"gaussian": "gaussian_nll_loss_grad", "laplace": "laplace_nll_loss_grad"}[kind]
    mp_grads = {"gaussian": ref.gaussian_nll_grads, "laplace": ref.laplace_nll_grads}[kind]
    g = getattr(R, name)(x, y, spread, reduction=reduction)[1]
    assert g.dtype == dtype and g.shape == spread_shape
    terms = mp_grads(x, y, np.broadcast_to(spread, shape), 1e-6)[1]
    exact = _summed_to(terms, spread_shape, x.size if reduction == "mean" else 1)
    ref.assert_ulp_in(g, exact, dtype, label=f"{kind} {reduction}")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kind", ["gaussian", "laplace"])
def test_likelihood_loss_where_its_two_terms_cancel_keeps_its_stated_bound(kind, dtype):
    # spreads below 1 with residuals tuned so that r^2 / v (or |r| / b) is about -log v:
    # the result is far smaller than its terms, and the docstrings state a few ULP of
    # |log v| + r^2 / v (halved for the Gaussian), not of the result: here up to about 6e4
    # ULP of the result in float32 and 1e5 in float64, under one ULP of the terms
    loss, mp_loss = {
        "gaussian": (R.gaussian_nll_loss, ref.gaussian_nll),
        "laplace": (R.laplace_nll_loss, ref.laplace_nll),
    }[kind]
    rng = np.random.default_rng(9)
    low = {np.float16: -3.0, np.float32: -8.0, np.float64: -12.0}[dtype]
    v = 10.0 ** rng.uniform(low, -0.01, 200)
    if kind == "gaussian":
        r = np.sqrt(-v * np.log(v))
    else:
        r = -v * np.log(v)
    r *= 1 + rng.uniform(-1e-3, 1e-3, 200)
    x, y, spread = r.astype(dtype), np.zeros(200, dtype), v.astype(dtype)
    eps = float(np.finfo(dtype).tiny)
    per = loss(x, y, spread, eps=eps, reduction="none")
    assert per.dtype == dtype
    exact = mp_loss(x, y, spread, eps, False)
    rx, vx = x.astype(np.float64), spread.astype(np.float64)
    terms = np.abs(np.log(vx)) + (rx * rx / vx if kind == "gaussian" else np.abs(rx) / vx)
    if kind == "gaussian":
        terms = terms / 2
    errors = np.array([float(abs(ref.mp(g) - e)) for g, e in zip(per, exact, strict=True)])
    units = np.spacing(terms.astype(dtype)).astype(np.float64)
    assert np.max(errors / units) <= 4, np.max(errors / units)
    # and the cancellation is real: the results are far below their terms
    assert np.median(terms / np.abs([float(e) for e in exact])) > 30
