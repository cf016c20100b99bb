"""Classification losses: Bernoulli, categorical and margin-based.

The categorical (softmax) and multiclass margin losses are defined here; the
binary and binary-margin losses (one decision per output) are implemented in a
private module and public from here, so that every classification loss has one
import path: ``lossutils.classification.X`` (and ``lossutils.X``).
"""

from __future__ import annotations

import numbers

import numpy as np

from . import _numerics as nx
from ._binary import (
    binary_cross_entropy,
    binary_cross_entropy_grad,
    binary_cross_entropy_with_logits,
    binary_cross_entropy_with_logits_grad,
    hinge_loss,
    hinge_loss_grad,
    logistic_loss,
    logistic_loss_grad,
    sigmoid_focal_loss,
    sigmoid_focal_loss_grad,
    square_loss,
    square_loss_grad,
    squared_hinge_loss,
    squared_hinge_loss_grad,
    zero_one_loss,
)
from ._checks import (
    as_float_array,
    check_class_input,
    check_finite_scalar,
    check_positive_scalar,
    check_reduction,
    check_unit_interval,
    check_unit_interval_scalar,
    class_index_target,
    class_weight,
    describe,
    float_arrays,
    wider_dtype,
)
from ._reduction import reduce, reduction_scale, sample_scale, weighted_reduce
from ._reduction import total as weight_total

__all__ = [
    "nll_loss",
    "nll_loss_grad",
    "cross_entropy",
    "cross_entropy_grad",
    "softmax_focal_loss",
    "softmax_focal_loss_grad",
    "multiclass_hinge_loss",
    "multiclass_hinge_loss_grad",
    "multi_margin_loss",
    "multi_margin_loss_grad",
    "binary_cross_entropy",
    "binary_cross_entropy_grad",
    "binary_cross_entropy_with_logits",
    "binary_cross_entropy_with_logits_grad",
    "sigmoid_focal_loss",
    "sigmoid_focal_loss_grad",
    "hinge_loss",
    "hinge_loss_grad",
    "squared_hinge_loss",
    "squared_hinge_loss_grad",
    "square_loss",
    "square_loss_grad",
    "logistic_loss",
    "logistic_loss_grad",
    "zero_one_loss",
]


# --- shared plumbing ------------------------------------------------------------------------------


def _index_setup(input, target, weight, ignore_index, reduction):
    """Check the arguments of an index-target loss; return the rows and their targets.

    Returns ``(x, y, valid, w, shape)``: ``x`` the ``(N, C)`` rows of ``input`` (a
    view when possible), ``y`` the ``(N,)`` class indices (0 where ignored),
    ``valid`` the mask of counted samples, ``w`` the class weights (or None) and
    ``shape`` the shape of the per-sample result.
    """
    check_reduction(reduction)
    names = {"input": input} if weight is None else {"input": input, "weight": weight}
    x = float_arrays(names)[0]
    num_classes = check_class_input(x)
    w = class_weight(weight, num_classes, x.dtype)
    y, valid = class_index_target(target, x.shape, ignore_index)
    return x.reshape(-1, num_classes), y.reshape(-1), valid.reshape(-1), w, x.shape[:-1]


def _gather(rows: np.ndarray, y: np.ndarray) -> np.ndarray:
    """``rows[i, y[i]]`` for every row."""
    return np.take_along_axis(rows, y[:, None], axis=-1)[:, 0]


def _target_weight(w, y, valid, dtype) -> np.ndarray:
    """``w[y]`` (1 without weights), 0 where the target is ignored."""
    wy = np.ones(y.shape, dtype) if w is None else w[y]
    return np.where(valid, wy, 0).astype(dtype, copy=False)


def _check_smoothing(label_smoothing) -> float:
    return check_unit_interval_scalar(label_smoothing, "label_smoothing")


