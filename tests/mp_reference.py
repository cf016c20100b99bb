"""High-precision references (mpmath) for the accuracy tests.

Each function takes float64 inputs, converts them exactly to mpmath numbers and
evaluates the textbook formula at 400 decimal digits, where it cannot cancel
for any float64 input the tests use. Results are mpmath numbers: compare them
with ``lossutils.testing.assert_ulp_close``.
"""

from __future__ import annotations

import mpmath
import numpy as np

DIGITS = 400


def mp(x) -> mpmath.mpf:
    """A float64 value as an exact mpmath number."""
    return mpmath.mpf(float(x))


def elementwise(f):
    """Lift a scalar mpmath function to an object array of mpmath numbers."""

    def lifted(*arrays):
        arrays = np.broadcast_arrays(*[np.asarray(a, dtype=np.float64) for a in arrays])
        out = np.empty(arrays[0].shape, dtype=object)
        with mpmath.workdps(DIGITS):
            for index in np.ndindex(out.shape):
                out[index] = f(*(mp(a[index]) for a in arrays))
        return out

    lifted.__name__ = f.__name__
    return lifted


@elementwise
def softplus(x):
    return mpmath.log1p(mpmath.exp(x))


@elementwise
def log_sigmoid(x):
    return -mpmath.log1p(mpmath.exp(-x))


@elementwise
def sigmoid(x):
    return 1 / (1 + mpmath.exp(-x))


def rows(f):
    """Lift a function of one row (a list of mpmath numbers) over the last axis."""

    def lifted(x, *extra):
        x = np.asarray(x, dtype=np.float64)
        out = np.empty(x.shape[:-1], dtype=object)
        with mpmath.workdps(DIGITS):
            for index in np.ndindex(out.shape):
                out[index] = f([mp(v) for v in x[index]], *(e[index] for e in extra))
        return out

    lifted.__name__ = f.__name__
    return lifted


@rows
def logsumexp(row):
    return mpmath.log(mpmath.fsum(mpmath.exp(v) for v in row))


def log_softmax(x, digits=DIGITS):
    """Reference log-softmax over the last axis (an object array of x's shape).

    ``digits`` may be lowered for wide rows: nothing cancels, so 30 digits are far more
    than a float64 comparison needs, and 100000 exponentials at 400 digits take minutes.
    """
    x = np.asarray(x, dtype=np.float64)
    out = np.empty(x.shape, dtype=object)
    with mpmath.workdps(digits):
        for index in np.ndindex(x.shape[:-1]):
            row = [mp(v) for v in x[index]]
            lse = mpmath.log(mpmath.fsum(mpmath.exp(v) for v in row))
            for k, v in enumerate(row):
                out[index + (k,)] = v - lse
    return out


def cross_entropy(logits, labels):
    """Reference -log softmax(z)_y for integer labels, per sample."""
    return rows(lambda row, y: mpmath.log(mpmath.fsum(mpmath.exp(v) for v in row)) - row[int(y)])(
        logits, np.asarray(labels)
    )


# --- binary losses: literal textbook / PyTorch / torchvision formulas ---------------------------
# Terms like 1 - sigmoid(x) cancel at large |x|, losing |x| / ln(10) < |x| / 2 digits: each
# element is evaluated with DIGITS + |x| / 2 decimal digits.


def adaptive(f):
    """Like ``elementwise``, but with enough digits for ``1 - sigmoid(x)`` at the given x."""

    def lifted(*arrays):
        arrays = np.broadcast_arrays(*[np.asarray(a, dtype=np.float64) for a in arrays])
        out = np.empty(arrays[0].shape, dtype=object)
        for index in np.ndindex(out.shape):
            values = [float(a[index]) for a in arrays]
            largest = max(abs(v) for v in values)
            # beyond 2.3e5 the 1e5 digits of the cap no longer resolve 1 - sigmoid(x) (it
            # needs 0.43 |x| digits): such elements are compared only where that term does
            # not count, and 1e5 digits there would cost seconds per element for nothing
            extra = int(min(largest, 2e5) / 2) if largest <= 2.3e5 else 0
            with mpmath.workdps(DIGITS + extra):
                out[index] = +f(*(mpmath.mpf(v) for v in values))
        return out

    lifted.__name__ = f.__name__
    return lifted


