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


def log_softmax(x):
    """Reference log-softmax over the last axis (an object array of x's shape)."""
    x = np.asarray(x, dtype=np.float64)
    out = np.empty(x.shape, dtype=object)
    with mpmath.workdps(DIGITS):
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
            extra = int(min(max(abs(v) for v in values), 2e5) / 2)
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