def _ce_setup(input, target, weight, ignore_index, reduction, label_smoothing):
    """Validate cross-entropy arguments; decide between index and probability targets."""
    check_reduction(reduction)
    eps = _check_smoothing(label_smoothing)
    x_raw = as_float_array(input, "input")
    num_classes = check_class_input(x_raw)
    t = np.asarray(target)
    if t.dtype.kind in "iu":
        x, y, valid, w, shape = _index_setup(input, t, weight, ignore_index, reduction)
        return "index", x, (y, valid), w, eps, shape
    if t.dtype.kind != "f" or t.shape != x_raw.shape:
        raise ValueError(
            "target must hold integer class indices of shape "
            f"{x_raw.shape[:-1]} or floating class probabilities of shape {x_raw.shape} "
            f"(input's shape); got {describe(t)}"
        )
    names = {"input": input, "target": t}
    if weight is not None:
        names["weight"] = weight
    x, q = float_arrays(names)[:2]
    check_unit_interval(q, "target")
    w = class_weight(weight, num_classes, x.dtype)
    return "prob", x.reshape(-1, num_classes), q.reshape(-1, num_classes), w, eps, x.shape[:-1]


def _ce_forward(kind, x, tgt, w, eps):
    """Per-sample cross-entropy pieces shared by the loss and its gradient."""
    dtype = x.dtype
    num_classes = x.shape[-1]
    if kind == "index":
        y, valid = tgt
        coef = None if eps == 0 else (True if w is None else w)
        m, e, s, gap = nx.shifted_exp(x, coef)
        xy = _gather(x, y)
        hard = (s < 2) if eps > 0 else (s < 2) & (xy == m)
        r = nx.log_rest(x, m, e, s, hard)
        with np.errstate(invalid="ignore"):
            nll = (m - xy) + r  # -log p_y, a sum of two non-negative terms
        return m, e, s, r, nll, gap
    q = tgt
    if eps > 0:
        q = (1 - eps) * q + dtype.type(eps / num_classes)
    wq = q if w is None else q * w
    m, e, s, gap = nx.shifted_exp(x, wq)
    r = nx.log_rest(x, m, e, s, s < 2)
    return m, e, s, r, wq, gap


# --- negative log-likelihood and cross-entropy ----------------------------------------------------


def nll_loss(input, target, weight=None, ignore_index=-100, reduction="mean"):
    r"""Negative log-likelihood of class indices given log-probabilities.

    .. math::

        \ell_i = -w_{y_i}\, x_{i, y_i}, \qquad
        \text{mean} = \frac{\sum_i \ell_i}{\sum_{i:\, y_i \ne \text{ignore}} w_{y_i}}

    Parameters
    ----------
    input : array_like, shape (..., C)
        Log-probabilities (e.g. from :func:`lossutils.activations.log_softmax`); the class
        axis is last.
    target : array_like of int, shape (...)
        Class indices in ``[0, C)``, or ``ignore_index``.
    weight : array_like, shape (C,), optional
        A weight per class (default: all ones).
    ignore_index : int, optional
        Targets equal to it contribute 0 to the loss and 0 to the weight sum.
    reduction : {"mean", "sum", "none"}, optional
        ``"mean"`` is the *weighted* mean above; it is NaN when every target is ignored.

    Returns
    -------
    numpy scalar or ndarray
        The reduced loss, or the per-sample losses of shape ``input.shape[:-1]``.

    Notes
    -----
    Equivalent to ``torch.nn.functional.nll_loss`` (whose class axis is dim 1;
    for 2-D input the two agree). See :cite:t:`bishop2006pattern`, section 4.3.4.

    Examples
    --------
    >>> logp = np.log([[0.7, 0.2, 0.1], [0.1, 0.1, 0.8]])
    >>> float(round(nll_loss(logp, [0, 2]), 6))
    0.289909
    >>> float(round(nll_loss(logp, [0, 2], weight=[1.0, 1.0, 3.0]), 6))
    0.256526
    """
    x, y, valid, w, shape = _index_setup(input, target, weight, ignore_index, reduction)
    wy = _target_weight(w, y, valid, x.dtype)
    with np.errstate(invalid="ignore"):
        loss = np.where(valid, -wy * _gather(x, y), 0).astype(x.dtype, copy=False)
    return weighted_reduce(loss, weight_total(wy), reduction, shape)


