"""The soft-margin and multilabel losses of PyTorch (private).

``soft_margin_loss`` is the logistic loss of a score against a label in {-1, +1};
``multilabel_soft_margin_loss`` averages independent Bernoulli negative
log-likelihoods over the classes of a sample; ``multilabel_margin_loss`` is the
multilabel hinge loss of PyTorch. Public as :mod:`lossutils.classification` and
``lossutils`` (this module is the implementation, not an import path).
"""

from __future__ import annotations

import math

import numpy as np

from . import _numerics as nx
from ._binary import (
    _abs_max,
    _bce_logits_parts,
    _signed_args,
    _softplus_margin,
    _weighted,
)
from ._blocks import BLOCK_BYTES, for_each_block
from ._checks import (
    as_array,
    check_broadcastable,
    check_class_input,
    check_reduction,
    check_same_shape,
    check_unit_interval,
    describe,
    float_arrays,
    gradients_in_argument_dtypes,
)
from ._reduction import (
    mean_past_the_range,
    product_row_means,
    reduce_to,
    reduction_scale,
    scale_grad,
)

__all__ = [
    "soft_margin_loss",
    "soft_margin_loss_grad",
    "soft_margin_loss_value_and_grad",
    "multilabel_soft_margin_loss",
    "multilabel_soft_margin_loss_grad",
    "multilabel_soft_margin_loss_value_and_grad",
    "multilabel_margin_loss",
    "multilabel_margin_loss_grad",
    "multilabel_margin_loss_value_and_grad",
]


# --- soft margin ----------------------------------------------------------------------------------


def soft_margin_loss(input, target, reduction="mean"):
    r"""Soft-margin (logistic) loss of a score against labels in {-1, +1}, as PyTorch's.

    .. math::

        \ell(x, t) = \log\bigl(1 + e^{-t x}\bigr) = \operatorname{softplus}(-t x)

    The negative log-likelihood of a label :math:`t` whose probability is
    :math:`\sigma(t x)`: :func:`logistic_loss` with ``base=e``, and
    :func:`binary_cross_entropy_with_logits` with :math:`y = (1 + t)/2`. Evaluated as
    :math:`\max(-t x, 0) + \operatorname{log1p}(e^{-|x|})`, which neither overflows nor
    loses the digits of a tiny loss: within about 2 ULP of the exact value in float64
    (its gradient: see :func:`soft_margin_loss_grad`); float32 and float16 are computed
    in float64 and rounded once (within one ULP; NumPy's float32 ``exp`` and ``log1p``,
    up to 2.5 and 2 ULP off, would put a float32 loss up to 3.3 ULP off and its gradient
    3.6).

    Parameters
    ----------
    input : array_like
        Scores (logits) :math:`x`.
    target : array_like
        Labels :math:`t \in \{-1, +1\}`, same shape as ``input``.
    reduction : {"mean", "sum", "none"}
        ``"mean"`` averages over all elements.

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
    ``torch.nn.functional.soft_margin_loss`` :cite:p:`paszke2019pytorch` evaluates
    ``log1p(exp(-t x))``, which is infinite in float32 from :math:`t x \approx -88.7`
    on (and in float64 from :math:`-709.8`); here it is :math:`-t x` there, the exact
    value to the last bit. PyTorch accepts any label (0 gives :math:`\log 2` with no
    gradient); here a label other than :math:`\pm 1` is an error.

    Examples
    --------
    >>> soft_margin_loss([0.0, 2.0, -100.0], [1, 1, 1], reduction="none").round(6).tolist()
    [0.693147, 0.126928, 100.0]
    """
    return _soft_margin(input, target, reduction, grad=False)[0]