def _mp_sigmoid(x):
    return 1 / (1 + mpmath.exp(-x))


@elementwise
def binary_cross_entropy(p, y, w):
    """PyTorch: -w [y max(log p, -100) + (1 - y) max(log(1 - p), -100)]."""
    log_p = mpmath.log(p) if p > 0 else mpmath.mpf("-inf")
    log_q = mpmath.log(1 - p) if p < 1 else mpmath.mpf("-inf")
    return -w * (y * max(log_p, -100) + (1 - y) * max(log_q, -100))


@adaptive
def binary_cross_entropy_with_logits(x, y, w, pos_weight):
    """PyTorch: -w [pos_weight y log sigma(x) + (1 - y) log(1 - sigma(x))]."""
    s = _mp_sigmoid(x)
    return -w * (pos_weight * y * mpmath.log(s) + (1 - y) * mpmath.log(1 - s))


def sigmoid_focal_loss(x, y, alpha, gamma):
    """torchvision.ops.sigmoid_focal_loss, literally (alpha=None: no alpha_t factor)."""

    def focal(x, y):
        p = _mp_sigmoid(x)
        ce = -(y * mpmath.log(p) + (1 - y) * mpmath.log(1 - p))
        p_t = p * y + (1 - p) * (1 - y)
        loss = ce * (1 - p_t) ** mpmath.mpf(gamma)
        if alpha is not None:
            a = mpmath.mpf(alpha)
            loss = (a * y + (1 - a) * (1 - y)) * loss
        return loss

    return adaptive(focal)(x, y)


def sigmoid_focal_loss_derivative(x, y, alpha, gamma):
    """d/dx of the torchvision formula, by mpmath's numerical differentiation at high precision."""

    def derivative(x, y):
        def focal(z):
            p = _mp_sigmoid(z)
            ce = -(y * mpmath.log(p) + (1 - y) * mpmath.log(1 - p))
            loss = ce * (1 - (p * y + (1 - p) * (1 - y))) ** mpmath.mpf(gamma)
            if alpha is not None:
                a = mpmath.mpf(alpha)
                loss = (a * y + (1 - a) * (1 - y)) * loss
            return loss

        return mpmath.diff(focal, x)

    return adaptive(derivative)(x, y)


def hinge(x, t, margin):
    return elementwise(lambda x, t: max(mpmath.mpf(0), mpmath.mpf(margin) - t * x))(x, t)


def squared_hinge(x, t, margin):
    return elementwise(lambda x, t: max(mpmath.mpf(0), mpmath.mpf(margin) - t * x) ** 2)(x, t)


@elementwise
def square(x, t):
    return (1 - t * x) ** 2


def logistic(x, t, base):
    return adaptive(lambda x, t: mpmath.log(1 + mpmath.exp(-t * x)) / mpmath.log(base))(x, t)


# --- regression losses: the textbook formulas, exact residual x - y ----------------------------


def _digits_for(r):
    """Digits for log(cosh(r)): cosh(r) - 1 ~ r^2 / 2 must survive next to 1."""
    return DIGITS + (int(-2 * mpmath.log10(abs(r))) if 0 < abs(r) < 1 else 0)


