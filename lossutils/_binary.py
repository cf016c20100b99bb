"""Binary classification losses: one Bernoulli or margin decision per output (private).

Labels are ``y`` in [0, 1] for the likelihood losses (cross-entropy, focal;
soft targets allowed) and ``t`` in {-1, +1} for the margin losses (hinge,
square, logistic, zero-one). Public as :mod:`lossutils.classification` and
``lossutils`` (this module is the implementation, not an import path).

Every loss is elementwise: ``input`` and ``target`` have the same shape, and
``X_grad`` returns the gradient of the reduced loss with respect to ``input``.
"""

from __future__ import annotations

import functools
import math
import threading
from dataclasses import dataclass

import numpy as np

from . import _numerics as nx
from ._checks import (
    check_broadcastable,
    check_finite_scalar,
    check_log_base,
    check_pm1_labels,
    check_positive_scalar,
    check_reduction,
    check_same_shape,
    check_unit_interval,
    check_unit_interval_scalar,
    float_arrays,
    gradients_in_argument_dtypes,
)
from ._reduction import (
    BlockReduction,
    product_row_means,
    reduce_to,
    scale_grad,
    scaled_shares,
    square_shares,
)
from ._signed import _BLOCK_BYTES, block_length, in_blocks

__all__ = [
    "binary_cross_entropy",
    "binary_cross_entropy_grad",
    "binary_cross_entropy_value_and_grad",
    "binary_cross_entropy_with_logits",
    "binary_cross_entropy_with_logits_grad",
    "binary_cross_entropy_with_logits_value_and_grad",
    "sigmoid_focal_loss",
    "sigmoid_focal_loss_grad",
    "sigmoid_focal_loss_value_and_grad",
    "hinge_loss",
    "hinge_loss_grad",
    "hinge_loss_value_and_grad",
    "squared_hinge_loss",
    "squared_hinge_loss_grad",
    "squared_hinge_loss_value_and_grad",
    "square_loss",
    "square_loss_grad",
    "square_loss_value_and_grad",
    "logistic_loss",
    "logistic_loss_grad",
    "logistic_loss_value_and_grad",
    "zero_one_loss",
]

# PyTorch clamps each log of binary_cross_entropy at this value.
_LOG_FLOOR = -100


# --- shared plumbing ------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Args:
    """Checked arguments of an elementwise binary loss.

    The arrays are in the working dtype (float32 for float16 input, see
    ``_numerics.working_dtype``); ``dtype`` is the dtype of the result.
    """

    x: np.ndarray  # input: probabilities, logits or scores
    y: np.ndarray  # target, same shape
    weight: np.ndarray | None  # broadcasts to x's shape
    pos_weight: np.ndarray | None  # broadcasts to x's shape
    dtype: np.dtype


def _arrays(input, target, reduction, weight=None, pos_weight=None) -> _Args:
    """Check the common arguments: one promoted dtype, same shapes, broadcastable weights."""
    check_reduction(reduction)
    named = {"input": input, "target": target, "weight": weight, "pos_weight": pos_weight}
    # only the weights are optional (a None input or target is refused by name below)
    named = {n: v for n, v in named.items() if v is not None or n in ("input", "target")}
    arrays = dict(zip(named, float_arrays(named), strict=True))
    x = arrays["input"]
    check_same_shape(x, arrays["target"], "input", "target")
    for name in ("weight", "pos_weight"):
        if name in arrays:
            check_broadcastable(arrays[name], x.shape, name, "input")
    work = nx.working_dtype(x.dtype)
    arrays = {name: a.astype(work, copy=False) for name, a in arrays.items()}
    return _Args(
        arrays["input"], arrays["target"], arrays.get("weight"), arrays.get("pos_weight"), x.dtype
    )


def _margin_arrays(input, target, reduction):
    """Arguments with labels in {-1, +1}, and the signed margin ``t * x`` (exact: t is +-1)."""
    args = _arrays(input, target, reduction)
    check_pm1_labels(args.y, "target")
    return args, args.y * args.x


def _weighted(value, weight):
    """``weight * value``; a zero weight masks its element (0, also where it is inf or NaN)."""
    return value if weight is None else nx.times(weight, value)


def _float64_needed(dtype, weights, largest, may_be_tiny) -> bool:
    """Whether a ``dtype`` (working) computation should detour through float64: float32
    weights above 1 (``weights``, None where absent) could lift a subnormal loss with its
    rounding error (``may_be_tiny()``: some unweighted loss may be below float32's normal
    range) or make a weighted loss overflow where the reduction of the exact ones does not
    (the weights' product times ``largest()``, a bound on the unweighted losses, beyond
    2^120); float64 holds every such product, rounded once to the output dtype. Other
    calls (the usual ones) stay in float32."""
    if dtype != np.float32:
        return False
    lift = 1.0
    for a in weights:
        if a is not None and a.size:
            lift *= _abs_max(a)
    with np.errstate(over="ignore", invalid="ignore"):
        return bool(lift > 1 and (lift * largest() > 2.0**120 or may_be_tiny()))


def _widened(args: _Args, largest, may_be_tiny) -> _Args:
    """``args`` in float64 where :func:`_float64_needed`."""
    if not _float64_needed(args.x.dtype, (args.weight, args.pos_weight), largest, may_be_tiny):
        return args
    return _Args(
        *(
            None if a is None else a.astype(np.float64)
            for a in (args.x, args.y, args.weight, args.pos_weight)
        ),
        args.dtype,
    )


def _abs_max(x):
    """The largest ``|x|`` (0 for no elements)."""
    return max(float(np.max(x)), -float(np.min(x))) if x.size else 0.0


def _logits_bounds(x):
    """``(largest, may_be_tiny)`` for :func:`_float64_needed` on logits ``x``, sharing one
    pass over ``x``: softplus(+-x) is at most ``|x| + log 2``, and may be subnormal in
    float32 (below e^-86) only beyond ``|x| = 86``."""
    top = functools.cache(lambda: _abs_max(x))
    return (lambda: top() + 1), (lambda: top() > 86)


def _tiny_positive(*arrays):
    """Whether an array has an entry in (0, 2^-100): a probability or target whose loss term
    may be subnormal in float32."""
    return any(np.any((a > 0) & (a < 2.0**-100)) for a in arrays)


def _finish(loss, reduction, args: _Args):
    """Reduce the per-element losses; the result is rounded once to the output dtype."""
    return reduce_to(loss, reduction, args.dtype)


def _rescaled_mean(terms, weight, dtype, scale=0, count=None):
    """``2**scale`` times the mean of ``weight * terms`` (float64, finite ``terms``) where the
    plain mean overflowed (or was NaN: products of both signs overflowed to inf and -inf):
    the products are summed scaled by a power of 2, so that the mean overflows only if its
    exact value does; rounded once to ``dtype``. ``count`` 1: the sum."""
    w = None if weight is None else np.broadcast_to(weight, terms.shape).reshape(1, -1)
    out = np.empty(1, np.float64)
    product_row_means(terms.reshape(1, -1), w, terms.size if count is None else count, out)
    with np.errstate(over="ignore"):
        return reduce_to(np.ldexp(out[0], scale), "sum", dtype)


def _mean_grad_in_range(d, local, weight, reduction, count):
    """``d``, the mean's gradient ``weight * local / count``, with each entry whose product
    ``weight * local`` overflowed (float64: a weight near the largest float) formed as
    ``(weight / count) * local``: infinite only if the exact entry is."""
    if reduction != "mean" or weight is None:
        return d
    over = np.isinf(d)
    if over.any():
        w = np.broadcast_to(weight, local.shape)
        with np.errstate(over="ignore", invalid="ignore"):
            d[over] = (w[over] / np.float64(count)) * local[over]
    return d


def _finish_grad(local, args: _Args, reduction, factor=1):
    """Scale the per-element derivative by d(reduced)/d(element); input's shape, output dtype.

    ``local`` is a new array of the callers (never an argument): one of the working dtype
    is scaled in place (bit for bit ``scale * local``), so that the gradient needs no
    second full-size array. A power-of-two ``factor`` of the derivative is applied last:
    the same bits, but a finite ``2 g / size`` survives where ``2 g`` would overflow.
    """
    own = isinstance(local, np.ndarray) and local.dtype == args.x.dtype and local.flags.writeable
    out = scale_grad(local, args.x.shape, reduction, args.dtype, in_place=own)
    if factor != 1:
        with np.errstate(over="ignore"):  # only where the exact gradient overflows
            out *= factor
    return out


# --- binary cross-entropy on probabilities -------------------------------------------------------


