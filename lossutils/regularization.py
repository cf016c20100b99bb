"""Weight penalties: the negative log of a prior on the parameters.

A Gaussian prior on the weights gives the L2 penalty (ridge, weight decay), a
Laplace prior the L1 penalty (lasso). ``params`` is one array or a list of
arrays (the layers of a model); the gradient has the same structure.
"""

from __future__ import annotations

import math

import numpy as np

from ._checks import as_float_array, check_positive_scalar, describe, result_dtype
from ._numerics import chunks, quiet, to_dtype, working_dtype
from ._reduction import total as reduction_total

__all__ = [
    "l2_penalty",
    "l2_penalty_grad",
    "l2_penalty_value_and_grad",
    "l1_penalty",
    "l1_penalty_grad",
    "l1_penalty_value_and_grad",
]


def _params(params):
    """``(arrays, is_list)``: the parameters as floating arrays, and whether a list was given."""
    if isinstance(params, np.ndarray):
        return [as_float_array(params, "params")], False
    if isinstance(params, list | tuple):
        for i, p in enumerate(params):
            if not isinstance(p, np.ndarray):
                raise ValueError(
                    f"params must be an array or a list of arrays; got a {type(params).__name__} "
                    f"whose item {i} is {describe(p)}"
                )
        return [as_float_array(p, f"params[{i}]") for i, p in enumerate(params)], True
    raise ValueError(f"params must be an array or a list of arrays; got {describe(params)}")


# Sums of |w|^power below this are recomputed scaled: their terms may have underflowed.
_SMALLEST_SAFE_TOTAL = 2.0**-900


def _sum_of_powers(p: np.ndarray, power: int) -> float:
    """``sum(|p|**power)`` (power 1 or 2) as a Python float.

    Summed as every loss's reduction is (``_reduction.total``): float16 entries raised
    to the power in float32 (exact) and float32 ones in float32. Where a float32
    square overflowed or the sum is so small that squares may have underflowed, the
    array is redone in float64, which holds every float32 square. float64 sums are
    taken as they are; :func:`_scaled_penalty` redoes the ones that overflow or
    underflow.
    """
    work = working_dtype(p.dtype)
    flat = p.reshape(-1)
    # block by block (no full-size array of terms), the block totals added in float64
    total = np.float64(0)
    for block in chunks(flat.size):
        w = flat[block].astype(work, copy=False)
        total += reduction_total(np.multiply(w, w) if power == 2 else np.abs(w))
    if work == np.float32 and not (2.0**-100 <= total < np.inf) and np.all(np.isfinite(p)):
        wide = p.astype(np.float64)
        total = np.sum(wide * wide if power == 2 else np.abs(wide))
    return float(total)


def _scaled_penalty(arrays, lam: float, power: int) -> float:
    """``lam * sum(|w|**power)`` with the largest ``|w|`` factored out as a power of 2.

    With ``m = 2**e`` the largest ``|w|`` rounded down to a power of 2, the
    scaled entries ``w / m`` are exact and at most 2 in magnitude, so their sum
    neither overflows nor loses the largest terms to underflow; the factors are
    put back with ``ldexp``, which rounds once, and the result overflows or
    underflows only where the exact one does.
    """
    top = max((float(np.max(np.abs(p), initial=0)) for p in arrays), default=0.0)
    if top == 0 or not math.isfinite(top):
        return lam * top
    _, e = math.frexp(top)
    scaled = sum(float(np.sum(np.abs(np.ldexp(p.astype(np.float64), -e)) ** power)) for p in arrays)
    lam_m, lam_e = math.frexp(lam)
    sum_m, sum_e = math.frexp(scaled)
    return float(np.ldexp(lam_m * sum_m, lam_e + sum_e + power * e))


@quiet
def _penalty(params, lam, power, *, value=True, grad=True):
    """``(penalty or None, gradient or None)``: the parameters are checked and converted once."""
    lam = check_positive_scalar(lam, "lam", allow_zero=True)
    arrays, is_list = _params(params)
    penalty = grads = None
    if value:
        penalty = _penalty_value(arrays, lam, power)
    if grad:
        grads = [_elementwise_grad(p, lam, power) for p in arrays]
        grads = grads if is_list else grads[0]
    return penalty, grads