def _residual_lifted(f):
    """Like ``elementwise``, with the precision raised for tiny residuals x - y."""

    def lifted(x, y, *extra):
        arrays = np.broadcast_arrays(*[np.asarray(a, dtype=np.float64) for a in (x, y, *extra)])
        out = np.empty(arrays[0].shape, dtype=object)
        for index in np.ndindex(out.shape):
            values = [mp(a[index]) for a in arrays]
            with mpmath.workdps(DIGITS):
                r = values[0] - values[1]  # exact: 400 digits hold any float64 difference
            with mpmath.workdps(_digits_for(r)):
                out[index] = +f(r, *values[2:])
        return out

    lifted.__name__ = f.__name__
    return lifted


@_residual_lifted
def mse(r):
    return r**2


@_residual_lifted
def l1(r):
    return abs(r)


@_residual_lifted
def huber(r, delta):
    return r**2 / 2 if abs(r) < delta else delta * (abs(r) - delta / 2)


@_residual_lifted
def smooth_l1(r, beta):
    return r**2 / (2 * beta) if abs(r) < beta else abs(r) - beta / 2


@_residual_lifted
def log_cosh(r):
    return mpmath.log(mpmath.cosh(r))


@_residual_lifted
def gaussian_nll(r, var, eps, full):
    v = max(var, eps)
    return (mpmath.log(v) + r**2 / v + (mpmath.log(2 * mpmath.pi) if full else 0)) / 2


@_residual_lifted
def laplace_nll(r, scale, eps, full):
    b = max(scale, eps)
    return mpmath.log(b) + abs(r) / b + (mpmath.log(2) if full else 0)


def _row_neg_log_softmax(row):
    """-log softmax of one row of mpmath numbers, as a list."""
    lse = mpmath.log(mpmath.fsum(mpmath.exp(v) for v in row))
    return [lse - v for v in row]


def smoothed_cross_entropy(logits, labels, weight, eps):
    """Per-sample (1 - eps) w_y (-log p_y) + eps/C sum_c w_c (-log p_c), exact eps and w."""
    weight = [mp(w) for w in np.asarray(weight, dtype=np.float64)]
    eps = mp(eps)

    def one(row, y):
        nl = _row_neg_log_softmax(row)
        smooth = mpmath.fsum(w * v for w, v in zip(weight, nl, strict=True)) / len(row)
        return (1 - eps) * weight[int(y)] * nl[int(y)] + eps * smooth

    return rows(one)(logits, np.asarray(labels))


def soft_cross_entropy(logits, probs, weight, eps):
    """Per-sample -sum_c w_c q_c log p_c with q = (1 - eps) t + eps / C, exact arithmetic."""
    weight = [mp(w) for w in np.asarray(weight, dtype=np.float64)]
    eps = mp(eps)
    probs = np.asarray(probs, dtype=np.float64)

    def one(row, t):
        nl = _row_neg_log_softmax(row)
        q = [(1 - eps) * mp(v) + eps / len(row) for v in t]
        return mpmath.fsum(w * qc * v for w, qc, v in zip(weight, q, nl, strict=True))

    x = np.asarray(logits, dtype=np.float64)
    out = np.empty(x.shape[:-1], dtype=object)
    with mpmath.workdps(DIGITS):
        for index in np.ndindex(out.shape):
            out[index] = one([mp(v) for v in x[index]], probs[index])
    return out


def softmax_focal_loss(logits, labels, gamma):
    """Per-sample -(1 - p_y)^gamma log p_y."""
    gamma = mp(gamma)

    def one(row, y):
        nl = _row_neg_log_softmax(row)[int(y)]
        return (-mpmath.expm1(-nl)) ** gamma * nl

    return rows(one)(logits, np.asarray(labels))


def multiclass_hinge_loss(logits, labels, margin):
    """Per-sample max(0, margin + max_{j != y} z_j - z_y) (0 with one class)."""
    margin = mp(margin)

    def one(row, y):
        rivals = [v for k, v in enumerate(row) if k != int(y)]
        if not rivals:
            return mpmath.mpf(0)
        return max(mpmath.mpf(0), margin + max(rivals) - row[int(y)])

    return rows(one)(logits, np.asarray(labels))