def _bce_arrays(input, target, weight, reduction):
    args = _arrays(input, target, reduction, weight=weight)
    # each log is at least -100
    args = _widened(args, lambda: 100.0, lambda: _tiny_positive(args.x, args.y))
    check_unit_interval(args.x, "input")
    check_unit_interval(args.y, "target")
    return args


def binary_cross_entropy(input, target, weight=None, reduction="mean"):
    r"""Binary cross-entropy between predicted probabilities and targets, PyTorch's clamped form.

    .. math::

        \ell(p, y) = -w \bigl[\, y \max(\log p, -100) + (1 - y) \max(\log(1 - p), -100) \bigr]

    The clamp at :math:`-100` keeps the loss finite for :math:`p \in \{0, 1\}`
    (``p=0`` with ``y=1`` gives 100, not infinity). :math:`\log(1-p)` is evaluated
    as ``log1p(-p)``, so a confident correct prediction near 0 keeps its digits.

    Parameters
    ----------
    input : array_like
        Predicted probabilities :math:`p \in [0, 1]`.
    target : array_like
        Targets :math:`y \in [0, 1]` (soft targets allowed), same shape as ``input``.
    weight : array_like, optional
        Rescaling weight :math:`w`, broadcast against ``input``.
    reduction : {"mean", "sum", "none"}
        ``"mean"`` averages over all elements (a plain mean, also with ``weight``).

    Returns
    -------
    ndarray or numpy scalar
        The per-element losses (``"none"``) or their reduction.

    Raises
    ------
    ValueError
        If ``reduction`` is unknown; if ``target`` does not have ``input``'s shape; if
        ``input`` or ``target`` has a value outside [0, 1]; if ``weight`` does not
        broadcast to ``input``'s shape.

    Notes
    -----
    Equivalent to ``torch.nn.functional.binary_cross_entropy``
    :cite:p:`paszke2019pytorch` (which also evaluates ``log1p(-p)`` and clamps each
    log at -100); optax has no probability-input form. The loss is the negative
    log-likelihood of a Bernoulli observation :cite:p:`goodfellow2016deep`.
    With logits, prefer :func:`binary_cross_entropy_with_logits`.

    Examples
    --------
    >>> binary_cross_entropy([0.9, 0.2, 0.0], [1.0, 0.0, 1.0], reduction="none").round(6).tolist()
    [0.105361, 0.223144, 100.0]
    """
    return _bce(input, target, weight, reduction, grad=False)[0]


@gradients_in_argument_dtypes("input")
def binary_cross_entropy_grad(input, target, weight=None, reduction="mean"):
    r"""Gradient of :func:`binary_cross_entropy` with respect to ``input``.

    The derivative of the clamped loss, term by term:

    .. math::

        \frac{\partial \ell}{\partial p} = w \Bigl[ -\frac{y}{p}\,
        \mathbb{1}[\log p \ge -100] + \frac{1 - y}{1 - p}\,
        \mathbb{1}[\log(1 - p) \ge -100] \Bigr]

    A term whose log is clamped contributes zero (as autograd through a clamp);
    at :math:`\log p = -100` exactly the gradient passes, as through
    ``torch.clamp_min``. Where neither clamp is active this equals
    :math:`w (p - y) / (p (1 - p))`.

    Parameters
    ----------
    input, target, weight, reduction
        As in :func:`binary_cross_entropy`.

    Returns
    -------
    ndarray
        :math:`\partial(\text{reduced loss}) / \partial p`, shape and dtype of ``input``.

    Raises
    ------
    ValueError
        As :func:`binary_cross_entropy` does, for the same arguments.

    Notes
    -----
    PyTorch's hand-written backward for ``binary_cross_entropy`` computes
    :math:`w (p - y) / \max(p (1 - p), 10^{-12})` instead :cite:p:`paszke2019pytorch`.
    Both agree wherever :math:`p (1 - p) \ge 10^{-12}`. Closer to 0 or 1 PyTorch's rule
    is not the derivative of its own loss (it caps the gradient at about
    :math:`10^{12}` where the loss still varies like :math:`-\log p`, and it is not
    zero where the clamp is active). Here the gradient is always the derivative of the
    loss that is computed, so it agrees with finite differences everywhere.

    Examples
    --------
    >>> binary_cross_entropy_grad([0.5, 0.2, 0.0], [1.0, 0.0, 1.0], reduction="sum").tolist()
    [-2.0, 1.25, 0.0]
    """
    return _bce(input, target, weight, reduction, value=False)[1]


@gradients_in_argument_dtypes("input")
def binary_cross_entropy_value_and_grad(input, target, weight=None, reduction="mean"):
    r"""``binary_cross_entropy`` and ``binary_cross_entropy_grad`` in one pass: the two logs
    are taken once.

    Parameters
    ----------
    input, target, weight, reduction
        Same as :func:`binary_cross_entropy`.

    Returns
    -------
    tuple
        ``(binary_cross_entropy(...), binary_cross_entropy_grad(...))``, bit for bit.

    Raises
    ------
    ValueError
        As :func:`binary_cross_entropy` does, for the same arguments.

    Examples
    --------
    >>> value, grad = binary_cross_entropy_value_and_grad([0.5, 0.2], [1.0, 0.0], reduction="sum")
    >>> float(value) == float(binary_cross_entropy([0.5, 0.2], [1.0, 0.0], reduction="sum"))
    True
    >>> grad.tolist()
    [-2.0, 1.25]
    """
    return _bce(input, target, weight, reduction)


# Elements per block of the binary cross-entropy on probabilities.
_BCE_BLOCK = nx.CHUNK


def _bce(input, target, weight, reduction, value=True, grad=True):
    """``(loss or None, gradient or None)`` of :func:`binary_cross_entropy`.

    Evaluated in blocks of ``_BCE_BLOCK`` elements (in the working dtype): each element's loss
    and gradient are the whole-array formulas', bit for bit; the mean is reduced block by
    block and the gradient written into its output, the only full-size arrays (and the
    weight, where it broadcasts).
    """
    args = _bce_arrays(input, target, weight, reduction)
    shape, n, work = args.x.shape, args.x.size, args.x.dtype
    xs, ys = args.x.reshape(-1), args.y.reshape(-1)
    ws = None if args.weight is None else np.broadcast_to(args.weight, shape).reshape(-1)
    total = BlockReduction(reduction, n, args.dtype) if value else None  # rounded once
    d = np.empty(n, args.dtype) if grad else None
    # np.maximum with an array is several times faster than with a scalar (the same values)
    floor = np.full(min(n, _BCE_BLOCK), _LOG_FLOOR, work)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        for block in nx.chunks(n, _BCE_BLOCK):
            p, y, w = xs[block], ys[block], None if ws is None else ws[block]
            log_p, log_q, not_y = np.log(p), np.log1p(-p), 1 - y
            if grad:
                # -y / p and (1 - y) / (1 - p), 0 where their log is clamped (a NaN input
                # is not clamped: it reaches the result); the clamp is rare (p = 1, or p
                # below e^-100), so it is looked for, not a where over the block
                local = np.divide(y, p)
                np.negative(local, out=local)
                d_neg = np.subtract(1, p)
                np.divide(not_y, d_neg, out=d_neg)
                for log, term in ((log_p, local), (log_q, d_neg)):
                    clamped = log < _LOG_FLOOR
                    if clamped.any():
                        term[clamped] = 0
                local += d_neg
                dw = scale_grad(_weighted(local, w), local.shape, reduction, args.dtype, count=n)
                d[block] = _mean_grad_in_range(dw, local, w, reduction, n)
            if value:
                f = floor[: p.size]
                np.maximum(log_p, f, out=log_p)
                log_p *= y
                np.maximum(log_q, f, out=log_q)
                log_q *= not_y
                log_p += log_q
                total.add(_weighted(np.negative(log_p, out=log_p), w), block)
    loss = d_out = None
    if value:
        loss = total.result(shape)
        # (float64 only; NaN also where weights of both signs made inf and -inf)
        if reduction != "none" and ws is not None and not np.isfinite(loss):
            plain = _bce(args.x, args.y, None, "none", grad=False)[0]  # each at most 100
            count = None if reduction == "mean" else 1
            loss = _rescaled_mean(plain, args.weight, args.dtype, count=count)
    if grad:
        d_out = d.reshape(shape)
    return loss, d_out


# --- binary cross-entropy on logits --------------------------------------------------------------