def _penalty_value(arrays, lam: float, power: int):
    """``lam * sum(|w|**power)`` over the arrays, rounded once to their promoted dtype."""
    dtype = result_dtype(*arrays)
    if lam == 0:  # a zero weight masks its terms, also infinite or NaN ones
        return dtype.type(0)
    # one term per parameter array; a plain float64 sum (math.fsum raises on overflow)
    total = float(np.sum([_sum_of_powers(p, power) for p in arrays], dtype=np.float64))
    if math.isnan(total):
        value = np.float64(lam) * total
    elif total == math.inf or total < _SMALLEST_SAFE_TOTAL:
        value = _scaled_penalty(arrays, lam, power)
    else:
        value = np.float64(lam) * total
    return to_dtype(value, dtype)[()]


def _elementwise_grad(p: np.ndarray, lam: float, power: int) -> np.ndarray:
    """``lam * d|w|^power/dw`` rounded once to ``p``'s dtype.

    ``lam`` is used in float64 where the working dtype would round it to a
    subnormal or to 0, or overflow it (inf times a zero weight would be NaN);
    otherwise float16 is computed in float32.
    """
    if lam == 0:  # masked: 0 also where w is infinite or NaN
        return np.zeros(p.shape, dtype=p.dtype)
    work = working_dtype(p.dtype)
    if not np.finfo(work).tiny <= lam <= np.finfo(work).max:
        work = np.dtype(np.float64)
    w = p.astype(work, copy=False)
    if power == 1:
        grad = np.sign(w)
        grad *= work.type(lam)
    else:
        grad = w * work.type(lam)
        grad *= 2  # in place: one full-size array
    return to_dtype(grad, p.dtype)


def l2_penalty(params, lam):
    r"""L2 penalty :math:`\lambda \sum_i w_i^2` over an array or a list of arrays.

    The negative log of a zero-mean Gaussian prior on the weights, up to a
    constant, with :math:`\lambda = 1 / (2\sigma^2)`.

    Parameters
    ----------
    params : ndarray or list of ndarray
        The parameters :math:`w` (a list or tuple of arrays: the sum runs over all of them).
    lam : float
        The non-negative, finite strength :math:`\lambda`. ``lam = 0`` masks every term: the
        penalty and its gradient are 0 even for infinite or NaN parameters.

    Returns
    -------
    numpy scalar
        The penalty, in the promoted dtype of the parameters.

    Raises
    ------
    ValueError
        If ``params`` is not an array or a list or tuple of arrays, holds non-numeric
        data, or ``lam`` is not a non-negative finite number.

    Notes
    -----
    Accurate to a few ULP of the result's dtype: float16 parameters are squared and
    summed in float32, float32 ones in float64 where a float32 square would overflow
    or underflow, and where a float64 sum of squares would overflow or underflow the
    largest entry is factored out; so the penalty overflows only where its exact
    value does (``l2_penalty(np.float16([300.0]), 1e-4)`` is 9).
    Ridge regression :cite:p:`hoerl1970ridge`; weight decay
    :cite:p:`goodfellow2016deep` (section 7.1.1). Note the convention: some
    libraries use :math:`\tfrac{\lambda}{2} \sum w^2` (``optax.l2_loss`` of the
    weights is :math:`\tfrac12 w^2`); PyTorch's ``weight_decay=wd`` in SGD adds
    ``wd * w`` to the gradient, which is this penalty with ``lam = wd / 2``.

    Examples
    --------
    >>> float(l2_penalty([np.array([1.0, -2.0]), np.array([[3.0]])], lam=0.5))
    7.0
    """
    return _penalty(params, lam, 2, grad=False)[0]


def l2_penalty_grad(params, lam):
    r"""Gradient of :func:`l2_penalty`: :math:`2 \lambda w`, with the structure of ``params``.

    Parameters
    ----------
    params, lam
        As in :func:`l2_penalty`.

    Returns
    -------
    ndarray or list of ndarray
        An array for an array, a list of arrays (each with its parameter's
        shape and floating dtype) for a list or tuple.

    Raises
    ------
    ValueError
        If ``params`` is not an array or a list or tuple of arrays, holds non-numeric
        data, or ``lam`` is not a non-negative finite number.

    Notes
    -----
    See :cite:t:`goodfellow2016deep`, section 7.1.1.

    Examples
    --------
    >>> [g.tolist() for g in l2_penalty_grad([np.array([1.0, -2.0]), np.array([[3.0]])], 0.5)]
    [[1.0, -2.0], [[3.0]]]
    """
    return _penalty(params, lam, 2, value=False)[1]