@gradients_in_argument_dtypes("input")
def soft_margin_loss_grad(input, target, reduction="mean"):
    r"""Gradient of :func:`soft_margin_loss` with respect to ``input``.

    .. math::

        \frac{\partial \ell}{\partial x} = -t\, \sigma(-t x)

    :math:`\sigma(-t x)` is evaluated without forming :math:`1 - \sigma(t x)`, so a
    confident correct score keeps the relative accuracy of its tiny gradient.

    Parameters
    ----------
    input, target, reduction
        As in :func:`soft_margin_loss`.

    Returns
    -------
    ndarray
        :math:`\partial(\text{reduced loss}) / \partial x`, shape and dtype of ``input``.

    Raises
    ------
    ValueError
        As :func:`soft_margin_loss` does, for the same arguments.

    Notes
    -----
    What autograd gives for ``torch.nn.functional.soft_margin_loss``
    :cite:p:`paszke2019pytorch` (its backward is :math:`-t / (1 + e^{t x})`).

    float32 and float16 are rounded once from float64 (within one ULP). In float64
    :math:`u = e^{-t x}` (within 0.71 ULP), :math:`1 + u` and :math:`u / (1 + u)` each
    round (and, for a mean, the scale :math:`1 / n` and the product with it): an entry
    is a few ULP from the exact value, up to 2.5 ULP on a dense sweep of
    :math:`t x \in [-40, 40]` (3.1 for a mean).

    Examples
    --------
    >>> soft_margin_loss_grad([0.0, 2.0], [1, -1], reduction="none").round(6).tolist()
    [-0.5, 0.880797]
    """
    return _soft_margin(input, target, reduction, value=False)[1]


@gradients_in_argument_dtypes("input")
def soft_margin_loss_value_and_grad(input, target, reduction="mean"):
    r"""``soft_margin_loss`` and ``soft_margin_loss_grad`` in one pass: the softplus and the
    sigmoid of :math:`-t x` share one exponential.

    Parameters
    ----------
    input, target, reduction
        Same as :func:`soft_margin_loss`.

    Returns
    -------
    tuple
        ``(soft_margin_loss(...), soft_margin_loss_grad(...))``, bit for bit.

    Raises
    ------
    ValueError
        As :func:`soft_margin_loss` does, for the same arguments.

    Examples
    --------
    >>> value, grad = soft_margin_loss_value_and_grad([0.0, 2.0], [1, -1], reduction="none")
    >>> value.round(6).tolist(), grad.round(6).tolist()
    ([0.693147, 2.126928], [-0.5, 0.880797])
    """
    return _soft_margin(input, target, reduction)


def _soft_margin(input, target, reduction, value=True, grad=True):
    """``(loss or None, gradient or None)`` of :func:`soft_margin_loss`: softplus(-t x)."""
    x, t = _signed_args(input, target, reduction)
    return _softplus_margin(x, t, reduction, value, grad)


# --- multilabel soft margin -----------------------------------------------------------------------


def _multilabel_soft_args(input, target, weight, reduction):
    check_reduction(reduction)
    named = {"input": input, "target": target}
    if weight is not None:
        named["weight"] = weight
    arrays = float_arrays(named)
    x, y = arrays[:2]
    check_class_input(x)
    check_same_shape(x, y, "input", "target")
    check_unit_interval(y, "target")
    w = None
    if weight is not None:
        w = arrays[2]
        check_broadcastable(w, x.shape, "weight", "input")
    return x, y, w, arrays[0].dtype