def _bce_logits_arrays(input, target, weight, pos_weight, reduction):
    """The arguments and ``c * y``, the coefficient of the positive term."""
    args = _arrays(input, target, reduction, weight=weight, pos_weight=pos_weight)
    args = _widened(args, *_logits_bounds(args.x))
    check_unit_interval(args.y, "target")
    return args, (args.y if args.pos_weight is None else nx.times(args.y, args.pos_weight))


def _bce_logits(x, y, cy):
    """``cy * (-log sigma(x)) + (1 - y) * (-log(1 - sigma(x)))``, two non-negative terms."""
    return _bce_logits_parts(x, y, cy, slope=False)[0]


def _bce_logits_slope(x, y, cy):
    """``(1 - y) * sigma(x) - cy * sigma(-x)``, the derivative of :func:`_bce_logits` in x."""
    return _bce_logits_parts(x, y, cy, value=False)[1]


def _bce_logits_parts(x, y, cy, value=True, slope=True):
    """``(_bce_logits, _bce_logits_slope)`` (each None unless asked for) from one ``exp``."""
    return nx.logistic_terms(x, y, cy, value, slope)


def binary_cross_entropy_with_logits(input, target, weight=None, pos_weight=None, reduction="mean"):
    r"""Binary cross-entropy on logits, with PyTorch's ``weight`` and ``pos_weight``.

    .. math::

        \ell(x, y) = -w \bigl[\, c\, y \log \sigma(x) + (1 - y) \log(1 - \sigma(x)) \bigr]
                   = w \bigl[\, c\, y \operatorname{softplus}(-x)
                     + (1 - y) \operatorname{softplus}(x) \bigr]

    with :math:`c` the ``pos_weight``. For non-negative weights both terms are
    non-negative, so the sum never cancels, and softplus neither overflows nor loses the
    digits of a tiny loss: logits of :math:`\pm 10^4` are exact.
    Where a weight or ``pos_weight`` above 1 meets a loss that may be subnormal in
    float32 (or a weighted loss that may overflow it), float32 and float16 are computed
    in float64 and rounded once, so such a weight never lifts a rounding error. In
    float64 a loss below 2.2e-308 times a weight above 1 (``weight`` times
    ``pos_weight`` on the positive term) is within :math:`4 w 2^{-1074}` of the exact
    value (its gradient likewise) instead of 4 ULP; a mean and its gradient overflow
    only if their exact values do.

    Parameters
    ----------
    input : array_like
        Logits :math:`x`.
    target : array_like
        Targets :math:`y \in [0, 1]` (soft targets allowed), same shape as ``input``.
    weight : array_like, optional
        Rescaling weight :math:`w`, broadcast against ``input``.
    pos_weight : array_like, optional
        Weight :math:`c` of the positive term, broadcast along the last axis (a
        vector of length ``input.shape[-1]``, or anything that broadcasts to ``input``).
    reduction : {"mean", "sum", "none"}
        ``"mean"`` averages over all elements (a plain mean, also with weights).

    Returns
    -------
    ndarray or numpy scalar
        The per-element losses (``"none"``) or their reduction.

    Raises
    ------
    ValueError
        If ``reduction`` is unknown; if an argument is not real numeric; if ``target`` does
        not have ``input``'s shape or has a value outside [0, 1]; if ``weight`` or
        ``pos_weight`` does not broadcast to ``input``'s shape.

    Notes
    -----
    Equivalent to ``torch.nn.functional.binary_cross_entropy_with_logits``
    :cite:p:`paszke2019pytorch`; without weights, ``optax.sigmoid_binary_cross_entropy``.
    The logistic-regression negative log-likelihood :cite:p:`goodfellow2016deep`.

    Examples
    --------
    >>> binary_cross_entropy_with_logits(
    ...     [2.0, -1.0, 1e4], [1.0, 0.0, 0.0], reduction="none").round(6).tolist()
    [0.126928, 0.313262, 10000.0]
    >>> float(binary_cross_entropy_with_logits([0.0], [1.0], pos_weight=[3.0]).round(6))
    2.079442
    """
    return _bce_with_logits(input, target, weight, pos_weight, reduction, grad=False)[0]


@gradients_in_argument_dtypes("input")
def binary_cross_entropy_with_logits_grad(
    input, target, weight=None, pos_weight=None, reduction="mean"
):
    r"""Gradient of :func:`binary_cross_entropy_with_logits` with respect to ``input``.

    .. math::

        \frac{\partial \ell}{\partial x} = w \bigl[ (1 - y)\, \sigma(x) - c\, y\, \sigma(-x) \bigr],

    which is the textbook :math:`w (\sigma(x) - y)` when :math:`c = 1`. The two-term
    form keeps full relative accuracy for a confident, correct prediction, where
    :math:`\sigma(x) - y` would round to 0. Where the two terms are within a factor 2 of
    each other (a soft target near its optimum :math:`y \approx \sigma(x)`, where they
    cancel), they are formed from a double-double :math:`e^{-|x|}`: each entry is within
    4 ULP of the exact value of the rounded inputs (1 ULP in float16), unless
    :math:`y` and :math:`\sigma(x)` agree beyond about 55 bits, where the error stays
    below :math:`2^{-103}` of the larger term (the pair is given with ``pos_weight``'s
    product :math:`c y` rounded once). In float64, an entry below 2.2e-308 times a
    weight above 1 is within :math:`4 w 2^{-1074}` instead, as for the loss.

    Parameters
    ----------
    input, target, weight, pos_weight, reduction
        As in :func:`binary_cross_entropy_with_logits`.

    Returns
    -------
    ndarray
        :math:`\partial(\text{reduced loss}) / \partial x`, shape and dtype of ``input``.

    Raises
    ------
    ValueError
        As :func:`binary_cross_entropy_with_logits` does, for the same arguments.

    Notes
    -----
    What autograd gives for ``torch.nn.functional.binary_cross_entropy_with_logits``
    :cite:p:`paszke2019pytorch`; see :cite:t:`goodfellow2016deep`, section 6.2.2.2.

    Examples
    --------
    >>> binary_cross_entropy_with_logits_grad(
    ...     [0.0, 40.0], [1.0, 1.0], reduction="none").tolist()
    [-0.5, -4.248354255291589e-18]
    """
    return _bce_with_logits(input, target, weight, pos_weight, reduction, value=False)[1]


@gradients_in_argument_dtypes("input")
def binary_cross_entropy_with_logits_value_and_grad(
    input, target, weight=None, pos_weight=None, reduction="mean"
):
    r"""``binary_cross_entropy_with_logits`` and ``binary_cross_entropy_with_logits_grad`` in
    one pass: the softplus and sigmoid pairs share one :math:`e^{-|x|}`.

    Parameters
    ----------
    input, target, weight, pos_weight, reduction
        Same as :func:`binary_cross_entropy_with_logits`.

    Returns
    -------
    tuple
        ``(binary_cross_entropy_with_logits(...), binary_cross_entropy_with_logits_grad(...))``,
        bit for bit.

    Raises
    ------
    ValueError
        As :func:`binary_cross_entropy_with_logits` does, for the same arguments.

    Examples
    --------
    >>> value, grad = binary_cross_entropy_with_logits_value_and_grad([0.0, 2.0], [1.0, 1.0])
    >>> value == binary_cross_entropy_with_logits([0.0, 2.0], [1.0, 1.0])
    np.True_
    >>> grad.round(6).tolist()
    [-0.25, -0.059601]
    """
    return _bce_with_logits(input, target, weight, pos_weight, reduction)


def _bce_with_logits(input, target, weight, pos_weight, reduction, value=True, grad=True):
    """``(loss or None, gradient or None)`` of :func:`binary_cross_entropy_with_logits`."""
    args, cy = _bce_logits_arrays(input, target, weight, pos_weight, reduction)
    if value and args.weight is None and reduction != "none":  # summed block by block
        reduced = BlockReduction(reduction, args.x.size, args.dtype)
        _, slope = nx.logistic_terms(args.x, args.y, cy, value, grad, consume=reduced.add)
        d = None if slope is None else _finish_grad(slope, args, reduction)
        return _logits_mean_in_range(args, reduction, reduced.result()), d
    terms, slope = _bce_logits_parts(args.x, args.y, cy, value, grad)
    loss = None if terms is None else _finish(_weighted(terms, args.weight), reduction, args)
    d = None
    if slope is not None:
        d = _finish_grad(_weighted(slope, args.weight), args, reduction)
        d = _mean_grad_in_range(d, slope, args.weight, reduction, slope.size)
    return _logits_mean_in_range(args, reduction, loss), d


