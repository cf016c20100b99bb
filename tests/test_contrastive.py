"""InfoNCE, CLIP and SigLIP against mpmath, in every dtype.

The references normalise the rows and evaluate the textbook formulas at the same
rounded inputs with 400 digits (gradients by mpmath's numerical differentiation at
60 digits); errors are in ULP of the output dtype, over embeddings from tiny to huge,
aligned pairs (confident positives, small losses), a zero row (the norm's floor),
infinite entries, empty batches and bad input.
"""

from __future__ import annotations

import warnings

import mp_reference as ref
import mpmath
import numpy as np
import pytest

import lossutils
from lossutils import contrastive as C
from lossutils.testing import assert_gradient_matches

DTYPES = [np.float16, np.float32, np.float64]
# float64 gradients, in ULP of the row's largest entry: the float64 product of the
# softmax with the rows and the projection leave 4.5 at most in these sweeps (their rows are
# not nearly parallel; the module's docstring gives the bound that holds for those)
BOUND64 = 5
REDUCTIONS = ("mean", "sum", "none")


def _unit_rows(x):
    floor = ref.mp(1e-12)
    out = []
    for row in x:
        norm = max(mpmath.sqrt(mpmath.fsum(e**2 for e in row)), floor)
        out.append([e / norm for e in row])
    return out


def _mp_rows(x):
    return [[ref.mp(v) for v in row] for row in np.asarray(x, dtype=np.float64)]


def _cosines(a, b):
    ha, hb = _unit_rows(a), _unit_rows(b)
    return [[mpmath.fsum(u * v for u, v in zip(x, y, strict=True)) for y in hb] for x in ha]


def _nce_rows(s):
    n = len(s)
    return [mpmath.log(mpmath.fsum(mpmath.exp(v) for v in s[i])) - s[i][i] for i in range(n)]


def _mp_losses(kind, a, b, p1, p2=None):
    """The per-row losses of mpmath rows a, b."""
    cos = _cosines(a, b)
    n = len(cos)
    if kind == "siglip":
        t, bias = ref.mp(p1), ref.mp(p2)
        return [
            mpmath.fsum(
                mpmath.log1p(mpmath.exp(-(1 if i == j else -1) * (t * cos[i][j] + bias)))
                for j in range(n)
            )
            for i in range(n)
        ]
    s = [[v / ref.mp(p1) for v in row] for row in cos]
    rows = _nce_rows(s)
    if kind == "info_nce":
        return rows
    columns = _nce_rows([list(col) for col in zip(*s, strict=True)])
    return [(r + c) / 2 for r, c in zip(rows, columns, strict=True)]


def exact(kind, a, b, p1, p2=None):
    with mpmath.workdps(ref.DIGITS):
        out = np.empty(len(a), dtype=object)
        out[:] = _mp_losses(kind, _mp_rows(a), _mp_rows(b), p1, p2)
        return out


def exact_grad(kind, a, b, p1, p2, reduction):
    a64, b64 = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    n = len(a64)
    out = []
    with mpmath.workdps(60):
        base = [_mp_rows(a64), _mp_rows(b64)]
        for which in (0, 1):
            grad = np.empty(a64.shape, dtype=object)
            for i, j in np.ndindex(a64.shape):

                def f(x, i=i, j=j, which=which):
                    rows = [[list(r) for r in base[0]], [list(r) for r in base[1]]]
                    rows[which][i][j] = x
                    total = mpmath.fsum(_mp_losses(kind, rows[0], rows[1], p1, p2))
                    return total / n if reduction == "mean" else total

                grad[i, j] = mpmath.diff(f, base[which][i][j])
            out.append(grad)
    return out


FUNCTIONS = {
    "info_nce": (C.info_nce_loss, C.info_nce_loss_grad),
    "clip": (C.clip_loss, C.clip_loss_grad),
    "siglip": (C.siglip_loss, C.siglip_loss_grad),
}
PARAMETERS = {
    "info_nce": [(0.07,), (0.02,), (0.5,)],
    "clip": [(0.07,), (0.02,), (0.5,)],
    "siglip": [(1000.0, -1000.0), (10.0, -10.0)],
}


