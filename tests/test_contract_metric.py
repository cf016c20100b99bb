"""The accuracy contract of the metric-learning losses, in every dtype.

Values and gradients against mpmath evaluated exactly at the same rounded inputs
(``mp_reference``), errors in ULP of the output dtype, over embeddings from the
dtype's smallest to its largest numbers, zero distances and empty batches; the
reported cases first, with their right values.
"""

from __future__ import annotations

import math

import mp_reference as ref
import mpmath
import numpy as np
import pytest

from lossutils import _blocks as blocks
from lossutils import _numerics as numerics
from lossutils import metric as M

DTYPES = [np.float16, np.float32, np.float64]
REDUCTIONS = ("mean", "sum", "none")


# ---------------------------------------------------------------- the reported cases


def test_contrastive_far_dissimilar_pair_in_float16():
    # the float16 square of 256 overflows; the pair is far beyond the margin: loss 0
    x1, x2 = np.float16([[256.0]]), np.float16([[0.0]])
    assert M.contrastive_loss(x1, x2, [0]) == 0
    assert M.contrastive_loss(x1, x2, [0]).dtype == np.float16
    assert M.contrastive_loss(x1, x2, [1]) == np.inf  # 65536 overflows float16: it is the value
    g1, g2 = M.contrastive_loss_grad(x1, x2, [0])
    assert g1.tolist() == [[0.0]] and g2.tolist() == [[0.0]]


def test_contrastive_tiny_distance_keeps_its_gradient():
    # d = 1e-170: d**2 underflows, but the hinge (1 - d)**2 has gradient -2 (1 - d) along x1 - x2
    x1, x2 = np.array([[1e-170, 0.0]]), np.zeros((1, 2))
    assert M.contrastive_loss(x1, x2, [0]) == 1.0
    g1, g2 = M.contrastive_loss_grad(x1, x2, [0])
    assert g1.tolist() == [[-2.0, 0.0]] and g2.tolist() == [[2.0, 0.0]]
    # similar pair: d**2 = 1e-340 is subnormal, its gradient 2 (x1 - x2) exact
    assert M.contrastive_loss(x1, x2, [1]) == 0.0
    assert M.contrastive_loss_grad(x1, x2, [1])[0].tolist() == [[2e-170, 0.0]]


def test_nt_xent_float16_with_a_large_entry():
    rng = np.random.default_rng(11)
    z1 = rng.normal(size=(4, 3)).astype(np.float16)
    z2 = rng.normal(size=(4, 3)).astype(np.float16)
    z1[0, 0] = 256.0
    for reduction in REDUCTIONS:
        got = M.nt_xent_loss(z1, z2, reduction=reduction)
        assert np.asarray(got).dtype == np.float16
        per = ref.nt_xent(z1, z2, 0.5)
        ref.assert_ulp_in(got, ref.reduced(per, reduction), np.float16, max_ulp=1)
    g1, g2 = M.nt_xent_loss_grad(z1, z2)
    e1, e2 = ref.nt_xent_grad(z1, z2, 0.5, "mean")
    ref.assert_ulp_in(g1, e1, np.float16, max_ulp=1)
    ref.assert_ulp_in(g2, e2, np.float16, max_ulp=1)


@pytest.mark.parametrize("dtype", DTYPES)
def test_empty_batches(dtype):
    empty = np.zeros((0, 5), dtype=dtype)
    cases = [
        (M.contrastive_loss, M.contrastive_loss_grad, (empty, empty, np.zeros(0, int)), 2),
        (M.triplet_margin_loss, M.triplet_margin_loss_grad, (empty, empty, empty), 3),
        (M.nt_xent_loss, M.nt_xent_loss_grad, (empty, empty), 2),
    ]
    for loss, grad, args, n_grads in cases:
        assert np.isnan(loss(*args)) and loss(*args).dtype == dtype
        assert loss(*args, reduction="sum") == 0
        none = loss(*args, reduction="none")
        assert none.shape == (0,) and none.dtype == dtype
        for reduction in REDUCTIONS:
            grads = grad(*args, reduction=reduction)
            assert len(grads) == n_grads
            assert all(g.shape == (0, 5) and g.dtype == dtype for g in grads)


# ---------------------------------------------------------------- sweeps in every dtype


def _scales(dtype):
    """Embedding scales from near the dtype's smallest normal to near its largest number."""
    info = np.finfo(dtype)
    big = float(info.max) ** 0.5 / 4 if dtype != np.float64 else 1e150
    return [float(info.tiny) * 2**12, 1e-3, 1.0, 300.0, big]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("margin", [0.0, 1.0])
def test_contrastive_within_4_ulp(dtype, margin):
    rng = np.random.default_rng(12)
    for scale in _scales(dtype):
        with np.errstate(over="ignore", under="ignore"):
            x1 = (rng.normal(size=(12, 6)) * scale).astype(dtype)
            x2 = (rng.normal(size=(12, 6)) * scale).astype(dtype)
        x2[0] = x1[0]  # zero distance
        target = np.array([1, 0] * 6)
        # pairs just inside the margin, where m - d cancels
        x2[3] = (x1[3] + np.float64(margin or 1) * 0.9 / np.sqrt(6)).astype(dtype)
        x2[5] = (x1[5] + np.float64(margin or 1) * (1 - 1e-3) / np.sqrt(6)).astype(dtype)
        per = M.contrastive_loss(x1, x2, target, margin=margin, reduction="none")
        assert per.dtype == dtype
        ref.assert_ulp_in(per, ref.contrastive(x1, x2, target, margin), dtype, label=str(scale))
        g1, g2 = M.contrastive_loss_grad(x1, x2, target, margin=margin, reduction="sum")
        expected = ref.contrastive_grad(x1, x2, target, margin)
        ref.assert_ulp_in(g1, expected, dtype, label=f"grad {scale}")
        np.testing.assert_array_equal(g2, -g1)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("reduction", ["sum", "mean"])