def _logits_mean_in_range(args: _Args, reduction, loss):
    """``loss``, or where a weighted mean (or sum) overflowed though its exact value may be
    finite (float64: a weight or pos_weight near the largest float made a product overflow;
    NaN where products of both signs did), the mean again: the positive term's coefficient
    ``c y`` and the other term scaled by ``2**-s`` (``c <= 2**s``), the products with the
    weight summed scaled, times ``2**s``."""
    if reduction == "none" or loss is None or np.isfinite(loss):
        return loss
    if args.weight is None and args.pos_weight is None:
        return loss
    s = 0
    cy = args.y
    if args.pos_weight is not None:
        s = max(0, int(np.frexp(np.max(np.abs(args.pos_weight)))[1]))
        cy = nx.times(args.y, np.ldexp(args.pos_weight, -s))
    ones, zeros = np.ones_like(args.x), np.zeros_like(args.x)
    terms = nx.logistic_terms(args.x, ones, np.broadcast_to(cy, args.x.shape), True, False)[0]
    other = nx.logistic_terms(args.x, args.y, zeros, True, False)[0]
    terms += np.ldexp(other, -s)  # (an error below 2^-1074 2^s: far below the mean)
    count = None if reduction == "mean" else 1
    return _rescaled_mean(terms, args.weight, args.dtype, s, count)


# --- sigmoid focal loss --------------------------------------------------------------------------


def _focal_arrays(input, target, alpha, gamma, reduction):
    """Checked arguments (in the working dtype; the focal loss converts them to float64, its
    working dtype in every dtype, block by block), alpha (or None) and gamma."""
    args = _arrays(input, target, reduction)
    check_unit_interval(args.y, "target")
    if alpha is not None:
        alpha = check_unit_interval_scalar(alpha, "alpha")
    gamma = check_positive_scalar(gamma, "gamma", allow_zero=True)
    return args, alpha, gamma


def _alpha_t(alpha, y):
    """``alpha y + (1 - alpha)(1 - y)`` with one rounding where y is soft (both constants are
    exact for alpha in [1/4, 1] and for dyadic alpha such as 0.25); None without alpha."""
    return None if alpha is None else (1 - alpha) + (2 * alpha - 1) * y


def _focal_modulation(x, y, gamma):
    r"""``q**gamma`` with :math:`q = 1 - p_t = y \sigma(-x) + (1 - y) \sigma(x)`, in float64.

    For a hard label (``y`` 0 or 1), :math:`q = \sigma(u)` with :math:`u = (1 - 2y) x`, and
    ``q**gamma`` is :func:`lossutils._numerics.sigmoid_power` (within about
    :math:`1 + 0.4\gamma` ULP). For a soft label the sum of two non-negative terms
    never cancels; it is raised to the power (error about :math:`1.5\gamma` ULP), in log
    space where ``q`` underflows so that for ``gamma < 1`` it keeps its value.
    """
    if gamma == 0:
        return np.ones_like(x)
    hard = (y == 0) | (y == 1)
    # a soft label's 1 - 2y may be 0 next to an infinite logit: 0, not NaN (its u is unused)
    out = nx.sigmoid_power(nx.times(1 - 2 * y, x), gamma)
    if not np.all(hard | np.isnan(y)):
        soft = ~hard
        xs, ys = x[soft], y[soft]
        s_pos, s_neg = nx.sigmoid_pair(xs)
        q = nx.times(ys, s_neg) + nx.times(1 - ys, s_pos)
        # (gamma log q may overflow to -inf for a huge gamma: the power's limit 0)
        with np.errstate(divide="ignore", invalid="ignore", under="ignore", over="ignore"):
            log_q = np.logaddexp(
                np.log(ys) + nx.log_sigmoid(-xs), np.log1p(-ys) + nx.log_sigmoid(xs)
            )
            tiny = np.finfo(q.dtype).tiny
            out[soft] = np.where(q >= tiny, q**gamma, np.exp(gamma * log_q))
    return out


def sigmoid_focal_loss(input, target, alpha=0.25, gamma=2.0, reduction="mean"):
    r"""Sigmoid focal loss on logits (torchvision's formula).

    With :math:`p = \sigma(x)`, :math:`p_t = p y + (1 - p)(1 - y)` and
    :math:`\alpha_t = \alpha y + (1 - \alpha)(1 - y)`:

    .. math::

        \ell(x, y) = \alpha_t\, (1 - p_t)^{\gamma}\,
        \operatorname{BCE}_{\text{logits}}(x, y)

    The factor :math:`(1 - p_t)^\gamma` down-weights easy examples; ``gamma=0`` and
    ``alpha=None`` give :func:`binary_cross_entropy_with_logits`. Computed as
    :math:`1 - p_t = y\,\sigma(-x) + (1 - y)\,\sigma(x)` (no cancellation; for a
    hard label it is :math:`\sigma(-(2y - 1) x)`), in log space where it underflows.

    Parameters
    ----------
    input : array_like
        Logits :math:`x`.
    target : array_like
        Targets :math:`y \in [0, 1]`, same shape as ``input``.
    alpha : float in [0, 1] or None, optional
        Weight of the positive class; ``None`` disables the :math:`\alpha_t` factor.
    gamma : float, optional
        Focusing parameter :math:`\gamma \ge 0`.
    reduction : {"mean", "sum", "none"}

    Returns
    -------
    ndarray or numpy scalar
        The per-element losses (``"none"``) or their reduction.

    Raises
    ------
    ValueError
        If ``alpha`` is not None or a number in [0, 1]; if ``gamma`` is negative or not
        finite; if ``reduction`` is unknown; if ``target`` does not have ``input``'s
        shape or has a value outside [0, 1].

    Notes
    -----
    Equivalent to ``torchvision.ops.sigmoid_focal_loss`` (where a negative ``alpha``
    disables the weighting; here ``alpha=None`` does, and a negative ``alpha`` is an
    error) and ``optax.sigmoid_focal_loss``. Introduced by :cite:t:`lin2017focal`.
    Computed in float64 for every dtype, without a wider type: for hard labels the factor
    :math:`(1 - p_t)^\gamma = \sigma(u)^\gamma`, :math:`u = (1 - 2y) x`, is
    :math:`\exp(\gamma \log \sigma(u))` with the exponent carried to twice the
    precision, so the power does not multiply the error of :math:`\sigma(u)` by
    :math:`\gamma`. The float64 result is within about :math:`3 + 0.4\gamma` ULP of the
    exact value (soft labels: about :math:`2 + 1.5(1 + \gamma)`); float32 and float16
    results are rounded once from float64.

    Examples
    --------
    >>> sigmoid_focal_loss([2.0, -1.0], [1.0, 1.0], reduction="none").round(6).tolist()
    [0.000451, 0.175467]
    """
    return _focal(input, target, alpha, gamma, reduction, grad=False)[0]


@gradients_in_argument_dtypes("input")
def sigmoid_focal_loss_grad(input, target, alpha=0.25, gamma=2.0, reduction="mean"):
    r"""Gradient of :func:`sigmoid_focal_loss` with respect to ``input``.

    With :math:`q = 1 - p_t`, :math:`\mathrm{ce}` the cross-entropy and
    :math:`r = \sigma(x)\sigma(-x) / q = 1 / (1 + y e^{-x} + (1 - y) e^{x})`:

    .. math::

        \frac{\partial \ell}{\partial x} = \alpha_t\, q^{\gamma} \bigl[
        (1 - y)\sigma(x) - y\sigma(-x) + \gamma (1 - 2y)\, r\, \mathrm{ce} \bigr]

    The chain rule produces :math:`\gamma q^{\gamma - 1} \partial q / \partial x`,
    whose factor :math:`q^{\gamma - 1}` is singular as :math:`q \to 0` for
    :math:`\gamma < 1`; since :math:`\partial q / \partial x = (1 - 2y)\sigma(x)\sigma(-x)`,
    the singular factor cancels analytically into the bounded :math:`r \le 2`, so the
    gradient has no NaN or infinity for any :math:`\gamma \ge 0` and any logit.

    Parameters
    ----------
    input, target, alpha, gamma, reduction
        As in :func:`sigmoid_focal_loss`.

    Returns
    -------
    ndarray
        :math:`\partial(\text{reduced loss}) / \partial x`, shape and dtype of ``input``.

    Raises
    ------
    ValueError
        As :func:`sigmoid_focal_loss` does, for the same arguments.

    Notes
    -----
    What autograd gives for ``torchvision.ops.sigmoid_focal_loss`` where that is finite
    (autograd itself returns NaN at large margins for :math:`\gamma < 1`);
    :cite:t:`lin2017focal`, appendix.

    Examples
    --------
    >>> sigmoid_focal_loss_grad([2.0, -1.0], [1.0, 1.0], reduction="none").round(6).tolist()
    [-0.001218, -0.192059]
    """
    return _focal(input, target, alpha, gamma, reduction, value=False)[1]