def multilabel_soft_margin_loss(input, target, weight=None, reduction="mean"):
    r"""Multilabel soft-margin loss: the mean over classes of independent Bernoulli NLLs.

    For a sample with logits :math:`x \in \mathbb{R}^C` and targets
    :math:`y \in [0, 1]^C`:

    .. math::

        \ell(x, y) = -\frac{1}{C} \sum_{c=1}^{C} w_c \bigl[\, y_c \log \sigma(x_c)
                     + (1 - y_c) \log \sigma(-x_c) \bigr]

    Each term is :func:`binary_cross_entropy_with_logits`' softplus form (two
    non-negative terms, no overflow, tiny losses kept), so the per-sample loss is
    within a few ULP in float64. float32 and float16 are computed in float64 (the
    exponential, the logarithm, the weights and the division by :math:`C`) and rounded
    once: within one ULP (NumPy's float32 ``exp`` and ``log1p``, up to 2.5 and 2 ULP off,
    and a float32 division by :math:`C` would put a float32 loss up to 4.5 ULP off and
    its gradient 4.6). In float64 a term below 2.2e-308 times a weight :math:`w` above 1
    is within :math:`4 w 2^{-1074}` instead, as in :func:`binary_cross_entropy_with_logits`.

    Parameters
    ----------
    input : array_like, shape (..., C)
        Logits; the class axis is last.
    target : array_like, shape (..., C)
        Targets :math:`y \in [0, 1]` (soft targets allowed), same shape as ``input``.
    weight : array_like, optional
        Rescaling weight :math:`w`, broadcast against ``input`` (typically one per class,
        shape ``(C,)``); a zero weight masks its term.
    reduction : {"mean", "sum", "none"}
        ``"mean"`` averages the per-sample losses; ``"none"`` returns them, shape
        ``input.shape[:-1]``.

    Returns
    -------
    ndarray or numpy scalar
        The per-sample losses (``"none"``) or their reduction.

    Raises
    ------
    ValueError
        If ``reduction`` is unknown; if ``input`` has no class axis; if ``target`` does not
        have ``input``'s shape or has a value outside [0, 1]; if ``weight`` does not
        broadcast to ``input``'s shape.

    Notes
    -----
    ``torch.nn.functional.multilabel_soft_margin_loss`` :cite:p:`paszke2019pytorch`
    (which evaluates ``logsigmoid`` and divides the class sum by :math:`C`); it is
    ``binary_cross_entropy_with_logits(input, target, weight, reduction="none")``
    averaged over the last axis.

    Examples
    --------
    >>> multilabel_soft_margin_loss([[2.0, -1.0]], [[1.0, 0.0]], reduction="none").round(6).tolist()
    [0.220095]
    """
    return _multilabel_soft(input, target, weight, reduction, grad=False)[0]


@gradients_in_argument_dtypes("input")
def multilabel_soft_margin_loss_grad(input, target, weight=None, reduction="mean"):
    r"""Gradient of :func:`multilabel_soft_margin_loss` with respect to ``input``.

    .. math::

        \frac{\partial \ell}{\partial x_c} = \frac{w_c}{C}
        \bigl[ (1 - y_c)\, \sigma(x_c) - y_c\, \sigma(-x_c) \bigr]

    which is :math:`w_c (\sigma(x_c) - y_c) / C`; the two-term form keeps the relative
    accuracy of a confident, correct logit's tiny gradient, and near a soft target's
    optimum the cancelling terms are formed as in
    :func:`binary_cross_entropy_with_logits_grad` (in float64 within 4 ULP unless
    :math:`y_c` and :math:`\sigma(x_c)` agree beyond about 55 bits; then within
    :math:`2^{-103}` of a term). float32 and float16 are computed in float64 and rounded
    once: within one ULP.

    Parameters
    ----------
    input, target, weight, reduction
        As in :func:`multilabel_soft_margin_loss`.

    Returns
    -------
    ndarray
        :math:`\partial(\text{reduced loss}) / \partial x`, shape and dtype of ``input``.

    Raises
    ------
    ValueError
        As :func:`multilabel_soft_margin_loss` does, for the same arguments.

    Notes
    -----
    What autograd gives for ``torch.nn.functional.multilabel_soft_margin_loss``
    :cite:p:`paszke2019pytorch`.

    Examples
    --------
    >>> multilabel_soft_margin_loss_grad([[0.0, 0.0]], [[1.0, 0.0]]).round(6).tolist()
    [[-0.25, 0.25]]
    """
    return _multilabel_soft(input, target, weight, reduction, value=False)[1]