def nll_loss_grad(input, target, weight=None, ignore_index=-100, reduction="mean"):
    r"""Gradient of :func:`nll_loss` with respect to ``input``.

    .. math::

        \frac{\partial \ell_i}{\partial x_{i, k}} = -w_{y_i}\, [k = y_i]

    scaled by :math:`1 / \sum_i w_{y_i}` for the mean. Ignored samples get 0
    (also when every sample is ignored, as PyTorch's autograd).

    Parameters
    ----------
    input, target, weight, ignore_index, reduction
        As for :func:`nll_loss`.

    Returns
    -------
    ndarray
        :math:`\partial(\text{reduced loss}) / \partial x`, shape of ``input``.

    Notes
    -----
    Equivalent to the autograd of ``torch.nn.functional.nll_loss``.
    See :cite:t:`bishop2006pattern`, section 4.3.4.

    Examples
    --------
    >>> logp = np.log([[0.7, 0.2, 0.1], [0.1, 0.1, 0.8]])
    >>> nll_loss_grad(logp, [0, 2]).tolist()
    [[-0.5, 0.0, 0.0], [0.0, 0.0, -0.5]]
    """
    x, y, valid, w, shape = _index_setup(input, target, weight, ignore_index, reduction)
    wy = _target_weight(w, y, valid, x.dtype)
    grad = np.zeros_like(x)
    np.put_along_axis(
        grad, y[:, None], -sample_scale(wy, valid, weight_total(wy), reduction)[:, None], -1
    )
    return grad.reshape(shape + x.shape[-1:])


def cross_entropy(
    input, target, weight=None, ignore_index=-100, reduction="mean", label_smoothing=0.0
):
    r"""Softmax cross-entropy of logits, with class-index or class-probability targets.

    With :math:`\log p_{i,c} = z_{i,c} - \log \sum_k e^{z_{i,k}}` and :math:`\varepsilon`
    = ``label_smoothing``, a class-index target :math:`y_i` gives

    .. math::

        \ell_i = (1 - \varepsilon)\, w_{y_i} (-\log p_{i, y_i})
               + \frac{\varepsilon}{C} \sum_c w_c (-\log p_{i, c}),

    and the mean divides :math:`\sum_i \ell_i` by :math:`\sum_i w_{y_i}` over the
    samples that are not ignored (both parts). A probability target :math:`t_i` is
    first smoothed to :math:`q_i = (1 - \varepsilon) t_i + \varepsilon / C`, then

    .. math::

        \ell_i = -\sum_c w_c\, q_{i,c} \log p_{i,c},

    and the mean divides by the number of samples :math:`N` (not by weights).

    Parameters
    ----------
    input : array_like, shape (..., C)
        Logits; the class axis is last.
    target : array_like
        Integer class indices of shape ``input.shape[:-1]``, or floating class
        probabilities in [0, 1] of shape ``input.shape``.
    weight : array_like, shape (C,), optional
        A weight per class.
    ignore_index : int, optional
        Index targets equal to it contribute nothing (no effect on probability targets).
    reduction : {"mean", "sum", "none"}, optional
        ``"none"`` returns one loss per sample (shape ``input.shape[:-1]``).
    label_smoothing : float in [0, 1], optional
        Mixes the target with the uniform distribution over the C classes
        :cite:p:`szegedy2016rethinking`.

    Returns
    -------
    numpy scalar or ndarray
        The reduced loss, or the per-sample losses.

    Notes
    -----
    Equivalent to ``torch.nn.functional.cross_entropy`` (class axis dim 1 there;
    for 2-D input the two agree) and, without weights, to optax's
    ``softmax_cross_entropy_with_integer_labels`` / ``softmax_cross_entropy``.
    See :cite:t:`bishop2006pattern`, section 4.3.4.

    The textbook :math:`\log \sum_k e^{z_k} - z_y` loses every digit of a confident,
    correct prediction: a loss of 1e-20 rounds to 0. Here :math:`-\log p_y` is
    :math:`(m - z_y) + \log \sum_k e^{z_k - m}`, a sum of two non-negative terms, and
    in the rows dominated by their maximum the second term is
    :math:`\operatorname{log1p}` of the sum of the other :math:`e^{z_k - m}`, with the
    rounding error of each difference :math:`z_k - m` compensated
    :cite:p:`blanchard2021accurate`. The result is within a few ULP of the exact value
    for logits up to :math:`\pm 10^4` and losses down to the underflow threshold; the
    extra work is done only in those rows.

    Examples
    --------
    >>> z = np.array([[5.0, 4.0, 2.0]])
    >>> from lossutils import softmax
    >>> softmax(z).round(3).tolist()  # p
    [[0.705, 0.259, 0.035]]
    >>> float(round(cross_entropy(z, [0]), 6))
    0.349012
    >>> float(round(cross_entropy(z, [0], label_smoothing=0.1), 6))
    0.482345
    >>> float(round(cross_entropy(z, [[1.0, 0.0, 0.0]]), 6))
    0.349012
    >>> float(cross_entropy([[50.0, 0.0, 0.0]], [0]))  # the textbook form gives 0.0
    3.857499695927835e-22
    """
    kind, x, tgt, w, eps, shape = _ce_setup(
        input, target, weight, ignore_index, reduction, label_smoothing
    )
    dtype = x.dtype
    _, _, _, r, a, gap = _ce_forward(kind, x, tgt, w, eps)
    with np.errstate(invalid="ignore"):
        if kind == "prob":
            loss = gap + np.sum(a, axis=-1) * r
            return weighted_reduce(loss, loss.size, reduction, shape)
        y, valid = tgt
        wy = _target_weight(w, y, valid, dtype)
        loss = a if w is None and eps == 0 else wy * a
        if eps > 0:
            total_w = x.shape[-1] if w is None else np.sum(w)
            loss = (1 - eps) * loss + dtype.type(eps / x.shape[-1]) * (gap + total_w * r)
        loss = np.where(valid, loss, 0).astype(dtype, copy=False)
    return weighted_reduce(loss, weight_total(wy), reduction, shape)


