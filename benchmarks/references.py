"""High-precision mpmath references for every benchmarked function.

The activations and the softmax cross-entropy come from the test suite's
``tests/mp_reference.py`` (400 decimal digits); the losses it does not cover are
added here in the same style, each written in a form that cannot cancel at that
precision for any float64 input of the sweeps.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import mpmath
import numpy as np


def _load_test_references():
    path = Path(__file__).resolve().parent.parent / "tests" / "mp_reference.py"
    spec = importlib.util.spec_from_file_location("_mp_reference", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


_mp = _load_test_references()
DIGITS = _mp.DIGITS

softplus = _mp.softplus
log_sigmoid = _mp.log_sigmoid
logsumexp = _mp.logsumexp
log_softmax = _mp.log_softmax
cross_entropy = _mp.cross_entropy


def _softplus(v):
    return mpmath.log1p(mpmath.exp(v))


@_mp.elementwise
def binary_cross_entropy_with_logits(x, y):
    """y softplus(-x) + (1 - y) softplus(x): a sum of positive terms, no cancellation."""
    return y * _softplus(-x) + (1 - y) * _softplus(x)


@_mp.elementwise
def huber_loss(x, y):
    """PyTorch's Huber loss with ``delta = 1``."""
    d = abs(x - y)
    return d * d / 2 if d <= 1 else d - mpmath.mpf(1) / 2


@_mp.elementwise
def log_cosh_loss(x, y):
    """:math:`\\log\\cosh d` as :math:`\\operatorname{log1p}(2\\sinh^2(d/2))` for small ``|d|``.

    For large ``|d|`` it is :math:`|d| - \\log 2 + \\operatorname{log1p}(e^{-2|d|})`; the last
    term is dropped when it is below the 400 digits of ``|d|``.
    """
    d = abs(x - y)
    if d < 1:
        return mpmath.log1p(2 * mpmath.sinh(d / 2) ** 2)
    tail = mpmath.log1p(mpmath.exp(-2 * d)) if d < 2000 else 0
    return d - mpmath.log(2) + tail


@_mp.elementwise
def _gaussian_kl_terms(mu, logvar):
    # expm1(v) - v keeps at least 100 digits for |v| >= 1e-300 at 400 digits
    return (mu * mu + mpmath.expm1(logvar) - logvar) / 2


def gaussian_kl(mu, logvar):
    """KL(N(mu, e^logvar) || N(0, 1)) summed over the last axis, one mpmath number per row."""
    terms = _gaussian_kl_terms(mu, logvar)
    out = np.empty(terms.shape[:-1], dtype=object)
    with mpmath.workdps(_mp.DIGITS):
        for index in np.ndindex(out.shape):
            out[index] = mpmath.fsum(terms[index])
    return out