def multi_margin_loss(logits, labels, p, margin, weight):
    """Per-sample sum_{j != y} w_y max(0, margin - z_y + z_j)^p / C."""
    margin = mp(margin)
    weight = [mp(w) for w in np.asarray(weight, dtype=np.float64)]

    def one(row, y):
        y = int(y)
        terms = [max(mpmath.mpf(0), margin - row[y] + v) ** p for k, v in enumerate(row) if k != y]
        return weight[y] * mpmath.fsum(terms) / len(row)

    return rows(one)(logits, np.asarray(labels))


def softmax(x, digits=DIGITS):
    """Reference softmax over the last axis (an object array of x's shape)."""
    logp = log_softmax(x, digits)
    with mpmath.workdps(digits):
        return np.vectorize(lambda v: +mpmath.exp(v), otypes=[object])(logp)


def cross_entropy_grad_sum(logits, labels, digits=DIGITS):
    """d/dz of sum_i -log softmax(z_i)_{y_i}: softmax(z) - onehot(y)."""
    out = softmax(logits, digits)
    for i, y in enumerate(np.asarray(labels).reshape(-1)):
        index = np.unravel_index(i, out.shape[:-1]) + (int(y),)
        with mpmath.workdps(digits):
            out[index] = out[index] - 1
    return out


@adaptive
def binary_cross_entropy_with_logits_derivative(x, y):
    """d/dx of -[y log sigma(x) + (1 - y) log(1 - sigma(x))] = (1 - y) sigma(x) - y sigma(-x)."""
    return (1 - y) * _mp_sigmoid(x) - y * _mp_sigmoid(-x)


def logistic_derivative(x, t, base):
    """d/dx of log_b(1 + e^{-t x}) = -t sigma(-t x) / ln b."""
    return adaptive(lambda x, t: -t * _mp_sigmoid(-t * x) / mpmath.log(base))(x, t)


class WorstUlp:
    """The worst ULP error per name over a test module (printed by a fixture under ``-s``)."""

    def __init__(self):
        self.worst: dict[str, float] = {}

    def check(self, name, actual, reference, max_ulp=4.0):
        from lossutils.testing import assert_ulp_close

        found = assert_ulp_close(actual, reference, max_ulp, name)
        self.worst[name] = max(self.worst.get(name, 0.0), found)

    def __str__(self):
        return "worst ULP: " + ", ".join(f"{k} {v:.2f}" for k, v in sorted(self.worst.items()))


# --- regression, regularization, divergences, metric (below this line) ---


def ulp_in(actual, reference, dtype) -> np.ndarray:
    """``|actual - reference|`` in ULP of ``dtype`` (float16, float32 or float64).

    The unit is the spacing of ``dtype`` at the reference rounded to ``dtype``
    (the smallest subnormal's spacing below the normal range). A reference beyond
    ``dtype``'s largest number counts as that infinity. Equal infinities and
    NaN against NaN count as 0, NaN against a number as infinitely many.
    """
    dtype = np.dtype(dtype)
    actual = np.asarray(actual).astype(np.float64)
    reference = np.broadcast_to(np.asarray(reference, dtype=object), actual.shape)
    tiny = float(np.finfo(dtype).smallest_subnormal)
    out = np.empty(actual.shape, dtype=np.float64)
    with mpmath.workprec(2000), np.errstate(over="ignore"):
        for index in np.ndindex(actual.shape):
            a, r = float(actual[index]), mpmath.mpf(reference[index])
            rounded = float(np.float64(float(r)).astype(dtype)) if not mpmath.isnan(r) else np.nan
            if mpmath.isnan(r) or np.isnan(a):
                out[index] = 0.0 if (mpmath.isnan(r) and np.isnan(a)) else np.inf
            elif np.isinf(rounded) or np.isinf(a):
                out[index] = 0.0 if rounded == a else np.inf
            else:
                unit = max(float(np.spacing(np.abs(np.asarray(rounded, dtype=dtype)))), tiny)
                out[index] = float(abs(mpmath.mpf(a) - r) / unit)
    return out