def cross_entropy_grad(
    input, target, weight=None, ignore_index=-100, reduction="mean", label_smoothing=0.0
):
    r"""Gradient of :func:`cross_entropy` with respect to the logits ``input``.

    For a class-index target, with :math:`p = \operatorname{softmax}(z_i)`,

    .. math::

        \frac{\partial \ell_i}{\partial z_{i}} =
            \Bigl((1 - \varepsilon) w_{y_i} + \frac{\varepsilon}{C} \sum_c w_c\Bigr) p
            - (1 - \varepsilon) w_{y_i} e_{y_i} - \frac{\varepsilon}{C} w,

    which is :math:`p - e_{y_i}` without weights and smoothing; for a probability
    target, :math:`(\sum_c w_c q_{i,c})\, p - w \odot q_i`. Each row is then scaled
    as the reduction scales its loss (1, or :math:`1/\sum w_{y_i}`, or :math:`1/N`);
    ignored samples get 0.

    Parameters
    ----------
    input, target, weight, ignore_index, reduction, label_smoothing
        As for :func:`cross_entropy`.

    Returns
    -------
    ndarray
        :math:`\partial(\text{reduced loss}) / \partial z`, shape of ``input``.

    Notes
    -----
    Equivalent to the autograd of ``torch.nn.functional.cross_entropy``; optax's
    losses have no separate gradient function. The target entry
    :math:`p_y - 1` is evaluated as :math:`\operatorname{expm1}(-\ell)` from the
    accurate loss, so it keeps its relative accuracy when :math:`p_y \to 1`.
    See :cite:t:`bishop2006pattern`, section 4.3.4.

    Examples
    --------
    >>> cross_entropy_grad([[5.0, 4.0, 2.0]], [0]).round(4).tolist()
    [[-0.2946, 0.2595, 0.0351]]
    """
    kind, x, tgt, w, eps, shape = _ce_setup(
        input, target, weight, ignore_index, reduction, label_smoothing
    )
    dtype = x.dtype
    num_classes = x.shape[-1]
    _, e, s, _, a, _ = _ce_forward(kind, x, tgt, w, eps)
    with np.errstate(invalid="ignore", divide="ignore"):
        if kind == "prob":
            scale = dtype.type(1) if reduction != "mean" else dtype.type(1) / dtype.type(len(x))
            total = np.sum(a, axis=-1)
            e *= (scale * total / s)[:, None]
            e -= scale * a
            return e.reshape(shape + (num_classes,))
        y, valid = tgt
        wy = _target_weight(w, y, valid, dtype)
        sc = sample_scale(np.ones_like(wy) if w is None else wy, valid, weight_total(wy), reduction)
        if eps == 0:
            e *= (sc / s)[:, None]
            target_entry = sc * np.expm1(-a)
        else:
            total_w = dtype.type(num_classes) if w is None else np.sum(w)
            wy_raw = np.ones_like(wy) if w is None else w[y]
            share = dtype.type(eps / num_classes)
            sc_raw = sample_scale(np.ones_like(wy), valid, weight_total(wy), reduction)
            e *= (sc_raw * ((1 - eps) * wy_raw + share * total_w) / s)[:, None]
            e -= (sc_raw * share)[:, None] * (1 if w is None else w)
            target_entry = sc_raw * (
                (1 - eps) * wy_raw * np.expm1(-a) + share * (total_w * np.exp(-a) - wy_raw)
            )
        np.put_along_axis(e, y[:, None], target_entry.astype(dtype, copy=False)[:, None], -1)
    return e.reshape(shape + (num_classes,))


