"""The accuracy contract of the activations and classification losses, in every dtype.

Each function and each gradient is evaluated in float16, float32 and float64 over the
hard regimes (confident right and wrong predictions, logits of +-1e4, tiny losses,
infinities, empty batches) and compared with mpmath applied to the same rounded inputs,
in ULP of the output dtype (``lossutils.testing.assert_close_to_exact``). The failing
cases of the numerics issue are here with their right values. Sweeps stay small: a few
pointed rows each, so the whole module runs in seconds.
"""

from __future__ import annotations

import functools
import pathlib
import re
import warnings

import mp_reference as mr
import mpmath
import numpy as np
import pytest

import lossutils as L
from lossutils.testing import assert_close_to_exact, ulp_error

DTYPES = [np.float16, np.float32, np.float64]
# float16 is computed in float32 and rounded once: within one float16 ULP
BOUND = {np.float16: 1.0, np.float32: 4.0, np.float64: 4.0}

LOGITS = np.array(
    [-1e4, -700, -100, -40, -17, -5, -1, -0.01, -1e-5, 0, 1e-5, 0.01, 0.5, 1, 3, 5, 17, 40, 100]
    + [700, 1e4]
)


def _exact(values):
    """float64 copies of rounded inputs: exact, so the references see the same numbers."""
    return np.asarray(values).astype(np.float64)


def _rows(dtype):
    """Rows of logits: confident right, confident wrong, ties, +-1e4, a tiny loss."""
    rows = np.array(
        [
            [12.0, 0.0, -3.0, 1.0],
            [0.1, 700.3, -3.5, 2.0],
            [40.0, 0.0, 0.0, -1e4],
            [-2.0, -2.0, -2.0, -2.0],
            [1e4, -1e4, 0.0, 9999.0],
            [3.0, 2.5, -1.0, 0.25],
            [-30.0, 5.0, -7.0, 1.0],
            [0.5, 0.25, 2.0, -0.75],
        ]
    )
    if dtype == np.float16:
        rows[1, 1] = 70.3  # float16 overflows above 65504; keep the row dominated
    return rows.astype(dtype)


# --- activations ----------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES)
def test_elementwise_activations(dtype):
    x = LOGITS.astype(dtype)
    for name, ref in [
        ("sigmoid", mr.sigmoid),
        ("log_sigmoid", mr.log_sigmoid),
        ("softplus", mr.softplus),
    ]:
        out = getattr(L, name)(x)
        assert out.dtype == dtype
        assert_close_to_exact(out, ref(_exact(x)), BOUND[dtype], f"{name} {dtype.__name__}")


@pytest.mark.parametrize("dtype", DTYPES)
def test_row_activations(dtype):
    z = _rows(dtype)
    exact = _exact(z)
    assert_close_to_exact(L.logsumexp(z), mr.logsumexp(exact), BOUND[dtype], "logsumexp")
    assert_close_to_exact(L.log_softmax(z), mr.log_softmax(exact), BOUND[dtype], "log_softmax")
    assert_close_to_exact(L.softmax(z), mr.softmax(exact), BOUND[dtype], "softmax")
    # along another axis: the same numbers
    np.testing.assert_array_equal(L.softmax(z.T, axis=0), L.softmax(z).T)


def test_log_softmax_confident_wrong_rows_with_a_margin():
    # issue E: the target far below the maximum, magnitudes up to 1e4; below 4 ULP with margin
    g = np.random.default_rng(8)
    z = g.normal(size=(60, 4)) * g.choice([1.0, 10.0, 100.0, 1e3, 1e4], (60, 1))
    assert_close_to_exact(L.log_softmax(z), mr.log_softmax(z), 3.0, "log_softmax")


def test_softmax_tail_and_cross_entropy_gradient_of_a_confident_row():
    # issue C: uncompensated, entry 0 is about 180 ULP from the exact probability
    with mpmath.workprec(3000):
        p0 = 1 / (1 + mpmath.exp(mpmath.mpf(700.3) - mpmath.mpf(0.1)))
    g = L.cross_entropy_grad([[0.1, 700.3]], [1], reduction="sum")
    assert_close_to_exact(g[0, 0], p0, 2.0, "cross_entropy_grad")
    assert_close_to_exact(g[0, 1], -p0, 2.0, "cross_entropy_grad target")
    assert_close_to_exact(L.softmax([[0.1, 700.3]])[0, 0], p0, 2.0, "softmax tail")