def assert_ulp_in(actual, reference, dtype, max_ulp=4.0, label="") -> float:
    """Assert every entry is within ``max_ulp`` ULP of ``dtype``; return the worst."""
    errors = ulp_in(actual, reference, dtype)
    worst = float(np.max(errors)) if errors.size else 0.0
    if not worst <= max_ulp:
        index = np.unravel_index(int(np.argmax(errors)), errors.shape) if errors.ndim else ()
        raise AssertionError(
            f"{label + ': ' if label else ''}{worst:.3g} ULP of {np.dtype(dtype).name} > "
            f"{max_ulp} at index {index}: got {np.asarray(actual)[index]!r}, expected "
            f"{mpmath.nstr(np.asarray(reference, dtype=object)[index], 20)}"
        )
    return worst


def mp_sum(values) -> mpmath.mpf:
    """The exact sum of an object array of mpmath numbers (at the working precision)."""
    with mpmath.workdps(DIGITS):
        return mpmath.fsum(np.ravel(values).tolist())


def reduced(per, reduction, count=None):
    """A reduction of exact per-element values: the mean divides by ``count`` (default: all)."""
    if reduction == "none":
        return per
    total = mp_sum(per)
    if reduction == "sum":
        return total
    n = per.size if count is None else count
    with mpmath.workdps(DIGITS):
        return total / n if n else mpmath.nan


# gradients of the residual losses w.r.t. input, per element


@_residual_lifted
def mse_grad(r):
    return 2 * r


@_residual_lifted
def l1_grad(r):
    return mpmath.sign(r)


@_residual_lifted
def huber_grad(r, delta):
    return max(-delta, min(delta, r))


@_residual_lifted
def smooth_l1_grad(r, beta):
    return mpmath.sign(r) if beta == 0 else max(-beta, min(beta, r)) / beta


@_residual_lifted
def log_cosh_grad(r):
    return mpmath.tanh(r)


@_residual_lifted
def _gaussian_nll_d_input(r, var, eps):
    return r / max(var, eps)


@_residual_lifted
def _gaussian_nll_d_var(r, var, eps):
    v = max(var, eps)
    return (1 / v - r**2 / v**2) / 2


def gaussian_nll_grads(x, y, var, eps):
    """(d/dinput, d/dvar) per element, at the floored variance."""
    return _gaussian_nll_d_input(x, y, var, eps), _gaussian_nll_d_var(x, y, var, eps)


@_residual_lifted
def _laplace_nll_d_input(r, scale, eps):
    return mpmath.sign(r) / max(scale, eps)


@_residual_lifted
def _laplace_nll_d_scale(r, scale, eps):
    b = max(scale, eps)
    return 1 / b - abs(r) / b**2


def laplace_nll_grads(x, y, scale, eps):
    """(d/dinput, d/dscale) per element, at the floored scale."""
    return _laplace_nll_d_input(x, y, scale, eps), _laplace_nll_d_scale(x, y, scale, eps)


# penalties


def penalty(arrays, lam, power):
    """lam * sum |w|^power over a list of arrays, exact."""
    with mpmath.workdps(DIGITS):
        return mp(lam) * mpmath.fsum(
            abs(mp(v)) ** power for a in arrays for v in np.ravel(np.asarray(a, np.float64))
        )


# metric losses: exact distances of the given embeddings


def _mp_vectors(a):
    a = np.asarray(a, dtype=np.float64)
    return [[mp(v) for v in row] for row in a.reshape(-1, a.shape[-1])], a.shape[:-1]