def _cases(dtype, rng):
    info = np.finfo(dtype)
    big = float(info.max) ** 0.5 / 4 if dtype != np.float64 else 1e150
    cases = []
    for scale in (float(info.tiny) * 2**12, 1e-3, 1.0, 300.0, big):
        with np.errstate(over="ignore", under="ignore"):
            a = (rng.normal(size=(4, 5)) * scale).astype(dtype)
            noise = rng.normal(size=(4, 5)) * 10.0 ** rng.uniform(-3, -1)
            b = (a.astype(np.float64) * (1 + noise)).astype(dtype)  # aligned pairs
        cases.append((a, b))
    a = rng.normal(size=(4, 5)).astype(dtype)
    cases.append((a, rng.normal(size=(4, 5)).astype(dtype)))  # unrelated pairs
    zero = a.copy()
    zero[1] = 0  # a zero embedding: F.normalize's floor
    cases.append((zero, rng.normal(size=(4, 5)).astype(dtype)))
    return cases


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kind", sorted(FUNCTIONS))
def test_values_within_bound(dtype, kind):
    rng = np.random.default_rng(21)
    loss = FUNCTIONS[kind][0]
    for params in PARAMETERS[kind]:
        # the temperature (or the scale t) magnifies the cosines' rounding: float16 and
        # float32 get float64 cosines, float64 double-double ones (0.07 once cost 56 ULP,
        # scale 1000 2700 ULP)
        bound = 2.0 if dtype != np.float64 else 4.0
        for a, b in _cases(dtype, rng):
            per = exact(kind, a, b, *params)
            for reduction in REDUCTIONS:
                got = loss(a, b, *params, reduction=reduction)
                assert np.asarray(got).dtype == dtype
                ref.assert_ulp_in(got, ref.reduced(per, reduction), dtype, bound, label=reduction)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kind", sorted(FUNCTIONS))
def test_gradients_within_bound(dtype, kind):
    rng = np.random.default_rng(22)
    grad = FUNCTIONS[kind][1]
    params = PARAMETERS[kind][-1]
    a = rng.normal(size=(3, 4)).astype(dtype)
    b = (a.astype(np.float64) + 0.3 * rng.normal(size=(3, 4))).astype(dtype)
    for reduction in ("mean", "sum"):
        p2 = params[1] if len(params) > 1 else None
        expected = exact_grad(kind, a, b, params[0], p2, reduction)
        got = grad(a, b, *params, reduction=reduction)
        for g, e in zip(got, expected, strict=True):
            assert g.dtype == dtype and g.shape == a.shape
            # an entry is a sum of terms of both signs: a few ULP of the row's largest entry
            e64 = np.array([[float(v) for v in row] for row in e])
            unit = np.spacing(np.max(np.abs(e64), axis=-1, keepdims=True).astype(dtype))
            error = np.abs(g.astype(np.float64) - e64)
            bound = 2 if dtype != np.float64 else BOUND64
            assert np.all(error <= bound * unit.astype(np.float64)), (error / unit).max()


@pytest.mark.parametrize("kind", sorted(FUNCTIONS))
@pytest.mark.parametrize("spread", [1e-6, 1e-2, None])
def test_float64_gradients_at_low_temperature_and_for_nearly_parallel_pairs(kind, spread):
    # the softmax (sigmoid) of float64 logits carries the cosines' rounding times
    # 1 / temperature (the scale): 9 to 14 ULP of the row's largest entry at 0.07; and a
    # nearly parallel pair's projection k - cos h carried it divided by the angle: 52,609
    # ULP at 1e-6 (SigLIP). Double-double logits and the positive's projection from
    # double-double unit rows: within BOUND64
    rng = np.random.default_rng(24)
    params = {"info_nce": (0.07,), "clip": (0.07,), "siglip": (10.0, -10.0)}[kind]
    for _ in range(3):
        a = rng.normal(size=(4, 5))
        b = rng.normal(size=(4, 5)) if spread is None else a + spread * rng.normal(size=(4, 5))
        p2 = params[1] if len(params) > 1 else None
        expected = exact_grad(kind, a, b, params[0], p2, "sum")
        got = FUNCTIONS[kind][1](a, b, *params, reduction="sum")
        for g, e in zip(got, expected, strict=True):
            e64 = np.array([[float(v) for v in row] for row in e])
            unit = np.spacing(np.max(np.abs(e64), axis=-1, keepdims=True))
            error = np.abs(g - e64)
            assert np.all(error <= BOUND64 * unit), (error / unit).max()


