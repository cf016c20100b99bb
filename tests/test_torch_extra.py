"""soft_margin, multilabel_soft_margin, multilabel_margin, margin_ranking, cosine_embedding and
hinge_embedding losses: accuracy against mpmath in every dtype, gradients against finite
differences and mpmath, bad input, empty batches, infinities."""

from __future__ import annotations

import math

import mpmath
import numpy as np
import pytest

import lossutils as lu
from lossutils.testing import assert_close_to_exact, assert_gradient_matches, exact_inputs

DTYPES = [np.float16, np.float32, np.float64]
REDUCTIONS = ["mean", "sum", "none"]
rng = np.random.default_rng(2026)


def mp_array(f, *arrays):
    """``f`` applied entry by entry to exact mpmath copies of ``arrays`` (an object array)."""
    exact = exact_inputs(*arrays) if len(arrays) > 1 else (exact_inputs(*arrays),)
    out = np.empty(np.shape(arrays[0]), dtype=object)
    with mpmath.workdps(60):
        for index in np.ndindex(out.shape):
            out[index] = f(*(e[index] for e in exact))
    return out


def mp_softplus(v):
    return mpmath.log1p(mpmath.exp(v))


def mp_sigmoid(v):
    return 1 / (1 + mpmath.exp(-v))


def signs(rng, shape):
    return np.where(rng.random(shape) < 0.5, -1.0, 1.0)


# --- soft margin ----------------------------------------------------------------------------------

# logits from tiny to far beyond float32's exp overflow (t x = -100 and -1e4)
SOFT_X = np.concatenate([rng.normal(scale=4, size=30), [0.0, 1e-8, 20.0, 40.0, -100.0, 1e4, -1e4]])
SOFT_T = np.concatenate([signs(rng, 30), [1, -1, 1, 1, 1, 1, 1]])


@pytest.mark.parametrize("dtype", DTYPES)
def test_soft_margin_loss_against_mpmath(dtype):
    x = SOFT_X.astype(dtype)
    if dtype == np.float16:
        x = np.clip(SOFT_X, -1e3, 1e3).astype(dtype)
    t = SOFT_T.astype(dtype)
    got = lu.soft_margin_loss(x, t, reduction="none")
    assert got.dtype == dtype
    exact = mp_array(lambda a, b: mp_softplus(-a * b), x, t)
    assert_close_to_exact(got, exact, max_ulp=2, label="soft_margin_loss")
    grad = lu.soft_margin_loss_grad(x, t, reduction="none")
    assert grad.dtype == dtype
    exact_grad = mp_array(lambda a, b: -b * mp_sigmoid(-a * b), x, t)
    bound = SOFT_GRAD_BOUND if dtype == np.float64 else 2
    assert_close_to_exact(grad, exact_grad, max_ulp=bound, label="soft_margin_loss_grad")


# float64: e^{-t x}, 1 + e^{-t x} and their quotient each round (a mean's scale 1 / n and the
# product with it too); the docstring states the worst of a dense sweep, 2.5 ULP (3.1 for a mean)
SOFT_GRAD_BOUND = 3.5
# the worst scores (t = 1) of a sweep of 2.4e7 float64 scores in [-40, 40]: 2.4 to 2.5 ULP
# (2.9 to 3.1 for a mean), beyond the 2 ULP the test above checks on its few points
SOFT_WORST = [4.850990349255861, 4.157468338639248, 2.7129461407790476, 4.1508095441744945]
SOFT_WORST += [3.4631597570125123, 3.463952003645147, 3.4497159738427285, 4.85018116138999]
SOFT_WORST += [2.761333729812577, 2.000227931261791, 2.7702525293781157, 2.7595219244494738]
SOFT_WORST += [2.009639122381661, 7.675972905049697]


def test_soft_margin_gradient_float64_densely_within_its_stated_bound():
    worst = np.array(SOFT_WORST)
    steps = np.arange(-12, 13)
    near = np.concatenate([w + steps * np.spacing(w) for w in worst])
    x = np.concatenate([near, np.linspace(-40, 40, 641)])
    t = np.where(np.arange(x.size) % 2 == 0, 1.0, -1.0)
    x = x * t  # the same t x with both labels
    exact = mp_array(lambda a, b: -b * mp_sigmoid(-a * b), x, t)
    grad = lu.soft_margin_loss_grad(x, t, reduction="none")
    assert_close_to_exact(grad, exact, max_ulp=SOFT_GRAD_BOUND, label="none")
    with mpmath.workdps(60):
        exact_mean = np.array([e / x.size for e in exact], dtype=object)
    grad = lu.soft_margin_loss_grad(x, t, reduction="mean")
    assert_close_to_exact(grad, exact_mean, max_ulp=SOFT_GRAD_BOUND, label="mean")