# --- focal loss -----------------------------------------------------------------------------------


def _focal_parts(input, target, gamma, weight, ignore_index, reduction):
    r"""The focal loss's pieces, in one precision wider than the input's.

    The modulation multiplies the error of :math:`-\log p_y` by about
    :math:`1 + \gamma`; computed one precision up and rounded once, the loss stays
    within a few ULP. Returns ``x`` itself (for the output dtype) and the pieces.
    """
    gamma = check_positive_scalar(gamma, "gamma", allow_zero=True)
    x, y, valid, w, shape = _index_setup(input, target, weight, ignore_index, reduction)
    work = wider_dtype(x.dtype)
    w = None if w is None else w.astype(work)
    _, e, s, _, nll, _ = _ce_forward("index", x.astype(work), (y, valid), w, 0.0)
    with np.errstate(invalid="ignore"):
        u = -np.expm1(-nll)  # 1 - p_y without cancellation
        modulation = u**gamma
    wy = _target_weight(w, y, valid, work)
    return x, y, valid, wy, shape, gamma, e, s, nll, u, modulation


def softmax_focal_loss(input, target, gamma=2.0, weight=None, ignore_index=-100, reduction="mean"):
    r"""Focal loss on softmax probabilities: cross-entropy down-weighted where it is small.

    .. math::

        \ell_i = -w_{y_i} (1 - p_{i, y_i})^{\gamma} \log p_{i, y_i},
        \qquad p_i = \operatorname{softmax}(z_i),

    reduced as :func:`cross_entropy` (the mean divides by :math:`\sum_i w_{y_i}` over
    the samples that are not ignored). ``gamma=0`` is :func:`cross_entropy`.

    Parameters
    ----------
    input : array_like, shape (..., C)
        Logits; the class axis is last.
    target : array_like of int, shape (...)
        Class indices in ``[0, C)``, or ``ignore_index``.
    gamma : float, optional
        Focusing parameter, :math:`\gamma \ge 0`.
    weight : array_like, shape (C,), optional
        A weight per class (the :math:`\alpha_t` of :cite:t:`lin2017focal`).
    ignore_index : int, optional
        Targets equal to it contribute nothing.
    reduction : {"mean", "sum", "none"}, optional
        ``"none"`` returns one loss per sample.

    Returns
    -------
    numpy scalar or ndarray
        The reduced loss, or the per-sample losses.

    Notes
    -----
    PyTorch and optax have no softmax focal loss; the usual PyTorch code is
    ``-(w[y] * (1 - p_y) ** gamma * log_softmax(z)[y])`` with ``nll_loss``'s
    weighted mean, which this reproduces. :math:`-\log p_y` is the accurate
    cross-entropy of :func:`cross_entropy`, and :math:`1 - p_y` is
    :math:`-\operatorname{expm1}(\log p_y)`, exact to a few ULP when
    :math:`p_y \to 1` (where ``1 - p_y`` would be 0). See :cite:t:`lin2017focal`.

    Examples
    --------
    >>> z = [[5.0, 4.0, 2.0]]
    >>> float(round(softmax_focal_loss(z, [0], gamma=2.0), 6))
    0.030294
    >>> float(round(softmax_focal_loss(z, [0], gamma=0.0), 6))  # cross-entropy
    0.349012
    """
    x, _, valid, wy, shape, _, _, _, nll, _, modulation = _focal_parts(
        input, target, gamma, weight, ignore_index, reduction
    )
    with np.errstate(invalid="ignore"):
        loss = np.where(valid, wy * modulation * nll, 0)
    reduced = weighted_reduce(loss, weight_total(wy), reduction, shape)
    return np.asarray(reduced).astype(x.dtype)[()]