@gradients_in_argument_dtypes("input")
def multilabel_soft_margin_loss_value_and_grad(input, target, weight=None, reduction="mean"):
    r"""``multilabel_soft_margin_loss`` and ``multilabel_soft_margin_loss_grad`` in one pass:
    the softplus and sigmoid pairs share one :math:`e^{-|x|}`.

    Parameters
    ----------
    input, target, weight, reduction
        Same as :func:`multilabel_soft_margin_loss`.

    Returns
    -------
    tuple
        ``(multilabel_soft_margin_loss(...), multilabel_soft_margin_loss_grad(...))``, bit
        for bit.

    Raises
    ------
    ValueError
        As :func:`multilabel_soft_margin_loss` does, for the same arguments.

    Examples
    --------
    >>> value, grad = multilabel_soft_margin_loss_value_and_grad([[0.0, 0.0]], [[1.0, 0.0]])
    >>> float(value.round(6)), grad.tolist()
    (0.693147, [[-0.25, 0.25]])
    """
    return _multilabel_soft(input, target, weight, reduction)


def _multilabel_soft(input, target, weight, reduction, value=True, grad=True):
    """``(loss or None, gradient or None)`` of :func:`multilabel_soft_margin_loss`.

    In blocks of rows (the working dtype's copies, the terms and the slope are
    block-sized): the only full-size array is the gradient. Each row is computed by the
    same operations whatever its block, so the blocking does not change a bit.
    """
    x, y, w, dtype = _multilabel_soft_args(input, target, weight, reduction)
    # float32 and float16 in float64, each result rounded once (NumPy's float32 exp and
    # log1p, up to 2.5 and 2 ULP off, and the float32 division by C put a float32 loss up
    # to 4.5 ULP off, its gradient 4.6)
    work = np.dtype(np.float64)
    narrow = dtype != work
    classes = x.shape[-1]
    x2, y2 = x.reshape(-1, classes), y.reshape(-1, classes)
    w2 = None if w is None else np.broadcast_to(w, x.shape).reshape(-1, classes)
    samples = x2.shape[0]
    per_sample = np.empty(samples, work) if value else None
    d = np.empty(x2.shape, dtype) if grad else None
    scale = reduction_scale(samples, reduction, work) if reduction == "mean" else 1
    # a narrow gradient entry of at most half the dtype's smallest subnormal rounds to 0,
    # which is made +0: only where z = (1 - 2y) x is below log(zero) can it be so small
    z_zero = -math.inf
    if narrow and grad and x.size:
        top = 1.0 if w is None or not w.size else _abs_max(w)
        zero = float(np.finfo(dtype).smallest_subnormal) / 2 * classes
        zero *= samples if reduction == "mean" else 1
        with np.errstate(divide="ignore", over="ignore"):
            z_zero = math.log(zero / top) if top > 0 else math.inf

    def rows_of(rows):
        # C order: the narrow path works on flat views of these rows (a Fortran-order block
        # would make them copies, and its results would be lost)
        xb, yb = (a[rows].astype(work, order="C", copy=False) for a in (x2, y2))
        wb = None if w2 is None else w2[rows].astype(work, copy=False)
        bottom = -math.inf
        if narrow and not np.max(yb * (1 - yb), initial=0) > 0:  # targets 0 and 1
            # the loss term is softplus(z) and its slope (1 - 2y) sigma(z), z = (1 - 2y) x
            sign = np.multiply(yb, -2, out=yb)  # (yb is a copy)
            sign += 1
            z = np.multiply(sign, xb, out=xb)  # exact
            terms, sig = np.empty_like(z), np.empty_like(z)
            bottom = nx.softplus_sigmoid_wide(
                *(a.reshape(-1) for a in (z, np.empty_like(z), terms, sig)), value, grad
            )
            slope = np.multiply(sign, sig, out=sig) if grad else None
        else:
            terms, slope = _bce_logits_parts(xb, yb, yb, value, grad)
        if value:
            product_row_means(terms, wb, classes, per_sample[rows])
        if grad:
            local = _weighted(slope, wb)
            if reduction == "mean":  # (/ C, then * 1/N, the last step written into d)
                local /= classes
                np.multiply(local, scale, out=d[rows])
            else:
                np.divide(local, classes, out=d[rows])
            if not bottom >= z_zero:  # (or NaN) a zero after the rounding: +0
                d[rows] += 0

    # blocks of a quarter of BLOCK_BYTES: the few block-sized temporaries of each thread
    # stay small next to the gradient
    for_each_block(rows_of, samples, 4 * classes * work.itemsize)
    loss = None
    if value:
        loss = reduce_to(per_sample.reshape(x.shape[:-1]), reduction, dtype)
    return loss, (None if d is None else d.reshape(x.shape))