def test_soft_margin_loss_is_logistic_loss_in_base_e_and_bce_with_logits():
    x, t = SOFT_X, SOFT_T
    np.testing.assert_array_equal(
        lu.soft_margin_loss(x, t, reduction="none"),
        lu.logistic_loss(x, t, base=math.e, reduction="none"),
    )
    np.testing.assert_allclose(
        lu.soft_margin_loss(x, t, reduction="none"),
        lu.binary_cross_entropy_with_logits(x, (1 + t) / 2, reduction="none"),
        rtol=1e-15,
    )


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_soft_margin_gradient_finite_differences(rng, reduction):
    x, t = rng.normal(scale=2, size=(3, 4)), signs(rng, (3, 4))
    assert_gradient_matches(
        lu.soft_margin_loss, lu.soft_margin_loss_grad, [x, t], kwargs={"reduction": reduction}
    )


def test_soft_margin_infinities():
    x = np.array([np.inf, -np.inf, np.inf, -np.inf])
    t = np.array([1.0, 1.0, -1.0, -1.0])
    assert lu.soft_margin_loss(x, t, reduction="none").tolist() == [0.0, np.inf, np.inf, 0.0]
    assert lu.soft_margin_loss_grad(x, t, reduction="none").tolist() == [-0.0, -1.0, 1.0, 0.0]


# --- multilabel soft margin -----------------------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("weighted", [False, True])
def test_multilabel_soft_margin_against_mpmath(rng, dtype, weighted):
    x = np.concatenate([rng.normal(scale=3, size=(6, 4)), [[30.0, -30.0, 0.0, 1e3]]]).astype(dtype)
    y = np.concatenate([rng.random((6, 4)), [[1.0, 0.0, 1.0, 1.0]]]).astype(dtype)
    w = (rng.random(4) + 0.5).astype(dtype) if weighted else None
    got = lu.multilabel_soft_margin_loss(x, y, weight=w, reduction="none")
    grad = lu.multilabel_soft_margin_loss_grad(x, y, weight=w, reduction="sum")
    assert got.dtype == dtype and got.shape == (7,) and grad.dtype == dtype
    wx = np.ones(4, dtype) if w is None else w
    exact, exact_grad = np.empty(7, object), np.empty(x.shape, object)
    ex, ey, ew = exact_inputs(x, y, wx)
    with mpmath.workdps(60):
        for i in range(7):
            terms = [
                ew[c] * (ey[i, c] * mp_softplus(-ex[i, c]) + (1 - ey[i, c]) * mp_softplus(ex[i, c]))
                for c in range(4)
            ]
            exact[i] = mpmath.fsum(terms) / 4
            for c in range(4):
                exact_grad[i, c] = ew[c] * (mp_sigmoid(ex[i, c]) - ey[i, c]) / 4
    assert_close_to_exact(got, exact, max_ulp=4, label="multilabel_soft_margin_loss")
    # the hard-label entries keep their relative accuracy (two-term form); soft ones are
    # accurate to a few ULP of their larger term, checked in float64 ULP of the output dtype
    hard = (y == 0) | (y == 1)
    assert_close_to_exact(grad[hard], exact_grad[hard], max_ulp=4, label="hard-label gradient")
    scale = np.abs(np.asarray(grad, np.float64)).max()
    errors = [abs(float(grad[i]) - float(exact_grad[i])) for i in np.ndindex(x.shape)]
    assert max(errors) <= 8 * np.finfo(dtype).eps * scale


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_multilabel_soft_margin_gradient_finite_differences(rng, reduction):
    x, y, w = rng.normal(size=(3, 4)), rng.random((3, 4)), rng.random(4)
    assert_gradient_matches(
        lu.multilabel_soft_margin_loss,
        lu.multilabel_soft_margin_loss_grad,
        [x, y, w],
        kwargs={"reduction": reduction},
    )