def softmax_focal_loss_grad(
    input, target, gamma=2.0, weight=None, ignore_index=-100, reduction="mean"
):
    r"""Gradient of :func:`softmax_focal_loss` with respect to the logits ``input``.

    With :math:`u = 1 - p_y` and :math:`\ell = -\log p_y`,

    .. math::

        \frac{\partial \ell_i}{\partial z_{i}} = w_{y_i}\, g_i\, (p_i - e_{y_i}),
        \qquad g = u^{\gamma} + \gamma\, u^{\gamma - 1} p_y \ell
                 = u^{\gamma}\Bigl(1 + \gamma\, p_y \frac{\ell}{u}\Bigr),

    scaled as the reduction scales each loss. The last form stays finite for
    :math:`\gamma < 1` as :math:`u \to 0` (:math:`\ell / u \to 1`), where the first
    form is :math:`0 \cdot \infty`.

    Parameters
    ----------
    input, target, gamma, weight, ignore_index, reduction
        As for :func:`softmax_focal_loss`.

    Returns
    -------
    ndarray
        :math:`\partial(\text{reduced loss}) / \partial z`, shape of ``input``.

    Notes
    -----
    Equivalent to the autograd of the PyTorch expression in
    :func:`softmax_focal_loss` (away from :math:`u = 0`, where autograd's
    :math:`u^{\gamma - 1}` overflows for :math:`\gamma < 1`). See :cite:t:`lin2017focal`.

    Examples
    --------
    >>> softmax_focal_loss_grad([[5.0, 4.0, 2.0]], [0], gamma=2.0).round(4).tolist()
    [[-0.0683, 0.0602, 0.0081]]
    """
    x, y, valid, wy, shape, gamma, e, s, nll, u, modulation = _focal_parts(
        input, target, gamma, weight, ignore_index, reduction
    )
    with np.errstate(invalid="ignore", divide="ignore"):
        ratio = np.divide(nll, u, out=np.ones_like(nll), where=u != 0)
        g = modulation * (1 + gamma * (1 - u) * ratio)
        sc = sample_scale(wy, valid, weight_total(wy), reduction) * g
        e *= (sc / s)[:, None]
        np.put_along_axis(e, y[:, None], (-sc * u)[:, None], -1)
    return e.reshape(shape + x.shape[-1:]).astype(x.dtype)


# --- margin losses --------------------------------------------------------------------------------


def _margin_gap(margin, high, low):
    """``margin + high - low`` with one rounding's accuracy (the two roundings compensated).

    Near the hinge's kink the plain sum cancels; its value decides which terms are active.
    """
    with np.errstate(invalid="ignore"):
        diff, err1 = nx.two_sum(high, -low)
        total, err2 = nx.two_sum(diff, margin)
        out = total + (err1 + err2)
        return np.where(np.isfinite(total), out, total)


def _margin_setup(input, target, margin, weight, reduction):
    margin = check_finite_scalar(margin, "margin")
    x, y, _, w, shape = _index_setup(input, target, weight, None, reduction)
    return x, y, w, shape, margin


def _crammer_singer(input, target, margin, reduction):
    x, y, _, shape, margin = _margin_setup(input, target, margin, None, reduction)
    rivals = x.copy()
    np.put_along_axis(rivals, y[:, None], -np.inf, -1)
    j = np.argmax(rivals, axis=-1)  # the first best rival, as torch.max(dim)
    gap = _margin_gap(x.dtype.type(margin), _gather(rivals, j), _gather(x, y))
    return x, y, j, shape, gap