@pytest.mark.parametrize("kind", sorted(FUNCTIONS))
@pytest.mark.parametrize("tiny", [1e-300, 1e-315, 5e-324])
def test_float64_rows_far_below_the_floor(kind, tiny):
    # a row of norm below F.normalize's floor 1e-12 is z / 1e-12; a float64 row of 1e-315
    # gave NaN (its double-double unit row divided by 1e-12 2**-exponent = 7.5e302, beyond
    # the division's products), and NaN spread to every row through the shared keys
    rng = np.random.default_rng(29)
    a, b = rng.normal(size=(2, 3, 4))
    a[1] = [tiny, 0.0, -tiny, 2 * tiny]
    b[2] = [0.0, tiny, tiny, 0.0]
    params = PARAMETERS[kind][-1]
    loss, grad = FUNCTIONS[kind]
    per = exact(kind, a, b, *params)
    for reduction in REDUCTIONS:
        ref.assert_ulp_in(
            loss(a, b, *params, reduction=reduction),
            ref.reduced(per, reduction),
            np.float64,
            4.0,
            label=reduction,
        )
    p2 = params[1] if len(params) > 1 else None
    expected = exact_grad(kind, a, b, params[0], p2, "sum")
    for g, e in zip(grad(a, b, *params, reduction="sum"), expected, strict=True):
        e64 = np.array([[float(v) for v in row] for row in e])
        unit = np.spacing(np.max(np.abs(e64), axis=-1, keepdims=True))
        assert np.all(np.abs(g - e64) <= BOUND64 * unit), (np.abs(g - e64) / unit).max()


@pytest.mark.parametrize("kind", sorted(FUNCTIONS))
@pytest.mark.parametrize("factor", [1.2e-308, 1e-302, 1e300, 1e308])
def test_float64_extreme_temperatures_and_scales(kind, factor):
    # the double-double logits took 1 / temperature (the SigLIP scale) into Dekker's
    # products, whose splitting overflows beyond about 1e300: NaN at a temperature of
    # 1e-302 (exact losses up to 1.6e301) or 1e308 (log 2 and its neighbours), a scale of 1e302
    rng = np.random.default_rng(30)
    a, b = rng.normal(size=(2, 3, 4))
    params = (factor,)
    if kind == "siglip":  # (scale, bias); at 1e307 the matched pairs' logits cancel
        params = {1.2e-308: (1e307, -1e307), 1e-302: (1e302, 0.5)}.get(factor, (1 / factor, 0.5))
    loss, grad = FUNCTIONS[kind]
    per = exact(kind, a, b, *params)
    for reduction in REDUCTIONS:
        got = loss(a, b, *params, reduction=reduction)
        ref.assert_ulp_in(got, ref.reduced(per, reduction), np.float64, 4.0, label=reduction)
    for g in grad(a, b, *params):
        assert np.all(np.isfinite(g))


@pytest.mark.parametrize("kind", ["info_nce", "clip"])
@pytest.mark.parametrize("dtype", DTYPES)
def test_a_temperature_whose_logits_overflow_is_an_error(kind, dtype):
    # below 2 / 1.8e308 the differences of logits overflow, below 1 / 1.8e308 the logits
    # themselves: NaN losses (and float32 let an overflow warning escape)
    a = np.eye(2, dtype=dtype)
    for call in FUNCTIONS[kind]:
        with pytest.raises(ValueError, match=r"temperature must be .* at least 1.113e-308"):
            call(a, a, 1e-315)
    assert np.isfinite(FUNCTIONS[kind][0](a, a, 1.12e-308))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kind", sorted(FUNCTIONS))
