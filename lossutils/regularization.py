"""Weight penalties: the negative log of a prior on the parameters.

A Gaussian prior on the weights gives the L2 penalty (ridge, weight decay), a
Laplace prior the L1 penalty (lasso). ``params`` is one array or a list of
arrays (the layers of a model); the gradient has the same structure.
"""

from __future__ import annotations

import numpy as np

from ._checks import as_float_array, check_positive_scalar, describe, result_dtype

__all__ = ["l2_penalty", "l2_penalty_grad", "l1_penalty", "l1_penalty_grad"]


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


def _penalty(params, lam, elementwise):
    lam = check_positive_scalar(lam, "lam", allow_zero=True)
    arrays, _ = _params(params)
    dtype = result_dtype(*arrays)
    total = dtype.type(0)
    for p in arrays:  # one term per parameter array, not per element
        total = total + np.sum(elementwise(p), dtype=dtype)
    return dtype.type(dtype.type(lam) * total)


def _penalty_grad(params, lam, elementwise):
    lam = check_positive_scalar(lam, "lam", allow_zero=True)
    arrays, is_list = _params(params)
    grads = [np.asarray(p.dtype.type(lam) * elementwise(p), dtype=p.dtype) for p in arrays]
    return grads if is_list else grads[0]


def l2_penalty(params, lam):
    r"""L2 penalty :math:`\lambda \sum_i w_i^2` over an array or a list of arrays.

    The negative log of a zero-mean Gaussian prior on the weights, up to a
    constant, with :math:`\lambda = 1 / (2\sigma^2)`.

    Parameters
    ----------
    params : ndarray or list of ndarray
        The parameters :math:`w` (a list or tuple of arrays: the sum runs over all of them).
    lam : float
        The non-negative, finite strength :math:`\lambda`.

    Returns
    -------
    numpy scalar
        The penalty, in the promoted dtype of the parameters.

    Notes
    -----
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
    return _penalty(params, lam, np.square)


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

    Notes
    -----
    See :cite:t:`goodfellow2016deep`, section 7.1.1.

    Examples
    --------
    >>> [g.tolist() for g in l2_penalty_grad([np.array([1.0, -2.0]), np.array([[3.0]])], 0.5)]
    [[1.0, -2.0], [[3.0]]]
    """
    return _penalty_grad(params, lam, lambda p: 2 * p)


def l1_penalty(params, lam):
    r"""L1 penalty :math:`\lambda \sum_i |w_i|` over an array or a list of arrays.

    The negative log of a zero-mean Laplace prior on the weights, up to a
    constant, with :math:`\lambda = 1 / b`.

    Parameters
    ----------
    params : ndarray or list of ndarray
        The parameters :math:`w` (a list or tuple of arrays: the sum runs over all of them).
    lam : float
        The non-negative, finite strength :math:`\lambda`.

    Returns
    -------
    numpy scalar
        The penalty, in the promoted dtype of the parameters.

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
    return _penalty(params, lam, np.abs)


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

    Notes
    -----
    See :cite:t:`tibshirani1996regression`.

    Examples
    --------
    >>> l1_penalty_grad(np.array([1.5, 0.0, -2.0]), lam=0.5).tolist()
    [0.5, 0.0, -0.5]
    """
    return _penalty_grad(params, lam, np.sign)