def test_multilabel_soft_margin_is_mean_of_bce_over_classes(rng):
    x, y, w = rng.normal(size=(5, 3)), rng.random((5, 3)), rng.random(3)
    bce = lu.binary_cross_entropy_with_logits(x, y, weight=w, reduction="none")
    np.testing.assert_allclose(
        lu.multilabel_soft_margin_loss(x, y, weight=w, reduction="none"), bce.mean(-1), rtol=1e-14
    )


def test_multilabel_soft_margin_zero_weight_masks_infinite_logit():
    x = np.array([[np.inf, -np.inf, 1.0]])
    y = np.array([[0.0, 1.0, 1.0]])
    w = np.array([0.0, 0.0, 1.0])
    loss = lu.multilabel_soft_margin_loss(x, y, weight=w)
    assert loss == pytest.approx(float(mp_softplus(-1)) / 3, rel=1e-15)
    assert lu.multilabel_soft_margin_loss(x, y) == np.inf
    grad = lu.multilabel_soft_margin_loss_grad(x, y)
    assert np.all(np.isfinite(grad)) and grad[0, 0] == pytest.approx(1 / 3)


# --- multilabel margin ----------------------------------------------------------------------------


def mp_multilabel_margin(row, target):
    labels = []
    for k in target:
        if k < 0:
            break
        labels.append(int(k))
    c = len(row)
    others = [i for i in range(c) if i not in labels]
    total = mpmath.fsum(max(0, 1 - (row[j] - row[i])) for j in labels for i in others)
    return total / c


def multilabel_targets(rng, n, c):
    out = np.full((n, c), -1)
    for i in range(n):
        k = i % (c + 1)
        out[i, :k] = rng.permutation(c)[:k]
    return out


@pytest.mark.parametrize("dtype", DTYPES)
def test_multilabel_margin_against_mpmath(rng, dtype):
    x = rng.normal(size=(10, 5)).astype(dtype)
    y = multilabel_targets(rng, 10, 5)
    got = lu.multilabel_margin_loss(x, y, reduction="none")
    assert got.dtype == dtype and got.shape == (10,)
    ex = exact_inputs(x)
    exact = np.empty(10, object)
    with mpmath.workdps(60):
        for i in range(10):
            exact[i] = mp_multilabel_margin(list(ex[i]), y[i])
    assert_close_to_exact(got, exact, max_ulp=4, label="multilabel_margin_loss")


def test_multilabel_margin_gap_compensated_at_the_kink():
    """A gap of 1 - (x_j - x_i) that is a tiny positive number, not 0: it counts."""
    x = np.array([[1.0 + 2.0**-52, 2.0**-60]])  # gap = 1 - 1 - 2^-52 + 2^-60 < 0
    assert lu.multilabel_margin_loss(x, [[0, -1]]) == 0
    x = np.array([[1.0 + 2.0**-52, 2.0**-51]])  # gap = 2^-52 > 0
    assert lu.multilabel_margin_loss(x, [[0, -1]]) == 2.0**-53  # divided by C = 2
    assert lu.multilabel_margin_loss_grad(x, [[0, -1]]).tolist() == [[-0.5, 0.5]]


@pytest.mark.parametrize("dtype", DTYPES)
def test_multilabel_margin_many_rows_exact(rng, dtype):
    """Enough rows for many blocks, rows with 0 to C labels (some repeated), quarter-integer
    scores (so some gaps are exactly 0 and do not count): values and gradient against exact
    rational arithmetic."""
    from fractions import Fraction

    n, c = 3001, 6
    x = (rng.integers(-8, 9, size=(n, c)) / 4).astype(dtype)
    y = multilabel_targets(rng, n, c)
    y[::7, 1] = y[::7, 0]  # a repeated label (where the row has two)
    value, grad = lu.multilabel_margin_loss_value_and_grad(x, y, reduction="none")
    exact_value = np.empty(n)
    pairs = np.zeros((n, c))  # active pairs at each class (+1 the rival, -1 the label)
    for r in range(n):
        labels = []
        for k in y[r]:
            if k < 0:
                break
            labels.append(int(k))
        row = [Fraction(float(v)) for v in x[r]]
        total = Fraction(0)
        for j in labels:
            for i in set(range(c)) - set(labels):
                gap = 1 - row[j] + row[i]
                if gap > 0:
                    total += gap
                    pairs[r, i] += 1
                    pairs[r, j] -= 1
        exact_value[r] = total / c
    exact_grad = pairs / c
    np.testing.assert_array_equal(value, exact_value.astype(dtype))
    np.testing.assert_array_equal(grad, exact_grad.astype(dtype))
    mean_grad = lu.multilabel_margin_loss_grad(x, y)
    np.testing.assert_allclose(mean_grad, exact_grad / n, rtol=np.finfo(dtype).eps, atol=0)


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_multilabel_margin_gradient_finite_differences(rng, reduction):
    x = rng.normal(size=(6, 4))
    y = multilabel_targets(rng, 6, 4)
    assert_gradient_matches(
        lu.multilabel_margin_loss,
        lu.multilabel_margin_loss_grad,
        [x, y],
        kwargs={"reduction": reduction},
    )