@gradients_in_argument_dtypes("input")
def sigmoid_focal_loss_value_and_grad(input, target, alpha=0.25, gamma=2.0, reduction="mean"):
    r"""``sigmoid_focal_loss`` and ``sigmoid_focal_loss_grad`` in one pass: the cross-entropy
    and the modulating factor are computed once.

    Parameters
    ----------
    input, target, alpha, gamma, reduction
        Same as :func:`sigmoid_focal_loss`.

    Returns
    -------
    tuple
        ``(sigmoid_focal_loss(...), sigmoid_focal_loss_grad(...))``, bit for bit.

    Raises
    ------
    ValueError
        As :func:`sigmoid_focal_loss` does, for the same arguments.

    Examples
    --------
    >>> value, grad = sigmoid_focal_loss_value_and_grad([2.0, -1.0], [1.0, 1.0], reduction="none")
    >>> value.round(6).tolist(), grad.round(6).tolist()
    ([0.000451, 0.175467], [-0.001218, -0.192059])
    """
    return _focal(input, target, alpha, gamma, reduction)


# Elements per block of the focal loss: its float64 chain (the cross-entropy, the power, the
# gradient's factors) keeps about a dozen buffers alive at once, in the per-core cache.
_FOCAL_BLOCK = 1 << 13


def _focal(input, target, alpha, gamma, reduction, value=True, grad=True):
    """``(loss or None, gradient or None)`` of :func:`sigmoid_focal_loss`.

    Evaluated in float64 blocks of ``_FOCAL_BLOCK`` elements: each element's loss and
    gradient are what the whole-array formulas give, bit for bit; the mean is reduced block
    by block and the gradient written into its output, the only full-size arrays.
    """
    args, alpha, gamma = _focal_arrays(input, target, alpha, gamma, reduction)
    xs, ys = args.x.reshape(-1), args.y.reshape(-1)
    n = xs.size
    total = BlockReduction(reduction, n, args.dtype) if value else None  # rounded once
    d = np.empty(n, args.dtype) if grad else None
    narrow = args.dtype.itemsize < 8
    for block in nx.chunks(n, _FOCAL_BLOCK):
        x, y = xs[block].astype(np.float64), ys[block].astype(np.float64)
        parts = _focal_terms
        if narrow and np.all((y == 0) | (y == 1)):
            parts = _focal_terms_hard_plain
        terms, local = parts(x, y, _alpha_t(alpha, y), gamma, value, grad)
        if terms is not None:
            total.add(terms, block)
        if local is not None:
            d[block] = scale_grad(local, local.shape, reduction, args.dtype, count=n)
    loss = total.result(args.x.shape) if value else None
    return loss, (None if d is None else d.reshape(args.x.shape))


def _focal_terms_hard_plain(x, y, alpha_t, gamma, value, grad):
    """:func:`_focal_terms` of hard labels for a float32 or float16 result, in plain float64.

    With ``u = (1 - 2y) x`` the loss is ``alpha_t sigma(u)^gamma softplus(u)`` and its
    derivative in ``u`` is ``sigma(u)^gamma (sigma(u) + gamma sigma(-u) softplus(u))``: sums
    and products of positive terms, each within a few float64 ULP, and the power
    ``exp(gamma log sigma(u))`` whose exponent is off by at most ``(|gamma u| + gamma) 2^-52``
    absolute, below 2^-45 wherever the loss is in float32's range (``|gamma log sigma(u)|``
    <= 104 there). So the result is within about 2^-44 relative before its one rounding to
    float32: the double-double power of the float64 path is not needed.
    """
    sign = 1 - 2 * y
    u = sign * x
    zero = np.zeros_like(u)
    e = np.empty_like(u)
    nx._exp_minus_abs(u, e)
    log1p_e = np.log1p(e)
    ce = np.maximum(u, zero)
    ce += log1p_e  # softplus(u)
    power = np.ones_like(u)
    if gamma:
        np.minimum(u, zero, out=power)
        power -= log1p_e  # log sigma(u)
        with np.errstate(over="ignore"):  # gamma log sigma(u) = -inf: the power's limit 0
            power *= gamma
        np.exp(power, out=power)
    terms = local = None
    if value:
        terms = _weighted(power * ce, alpha_t)
    if grad:
        ope = e + 1
        s_pos, s_neg = np.empty_like(u), np.empty_like(u)
        nx._sigmoid_from(u, e, ope, s_pos)
        nx._sigmoid_from(u, e, ope, s_neg, negate=True)
        # sigma(-u) softplus(u) -> 0 as u -> inf (0 times inf at an infinite logit)
        local = nx.times(s_neg, ce)
        local *= gamma
        local += s_pos
        local *= power
        local *= sign
        local = _weighted(local, alpha_t)
    return terms, local


def _focal_terms(x, y, alpha_t, gamma, value, grad):
    """Per element (float64): ``(alpha_t q^gamma ce or None, its derivative in x or None)``."""
    ce, d_ce = _bce_logits_parts(x, y, y, value=True, slope=grad)
    modulation = _focal_modulation(x, y, gamma)
    terms = local = None
    if value:
        with np.errstate(invalid="ignore"):
            terms = ce * modulation
        # an infinite logit against a soft target: the cross-entropy is infinite and the
        # factor (1 - p_t)^gamma positive, however far it underflowed: the limit is inf
        terms = np.where((ce == np.inf) & (modulation == 0), np.inf, terms)
        terms = _weighted(terms, alpha_t)
    if grad:
        with np.errstate(over="ignore"):
            r = 1 / (1 + nx.times(y, np.exp(-x)) + nx.times(1 - y, np.exp(x)))
        # r -> 0 where ce -> inf (an infinite logit): r ce -> 0, the limit at large logits
        local = modulation * (d_ce + gamma * (1 - 2 * y) * nx.times(r, ce))
        local = _weighted(local, alpha_t)
    return terms, local


# --- margin losses, labels t in {-1, +1} ---------------------------------------------------------


def hinge_loss(input, target, margin=1.0, reduction="mean"):
    r"""Hinge loss of a score against labels in {-1, +1}.

    .. math::

        \ell(x, t) = \max(0,\ m - t x)

    Parameters
    ----------
    input : array_like
        Scores :math:`x` (real-valued decision values).
    target : array_like
        Labels :math:`t \in \{-1, +1\}`, same shape as ``input``.
    margin : float, optional
        The margin :math:`m`.
    reduction : {"mean", "sum", "none"}

    Returns
    -------
    ndarray or numpy scalar
        The per-element losses (``"none"``) or their reduction.

    Raises
    ------
    ValueError
        If ``margin`` is not a finite number; if ``reduction`` is unknown; if ``target``
        does not have ``input``'s shape or holds a label other than -1 and +1.

    Notes
    -----
    The soft-margin SVM loss :cite:p:`cortes1995support`, the tightest convex upper
    bound of the 0-1 loss :cite:p:`rosasco2004loss`. ``optax.hinge_loss`` (margin 1);
    in PyTorch, ``torch.relu(margin - t * x)``.

    Examples
    --------
    >>> hinge_loss([2.0, 0.5, -1.0], [1, 1, 1], reduction="none").tolist()
    [0.0, 0.5, 2.0]
    """
    return _hinge(input, target, margin, reduction, grad=False)[0]


@gradients_in_argument_dtypes("input")
def hinge_loss_grad(input, target, margin=1.0, reduction="mean"):
    r"""Gradient of :func:`hinge_loss` with respect to ``input``.

    .. math::

        \frac{\partial \ell}{\partial x} = -t\, \mathbb{1}[m - t x > 0]

    At the kink :math:`t x = m` the subgradient is 0: the derivative PyTorch's
    ``torch.relu`` (and ``multi_margin_loss``) uses at 0. (``torch.clamp_min(u, 0)``
    would pass the gradient there instead.)

    Parameters
    ----------
    input, target, margin, reduction
        As in :func:`hinge_loss`.

    Returns
    -------
    ndarray
        :math:`\partial(\text{reduced loss}) / \partial x`, shape and dtype of ``input``.

    Raises
    ------
    ValueError
        As :func:`hinge_loss` does, for the same arguments.

    Notes
    -----
    Autograd of ``torch.relu(margin - t * x)`` :cite:p:`paszke2019pytorch`;
    :cite:t:`cortes1995support`.

    Examples
    --------
    >>> hinge_loss_grad([2.0, 0.5, 1.0], [1, -1, 1], reduction="none").tolist()
    [0.0, 1.0, 0.0]
    """
    return _hinge(input, target, margin, reduction, value=False)[1]