# --- multilabel margin ----------------------------------------------------------------------------


def _multilabel_margin_args(input, target, reduction):
    """Rows of input (working dtype), rows of target, the dtype of the result.

    Returns ``(x, index, dtype)``, both ``(N, C)``; the target is checked but not copied.
    """
    check_reduction(reduction)
    x = float_arrays({"input": input})[0]
    num_classes = check_class_input(x)
    target = as_array(target, "target")
    if target.dtype.kind not in "iu":
        raise ValueError(f"target must hold integer class indices; got dtype {target.dtype}")
    if target.shape != x.shape:
        raise ValueError(
            f"target must have the same shape as input {x.shape} (class indices padded "
            f"with -1); got shape {target.shape}"
        )
    if target.size and (np.min(target) < -1 or np.max(target) >= num_classes):
        bad = (target < -1) | (target >= num_classes)
        raise ValueError(
            f"target must hold class indices in [0, {num_classes - 1}] or -1 (the end of "
            f"a sample's labels); got {describe(target[bad].flat[0])}"
        )
    dtype = x.dtype
    x = x.astype(nx.working_dtype(dtype), copy=False).reshape(-1, num_classes)
    return x, target.reshape(-1, num_classes), dtype


def _multilabel_margin_labels(index):
    """A block of target rows as ``(labels, listed)``, both ``(B, K)``, K the most labels.

    ``labels`` holds each row's labels (those before its first -1, a repeated one as often
    as it appears), padded with the row's first label (0 in a row without labels);
    ``listed`` is False on the padding.
    """
    ends = index < 0
    length = np.where(ends.any(axis=1), ends.argmax(axis=1), index.shape[1])
    k = int(length.max(initial=0))
    listed = np.arange(k) < length[:, None]
    labels = index[:, :k].astype(np.intp)
    first = np.maximum(labels[:, :1], 0)
    return np.where(listed, labels, first), listed


# A training step's blocks hold a quarter of a usual block, and at most 1/48 of the rows
# (their temporaries, about 13 bytes per element, stay a few percent of the gradient).
_STEP_BLOCKS = 48


def _multilabel_margin_block(x, index, rows, sums, out, reduction, margin=1.0):
    """The rows ``rows`` of :func:`_multilabel_margin`: adds each row's hinge sum (times C)
    into ``sums`` (when given) and writes the rows of the gradient into ``out`` (when given).

    One pass over the row's classes per label ``j``: the gaps ``1 - x_j + x_i`` of
    :func:`lossutils._numerics.margin_gaps` (the sign exact, so a pair is active exactly
    when its exact gap is positive; within about one ULP), the label columns set to 0.
    The float32 hinges are summed in float64 (a row's sum is then within about one ULP).
    """
    xb = x[rows]
    labels, listed = _multilabel_margin_labels(index[rows])
    b, c = xb.shape
    # flat positions of the labels in the block (xb and the gradient's rows are contiguous)
    where = np.arange(0, b * c, c)[:, None] + labels
    count = None
    if out is not None:
        count = out[rows] if out.dtype == xb.dtype else np.empty(xb.shape, xb.dtype)
        count.fill(0)
    if labels.size:
        scores = xb.reshape(-1)[where]
        ones = np.ones(c, xb.dtype)
        every = listed.all(axis=0)
    for k in range(labels.shape[1]):
        # the rows with a k-th label (a slice, a view, when every row has one)
        part = slice(None) if every[k] else np.flatnonzero(listed[:, k])
        gaps = nx.margin_gaps(xb[part], scores[part, k], xb.dtype.type(margin))
        gaps.reshape(-1)[np.arange(0, gaps.size, c)[:, None] + labels[part]] = 0  # the labels
        nx.clip_hinges(gaps)  # (NaN stays: a NaN gap makes its pair NaN)
        if sums is not None:
            sums[rows][part] += np.sum(gaps, axis=1, dtype=sums.dtype)  # (sums[rows]: a view)
        if count is not None:
            active = nx.active_hinges(gaps)  # 1 for an active pair, 0, or NaN
            count[part] += active
            # each active pair takes 1 from its label's count (NaN if one pair is NaN)
            count.reshape(-1)[where[part, k]] -= active @ ones
    if count is not None:
        count /= xb.dtype.type(c)
        scale_grad(count, count.shape, reduction, count.dtype, count=len(x), in_place=True)
        if out.dtype != xb.dtype:
            out[rows] = count