def test_multilabel_margin_special_targets(rng):
    x = rng.normal(size=(2, 3))
    none = lu.multilabel_margin_loss(x, np.full((2, 3), -1), reduction="none")
    assert none.tolist() == [0.0, 0.0]
    assert not lu.multilabel_margin_loss_grad(x, np.full((2, 3), -1)).any()
    # every class a label: no rival, loss 0
    assert lu.multilabel_margin_loss(x, [[0, 1, 2], [2, 0, 1]], reduction="sum") == 0
    # a repeated label counts twice, as in PyTorch; entries after the first -1 are ignored
    once = lu.multilabel_margin_loss(x[:1], [[1, -1, -1]])
    assert lu.multilabel_margin_loss(x[:1], [[1, 1, -1]]) == pytest.approx(2 * once)
    assert lu.multilabel_margin_loss(x[:1], [[1, -1, 2]]) == once
    # one sample as 1-D input
    assert lu.multilabel_margin_loss(x[0], [1, -1, 0], reduction="none").shape == ()


# --- margin ranking -------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("margin", [0.0, 0.5, -1.25])
def test_margin_ranking_against_mpmath(rng, dtype, margin):
    a = rng.normal(size=20).astype(dtype)
    b = (a + rng.normal(scale=1e-3, size=20)).astype(dtype)  # near the kink for margin 0
    t = signs(rng, 20).astype(dtype)
    got = lu.margin_ranking_loss(a, b, t, margin=margin, reduction="none")
    assert got.dtype == dtype
    m = mpmath.mpf(float(dtype(margin)))
    exact = mp_array(lambda p, q, s: max(0, -s * (p - q) + m), a, b, t)
    assert_close_to_exact(got, exact, max_ulp=0.5, label="margin_ranking_loss")
    g1, g2 = lu.margin_ranking_loss_grad(a, b, t, margin=margin, reduction="none")
    gaps = mp_array(lambda p, q, s: -s * (p - q) + m, a, b, t)
    active = np.array([bool(g >= 0) for g in gaps])
    np.testing.assert_array_equal(g1, np.where(active, -t, 0).astype(dtype))
    np.testing.assert_array_equal(g2, -g1)


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_margin_ranking_gradient_finite_differences(rng, reduction):
    a, b, t = rng.normal(size=(3, 4)), rng.normal(size=(3, 4)), signs(rng, (3, 4))
    assert_gradient_matches(
        lu.margin_ranking_loss,
        lu.margin_ranking_loss_grad,
        [a, b, t],
        argnums=(0, 1),
        kwargs={"margin": 0.3, "reduction": reduction},
    )


def test_margin_ranking_kink_and_infinities():
    # gap exactly 0: the gradient passes (clamp_min); loss 0
    g1, g2 = lu.margin_ranking_loss_grad([1.0], [0.5], [1.0], margin=0.5, reduction="sum")
    assert (g1.tolist(), g2.tolist()) == ([-1.0], [1.0])
    loss = lu.margin_ranking_loss([np.inf, -np.inf], [0.0, 0.0], [1.0, 1.0], reduction="none")
    assert loss.tolist() == [0.0, np.inf]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("margin", [0.0, 0.5])