def test_blocks_of_rows(kind, dtype, monkeypatch):
    # the logits are taken in blocks of rows (CLIP's columns in blocks of the transpose):
    # blocks of 2 rows of 4, the matched pairs' diagonal crossing every block (the
    # arrays of test_float64_gradients_at_low_temperature_and_for_nearly_parallel_pairs)
    monkeypatch.setattr(lossutils._blocks, "BLOCK_BYTES", 64)
    rng = np.random.default_rng(24)
    loss, grad = FUNCTIONS[kind]
    params = PARAMETERS[kind][-1]
    p2 = params[1] if len(params) > 1 else None
    a = rng.normal(size=(4, 5)).astype(dtype)
    b = (a.astype(np.float64) + 1e-2 * rng.normal(size=(4, 5))).astype(dtype)
    per = exact(kind, a, b, *params)
    bound = 2.0 if dtype != np.float64 else 4.0
    for reduction in REDUCTIONS:
        got = loss(a, b, *params, reduction=reduction)
        ref.assert_ulp_in(got, ref.reduced(per, reduction), dtype, bound, label=reduction)
    expected = exact_grad(kind, a, b, params[0], p2, "sum")
    for g, e in zip(grad(a, b, *params, reduction="sum"), expected, strict=True):
        e64 = np.array([[float(v) for v in row] for row in e])
        unit = np.spacing(np.max(np.abs(e64), axis=-1, keepdims=True).astype(dtype))
        error = np.abs(g.astype(np.float64) - e64)
        bound = 2 if dtype != np.float64 else BOUND64
        assert np.all(error <= bound * unit.astype(np.float64)), (error / unit).max()


@pytest.mark.parametrize("dtype", [np.float16, np.float32])
@pytest.mark.parametrize("kind", sorted(FUNCTIONS))
def test_blocks_of_a_few_rows_agree_with_one_block(kind, dtype, monkeypatch):
    # float16/32: the logits are formed block by block of rows and each block's gradient
    # taken into the rows' gradients at once; 7 rows in blocks of 3 (the last one short)
    # against one block of all 7, and against mpmath
    rng = np.random.default_rng(25)
    loss, grad = FUNCTIONS[kind]
    params = PARAMETERS[kind][0]
    a = rng.normal(size=(7, 5)).astype(dtype)
    b = (a.astype(np.float64) + 1e-2 * rng.normal(size=(7, 5))).astype(dtype)
    results = {}
    monkeypatch.setattr(C, "LOGIT_MIN_ROWS", 1)
    for block_bytes in (7 * 8 * 3, 1 << 20):
        monkeypatch.setattr(C, "LOGIT_BLOCK_BYTES", block_bytes)
        # (and the row functions over parts of 2 rows of each block, or all of it)
        monkeypatch.setattr(lossutils._blocks, "BLOCK_BYTES", min(7 * 8 * 2, block_bytes))
        results[block_bytes] = [loss(a, b, *params, reduction=r) for r in REDUCTIONS]
        results[block_bytes] += list(grad(a, b, *params, reduction="sum"))
    few, one = results.values()
    # the float64 sums may differ in their last bits: at most one rounding apart
    for x, y in zip(few, one, strict=True):
        x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
        size = np.maximum(np.maximum(np.abs(x), np.abs(y)), np.finfo(dtype).tiny)
        unit = np.spacing(size.astype(dtype)).astype(np.float64)
        assert np.all(np.abs(x - y) <= unit)
    per = exact(kind, a, b, *params)
    for got, reduction in zip(few[:3], REDUCTIONS, strict=True):
        ref.assert_ulp_in(got, ref.reduced(per, reduction), dtype, 2.0, label=reduction)
    p2 = params[1] if len(params) > 1 else None
    expected = exact_grad(kind, a, b, params[0], p2, "sum")
    for g, e in zip(few[3:], expected, strict=True):
        e64 = np.array([[float(v) for v in row] for row in e])
        unit = np.spacing(np.max(np.abs(e64), axis=-1, keepdims=True).astype(dtype))
        error = np.abs(g.astype(np.float64) - e64)
        assert np.all(error <= 2 * unit.astype(np.float64)), (error / unit).max()