def _spread_rows(dtype):
    """Rows no class dominates (top probability well below 0.94) with entries far in the tail:
    each difference z_k - max rounds, and exp turns its absolute error into a relative one."""
    g = np.random.default_rng(21)
    far = {np.float16: 9.0, np.float32: 60.0, np.float64: 600.0}[dtype]
    z = np.empty((40, 6))
    z[:, 0] = g.normal(size=40) * 3
    z[:, 1] = z[:, 0] + g.uniform(-0.5, 0.5, 40)  # two close leaders: no confident row
    z[:, 2:] = z[:, :1] - 1 - g.uniform(0.0, 1.0, (40, 4)) * far  # tails down to about -far
    return z.astype(dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_softmax_and_cross_entropy_gradient_tails_outside_confident_rows(dtype):
    # issue 8 (a): these tails were 62-110 ULP off in float64 (only confident rows were corrected)
    z = _spread_rows(dtype)
    exact = _exact(z)
    p = L.softmax(z)
    assert np.all(np.max(p.astype(np.float64), axis=-1) < 0.9)
    assert_close_to_exact(p, mr.softmax(exact), BOUND[dtype], "softmax tails")
    y = np.arange(len(z)) % 6
    grad = L.cross_entropy_grad(z, y, reduction="sum")
    reference = mr.cross_entropy_grad_sum(exact, y)
    assert_close_to_exact(grad, reference, BOUND[dtype], "cross_entropy_grad tails")
    if dtype == np.float64:  # the textbook shift fails here: the check can fail
        shifted = np.exp(z - z.max(-1, keepdims=True))
        textbook = shifted / shifted.sum(-1, keepdims=True)
        with pytest.raises(AssertionError):
            assert_close_to_exact(textbook, mr.softmax(exact), BOUND[dtype], "textbook")


def test_float32_log_softmax_at_a_subnormal_result():
    # issue 8 (d): one logit ahead of nine zeros; the top entry's log-probability is
    # -9 e^{-102.34}, a float32 subnormal (it was 4.01 ULP off: the rest was summed in float32)
    row = np.zeros(10, dtype=np.float32)
    row[8] = np.float32(102.34114074707031)
    with mpmath.workdps(60):
        exact = -mpmath.log1p(9 * mpmath.exp(-mpmath.mpf(float(row[8]))))
    top = L.log_softmax(row)[8]
    assert top.dtype == np.float32 and 0 < -top < np.finfo(np.float32).smallest_normal
    assert_close_to_exact(top, exact, 1.0, "log_softmax subnormal")
    lse = L.logsumexp(row)
    with mpmath.workdps(60):
        assert_close_to_exact(lse, mpmath.mpf(float(row[8])) - exact, 1.0, "logsumexp")


def _ulp_of_the_larger_term(actual, exact, first, second, dtype):
    """|actual - exact| in ULP of max(|first|, |second|) on dtype's grid (first, second: the
    two terms whose difference is the exact value)."""
    out = np.empty(actual.shape)
    with mpmath.workdps(mr.DIGITS):
        for index in np.ndindex(actual.shape):
            larger = max(abs(float(first[index])), abs(float(second[index])))
            unit = float(np.spacing(dtype(larger)))
            out[index] = float(abs(mpmath.mpf(float(actual[index])) - exact[index])) / unit
    return out


def _rows_with_a_probability_near(value, dtype, column=1, n=30, num_classes=5):
    """Logits whose softmax puts about ``value`` on ``column`` (solved in float64)."""
    z = np.random.default_rng(4).normal(size=(n, num_classes)) * 2
    others = np.exp(np.delete(z, column, axis=1)).sum(axis=1)
    z[:, column] = np.log(value * others / (1 - value))
    return z.astype(dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_smoothed_cross_entropy_gradient_where_p_is_near_eps_over_c(dtype):
    # issue 8 (c): the entry p_k - eps/C cancels (it was 280 ULP of the result in float64).
    # The honest bound: a few ULP of the larger of the two terms, p_k and eps/C.
    eps, num_classes = 0.1, 5
    z = _rows_with_a_probability_near(eps / num_classes, dtype)
    y = np.arange(len(z)) % 2 * 2  # targets 0 or 2, never the cancelling column 1
    grad = L.cross_entropy_grad(z, y, label_smoothing=eps, reduction="sum")
    p = mr.softmax(_exact(z))
    with mpmath.workdps(mr.DIGITS):
        smooth = np.vectorize(mpmath.mpf, otypes=[object])(np.full(z.shape, eps)) / num_classes
        t = smooth.copy()
        for i, k in enumerate(y):
            t[i, k] += 1 - mpmath.mpf(eps)
        exact = p - t
    assert np.max(ulp_error(grad[:, 1], exact[:, 1], dtype)) > 4 or dtype == np.float16
    worst = np.max(_ulp_of_the_larger_term(grad, exact, p, t, dtype))
    assert worst <= BOUND[dtype], worst


@pytest.mark.parametrize("dtype", DTYPES)
def test_probability_target_gradient_near_the_optimum(dtype):
    # issue 8 (b): target = softmax(input) rounded; softmax - target cancels to about one
    # rounding of the target. Bound: a few ULP of the larger term (p or the target).
    z = _rows_with_a_probability_near(0.3, dtype)
    p = mr.softmax(_exact(z))
    q = np.vectorize(float, otypes=[np.float64])(p).astype(dtype)
    grad = L.cross_entropy_grad(z, q, reduction="sum")
    with mpmath.workdps(mr.DIGITS):
        target = np.vectorize(lambda v: mpmath.mpf(float(v)), otypes=[object])(q)
        exact = p - target
    worst = np.max(_ulp_of_the_larger_term(grad, exact, p, target, dtype))
    assert worst <= BOUND[dtype], worst


def test_softmax_of_an_empty_class_axis_names_it():
    # issue D10
    with pytest.raises(ValueError, match=r"x must have at least one element along axis -1"):
        L.softmax(np.zeros((2, 0)))
    with pytest.raises(ValueError, match=r"along axis 0"):
        L.softmax(np.zeros((0, 3)), axis=0)


# --- categorical losses ---------------------------------------------------------------------------

TARGETS = np.array([0, 1, 0, 2, 1, 0, 0, 3])


@pytest.mark.parametrize("dtype", DTYPES)
def test_cross_entropy_and_its_gradient(dtype):
    z = _rows(dtype)
    exact = _exact(z)
    loss = L.cross_entropy(z, TARGETS, reduction="none")
    assert loss.dtype == dtype
    assert_close_to_exact(loss, mr.cross_entropy(exact, TARGETS), BOUND[dtype], "cross_entropy")
    grad = L.cross_entropy_grad(z, TARGETS, reduction="sum")
    assert grad.dtype == dtype
    reference = mr.cross_entropy_grad_sum(exact, TARGETS)
    assert_close_to_exact(grad, reference, BOUND[dtype], "cross_entropy_grad")
    # probability targets that are one-hot: the same loss; the gradient agrees too
    onehot = np.eye(4, dtype=dtype)[TARGETS]
    soft = L.cross_entropy(z, onehot, reduction="none")
    assert_close_to_exact(soft, mr.cross_entropy(exact, TARGETS), BOUND[dtype], "prob targets")
    grad_soft = L.cross_entropy_grad(z, onehot, reduction="sum")
    assert_close_to_exact(grad_soft, reference, BOUND[dtype] + 1, "prob targets grad")


@pytest.mark.parametrize("dtype", DTYPES)
def test_nll_and_margin_losses(dtype):
    z = _rows(dtype)
    exact = _exact(z)
    logp = L.log_softmax(z)
    nll = L.nll_loss(logp, TARGETS, reduction="none")
    np.testing.assert_array_equal(nll, -logp[np.arange(8), TARGETS])
    assert nll.dtype == dtype
    hinge = L.multiclass_hinge_loss(z, TARGETS, reduction="none")
    assert_close_to_exact(hinge, mr.multiclass_hinge_loss(exact, TARGETS, 1.0), BOUND[dtype])
    w = np.array([0.5, 2.0, 1.0, 0.25], dtype)
    for p in (1, 2):
        mm = L.multi_margin_loss(z, TARGETS, p=p, weight=w, reduction="none")
        reference = mr.multi_margin_loss(exact, TARGETS, p, 1.0, _exact(w))
        assert_close_to_exact(mm, reference, BOUND[dtype], f"multi_margin_loss p={p}")


@pytest.mark.parametrize("dtype", [np.float16, np.float32])
@pytest.mark.parametrize("gamma", [0.5, 2.0])
def test_focal_losses_in_narrow_dtypes_are_rounded_once_from_float64(dtype, gamma):
    # computed in float64 whatever the platform's long double is
    z = _rows(dtype)
    loss = L.softmax_focal_loss(z, TARGETS, gamma=gamma, reduction="none")
    assert loss.dtype == dtype
    reference = mr.softmax_focal_loss(_exact(z), TARGETS, gamma)
    assert_close_to_exact(loss, reference, 1.0, "softmax_focal_loss")
    x = LOGITS.astype(dtype)
    y = (np.arange(x.size) % 2).astype(dtype)
    loss = L.sigmoid_focal_loss(x, y, gamma=gamma, reduction="none")
    reference = mr.sigmoid_focal_loss(_exact(x), _exact(y), 0.25, gamma)
    assert_close_to_exact(loss, reference, 1.0, "sigmoid_focal_loss")


def test_no_extended_precision_type_anywhere_in_lossutils():
    # issue E: long double is plain double on Windows and Apple silicon, so a kernel using it
    # would pass the mpmath sweeps here and lose digits there; no module may name it
    names = re.compile(r"longdouble|longfloat|float96|float128|complex192|complex256")
    for path in sorted(pathlib.Path(L.__file__).parent.glob("*.py")):
        hits = [n for n, line in enumerate(path.read_text().splitlines(), 1) if names.search(line)]
        assert not hits, f"{path.name} names an extended-precision type at lines {hits}"


def _weighted_reference(per_sample, labels, weight, reduction):
    """Exact weighted reduction of mpmath per-sample losses (the mean divides by sum w_y)."""
    with mpmath.workdps(mr.DIGITS):
        w = [mpmath.mpf(float(weight[y])) for y in labels]
        terms = [wi * v for wi, v in zip(w, per_sample, strict=True)]
        if reduction == "none":
            return np.array(terms, dtype=object)
        return mpmath.fsum(terms) / (mpmath.fsum(w) if reduction == "mean" else 1)


# weighted losses whose intermediates overflow while the result does not: -log p_y beyond
# the largest float64 times a weight below 1; weighted losses whose sum overflows before the
# mean divides; a weight above 1 lifting a loss beyond the largest float, then divided
OVERFLOW_CASES = [
    ([[1e308, -1e308, 0.0], [1e308, -1e308, 0.0]], [1, 1], [1.0, 0.25, 1.0]),
    ([[1e308, -0.7e308], [1e308, -0.7e308]], [1, 1], [1.0, 1.0]),
    ([[1e308, -0.6e308], [1e308, -0.6e308]], [1, 1], [1.0, 2.0]),
    ([[1e308, -0.6e308], [0.0, 0.0]], [1, 0], [1e-300, 2.0]),
]


@pytest.mark.parametrize("case", range(len(OVERFLOW_CASES)))
@pytest.mark.parametrize("reduction", ["none", "sum", "mean"])
@pytest.mark.parametrize("gamma", [0.0, 2.0])
def test_softmax_focal_loss_weighted_has_no_intermediate_overflow(case, reduction, gamma):
    z, y, w = (np.array(a) for a in OVERFLOW_CASES[case])
    loss = L.softmax_focal_loss(z, y, gamma=gamma, weight=w, reduction=reduction)
    reference = _weighted_reference(mr.softmax_focal_loss(z, y, gamma), y, w, reduction)
    assert_close_to_exact(loss, reference, BOUND[np.float64], f"softmax_focal_loss {reduction}")
    grad = L.softmax_focal_loss_grad(z, y, gamma=gamma, weight=w, reduction=reduction)
    assert np.all(np.isfinite(grad))
    if gamma == 0:  # the cross-entropy
        loss = L.cross_entropy(z, y, weight=w, reduction=reduction)
        assert_close_to_exact(loss, reference, BOUND[np.float64], f"cross_entropy {reduction}")


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("reduction", ["none", "sum", "mean"])
@pytest.mark.parametrize("eps", [0.0, 0.1])
def test_cross_entropy_weighted_has_no_intermediate_overflow(dtype, reduction, eps):
    # -log p_y (and the smoothing's sum_c w_c (m - z_c)) beyond the largest number of the
    # dtype, times weights below 1
    big = float(np.finfo(dtype).max) * 0.9
    z = np.array([[big, -big, 0.0], [big, -big, 0.0]], dtype)
    y, w = np.array([1, 1]), np.array([1.0, 0.25, 0.25], dtype)
    loss = L.cross_entropy(z, y, weight=w, reduction=reduction, label_smoothing=eps)
    per = mr.smoothed_cross_entropy(_exact(z), y, _exact(w), eps)  # weighted
    with mpmath.workdps(mr.DIGITS):
        reference = {
            "none": per,
            "sum": mpmath.fsum(per),
            "mean": mpmath.fsum(per) / (2 * mpmath.mpf(0.25)),
        }[reduction]
    assert_close_to_exact(loss, reference, BOUND[dtype], f"cross_entropy {reduction}")


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_weighted_mean_whose_weight_total_overflows(dtype):
    # finite class weights whose total (and weighted losses) overflow: the mean sees only
    # the shares w_i / sum w (here all equal: the unweighted mean), and its gradient too
    big = float(np.finfo(dtype).max)
    z = np.array([[1.0, -1.0, 0.0], [-1.0, 0.0, 1.0]] * 3, dtype)
    y = np.array([1, 0, 2, 0, 1, 2])
    for w in (np.full(3, 0.6 * big, dtype), np.array([big, big, 0.5 * big], dtype)):
        with mpmath.workdps(mr.DIGITS):
            ce = mr.cross_entropy(_exact(z), y)
            ce_grad = mr.cross_entropy_grad_sum(_exact(z), y)
            shares = [mpmath.mpf(float(w[k])) for k in y]
            mean = mpmath.fsum(s * c for s, c in zip(shares, ce, strict=True)) / mpmath.fsum(shares)
        got = L.cross_entropy(z, y, weight=w)
        assert_close_to_exact(got, mean, BOUND[dtype], "cross_entropy")
        assert_close_to_exact(L.softmax_focal_loss(z, y, gamma=0.0, weight=w), mean, BOUND[dtype])
        assert_close_to_exact(L.nll_loss(L.log_softmax(z), y, weight=w), mean, BOUND[dtype])
        with mpmath.workdps(mr.DIGITS):
            total = mpmath.fsum(shares)
            expected = [
                [g * s / total for g in row] for row, s in zip(ce_grad, shares, strict=True)
            ]
        for name in ("cross_entropy_grad", "softmax_focal_loss_grad"):
            kwargs = {"gamma": 0.0} if name.startswith("softmax") else {}
            grad = getattr(L, name)(z, y, weight=w, **kwargs)
            assert_close_to_exact(grad, expected, BOUND[dtype], name)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("eps", [0.0, 0.1])
def test_weighted_mean_with_subnormal_or_huge_weights(dtype, eps):
    # the mean sees only the shares of the weights it uses: a subnormal weight beside a huge
    # one no sample has (it was NaN: the huge one set the scale), subnormal weights alone
    # (each weighted loss a subnormal: the mean was 0), a huge weight with a tiny one
    info = np.finfo(dtype)
    tiny, big = float(info.smallest_subnormal), float(info.max)
    z = np.array([[3.3, -1.7, 0.2], [0.1, 2.9, -5.0], [1.0, 2.0, 0.5]], dtype)
    y = np.array([0, 1, 0])
    weights = [[tiny, tiny, big], [tiny] * 3, [4 * tiny, big / 2, 1.0]]
    if eps:  # smoothing weighs every class: a weight no sample has counts too
        weights = weights[1:]
    for w in (np.array(w, dtype) for w in weights):
        with mpmath.workdps(mr.DIGITS):
            per = mr.smoothed_cross_entropy(_exact(z), y, _exact(w), eps)
            total = mpmath.fsum(mpmath.mpf(float(w[k])) for k in y)
            mean = mpmath.fsum(per) / total
        got = L.cross_entropy(z, y, weight=w, label_smoothing=eps)
        assert_close_to_exact(got, mean, BOUND[dtype], f"cross_entropy {w}")
        if eps == 0:
            assert_close_to_exact(
                L.softmax_focal_loss(z, y, gamma=0.0, weight=w), mean, BOUND[dtype]
            )
            log_p = L.log_softmax(z)
            with mpmath.workdps(mr.DIGITS):
                nll = (
                    mpmath.fsum(
                        -mpmath.mpf(float(w[k])) * mpmath.mpf(float(log_p[i, k]))
                        for i, k in enumerate(y)
                    )
                    / total
                )
            assert_close_to_exact(L.nll_loss(log_p, y, weight=w), nll, BOUND[dtype], "nll_loss")
        assert np.all(np.isfinite(L.cross_entropy_grad(z, y, weight=w, label_smoothing=eps)))


@pytest.mark.parametrize("ignore_index", [1.5, -100.0, True, "0", None])
def test_ignore_index_must_be_an_integer(ignore_index):
    # None too: the docstrings say int, and PyTorch has no None ("ignore nothing") either
    z, y = np.zeros((2, 3)), np.array([0, 1])
    for name in ("cross_entropy", "nll_loss", "softmax_focal_loss"):
        for suffix in ("", "_grad", "_value_and_grad"):
            with pytest.raises(
                ValueError, match=f"ignore_index must be an integer; got {ignore_index!r}"
            ):
                getattr(L, name + suffix)(z, y, ignore_index=ignore_index)
    # probability targets ignore it, but it is still checked
    with pytest.raises(ValueError, match="ignore_index must be an integer"):
        L.cross_entropy(z, np.full((2, 3), 1 / 3), ignore_index=ignore_index)
    assert np.isfinite(L.cross_entropy(z, y, ignore_index=np.int8(1)))


def test_cross_entropy_mean_in_float16_over_many_rows():
    # issue B2: the sum 1e5 overflows float16; the mean is 100 and each target entry -0.001
    z = np.zeros((1000, 2), np.float16)
    z[:, 1] = 100
    y = np.zeros(1000, dtype=int)
    assert L.cross_entropy(z, y) == np.float16(100)
    g = L.cross_entropy_grad(z, y)
    assert g.dtype == np.float16
    np.testing.assert_array_equal(g[:, 0], np.float16(-0.001))
    np.testing.assert_array_equal(g[:, 1], np.float16(0.001))


def test_cross_entropy_probability_target_with_an_infinite_logit_where_it_is_zero():
    # issue D6: the class with target 0 is absent from the sum, also at -inf
    loss = L.cross_entropy([[-np.inf, 0.0, 0.0]], [[0.0, 0.5, 0.5]])
    assert loss == pytest.approx(np.log(2), rel=1e-16)
    np.testing.assert_array_equal(
        L.cross_entropy_grad([[-np.inf, 0.0, 0.0]], [[0.0, 0.5, 0.5]]), [[0.0, 0.0, 0.0]]
    )


# --- binary losses --------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES)
def test_binary_losses_and_gradients(dtype):
    x = LOGITS.astype(dtype)
    ex = _exact(x)
    for y_value in (0.0, 1.0):
        y = np.full(x.shape, y_value, dtype)
        ey = _exact(y)
        loss = L.binary_cross_entropy_with_logits(x, y, reduction="none")
        assert loss.dtype == dtype
        ones = np.ones_like(ex)
        reference = mr.binary_cross_entropy_with_logits(ex, ey, ones, ones)
        assert_close_to_exact(loss, reference, BOUND[dtype], "bce_with_logits")
        grad = L.binary_cross_entropy_with_logits_grad(x, y, reduction="sum")
        assert grad.dtype == dtype
        reference = mr.binary_cross_entropy_with_logits_derivative(ex, ey)
        assert_close_to_exact(grad, reference, BOUND[dtype], "bce_with_logits_grad")
    t = np.where(np.arange(x.size) % 2, 1.0, -1.0).astype(dtype)
    et = _exact(t)
    checks = [
        ("hinge_loss", mr.hinge(ex, et, 1.0)),
        ("squared_hinge_loss", mr.squared_hinge(ex, et, 1.0)),
        ("square_loss", mr.square(ex, et)),
        ("logistic_loss", mr.logistic(ex, et, 2.0)),
    ]
    for name, reference in checks:
        out = getattr(L, name)(x, t, reduction="none")
        assert out.dtype == dtype
        assert_close_to_exact(out, reference, BOUND[dtype], f"{name} {dtype.__name__}")
    grad = L.logistic_loss_grad(x, t, reduction="sum")
    assert_close_to_exact(grad, mr.logistic_derivative(ex, et, 2.0), BOUND[dtype], "logistic")
    p = np.array([0.0, 1e-6, 0.01, 0.25, 0.5, 0.9, 0.999, 1.0], dtype)
    y = np.array([1.0, 1.0, 0.0, 0.5, 1.0, 0.0, 1.0, 1.0], dtype)
    bce = L.binary_cross_entropy(p, y, reduction="none")
    reference = mr.binary_cross_entropy(_exact(p), _exact(y), np.ones(p.size))
    assert_close_to_exact(bce, reference, BOUND[dtype], "binary_cross_entropy")


ELEMENTWISE_FLOAT16_MEANS = [
    ("binary_cross_entropy", 0.5, 1.0, np.log(2)),
    ("binary_cross_entropy_with_logits", 0.0, 1.0, np.log(2)),
    ("hinge_loss", 0.5, 1.0, 0.5),
    ("squared_hinge_loss", 0.5, 1.0, 0.25),
    ("square_loss", 0.5, 1.0, 0.25),
    ("logistic_loss", 0.0, 1.0, 1.0),
    ("zero_one_loss", -1.0, 1.0, 1.0),
    ("sigmoid_focal_loss", 0.0, 1.0, 0.25 * 0.25 * np.log(2)),
]


@pytest.mark.parametrize(("name", "x", "t", "value"), ELEMENTWISE_FLOAT16_MEANS)
def test_float16_mean_over_65520_elements(name, x, t, value):
    # issue B1: float16(65520) is inf, so a mean divided by it in float16 was 0
    n = 65520
    out = getattr(L, name)(np.full(n, x, np.float16), np.full(n, t, np.float16))
    assert out.dtype == np.float16 and out == np.float16(value)


@pytest.mark.parametrize("dtype", DTYPES)
def test_zero_one_loss_counts_in_every_dtype(dtype):
    # 1[t x <= 0]: the signed zeros, a subnormal score and -1e4 included; NaN stays NaN
    tiny = float(np.finfo(dtype).smallest_subnormal)
    x = np.array([2.0, -2.0, 0.0, -0.0, tiny, -1e4, np.inf, np.nan], dtype)
    t = np.array([1.0, 1.0, 1.0, -1.0, -1.0, -1.0, -1.0, 1.0], dtype)
    none = L.zero_one_loss(x, t, reduction="none")
    assert none.dtype == dtype
    np.testing.assert_array_equal(none, np.array([0, 1, 1, 1, 1, 0, 1, np.nan], dtype))
    for reduction, exact in (("sum", 5.0), ("mean", 5 / 7)):
        out = L.zero_one_loss(x[:7], t[:7], reduction=reduction)
        assert out.dtype == dtype and out == np.float64(exact).astype(dtype), reduction


def test_multi_margin_mean_in_float16_over_65520_rows():
    z = np.zeros((65520, 2), np.float16)
    out = L.multi_margin_loss(z, np.zeros(65520, dtype=int))
    assert out.dtype == np.float16 and out == np.float16(0.5)
    g = L.multi_margin_loss_grad(z, np.zeros(65520, dtype=int))
    np.testing.assert_array_equal(g[:, 1], np.float16(0.5 / 65520))


def test_a_zero_weight_masks_its_element():
    # issue D8: weight 0 at an infinite logit gives 0, without a warning
    loss = L.binary_cross_entropy_with_logits(
        [-np.inf, 1.0], [1.0, 1.0], weight=[0.0, 1.0], reduction="none"
    )
    assert loss[0] == 0 and loss[1] == pytest.approx(0.31326168751822286, rel=1e-15)
    grad = L.binary_cross_entropy_with_logits_grad(
        [-np.inf, 1.0], [1.0, 1.0], weight=[0.0, 1.0], reduction="none"
    )
    assert grad[0] == 0
    loss = L.binary_cross_entropy([0.0, 0.5], [1.0, 1.0], weight=[0.0, 1.0], reduction="none")
    assert loss[0] == 0
    z = np.array([[-np.inf, 0.0], [0.0, 1.0]])
    assert L.nll_loss(z, [0, 1], weight=[0.0, 1.0], reduction="none")[0] == 0


def test_sigmoid_focal_gradient_at_infinite_logits_is_the_limit():
    # issue D7: the values at +-1e4 (the limit), not NaN
    at_inf = L.sigmoid_focal_loss_grad([np.inf, -np.inf], [0.0, 1.0])
    at_big = L.sigmoid_focal_loss_grad([1e4, -1e4], [0.0, 1.0])
    np.testing.assert_array_equal(at_inf, at_big)
    # the limits in closed form: the loss grows like (1 - alpha) x and -alpha x, halved by the mean
    np.testing.assert_array_equal(at_inf, [0.75 / 2, -0.25 / 2])
    for dtype in (np.float16, np.float32):
        x, y = np.array([np.inf, -np.inf], dtype), np.array([0.0, 1.0], dtype)
        g = L.sigmoid_focal_loss_grad(x, y, reduction="sum")
        assert g.dtype == dtype
        np.testing.assert_array_equal(g, np.array([0.75, -0.25], dtype))
    for gamma in (0.0, 0.5, 2.0):
        g = L.sigmoid_focal_loss_grad([np.inf, -np.inf, np.inf], [1.0, 0.0, 0.0], gamma=gamma)
        assert np.all(np.isfinite(g))


# --- empty input and warnings ---------------------------------------------------------------------

ELEMENTWISE = [
    "binary_cross_entropy",
    "binary_cross_entropy_with_logits",
    "sigmoid_focal_loss",
    "hinge_loss",
    "squared_hinge_loss",
    "square_loss",
    "logistic_loss",
]
ROWWISE = [
    "cross_entropy",
    "nll_loss",
    "softmax_focal_loss",
    "multiclass_hinge_loss",
    "multi_margin_loss",
]


def _empty_args(name, dtype):
    if name in ROWWISE:
        return np.zeros((0, 3), dtype), np.zeros(0, dtype=int)
    if name in ("binary_cross_entropy", "binary_cross_entropy_with_logits", "sigmoid_focal_loss"):
        return np.zeros(0, dtype), np.zeros(0, dtype)
    return np.zeros(0, dtype), np.ones(0, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", ELEMENTWISE + ROWWISE)
def test_empty_batch(name, dtype):
    args = _empty_args(name, dtype)
    f, grad = getattr(L, name), getattr(L, name + "_grad")
    mean = f(*args)
    assert np.isnan(mean) and mean.dtype == dtype
    assert f(*args, reduction="sum") == 0
    assert f(*args, reduction="none").shape == (0,)
    for reduction in ("mean", "sum", "none"):
        g = grad(*args, reduction=reduction)
        assert g.shape == args[0].shape and g.dtype == dtype


NASTY = np.array([np.inf, -np.inf, np.nan, 0.0, -0.0, 1e4, -1e4, 65504.0, -65504.0])


@pytest.mark.parametrize("dtype", DTYPES)
def test_no_runtime_warning_escapes(dtype):
    # issue D11: the result carries the information (inf, NaN); NumPy never warns
    x = NASTY.astype(dtype)
    rows = np.stack([x[:3], x[3:6], x[6:9], x[[0, 0, 1]], x[[1, 1, 1]], x[[2, 3, 4]]])
    idx = np.array([0, 1, 2, 0, 1, 2])
    y = np.resize(np.array([0.0, 1.0, 0.5], dtype), x.shape)
    t = np.resize(np.array([1.0, -1.0], dtype), x.shape)
    p = np.resize(np.array([0.0, 1.0, 0.5, np.nan], dtype), x.shape)
    w = np.resize(np.array([0.0, 1.0, np.inf], dtype), x.shape)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for name in ("sigmoid", "log_sigmoid", "softplus"):
            getattr(L, name)(x)
        for name in ("logsumexp", "softmax", "log_softmax"):
            getattr(L, name)(rows)
        for reduction in ("mean", "sum", "none"):
            for suffix in ("", "_grad"):
                kw = {"reduction": reduction}
                getattr(L, "binary_cross_entropy" + suffix)(p, y, weight=w, **kw)
                getattr(L, "binary_cross_entropy_with_logits" + suffix)(
                    x, y, weight=w, pos_weight=w, **kw
                )
                for gamma in (0.0, 0.5, 2.0):
                    getattr(L, "sigmoid_focal_loss" + suffix)(x, y, gamma=gamma, **kw)
                    getattr(L, "softmax_focal_loss" + suffix)(rows, idx, gamma=gamma, **kw)
                for name in ("hinge_loss", "squared_hinge_loss", "square_loss", "logistic_loss"):
                    getattr(L, name + suffix)(x, t, **kw)
                getattr(L, "cross_entropy" + suffix)(rows, idx, weight=w[:3], **kw)
                getattr(L, "cross_entropy" + suffix)(rows, idx, label_smoothing=0.1, **kw)
                probs = np.resize(np.array([0.0, 0.5, 0.5], dtype), rows.shape)
                getattr(L, "cross_entropy" + suffix)(rows, probs, **kw)
                getattr(L, "nll_loss" + suffix)(rows, idx, weight=w[:3], **kw)
                getattr(L, "multiclass_hinge_loss" + suffix)(rows, idx, **kw)
                getattr(L, "multi_margin_loss" + suffix)(rows, idx, p=2, weight=w[:3], **kw)
            L.zero_one_loss(x, t, reduction=reduction)


# --- the remaining gradients, against mpmath of the same rounded inputs --------------------------


def _mp_map(f, *arrays):
    """Apply ``f`` to exact mpmath numbers elementwise (400 digits)."""
    arrays = np.broadcast_arrays(*[_exact(a) for a in arrays])
    out = np.empty(arrays[0].shape, dtype=object)
    with mpmath.workdps(mr.DIGITS):
        for index in np.ndindex(out.shape):
            out[index] = f(*(mpmath.mpf(float(a[index])) for a in arrays))
    return out


@pytest.mark.parametrize("dtype", DTYPES)
def test_margin_and_bce_gradients(dtype):
    x = LOGITS.astype(dtype)
    t = np.where(np.arange(x.size) % 2, 1.0, -1.0).astype(dtype)
    zero = mpmath.mpf(0)
    references = {
        "hinge_loss_grad": _mp_map(lambda x, t: -t if 1 - t * x > 0 else zero, x, t),
        "squared_hinge_loss_grad": _mp_map(lambda x, t: -2 * t * max(zero, 1 - t * x), x, t),
        "square_loss_grad": _mp_map(lambda x, t: -2 * t * (1 - t * x), x, t),
    }
    for name, reference in references.items():
        grad = getattr(L, name)(x, t, reduction="sum")
        assert grad.dtype == dtype
        assert_close_to_exact(grad, reference, BOUND[dtype], f"{name} {dtype.__name__}")
    p = np.array([1e-6, 0.01, 0.25, 0.5, 0.9, 0.999, 0.3], dtype)
    y = np.array([1.0, 1.0, 0.0, 0.5, 1.0, 0.0, 0.7], dtype)
    reference = _mp_map(lambda p, y: -y / p + (1 - y) / (1 - p), p, y)
    grad = L.binary_cross_entropy_grad(p, y, reduction="sum")
    assert_close_to_exact(grad, reference, BOUND[dtype], "binary_cross_entropy_grad")


@pytest.mark.parametrize("dtype", DTYPES)
def test_row_margin_and_nll_gradients(dtype):
    z = _rows(dtype)
    w = np.array([0.5, 2.0, 1.0, 0.25], dtype)
    g = L.nll_loss_grad(z, TARGETS, weight=w, reduction="mean")
    expected = np.zeros((8, 4))
    expected[np.arange(8), TARGETS] = -w[TARGETS].astype(np.float64)
    total = mpmath.fsum(mpmath.mpf(float(v)) for v in w[TARGETS])
    reference = np.vectorize(lambda v: mpmath.mpf(v) / total, otypes=[object])(expected)
    assert_close_to_exact(g, reference, BOUND[dtype], "nll_loss_grad")
    exact = _exact(z)
    for p in (1, 2):
        grad = L.multi_margin_loss_grad(z, TARGETS, p=p, weight=w, reduction="sum")
        reference = np.empty(z.shape, dtype=object)
        with mpmath.workdps(mr.DIGITS):
            for i, y in enumerate(TARGETS):
                row = [mpmath.mpf(v) for v in exact[i]]
                wy = mpmath.mpf(float(w[y]))
                total = mpmath.mpf(0)
                for k in range(4):
                    h = 1 - row[y] + row[k]
                    c = wy * (1 if p == 1 else 2 * h) / 4 if k != y and h > 0 else mpmath.mpf(0)
                    reference[i, k] = c
                    total -= c
                reference[i, y] = total
        assert_close_to_exact(grad, reference, BOUND[dtype], f"multi_margin_loss_grad p={p}")
    grad = L.multiclass_hinge_loss_grad(z, TARGETS, reduction="sum")
    gap = L.multiclass_hinge_loss(z, TARGETS, reduction="none")
    assert np.all(np.sum(grad, axis=-1) == 0)
    np.testing.assert_array_equal(grad[np.arange(8), TARGETS], -(gap > 0).astype(dtype))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("gamma", [0.5, 2.0])
def test_softmax_focal_gradient(dtype, gamma):
    z = _rows(dtype)
    grad = L.softmax_focal_loss_grad(z, TARGETS, gamma=gamma, reduction="sum")
    assert grad.dtype == dtype
    reference = _softmax_focal_grad_exact(_exact(z), TARGETS, gamma)
    # float64: the factor multiplies the errors of u and -log p_y (see the loss's bound)
    bound = 1.0 if dtype != np.float64 else 2.0 + 1.5 * (1 + gamma)
    assert_close_to_exact(grad, reference, bound, f"softmax_focal_loss_grad {dtype.__name__}")


def _softmax_focal_grad_exact(exact, targets, gamma):
    """d(sum of focal losses)/dz by its closed form, (u^g + g u^(g-1) p_y l) (p - e_y)."""
    reference = np.empty(exact.shape, dtype=object)
    with mpmath.workdps(mr.DIGITS):
        g_ = mpmath.mpf(gamma)
        for i, y in enumerate(targets):
            row = [mpmath.mpf(v) for v in exact[i]]
            lse = mpmath.log(mpmath.fsum(mpmath.exp(v) for v in row))
            p = [mpmath.exp(v - lse) for v in row]
            ell = lse - row[y]
            u = -mpmath.expm1(-ell)
            factor = u**g_ + g_ * u ** (g_ - 1) * p[y] * ell
            for k in range(len(row)):
                reference[i, k] = factor * (p[k] - (1 if k == y else 0))
    return reference


# confident rows (p_y from 1 - 1e-4 to 1 - 1e-15): the loss behaves like (1 - p_y)^(1 + gamma),
# which multiplies each rounding of -log p_y and 1 - p_y by up to 1 + gamma (up to 8.8 ULP
# of float64 at gamma = 3 when 1 - p_y was derived from the rounded -log p_y)
CONFIDENT = np.array(
    [
        [0.08587192784299763, -0.06908383528466049, 22.22150431081025, -0.15439469256347926],
        [2.8835536755033195, -2.935220620681286, -1.9002017541296028, 33.87667310255696],
        [8.913576646009373, -0.09070391126915564, -0.020730221278550426, 0.028648830962854713],
        [-0.12497076456851303, 5.462903763805589, 1.9232532041227268, -1.6441277389105342],
        [-0.648721184746771, 26.15042917307774, -0.5116637290595857, -40.0],
        [8.704804493507433, -0.7652498774517218, 5.261761564189895, 0.0],
        [0.10669348670051791, 0.00476727312116796, 37.120248567459214, 0.03709468350944103],
    ]
)
CONFIDENT_TARGETS = np.argmax(CONFIDENT, axis=-1)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("gamma", [0.5, 1.0, 2.0, 3.0])
def test_softmax_focal_loss_and_gradient_on_confident_rows(dtype, gamma):
    z = CONFIDENT.astype(dtype)
    exact = _exact(z)
    loss = L.softmax_focal_loss(z, CONFIDENT_TARGETS, gamma=gamma, reduction="none")
    grad = L.softmax_focal_loss_grad(z, CONFIDENT_TARGETS, gamma=gamma, reduction="sum")
    assert loss.dtype == grad.dtype == dtype
    # float16 and float32 are rounded once from float64; float64 within the documented bound
    bound = 1.0 if dtype != np.float64 else 2.0 + 1.5 * (1 + gamma)
    reference = mr.softmax_focal_loss(exact, CONFIDENT_TARGETS, gamma)
    assert_close_to_exact(loss, reference, bound, f"softmax_focal_loss {dtype.__name__}")
    reference = _softmax_focal_grad_exact(exact, CONFIDENT_TARGETS, gamma)
    assert_close_to_exact(grad, reference, bound, f"softmax_focal_loss_grad {dtype.__name__}")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("gamma", [0.5, 2.0])
def test_sigmoid_focal_gradient(dtype, gamma):
    x = np.array([-1e4, -40, -1, 0, 0.01, 5, 40, 1e4], dtype)
    y = (np.arange(x.size) % 2).astype(dtype)
    grad = L.sigmoid_focal_loss_grad(x, y, gamma=gamma, reduction="sum")
    assert grad.dtype == dtype
    reference = mr.sigmoid_focal_loss_derivative(_exact(x), _exact(y), 0.25, gamma)
    bound = 1.0 if dtype != np.float64 else 2.0 + 1.5 * (1 + gamma)
    assert_close_to_exact(grad, reference, bound, f"sigmoid_focal_loss_grad {dtype.__name__}")


# --- soft targets near their optimum, infinite logits with soft targets ---------------------------


def _at_the_optimum(dtype, n=300):
    """Logits and soft targets y = sigma(x) rounded to ``dtype``, and y's two neighbours.

    There the gradient sigma(x) - y is a small difference of two nearly equal terms.
    """
    rng = np.random.default_rng(13)
    x = rng.uniform(-12 if dtype == np.float16 else -30, 12 if dtype == np.float16 else 30, n)
    x = x.astype(dtype)
    with mpmath.workdps(50):
        y = np.array([float(1 / (1 + mpmath.exp(-mpmath.mpf(float(v))))) for v in x]).astype(dtype)
    x = np.concatenate([x, x, x])
    y = np.concatenate([y, np.nextafter(y, dtype(0)), np.nextafter(y, dtype(1))])
    return x, y


def _slope_terms(x, y):
    """Exact (1 - y) sigma(x), y sigma(-x) and their difference, for the rounded inputs."""
    ex, ey = _exact(x), _exact(y)
    first, second, difference = (np.empty(x.shape, dtype=object) for _ in range(3))
    with mpmath.workdps(mr.DIGITS):
        for i in np.ndindex(x.shape):
            a, b = mpmath.mpf(ex[i]), mpmath.mpf(ey[i])
            first[i] = (1 - b) / (1 + mpmath.exp(-a))
            second[i] = b / (1 + mpmath.exp(a))
            difference[i] = first[i] - second[i]
    return first, second, difference


def _assert_slope_accurate(grad, x, y, scale, label):
    """Within the bound where the terms differ by 2^-55 of the larger or more; closer than that
    (y agrees with sigma(x) beyond twice the float64 precision), within 2^-103 of it."""
    first, second, difference = _slope_terms(x, y)
    dtype = grad.dtype.type
    larger = np.array(
        [max(a, b) for a, b in zip(first.ravel(), second.ravel(), strict=True)]
    ).reshape(x.shape)
    apart = np.array(
        [
            abs(d) >= mpmath.ldexp(m, -55)
            for d, m in zip(difference.ravel(), larger.ravel(), strict=True)
        ]
    ).reshape(x.shape)
    assert np.mean(apart) > 0.9  # the sweep is mostly of the contract's kind
    reference = difference * scale
    assert_close_to_exact(grad[apart], reference[apart], BOUND[dtype], label)
    for g, d, m in zip(grad[~apart], reference[~apart], larger[~apart], strict=True):
        assert abs(mpmath.mpf(float(g)) - d) <= mpmath.ldexp(m * scale, -103), label


@pytest.mark.parametrize("dtype", DTYPES)
def test_bce_with_logits_gradient_of_a_soft_target_near_its_optimum(dtype):
    # issue 8: sigma(x) - y cancels; each term's rounding was most of the difference
    x, y = _at_the_optimum(dtype)
    grad = L.binary_cross_entropy_with_logits_grad(x, y, reduction="none")
    assert grad.dtype == dtype
    _assert_slope_accurate(grad, x, y, 1, f"bce_with_logits_grad {dtype.__name__}")
    _, pair = L.binary_cross_entropy_with_logits_value_and_grad(x, y, reduction="none")
    np.testing.assert_array_equal(pair, grad)


@pytest.mark.parametrize("dtype", DTYPES)
def test_multilabel_soft_margin_gradient_of_a_soft_target_near_its_optimum(dtype):
    x, y = _at_the_optimum(dtype)
    x, y = x.reshape(-1, 4), y.reshape(-1, 4)
    grad = L.multilabel_soft_margin_loss_grad(x, y, reduction="sum")
    assert grad.dtype == dtype
    scale = mpmath.mpf(1) / 4
    _assert_slope_accurate(grad, x, y, scale, f"multilabel_soft_margin_grad {dtype.__name__}")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("gamma", [0.0, 0.5, 2.0])
@pytest.mark.parametrize("alpha", [None, 0.25])
def test_sigmoid_focal_loss_at_infinite_logits_with_soft_targets(dtype, gamma, alpha):
    # issue 8: no "invalid value" warning (warnings are errors here); the limits
    x = np.array([np.inf, -np.inf, np.inf, -np.inf, np.inf, -np.inf], dtype)
    y = np.array([0.5, 0.5, 0.25, 0.75, 1.0, 0.0], dtype)
    grad = L.sigmoid_focal_loss_grad(x, y, alpha=alpha, gamma=gamma, reduction="none")
    loss = L.sigmoid_focal_loss(x, y, alpha=alpha, gamma=gamma, reduction="none")
    assert grad.dtype == loss.dtype == dtype
    reference = np.empty(x.shape, dtype=object)
    with mpmath.workdps(50):
        for i, (xi, yi) in enumerate(zip(_exact(x), _exact(y), strict=True)):
            yi = mpmath.mpf(yi)
            a = 1 if alpha is None else mpmath.mpf(alpha) * yi + (1 - mpmath.mpf(alpha)) * (1 - yi)
            # x -> +inf: q -> 1 - y and the slope -> 1 - y; x -> -inf: q -> y, slope -> -y
            q = 1 - yi if xi > 0 else yi
            reference[i] = a * q**gamma * (q if xi > 0 else -q)
    assert_close_to_exact(grad, reference, BOUND[dtype], "sigmoid_focal_loss_grad at +-inf")
    # the cross-entropy of a soft target grows without bound; a hard one's tends to 0
    np.testing.assert_array_equal(loss, np.array([np.inf] * 4 + [0, 0], dtype))


@pytest.mark.parametrize("dtype", DTYPES)
def test_row_functions_at_the_overflow_threshold(dtype):
    # differences of logits near +-max overflow; no warning escapes, results are the limits
    big = np.finfo(dtype).max
    z = np.array([[big / 4, -big * 0.9, 1.0], [big, -big, 0.0], [-big, -big, -big]], dtype)
    y = np.array([1, 0, 2])
    p = L.softmax(z)
    np.testing.assert_array_equal(p[:2], [[1, 0, 0], [1, 0, 0]])
    np.testing.assert_allclose(p[2].astype(np.float64), 1 / 3, rtol=1e-3)
    assert L.log_softmax(z)[0, 1] == -np.inf and L.logsumexp(z)[1] == big
    loss, grad = L.cross_entropy_value_and_grad(z, y, reduction="none")
    assert loss[0] == np.inf and loss[1] == 0
    np.testing.assert_array_equal(grad[:2], [[1, -1, 0], [0, 0, 0]])
    for kwargs in ({"label_smoothing": 0.1}, {}):
        for target in (y, np.eye(3, dtype=dtype)):
            value, gradient = L.cross_entropy_value_and_grad(z, target, **kwargs)
            assert np.all(np.isfinite(gradient))
    assert np.all(np.isfinite(L.softmax_focal_loss_grad(z, y)))


@pytest.mark.parametrize(
    "dtype, huge, weight",
    [
        (np.float32, -1e37, [3, 1.5, 1, 0]),  # nothing overflows: the plain sums
        (np.float32, -3e38, [3, 1.5, 1, 0]),  # 3 x 3e38 overflows float32: the row summed scaled
        (np.float32, -3e38, None),  # four terms of 3e38: the sum overflows
        (np.float64, -1e306, [3, 1.5, 1, 0]),
        (np.float64, -1e308, [3, 1.5, 1, 0]),
        (np.float64, -1e308, None),
    ],
)
def test_multilabel_soft_margin_of_huge_terms_overflows_only_if_the_mean_does(dtype, huge, weight):
    # issue 8: a weight times a huge softplus, or the sum over the classes, overflowed before
    # the division by C; the zero weight masks an infinite term. With the weights, the third
    # row's loss is beyond float32 (5.5 x 3e38 / 4), the mean over the rows is not.
    x = np.array(
        [[huge, huge / 3, 0, np.inf], [0, 5, -7, 0], [huge] * 4],
        dtype,
    )
    y = np.array([[1, 1, 0, 0], [1, 0, 1, 1], [1, 1, 1, 0.5]], dtype)
    w = None if weight is None else np.array(weight, dtype)
    if w is None:
        x[0, 3] = 0  # (no weight to mask it)
    wm = np.ones(4) if w is None else _exact(w)
    xm, ym = _exact(x), _exact(y)
    with mpmath.workdps(mr.DIGITS):
        minus, plus = mr.softplus(-xm), mr.softplus(xm)
        per = []
        for i in range(len(x)):
            terms = [
                mpmath.mpf(wm[c]) * (ym[i, c] * minus[i, c] + (1 - ym[i, c]) * plus[i, c])
                for c in range(4)
                if wm[c] != 0
            ]
            per.append(mpmath.fsum(terms) / 4)
        mean = mpmath.fsum(per) / len(per)
    value = L.multilabel_soft_margin_loss(x, y, weight=w, reduction="none")
    assert value.dtype == dtype
    finite = np.array([p <= np.finfo(dtype).max for p in per])
    assert_close_to_exact(value[finite], np.array(per, dtype=object)[finite], BOUND[dtype])
    assert np.all(np.isinf(value[~finite]))
    for reduction in ("mean", "sum"):
        got, grad = L.multilabel_soft_margin_loss_value_and_grad(
            x, y, weight=w, reduction=reduction
        )
        exact = mean if reduction == "mean" else mean * len(per)
        if exact <= np.finfo(dtype).max:
            assert_close_to_exact(np.reshape(got, 1), [exact], BOUND[dtype], reduction)
        else:
            assert np.isinf(got)
        assert got == L.multilabel_soft_margin_loss(x, y, weight=w, reduction=reduction)


@pytest.mark.parametrize("dtype", [np.float32, np.float16])
def test_multilabel_soft_margin_weight_above_one_on_a_subnormal_loss(dtype):
    # issue 8: each term e^-x is subnormal in the dtype; a class weight above 1 lifted its
    # rounding error (float32, x = 98.77, weight 1000: 1.26117e-40 for 1.26689e-40)
    top = 103.0 if dtype == np.float32 else 17.0
    x = np.linspace(top - 16, top, 40).astype(dtype).reshape(10, 4)
    x[0, 0] = 98.77459716796875 if dtype == np.float32 else x[0, 0]
    y = np.ones_like(x)
    w = np.array([1000, 3, 2.0**11, 1.5], dtype)
    xm, wm = _exact(x), _exact(w)
    with mpmath.workdps(mr.DIGITS):
        minus = mr.softplus(-xm)  # the loss terms
        per = [
            mpmath.fsum(mpmath.mpf(wm[c]) * minus[i, c] for c in range(4)) / 4 for i in range(10)
        ]
        slope = [
            [-mpmath.mpf(wm[c]) / (1 + mpmath.exp(xm[i, c])) / 4 for c in range(4)]
            for i in range(10)
        ]
    for reduction, n in (("none", 1), ("sum", 1), ("mean", 10)):
        value, grad = L.multilabel_soft_margin_loss_value_and_grad(
            x, y, weight=w, reduction=reduction
        )
        assert value.dtype == grad.dtype == dtype
        exact = per if reduction == "none" else [mpmath.fsum(per) / n]
        assert_close_to_exact(np.reshape(value, -1), exact, BOUND[dtype], reduction)
        assert_close_to_exact(
            grad.reshape(-1), [s / n for row in slope for s in row], BOUND[dtype], reduction
        )


# --- a margin that is not a number of the working dtype -------------------------------------------


def _next_to(margin, dtype):
    """The scores of ``dtype`` on either side of ``margin`` (float32 for float16, its
    working dtype) and ``margin`` rounded: the gaps m - x there are the rounding error
    of the margin itself."""
    m = np.float32(margin) if dtype != np.float64 else np.float64(margin)
    near = [np.nextafter(m, m.dtype.type(-np.inf)), m, np.nextafter(m, m.dtype.type(np.inf))]
    return np.array(near).astype(dtype)


def _margin_cases(dtype, margin):
    """``(name, arguments, exact loss per element, exact derivatives per element)`` of the
    margin losses at scores next to ``margin`` (t = 1, or t = -1 for hinge embedding)."""
    m = mpmath.mpf(margin)
    x = _next_to(margin, dtype)
    xs = [mpmath.mpf(float(v)) for v in x]
    ones = np.ones(3, dtype)
    zeros = np.zeros(3, dtype)
    hinge = [max(m - v, 0) for v in xs]
    active = [1 if m - v > 0 else 0 for v in xs]  # the kink: 0 (relu's subgradient)
    touching = [1 if m - v >= 0 else 0 for v in xs]  # the kink: 1 (clamp_min's)
    return [
        ("hinge_loss", (x, ones), hinge, [[-a for a in active]]),
        ("squared_hinge_loss", (x, ones), [h * h for h in hinge], [[-2 * h for h in hinge]]),
        # -t (x1 - x2) + m with x1 = x, x2 = 0, t = 1
        (
            "margin_ranking_loss",
            (x, zeros, ones),
            hinge,
            [[-a for a in touching], [a for a in touching]],
        ),
        ("hinge_embedding_loss", (x, -ones), hinge, [[-a for a in touching]]),
        # rows [0, x] of class 1: the gap m + 0 - x; the rival gets +active, the target -active
        (
            "multiclass_hinge_loss",
            (np.stack([zeros, x], axis=1), [1, 1, 1]),
            hinge,
            [[[a, -a] for a in active]],
        ),
        # the same over C = 2 classes, p = 2: 2 hinge / C
        (
            "multi_margin_loss",
            (np.stack([zeros, x], axis=1), [1, 1, 1], 2),
            [h * h / 2 for h in hinge],
            [[[h, -h] for h in hinge]],
        ),
    ]


@pytest.mark.parametrize("margin", [0.1, -3.3, 1e-30, 1 / 3])
@pytest.mark.parametrize("dtype", DTYPES)
def test_a_margin_is_used_exactly_not_rounded_to_the_working_dtype(dtype, margin):
    """The gap m - t x of the given margin (a Python float): rounding 0.1 to float32 moved
    the kink by 1.5e-9 (the loss at x = float32(0.1) was 0 for 0.1 - x = -1.5e-9 and the
    margin ranking and hinge embedding gradients were active there; next to it the loss
    was 3e6 float32 ULP off)."""
    for name, args, exact, derivatives in _margin_cases(dtype, margin):
        value, grads = getattr(L, name + "_value_and_grad")(*args, margin=margin, reduction="none")
        assert value.dtype == dtype
        assert_close_to_exact(value, np.array(exact, dtype=object), BOUND[dtype], name)
        grads = grads if isinstance(grads, tuple) else (grads,)
        for grad, exact_grad in zip(grads, derivatives, strict=True):
            assert grad.dtype == dtype
            assert_close_to_exact(grad, np.array(exact_grad, dtype=object), BOUND[dtype], name)


@pytest.mark.parametrize("dtype", [np.float16, np.float32])
def test_a_margin_beyond_the_working_dtype_gives_the_limit_without_a_warning(dtype):
    # m - x = 1e300 overflows the dtype: inf (a warning is an error in the test suite)
    x = np.array([0.0, np.inf], dtype)
    ones = np.ones(2, dtype)
    for name, args in [
        ("hinge_loss", (x, ones)),
        ("squared_hinge_loss", (x, ones)),
        ("margin_ranking_loss", (x, np.zeros(2, dtype), ones)),
        ("hinge_embedding_loss", (x, -ones)),
    ]:
        value, _ = getattr(L, name + "_value_and_grad")(*args, margin=1e300, reduction="none")
        # 1e300 - inf = -inf: the hinge is 0 there
        assert value.tolist() == [np.inf, 0.0], name
    z = np.array([[0.0, 1.0], [0.0, np.inf]], dtype)
    for name in ["multi_margin_loss", "multiclass_hinge_loss"]:
        value = getattr(L, name)(z, [1, 0], margin=1e300, reduction="none")
        assert value.tolist() == [np.inf, np.inf], name


def _logistic_exact(x, t, base):
    """softplus(-t x) / ln b and -t sigma(-t x) / ln b of the rounded inputs."""
    lb = mpmath.log(mpmath.mpf(base))
    z = [-ti * mpmath.mpf(float(xi)) for xi, ti in zip(x, t, strict=True)]
    values = [mpmath.log1p(mpmath.exp(zi)) / lb for zi in z]
    slopes = [-ti / (1 + mpmath.exp(-zi)) / lb for zi, ti in zip(z, t, strict=True)]
    return np.array(values, dtype=object), np.array(slopes, dtype=object)


@pytest.mark.parametrize("base", [1.0000001, 0.9999999, 1.2, 2.0])
@pytest.mark.parametrize("dtype", [np.float16, np.float32])
def test_logistic_loss_with_a_base_near_1_in_float32(dtype, base):
    """softplus(-t x) below float32's normal range (t x beyond 87), divided by ln b: 1e7
    for b = 1 + 1e-7 lifted its subnormal rounding error to 5.6 ULP of the float32
    result (logistic_loss(np.float32([90.0]), np.float32([1]), base=1.0000001))."""
    x = np.array([86, 87.5, 90, 95, 100, 103, -90, 0.5, 60], dtype)
    t = np.array([1, 1, 1, 1, 1, 1, -1, 1, 1], dtype)
    value, grad = L.logistic_loss_value_and_grad(x, t, base=base, reduction="none")
    values, slopes = _logistic_exact(x, t, base)
    assert value.dtype == dtype and grad.dtype == dtype
    assert_close_to_exact(value, values, BOUND[dtype], "logistic_loss")
    assert_close_to_exact(grad, slopes, BOUND[dtype], "logistic_loss_grad")


@pytest.mark.parametrize("base", [1.0000001, 0.9999999, 1.2])
def test_logistic_loss_with_a_base_near_1_in_float64_keeps_its_stated_bound(base):
    """float64: softplus(-t x) below 2.2e-308 (t x beyond 708) divided by ln b keeps its
    subnormal rounding error lifted by 1 / |ln b|: within 4 ULP plus 4 2^-1074 / |ln b|,
    as the docstring states."""
    x = np.array([700.0, 708.5, 720, 740, 745, 1e4])
    t = np.ones(6)
    value, grad = L.logistic_loss_value_and_grad(x, t, base=base, reduction="none")
    values, slopes = _logistic_exact(x, t, base)
    slack = 4 * 2.0**-1074 / abs(float(mpmath.log(base)))
    for got, exact in ((value, values), (grad, slopes)):
        error = np.array([abs(mpmath.mpf(float(g)) - e) for g, e in zip(got, exact, strict=True)])
        ulps = np.array([np.spacing(abs(float(e))) for e in exact])
        assert np.all(error <= 4 * ulps + slack)


def test_multi_margin_loss_subnormal_times_a_weight_keeps_its_stated_bound():
    """float64: a per-sample loss below 2.2e-308 is rounded before a class weight above 1
    multiplies it (multi_margin_loss(np.float64([[5e-324, 0, -5e-324]]), [1], margin=0.0,
    weight=[0, 1e30, 1e-30]) is 0; exact 1.6e-294): within 4 w 2^-1074, as stated."""
    z = np.array([[5e-324, 0.0, -5e-324], [3e-310, 0.0, 1e-310], [1e-300, 0.0, 2.5e-308]])
    weight = np.array([1.0, 1e30, 2.0**40])
    target = [1, 1, 2]
    got = L.multi_margin_loss(z, target, margin=0.0, weight=weight, reduction="none")
    exact = mr.multi_margin_loss(z, target, 1, 0.0, weight)
    for g, e, y in zip(got, exact, target, strict=True):
        assert (
            abs(mpmath.mpf(float(g)) - e) <= 4 * np.spacing(float(e)) + 4 * weight[y] * 2.0**-1074
        )


# The worst float32 scores of a sweep over every float32 in [2^-20, 104] (target 1) against
# float64 references: NumPy's float32 exp and log1p (SIMD loops, up to 2.5 and 2 ULP off) put
# logistic_loss (base 2) 4.2 to 4.9 float32 ULP from the exact value (its gradient 4.2 to 4.4)
# and soft_margin_loss 3.1 to 3.3 (its gradient 3.5 to 3.6).
_FLOAT32_WORST = {
    "logistic_value": [0.97131985, 0.99641335, 1.0048649, 1.0105417, 1.0207454, 1.0211852]
    + [1.033968, 1.0241973, 0.98795927],
    "logistic_grad": [2.3771226, 2.388045, 2.4245536, 3.1016274, 3.1023989, 3.112961]
    + [3.1168399, 3.1105115],
    "soft_margin_value": [2.0168889, 2.0171683, 2.017185, 2.0188008, 2.022726, 2.0322187]
    + [2.0427408, 2.042401],
    "soft_margin_grad": [2.7084832, 2.709113, 3.4372215, 3.4480798, 3.4570289, 4.8455596]
    + [4.8483052, 4.8493114],
}


def _float32_neighbours(points, width):
    """Each float32 point and its ``width`` float32 neighbours on either side."""
    bits = np.asarray(points, np.float32).view(np.int32)
    steps = np.arange(-width, width + 1, dtype=np.int32)
    return np.unique((bits[:, None] + steps).ravel().view(np.float32))


@pytest.mark.parametrize("base", [2.0, np.e, None])
def test_float32_softplus_margin_is_rounded_once_from_float64(base):
    """logistic_loss and soft_margin_loss (base None) in float32: the exponential, log1p,
    sigmoid and the division by ln b are float64, each result rounded once (within one
    float32 ULP; it was 4.9 ULP for logistic_loss(np.float32([1.0241973]), [1]) and 3.6
    for soft_margin_loss_grad(np.float32([3.4570289]), [1])). Densely around the worst
    scores found, and through [-104, 104]."""
    worst = [v for key, values in _FLOAT32_WORST.items() for v in values]
    through = np.linspace(-104, 104, 1201)
    x = np.concatenate([_float32_neighbours(worst, 24), through.astype(np.float32)])
    x = np.concatenate([x, -x])
    t = np.where(np.arange(x.size) % 3 == 0, -1, 1).astype(np.float32)
    x = x * t  # every -t x above also with t = -1
    if base is None:
        value_and_grad = L.soft_margin_loss_value_and_grad
    else:
        value_and_grad = functools.partial(L.logistic_loss_value_and_grad, base=base)
    with mpmath.workdps(40):
        lb = 1 if base is None else mpmath.log(mpmath.mpf(base))
        z = [-float(ti) * mpmath.mpf(float(xi)) for xi, ti in zip(x, t, strict=True)]
        values = np.array([mpmath.log1p(mpmath.exp(zi)) / lb for zi in z], dtype=object)
        slopes = [-float(ti) / (1 + mpmath.exp(-zi)) / lb for zi, ti in zip(z, t, strict=True)]
        slopes = np.array(slopes, dtype=object)
        mean_slopes = np.array([s / x.size for s in slopes], dtype=object)
    value, grad = value_and_grad(x, t, reduction="none")
    assert value.dtype == grad.dtype == np.float32
    assert_close_to_exact(value, values, 1.0, "value")
    assert_close_to_exact(grad, slopes, 1.0, "gradient")
    _, grad = value_and_grad(x, t, reduction="mean")
    assert_close_to_exact(grad, mean_slopes, 1.0, "gradient of the mean")


@pytest.mark.parametrize("base", [2.0, None])
def test_float32_gradient_of_a_mean_is_rounded_once(base):
    """The mean's scale 1 / n is float32 after the kernel (1 / 1000003 is 2^-25 relative
    off there): the float64 slope carries the correction, so a float32 mean's gradient is
    rounded once from float64 too (it was up to 1.2 ULP off, now 0.5)."""
    rng = np.random.default_rng(11)
    n = 1_000_003
    x = rng.uniform(-20, 20, n).astype(np.float32)
    t = np.where(rng.random(n) < 0.5, -1, 1).astype(np.float32)
    if base is None:
        grad = L.soft_margin_loss_grad(x, t, reduction="mean")
    else:
        grad = L.logistic_loss_grad(x, t, base=base, reduction="mean")
    index = rng.choice(n, 3000, replace=False)
    with mpmath.workdps(40):
        lb = 1 if base is None else mpmath.log(mpmath.mpf(base))
        exact = [
            -float(t[i]) / (1 + mpmath.exp(mpmath.mpf(float(t[i])) * float(x[i]))) / lb / n
            for i in index
        ]
    assert_close_to_exact(grad[index], np.array(exact, dtype=object), 0.55, "mean gradient")


# The worst float32 logits of a sweep over every 7th float32 in [-104, 104] (target 0; the
# same with both signs flipped for target 1), rows of 3 equal logits: NumPy's float32 exp and
# log1p and the float32 division by C put multilabel_soft_margin_loss up to 4.0 float32 ULP
# from the exact value and its gradient 4.5 (-5.888388 is 4.57 ULP off).
_MULTILABEL_FLOAT32_WORST = [-2.0399859, -2.03686, -2.0630288, -2.04830384, -1.3796428]
_MULTILABEL_FLOAT32_WORST += [-7.963884, -12.122917, -6.56988, -10.019431, -5.8898945]
_MULTILABEL_FLOAT32_WORST += [-5.888388, -6.5450997, -6.5770497, -7.9255352]


@pytest.mark.parametrize("dtype", [np.float32, np.float16])
@pytest.mark.parametrize("targets", ["hard", "soft"])
@pytest.mark.parametrize("weight", [None, [0.75, 0.5, 1.0], [0.75, 1.5, 3.0]])
def test_multilabel_soft_margin_is_rounded_once_from_float64(dtype, targets, weight):
    """multilabel_soft_margin_loss in float32 and float16: the exponential, the logarithm,
    the sigmoid, the class weights and the division by C in float64, each result rounded
    once (float32 was up to 4.5 ULP off, its gradient 4.6 at x = -5.888388, y = 0, C = 3).
    Rows of three equal logits, densely around the worst ones found and through
    [-104, 104], both signs; every reduction, values and gradients; the "soft" rows hold
    targets 0, 1 and 0.3 (another evaluation, in float64 too). Class weights up to 1 (the
    previous code stayed in float32 with them) and above 1."""
    x = np.concatenate(
        [_float32_neighbours(_MULTILABEL_FLOAT32_WORST, 24), np.linspace(-104, 104, 1201)]
    )
    x = np.unique(np.concatenate([x, -x]).astype(dtype))
    n = 2 * x.size
    logits = np.repeat(np.concatenate([x, x])[:, None], 3, axis=1)
    if targets == "hard":
        y = np.repeat(np.repeat(np.array([0, 1], dtype), x.size)[:, None], 3, axis=1)
    else:
        y = np.broadcast_to(np.array([0, 1, 0.3], dtype), logits.shape)
    w = None if weight is None else np.array(weight, dtype)
    with mpmath.workdps(40):
        ws = [mpmath.mpf(1)] * 3 if w is None else [mpmath.mpf(float(v)) for v in w]
        rows, slopes = [], []
        for xi, yi in zip(logits[:, 0], y, strict=True):
            xm = mpmath.mpf(float(xi))
            minus, plus = mpmath.log1p(mpmath.exp(-xm)), mpmath.log1p(mpmath.exp(xm))
            sigma, rest = 1 / (1 + mpmath.exp(-xm)), 1 / (1 + mpmath.exp(xm))
            ys = [mpmath.mpf(float(v)) for v in yi]
            pairs = list(zip(ws, ys, strict=True))
            rows.append(sum(c * (v * minus + (1 - v) * plus) for c, v in pairs) / 3)
            # sigma(x) - y without the cancellation of a rounded sigma(x) near 1
            slopes.append([c * ((1 - v) * sigma - v * rest) / 3 for c, v in pairs])
        rows = np.array(rows, dtype=object)
        slopes = np.array(slopes, dtype=object)
        total = mpmath.fsum(rows)
    for reduction, exact_value, exact_grad in [
        ("none", rows, slopes),
        ("sum", total, slopes),
        ("mean", total / n, slopes / n),
    ]:
        value, grad = L.multilabel_soft_margin_loss_value_and_grad(logits, y, w, reduction)
        assert value.dtype == grad.dtype == dtype
        label = f"{dtype.__name__} {reduction}"
        assert_close_to_exact(value, exact_value, 0.51, f"value {label}")
        assert_close_to_exact(grad, exact_grad, 0.51, f"gradient {label}")