def test_contrastive_gradient_of_tiny_distances_and_huge_margins(dtype, reduction):
    # dissimilar pairs: -2 (m - d) (x1 - x2) / d. Where d is below the dtype's normal range
    # its norm had lost digits (a float64 pair 2e-323 apart: -2 for -1.79, 4.7e14 ULP), and
    # where m / d overflows the dtype (a float32 pair 1e-39 apart, or margin 1e30 and
    # d = 1e-10) the float32 coefficient was inf: -inf and NaN entries, exact -2 and -2e30
    info = np.finfo(dtype)
    rng = np.random.default_rng(32)
    tiny, sub = float(info.tiny), float(info.smallest_subnormal)
    for scale, margin in [
        (sub * 4, 1.0),
        (sub * 4, sub * 12),
        (tiny, 1.0),
        (tiny, 1e-30),
        (tiny, 3 * tiny),
        (1e-10, 1e30),
        (1e-3, float(info.max) / 4),
    ]:
        x1 = rng.normal(size=(8, 4)) * scale
        x2 = x1 + rng.normal(size=(8, 4)) * scale * 10.0 ** rng.integers(-6, 1, (8, 1))
        x1, x2 = x1.astype(dtype), x2.astype(dtype)
        target = np.array([0, 1] * 4)
        g1, g2 = M.contrastive_loss_grad(x1, x2, target, margin=margin, reduction=reduction)
        exact = ref.contrastive_grad(x1, x2, target, margin)
        if reduction == "mean":
            exact = exact / 8
        ref.assert_ulp_in(g1, exact, dtype, label=f"{scale} {margin}")
        np.testing.assert_array_equal(g2, -g1)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_contrastive_gradient_of_similar_pairs_whose_difference_overflows(dtype):
    # 2 (x1 - x2) / n: x1 - x2 overflows the dtype, its mean over 4 pairs does not (it was
    # formed in the dtype: inf)
    big = float(np.finfo(dtype).max) / 1.1
    x1 = np.array([[big, 1.0, 0.0]] * 4, dtype)
    x2 = np.array([[-big, -2.0, 0.0]] * 4, dtype)
    target = np.ones(4, int)
    g1, g2 = M.contrastive_loss_grad(x1, x2, target)
    ref.assert_ulp_in(g1, ref.contrastive_grad(x1, x2, target, 1.0) / 4, dtype)
    np.testing.assert_array_equal(g2, -g1)
    assert M.contrastive_loss(x1, x2, target) == np.inf  # the squared distance overflows


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_contrastive_mean_whose_squares_overflow(dtype):
    # a pair's y d^2 (or hinge^2) beyond the dtype's range made the mean inf, though the
    # mean over 10 pairs is finite (float32 distances near 2e19, float64 near 1.3e154)
    rng = np.random.default_rng(37)
    root = float(np.finfo(dtype).max) ** 0.5
    x1 = (rng.normal(size=(10, 4)) * root / 4).astype(dtype)
    x2 = (rng.normal(size=(10, 4)) * root / 4).astype(dtype)
    target = np.array([1, 0] * 5)
    similar, dissimilar = x2.copy(), x2.copy()
    similar[0] = -3 * x1[0]  # a similar pair's squared distance beyond the range
    dissimilar[1] = x1[1]  # a dissimilar pair at distance 0: its hinge^2 = margin^2
    for other, margin in ((similar, 1.0), (dissimilar, 1.5 * root)):
        per = M.contrastive_loss(x1, other, target, margin=margin, reduction="none")
        assert np.any(np.isinf(per))
        exact = ref.reduced(ref.contrastive(x1, other, target, margin), "mean")
        value = M.contrastive_loss(x1, other, target, margin=margin)
        assert value == M.contrastive_loss_value_and_grad(x1, other, target, margin=margin)[0]
        ref.assert_ulp_in(value, exact, dtype, label=str(margin))
        assert np.isfinite(value)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_contrastive_and_cosine_of_long_rows_within_their_stated_bounds(dtype):
    # the sums of squares of long rows are BLAS dot products, whose rounding grows with the
    # row's length D where the products are nearly equal (the docstrings state it: about
    # D/128 ULP in float32, D/64 in float64, on rows of one repeated entry); rows of varied
    # entries within 4 ULP
    rng = np.random.default_rng(38)
    per_ulp = 128 if dtype == np.float32 else 64
    for width in (1000, 4096):
        constants = rng.uniform(-1, 1, (8, 2))
        x1 = np.repeat(constants[:, :1], width, axis=1)
        x2 = np.repeat(constants[:, 1:], width, axis=1)
        x1[-1], x2[-1] = rng.normal(size=(2, width))
        x1, x2 = x1.astype(dtype), x2.astype(dtype)
        target = np.ones(8, int)
        exact = ref.contrastive(x1, x2, target, 1.0)
        got = M.contrastive_loss(x1, x2, target, reduction="none")
        errors = ref.ulp_in(got, exact, dtype)
        assert np.all(errors[:-1] <= width / per_ulp) and errors[-1] <= 4, errors
        y = x2.copy()
        y[:, : width // 2] *= -1.3  # cosines away from 1
        with mpmath.workdps(60):
            exact = np.array([1 - cos for *_, cos in _mp_cosines(x1, y)], dtype=object)
        errors = ref.ulp_in(M.cosine_embedding_loss(x1, y, target, reduction="none"), exact, dtype)
        bound = 1 if dtype == np.float32 else width / 64
        assert np.all(errors[:-1] <= bound) and errors[-1] <= 4, errors


TRIPLET_OPTIONS = [
    {"p": 2.0, "eps": 0.0},
    {"p": 2.0, "eps": 1e-6},
    {"p": 1.0, "eps": 0.0},
    {"p": 3.0, "eps": 0.0},
    {"p": 2.0, "eps": 0.0, "swap": True},
    {"squared": True},
]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("options", TRIPLET_OPTIONS, ids=str)
def test_triplet_within_4_ulp(dtype, options):
    rng = np.random.default_rng(13)
    options = {"p": 2.0, "eps": 1e-6, "swap": False, "squared": False, **options}
    for scale in _scales(dtype):
        if options["eps"] and scale < 1e-3:
            continue  # eps = 1e-6 dominates such differences; covered at the larger scales
        with np.errstate(over="ignore", under="ignore"):
            a, p, n = ((rng.normal(size=(16, 5)) * scale).astype(dtype) for _ in range(3))
        margin = scale * 0.5 if not options["squared"] else scale**2 * 0.5
        margin = min(margin, float(np.finfo(dtype).max) / 8)
        per = M.triplet_margin_loss(a, p, n, margin=margin, reduction="none", **options)
        assert per.dtype == dtype
        exact = ref.triplet(
            a, p, n, margin, options["p"], options["eps"], options["swap"], options["squared"]
        )
        if dtype != np.float64 or options["p"] != 3.0:
            # where the three terms cancel, float16 and float32 are within 4 ULP thanks to
            # float64 distances, and float64 thanks to double-double ones
            ref.assert_ulp_in(per, exact, dtype, label=str(scale))
            continue
        # float64 with p = 3: d(a, p) - d(a, n) + m cancels where the loss is small against
        # the distances; the error is a few ULP of the largest term there
        terms = ref.triplet(a, p, n, 0.0, options["p"], 0, False, options["squared"])
        big = np.maximum(np.abs(np.array([float(v) for v in terms])), margin)
        exact64 = np.array([float(v) for v in exact])
        assert np.all(np.abs(per - exact64) <= 32 * np.spacing(big))


@pytest.mark.parametrize("dtype", [np.float16, np.float32])
@pytest.mark.parametrize("options", TRIPLET_OPTIONS, ids=str)
def test_triplet_in_blocks_of_rows(dtype, options, monkeypatch):
    # float16 and float32 triplets are widened in blocks of rows: blocks of 3 rows against
    # mpmath, the gradients the same bits as in one block, the loss and the gradient of
    # value_and_grad those of the two calls
    rng = np.random.default_rng(21)
    a, p, n = (rng.normal(size=(16, 5)).astype(dtype) for _ in range(3))
    n[:4] = (a[:4].astype(np.float64) + 0.999 * (p[:4] - a[:4])).astype(dtype)  # cancelling
    options = {"p": 2.0, "eps": 1e-6, "swap": False, "squared": False, **options}
    one_block = M.triplet_margin_loss_grad(a, p, n, margin=0.5, **options)
    monkeypatch.setattr(M, "_NARROW_BLOCK_ELEMENTS", 15)
    monkeypatch.setattr(M, "_NARROW_VALUE_BLOCK_ELEMENTS", 20)
    per = M.triplet_margin_loss(a, p, n, margin=0.5, reduction="none", **options)
    exact = ref.triplet(
        a, p, n, 0.5, options["p"], options["eps"], options["swap"], options["squared"]
    )
    ref.assert_ulp_in(per, exact, dtype)
    for got, want in zip(
        M.triplet_margin_loss_grad(a, p, n, margin=0.5, **options), one_block, strict=True
    ):
        assert got.dtype == dtype and got.tobytes() == want.tobytes()
    loss, grads = M.triplet_margin_loss_value_and_grad(a, p, n, margin=0.5, **options)
    assert loss.tobytes() == M.triplet_margin_loss(a, p, n, margin=0.5, **options).tobytes()
    for got, want in zip(grads, one_block, strict=True):
        assert got.tobytes() == want.tobytes()


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("temperature", [0.5, 0.1, 0.02])
def test_nt_xent_within_4_ulp(dtype, temperature):
    rng = np.random.default_rng(14)
    cases = []
    for scale in _scales(dtype):
        with np.errstate(over="ignore", under="ignore"):
            z1 = (rng.normal(size=(3, 4)) * scale).astype(dtype)
            noise = rng.normal(size=(3, 4)) * 10.0 ** rng.uniform(-4, -1)
            z2 = (z1.astype(np.float64) * (1 + noise)).astype(dtype)  # aligned views
        cases.append((z1, z2))
    z1 = rng.normal(size=(3, 4)).astype(dtype)
    cases.append((z1, rng.normal(size=(3, 4)).astype(dtype)))  # unrelated views
    zero = z1.copy()
    zero[1] = 0  # a zero embedding: F.normalize's floor
    cases.append((zero, rng.normal(size=(3, 4)).astype(dtype)))
    # an error of the cosines reaches the loss magnified by 1 / temperature: float16 and
    # float32 views are evaluated in float64, float64 ones with double-double cosines
    for z1, z2 in cases:
        per = M.nt_xent_loss(z1, z2, temperature, reduction="none")
        assert per.dtype == dtype
        ref.assert_ulp_in(per, ref.nt_xent(z1, z2, temperature), dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(
    ("temperature", "spread", "bound64"), [(0.5, 0.3, 8), (0.1, 0.3, 5), (0.1, 1e-6, 5)]
)
def test_nt_xent_gradient_within_4_ulp(dtype, temperature, spread, bound64):
    # float64: the softmax of float64 logits carried the cosines' rounding times
    # 1 / temperature (7 ULP at 0.1), the positive's projection it over the angle; the
    # first case's entry sums terms that cancel (6 ULP of the row's largest entry)
    rng = np.random.default_rng(15)
    z1 = rng.normal(size=(2, 3)).astype(dtype)
    z2 = (z1.astype(np.float64) + spread * rng.normal(size=(2, 3))).astype(dtype)
    for reduction in ("mean", "sum"):
        g1, g2 = M.nt_xent_loss_grad(z1, z2, temperature, reduction=reduction)
        e1, e2 = ref.nt_xent_grad(z1, z2, temperature, reduction)
        # an entry of the gradient is a sum of terms of both signs: its error is a few
        # ULP of the row's largest entry
        for got, exact in ((g1, e1), (g2, e2)):
            assert got.dtype == dtype
            exact64 = np.array([[float(v) for v in row] for row in exact])
            unit = np.spacing(np.max(np.abs(exact64), axis=-1, keepdims=True).astype(dtype))
            error = np.abs(got.astype(np.float64) - exact64)
            bound = 4 if dtype != np.float64 else bound64
            assert np.all(error <= bound * unit.astype(np.float64)), (error / unit).max()


@pytest.mark.parametrize("tiny", [1e-315, 5e-324])
def test_nt_xent_float64_view_far_below_the_floor(tiny):
    # a float64 view of norm 1e-315 (F.normalize's floor 1e-12 active) gave NaN everywhere:
    # its double-double unit row was divided by 1e-12 2**-exponent, beyond the domain of
    # the division's products
    rng = np.random.default_rng(31)
    z1, z2 = rng.normal(size=(2, 3, 4))
    z1[1] = [tiny, 0.0, -tiny, 0.0]
    per = M.nt_xent_loss(z1, z2, 0.1, reduction="none")
    ref.assert_ulp_in(per, ref.nt_xent(z1, z2, 0.1), np.float64)
    g1, g2 = M.nt_xent_loss_grad(z1, z2, 0.1, reduction="sum")
    e1, e2 = ref.nt_xent_grad(z1, z2, 0.1, "sum")
    for got, exact in ((g1, e1), (g2, e2)):
        exact64 = np.array([[float(v) for v in row] for row in exact])
        unit = np.spacing(np.max(np.abs(exact64), axis=-1, keepdims=True))
        assert np.all(np.abs(got - exact64) <= 5 * unit), (np.abs(got - exact64) / unit).max()


@pytest.mark.parametrize("temperature", [1.2e-308, 1e-302, 1e300, 1e308])
def test_nt_xent_float64_extreme_temperatures(temperature):
    # the double-double logits took 1 / temperature into Dekker's products, whose splitting
    # overflows beyond about 1e300: NaN at 1e-302 (exact losses up to 1e302) and at 1e308
    rng = np.random.default_rng(36)
    z1, z2 = rng.normal(size=(2, 3, 4))
    per = M.nt_xent_loss(z1, z2, temperature, reduction="none")
    ref.assert_ulp_in(per, ref.nt_xent(z1, z2, temperature), np.float64)
    assert all(np.all(np.isfinite(g)) for g in M.nt_xent_loss_grad(z1, z2, temperature))
    with pytest.raises(ValueError, match=r"temperature must be .* at least 1.113e-308"):
        M.nt_xent_loss(z1, z2, 1e-315)


def test_nt_xent_large_temperature_range_has_no_overflow():
    # 1/temperature = 1e4: exp of the raw logits would overflow; the loss is finite
    rng = np.random.default_rng(16)
    z1, z2 = rng.normal(size=(3, 4)), rng.normal(size=(3, 4))
    per = M.nt_xent_loss(z1, z2, 1e-4, reduction="none")
    assert np.all(np.isfinite(per))
    with mpmath.workdps(50):
        exact = ref.nt_xent(z1, z2, 1e-4)
    ref.assert_ulp_in(per, exact, np.float64)
    assert math.isfinite(float(M.nt_xent_loss(z1, z2, 1e-4)))


def test_single_pair_and_triplet_near_the_margin():
    # one pair / one triplet (no batch axis), in the rows recomputed in double-double
    x1, x2 = np.array([0.6, 0.3]), np.array([0.0, 0.0])
    assert M.contrastive_loss(x1, x2, 0).shape == ()
    ref.assert_ulp_in(
        M.contrastive_loss(x1, x2, 0, margin=0.7), ref.contrastive(x1, x2, 0, 0.7), np.float64
    )
    a, p, n = np.array([0.0, 0.0]), np.array([0.5, 0.0]), np.array([0.9, 0.1])
    value = M.triplet_margin_loss(a, p, n, margin=0.4, eps=0.0)
    assert value.shape == ()
    ref.assert_ulp_in(value, ref.triplet(a, p, n, 0.4, 2.0, 0.0, False, False), np.float64)


def _mp_triplet_grads(a, p, n, margin, eps, squared):
    """(d/da, d/dp, d/dn) of max(0, d(a, p) - d(a, n) + m), Euclidean or squared, exactly."""
    out = [np.empty(a.shape, dtype=object) for _ in range(3)]
    with mpmath.workdps(ref.DIGITS):
        for i in range(a.shape[0]):
            A, Pv, N = ([ref.mp(v) for v in row[i]] for row in (a, p, n))
            shift = mpmath.mpf(0) if squared else ref.mp(eps)
            u = [s - t + shift for s, t in zip(A, Pv, strict=True)]
            w = [s - t + shift for s, t in zip(A, N, strict=True)]
            if squared:
                d_ap, d_an = mpmath.fsum(e**2 for e in u), mpmath.fsum(e**2 for e in w)
                gu, gw = [2 * e for e in u], [2 * e for e in w]
            else:
                d_ap = mpmath.sqrt(mpmath.fsum(e**2 for e in u))
                d_an = mpmath.sqrt(mpmath.fsum(e**2 for e in w))
                gu, gw = [e / d_ap for e in u], [e / d_an for e in w]
            active = d_ap - d_an + ref.mp(margin) >= 0
            for k in range(a.shape[1]):
                out[0][i, k] = (gu[k] - gw[k]) if active else mpmath.mpf(0)
                out[1][i, k] = -gu[k] if active else mpmath.mpf(0)
                out[2][i, k] = gw[k] if active else mpmath.mpf(0)
    return out


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("squared", [False, True])
def test_triplet_gradients_within_4_ulp_of_the_row(dtype, squared):
    rng = np.random.default_rng(17)
    a, p, n = (rng.normal(size=(12, 4)).astype(dtype) for _ in range(3))
    margin = 1.0
    got = M.triplet_margin_loss_grad(a, p, n, margin=margin, squared=squared, reduction="sum")
    expected = _mp_triplet_grads(a, p, n, margin, 1e-6, squared)
    for g, e in zip(got, expected, strict=True):
        assert g.dtype == dtype and g.shape == a.shape
        _assert_within_4_ulp_of_the_row(g, e, dtype)


def _assert_within_4_ulp_of_the_row(got, exact, dtype):
    """Each entry within 4 ULP (of ``dtype``) of the largest exact entry of its row."""
    e64 = np.array([[float(v) for v in row] for row in exact])
    unit = np.spacing(np.max(np.abs(e64), axis=-1, keepdims=True).astype(dtype))
    error = np.abs(got.astype(np.float64) - e64)
    assert np.all(error <= 4 * unit.astype(np.float64)), (error / unit).max()


@pytest.mark.parametrize("dtype", DTYPES)
def test_triplet_anchor_gradient_where_the_unit_vectors_cancel(dtype):
    # the negative nearly on the ray from the anchor through the positive: u_ap - u_an is
    # about 1e-4 of the unit vectors, whose float64 rounding was 2244 ULP of it
    rng = np.random.default_rng(24)
    a = rng.normal(size=(8, 5))
    p = a + 1e-3 * rng.normal(size=(8, 5))
    n = a + 500 * (p - a) + 1e-4 * rng.normal(size=(8, 5))
    _assert_triplet_grads_within_4_ulp(*(x.astype(dtype) for x in (a, p, n)), 1.0, 1e-6)


def _assert_triplet_grads_within_4_ulp(a, p, n, margin, eps):
    """The gradients of the sum and the mean against mpmath, row by row."""
    expected = _mp_triplet_grads(a, p, n, margin, eps, False)
    for reduction, scale in (("sum", 1), ("mean", len(a))):
        got = M.triplet_margin_loss_grad(a, p, n, margin, eps=eps, reduction=reduction)
        for g, e in zip(got, expected, strict=True):
            assert g.dtype == a.dtype
            _assert_within_4_ulp_of_the_row(g, e / scale, a.dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_triplet_anchor_gradient_where_eps_dwarfs_the_embeddings(dtype):
    # eps = 1e-6 added to differences of 1e-40 (float32) or 1e-300 (float64): both unit
    # vectors are (1, 1, 1) / sqrt(3) to 1e-34 or 1e-294, below the double-double unit
    # vectors' resolution, and the anchor gradient was 0 (exact: about 5e-35, 5e-295)
    reported = np.array(
        [
            [[3.0000399e-41, -1.2000019e-40, 7.0000463e-41]],
            [[8.0000129e-41, -1.1000053e-40, 3.0000399e-41]],
            [[9.9996658e-42, -5.9999396e-41, 9.9999461e-41]],
        ]
    )
    tiny = {np.float16: 2.0**-24, np.float32: 1e-40, np.float64: 1e-300}[dtype]
    rng = np.random.default_rng(41)
    a, p, n = rng.normal(size=(3, 6, 3)) * tiny * np.array([1, 1, 1, 1e3, 1e6, 1e9])[:, None]
    a, p, n = (x.astype(dtype) for x in (a, p, n))
    if dtype == np.float32:
        a[0], p[0], n[0] = reported.astype(dtype)
    if dtype == np.float64:
        a[0], p[0], n[0] = (np.float32(x).astype(dtype) * 1e-260 for x in reported)
    _assert_triplet_grads_within_4_ulp(a, p, n, 1e-7, 1e-6)


def test_triplet_squared_swap_tie_of_underflowed_squares():
    # squared distances of float64 differences near 1e-300 underflow to 0: d(a, n) and
    # d(p, n) tied, and the gradient of the negative distance went half to each (the
    # anchor's was [-1.2e-300, 4e-301, 1.1e-300]); the exact squares differ
    a = np.array([[3e-301, -1.2e-300, 7e-301], [1e-301, 2e-301, -3e-301]])
    p = np.array([[8e-301, -1.0999999999999998e-300, 2.9999999999999996e-301], [2e-301, 0, 0]])
    n = np.array([[9.999999999999999e-302, -6e-301, 1e-300], [0, 4e-301, -1e-301]])
    got = M.triplet_margin_loss_grad(a, p, n, 1e-7, swap=True, squared=True, reduction="sum")
    expected = [np.empty(a.shape, dtype=object) for _ in range(3)]
    with mpmath.workdps(ref.DIGITS):
        for i in range(len(a)):
            A, P, N = ([ref.mp(v) for v in x[i]] for x in (a, p, n))

            def squares(x, y):
                return mpmath.fsum((s - t) ** 2 for s, t in zip(x, y, strict=True))

            assert squares(A, N) != squares(P, N)  # no tie of the exact distances
            anchor_nearer = squares(A, N) < squares(P, N)
            for k in range(a.shape[1]):
                g_ap, g_an, g_pn = 2 * (A[k] - P[k]), 2 * (A[k] - N[k]), 2 * (P[k] - N[k])
                expected[0][i, k] = g_ap - (g_an if anchor_nearer else 0)
                expected[1][i, k] = -g_ap - (0 if anchor_nearer else g_pn)
                expected[2][i, k] = g_an if anchor_nearer else g_pn
    for g, e in zip(got, expected, strict=True):
        _assert_within_4_ulp_of_the_row(g, e, np.float64)


@pytest.mark.parametrize("dtype", [np.float16, np.float32])
def test_narrow_anchor_gradient_on_both_sides_of_its_cut(dtype):
    # float16 and float32 negatives near the ray from the anchor through the positive, at
    # angles of 2**-16 to 2**-40 before rounding (the double-double redo below 2**-20
    # for float32, 2**-32 for float16; the rounding of the inputs leaves angles of about
    # 2**-24 and 2**-11 at the least, or exactly 0): every row within 4 ULP of mpmath
    rng = np.random.default_rng(31)
    angles = 2.0 ** -np.array([16.0, 19.5, 20.5, 24.0, 31.5, 32.5, 36.0, 40.0])
    a = rng.normal(size=(8, 6)).astype(dtype)
    p = (a + rng.normal(size=(8, 6))).astype(dtype)
    ray = p.astype(np.float64) - a
    length = np.linalg.norm(ray, axis=-1, keepdims=True)
    side = rng.normal(size=(8, 6))
    side -= np.sum(side * ray, axis=-1, keepdims=True) * ray / length**2
    side *= length / np.linalg.norm(side, axis=-1, keepdims=True)
    n = (a + 3 * ray + 3 * angles[:, None] * side).astype(dtype)
    _assert_triplet_grads_within_4_ulp(a, p, n, 5.0, 0.0)


@pytest.mark.parametrize("dtype", [np.float16, np.float32])
def test_narrow_triplets_whose_squared_distance_underflows(dtype):
    # equal anchor and positive: the distance is eps sqrt(D), whose float64 square is 0
    # for eps = 2**-540 (those rows are done again by the scaled norm: the gradient is the
    # unit vector) and 2**-873 for 2**-440 (the plain sum of squares); beside them
    # ordinary rows, all within 4 ULP of mpmath, values and gradients
    rng = np.random.default_rng(32)
    a, p, n = (rng.normal(size=(4, 128)).astype(dtype) for _ in range(3))
    p[:2] = a[:2]
    for eps in (2.0**-540, 2.0**-440):
        per = M.triplet_margin_loss(a, p, n, margin=0.5, eps=eps, reduction="none")
        exact = ref.triplet(a, p, n, 0.5, 2.0, eps, False, False)
        ref.assert_ulp_in(per, exact, dtype, label=f"eps {eps}")
        got = M.triplet_margin_loss_grad(a, p, n, margin=0.5, eps=eps, reduction="sum")
        expected = _mp_triplet_grads(a, p, n, 0.5, eps, False)
        for g, e in zip(got, expected, strict=True):
            _assert_within_4_ulp_of_the_row(g, e, dtype)


def test_an_empty_feature_axis_is_an_error_naming_the_argument():
    # a distance or a cosine of empty vectors is no measure of a pair: every loss on
    # embeddings says so, instead of a number (info_nce_loss gave log 2)
    import lossutils as L

    e, t01, pm = np.zeros((3, 0)), np.array([0, 1, 0]), np.array([1, -1, 1])
    cases = [
        ("contrastive_loss", (e, e, t01), "x1"),
        ("triplet_margin_loss", (e, e, e), "anchor"),
        ("nt_xent_loss", (e, e), "z1"),
        ("cosine_embedding_loss", (e, e, pm), "input1"),
        ("info_nce_loss", (e, e), "query"),
        ("clip_loss", (e, e), "image_embeds"),
        ("siglip_loss", (e, e), "image_embeds"),
    ]
    for name, args, argument in cases:
        for suffix in ("", "_grad", "_value_and_grad"):
            with pytest.raises(ValueError, match=rf"{argument} must have .*\(3, 0\)"):
                getattr(L, name + suffix)(*args)


# PyTorch's eps of cosine_embedding_loss: 1e-12 rounded to float32
_COSINE_EPS = float(np.float32(1e-12))


def _mp_cosine_embedding(x1, x2, target, margin):
    """Per-pair cosine embedding losses at 400 digits, eps inside the square roots."""
    out = np.empty(len(x1), dtype=object)
    with mpmath.workdps(ref.DIGITS):
        for i, (_, _, _, _, cos) in enumerate(_mp_cosines(x1, x2)):
            out[i] = 1 - cos if target[i] == 1 else max(mpmath.mpf(0), cos - ref.mp(margin))
    return out


def _mp_cosines(x1, x2):
    """Per pair ``(a, b, |a|^2 + eps, |b|^2 + eps, cos)`` in mpmath (at the caller's
    precision), PyTorch's eps inside the square roots."""
    for i in range(len(x1)):
        a, b = ([ref.mp(v) for v in row[i]] for row in (x1, x2))
        dot = mpmath.fsum(u * v for u, v in zip(a, b, strict=True))
        na = mpmath.fsum(u * u for u in a) + ref.mp(_COSINE_EPS)
        nb = mpmath.fsum(v * v for v in b) + ref.mp(_COSINE_EPS)
        yield a, b, na, nb, dot / mpmath.sqrt(na * nb)


@pytest.mark.parametrize("dtype", DTYPES)
def test_cosine_embedding_nearly_parallel_within_4_ulp(dtype):
    # 1 - cos of pairs at angles from 1e-6 to 0.1: the float64 loss was 656,000 ULP off at
    # 1e-6 (3264 ULP in the first report), 876 at 1e-3 (the unit vectors' rounding)
    rng = np.random.default_rng(18)
    for spread in (1e-6, 1e-3, 1e-1):
        x1 = rng.normal(size=(12, 16)).astype(dtype)
        noise = 1 + spread * rng.normal(size=(12, 16))
        x2 = (x1.astype(np.float64) * noise).astype(dtype)
        target = np.array([1, 1, 1, -1] * 3)
        got = M.cosine_embedding_loss(x1, x2, target, margin=0.5, reduction="none")
        assert got.dtype == dtype
        exact = _mp_cosine_embedding(x1, x2, target, 0.5)
        ref.assert_ulp_in(got, exact, dtype, label=str(spread))


@pytest.mark.parametrize("dtype", DTYPES)
def test_cosine_embedding_nearly_parallel_wide_rows_within_4_ulp(dtype):
    # D = 300: float64 sums of 300 rounded squares (the norms, |v1 - v2|^2) and the
    # rounding of 1 + T in the eps part put up to 5.7 ULP into 1 - cos here (7.9 seen); at
    # norms near 1e-2 and below, the eps part of 1 - cos dominates
    rng = np.random.default_rng(303)
    x1 = rng.normal(size=(16, 300)) * np.repeat([1e-4, 1e-2, 1.0, 1e3], 4)[:, None]
    factor = rng.uniform(0.5, 2.0, size=(16, 1))
    noise = rng.normal(size=(16, 300)) * 10.0 ** rng.uniform(-13, -3, size=(16, 1))
    x2 = x1 * factor + noise * np.abs(x1).max(axis=-1, keepdims=True)
    x1, x2 = x1.astype(dtype), x2.astype(dtype)
    target = np.array([1, 1, 1, -1] * 4)
    got = M.cosine_embedding_loss(x1, x2, target, margin=0.5, reduction="none")
    exact = _mp_cosine_embedding(x1, x2, target, 0.5)
    ref.assert_ulp_in(got, exact, dtype)
    grads = M.cosine_embedding_loss_grad(x1, x2, target, margin=-1.0, reduction="sum")
    signs = np.where(target == 1, -1, 1)[:, None]  # -d cos, or d cos where active
    for g, e in zip(grads, _mp_cosine_grads(x1, x2), strict=True):
        _assert_within_4_ulp_of_the_row(g, e * signs, dtype)


def _mp_cosine_grads(x1, x2):
    """(d cos / d x1, d cos / d x2) of PyTorch's regularised cosine at 400 digits."""
    out = [np.empty(x1.shape, dtype=object) for _ in range(2)]
    with mpmath.workdps(ref.DIGITS):
        for i, (a, b, na, nb, cos) in enumerate(_mp_cosines(x1, x2)):
            root = mpmath.sqrt(na * nb)
            for k in range(len(a)):
                out[0][i, k] = b[k] / root - cos * a[k] / na
                out[1][i, k] = a[k] / root - cos * b[k] / nb
    return out


@pytest.mark.parametrize("dtype", DTYPES)
def test_cosine_embedding_gradient_of_nearly_parallel_pairs_within_4_ulp(dtype):
    # x2 / (d1 d2) - cos x1 / d1^2 cancels to the angle: 3.3 million ULP of the row's
    # largest entry at 1e-6 in float64 (the rounded cosine); from double-double unit rows
    rng = np.random.default_rng(25)
    for spread in (1e-6, 1e-3, 1e-1):
        x1 = rng.normal(size=(6, 5)).astype(dtype)
        x2 = (x1.astype(np.float64) * (1 + spread * rng.normal(size=(6, 5)))).astype(dtype)
        target = np.array([1, -1] * 3)
        got = M.cosine_embedding_loss_grad(x1, x2, target, margin=-1.0, reduction="sum")
        signs = np.where(target == 1, -1, 1)[:, None]  # -d cos, or d cos where active
        for g, e in zip(got, _mp_cosine_grads(x1, x2), strict=True):
            assert g.dtype == dtype
            _assert_within_4_ulp_of_the_row(g, e * signs, dtype)


@pytest.mark.parametrize("scale", [1e-322, 1e-200, 1e-170])
def test_cosine_embedding_gradient_of_a_negative_cosine_that_underflows(scale):
    # t = -1, margin 0 (the default): max(0, cos) has gradient 0 where cos < 0. Rows of tiny
    # entries have cosines of about <x1, x2> / 1e-12, which underflow: the negative ones to
    # -0.0, which passed as "cos >= 0" (a gradient of 1e-311 for entries of 1e-322, of 1e-158
    # for entries of 1e-170)
    rng = np.random.default_rng(34)
    x1, x2 = rng.normal(size=(2, 12, 5)) * scale
    target = -np.ones(12, int)
    g1, g2 = M.cosine_embedding_loss_grad(x1, x2, target, reduction="sum")
    assert M.cosine_embedding_loss_value_and_grad(x1, x2, target, reduction="sum")[0] == 0
    signs = []
    with mpmath.workdps(ref.DIGITS):
        for i, (*_, cos) in enumerate(_mp_cosines(x1, x2)):
            signs.append(cos > 0)
            if cos < 0:
                assert np.all(g1[i] == 0) and np.all(g2[i] == 0), i
            else:
                assert np.any(g1[i] != 0) and np.any(g2[i] != 0), i
    assert 0 < sum(signs) < 12  # both kinds of pairs


@pytest.mark.parametrize("dtype", DTYPES)
def test_cosine_embedding_gradient_takes_the_side_of_the_kink_the_loss_takes(dtype):
    # t = -1 with the margin at the rounded cosine of nearly parallel pairs: cos - m is below
    # an ULP of m. The loss forms it from the accurate 1 - cos (within a few ULP of 1 - cos);
    # the gradient took its side from the plain rounded cosine, whose error (an ULP of 1) is
    # larger than the gap: the whole gradient d cos where the exact one is 0 (138 ULP of a
    # float16 row's largest entry), or the reverse. Now the side of cos - m as the loss has it
    rng = np.random.default_rng(35)
    x1 = rng.normal(size=(40, 6)).astype(dtype)
    spread = 10.0 ** rng.uniform(-7, -2, (40, 1))
    x2 = (x1.astype(np.float64) * (1 + spread * rng.normal(size=(40, 6)))).astype(dtype)
    passes, stops = 0, 0
    with mpmath.workdps(ref.DIGITS):
        for i, (*_, cos) in enumerate(_mp_cosines(x1, x2)):
            margin = float(cos)  # the exact cosine rounded: within half an ULP of it
            row = (x1[i : i + 1], x2[i : i + 1], [-1])
            g1, g2 = M.cosine_embedding_loss_grad(*row, margin)
            gap, tolerance = cos - ref.mp(margin), 2.0**-48 * (1 - cos)
            if gap > tolerance:  # d cos, as for any margin below the cosine
                active = M.cosine_embedding_loss_grad(*row, -1.0)
                np.testing.assert_array_equal(g1, active[0])
                np.testing.assert_array_equal(g2, active[1])
                passes += 1
            elif gap < -tolerance:
                assert np.all(g1 == 0) and np.all(g2 == 0), i
                stops += 1
    assert passes > 10 and stops > 10


def test_cosine_embedding_of_nearly_orthogonal_pairs_within_its_stated_bound():
    # t = -1, margin 0: max(0, cos) of a nearly orthogonal pair is a dot product that
    # cancels (1e-17 where its terms are about 1): within a few float64 ULP of the terms
    # over the norms, as the docstring states (in ULP of the loss itself, 7e15)
    rng = np.random.default_rng(39)
    x1, x2 = rng.normal(size=(2, 40, 5))
    x2 -= (np.sum(x1 * x2, -1) / np.sum(x1 * x1, -1))[:, None] * x1  # orthogonal, rounded
    got = M.cosine_embedding_loss(x1, x2, -np.ones(40, int), reduction="none")
    with mpmath.workdps(ref.DIGITS):
        for i, (a, b, na, nb, cos) in enumerate(_mp_cosines(x1, x2)):
            terms = mpmath.fsum(abs(u * v) for u, v in zip(a, b, strict=True))
            bound = 4 * 2.0**-52 * terms / mpmath.sqrt(na * nb)
            assert abs(got[i] - max(cos, 0)) <= bound, i


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("size", [2, 3, 300])
def test_cosine_embedding_of_rows_parallel_to_rounding_within_4_ulp(dtype, size):
    # x2 = c x1 rounded, or x1 nudged by 1e-17 .. 1e-12: angles from about 1e-18 to 1e-12,
    # where the double-double unit rows carry their own rounding (2**-106) into v1 - v2;
    # the reported float64 pair was 12 ULP off in the loss, 18 in the gradient
    rng = np.random.default_rng(size)
    scales = {np.float16: (1e-2, 1.0, 1e2), np.float32: (1e-30, 1.0, 1e30)}
    scales = scales.get(dtype, (1e-200, 1e-30, 1.0, 1e30, 1e200))
    rows = []
    for scale in scales:
        for nudge in (0.0, 1e-17, 1e-15, 1e-12):
            x1 = rng.normal(size=size) * scale
            x2 = x1 * rng.uniform(0.3, 3.0) + nudge * scale * rng.normal(size=size)
            rows.append((x1, x2))
    x1, x2 = (np.array(r).astype(dtype) for r in zip(*rows, strict=True))
    if dtype == np.float64 and size == 2:  # the reported pair
        x1[0] = [-2.6940562847610163e29, -5.750967180547398e29]
        x2[0] = [-8.082168854283047e29, -1.725290154164219e30]
    target = np.ones(len(x1), dtype=int)
    target[1::4] = -1
    got = M.cosine_embedding_loss(x1, x2, target, margin=0.5, reduction="none")
    ref.assert_ulp_in(got, _mp_cosine_embedding(x1, x2, target, 0.5), dtype)
    grads = M.cosine_embedding_loss_grad(x1, x2, target, margin=-1.0, reduction="sum")
    signs = np.where(target == 1, -1, 1)[:, None]  # -d cos, or d cos where active
    for g, e in zip(grads, _mp_cosine_grads(x1, x2), strict=True):
        assert g.dtype == dtype
        _assert_within_4_ulp_of_the_row(g, e * signs, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_contrastive_realistic_width_within_4_ulp(dtype):
    # D = 128, embeddings of norm about 1, margin 1: about half the dissimilar pairs are
    # inside the margin, some within 1e-3 of it (m - d cancels); the float32 pairs there
    # get their distance again in float64, the float64 ones in double-double
    rng = np.random.default_rng(19)
    x1 = rng.normal(size=(24, 128)) / 16
    x2 = rng.normal(size=(24, 128)) / 16
    x2[3] = x1[3] + (1 - 1e-3) * 0.9 / np.sqrt(128) * rng.choice([-1.0, 1.0], 128)
    x2[5] = x1[5] + (1 - 1e-6) / np.sqrt(128)
    x1, x2 = x1.astype(dtype), x2.astype(dtype)
    target = np.array([1, 0, 0] * 8)
    target[[3, 5]] = 0
    per = M.contrastive_loss(x1, x2, target, reduction="none")
    ref.assert_ulp_in(per, ref.contrastive(x1, x2, target, 1.0), dtype)
    g1, g2 = M.contrastive_loss_grad(x1, x2, target, reduction="sum")
    ref.assert_ulp_in(g1, ref.contrastive_grad(x1, x2, target, 1.0), dtype, label="grad")
    np.testing.assert_array_equal(g2, -g1)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("swap", [False, True])
def test_triplet_realistic_width_within_4_ulp(dtype, swap):
    # D = 128 standard normal embeddings: d(a, p) and d(a, n) are about 16 and their
    # difference plus the margin about 1, so every triplet cancels by a factor ~16
    rng = np.random.default_rng(20)
    a, p, n = (rng.normal(size=(16, 128)).astype(dtype) for _ in range(3))
    for squared, margin in ((False, 1.0), (True, 10.0)):
        per = M.triplet_margin_loss(
            a, p, n, margin=margin, swap=swap, squared=squared, reduction="none"
        )
        exact = ref.triplet(a, p, n, margin, 2.0, 1e-6, swap, squared)
        ref.assert_ulp_in(per, exact, dtype, label=f"squared={squared}")


def _mp_shifted_distance(x, y, shift, squared, p=2):
    diff = [ref.mp(u) - ref.mp(v) + ref.mp(shift) for u, v in zip(x, y, strict=True)]
    if p == 1:
        return mpmath.fsum(abs(e) for e in diff)
    total = mpmath.fsum(e**2 for e in diff)
    return total if squared else mpmath.sqrt(total)


@pytest.mark.parametrize(("squared", "p"), [(False, 2), (True, 2), (False, 1)])
def test_triplets_at_the_switch_to_unscaled_distances(squared, p):
    # float64 triplets cancelling by 2**-3 to 2**-9 of the distances take double-double
    # distances without scaling (dd_distance_squared, or dd_abs_sum_distance for p = 1)
    # where their exponent is below 400 in size and eps at most 2**-20 of them; rows just
    # on both sides of both limits, against mpmath
    rng = np.random.default_rng(23)
    sizes = [(0.999, 1e-6), (1.001, 1e-6), (2.0**398.99, 1e-6), (2.0**399.01, 1e-6)]
    sizes += [(2.0**-399.01, 0.0), (2.0**-398.99, 0.0), (3.0, 1e-6), (2.0**-20, 2.0**-40)]
    for size, eps in sizes:
        if squared and size > 2.0**300:
            size = np.sqrt(size)  # the squared distance stays finite
        # distances about size: D = 128 entries N(0, s**2) give an L2 distance of 16 s
        # and an L1 one of about 144 s
        a, pos, n = rng.normal(size=(3, 4, 128)) * (size / (16 if p == 2 else 144))
        margin = np.empty(4)
        with mpmath.workdps(60):
            for i, cancel in enumerate((2.0**-3, 2.0**-6, -(2.0**-8), 2.0**-9.5)):
                d_ap, d_an = (_mp_shifted_distance(a[i], y[i], eps, squared, p) for y in (pos, n))
                margin[i] = abs(float(d_an - d_ap + max(d_an, d_ap) * cancel))
        for i in range(4):
            triplet = (a[i : i + 1], pos[i : i + 1], n[i : i + 1])
            got = M.triplet_margin_loss(
                *triplet, margin=margin[i], p=p, eps=eps, squared=squared, reduction="none"
            )
            exact = ref.triplet(*triplet, margin[i], p, eps, False, squared)
            ref.assert_ulp_in(got, exact, np.float64, label=f"size {size:g}, row {i}")


@pytest.mark.parametrize("fill", [2.0, 0.9])
def test_triplet_loss_where_the_squared_distance_overflows(fill):
    # float64 triplets whose sums of squares overflow by a factor of 2 (the rows taken
    # again by the scaled norm) or stay just below the largest number (the plain sums):
    # the distances and the loss are finite; loss alone and with its gradient, against
    # mpmath
    rng = np.random.default_rng(33)
    a, p, n = rng.normal(size=(3, 4, 16)) * np.sqrt(fill / 64 * float(np.finfo(float).max))
    exact = ref.triplet(a, p, n, 1e150, 2.0, 0.0, False, False)
    for got in (
        M.triplet_margin_loss(a, p, n, margin=1e150, eps=0.0, reduction="none"),
        M.triplet_margin_loss_value_and_grad(a, p, n, margin=1e150, eps=0.0, reduction="none")[0],
    ):
        assert np.all(np.isfinite(got))
        ref.assert_ulp_in(got, exact, np.float64)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_contrastive_loss_where_the_squared_distance_overflows(dtype):
    # dissimilar pairs whose sum of squares overflows by a factor of 2 (the rows taken
    # again by the scaled norm) or stays just below the largest number (the plain sum),
    # 10 % inside the margin: the loss (m - d)**2 is finite; loss alone and with its
    # gradient, against mpmath
    big = float(np.finfo(dtype).max)
    for fill in (2.0, 0.9):
        x1 = np.full((2, 4), np.sqrt(fill / 16 * big), dtype=dtype)
        x2 = -x1
        x2[1] *= 0.5
        with mpmath.workdps(60):
            d = _mp_distance(x1[0], x2[0])
            margin = float(d / mpmath.mpf(0.9))
        expected = ref.contrastive(x1, x2, [0, 0], margin)
        for got in (
            M.contrastive_loss(x1, x2, [0, 0], margin=margin, reduction="none"),
            M.contrastive_loss_value_and_grad(x1, x2, [0, 0], margin=margin, reduction="none")[0],
        ):
            assert np.all(np.isfinite(got)), fill
            ref.assert_ulp_in(got, expected, dtype, label=str(fill))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_contrastive_at_the_switch_to_unscaled_distances(dtype):
    # dissimilar pairs inside the margin by 2**-2 to 2**-10.1 of it take double-double
    # distances without scaling where their exponent is below 400 in size; pairs on both
    # sides of that limit and of the cancellation 2**-10, against mpmath
    rng = np.random.default_rng(24)
    sizes = (1.0, 2.0**398.99, 2.0**399.01, 2.0**-399.01, 2.0**-398.99)
    if dtype == np.float32:
        sizes = (1.0, 2.0**60, 2.0**-60)
    for size in sizes:
        x1, x2 = (rng.normal(size=(2, 5, 128)) * (size / 16)).astype(dtype)
        for i, inside in enumerate((2.0**-2, 2.0**-9.9, 2.0**-10.1, 2.0**-30, 2.0**-45)):
            pair = (x1[i : i + 1], x2[i : i + 1], [0])
            with mpmath.workdps(60):
                margin = float(_mp_distance(x1[i], x2[i]) / (1 - mpmath.mpf(inside)))
            got = M.contrastive_loss(*pair, margin=margin, reduction="none")
            ref.assert_ulp_in(got, ref.contrastive(*pair, margin), dtype, label=f"{size:g} {i}")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("temperature", [0.5, 0.07])
def test_nt_xent_realistic_width_within_4_ulp(dtype, temperature):
    # D = 64, aligned views (the case once 30 ULP off): a float64 loss from double-double
    # logits, float32 and float16 from float64 ones
    rng = np.random.default_rng(21)
    z1 = rng.normal(size=(4, 64))
    z2 = z1 * (1 + rng.normal(size=(4, 64)) * 10.0 ** rng.uniform(-4, -1, size=(4, 1)))
    z1, z2 = z1.astype(dtype), z2.astype(dtype)
    per = M.nt_xent_loss(z1, z2, temperature, reduction="none")
    ref.assert_ulp_in(per, ref.nt_xent(z1, z2, temperature), dtype)


@pytest.mark.parametrize("temperature", [0.5, 0.07, 1e-3])
def test_nt_xent_float64_gram_heads_ties_and_blocks(monkeypatch, temperature):
    # float64 logits: the heads of all rows on one grid, whose products and their
    # differences within a row are exact; the worst case of that bound is rows of
    # entries +-1 (each head's norm its row's) and a view opposite another (a difference
    # of twice the largest logit); near ties at the top leave the rounding of x + c to
    # the terms where |x| < |c|; blocks of one row (of the exact part of the logits and
    # of the passes over them) cover the steps from block to block
    monkeypatch.setattr(blocks, "BLOCK_BYTES", 64)
    monkeypatch.setattr(numerics, "_GRAM_ROWS", 1)
    monkeypatch.setattr(numerics, "_GRAM_BLOCK", 1)
    rng = np.random.default_rng(23)
    signs = rng.choice([-1.0, 1.0], size=(3, 128))
    opposite = signs.copy()
    opposite[0] = -signs[0]
    opposite[1, :3] *= -1
    base = rng.normal(size=(1, 128))
    near = [base + rng.normal(size=(3, 128)) * 1e-9 for _ in range(2)]
    spike = rng.normal(size=(3, 128)) * 1e-3
    spike[:, 0] = 1
    cases = [(signs, opposite), tuple(near), (spike, spike + rng.normal(size=(3, 128)) * 1e-5)]
    for z1, z2 in cases:
        per = M.nt_xent_loss(z1, z2, temperature, reduction="none")
        with mpmath.workdps(60):
            ref.assert_ulp_in(per, ref.nt_xent(z1, z2, temperature), np.float64)
        value, _ = M.nt_xent_loss_value_and_grad(z1, z2, temperature, reduction="none")
        assert value.tobytes() == per.tobytes()


def _mp_distance(x, y):
    return mpmath.sqrt(mpmath.fsum((ref.mp(u) - ref.mp(v)) ** 2 for u, v in zip(x, y, strict=True)))


def test_pairs_and_triplets_within_1e_12_of_the_margin():
    # m - d and d(a, p) - d(a, n) + m cancel to 1e-12 of the distances and below: the
    # float64 distances are needed to about 2**-93 of themselves there (double-double)
    rng = np.random.default_rng(22)
    x1, x2 = rng.normal(size=(2, 6, 64))
    factors = (1 + 3e-13, 1 + 1e-15, 1 - 1e-13, 1 + 1e-12, 1 + 5e-14, 1.5)
    for i, factor in enumerate(factors):
        with mpmath.workdps(60):
            margin = float(_mp_distance(x1[i], x2[i]) * factor)
        pair = (x1[i : i + 1], x2[i : i + 1], [0])
        got = M.contrastive_loss(*pair, margin=margin, reduction="sum")
        exact = ref.reduced(ref.contrastive(*pair, margin), "sum")
        ref.assert_ulp_in(got, exact, np.float64, label=str(factor))
    a, p, n = rng.normal(size=(3, 6, 64))
    for i in range(6):
        with mpmath.workdps(60):
            d_ap, d_an = _mp_distance(a[i], p[i]), _mp_distance(a[i], n[i])
            if d_an < d_ap:  # a non-negative margin
                p[i], n[i] = n[i].copy(), p[i].copy()
                d_ap, d_an = d_an, d_ap
            margin = float(d_an - d_ap + d_an * mpmath.mpf(10) ** -12 * (i - 2.5))
        triplet = (a[i : i + 1], p[i : i + 1], n[i : i + 1])
        got = M.triplet_margin_loss(*triplet, margin=margin, eps=0.0)
        exact = ref.reduced(ref.triplet(*triplet, margin, 2.0, 0.0, False, False), "mean")
        ref.assert_ulp_in(got, exact, np.float64, label=f"triplet {i}")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("squared", [False, True])
def test_triplet_gradients_at_realistic_width(dtype, squared):
    # D = 128: the per-row coefficient times each difference (the unit vector only
    # where d is 0 or tiny), entry by entry within 4 ULP of the row's largest entry
    rng = np.random.default_rng(23)
    a, p, n = (rng.normal(size=(8, 128)).astype(dtype) for _ in range(3))
    margin = 1.0 if not squared else 10.0
    got = M.triplet_margin_loss_grad(a, p, n, margin=margin, squared=squared, reduction="sum")
    expected = _mp_triplet_grads(a, p, n, margin, 1e-6, squared)
    for g, e in zip(got, expected, strict=True):
        _assert_within_4_ulp_of_the_row(g, e, dtype)


@pytest.mark.parametrize("dtype", [np.float16, np.float32])
@pytest.mark.parametrize("temperature", [0.5, 0.05])
def test_nt_xent_blocks_of_a_few_rows(monkeypatch, dtype, temperature):
    # float16 / float32 logits are formed in blocks of rows: blocks of 3 rows (the last
    # one short) agree with one block, and both with the exact values and gradients
    rng = np.random.default_rng(17)
    z1 = rng.normal(size=(7, 5))
    z2 = z1 + rng.normal(size=(7, 5)) * np.array([1e-3, 1e-3, 1e-2, 1, 1, 1, 1])[:, None]
    z1, z2 = z1.astype(dtype), z2.astype(dtype)
    whole = M.nt_xent_loss(z1, z2, temperature, reduction="none")
    whole_grads = M.nt_xent_loss_grad(z1, z2, temperature, reduction="sum")
    monkeypatch.setattr(M, "_NT_XENT_BLOCK", 1)
    monkeypatch.setattr(M, "_NT_XENT_ROWS", 3)
    per = M.nt_xent_loss(z1, z2, temperature, reduction="none")
    ref.assert_ulp_in(per, whole, dtype, max_ulp=1)
    ref.assert_ulp_in(per, ref.nt_xent(z1, z2, temperature), dtype)
    for reduction in ("mean", "sum"):
        value, grads = M.nt_xent_loss_value_and_grad(z1, z2, temperature, reduction)
        ref.assert_ulp_in(value, ref.reduced(ref.nt_xent(z1, z2, temperature), reduction), dtype)
        exact = ref.nt_xent_grad(z1, z2, temperature, reduction)
        for got, want, one_block in zip(grads, exact, whole_grads, strict=True):
            if reduction == "sum":
                ref.assert_ulp_in(got, one_block, dtype, max_ulp=1)
            # as test_nt_xent_gradient_within_4_ulp: 4 ULP of the row's largest entry
            exact64 = np.array([[float(v) for v in row] for row in want])
            unit = np.spacing(np.max(np.abs(exact64), axis=-1, keepdims=True).astype(dtype))
            error = np.abs(got.astype(np.float64) - exact64)
            assert np.all(error <= 4 * unit.astype(np.float64)), (error / unit).max()


def test_nt_xent_rows_recomputed_in_double_double(monkeypatch):
    # at a tiny temperature the plain float64 logits' rounding reaches a float32 loss
    # (0.9 ULP here): those rows alone (two samples close to each other) are recomputed
    # from double-double logits and then rounded once, in blocks of 3 rows as in one block
    rng = np.random.default_rng(18)
    z1 = rng.normal(size=(7, 4))
    z1[1] = z1[0] + 1e-5 * rng.normal(size=4)
    z2 = (z1 + 3e-7 * rng.normal(size=(7, 4))).astype(np.float32)
    z1 = z1.astype(np.float32)
    inexact = M._nt_xent_blocks(M._nt_xent(z1, z2, 1e-9, "none"), False)[1]
    assert inexact.any() and not inexact.all()
    with mpmath.workdps(60):
        exact = ref.nt_xent(z1, z2, 1e-9)
    whole = M.nt_xent_loss(z1, z2, 1e-9, reduction="none")
    ref.assert_ulp_in(whole, exact, np.float32, max_ulp=0.51)  # correctly rounded
    monkeypatch.setattr(M, "_NT_XENT_BLOCK", 1)
    monkeypatch.setattr(M, "_NT_XENT_ROWS", 3)
    ref.assert_ulp_in(M.nt_xent_loss(z1, z2, 1e-9, reduction="none"), exact, np.float32, 0.51)
    ref.assert_ulp_in(M.nt_xent_loss(z1, z2, 1e-9), ref.reduced(exact, "mean"), np.float32)


def test_squared_triplet_whose_terms_cancel_to_2_to_the_minus_61():
    # d(a, p)^2 - d(a, n)^2 + 1 is 3.5e-19: double-double squared distances (2**-106 of
    # them) leave 256 ULP; the value is the correctly rounded sum of exact products
    a = np.array([[-0.3276590335483707, -1.769136196642752, -0.27421482949443227]])
    p = np.array([[-0.31127256924703756, -1.7261597101315511, -0.36396627172366847]])
    n = np.array([[-0.3525007732261253, -2.5780294625037143, 0.3218098246952608]])
    exact = ref.triplet(a, p, n, 1.0, 2.0, 0.0, False, True)
    assert 3e-19 < exact[0] < 4e-19
    for swap in (False, True):
        got = M.triplet_margin_loss(a, p, n, swap=swap, squared=True, reduction="none")
        ref.assert_ulp_in(got, exact, np.float64, max_ulp=0.5)


@pytest.mark.parametrize("dtype", DTYPES)
def test_squared_triplets_cancelling_to_the_last_digits_within_4_ulp(dtype):
    # the negative placed where d(a, n)^2 = d(a, p)^2 + 1 in real numbers: the rounded
    # embeddings leave values from 0 to a few ULP of 1 (cancellation to 2**-60 and beyond)
    rng = np.random.default_rng(9)
    a = rng.standard_normal((400, 4))
    p = a + 0.1 * rng.standard_normal((400, 4))
    direction = rng.standard_normal((400, 4))
    direction /= np.linalg.norm(direction, axis=1, keepdims=True)
    n = a + direction * np.sqrt(np.sum((a - p) ** 2, axis=1) + 1.0)[:, None]
    a, p, n = (x.astype(dtype) for x in (a, p, n))
    exact = ref.triplet(a, p, n, 1.0, 2.0, 0.0, False, True)
    got = M.triplet_margin_loss(a, p, n, squared=True, reduction="none")
    ref.assert_ulp_in(got, exact, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(("squared", "swap"), [(True, False), (False, False), (True, True)])
def test_triplet_gradient_takes_the_exact_side_of_the_hinge(dtype, squared, swap):
    # the rounded value before the hinge is 0 (or of the wrong sign) where the exact one is
    # a few 1e-17 on either side: the gradient is 0 on the exact inactive side
    if dtype == np.float64 and squared and not swap:
        a = np.array([[2.0409191213851825, -2.5556650313141818, 0.41809884672577885]])
        p = np.array([[1.9621334947468458, -2.6109825860513194, 0.3160890961537154]])
        n = np.array([[1.9107812760644627, -1.5545428833758135, 0.44027500872948255]])
        grads = M.triplet_margin_loss_grad(a, p, n, squared=True, reduction="sum")
        assert all(np.all(g == 0) for g in grads)
    rng = np.random.default_rng(17)
    rows = 300
    a = rng.standard_normal((rows, 3))
    p = a + 0.1 * rng.standard_normal((rows, 3))
    direction = rng.standard_normal((rows, 3))
    direction /= np.linalg.norm(direction, axis=1, keepdims=True)
    if squared:
        reach = np.sqrt(np.sum((a - p) ** 2, axis=1) + 1.0)
    else:
        reach = np.linalg.norm(a - p + 1e-6, axis=1) + 1.0
    n = a + direction * reach[:, None]
    a, p, n = (x.astype(dtype) for x in (a, p, n))
    with mpmath.workdps(ref.DIGITS):
        shift = 0 if squared else ref.mp(1e-6)
        active = []
        for i in range(rows):
            x, y, z = ([ref.mp(v) for v in row[i]] for row in (a, p, n))

            def dist(u, w):
                s = mpmath.fsum((s - t + shift) ** 2 for s, t in zip(u, w, strict=True))
                return s if squared else mpmath.sqrt(s)

            negative = min(dist(x, z), dist(y, z)) if swap else dist(x, z)
            active.append(dist(x, y) - negative + 1 >= 0)
    grads = M.triplet_margin_loss_grad(a, p, n, squared=squared, swap=swap, reduction="none")
    value, both = M.triplet_margin_loss_value_and_grad(
        a, p, n, squared=squared, swap=swap, reduction="none"
    )
    active = np.array(active)
    assert 0 < active.sum() < rows
    for g, h in zip(grads, both, strict=True):
        assert np.array_equal(g, h)
        assert np.all(g[~active] == 0)
        assert np.all(np.any(g[active] != 0, axis=-1))


def test_nt_xent_gradient_of_nearly_parallel_views_within_its_stated_bound():
    # the gradient w.r.t. view 10's unit row lies nearly along it: the normalisation keeps
    # its tangent part, 1/20 of it, and an entry is within 4 ULP of the larger of the
    # row's largest entry and that gradient's largest entry over the view's norm (12 ULP
    # of the row's largest entry alone)
    rng = np.random.default_rng(6)
    z1 = rng.standard_normal((6, 4))
    z2 = z1 + 1e-6 * rng.standard_normal((6, 4))
    got = M.nt_xent_loss_grad(z1, z2, temperature=0.3, reduction="sum")
    exact = ref.nt_xent_grad(z1, z2, 0.3, "sum")
    views = np.concatenate([z1, z2])
    with mpmath.workdps(ref.DIGITS):
        unit = [[ref.mp(x) / mpmath.norm([ref.mp(y) for y in row]) for x in row] for row in views]
        positive = [(i + 6) % 12 for i in range(12)]
        d_unit = []  # the gradient w.r.t. each unit row but its positive's part, over its norm
        for i in range(12):
            logits = [
                mpmath.fsum(u * w for u, w in zip(unit[i], unit[j], strict=True)) / ref.mp(0.3)
                for j in range(12)
            ]
            total = mpmath.fsum(mpmath.exp(s) for j, s in enumerate(logits) if j != i)
            d_unit.append([mpmath.exp(s) / total if j != i else 0 for j, s in enumerate(logits)])
        sizes = []
        for i in range(12):
            row = [
                mpmath.fsum(
                    (d_unit[i][j] + d_unit[j][i]) * unit[j][k] / ref.mp(0.3)
                    for j in range(12)
                    if j not in (i, positive[i])
                )
                for k in range(4)
            ]
            sizes.append(
                float(max(abs(x) for x in row) / mpmath.norm([ref.mp(y) for y in views[i]]))
            )
    sizes = np.array(sizes)[:, None]
    for g, e, size in zip(got, exact, (sizes[:6], sizes[6:]), strict=True):
        e64 = np.array([[float(v) for v in row] for row in e])
        top = np.max(np.abs(e64), axis=-1, keepdims=True)
        assert np.all(np.abs(g - e64) <= 4 * np.spacing(np.maximum(top, size)))
    assert np.max(np.abs(got[1] - e64) / np.spacing(top)) > 4  # the row's largest alone
