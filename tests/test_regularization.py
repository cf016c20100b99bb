"""Tests for lossutils.regularization: L2 and L1 weight penalties."""

import math

import numpy as np
import pytest
import sympy as sp
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from lossutils import regularization as P
from lossutils.testing import assert_gradient_matches, assert_matches_sympy

PENALTIES = {
    "l2": (P.l2_penalty, P.l2_penalty_grad, lambda w: w * w, lambda w: 2 * w),
    "l1": (P.l1_penalty, P.l1_penalty_grad, abs, lambda w: math.copysign(w != 0, w)),
}


def _params(rng):
    return [rng.normal(size=(3, 2)), rng.normal(size=4), np.array(1.5), np.zeros((0, 3))]


@pytest.mark.parametrize("kind", list(PENALTIES))
@pytest.mark.parametrize("lam", [0.0, 0.3, 2.0])
def test_value_is_lam_times_the_exact_sum(rng, kind, lam):
    penalty, _, term, _ = PENALTIES[kind]
    params = _params(rng)
    exact = lam * math.fsum(term(float(w)) for p in params for w in p.ravel())
    value = penalty(params, lam)
    assert isinstance(value, np.float64)
    np.testing.assert_allclose(value, exact, rtol=1e-15)
    # One array is the same as a list holding it; a tuple is the same as a list.
    np.testing.assert_allclose(penalty(params[0], lam), penalty(params[:1], lam), rtol=0)
    assert penalty(tuple(params), lam) == value


@pytest.mark.parametrize("kind", list(PENALTIES))
@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
def test_value_summed_in_blocks(rng, kind, dtype):
    # more entries than one block of the sum (2**15) and a tail: within 2 ULP of the
    # exact sum of the rounded entries' terms, and value_and_grad the same bits
    penalty, _, term, _ = PENALTIES[kind]
    w = rng.normal(size=(3, 40_001)).astype(dtype)
    lam = 0.3
    exact = lam * math.fsum(term(float(v)) for v in w.ravel())
    value = penalty(w, lam)
    assert value.dtype == dtype
    assert abs(float(value) - exact) <= 2 * float(np.spacing(dtype(exact)))
    both = getattr(P, f"{kind}_penalty_value_and_grad")(w, lam)
    assert both[0].tobytes() == value.tobytes()
    assert both[1].tobytes() == getattr(P, f"{kind}_penalty_grad")(w, lam).tobytes()


@pytest.mark.parametrize("kind", list(PENALTIES))
def test_gradient_has_the_structure_of_params(rng, kind):
    _, grad, _, d_term = PENALTIES[kind]
    params = _params(rng)
    params[1][0] = 0.0  # L1: the subgradient at 0 is 0 (PyTorch's sign(0))
    grads = grad(params, 0.25)
    assert isinstance(grads, list) and len(grads) == len(params)
    for g, p in zip(grads, params, strict=True):
        assert g.shape == p.shape and g.dtype == p.dtype
        expected = np.array([0.25 * d_term(float(w)) for w in p.ravel()]).reshape(p.shape)
        np.testing.assert_array_equal(g, expected)
    single = grad(params[0], 0.25)
    assert isinstance(single, np.ndarray)
    np.testing.assert_array_equal(single, grads[0])
    assert isinstance(grad(tuple(params), 0.25), list)
    assert grad([], 1.0) == []


@pytest.mark.parametrize("kind", list(PENALTIES))
def test_gradients_match_finite_differences(rng, kind):
    penalty, grad, _, _ = PENALTIES[kind]
    params = [rng.normal(size=(2, 3)), rng.normal(size=3) + 0.5]
    params = [np.where(np.abs(p) < 1e-3, 0.1, p) for p in params]  # away from the L1 kink
    lam = 0.7

    def loss(a, b):
        return penalty([a, b], lam)

    def grad_as_tuple(a, b):
        return tuple(grad([a, b], lam))

    assert_gradient_matches(loss, grad_as_tuple, params, argnums=(0, 1))
    assert_gradient_matches(
        lambda a: penalty(a, lam), lambda a: grad(a, lam), [params[0]], argnums=(0,)
    )


def test_gradients_agree_with_sympy(rng):
    w, lam = sp.Symbol("w", real=True), sp.Symbol("lam", positive=True)
    values = rng.normal(size=10)
    d_l2 = sp.diff(lam * w**2, w)
    assert sp.simplify(d_l2 - 2 * lam * w) == 0
    assert_matches_sympy(d_l2, [w, lam], [values, 0.3], P.l2_penalty_grad(values, 0.3))
    d_l1 = sp.diff(lam * sp.Abs(w), w)  # lam * sign(w) for real w
    assert sp.simplify(d_l1 - lam * sp.sign(w)) == 0
    assert_matches_sympy(d_l1, [w, lam], [values, 0.3], P.l1_penalty_grad(values, 0.3))


def test_penalties_are_negative_log_priors(rng):
    # Gaussian prior N(0, s^2): -log p(w) = w^2 / (2 s^2) + const, so lam = 1 / (2 s^2).
    # Laplace prior with scale b: -log p(w) = |w| / b + const, so lam = 1 / b.
    from sympy.stats import Laplace, Normal, density

    w = sp.Symbol("w", real=True)
    s = sp.Symbol("s", positive=True)
    values = rng.normal(size=5)
    gauss = -sp.log(density(Normal("W", 0, s))(w))
    const = gauss.subs(w, 0)
    prior = sp.lambdify([w, s], gauss - const)
    np.testing.assert_allclose(P.l2_penalty(values, 1 / (2 * 1.3**2)), prior(values, 1.3).sum())
    lap = -sp.log(density(Laplace("W", 0, s))(w))
    prior = sp.lambdify([w, s], lap - lap.subs(w, 0))
    np.testing.assert_allclose(P.l1_penalty(values, 1 / 1.3), prior(values, 1.3).sum())