@gradients_in_argument_dtypes("input")
def hinge_loss_value_and_grad(input, target, margin=1.0, reduction="mean"):
    r"""``hinge_loss`` and ``hinge_loss_grad`` in one pass: the gap :math:`m - t x` is formed
    once.

    Parameters
    ----------
    input, target, margin, reduction
        Same as :func:`hinge_loss`.

    Returns
    -------
    tuple
        ``(hinge_loss(...), hinge_loss_grad(...))``, bit for bit.

    Raises
    ------
    ValueError
        As :func:`hinge_loss` does, for the same arguments.

    Examples
    --------
    >>> value, grad = hinge_loss_value_and_grad([2.0, 0.5], [1, 1], reduction="none")
    >>> value.tolist(), grad.tolist()
    ([0.0, 0.5], [0.0, -1.0])
    """
    return _hinge(input, target, margin, reduction)


def _signed_args(input, target, reduction):
    """Input and labels (not yet in the working dtype, not yet checked to be +-1): the
    kernels of :func:`_signed.in_blocks` take them block by block."""
    check_reduction(reduction)
    x, t = float_arrays({"input": input, "target": target})
    check_same_shape(x, t, "input", "target")
    return x, t


def _hinge(input, target, margin, reduction, value=True, grad=True, squared=False):
    """``(loss or None, gradient or None)`` of :func:`hinge_loss` (or, ``squared``,
    :func:`squared_hinge_loss`)."""
    margin = check_finite_scalar(margin, "margin")
    x, t = _signed_args(input, target, reduction)
    work, m, lo = nx.margin_parts(x.dtype, margin)
    # (squared) a block whose -t max(gap, 0) holds an infinity; the gap m - t x overflows
    # only for a margin of at least half an ULP of the largest float (2^970 in float64)
    info = np.finfo(work)
    huge = squared and grad and abs(float(m)) >= 2.0 ** (info.maxexp - info.nmant - 2)
    overflowed = []

    def kernel(xb, labels):
        gap = np.multiply(labels, xb)  # t x: exact, t is +-1
        np.subtract(m, gap, out=gap)  # one rounding
        if lo:  # the margin's rounding error (0.1 in float32)
            gap += lo
        hinge = np.maximum(gap, 0, out=gap if not (grad and not squared) else None)
        values = None if not value else np.square(hinge) if squared else hinge
        # a mean whose hinges (a margin of 2^127 in float32) or squares overflowed
        shares = lambda count: _hinge_shares(xb, labels, margin, count, squared)  # noqa: E731
        if not grad:
            return values, None, shares
        # -t max(gap, 0) (times 2 later) or -t [gap > 0]; NaN where the gap is (where x is)
        if squared:
            local = np.multiply(labels, hinge)
            # (inf, or NaN: an overflowing gap among gaps of the other sign whose sum does)
            if huge and not overflowed and not np.isfinite(np.add.reduce(local)):
                overflowed.append(True)
        else:  # (np.heaviside is several times slower than a comparison)
            local = np.greater(gap, 0, out=gap)
            local *= labels
            if np.isnan(np.add.reduce(xb)):
                local[np.isnan(xb)] = np.nan
        return values, np.negative(local, out=local), shares

    loss, d = in_blocks(
        kernel, (x,), t, reduction, value=value, grad=grad, factor=2 if squared else 1, work=work
    )
    if overflowed:
        _squared_hinge_overflowed(x, t, margin, reduction, d[0])
    return loss, (None if d is None else d[0])


def _squared_hinge_overflowed(x, t, margin, reduction, d) -> None:
    """In place: the entries of the squared hinge's gradient ``d`` that are infinite though
    their input is finite, again in float64 from the inputs and the margin scaled by 1/4
    (exact): ``-2 t max(0, m - t x)`` times the mean's ``1/n`` overflows only where it
    does, not where the gap ``m - t x`` did (a margin of 1e300 and an input of the
    largest float64, or of 1e38 and the largest float32: ``2 gap / n`` is finite for
    ``n >= 3``)."""
    with np.errstate(invalid="ignore"):
        redo = np.flatnonzero(np.isinf(d) & np.isfinite(x.reshape(-1)))
    if not redo.size:
        return
    xr, tr = x.reshape(-1)[redo].astype(np.float64), t.reshape(-1)[redo].astype(np.float64)
    scale = 2.0 / x.size if reduction == "mean" else 2.0
    with np.errstate(over="ignore", under="ignore"):
        quarter = np.maximum(np.float64(margin) * 0.25 - tr * (xr * 0.25), 0)
        d.reshape(-1)[redo] = nx.to_dtype(np.ldexp(-tr * (quarter * scale), 2), d.dtype)


def _hinge_shares(xb, labels, m, count, squared):
    """A block's share of a mean whose values overflowed: the hinges ``max(0, m - t x)``
    (squared) summed without overflow (:func:`~lossutils._reduction.square_shares`,
    :func:`~lossutils._reduction.scaled_shares`), formed in float64."""
    if squared:
        return square_shares(np.maximum(np.float64(m) - labels * xb.astype(np.float64), 0), count)
    wide = xb.astype(np.float64)
    return scaled_shares(lambda s: np.maximum(np.float64(m) * s - labels * (wide * s), 0), count)


def squared_hinge_loss(input, target, margin=1.0, reduction="mean"):
    r"""Squared hinge loss against labels in {-1, +1}.

    .. math::

        \ell(x, t) = \max(0,\ m - t x)^2

    Differentiable everywhere, unlike :func:`hinge_loss`.

    Parameters
    ----------
    input : array_like
        Scores :math:`x`.
    target : array_like
        Labels :math:`t \in \{-1, +1\}`, same shape as ``input``.
    margin : float, optional
        The margin :math:`m`.
    reduction : {"mean", "sum", "none"}

    Returns
    -------
    ndarray or numpy scalar
        The per-element losses (``"none"``) or their reduction.

    Raises
    ------
    ValueError
        If ``margin`` is not a finite number; if ``reduction`` is unknown; if ``target``
        does not have ``input``'s shape or holds a label other than -1 and +1.

    Notes
    -----
    The L2-SVM loss; in PyTorch ``torch.relu(margin - t * x) ** 2``. Compared with
    other classification losses by :cite:t:`janocha2017loss`.

    Examples
    --------
    >>> squared_hinge_loss([2.0, 0.5, -1.0], [1, 1, 1], reduction="none").tolist()
    [0.0, 0.25, 4.0]
    """
    return _hinge(input, target, margin, reduction, grad=False, squared=True)[0]


@gradients_in_argument_dtypes("input")
def squared_hinge_loss_grad(input, target, margin=1.0, reduction="mean"):
    r"""Gradient of :func:`squared_hinge_loss` with respect to ``input``.

    .. math::

        \frac{\partial \ell}{\partial x} = -2 t \max(0,\ m - t x)

    Continuous: 0 at the kink, whichever subgradient convention is used.

    Parameters
    ----------
    input, target, margin, reduction
        As in :func:`squared_hinge_loss`.

    Returns
    -------
    ndarray
        :math:`\partial(\text{reduced loss}) / \partial x`, shape and dtype of ``input``.

    Raises
    ------
    ValueError
        As :func:`squared_hinge_loss` does, for the same arguments.

    Notes
    -----
    Autograd of ``torch.relu(margin - t * x) ** 2`` :cite:p:`paszke2019pytorch`;
    :cite:t:`janocha2017loss`.

    Examples
    --------
    >>> squared_hinge_loss_grad([2.0, 0.5, -1.0], [1, 1, 1], reduction="none").tolist()
    [0.0, -1.0, -4.0]
    """
    return _hinge(input, target, margin, reduction, value=False, squared=True)[1]


@gradients_in_argument_dtypes("input")
def squared_hinge_loss_value_and_grad(input, target, margin=1.0, reduction="mean"):
    r"""``squared_hinge_loss`` and ``squared_hinge_loss_grad`` in one pass: the gap
    :math:`m - t x` is formed once.

    Parameters
    ----------
    input, target, margin, reduction
        Same as :func:`squared_hinge_loss`.

    Returns
    -------
    tuple
        ``(squared_hinge_loss(...), squared_hinge_loss_grad(...))``, bit for bit.

    Raises
    ------
    ValueError
        As :func:`squared_hinge_loss` does, for the same arguments.

    Examples
    --------
    >>> value, grad = squared_hinge_loss_value_and_grad([2.0, 0.5], [1, 1], reduction="none")
    >>> value.tolist(), grad.tolist()
    ([0.0, 0.25], [0.0, -1.0])
    """
    return _hinge(input, target, margin, reduction, squared=True)