@pytest.mark.parametrize("kind", sorted(FUNCTIONS))
def test_gradients_match_finite_differences(kind):
    rng = np.random.default_rng(23)
    a, b = rng.normal(size=(2, 5, 3))
    loss, grad = FUNCTIONS[kind]
    for reduction in REDUCTIONS:
        kwargs = {"reduction": reduction}
        assert_gradient_matches(loss, grad, (a, b), (0, 1), kwargs, rtol=1e-6, atol=1e-9)


def test_clip_is_the_mean_of_the_two_directions():
    rng = np.random.default_rng(24)
    x, y = rng.normal(size=(2, 6, 4))
    both = C.clip_loss(x, y, 0.1, "none")
    forward = C.info_nce_loss(x, y, 0.1, "none")
    backward = C.info_nce_loss(y, x, 0.1, "none")
    np.testing.assert_allclose(both, (forward + backward) / 2, rtol=1e-14)
    gx, gy = C.clip_loss_grad(x, y, 0.1)
    fx, fy = C.info_nce_loss_grad(x, y, 0.1)
    by, bx = C.info_nce_loss_grad(y, x, 0.1)
    np.testing.assert_allclose(gx, (fx + bx) / 2, rtol=1e-12, atol=1e-16)
    np.testing.assert_allclose(gy, (fy + by) / 2, rtol=1e-12, atol=1e-16)


def test_info_nce_of_identical_orthogonal_pairs_is_small_and_accurate():
    # cosines 1 on the diagonal, 0 off it: loss = log(1 + (N - 1) e^{-1/tau}) exactly
    n, tau = 4, 1 / 64  # 1/tau exact: the logits are exact
    x = np.eye(n)
    got = C.info_nce_loss(x, x, tau, "none")
    with mpmath.workdps(50):
        expected = mpmath.log1p((n - 1) * mpmath.exp(-1 / mpmath.mpf(tau)))
    ref.assert_ulp_in(got, np.full(n, expected, dtype=object), np.float64, max_ulp=2)
    assert 0 < got[0] < 1e-20


def test_siglip_of_orthogonal_embeddings():
    # every cosine 0, so every logit is the bias b: the loss per image is
    # log(1 + e^{b}) + (N - 1) log(1 + e^{-b}) with b = -10 (the positive's 10 nats)
    n = 5
    x = np.eye(2 * n)[:n]
    y = np.eye(2 * n)[n:]
    got = C.siglip_loss(x, y, reduction="none")
    with mpmath.workdps(50):
        b = mpmath.mpf(-10)
        expected = mpmath.log1p(mpmath.exp(-b)) + (n - 1) * mpmath.log1p(mpmath.exp(b))
    ref.assert_ulp_in(got, np.full(n, expected, dtype=object), np.float64, max_ulp=2)


def test_infinite_entries_give_the_limit_direction():
    rng = np.random.default_rng(26)
    x, y = rng.normal(size=(2, 3, 4))
    x_inf = x.copy()
    x_inf[0] = [np.inf, 0.5, -1.0, 2.0]
    limit = x.copy()
    limit[0] = [1.0, 0.0, 0.0, 0.0]
    for kind in sorted(FUNCTIONS):
        loss, grad = FUNCTIONS[kind]
        np.testing.assert_allclose(
            loss(x_inf, y, reduction="none"), loss(limit, y, reduction="none")
        )
        g = grad(x_inf, y)
        assert np.all(g[0][0] == 0) and np.all(np.isfinite(g[0])) and np.all(np.isfinite(g[1]))


@pytest.mark.parametrize("dtype", DTYPES)
def test_empty_batches(dtype):
    e = np.zeros((0, 5), dtype=dtype)
    for kind in sorted(FUNCTIONS):
        loss, grad = FUNCTIONS[kind]
        assert np.isnan(loss(e, e)) and loss(e, e).dtype == dtype
        assert loss(e, e, reduction="sum") == 0
        none = loss(e, e, reduction="none")
        assert none.shape == (0,) and none.dtype == dtype
        for reduction in REDUCTIONS:
            grads = grad(e, e, reduction=reduction)
            assert len(grads) == 2 and all(g.shape == (0, 5) and g.dtype == dtype for g in grads)