def test_margin_ranking_cancelling_gap_in_blocks(rng, dtype, margin, monkeypatch):
    # x1 - x2 is inexact (x2 far smaller than x1) and the margin cancels it to a gap far
    # below an ULP of x1 - x2: the plain m - t fl(x1 - x2) would be wrong in most digits.
    # Blocks of 8 elements: the gaps of every block, the labels checked block by block.
    monkeypatch.setattr(lu._numerics, "CHUNK", 8)
    n = 37
    t = signs(rng, n).astype(dtype)
    x2 = (rng.normal(size=n) * 2.0**-14).astype(dtype)
    near = np.float64(dtype(margin)) * -t + x2.astype(np.float64)
    x1 = (near + rng.normal(size=n) * 2.0**-20).astype(dtype)
    x1[::5] = rng.normal(size=x1[::5].size).astype(dtype)  # gaps far from 0 too
    exact_gaps = mp_array(
        lambda p, q, s: -s * (p - q) + mpmath.mpf(float(dtype(margin))), x1, x2, t
    )
    exact = np.array([max(0, g) for g in exact_gaps], dtype=object)
    for reduction in ("none", "sum"):
        value, (g1, g2) = lu.margin_ranking_loss_value_and_grad(
            x1, x2, t, margin=margin, reduction=reduction
        )
        if reduction == "none":
            assert_close_to_exact(value, exact, max_ulp=0.5, label="margin_ranking_loss")
        active = np.array([bool(g >= 0) for g in exact_gaps])
        np.testing.assert_array_equal(g1, np.where(active, -t, 0).astype(dtype))
        np.testing.assert_array_equal(g2, -g1)
    with pytest.raises(ValueError, match=r"labels in \{-1, \+1\}; got 0.5"):
        lu.margin_ranking_loss(x1, x2, np.where(np.arange(n) == 30, 0.5, t))


# --- hinge embedding ------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES)
def test_hinge_embedding_against_mpmath(rng, dtype):
    x = np.abs(rng.normal(scale=2, size=30)).astype(dtype)
    t = signs(rng, 30).astype(dtype)
    got = lu.hinge_embedding_loss(x, t, margin=1.5, reduction="none")
    assert got.dtype == dtype
    m = mpmath.mpf(1.5)
    exact = mp_array(lambda v, s: v if s == 1 else max(0, m - v), x, t)
    assert_close_to_exact(got, exact, max_ulp=0.5, label="hinge_embedding_loss")


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_hinge_embedding_gradient_finite_differences(rng, reduction):
    x, t = np.abs(rng.normal(size=(3, 4))), signs(rng, (3, 4))
    assert_gradient_matches(
        lu.hinge_embedding_loss,
        lu.hinge_embedding_loss_grad,
        [x, t],
        kwargs={"margin": 1.0, "reduction": reduction},
    )


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_hinge_embedding_in_blocks(rng, dtype, reduction, monkeypatch):
    # blocks of 8 elements: every block's losses and gradients, the labels checked per block
    monkeypatch.setattr(lu._numerics, "CHUNK", 8)
    n = 29
    x = rng.normal(scale=2, size=n).astype(dtype)
    x[[3, 11, 20]] = [1.5, np.inf, -np.inf]  # the kink, both infinities
    t = signs(rng, n).astype(dtype)
    t[[3, 11, 20]] = -1
    value, grad = lu.hinge_embedding_loss_value_and_grad(x, t, 1.5, reduction)
    per_element = mp_array(lambda p, s: p if s == 1 else max(0, mpmath.mpf(1.5) - p), x, t)
    slope = np.where(t == 1, 1.0, -(x <= 1.5).astype(float))
    if reduction == "none":
        assert_close_to_exact(value, per_element, max_ulp=0.5, label="hinge_embedding_loss")
    else:
        total = mpmath.fsum(per_element) / (n if reduction == "mean" else 1)
        assert value == dtype(float(total))
        slope = slope / (n if reduction == "mean" else 1)
    np.testing.assert_array_equal(grad, slope.astype(dtype))
    with pytest.raises(ValueError, match=r"labels in \{-1, \+1\}; got 0.0"):
        lu.hinge_embedding_loss_grad(x, np.where(np.arange(n) == 27, 0.0, t))


def test_hinge_embedding_kink_and_infinities():
    grad = lu.hinge_embedding_loss_grad([1.0, 1.0, 2.0], [-1.0, 1.0, -1.0], reduction="none")
    assert grad.tolist() == [-1.0, 1.0, 0.0]
    x = np.array([np.inf, np.inf, -np.inf])
    t = np.array([1.0, -1.0, -1.0])
    assert lu.hinge_embedding_loss(x, t, reduction="none").tolist() == [np.inf, 0.0, np.inf]


