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