def test_float16_with_a_large_entry():
    rng = np.random.default_rng(27)
    x = rng.normal(size=(3, 4)).astype(np.float16)
    y = rng.normal(size=(3, 4)).astype(np.float16)
    x[0, 0] = 60000.0  # its square overflows float16
    for kind in sorted(FUNCTIONS):
        params = PARAMETERS[kind][-1]
        got = FUNCTIONS[kind][0](x, y, *params, reduction="none")
        ref.assert_ulp_in(got, exact(kind, x, y, *params), np.float16, max_ulp=1)


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: C.info_nce_loss(np.ones(3), np.ones(3)), r"query must have shape \(N, D\)"),
        (lambda: C.info_nce_loss(np.ones((2, 3)), np.ones((3, 3))), r"key must have the same"),
        (lambda: C.info_nce_loss(np.ones((2, 3)), np.ones((2, 3)), 0.0), r"temperature must be"),
        (lambda: C.clip_loss(np.ones((2, 3)), np.ones((2, 2))), r"text_embeds must have the same"),
        (
            lambda: C.siglip_loss(np.ones((2, 3)), np.ones((2, 3)), scale=-1.0),
            r"scale must be a positive finite number; got -1.0",
        ),
        (
            lambda: C.siglip_loss_grad(np.ones((2, 3)), np.ones((2, 3)), bias=np.nan),
            r"bias must be a finite real number",
        ),
        (lambda: C.clip_loss_grad(np.ones((2, 3)), np.ones((2, 3)), reduction="avg"), "reduction"),
    ],
)
def test_bad_arguments_are_named(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_exported_from_the_package():
    for name in C.__all__:
        assert getattr(lossutils, name) is getattr(C, name)


def test_siglip_at_the_largest_scale():
    # a scale within 2**-26 of the largest float: the double-double products split the
    # scaled unit rows, whose entry 1 then rounded to 2**1024 (NaN losses and gradients);
    # the products take half the scale and are doubled
    a = np.eye(2)
    b = np.array([[0.6, 0.8], [0.8, 0.6]])
    scale = float(np.finfo(np.float64).max)
    per = exact("siglip", a, b, scale, -10.0)
    for reduction in ("none", "mean"):
        got = C.siglip_loss(a, b, scale, -10.0, reduction=reduction)
        ref.assert_ulp_in(got, ref.reduced(per, reduction), np.float64, 4.0, label=reduction)
    for g in C.siglip_loss_grad(a, b, scale, -10.0):
        assert np.all(np.isfinite(g))
    # coefficients near the largest float summed by the backward matrix products: no
    # overflow warning (an infinite embedding entry beside them)
    a = np.array(
        [[np.inf, np.inf, 0.64], [0.1, -0.5, 0.4], [np.inf, 0.9, -0.7], [-1.3, -0.6, -100]]
    )
    b = np.array([[-2.3, -0.2, -1.2], [-0.7, -0.5, -0.3], [0.4, 1.0, 0.0], [1.4, -0.7, 0.4]])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        C.siglip_loss_value_and_grad(a, b, scale, reduction="sum")


@pytest.mark.parametrize("scale", [1e308, 1.498e308])
def test_siglip_gradient_at_a_huge_scale_summed(scale):
    # "sum" and "none": the backward products summed N coefficients of up to the scale,
    # and the projections took differences of such sums: inf for entries of 2e307 (exact,
    # mpmath); the coefficients take a power of 2 less, the gradient is multiplied back.
    # With N = 4 the "sum" gradient is 4 times the mean's, bit for bit
    a, b = np.random.default_rng(31).normal(size=(2, 4, 3))
    expected = exact_grad("siglip", a, b, scale, -10.0, "sum")
    summed = C.siglip_loss_grad(a, b, scale, -10.0, reduction="sum")
    for reduction in ("none", "mean"):
        got = C.siglip_loss_grad(a, b, scale, -10.0, reduction=reduction)
        factor = 4.0 if reduction == "mean" else 1.0
        for g, s in zip(got, summed, strict=True):
            np.testing.assert_array_equal(g * factor, s)
    for g, e in zip(summed, expected, strict=True):
        e64 = np.array([[float(v) for v in row] for row in e])
        assert np.all(np.isfinite(e64)) and np.all(np.isfinite(g))
        unit = np.spacing(np.max(np.abs(e64), axis=-1, keepdims=True))
        assert np.all(np.abs(g - e64) <= BOUND64 * unit), (np.abs(g - e64) / unit).max()


@pytest.mark.parametrize("kind", ["info_nce", "clip"])
def test_info_nce_and_clip_gradients_at_the_smallest_temperature_summed(kind):
    # the same at a temperature of 1.2e-308 ("sum": coefficients up to 8e307): entries of
    # the exact gradient up to 1.5e308 were inf; "sum" is 4 times the mean, bit for bit
    a, b = np.random.default_rng(38).normal(size=(2, 4, 3))
    grad = FUNCTIONS[kind][1]
    summed = grad(a, b, 1.2e-308, reduction="sum")
    for g, s in zip(grad(a, b, 1.2e-308, reduction="mean"), summed, strict=True):
        np.testing.assert_array_equal(4 * g, s)
    for g, e in zip(summed, exact_grad(kind, a, b, 1.2e-308, None, "sum"), strict=True):
        e64 = np.array([[float(v) for v in row] for row in e])
        assert np.all(np.isfinite(e64)) and np.all(np.isfinite(g))
        unit = np.spacing(np.max(np.abs(e64), axis=-1, keepdims=True))
        assert np.all(np.abs(g - e64) <= BOUND64 * unit), (np.abs(g - e64) / unit).max()


def _exact_grads_and_scales(kind, a, b, p1, p2):
    """The exact "sum" gradients w.r.t. both arrays, and per row the scale the module's
    docstring measures them in: the larger of the row's largest entry and the largest
    entry of the gradient w.r.t. the normalised row without the matched pair's term, over
    the row's norm (from the coefficients d loss / d cos_ij in closed form, mpmath)."""
    n = len(a)
    with mpmath.workdps(60):
        rows = [_mp_rows(a), _mp_rows(b)]
        norms = [[mpmath.sqrt(mpmath.fsum(e**2 for e in r)) for r in x] for x in rows]
        units = [_unit_rows(x) for x in rows]
        cos = _cosines(rows[0], rows[1])
        delta = [[1 if i == j else 0 for j in range(n)] for i in range(n)]
        if kind == "siglip":
            t, bias = ref.mp(p1), ref.mp(p2)
            # d softplus(-l z) / d cos = -l t / (1 + e^(l z)), l = 1 on the diagonal, else -1
            coef = [
                [
                    -(2 * delta[i][j] - 1)
                    * t
                    / (1 + mpmath.exp((2 * delta[i][j] - 1) * (t * c + bias)))
                    for j, c in enumerate(row)
                ]
                for i, row in enumerate(cos)
            ]
        else:
            tau = ref.mp(p1)

            def softmax(s):
                out = []
                for r in s:
                    w = [mpmath.exp(v - max(r)) for v in r]
                    out.append([x / mpmath.fsum(w) for x in w])
                return out

            s = [[v / tau for v in r] for r in cos]
            p = softmax(s)
            if kind == "info_nce":
                coef = [[(p[i][j] - delta[i][j]) / tau for j in range(n)] for i in range(n)]
            else:
                q = softmax([list(c) for c in zip(*s, strict=True)])  # q[j][i]: column j
                coef = [
                    [(p[i][j] + q[j][i] - 2 * delta[i][j]) / (2 * tau) for j in range(n)]
                    for i in range(n)
                ]
        out = []
        for which in (0, 1):
            h, other = units[which], units[1 - which]
            grad, scale = np.empty(a.shape, dtype=object), np.empty(n, dtype=object)
            for i in range(n):
                c = [coef[i][j] if which == 0 else coef[j][i] for j in range(n)]
                d_h = [mpmath.fsum(c[j] * other[j][k] for j in range(n)) for k in range(len(h[i]))]
                radial = mpmath.fsum(x * y for x, y in zip(h[i], d_h, strict=True))
                grad[i] = [(d_h[k] - radial * h[i][k]) / norms[which][i] for k in range(len(h[i]))]
                negatives = [d_h[k] - c[i] * other[i][k] for k in range(len(h[i]))]
                scale[i] = max(abs(v) for v in negatives) / norms[which][i]
            out.append((grad, scale))
        return out


@pytest.mark.parametrize(
    "kind, p1, p2",
    [("siglip", 1e308, -10.0), ("siglip", 1.498e308, -10.0), ("info_nce", 1.2e-308, None)]
    + [("clip", 1.2e-308, None)],
)
def test_gradients_at_extreme_scales_within_the_stated_bound(kind, p1, p2):
    # random rows at a SigLIP scale of 1e308 or an InfoNCE / CLIP temperature of 1.2e-308,
    # "sum" and "mean": in ULP of the row's largest entry alone, float64 entries are off by
    # up to 62 (siglip), 32 (info_nce), 26 (clip) here, as the module's docstring says of
    # rows whose gradient w.r.t. the normalised row lies nearly along the row; in ULP of
    # the larger of that and the gradient w.r.t. the normalised row (without the matched
    # pair's term) over the row's norm, the bound it states (6 the largest measured), 3.2
    # at most. Where the exact gradient is beyond the range ("sum", sums of N coefficients
    # of 1e308) the entry is inf of its sign
    grad = FUNCTIONS[kind][1]
    params = (p1, p2) if kind == "siglip" else (p1,)
    for n, d, seeds in ((4, 3, range(4)), (8, 5, range(2)), (16, 3, range(3))):
        for seed in seeds:
            a, b = np.random.default_rng(seed).normal(size=(2, n, d))
            exact_sum = _exact_grads_and_scales(kind, a, b, p1, p2)
            for reduction in ("sum", "mean"):
                divisor = n if reduction == "mean" else 1
                for g, (e, scale) in zip(
                    grad(a, b, *params, reduction=reduction), exact_sum, strict=True
                ):
                    with mpmath.workdps(60):
                        for i, k in np.ndindex(g.shape):
                            exact = e[i, k] / divisor
                            if abs(float(exact)) == np.inf:  # (beyond the range: inf)
                                assert g[i, k] == float(exact), (kind, n, seed, reduction)
                                continue
                            # an ULP of the larger, as exact values (the scale may exceed
                            # the range: the bound then allows more than the largest float)
                            top = max(max(abs(v) for v in e[i]), scale[i]) / divisor
                            unit = mpmath.ldexp(1, max(mpmath.frexp(top)[1] - 53, -1074))
                            error = abs(ref.mp(g[i, k]) - exact) / unit
                            assert error <= 6, (kind, n, seed, reduction, float(error))


@pytest.mark.parametrize("name", ["info_nce_loss", "clip_loss", "siglip_loss", "nt_xent_loss"])
def test_rows_of_the_largest_float_or_with_a_nan_warn_nothing(name):
    # a row of 1.8e308s has a norm beyond the range (its direction is the ones' direction),
    # and a row holding a NaN is not scaled, so its squares overflow: neither may warn
    top = np.finfo(np.float64).max
    rng = np.random.default_rng(11)
    a, b = rng.normal(size=(4, 3)), rng.normal(size=(4, 3))
    huge, ones = a.copy(), a.copy()
    huge[1], ones[1] = top, 1.0
    with_nan = a.copy()
    with_nan[2] = [top, 0.5, np.nan]
    loss, grad = getattr(lossutils, name), getattr(lossutils, name + "_grad")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for reduction in ("mean", "sum", "none"):
            np.testing.assert_allclose(
                loss(huge, b, reduction=reduction), loss(ones, b, reduction=reduction), rtol=1e-14
            )
            assert np.all(np.isfinite(grad(huge, b, reduction=reduction)[1]))
            assert np.isnan(loss(with_nan, b, reduction="mean"))
            grad(with_nan, b, reduction=reduction)