def multilabel_margin_loss(input, target, reduction="mean"):
    r"""Multilabel hinge loss, as PyTorch's ``multilabel_margin_loss``.

    A sample's target lists its classes, padded with -1: the classes before the first
    -1 are the sample's labels :math:`Y`. Every label must score at least 1 above every
    other class:

    .. math::

        \ell(x, Y) = \frac{1}{C} \sum_{j \in Y} \sum_{i \notin Y}
                     \max\bigl(0,\ 1 - (x_j - x_i)\bigr)

    A sample without labels (its target starts with -1) has loss 0. A class listed twice
    counts twice, as in PyTorch.

    Parameters
    ----------
    input : array_like, shape (..., C)
        Class scores; the class axis is last.
    target : array_like of int, shape (..., C)
        Class indices in ``[0, C)``, padded with -1 (entries after the first -1 are
        ignored, but must be -1 or an index as well).
    reduction : {"mean", "sum", "none"}, optional
        ``"mean"`` averages over samples; ``"none"`` gives shape ``input.shape[:-1]``.

    Returns
    -------
    numpy scalar or ndarray
        The reduced loss, or the per-sample losses.

    Raises
    ------
    ValueError
        If ``reduction`` is unknown; if ``input`` has no class axis; if ``target`` is not
        integer, not of ``input``'s shape, or holds a value outside ``[-1, C)``.

    Notes
    -----
    ``torch.nn.functional.multilabel_margin_loss`` :cite:p:`paszke2019pytorch`, which
    takes 1-D or 2-D input; here any number of batch axes. With a single label per
    sample it is the Weston-Watkins multiclass hinge :cite:p:`weston1999support`,
    :func:`multi_margin_loss` with ``p=1`` and ``margin=1``. Each gap
    is evaluated with its rounding errors compensated. PyTorch's mean over an empty batch
    is not NaN (it returns an uninitialised value); here it is NaN.

    Examples
    --------
    >>> multilabel_margin_loss([[0.1, 0.2, 0.4, 0.8]], [[3, 0, -1, 1]]).round(6).tolist()
    0.85
    """
    return _multilabel_margin(input, target, reduction, grad=False)[0]


@gradients_in_argument_dtypes("input")
def multilabel_margin_loss_grad(input, target, reduction="mean"):
    r"""Gradient of :func:`multilabel_margin_loss` with respect to ``input``.

    Each active pair (label :math:`j`, non-label :math:`i`, gap
    :math:`1 - x_j + x_i > 0`) adds :math:`1/C` to :math:`\partial/\partial x_i` and
    :math:`-1/C` to :math:`\partial/\partial x_j`.

    Parameters
    ----------
    input, target, reduction
        As for :func:`multilabel_margin_loss`.

    Returns
    -------
    ndarray
        :math:`\partial(\text{reduced loss}) / \partial x`, shape and dtype of ``input``.

    Raises
    ------
    ValueError
        As :func:`multilabel_margin_loss` does, for the same arguments.

    Notes
    -----
    PyTorch's ``multilabel_margin_loss_backward`` counts a pair only where its gap is
    positive, strictly: the subgradient at the kink is 0, as here
    :cite:p:`paszke2019pytorch`.

    Examples
    --------
    >>> multilabel_margin_loss_grad([[0.1, 0.2, 0.4, 0.8]], [[3, 0, -1, 1]]).tolist()
    [[-0.5, 0.5, 0.5, -0.5]]
    """
    return _multilabel_margin(input, target, reduction, value=False)[1]