def l2_penalty_value_and_grad(params, lam):
    r"""``l2_penalty`` and ``l2_penalty_grad`` in one pass: the penalty and its gradient.

    The parameters are checked and converted once.

    Parameters
    ----------
    params, lam
        Same as :func:`l2_penalty`.

    Returns
    -------
    tuple
        ``(penalty, gradient)``: bit for bit ``l2_penalty(...)`` and ``l2_penalty_grad(...)``
        (the gradient a list of arrays for a list or tuple of parameters).

    Raises
    ------
    ValueError
        As :func:`l2_penalty`.

    Examples
    --------
    >>> params = [np.array([1.0, -2.0]), np.array([[3.0]])]
    >>> value, grads = l2_penalty_value_and_grad(params, 0.5)
    >>> bool(value == l2_penalty(params, 0.5)), [g.tolist() for g in grads]
    (True, [[1.0, -2.0], [[3.0]]])
    """
    return _penalty(params, lam, 2)


def l1_penalty(params, lam):
    r"""L1 penalty :math:`\lambda \sum_i |w_i|` over an array or a list of arrays.

    The negative log of a zero-mean Laplace prior on the weights, up to a
    constant, with :math:`\lambda = 1 / b`.

    Parameters
    ----------
    params : ndarray or list of ndarray
        The parameters :math:`w` (a list or tuple of arrays: the sum runs over all of them).
    lam : float
        The non-negative, finite strength :math:`\lambda`. ``lam = 0`` masks every term: the
        penalty and its gradient are 0 even for infinite or NaN parameters.

    Returns
    -------
    numpy scalar
        The penalty, in the promoted dtype of the parameters.

    Raises
    ------
    ValueError
        If ``params`` is not an array or a list or tuple of arrays, holds non-numeric
        data, or ``lam`` is not a non-negative finite number.

    Notes
    -----
    The lasso :cite:p:`tibshirani1996regression`; PyTorch has no built-in
    (``lam * sum(p.abs().sum() for p in params)``). See also
    :cite:t:`goodfellow2016deep`, section 7.1.2.

    Examples
    --------
    >>> float(l1_penalty([np.array([1.0, -2.0]), np.array([[3.0]])], lam=0.5))
    3.0
    """
    return _penalty(params, lam, 1, grad=False)[0]


def l1_penalty_grad(params, lam):
    r"""Gradient of :func:`l1_penalty`: :math:`\lambda \operatorname{sign}(w)`.

    At :math:`w = 0` it is the subgradient 0, the value
    :math:`\operatorname{sign}(0) = 0` that PyTorch's autograd gives for ``abs``.

    Parameters
    ----------
    params, lam
        As in :func:`l1_penalty`.

    Returns
    -------
    ndarray or list of ndarray
        An array for an array, a list of arrays (each with its parameter's
        shape and floating dtype) for a list or tuple.

    Raises
    ------
    ValueError
        If ``params`` is not an array or a list or tuple of arrays, holds non-numeric
        data, or ``lam`` is not a non-negative finite number.

    Notes
    -----
    See :cite:t:`tibshirani1996regression`.

    Examples
    --------
    >>> l1_penalty_grad(np.array([1.5, 0.0, -2.0]), lam=0.5).tolist()
    [0.5, 0.0, -0.5]
    """
    return _penalty(params, lam, 1, value=False)[1]


def l1_penalty_value_and_grad(params, lam):
    r"""``l1_penalty`` and ``l1_penalty_grad`` in one pass: the penalty and its gradient.

    The parameters are checked and converted once.

    Parameters
    ----------
    params, lam
        Same as :func:`l1_penalty`.

    Returns
    -------
    tuple
        ``(penalty, gradient)``: bit for bit ``l1_penalty(...)`` and ``l1_penalty_grad(...)``
        (the gradient a list of arrays for a list or tuple of parameters).

    Raises
    ------
    ValueError
        As :func:`l1_penalty`.

    Examples
    --------
    >>> params = [np.array([1.0, -2.0]), np.array([[3.0]])]
    >>> value, grads = l1_penalty_value_and_grad(params, 0.5)
    >>> bool(value == l1_penalty(params, 0.5)), [g.tolist() for g in grads]
    (True, [[0.5, -0.5], [[0.5]]])
    """
    return _penalty(params, lam, 1)