def square_loss(input, target, reduction="mean"):
    r"""Square loss of a score against labels in {-1, +1}.

    .. math::

        \ell(x, t) = (1 - t x)^2

    Since :math:`t^2 = 1` this is :math:`(t - x)^2`, least squares on the labels;
    it also penalises confident correct scores :math:`t x > 1`.

    Parameters
    ----------
    input : array_like
        Scores :math:`x`.
    target : array_like
        Labels :math:`t \in \{-1, +1\}`, same shape as ``input``.
    reduction : {"mean", "sum", "none"}

    Returns
    -------
    ndarray or numpy scalar
        The per-element losses (``"none"``) or their reduction.

    Raises
    ------
    ValueError
        If ``reduction`` is unknown; if ``target`` does not have ``input``'s shape or
        holds a label other than -1 and +1.

    Notes
    -----
    ``torch.nn.functional.mse_loss(x, t)`` or ``optax.squared_error(x, t)`` on
    :math:`\pm 1` labels; a classification-calibrated margin loss
    :cite:p:`bartlett2006convexity`, :cite:p:`rosasco2004loss`.

    Examples
    --------
    >>> square_loss([2.0, 0.5, -1.0], [1, 1, 1], reduction="none").tolist()
    [1.0, 0.25, 4.0]
    """
    return _square(input, target, reduction, grad=False)[0]


@gradients_in_argument_dtypes("input")
def square_loss_grad(input, target, reduction="mean"):
    r"""Gradient of :func:`square_loss` with respect to ``input``.

    .. math::

        \frac{\partial \ell}{\partial x} = -2 t (1 - t x)

    Parameters
    ----------
    input, target, reduction
        As in :func:`square_loss`.

    Returns
    -------
    ndarray
        :math:`\partial(\text{reduced loss}) / \partial x`, shape and dtype of ``input``.

    Raises
    ------
    ValueError
        As :func:`square_loss` does, for the same arguments.

    Notes
    -----
    Autograd of ``mse_loss(x, t)`` :cite:p:`paszke2019pytorch`;
    :cite:t:`bartlett2006convexity`.

    Examples
    --------
    >>> square_loss_grad([2.0, 0.5, -1.0], [1, 1, 1], reduction="none").tolist()
    [2.0, -1.0, -4.0]
    """
    return _square(input, target, reduction, value=False)[1]


@gradients_in_argument_dtypes("input")
def square_loss_value_and_grad(input, target, reduction="mean"):
    r"""``square_loss`` and ``square_loss_grad`` in one pass: :math:`1 - t x` is formed once.

    Parameters
    ----------
    input, target, reduction
        Same as :func:`square_loss`.

    Returns
    -------
    tuple
        ``(square_loss(...), square_loss_grad(...))``, bit for bit.

    Raises
    ------
    ValueError
        As :func:`square_loss` does, for the same arguments.

    Examples
    --------
    >>> value, grad = square_loss_value_and_grad([2.0, 0.5], [1, 1], reduction="none")
    >>> value.tolist(), grad.tolist()
    ([1.0, 0.25], [2.0, -1.0])
    """
    return _square(input, target, reduction)


def _square(input, target, reduction, value=True, grad=True):
    """``(loss or None, gradient or None)`` of :func:`square_loss`."""
    x, t = _signed_args(input, target, reduction)

    def kernel(xb, labels, out):
        # t = +-1: t (1 - t x) = t - x and (1 - t x)^2 = (x - t)^2, bit for bit (a product
        # with +-1 is exact and commutes with rounding); -t (1 - t x) = x - t is +0, not -0
        values, local = out
        gap = np.subtract(xb, labels, out=values if local is None else local)
        if values is not None:
            np.square(gap, out=values)
        # a mean of squares that overflowed: the gaps again, squared without overflow
        shares = lambda count: square_shares(xb - labels, count)  # noqa: E731
        return values, local, shares  # the derivative 2 (x - t): times 2 later

    loss, d = in_blocks(kernel, (x,), t, reduction, value=value, grad=grad, factor=2, into=True)
    return loss, (None if d is None else d[0])


def logistic_loss(input, target, base=2.0, reduction="mean"):
    r"""Logistic loss of a score against labels in {-1, +1}.

    .. math::

        \ell(x, t) = \log_b\bigl(1 + e^{-t x}\bigr)
                   = \operatorname{softplus}(-t x) / \ln b

    With the default base :math:`b = 2` the loss is 1 at the margin :math:`t x = 0`,
    like the 0-1 loss it upper-bounds; with :math:`b = e` it is
    :func:`binary_cross_entropy_with_logits` with :math:`y = (1 + t)/2`.

    Parameters
    ----------
    input : array_like
        Scores (logits) :math:`x`.
    target : array_like
        Labels :math:`t \in \{-1, +1\}`, same shape as ``input``.
    base : float, optional
        Base :math:`b` of the logarithm: finite, positive, not 1.
    reduction : {"mean", "sum", "none"}

    Returns
    -------
    ndarray or numpy scalar
        The per-element losses (``"none"``) or their reduction.

    Raises
    ------
    ValueError
        If ``base`` is not a finite number > 0 and != 1; if ``reduction`` is unknown; if
        ``target`` does not have ``input``'s shape or holds a label other than -1 and +1.

    Notes
    -----
    ``torch.nn.functional.soft_margin_loss`` is the base-:math:`e` form;
    ``optax.sigmoid_binary_cross_entropy`` with :math:`y = (1 + t)/2` likewise. The
    base-2 scaling follows :cite:t:`rosasco2004loss`.

    float32 and float16 are computed in float64 (the exponential, ``log1p``, the sigmoid
    and the division by :math:`\ln b`) and rounded once: within one ULP, whatever the
    base (NumPy's float32 ``exp`` and ``log1p``, up to 2.5 and 2 ULP off, would put a
    float32 loss up to 4.9 ULP off near :math:`t x = 1`). In float64 a loss whose
    :math:`\operatorname{softplus}(-t x)` is below 2.2e-308 (:math:`t x` beyond 708) is
    within :math:`4 w 2^{-1074}` of the exact value, :math:`w = 1 / |\ln b|` (its
    gradient likewise), instead of 4 ULP.

    Examples
    --------
    >>> logistic_loss([0.0, 2.0, -1e4], [1, 1, 1], reduction="none").round(6).tolist()
    [1.0, 0.183118, 14426.950409]
    """
    return _logistic(input, target, base, reduction, grad=False)[0]


@gradients_in_argument_dtypes("input")
def logistic_loss_grad(input, target, base=2.0, reduction="mean"):
    r"""Gradient of :func:`logistic_loss` with respect to ``input``.

    .. math::

        \frac{\partial \ell}{\partial x} = -\frac{t\, \sigma(-t x)}{\ln b}

    Parameters
    ----------
    input, target, base, reduction
        As in :func:`logistic_loss`.

    Returns
    -------
    ndarray
        :math:`\partial(\text{reduced loss}) / \partial x`, shape and dtype of ``input``.

    Raises
    ------
    ValueError
        As :func:`logistic_loss` does, for the same arguments.

    Notes
    -----
    Autograd of ``soft_margin_loss`` divided by :math:`\ln b` :cite:p:`paszke2019pytorch`;
    :cite:t:`rosasco2004loss`.

    Examples
    --------
    >>> logistic_loss_grad([0.0, 2.0], [1, -1], base=np.e, reduction="none").round(6).tolist()
    [-0.5, 0.880797]
    """
    return _logistic(input, target, base, reduction, value=False)[1]


@gradients_in_argument_dtypes("input")
def logistic_loss_value_and_grad(input, target, base=2.0, reduction="mean"):
    r"""``logistic_loss`` and ``logistic_loss_grad`` in one pass: the softplus and the sigmoid
    of :math:`-t x` share one exponential.

    Parameters
    ----------
    input, target, base, reduction
        Same as :func:`logistic_loss`.

    Returns
    -------
    tuple
        ``(logistic_loss(...), logistic_loss_grad(...))``, bit for bit.

    Raises
    ------
    ValueError
        As :func:`logistic_loss` does, for the same arguments.

    Examples
    --------
    >>> value, grad = logistic_loss_value_and_grad([0.0, 2.0], [1, 1], reduction="none")
    >>> value.round(6).tolist(), grad.round(6).tolist()
    ([1.0, 0.183118], [-0.721348, -0.171973])
    """
    return _logistic(input, target, base, reduction)