def multiclass_hinge_loss(input, target, margin=1.0, reduction="mean"):
    r"""Multiclass hinge loss of Crammer and Singer: the margin to the best rival class.

    .. math::

        \ell_i = \max\bigl(0,\ \text{margin} + \max_{j \ne y_i} z_{i,j} - z_{i, y_i}\bigr)

    With a single class there is no rival and the loss is 0.

    Parameters
    ----------
    input : array_like, shape (..., C)
        Class scores; the class axis is last.
    target : array_like of int, shape (...)
        Class indices in ``[0, C)``.
    margin : float, optional
        The required gap between the true class and every other.
    reduction : {"mean", "sum", "none"}, optional
        ``"mean"`` averages over samples.

    Returns
    -------
    numpy scalar or ndarray
        The reduced loss, or the per-sample losses of shape ``input.shape[:-1]``.

    Notes
    -----
    PyTorch has no built-in; the usual expression is
    ``torch.relu(margin + z.masked_fill(onehot, -inf).max(1).values - z[y])``.
    optax has no equivalent either. (:func:`multi_margin_loss` is the Weston-Watkins
    sum over all rivals.) The gap is evaluated with its rounding errors
    compensated, so a sample is active exactly when the true gap is positive.
    See :cite:t:`crammer2001algorithmic`.

    Examples
    --------
    >>> z = [[5.0, 4.0, 2.0], [1.0, 3.0, 0.0]]
    >>> multiclass_hinge_loss(z, [0, 0], reduction="none").tolist()
    [0.0, 3.0]
    """
    x, _, _, shape, gap = _crammer_singer(input, target, margin, reduction)
    return reduce(np.maximum(gap, 0).reshape(shape), reduction)[()]


def multiclass_hinge_loss_grad(input, target, margin=1.0, reduction="mean"):
    r"""Gradient of :func:`multiclass_hinge_loss` with respect to ``input``.

    Where the hinge is active (gap :math:`> 0`) the row gets :math:`+1` at the best
    rival :math:`j^* = \arg\max_{j \ne y} z_j` and :math:`-1` at :math:`y`; elsewhere 0.

    Parameters
    ----------
    input, target, margin, reduction
        As for :func:`multiclass_hinge_loss`.

    Returns
    -------
    ndarray
        :math:`\partial(\text{reduced loss}) / \partial z`, shape of ``input``.

    Notes
    -----
    Subgradients, as PyTorch's autograd of the expression in
    :func:`multiclass_hinge_loss`: at the kink (gap exactly 0) the derivative of
    :math:`\max(0, u)` is 0 (``torch.relu``'s backward passes the gradient only where
    its result is positive), and among tied rivals the first one gets the gradient
    (``torch.max(dim)`` returns the first maximal index). See :cite:t:`crammer2001algorithmic`.

    Examples
    --------
    >>> multiclass_hinge_loss_grad([[5.0, 4.0, 2.0], [1.0, 3.0, 0.0]], [0, 0]).tolist()
    [[0.0, 0.0, 0.0], [-0.5, 0.5, 0.0]]
    """
    x, y, j, shape, gap = _crammer_singer(input, target, margin, reduction)
    scale = reduction_scale(len(x), reduction, x.dtype)
    with np.errstate(invalid="ignore"):
        active = np.where(gap > 0, scale, np.where(np.isnan(gap), np.nan, 0)).astype(x.dtype)
    grad = np.zeros_like(x)
    np.put_along_axis(grad, j[:, None], active[:, None], -1)
    # with one class j == y and the two entries cancel to 0 (gap is -inf there)
    np.put_along_axis(grad, y[:, None], 0 - active[:, None], -1)
    return grad.reshape(shape + x.shape[-1:])


def _check_p(p) -> int:
    if isinstance(p, bool) or not isinstance(p, numbers.Real) or p not in (1, 2):
        raise ValueError(f"p must be 1 or 2; got {describe(p)}")
    return int(p)


def _weston_watkins(input, target, p, margin, weight, reduction):
    p = _check_p(p)
    x, y, w, shape, margin = _margin_setup(input, target, margin, weight, reduction)
    gaps = _margin_gap(x.dtype.type(margin), x, _gather(x, y)[:, None])
    with np.errstate(invalid="ignore"):
        active = gaps > 0
        np.put_along_axis(active, y[:, None], False, -1)
        # NaN gaps are not "active" but must still propagate
        nan = np.isnan(gaps)
    return x, y, w, shape, p, gaps, active, nan


