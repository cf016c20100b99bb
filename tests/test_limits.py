"""Scalar (0-d) input and the limits at infinite logits, with their right values.

The references come from mpmath or from the limit of the formula (derived in the
comment of each case), never from lossutils itself.
"""

from __future__ import annotations

import mpmath
import numpy as np
import pytest

import lossutils as L

inf = np.inf
REDUCTIONS = ["mean", "sum", "none"]
# 0-d arrays, NumPy scalars of both dtypes and Python floats
SCALARS = [np.array, np.float64, np.float32, float]


def _sig(x):
    return mpmath.mpf(1) / (1 + mpmath.exp(-mpmath.mpf(x)))


def _check(got, exact, dtype):
    got = np.asarray(got)
    assert got.shape == ()
    assert got.dtype == dtype
    tol = 4 * np.finfo(dtype).eps
    assert abs(float(got) - float(exact)) <= tol * max(abs(float(exact)), 1e-300)


# --- 0-d input -----------------------------------------------------------------------------------

# (function, arguments, exact loss, exact gradients: one per differentiable argument)
_SIG1 = _sig(1)
_DPO_MARGIN = mpmath.mpf("0.1")  # beta * ((1 - 0) - (0 - 0))
SCALAR_CASES = [
    # log(1 + e^-1); d/dx = sigma(1) - 1
    (L.binary_cross_entropy_with_logits, (1.0, 1.0), -mpmath.log(_SIG1), [_SIG1 - 1]),
    # alpha (1 - p)^2 (-log p) with p = sigma(1); d/dx of it
    (
        L.sigmoid_focal_loss,
        (1.0, 1.0),
        mpmath.mpf("0.25") * (1 - _SIG1) ** 2 * -mpmath.log(_SIG1),
        [mpmath.diff(lambda x: mpmath.mpf("0.25") * (1 - _sig(x)) ** 2 * -mpmath.log(_sig(x)), 1)],
    ),
    # -log sigma(1 - 0); d/d chosen = sigma(1) - 1, d/d rejected = 1 - sigma(1)
    (L.bradley_terry_loss, (1.0, 0.0), -mpmath.log(_SIG1), [_SIG1 - 1, 1 - _SIG1]),
    # -log sigma(0.1); d/d policy chosen = 0.1 (sigma(0.1) - 1), d/d policy rejected = -that
    (
        L.dpo_loss,
        (1.0, 0.0, 0.0, 0.0),
        -mpmath.log(_sig(_DPO_MARGIN)),
        [_DPO_MARGIN * (_sig(_DPO_MARGIN) - 1), -_DPO_MARGIN * (_sig(_DPO_MARGIN) - 1)],
    ),
]


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("convert", SCALARS, ids=lambda c: c.__name__)
@pytest.mark.parametrize("case", SCALAR_CASES, ids=lambda c: c[0].__name__)
def test_zero_dimensional_input(case, convert, reduction):
    f, args, loss, grads = case
    grad_f = getattr(L, f.__name__ + "_grad")
    dtype = np.float32 if convert is np.float32 else np.float64
    inputs = [convert(a) for a in args]
    _check(f(*inputs, reduction=reduction), loss, dtype)
    got = grad_f(*inputs, reduction=reduction)
    got = got if isinstance(got, tuple) else (got,)
    assert len(got) == len(grads)
    for g, exact in zip(got, grads, strict=True):
        _check(g, exact, dtype)