def _logistic(input, target, base, reduction, value=True, grad=True):
    """``(loss or None, gradient or None)`` of :func:`logistic_loss`."""
    base = check_log_base(base)
    x, t = _signed_args(input, target, reduction)
    return _softplus_margin(x, t, reduction, value, grad, np.log(base))


def _softplus_margin(x, t, reduction, value, grad, log_base=None):
    """``softplus(-t x)`` (divided by ``log_base``, a float64) and its derivative
    ``-t sigma(-t x)``, block by block: float64 in float64 (a division by ``log_base``
    rounded once), float32 and float16 by :func:`_narrow_softplus_margin`."""
    if x.dtype != np.float64:
        return _narrow_softplus_margin(x, t, reduction, value, grad, log_base)
    length = block_length(x.dtype, x.size)
    buffers = threading.local()  # each thread's, made once

    def kernel(xb, labels, out):
        values, local = out
        size = xb.size
        if not hasattr(buffers, "minus_t"):
            buffers.minus_t, buffers.z, buffers.u = (np.empty(length) for _ in range(3))
        nt = np.negative(labels, out=buffers.minus_t[:size])
        zb = np.multiply(nt, xb, out=buffers.z[:size])  # -t x: exact, t is +-1
        redone = nx.softplus_sigmoid_into(zb, values, local, buffers.u[:size])
        if local is not None:
            np.multiply(nt, local, out=local)  # -t sigma(-t x)
            if redone is not None:
                local[redone] += 0.0  # +0 where sigma(-t x) underflows
        if log_base is None:
            return values, local
        for r in out:
            if r is not None:
                np.divide(r, log_base, out=r)
        # a loss beyond the range (softplus near the largest float over |ln b| < 1) whose
        # mean may not be: the block's share of the mean, from the softplus (while ``zb``
        # is this block's; each term divided by the count first, finite where the mean is)
        return values, local, lambda count: _softplus_share(zb, log_base * count)

    loss, d = in_blocks(kernel, (x,), t, reduction, value=value, grad=grad, into=True)
    return loss, (None if d is None else d[0])


def _softplus_share(z, divisor) -> np.float64:
    """``sum(softplus(z) / divisor)`` in float64, the terms divided before the sum."""
    with np.errstate(over="ignore", under="ignore", invalid="ignore"):
        return np.sum(np.logaddexp(0.0, z) / divisor)


# Blocks of the float32/float16 kernel: 32K elements, whose four float64 buffers (1 MB per
# thread) stay within the 1.1x of the gradient's memory that a training step may add; blocks
# of 64K (2 MB per thread) were about as fast, but a step on 1e7 float32 elements then
# took 1.15x.
_NARROW_BLOCK_BYTES = _BLOCK_BYTES // 2


def _narrow_softplus_margin(x, t, reduction, value, grad, log_base=None):
    """:func:`_softplus_margin` of float32 or float16 ``x``: the exponential, the
    logarithm, the sigmoid and the division by ``log_base`` in float64, each result
    rounded once to ``x``'s dtype (within 2^-30 relative before it: one ULP).

    NumPy's float32 ``exp`` and ``log1p`` (SIMD loops) are up to 2.5 and 2 ULP off: a
    float32 softplus from them was up to 3.3 ULP off, and rounded again after a division
    by ``ln 2``, 4.9 ULP (``logistic_loss`` at ``x = 1.0241973``, ``t = 1``). The float64
    softplus is ``log(1 + u)``, ``u = e^{-t x}``, which the float64 ``1 + u`` keeps to
    2^-53 absolute, 2^-30 relative where ``-t x`` is above -15.5 (and ``log1p(u)`` below
    it); ``log`` costs half of ``log1p``. Beyond -t x = 708 an element
    is redone by ``_numerics.logistic_pairs`` (``u`` would overflow); below -708 the results
    are below the narrow dtype's range."""
    work = nx.working_dtype(x.dtype)
    block_bytes = _NARROW_BLOCK_BYTES
    length = block_length(work, x.size, block_bytes)
    buffers = threading.local()  # each thread's, made once
    # a result that is final (formed in the result's memory, no scale after it) is rounded
    # into place here; the others are returned in float64 and rounded after the reduction
    final = [reduction == "none" and x.dtype == work, reduction != "mean" and x.dtype == work]
    # 1 / ln b: its rounding and the product's are far below 2^-30
    factor = None if log_base is None else 1.0 / log_base
    # a mean's gradient is scaled after the kernel by the working dtype's 1 / n, which is
    # float32 (up to 2^-24 off, half an ULP more): the float64 slope carries the correction
    slope_factor = 1.0 if factor is None else factor
    if reduction == "mean" and x.size:
        slope_factor *= (1.0 / x.size) / float(work.type(1.0 / x.size))
    # a derivative times 1 / n (for a mean) whose magnitude is at most half the dtype's
    # smallest subnormal rounds to zero: it is made +0, as elsewhere. Only -t x below
    # log(that bound times |ln b|) can be so small (sigma(z) < e^z).
    count = x.size if reduction == "mean" else 1
    zero = float(np.finfo(x.dtype).smallest_subnormal) / 2 * count
    ln_b = 1.0 if log_base is None else abs(log_base)
    z_zero = math.log(zero * ln_b) if zero > 0 else -math.inf  # (no elements: nothing)

    def kernel(xb, labels, out):
        values, local = out
        size = xb.size
        if not hasattr(buffers, "minus_t"):
            buffers.minus_t = np.empty(length, work)
            buffers.wide = [np.empty(length) for _ in range(4)]
        nt = np.negative(labels, out=buffers.minus_t[:size])
        z, u, softplus, sigmoid = (w[:size] for w in buffers.wide)
        np.multiply(nt, xb, out=z)  # -t x: exact, t is +-1
        bottom = nx.softplus_sigmoid_wide(
            z, u, softplus, sigmoid, values is not None, local is not None
        )
        results = [None, None]
        if values is not None:
            if factor is not None:
                softplus *= factor
            if final[0]:
                values[...] = softplus  # rounded once
            results[0] = values if final[0] else softplus
        if local is not None:
            if slope_factor != 1:
                sigmoid *= slope_factor
            if final[1]:
                local[...] = sigmoid  # rounded once
                np.multiply(nt, local, out=local)  # -t sigma(-t x) / ln b: exact
                slope = local
            else:
                slope = np.multiply(nt, sigmoid, out=sigmoid)
            if not bottom >= z_zero:  # a zero after the rounding (and the mean's scale): +0
                low = np.flatnonzero(z < z_zero)
                if final[1]:
                    slope[low] += 0.0
                else:
                    slope[low[np.abs(slope[low]) <= zero]] = 0.0
            results[1] = slope
        return tuple(results)

    loss, d = in_blocks(
        kernel,
        (x,),
        t,
        reduction,
        value=value,
        grad=grad,
        into=True,
        work=work,
        block_bytes=block_bytes,
    )
    return loss, (None if d is None else d[0])


def zero_one_loss(input, target, reduction="mean"):
    r"""0-1 loss: 1 for a wrong (or undecided) sign, 0 otherwise.

    .. math::

        \ell(x, t) = \mathbb{1}[t x \le 0]

    A score of exactly 0 counts as an error. Its gradient is 0 almost everywhere,
    which is why the convex surrogates above are trained instead; there is no
    ``zero_one_loss_grad``.

    Parameters
    ----------
    input : array_like
        Scores :math:`x`.
    target : array_like
        Labels :math:`t \in \{-1, +1\}`, same shape as ``input``.
    reduction : {"mean", "sum", "none"}
        ``"mean"`` is the error rate.

    Returns
    -------
    ndarray or numpy scalar
        The per-element losses (``"none"``) or their reduction; NaN where a score is NaN.

    Raises
    ------
    ValueError
        If ``reduction`` is unknown; if ``target`` does not have ``input``'s shape or
        holds a label other than -1 and +1.

    Notes
    -----
    ``sklearn.metrics.zero_one_loss`` on signs; the loss the surrogates are
    calibrated against :cite:p:`bartlett2006convexity`.

    Examples
    --------
    >>> zero_one_loss([2.0, 0.0, -1.0], [1, 1, 1], reduction="none").tolist()
    [0.0, 1.0, 1.0]
    """
    args, tx = _margin_arrays(input, target, reduction)
    return _finish(np.heaviside(-tx, 1), reduction, args)