def multi_margin_loss(input, target, p=1, margin=1.0, weight=None, reduction="mean"):
    r"""Multiclass hinge loss of Weston and Watkins, as PyTorch's ``multi_margin_loss``.

    .. math::

        \ell_i = \frac{1}{C} \sum_{j \ne y_i} w_{y_i}
                 \max\bigl(0,\ \text{margin} - z_{i, y_i} + z_{i, j}\bigr)^{p},
        \qquad p \in \{1, 2\}

    Parameters
    ----------
    input : array_like, shape (..., C)
        Class scores; the class axis is last.
    target : array_like of int, shape (...)
        Class indices in ``[0, C)``.
    p : {1, 2}, optional
        The power of each hinge term.
    margin : float, optional
        The required gap between the true class and each other class.
    weight : array_like, shape (C,), optional
        A weight per class; the target class's weight multiplies every term.
    reduction : {"mean", "sum", "none"}, optional
        ``"mean"`` averages over samples (it does not divide by weights).

    Returns
    -------
    numpy scalar or ndarray
        The reduced loss, or the per-sample losses of shape ``input.shape[:-1]``.

    Notes
    -----
    Equivalent to ``torch.nn.functional.multi_margin_loss`` (which applies the
    weight after the power, as here; its documentation writes it inside).
    See :cite:t:`weston1999support`; :func:`multiclass_hinge_loss` keeps only the
    largest rival instead :cite:p:`crammer2001algorithmic`.

    Examples
    --------
    >>> z = [[5.0, 4.0, 2.0], [1.0, 3.0, 0.0]]
    >>> multi_margin_loss(z, [0, 0], reduction="none").round(6).tolist()
    [0.0, 1.0]
    >>> multi_margin_loss(z, [0, 0], p=2, reduction="none").round(6).tolist()
    [0.0, 3.0]
    """
    x, y, w, shape, p, gaps, active, nan = _weston_watkins(
        input, target, p, margin, weight, reduction
    )
    terms = np.where(active | nan, gaps if p == 1 else gaps * gaps, 0)
    loss = np.sum(terms, axis=-1) / x.dtype.type(x.shape[-1])
    if w is not None:
        loss = w[y] * loss
    return reduce(loss.astype(x.dtype, copy=False).reshape(shape), reduction)[()]


def multi_margin_loss_grad(input, target, p=1, margin=1.0, weight=None, reduction="mean"):
    r"""Gradient of :func:`multi_margin_loss` with respect to ``input``.

    For each active rival :math:`j` (gap :math:`h_j = \text{margin} - z_y + z_j > 0`)
    the term contributes :math:`c_j = w_y\, (1 \text{ or } 2 h_j) / C` to
    :math:`\partial/\partial z_j` and :math:`-c_j` to :math:`\partial/\partial z_y`.

    Parameters
    ----------
    input, target, p, margin, weight, reduction
        As for :func:`multi_margin_loss`.

    Returns
    -------
    ndarray
        :math:`\partial(\text{reduced loss}) / \partial z`, shape of ``input``.

    Notes
    -----
    Equivalent to PyTorch's ``multi_margin_loss_backward``, which counts a term only
    where :math:`h_j > 0` strictly: the subgradient at the kink is 0.
    See :cite:t:`weston1999support`.

    Examples
    --------
    >>> multi_margin_loss_grad([[5.0, 4.0, 2.0], [1.0, 3.0, 0.0]], [0, 0]).round(6).tolist()
    [[0.0, 0.0, 0.0], [-0.166667, 0.166667, 0.0]]
    """
    x, y, w, shape, p, gaps, active, nan = _weston_watkins(
        input, target, p, margin, weight, reduction
    )
    dtype = x.dtype
    scale = reduction_scale(len(x), reduction, dtype) / dtype.type(x.shape[-1])
    coef = np.full(len(x), scale, dtype) if w is None else scale * w[y]
    with np.errstate(invalid="ignore"):
        local = np.where(active | nan, 1 if p == 1 else 2 * gaps, 0) * coef[:, None]
        local = local.astype(dtype, copy=False)
        np.put_along_axis(local, y[:, None], 0, -1)
        np.put_along_axis(local, y[:, None], 0 - np.sum(local, axis=-1)[:, None], -1)
    return local.reshape(shape + x.shape[-1:])