# --- cosine embedding -----------------------------------------------------------------------------

EPS = mpmath.mpf(float(np.float32(1e-12)))


def mp_cos(u, v):
    dot = mpmath.fsum(p * q for p, q in zip(u, v, strict=True))
    n1 = mpmath.fsum(p * p for p in u) + EPS
    n2 = mpmath.fsum(q * q for q in v) + EPS
    return dot / mpmath.sqrt(n1 * n2)


def mp_cosine_rows(a, b, t, margin):
    ea, eb = exact_inputs(a, b)
    out = np.empty(a.shape[:-1], object)
    grad = np.empty(a.shape, object)
    with mpmath.workdps(80):
        for i in np.ndindex(out.shape):
            u, v = list(ea[i]), list(eb[i])
            c = mp_cos(u, v)
            out[i] = 1 - c if t[i] == 1 else max(0, c - margin)
            d1 = mpmath.sqrt(mpmath.fsum(p * p for p in u) + EPS)
            d2 = mpmath.sqrt(mpmath.fsum(q * q for q in v) + EPS)
            factor = -1 if t[i] == 1 else (1 if c - margin >= 0 else 0)
            for k in range(len(u)):
                grad[i + (k,)] = factor * (v[k] / (d1 * d2) - c * u[k] / d1**2)
    return out, grad


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("scale", [1.0, 1e-3, 1e30, 1e-30])
def test_cosine_embedding_against_mpmath(rng, dtype, scale):
    if dtype == np.float16 and scale != 1.0:
        scale = {1e-3: 1e-3, 1e30: 1e3, 1e-30: 1e-4}[scale]  # within float16's range
    a = rng.normal(size=(12, 5))
    b = a + rng.normal(scale=0.5, size=(12, 5))
    b[:3] = a[:3] * 3 + rng.normal(scale=1e-4, size=(3, 5))  # nearly parallel: 1 - cos tiny
    a, b = (a * scale).astype(dtype), (b * scale).astype(dtype)
    t = np.array([1, 1, 1] + [int(v) for v in signs(rng, 9)])
    got = lu.cosine_embedding_loss(a, b, t, margin=0.1, reduction="none")
    assert got.dtype == dtype
    exact, exact_grad = mp_cosine_rows(a, b, t, mpmath.mpf(0.1))
    if dtype == np.float64:
        # 1 - cos of nearly parallel vectors (angle theta) has a relative error of about
        # eps / theta, that of the normalised vectors' difference (forming 1 - cos from the
        # cosine would give eps / theta**2); elsewhere a few ULP
        for i in range(12):
            near = t[i] == 1 and float(exact[i]) < 1e-3
            bound = 8 / math.sqrt(2 * float(exact[i])) if near else 8
            assert_close_to_exact(got[i : i + 1], exact[i : i + 1], max_ulp=bound, label=str(i))
    else:
        assert_close_to_exact(got, exact, max_ulp=1, label="cosine_embedding_loss")
    g1, _ = lu.cosine_embedding_loss_grad(a, b, t, margin=0.1, reduction="none")
    assert g1.dtype == dtype
    # accurate to a few ULP of the row's largest term (the two terms cancel near parallel)
    for i in range(12):
        size = max(abs(float(v)) for v in exact_grad[i]) + float(np.finfo(dtype).tiny)
        err = max(abs(float(g1[i, k]) - float(exact_grad[i, k])) for k in range(5))
        assert err <= 64 * np.finfo(dtype).eps * size * (1e4 if float(exact[i]) < 1e-3 else 1)