def test_dtypes():
    p32 = np.array([1.0, -2.0], dtype=np.float32)
    for penalty, grad, _, _ in PENALTIES.values():
        assert penalty(p32, 0.5).dtype == np.float32
        assert penalty([p32, p32], np.float64(0.5)).dtype == np.float32
        assert penalty([p32, p32.astype(np.float64)], 0.5).dtype == np.float64
        assert grad(p32, 0.5).dtype == np.float32
        g = grad([p32, np.array([1, 0, 2])], 0.5)
        assert g[0].dtype == np.float32 and g[1].dtype == np.float64
        assert penalty(np.array([1, 2]), 1).dtype == np.float64
        assert penalty([], 1.0) == 0.0


@pytest.mark.parametrize("kind", list(PENALTIES))
def test_nan_propagates_and_params_are_not_modified(kind):
    penalty, grad, _, _ = PENALTIES[kind]
    params = [np.array([1.0, np.nan]), np.array([[2.0, -3.0]])]
    originals = [p.copy() for p in params]
    for p in params:
        p.flags.writeable = False
    assert np.isnan(penalty(params, 1.0))
    g = grad(params, 1.0)
    assert np.isnan(g[0][1]) and not np.isnan(g[0][0]) and np.all(np.isfinite(g[1]))
    for p, o in zip(params, originals, strict=True):
        np.testing.assert_array_equal(p, o)


@pytest.mark.parametrize("kind", list(PENALTIES))
@pytest.mark.parametrize("lam", [-0.1, np.inf, np.nan, "1", None, True, np.array(1.0)])
def test_bad_lam(kind, lam):
    penalty, grad, _, _ = PENALTIES[kind]
    for f in (penalty, grad):
        with pytest.raises(ValueError, match=r"lam must be a non-negative finite number; got "):
            f(np.ones(2), lam)


@pytest.mark.parametrize("kind", list(PENALTIES))
def test_bad_params(kind):
    penalty, grad, _, _ = PENALTIES[kind]
    for f in (penalty, grad):
        with pytest.raises(ValueError, match=r"params must be an array or a list of arrays; got 3"):
            f(3, 1.0)
        with pytest.raises(
            ValueError,
            match=r"params must be an array or a list of arrays; got a list whose item 1",
        ):
            f([np.ones(2), [1.0, 2.0]], 1.0)
        with pytest.raises(ValueError, match=r"params must be an array .*; got \{"):
            f({"w": np.ones(2)}, 1.0)
        with pytest.raises(ValueError, match=r"params\[0\] must be a real numeric array"):
            f([np.array(["a"])], 1.0)


@settings(max_examples=50, deadline=None)
@given(
    st.lists(
        hnp.arrays(
            np.float64, hnp.array_shapes(max_dims=2, max_side=4), elements=st.floats(-1e3, 1e3)
        ),
        max_size=4,
    ),
    st.floats(0, 1e3),
)
def test_properties(params, lam):
    for penalty, grad, _, _ in PENALTIES.values():
        total = penalty(params, lam)
        assert total >= 0
        # The penalty of a list is the sum of the penalties of its arrays.
        parts = math.fsum(float(penalty(p, lam)) for p in params)
        np.testing.assert_allclose(total, parts, rtol=1e-13, atol=1e-300)
        # Linear in lam (up to one rounding step where lam * sum is subnormal).
        tiny = np.finfo(np.float64).smallest_subnormal
        np.testing.assert_allclose(penalty(params, 2 * lam), 2 * total, rtol=1e-15, atol=2 * tiny)
        for g, p in zip(grad(params, lam), params, strict=True):
            assert g.shape == p.shape


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
@pytest.mark.parametrize("name", ["l2_penalty", "l1_penalty"])
def test_zero_lam_masks_infinite_and_nan_parameters(name, dtype):
    # a zero weight masks its element (0, even where the element is infinite): 0 * inf was NaN
    params = [np.array([np.inf, -np.inf, 1.0], dtype=dtype), np.array([[np.nan]], dtype=dtype)]
    penalty, grad = getattr(P, name), getattr(P, name + "_grad")
    for p in (params, params[0]):
        value = penalty(p, 0.0)
        assert value == 0 and value.dtype == dtype
        grads = grad(p, 0.0)
        for g, q in zip(
            grads if isinstance(p, list) else [grads],
            p if isinstance(p, list) else [p],
            strict=True,
        ):
            assert g.dtype == dtype and g.shape == q.shape
            np.testing.assert_array_equal(g, np.zeros_like(q))
        v, g = getattr(P, name + "_value_and_grad")(p, 0.0)
        assert v == 0
    # a positive lam keeps the information
    assert penalty(params[0], 1e-3) == np.inf
    assert np.isnan(penalty(params, 1e-3))


@pytest.mark.parametrize("name", ["l1_penalty", "l2_penalty"])
@pytest.mark.parametrize("dtype", [np.float16, np.float32])
def test_a_lam_beyond_the_working_dtype_gives_the_exact_gradient(name, dtype):
    # lam = 1e300 overflows float32: lam * 0 is 0 (it was inf * 0 = NaN), lam * 1e-7 (and
    # 2 lam 1e-7) overflows the dtype: inf
    w = np.array([0.0, -0.0, 1e-7, -1e-7], dtype)
    grad = getattr(P, name + "_grad")(w, 1e300)
    assert grad.dtype == dtype
    assert grad.tolist() == [0.0, 0.0, math.inf, -math.inf]