@gradients_in_argument_dtypes("input")
def multilabel_margin_loss_value_and_grad(input, target, reduction="mean"):
    r"""``multilabel_margin_loss`` and ``multilabel_margin_loss_grad`` in one pass: the gaps
    of every (label, non-label) pair are formed once.

    Parameters
    ----------
    input, target, reduction
        Same as :func:`multilabel_margin_loss`.

    Returns
    -------
    tuple
        ``(multilabel_margin_loss(...), multilabel_margin_loss_grad(...))``, bit for bit.

    Raises
    ------
    ValueError
        As :func:`multilabel_margin_loss` does, for the same arguments.

    Examples
    --------
    >>> value, grad = multilabel_margin_loss_value_and_grad([[0.1, 0.2, 0.4, 0.8]], [[3, 0, -1, 1]])
    >>> float(value.round(6)), grad.tolist()
    (0.85, [[-0.5, 0.5, 0.5, -0.5]])
    """
    return _multilabel_margin(input, target, reduction)


def _multilabel_margin(input, target, reduction, value=True, grad=True):
    """``(loss or None, gradient or None)`` of :func:`multilabel_margin_loss`.

    Work and memory are O(rows x classes x labels): one pass over a row per label, in
    blocks of rows; no rows x classes x classes array.
    """
    x, index, dtype = _multilabel_margin_args(input, target, reduction)
    x = np.ascontiguousarray(x)  # the blocks address the labels by flat position
    n, c = x.shape
    sums = np.zeros(n, np.float64) if value else None  # each row's hinge sum, unrounded
    out = np.empty(x.shape, dtype) if grad else None
    row_bytes = c * x.dtype.itemsize
    step = None if not grad else min(-(-n // _STEP_BLOCKS), BLOCK_BYTES // 4 // row_bytes)
    for_each_block(
        lambda rows: _multilabel_margin_block(x, index, rows, sums, out, reduction),
        n,
        row_bytes,
        step,
    )
    loss = d = None
    if value:
        sums /= c
        beyond = _redo_overflowed_rows(x, index, sums)
        loss = reduce_to(sums.reshape(np.shape(input)[:-1]), reduction, dtype)
        if reduction == "mean" and beyond is not None and np.isinf(loss):
            loss = nx.to_dtype(mean_past_the_range(sums, *beyond), dtype)[()]
    if grad:
        d = out.reshape(np.shape(input))
    return loss, d


@nx.quiet  # (as the blocks: inf and NaN show in the result)
def _redo_overflowed_rows(x, index, means):
    """``means`` (each row's hinge sum over C) where a hinge or the sum overflowed though
    the row's scores are finite: the row again in float64, its scores and the margin
    scaled by the power of 2 of the largest (exact; an entry below it by 2^1000 or more
    is lost, far below the loss's last place), scaled back after the division by C; the
    loss then overflows only where it does. Returns the rows whose losses stay beyond
    float64's range, their scaled losses and the power of 2 that scales them back (None
    if there are none), for the mean."""
    redo = np.flatnonzero(np.isinf(means))
    redo = redo[np.isfinite(x[redo]).all(axis=-1)]
    if redo.size == 0:
        return None
    rows = x[redo].astype(np.float64)
    e = math.frexp(max(float(np.max(np.abs(rows))), 1.0))[1]
    scaled = np.zeros(redo.size, np.float64)
    rows = np.ldexp(rows, -e)
    _multilabel_margin_block(rows, index[redo], slice(None), scaled, None, None, math.ldexp(1, -e))
    scaled /= x.shape[1]
    means[redo] = np.ldexp(scaled, e)
    beyond = np.isinf(means[redo])
    return (redo[beyond], scaled[beyond], e) if beyond.any() else None