@pytest.mark.parametrize("dtype", DTYPES)
def test_cosine_embedding_plain_and_careful_rows_in_blocks(rng, dtype, monkeypatch):
    # rows on both sides of the switch to the careful cosine: cos just below and above 1/2,
    # squared norms just inside and outside [2^-900, 2^900] (float64); blocks of 2 rows
    monkeypatch.setattr(lu._numerics, "CHUNK", 8)
    angles = np.array([1.0, 1.04, 1.05, 1.1, 0.3, 2.0, 3.0, 1e-3])  # cos(1.047) = 1/2
    a = np.zeros((16, 4))
    a[:8, 0], a[8:, 0] = 1.0, 1.0
    b = np.zeros((16, 4))
    b[:8, 0], b[:8, 1] = np.cos(angles), np.sin(angles)
    b[8:, 0], b[8:, 1] = np.cos(angles), np.sin(angles)
    a[:, 2:] = b[:, 2:] = rng.normal(scale=1e-3, size=(16, 2))
    if dtype == np.float64:  # squared norms inside the plain range and beyond (under, overflow)
        a[8:12] *= [[2.0**-449], [2.0**-540], [2.0**449], [2.0**520]]
        b[8:12] *= [[2.0**-449], [2.0**-540], [2.0**449], [1.0]]  # |x1|^2 overflows alone
    a, b = a.astype(dtype), b.astype(dtype)
    t = np.where(np.arange(16) % 3 == 0, -1, 1)
    # a negative margin: cos - m does not cancel (where it does its error is ULP of m)
    value, (g1, _) = lu.cosine_embedding_loss_value_and_grad(a, b, t, -0.5, reduction="none")
    exact, exact_grad = mp_cosine_rows(a, b, t, mpmath.mpf(-0.5))
    assert_close_to_exact(value, exact, max_ulp=1 if dtype != np.float64 else 8, label="loss")
    for i in range(16):
        size = max(abs(float(v)) for v in exact_grad[i]) + float(np.finfo(dtype).tiny)
        err = max(abs(float(g1[i, k]) - float(exact_grad[i, k])) for k in range(4))
        assert err <= 64 * np.finfo(dtype).eps * size, i


def test_cosine_embedding_zero_vector_and_huge_vectors():
    a = np.array([[0.0, 0.0], [1e200, 1e200], [1e-200, 0.0]])
    b = np.array([[1.0, 2.0], [1e200, -1e200], [1e-200, 1e-200]])
    t = np.array([1.0, -1.0, 1.0])
    loss = lu.cosine_embedding_loss(a, b, t, margin=-0.5, reduction="none")
    # zero vector: cos 0; huge orthogonal vectors: cos 0, loss 0.5; tiny: the eps wins, cos ~0
    assert loss.tolist() == [1.0, 0.5, 1.0]
    g1, g2 = lu.cosine_embedding_loss_grad(a, b, t, margin=-0.5, reduction="none")
    eps = float(np.float32(1e-12))
    np.testing.assert_allclose(g1[0], -b[0] / (math.sqrt(eps) * math.sqrt(5 + eps)), rtol=1e-15)
    assert np.all(g2[0] == 0)
    assert np.all(np.isfinite(g1)) and np.all(np.isfinite(g2))


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_cosine_embedding_gradient_finite_differences(rng, reduction):
    a, b, t = rng.normal(size=(4, 3)), rng.normal(size=(4, 3)), signs(rng, 4)
    assert_gradient_matches(
        lu.cosine_embedding_loss,
        lu.cosine_embedding_loss_grad,
        [a, b, t],
        argnums=(0, 1),
        kwargs={"margin": 0.2, "reduction": reduction},
    )


# --- shared: empty batches, bad input -------------------------------------------------------------

CALLS = {
    "soft_margin_loss": lambda n, d: (np.zeros(n, d), np.ones(n)),
    "multilabel_soft_margin_loss": lambda n, d: (np.zeros((n, 3), d), np.zeros((n, 3))),
    "multilabel_margin_loss": lambda n, d: (np.zeros((n, 3), d), np.full((n, 3), -1)),
    "margin_ranking_loss": lambda n, d: (np.zeros(n, d), np.zeros(n, d), np.ones(n)),
    "cosine_embedding_loss": lambda n, d: (np.zeros((n, 3), d), np.zeros((n, 3), d), np.ones(n)),
    "hinge_embedding_loss": lambda n, d: (np.zeros(n, d), np.ones(n)),
}


@pytest.mark.parametrize("name", sorted(CALLS))
@pytest.mark.parametrize("dtype", DTYPES)
def test_empty_batch(name, dtype):
    args = CALLS[name](0, dtype)
    f, grad = getattr(lu, name), getattr(lu, name + "_grad")
    mean = f(*args)
    assert np.isnan(mean)
    assert f(*args, reduction="sum") == 0
    assert f(*args, reduction="none").shape == (0,)
    g = grad(*args)
    for array, gradient in zip(args, g if isinstance(g, tuple) else (g,), strict=False):
        assert gradient.shape == array.shape and gradient.size == 0