def contrastive(x1, x2, target, margin):
    """Per pair y d^2 + (1 - y) max(0, m - d)^2, d the exact Euclidean distance."""
    with mpmath.workdps(DIGITS):
        u, shape = _mp_vectors(x1)
        v, _ = _mp_vectors(x2)
        y = np.ravel(np.asarray(target, dtype=np.float64))
        m = mp(margin)
        out = np.empty(len(u), dtype=object)
        for i, (a, b) in enumerate(zip(u, v, strict=True)):
            d2 = mpmath.fsum((s - t) ** 2 for s, t in zip(a, b, strict=True))
            hinge = max(mpmath.mpf(0), m - mpmath.sqrt(d2))
            out[i] = d2 if y[i] == 1 else hinge**2
        return out.reshape(shape)


def contrastive_grad(x1, x2, target, margin):
    """d/dx1 per pair: 2 y (x1 - x2) - 2 (1 - y) max(0, m - d) (x1 - x2) / d (0 at d = 0)."""
    with mpmath.workdps(DIGITS):
        u, shape = _mp_vectors(x1)
        v, _ = _mp_vectors(x2)
        y = np.ravel(np.asarray(target, dtype=np.float64))
        m = mp(margin)
        out = np.empty((len(u), len(u[0]) if u else 0), dtype=object)
        for i, (a, b) in enumerate(zip(u, v, strict=True)):
            diff = [s - t for s, t in zip(a, b, strict=True)]
            d = mpmath.sqrt(mpmath.fsum(e**2 for e in diff))
            for k, e in enumerate(diff):
                if y[i] == 1:
                    out[i, k] = 2 * e
                else:
                    out[i, k] = -2 * max(mpmath.mpf(0), m - d) * e / d if d > 0 else mpmath.mpf(0)
        return out.reshape(tuple(shape) + (out.shape[-1],))


def _pnorm_mp(diff, p):
    if p == 2:
        return mpmath.sqrt(mpmath.fsum(e**2 for e in diff))
    return mpmath.fsum(abs(e) ** p for e in diff) ** (1 / mpmath.mpf(p))


def triplet(anchor, positive, negative, margin, p, eps, swap, squared):
    """Per triplet max(0, d(a, p) - d(a, n) + m), PyTorch's d(x, y) = ||x - y + eps||_p."""
    with mpmath.workdps(DIGITS):
        a, shape = _mp_vectors(anchor)
        pos, _ = _mp_vectors(positive)
        neg, _ = _mp_vectors(negative)
        shift = mpmath.mpf(0) if squared else mp(eps)

        def dist(x, y):
            diff = [s - t + shift for s, t in zip(x, y, strict=True)]
            return mpmath.fsum(e**2 for e in diff) if squared else _pnorm_mp(diff, p)

        out = np.empty(len(a), dtype=object)
        for i in range(len(a)):
            d_an = dist(a[i], neg[i])
            if swap:
                d_an = min(d_an, dist(pos[i], neg[i]))
            out[i] = max(mpmath.mpf(0), dist(a[i], pos[i]) - d_an + mp(margin))
        return out.reshape(shape)


def _nt_xent_mp(z, n, temperature):
    """The 2n losses of mpmath rows z (F.normalize's floor 1e-12 included)."""
    floor = mp(1e-12)
    h = []
    for row in z:
        norm = max(mpmath.sqrt(mpmath.fsum(e**2 for e in row)), floor)
        h.append([e / norm for e in row])
    t = mp(temperature)
    m = 2 * n
    losses = []
    for i in range(m):
        s = [mpmath.fsum(a * b for a, b in zip(h[i], h[j], strict=True)) / t for j in range(m)]
        lse = mpmath.log(mpmath.fsum(mpmath.exp(s[j]) for j in range(m) if j != i))
        losses.append(lse - s[(i + n) % m])
    return losses