@pytest.mark.parametrize(
    ("name", "args", "message"),
    [
        ("soft_margin_loss", ([0.5, 1.0], [1.0, 0.0]), r"target must hold labels in \{-1, \+1\}"),
        ("soft_margin_loss", ([0.5, 1.0], [1.0]), "target must have the same shape as input"),
        ("multilabel_soft_margin_loss", ([[0.5]], [[2.0]]), r"target must lie in \[0, 1\]"),
        ("multilabel_soft_margin_loss", ([[0.5, 1.0]], [[1.0]]), "same shape as input"),
        ("multilabel_soft_margin_loss", (np.zeros((2, 0)), np.zeros((2, 0))), "class axis"),
        ("multilabel_margin_loss", ([[0.5, 1.0]], [[2, -1]]), r"class indices in \[0, 1\] or -1"),
        ("multilabel_margin_loss", ([[0.5, 1.0]], [[-2, -1]]), "got -2"),
        ("multilabel_margin_loss", ([[0.5, 1.0]], [[0.0, -1.0]]), "integer class indices"),
        ("multilabel_margin_loss", ([[0.5, 1.0]], [0]), r"same shape as input \(1, 2\)"),
        ("margin_ranking_loss", ([1.0], [1.0, 2.0], [1.0]), "input2 must have the same shape"),
        ("margin_ranking_loss", ([1.0], [2.0], [0.0]), r"labels in \{-1, \+1\}; got 0.0"),
        ("cosine_embedding_loss", ([[1.0]], [[1.0]], [1.0, 1.0]), "target must have the batch"),
        ("cosine_embedding_loss", (1.0, 1.0, 1.0), "input1 must have a non-empty feature axis"),
        ("hinge_embedding_loss", ([1.0], [2.0]), r"labels in \{-1, \+1\}; got 2.0"),
    ],
)
def test_bad_input_names_argument_expectation_value(name, args, message):
    for suffix in ("", "_grad"):
        with pytest.raises(ValueError, match=message):
            getattr(lu, name + suffix)(*args)


@pytest.mark.parametrize("name", ["margin_ranking_loss", "cosine_embedding_loss"])
def test_margin_must_be_finite(name):
    args = CALLS[name](2, np.float64)
    with pytest.raises(ValueError, match="margin must be a finite real number; got inf"):
        getattr(lu, name)(*args, margin=math.inf)
    with pytest.raises(ValueError, match="margin must be a finite real number"):
        lu.hinge_embedding_loss(*CALLS["hinge_embedding_loss"](2, np.float64), margin="1")


def test_nan_propagates():
    nan = np.array([np.nan, 1.0])
    ones = np.ones(2)
    assert np.isnan(lu.soft_margin_loss(nan, ones, reduction="none")[0])
    assert np.isnan(lu.hinge_embedding_loss_grad(nan, ones, reduction="none")[0])
    assert np.isnan(lu.margin_ranking_loss(nan, ones, ones, reduction="none")[0])
    assert np.isnan(lu.cosine_embedding_loss([[np.nan, 1.0]], [[1.0, 1.0]], [1.0]))
    assert np.isnan(lu.multilabel_margin_loss([[np.nan, 1.0]], [[1, -1]]))
    assert np.isnan(lu.multilabel_margin_loss_grad([[np.nan, 1.0]], [[1, -1]])).all()


@pytest.mark.parametrize(
    "dtype, big", [(np.float16, 2048.0), (np.float32, 1e8), (np.float64, 1e17)]
)
@pytest.mark.parametrize("reduction", ["sum", "mean"])
def test_hinge_embedding_reduction_of_both_signs_keeps_its_stated_bound(dtype, big, reduction):
    # similar pairs' losses are x itself: big + 1 - big = 1 cancels (float32 and float64
    # give 0), within a few ULP of the sum of the magnitudes, as the docstring states
    x = np.array([big, 1.0, -big], dtype)
    got = lu.hinge_embedding_loss(x, np.ones(3, dtype), reduction=reduction)
    count = 3 if reduction == "mean" else 1
    magnitudes = float(np.sum(np.abs(x.astype(np.float64)))) / count
    assert abs(float(got) - 1 / count) <= 4 * float(np.spacing(dtype(magnitudes)))