def nt_xent(z1, z2, temperature):
    """SimCLR's 2n losses, z1's views first, evaluated exactly."""
    with mpmath.workdps(DIGITS):
        z = [[mp(v) for v in row] for row in np.concatenate([z1, z2]).astype(np.float64)]
        out = np.empty(2 * len(z1), dtype=object)
        out[:] = _nt_xent_mp(z, len(z1), temperature)
        return out


def nt_xent_grad(z1, z2, temperature, reduction):
    """Gradient of the reduced loss w.r.t. [z1; z2], by mpmath's numerical differentiation."""
    n = len(z1)
    base = np.concatenate([z1, z2]).astype(np.float64)
    out = np.empty(base.shape, dtype=object)
    with mpmath.workdps(60):
        z = [[mp(v) for v in row] for row in base]
        for i, j in np.ndindex(base.shape):

            def f(x, i=i, j=j):
                rows = [list(r) for r in z]
                rows[i][j] = x
                total = mpmath.fsum(_nt_xent_mp(rows, n, temperature))
                return total / (2 * n) if reduction == "mean" else total

            out[i, j] = mpmath.diff(f, z[i][j])
    return out[:n], out[n:]


# divergences: the textbook formulas per distribution (last axis), exact


def _last_axis_rows(f, *arrays):
    arrays = [np.asarray(a, dtype=np.float64) for a in arrays]
    out = np.empty(arrays[0].shape[:-1], dtype=object)
    with mpmath.workdps(DIGITS):
        for index in np.ndindex(out.shape):
            out[index] = f(*([mp(v) for v in a[index]] for a in arrays))
    return out


def entropy(p):
    return _last_axis_rows(lambda p: -mpmath.fsum(a * mpmath.log(a) for a in p if a > 0), p)


def categorical_cross_entropy(p, q):
    def row(p, q):
        if any(a > 0 and b == 0 for a, b in zip(p, q, strict=True)):
            return mpmath.inf
        return -mpmath.fsum(a * mpmath.log(b) for a, b in zip(p, q, strict=True) if a > 0)

    return _last_axis_rows(row, p, q)


def kl_divergence(p, q):
    def row(p, q):
        if any(a > 0 and b == 0 for a, b in zip(p, q, strict=True)):
            return mpmath.inf
        return mpmath.fsum(a * mpmath.log(a / b) for a, b in zip(p, q, strict=True) if a > 0)

    return _last_axis_rows(row, p, q)


@elementwise
def neg_ratio(p, q):
    """d/dq of -p log q: -p / q (0 where p = 0)."""
    if p == 0:
        return mpmath.mpf(0)
    return -p / q if q != 0 else mpmath.mpf("-inf")


@elementwise
def kl_div_pointwise(x, t):
    """PyTorch's kl_div term t (log t - x), 0 where t = 0."""
    return mpmath.mpf(0) if t == 0 else t * (mpmath.log(t) - x)


def gaussian_kl(mu, logvar, mu_prior, logvar_prior):
    """sum over the last axis of (v0 - v + (e^v + (mu - mu0)^2) / e^v0 - 1) / 2."""

    def row(mu, lv, mu0, lv0):
        return mpmath.fsum(
            (b0 - b + (mpmath.exp(b) + (m - m0) ** 2) / mpmath.exp(b0) - 1) / 2
            for m, b, m0, b0 in zip(mu, lv, mu0, lv0, strict=True)
        )

    shape = np.shape(mu)
    return _last_axis_rows(
        row, mu, logvar, np.broadcast_to(mu_prior, shape), np.broadcast_to(logvar_prior, shape)
    )


def bce_with_logits_rows(x, z):
    """sum over the last axis of -[x log sigma(z) + (1 - x) log(1 - sigma(z))]."""

    def row(x, z):
        return mpmath.fsum(
            a * mpmath.log1p(mpmath.exp(-b)) + (1 - a) * mpmath.log1p(mpmath.exp(b))
            for a, b in zip(x, z, strict=True)
        )

    return _last_axis_rows(row, x, z)
