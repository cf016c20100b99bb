"""Classification losses: Bernoulli, categorical and margin-based.

The categorical (softmax) and multiclass margin losses are defined here; the
binary and binary-margin losses (one decision per output) are implemented in a
private module and public from here, so that every classification loss has one
import path: ``lossutils.classification.X`` (and ``lossutils.X``).
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass, replace

import numpy as np

from . import _binary, _multilabel
from . import _numerics as nx
from ._binary import *  # noqa: F403  (public from here: one import path)
from ._blocks import BLOCK_BYTES, for_each_block
from ._checks import (
    as_array,
    as_float_array,
    check_class_input,
    check_finite_scalar,
    check_ignore_index,
    check_positive_scalar,
    check_reduction,
    check_unit_interval,
    check_unit_interval_scalar,
    class_index_target,
    class_weight,
    describe,
    float_arrays,
    gradients_in_argument_dtypes,
)
from ._multilabel import *  # noqa: F403
from ._reduction import (
    mean_past_the_range,
    mean_shares,
    reduce,
    sample_scale,
    scale_grad,
    scaled_shares,
    weighted_reduce,
)
from ._reduction import total as weight_total

__all__ = (
    [
        "nll_loss",
        "nll_loss_grad",
        "nll_loss_value_and_grad",
        "cross_entropy",
        "cross_entropy_grad",
        "cross_entropy_value_and_grad",
        "softmax_focal_loss",
        "softmax_focal_loss_grad",
        "softmax_focal_loss_value_and_grad",
        "multiclass_hinge_loss",
        "multiclass_hinge_loss_grad",
        "multiclass_hinge_loss_value_and_grad",
        "multi_margin_loss",
        "multi_margin_loss_grad",
        "multi_margin_loss_value_and_grad",
    ]
    + _binary.__all__
    + _multilabel.__all__
)


# --- shared plumbing ------------------------------------------------------------------------------


@dataclass(frozen=True)
class _IndexArgs:
    """Checked arguments of a loss with class-index targets, as rows.

    ``x`` is in the working dtype (float32 for float16 input, or what the caller asked
    for; the input's own when the caller widens what it reads); ``dtype`` is the dtype of
    the result.
    """

    x: np.ndarray  # (N, C) rows of input (a view when possible)
    y: np.ndarray  # (N,) class indices, 0 where the target is ignored
    valid: np.ndarray  # (N,) the samples that count
    weight: np.ndarray | None  # (C,) class weights, in the working dtype
    shape: tuple  # the shape of the per-sample result, input.shape[:-1]
    dtype: np.dtype

    @property
    def target_weight(self) -> np.ndarray:
        """``w[y]`` (1 without weights), 0 where the target is ignored."""
        wy = np.ones(self.y.shape, self.x.dtype) if self.weight is None else self.weight[self.y]
        return np.where(self.valid, wy, 0).astype(self.x.dtype, copy=False)

    def rows(self, index: np.ndarray, x: np.ndarray) -> _IndexArgs:
        """The samples ``index`` only, with ``x`` as their rows (e.g. their limit rows)."""
        return replace(self, x=x, y=self.y[index], valid=self.valid[index])

    def widened(self, index: np.ndarray) -> _IndexArgs:
        """The samples ``index`` only, their rows and the class weights in float64."""
        w = None if self.weight is None else self.weight.astype(np.float64)
        return replace(self.rows(index, self.x[index].astype(np.float64)), weight=w)


@dataclass(frozen=True)
class _ProbArgs:
    """Checked arguments of a cross-entropy with class-probability targets, as rows."""

    x: np.ndarray  # (N, C) rows of input, working dtype
    q: np.ndarray  # (N, C) target probabilities, smoothed, same dtype
    weight: np.ndarray | None  # (C,) class weights
    shape: tuple  # input.shape[:-1]
    dtype: np.dtype


def _index_setup(
    input,
    target,
    weight,
    ignore_index,
    reduction,
    work=None,
    limit=True,
    widen=True,
    weighted_mean=True,
    every_weight=False,
) -> _IndexArgs:
    """Check the arguments of an index-target loss; ``work`` overrides the working dtype.

    With ``limit``, a row holding ``+inf`` is replaced by its softmax limit
    (:func:`~lossutils._numerics.limit_rows`). Without ``widen`` the rows keep the input's
    dtype (a loss that reads a few entries widens those); the weights are in ``work``. With
    ``weighted_mean`` (a "mean" over the weights' total), the weights are scaled by a power
    of 2 (:func:`~lossutils._reduction.mean_shares`) after the largest of the targets'
    weights, or of all of them with ``every_weight`` (label smoothing weighs every class).
    """
    check_reduction(reduction)
    names = {"input": input} if weight is None else {"input": input, "weight": weight}
    x = float_arrays(names)[0]
    num_classes = check_class_input(x)
    work = nx.working_dtype(x.dtype) if work is None else np.dtype(work)
    w = class_weight(weight, num_classes, work)
    y, valid = class_index_target(target, x.shape, ignore_index)
    rows = nx.contiguous_rows(x.reshape(-1, num_classes))
    if weighted_mean and reduction == "mean" and w is not None:
        w = mean_shares(w, w, y[valid]) if every_weight else mean_shares(w, w[y[valid]])
    if widen:
        rows = rows.astype(work, copy=False)
    if limit:
        rows = nx.limit_rows(rows)
    return _IndexArgs(rows, y.reshape(-1), valid.reshape(-1), w, x.shape[:-1], x.dtype)


def _weight_shift(weight: np.ndarray | None, num_classes: int) -> int:
    """The power of 2 by which class weights are divided (and the results multiplied back,
    exactly) so that a sum over the classes of weighted terms stays in range.

    A loss that weighs every class in every row (label smoothing, probability targets)
    forms the total weight ``sum_c w_c`` and its product with ``log sum_c e^(x_c - m) <=
    log C``; weights within about ``C (1 + log C)`` of the largest float overflow there
    (two weights of 1.8e308: a gradient of inf where it is 0.75e308) although the loss or
    its gradient may not. 0 for other weights, and for infinite or NaN ones (their limit
    is not a scaling). Every scaled result is at least the weights' total times ``2^-s``
    times a probability, far from the subnormal range, unless it cancels.
    """
    if weight is None or not weight.size:
        return 0
    largest = float(np.max(weight))
    if not np.isfinite(largest) or largest <= 0:
        return 0
    headroom = num_classes * (1 + np.log(num_classes))
    need = np.log2(largest) + np.log2(headroom) + 1 - np.log2(float(np.finfo(weight.dtype).max))
    return max(0, int(np.ceil(need)))


def _flat_targets(num_classes: int, y: np.ndarray) -> np.ndarray:
    """The flat positions ``i * C + y[i]`` of the rows' target entries in C-ordered rows."""
    flat = np.arange(0, len(y) * num_classes, num_classes, dtype=np.intp)
    flat += y
    return flat


def _gather(rows: np.ndarray, y: np.ndarray, flat=None) -> np.ndarray:
    """``rows[i, y[i]]`` for every row (a new array); ``flat``: their flat positions."""
    if rows.flags.c_contiguous:  # by flat position: half the time of a two-index gather
        return rows.reshape(-1).take(_flat_targets(rows.shape[-1], y) if flat is None else flat)
    return rows[np.arange(len(rows)), y]


def _ce_args(input, target, weight, ignore_index, reduction, label_smoothing):
    """Validate cross-entropy arguments; index or probability targets, and the smoothing."""
    check_reduction(reduction)
    check_ignore_index(ignore_index)  # (also with probability targets, which ignore it)
    eps = check_unit_interval_scalar(label_smoothing, "label_smoothing")
    x_raw = as_float_array(input, "input")
    num_classes = check_class_input(x_raw)
    t = as_array(target, "target")
    if t.dtype.kind in "iu":  # rows holding +inf are replaced by their limit later
        setup = _index_setup(
            input, t, weight, ignore_index, reduction, limit=False, every_weight=eps > 0
        )
        return setup, eps
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
    work = nx.working_dtype(x.dtype)
    x, q = x.astype(work, copy=False), q.astype(work, copy=False)
    w = class_weight(weight, num_classes, work)
    if eps > 0:
        q = (1 - eps) * q + work.type(eps / num_classes)
    rows = nx.limit_rows(nx.contiguous_rows(x.reshape(-1, num_classes)))  # +inf: the limit
    return _ProbArgs(
        rows, nx.contiguous_rows(q.reshape(rows.shape)), w, x_raw.shape[:-1], x_raw.dtype
    ), eps


@dataclass(frozen=True)
class _Normalized:
    """A row's softmax pieces shared by a loss and its gradient (index targets)."""

    m: np.ndarray  # (N,) row maxima
    e: np.ndarray | None  # (N, C) exp(x - m), corrected (then as ``finish`` left it), if kept
    s: np.ndarray  # (N,) row sums of e if kept (in float64 for float32), else of the plain e
    r: np.ndarray  # (N,) logsumexp(x) - m, accurate also where it is tiny
    nll: np.ndarray  # (N,) -log p_y = (m - x_y) + r, two non-negative terms
    gap: np.ndarray | None  # (N,) sum_c w_c (m - x_c), with label smoothing only
    rest: tuple | None = None  # with rest_dd: the recomputed rows' exp-sum of the rest, (hi, lo)


def _normalize_index(
    args: _IndexArgs, eps: float, keep: bool, finish=None, gap=False, rest_dd=False
):
    """The softmax pieces of index-target rows, and the rows where ``r`` was recomputed.

    One blocked pass over the rows (:func:`~lossutils._numerics.exp_row_blocks`) gives the
    maxima, the plain exponentials and their sums ``v``, and, while each block is in the
    cache, ``x_y``, ``r = log(v)`` and ``-log p_y``; with ``keep`` the exponentials are then
    corrected (a gradient's probabilities need them within an ULP; ``log(v)`` does not) and
    summed in float64 into ``s``, and kept; then ``finish(rows, e_rows, s_rows, nll_rows)``,
    if given. ``r = log(v)`` is accurate wherever it is not small (``v >= 2``); where the
    maximum dominates the row and ``r`` counts (the target is the maximum, or every class
    counts under label smoothing) it is recomputed afterwards as
    :func:`~lossutils._numerics.log1p_rest`, and ``-log p_y`` with it in float64: those
    rows (returned second) saw the first ``-log p_y`` in ``finish``. With ``rest_dd`` (float64
    rows) the sum there is the double-double of
    :func:`~lossutils._numerics.exp_sum_rest_dd`, kept as ``rest``.
    """
    x, w, y = args.x, args.weight, args.y
    xy, r, nll, v = (np.empty(len(x), x.dtype) for _ in range(4))

    def block(rows, e_rows, s_rows, m_rows):
        xy[rows] = np.take_along_axis(x[rows], y[rows, None], axis=-1)[:, 0]
        r[rows] = np.log(v[rows])
        nll[rows] = (m_rows - xy[rows]) + r[rows]
        if finish is not None:
            finish(rows, e_rows, s_rows, nll[rows])

    # the value needs plain exponentials and their sum in x's dtype; a kept (gradient) e is
    # then corrected and summed on its own
    m, s, e = nx.exp_row_blocks(x, keep, correct=keep, finish=block, wide_sum=keep, v_out=v)
    # with smoothing every class's -log p counts; otherwise only rows whose target is the max
    hard = np.flatnonzero(((v < 2) if eps > 0 else (v < 2) & (xy == m)) & np.isfinite(m))
    rest = None
    if hard.size:
        if rest_dd:
            rest = nx.exp_sum_rest_dd(x, m, hard)
            wide = np.log1p(rest[0]) + rest[1] / (1 + rest[0])
        else:
            wide = nx.log1p_rest(x, m, hard)
        r[hard] = wide  # (0 <= r <= log 2)
        with np.errstate(over="ignore"):
            nll[hard] = nx.to_dtype((m[hard].astype(wide.dtype) - xy[hard]) + wide, nll.dtype)
    smooth_gap = None
    if gap:
        with np.errstate(invalid="ignore", over="ignore"):
            d = x - m[:, None]
            smooth_gap = -np.sum(d if w is None else nx.times(w, d), axis=-1)
    return _Normalized(m, e, s, r, nll, smooth_gap, rest), hard


# --- negative log-likelihood and cross-entropy ----------------------------------------------------


def _nll(input, target, weight, ignore_index, reduction, *, value=True, grad=True):
    """``(nll_loss(...), nll_loss_grad(...))``, each only if asked for (else None).

    The loss reads one entry per row: the rows stay as given (log-probabilities, not
    logits: no softmax limit; no widened copy), the gathered entries are widened, and the
    gradient is written in the output dtype.
    """
    check_ignore_index(ignore_index)
    args = _index_setup(input, target, weight, ignore_index, reduction, limit=False, widen=False)
    work, valid = nx.working_dtype(args.dtype), args.valid
    # unweighted with every sample counted (the common case): unit weights and a count
    counted = valid.all()
    plain = args.weight is None and counted
    wy = None
    if not plain:
        wy = np.ones(len(valid), work) if args.weight is None else args.weight[args.y]
        if not counted:
            wy[~valid] = 0
    total = len(valid) if plain else weight_total(wy)
    flat = _flat_targets(args.x.shape[-1], args.y)
    loss = grad_out = None
    if value:
        nlp = _gather(args.x, args.y, flat).astype(work, copy=False)  # a new array
        np.negative(nlp, out=nlp)  # -x_y
        per = nlp if plain else nx.times(wy, nlp)  # (0 where the target is ignored)
        scaled = None
        if not plain and reduction == "mean":

            def scaled():  # (for a mean whose sum overflowed only): w_y / total times -x_y
                return nx.times(sample_scale(wy, valid, total, reduction), nlp)

        factors = None if plain else (wy, nlp)  # (a sum of products of both signs)
        loss = weighted_reduce(per, total, reduction, args.shape, scaled, factors)
        loss = nx.to_dtype(loss, args.dtype)[()]
    if grad:
        # d(reduced)/dx at each target: -w_y times the reduction's factor, rounded once
        coef = np.ones(1, work) if plain else wy
        scale = sample_scale(coef, True if plain else valid, total, reduction)
        grad_out = np.zeros(args.x.shape, args.dtype)
        grad_out.reshape(-1)[flat] = nx.to_dtype(np.negative(scale), args.dtype)
        grad_out = grad_out.reshape(args.shape + args.x.shape[-1:])
    return loss, grad_out


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
        ``"mean"`` is the *weighted* mean above; it is NaN when every target is ignored
        or every counted target is in a class of weight 0 (a zero total weight).

    Returns
    -------
    numpy scalar or ndarray
        The reduced loss, or the per-sample losses of shape ``input.shape[:-1]``.

    Raises
    ------
    ValueError
        If ``reduction`` is unknown; if ``input`` has no class axis (or an empty one);
        if ``target`` is not integer, has the wrong shape, or holds an index outside
        ``[0, C)`` other than ``ignore_index``; if ``weight`` is not of length C; if
        ``ignore_index`` is not an integer.

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
    return _nll(input, target, weight, ignore_index, reduction, grad=False)[0]


@gradients_in_argument_dtypes("input")
def nll_loss_grad(input, target, weight=None, ignore_index=-100, reduction="mean"):
    r"""Gradient of :func:`nll_loss` with respect to ``input``.

    .. math::

        \frac{\partial \ell_i}{\partial x_{i, k}} = -w_{y_i}\, [k = y_i]

    scaled by :math:`1 / \sum_i w_{y_i}` for the mean. Ignored samples get 0
    (also when every sample is ignored, as PyTorch's autograd). When the total weight
    is 0 but some sample counts (its target's class weighs 0), the mean is NaN and so
    is the gradient's target entry of each counted sample, :math:`0/0`; the other
    entries, on which the loss does not depend, stay 0 (as PyTorch's autograd).

    Parameters
    ----------
    input, target, weight, ignore_index, reduction
        As for :func:`nll_loss`.

    Returns
    -------
    ndarray
        :math:`\partial(\text{reduced loss}) / \partial x`, shape of ``input``.

    Raises
    ------
    ValueError
        As :func:`nll_loss` does, for the same arguments.

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
    return _nll(input, target, weight, ignore_index, reduction, value=False)[1]


@gradients_in_argument_dtypes("input")
def nll_loss_value_and_grad(input, target, weight=None, ignore_index=-100, reduction="mean"):
    r"""``nll_loss`` and ``nll_loss_grad`` in one pass: one check, one weight gather.

    The arguments are checked and the target weights gathered once, for both.

    Parameters
    ----------
    input, target, weight, ignore_index, reduction
        Same as :func:`nll_loss`.

    Returns
    -------
    tuple
        ``(nll_loss(...), nll_loss_grad(...))``, bit for bit.

    Raises
    ------
    ValueError
        As :func:`nll_loss` does, for the same arguments.

    Examples
    --------
    >>> logp = np.log([[0.7, 0.2, 0.1], [0.1, 0.1, 0.8]])
    >>> value, grad = nll_loss_value_and_grad(logp, [0, 2])
    >>> bool(value == nll_loss(logp, [0, 2])), grad.tolist()
    (True, [[-0.5, 0.0, 0.0], [0.0, 0.0, -0.5]])
    """
    return _nll(input, target, weight, ignore_index, reduction)


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
    samples that are not ignored (both parts). When that total weight is 0 the mean is
    NaN, also under label smoothing (where the summed losses are not 0), as in PyTorch;
    and its gradient is NaN in every entry of each sample that is not ignored (0 in
    ignored ones). A probability target :math:`t_i` is
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

    Raises
    ------
    ValueError
        If ``reduction`` is unknown; if ``label_smoothing`` is not in [0, 1]; if ``input``
        has no class axis (or an empty one); if ``target`` is neither integer indices of
        shape ``input.shape[:-1]`` (each in ``[0, C)`` or ``ignore_index``) nor floating
        probabilities in [0, 1] of ``input``'s shape; if ``weight`` is not of length C; if
        ``ignore_index`` is not an integer.

    Notes
    -----
    Equivalent to ``torch.nn.functional.cross_entropy`` (class axis dim 1 there;
    for 2-D input the two agree) and, with ``reduction="none"`` and no weights, label
    smoothing or ignored targets, to optax's ``softmax_cross_entropy_with_integer_labels``
    / ``softmax_cross_entropy``.
    See :cite:t:`bishop2006pattern`, section 4.3.4.
    A row of logits holding ``+inf`` gives its limit: all the probability on the ``+inf`` entries,
    shared equally among several (they are taken to grow together; PyTorch gives NaN, see
    ``deviations.md``); a ``-inf`` entry has probability 0.

    The textbook :math:`\log \sum_k e^{z_k} - z_y` loses every digit of a confident,
    correct prediction: a loss of 1e-20 rounds to 0. Here :math:`-\log p_y` is
    :math:`(m - z_y) + \log \sum_k e^{z_k - m}`, a sum of two non-negative terms, and
    in the rows dominated by their maximum the second term is
    :math:`\operatorname{log1p}` of the sum of the other :math:`e^{z_k - m}`, with the
    rounding error of each difference :math:`z_k - m` compensated
    :cite:p:`blanchard2021accurate`. The result is within a few ULP of the exact value
    for logits up to :math:`\pm 10^4` and losses down to the underflow threshold; the
    extra work is done only in those rows. float32 (and float16) rows with class-index
    targets and no label smoothing are evaluated unshifted in float64,
    :math:`\log \sum_k e^{z_k} - z_y` with every float32 logit exact there, and rounded
    once to float32 (float16: once more); rows where that would lose digits (a loss below
    :math:`2^{-20} (1 + |\log \sum_k e^{z_k}|)`, a float64 sum of exponentials that
    overflows or falls below :math:`2^{-860}`) are shifted as above. A sample's factor
    :math:`c = d(\text{reduced}) / d(\text{loss}_i)` (:math:`w_y` for ``"none"`` and
    ``"sum"``, :math:`w_y / \sum w` for ``"mean"``) above 1 may lift a loss or probability
    from below the normal range, where it carries an absolute error of a few of the
    smallest subnormal numbers, into it: float32 (and float16) samples with such a factor
    that the unshifted evaluation leaves are shifted in float64 and rounded once; in
    float64 such a sample is within :math:`4 w_y 2^{-1074}` of the exact value (where the
    unweighted loss is below float64's smallest normal number, about
    :math:`2.2 \times 10^{-308}`).

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
    return _cross_entropy(
        input, target, weight, ignore_index, reduction, label_smoothing, grad=False
    )[0]


def _cross_entropy(
    input, target, weight, ignore_index, reduction, label_smoothing, *, value=True, grad=True
):
    """``(cross_entropy(...), cross_entropy_grad(...))``, each only if asked for (else None).

    The softmax pieces of each row are computed once and feed both.
    """
    args, eps = _ce_args(input, target, weight, ignore_index, reduction, label_smoothing)
    if isinstance(args, _ProbArgs):
        loss, grad_out = _ce_prob(args, reduction, value, grad)
    else:
        loss, grad_out = _ce_index(args, eps, reduction, value, grad)
    if loss is not None:
        loss = nx.to_dtype(loss, args.dtype)[()]
    if grad_out is not None:
        grad_out = nx.to_dtype(grad_out.reshape(args.shape + args.x.shape[-1:]), args.dtype)
    return loss, grad_out


def _ce_index(args: _IndexArgs, eps: float, reduction: str, value: bool, grad: bool):
    """The reduced index-target cross-entropy and its gradient, from one pass over the rows.

    float32 rows without label smoothing are computed unshifted in float64
    (:func:`_index_wide`), the rows it leaves by :func:`_ce_index_confident`; other rows
    by :func:`_ce_index_shifted`.
    """
    total = weight_total(args.target_weight)
    # (a mean's weights are already scaled, by mean_shares)
    shift = _weight_shift(args.weight, args.x.shape[-1]) if eps > 0 and reduction != "mean" else 0
    if shift:
        args = replace(args, weight=np.ldexp(args.weight, -shift).astype(args.weight.dtype))
    if eps > 0 or args.x.dtype != np.float32:
        per, grad_out = _ce_index_shifted(args, eps, reduction, total, value, grad)
    else:
        per, grad_out, rest = _index_wide(args, reduction, total, value, grad)
        if rest.size:
            part = args.rows(rest, args.x[rest])
            per_rest, grad_rest = _ce_index_confident(part, reduction, total, value, grad)
            if value:
                per[rest] = per_rest
            if grad:
                grad_out[rest] = grad_rest
    if eps > 0 and reduction != "mean" and args.weight is not None:
        infinite = np.isinf(args.weight)
        if infinite.any():  # every class's weight enters every row that counts
            active = np.broadcast_to(infinite, args.x.shape) & args.valid[:, None]
            _infinite_weight_limits(args.x, active, per, grad_out)
    loss = None
    if value:
        loss = weighted_reduce(per, total, reduction, args.shape, _ce_scaled(args, eps, total))
    return _shifted_back(loss, grad_out, shift)


def _infinite_weight_limits(x, active, per, grad) -> None:
    """In place: the limits of the per-sample losses ``per`` and gradient rows ``grad``
    (either may be None) of the rows where ``active`` marks classes whose coefficient
    ``a_k`` in the loss ``sum_k a_k (-log p_k)`` is infinite (a class weight of inf under
    label smoothing, or with a nonzero probability target); rows holding NaN, or only
    ``-inf``, stay as computed.

    Each such class adds ``a_k (p_j - [j = k])`` to entry ``j`` and ``a_k (-log p_k)`` to
    the loss: the loss is ``+inf`` unless ``p_k = 1`` (``inf * 0``: NaN); an entry of
    another class is ``+inf`` where ``p_j > 0`` (NaN where ``p_j = 0``: ``inf * 0``); the
    entry of the one such class is ``-inf`` where ``p_k < 1``; of two or more, NaN
    (``inf - inf``). ``p`` is that of the limit row where a row holds ``+inf``.
    """
    with np.errstate(invalid="ignore"):
        rows = active.any(axis=-1) & ~np.isnan(x).any(axis=-1) & (x > -np.inf).any(axis=-1)
    rows = np.flatnonzero(rows)
    if not rows.size:
        return
    xr, on = x[rows], active[rows]
    top = xr == np.inf
    pos = np.where(top.any(axis=-1, keepdims=True), top, xr > -np.inf)  # p_j > 0
    below = ~pos | (pos.sum(axis=-1, keepdims=True) >= 2)  # p_j < 1
    if per is not None:
        per[rows] = np.where((on & below).any(axis=-1), np.inf, np.nan)
    if grad is not None:
        single = on.sum(axis=-1, keepdims=True) == 1
        own = np.where(single & below, -np.inf, np.nan)
        grad[rows] = np.where(on, own, np.where(pos, np.inf, np.nan))


def _shifted_back(loss, grad_out, shift: int):
    """``loss`` and ``grad_out`` (either may be None) times ``2^shift`` (exact, or inf)."""
    if not shift:
        return loss, grad_out
    with np.errstate(over="ignore"):
        if loss is not None:
            loss = np.ldexp(loss, shift)
        if grad_out is not None:
            grad_out = np.ldexp(grad_out, shift, out=grad_out)
    return loss, grad_out


def _ce_scaled(args: _IndexArgs, eps: float, total):
    """For :func:`weighted_reduce`: the per-sample losses with the class weights divided by
    their total first (each loss is linear in the weights), where a weighted loss may
    overflow float64 though the mean does not; None where it cannot (no weights, or
    float32 rows, whose losses are summed in float64)."""
    if args.weight is None or args.x.dtype != np.float64:
        return None

    def scaled():
        with np.errstate(invalid="ignore", divide="ignore"):
            part = replace(args, weight=args.weight / total)
        return _ce_index_shifted(part, eps, "none", total, True, False)[0]

    return scaled


def _ce_index_shifted(args: _IndexArgs, eps: float, reduction: str, total, value, grad):
    """Per-sample losses and gradient rows (each None unless asked for), shifted by the
    row maxima; a row holding ``+inf`` from its limit row
    (:func:`~lossutils._numerics.limit_rows`), which its maximum tells."""
    per, grad_out, m = _ce_index_rows(args, eps, reduction, total, value, grad)
    _redo_infinite_rows(
        args,
        m,
        lambda limit: _ce_index_rows(limit, eps, reduction, total, value, grad),
        per,
        grad_out,
    )
    return per, grad_out


def _redo_infinite_rows(args: _IndexArgs, m, compute, *outputs) -> np.ndarray:
    """In place: the rows of ``outputs`` (per-sample arrays; None is skipped) whose maximum
    ``m`` is ``+inf``, again from their limit rows (:func:`~lossutils._numerics.limit_rows`):
    ``compute(limit_args)`` gives the same outputs for those rows only. Only the rows that
    hold ``+inf`` are replaced, not the whole input up front. Returns those rows."""
    infinite = np.flatnonzero(m == np.inf)
    if infinite.size:  # (a row holding NaN has no limit row: it stays as computed)
        infinite = infinite[~np.isnan(args.x[infinite]).any(axis=-1)]
    if infinite.size:
        limit = args.rows(infinite, nx.limit_rows(args.x[infinite]))
        for out, part in zip(outputs, compute(limit), strict=False):
            if out is not None:
                out[infinite] = part
    return infinite


def _ce_index_confident(args: _IndexArgs, reduction: str, total, value, grad):
    """:func:`_ce_index_shifted` of float32 rows (no smoothing); in float64, rounded once,
    for the samples whose factor ``d(reduced) / d(loss_i)`` exceeds 1.

    Such a factor (a class weight above 1) may lift a loss or probability below float32's
    normal range, where it has lost digits, into it: ``16 e^-90`` from the float32
    subnormal ``e^-90`` is 4.5 ULP off, ``2^20 e^-95`` 98 ULP. In float64 they are normal.
    """
    lifted = sample_scale(args.target_weight, args.valid, total, reduction) > 1
    if not lifted.any():
        return _ce_index_shifted(args, 0.0, reduction, total, value, grad)
    per = np.empty(len(args.x), np.float32) if value else None
    grad_out = np.empty_like(args.x) if grad else None
    kept, up = np.flatnonzero(~lifted), np.flatnonzero(lifted)
    for index, part in ((kept, args.rows(kept, args.x[kept])), (up, args.widened(up))):
        per_part, grad_part = _ce_index_shifted(part, 0.0, reduction, total, value, grad)
        if value:
            per[index] = nx.to_dtype(per_part, np.float32)
        if grad:
            grad_out[index] = nx.to_dtype(grad_part, np.float32)
    return per, grad_out


def _ce_terms(nll, c):
    """Cross-entropy's per-row loss, gradient coefficient and target entry (see
    :func:`_index_wide`): ``-log p_y``, ``c`` and ``c (p_y - 1) = c expm1(-log p_y)``."""
    return nll, c, c * np.expm1(-nll)


def _index_wide(args: _IndexArgs, reduction: str, total, value, grad, terms=_ce_terms):
    """Per-sample losses and gradient rows of float32 rows in float64 and unshifted; and the
    rows left over. For cross-entropy (no label smoothing) and the softmax focal loss.

    The row sums ``s`` of :func:`~lossutils._numerics.wide_exp_sums` give
    ``-log p_y = log(s) - x_y``; ``terms(nll, c)``, with ``c`` the sample's factor
    ``d(reduced) / d(loss_i)``, gives each row's loss, the coefficient ``k`` of its gradient
    ``k e^x / s`` and the gradient's target entry, all in float64, rounded once (within half
    an ULP and a hair of the float64 values). ``log(s)`` is within ``2^-50 (1 + |log s|)`` of
    ``logsumexp(x)``; where ``-log p_y`` is at least ``2^-20 (1 + |log s|)`` that is below
    ``2^-30`` of it. Rows are left over where the target is so confident that ``-log p_y``
    is smaller (its digits need the shift and the compensated sum), where ``wide_exp_sums``
    leaves them (an infinite, NaN, overflowing or all-tiny row), where ``k / s`` is below
    float64's normal range (a small weight share of a row sum near the overflow threshold),
    and where ``s < 2^-860 k`` (a coefficient above 1 would lift a float64 subnormal
    exponential into float32's range; the floor of ``wide_exp_sums`` assumes ``k <= 1``).
    The tests do not depend on whether a gradient is asked for, so the loss is the same bits
    in every call.
    """
    x, y, valid = args.x, args.y, args.valid
    wy = args.target_weight
    scale = sample_scale(wy, valid, total, reduction).astype(np.float64)
    nll = np.empty(len(x))
    big = np.empty(len(x))  # 1 + |log s|, for the accuracy test
    loss = np.empty(len(x))
    coef = np.empty(len(x))
    factor = np.empty(len(x))  # k / s
    xy = _gather(x, y).astype(np.float64)
    g = np.empty_like(x) if grad else None

    def finish(part, e, s):
        log_s = np.log(s)
        nll[part] = log_s - xy[part]
        big[part] = 1 + np.abs(log_s)
        loss[part], coef[part], target = terms(nll[part], scale[part])
        np.divide(coef[part], s, out=factor[part])
        if grad:
            e *= factor[part, None]
            g[part] = e
            np.put_along_axis(g[part], y[part, None], target[:, None], axis=-1)

    with np.errstate(invalid="ignore", over="ignore", under="ignore", divide="ignore"):
        s, ok = nx.wide_exp_sums(x, finish)
        ok &= nll >= 2.0**-20 * big
        ok &= ~(factor < np.finfo(np.float64).smallest_normal) | (coef == 0)
        ok &= ~(s < 2.0**-860 * np.abs(coef))
    rest = np.flatnonzero(~ok)
    per = None
    if value:
        with np.errstate(invalid="ignore", over="ignore"):  # a zero weight masks its sample
            loss = nx.times(wy.astype(np.float64), loss)
        per = np.where(valid, loss, 0)  # float64: rounded once, by the reduction's caller
    if grad:
        g[np.flatnonzero(scale == 0)] = 0  # an ignored sample, or one of weight 0
    return per, g, rest


def _ce_index_rows(args: _IndexArgs, eps: float, reduction: str, total, value, grad):
    """Per-sample losses, gradient rows (each None unless asked for) and row maxima.

    The gradient ``scale * p`` of each row and its target entry, ``p_y - 1 = expm1(-nll)``
    from the accurate loss, are formed block by block while the exponentials are in the
    cache; rows whose ``-log p_y`` was recomputed afterwards get their target entry again.
    """
    dtype, w, y, valid = args.x.dtype, args.weight, args.y, args.valid
    wy = args.target_weight
    finish = None
    if grad and eps == 0:
        scale = sample_scale(np.ones_like(wy) if w is None else wy, valid, total, reduction)

        def target_entry(rows, nll):
            return scale[rows] * np.expm1(-nll)

        def finish(rows, e, s, nll):
            # float32: the product in float64, rounded once (as softmax's quotient)
            e *= (scale[rows] / s)[:, None]
            np.put_along_axis(e, y[rows, None], target_entry(rows, nll)[:, None], -1)

    elif grad:
        num_classes = args.x.shape[-1]
        with np.errstate(over="ignore"):  # (weights beyond the largest float: inf)
            total_w = dtype.type(num_classes) if w is None else np.sum(w)
        wy_raw = np.ones_like(wy) if w is None else w[y]
        share = dtype.type(eps / num_classes)
        scale = sample_scale(np.ones_like(wy), valid, total, reduction)
        with np.errstate(invalid="ignore", over="ignore"):
            coef = scale * ((1 - eps) * wy_raw + share * total_w)
            floor = (scale * share)[:, None]

        # p_y from the corrected exponential: exp(-nll) would carry nll's rounding times
        # nll, which counts where total_w p_y outweighs w_y (7.5 ULP at nll = 30)
        p_y = np.empty(len(y))  # (float64: float32's quotient e_y / s is float64)

        def target_entry(rows, nll):
            smooth = share * (total_w * p_y[rows] - wy_raw[rows])
            return scale[rows] * ((1 - eps) * wy_raw[rows] * np.expm1(-nll) + smooth)

        def finish(rows, e, s, nll):
            with np.errstate(invalid="ignore", divide="ignore"):
                p_y[rows] = np.take_along_axis(e, y[rows, None], -1)[:, 0] / s
            e *= (coef[rows] / s)[:, None]
            e -= floor[rows] * (1 if w is None else w)
            np.put_along_axis(e, y[rows, None], target_entry(rows, nll)[:, None], -1)

    pieces, hard = _normalize_index(args, eps, grad, finish, gap=value and eps > 0)
    per = _ce_index_loss(args, eps, pieces, wy) if value else None
    if not grad:
        return per, None, pieces.m
    e = pieces.e
    if hard.size:
        with np.errstate(invalid="ignore", over="ignore"):
            entry = target_entry(hard, pieces.nll[hard]).astype(dtype, copy=False)
        e[hard, y[hard]] = entry
    if eps > 0 and w is not None:
        _smoothed_dominated_rows(e, args, pieces, eps, scale)
    if eps == 0:
        _infinite_factor_rows(e, args, scale)
    # an ignored sample (or, without smoothing, one of weight 0) has no gradient, also
    # where its row is infinite
    masked = np.flatnonzero(~valid if eps > 0 else (scale == 0))
    if masked.size:
        e[masked] = 0
    return per, e, pieces.m


def _smoothed_dominated_rows(g, args: _IndexArgs, pieces: _Normalized, eps, scale):
    """In place: the weighted smoothed gradient rows ``g`` of the rows dominated by their
    maximum, ``scale ((1 - eps) w_y (p - [k = y]) + eps / C (W p - w))``, the second part
    from :func:`_dominated_grad`: ``W p_k - w_k`` cancels at the maximal class (``p`` near
    1), and a huge weight there would otherwise drown the other classes' share."""
    x, w, y = args.x, args.weight, args.y
    if not np.isfinite(w).all():  # (infinite weights: their limits, set afterwards)
        return
    rows = np.flatnonzero((pieces.s < 2) & np.isfinite(pieces.m) & args.valid)
    if not rows.size:
        return
    # only where the plain form loses: W p_top near w_top (p_top is about 1 / s), or
    # float32 rows whose weights lift a probability float32 may flush
    with np.errstate(over="ignore", invalid="ignore"):
        total_w = np.sum(w.astype(np.float64))
        w_top = w[np.argmax(x[rows], axis=-1)].astype(np.float64)
        keep = total_w / pieces.s[rows] <= 2 * w_top
        if x.dtype != np.float64:
            keep |= eps / x.shape[-1] * total_w * scale[rows] > 1
    rows = rows[keep]
    if not rows.size:
        return
    # float32 rows in float64: a weight may lift a probability that float32 flushes
    xr, yr, w = x[rows].astype(np.float64), y[rows, None], w.astype(np.float64)
    er = np.empty_like(xr)
    mr = nx.exp_rows(xr, er)[0]
    total = np.full(len(rows), np.sum(w))
    smooth, p, one_minus = _dominated_grad(xr, mr, er, np.broadcast_to(w, xr.shape), total)
    with np.errstate(invalid="ignore", over="ignore"):
        own = (1 - eps) * w[yr]
        part = own * p + eps / x.shape[-1] * smooth
        target = -own[:, 0] * np.take_along_axis(one_minus, yr, -1)[:, 0]
        target += eps / x.shape[-1] * np.take_along_axis(smooth, yr, -1)[:, 0]
        np.put_along_axis(part, yr, target[:, None], -1)
        part *= scale[rows, None]
    g[rows] = nx.to_dtype(part, g.dtype)


def _weighted_losses(args: _IndexArgs, pieces: _Normalized, coef: np.ndarray, loss):
    """``coef * loss`` per sample, 0 where ignored, for a ``loss`` that is ``-log p_y`` where
    that overflows (cross-entropy, or the focal loss, whose modulation is 1 there).

    ``-log p_y = (m - x_y) + r`` overflows where the logits are finite but more than the
    largest number apart (``1e308`` and ``-1e308``); a coefficient below 1 (a class weight,
    or a weight over the total) may bring the product back: there it is
    ``c m - c x_y + c r``, two terms of opposite signs that do not cancel.
    """
    with np.errstate(invalid="ignore", over="ignore"):
        # a zero weight masks its sample, also where -log p_y is infinite
        per = np.where(args.valid, nx.times(coef, loss), 0).astype(loss.dtype, copy=False)
        over = np.flatnonzero((loss == np.inf) & (coef > 0) & (coef < 1) & np.isfinite(pieces.m))
        if over.size:
            c, m = coef[over].astype(loss.dtype), pieces.m[over]
            xy = args.x[over, args.y[over]]
            per[over] = (c * m - c * xy) + c * pieces.r[over]
    return per


def _infinite_factor_rows(g, args: _IndexArgs, factor) -> None:
    """In place: the gradient rows whose factor ``d(reduced) / d(loss_i)`` is ``+inf`` (an
    infinite class weight, ``"sum"`` or ``"none"``) get ``+inf`` at each other class of
    finite logit whose entry is NaN.

    There the entry is the factor times a positive ``p_k`` (times the focal loss's positive
    coefficient): ``+inf`` exactly, also where ``p_k`` underflows the working dtype (the
    computed ``inf * 0`` is NaN, and would depend on the dtype: float32 rows in float64
    keep ``p_k = e^-200``). A class of logit ``-inf`` (``p_k = 0``) and a row holding NaN
    stay NaN.
    """
    rows = np.flatnonzero(factor == np.inf)
    if not rows.size:
        return
    xr, gr = args.x[rows], g[rows]
    fix = np.isnan(gr) & np.isfinite(xr) & ~np.isnan(xr).any(axis=-1, keepdims=True)
    fix[np.arange(len(rows)), args.y[rows]] = False
    gr[fix] = np.inf
    g[rows] = gr


def _ce_index_loss(args: _IndexArgs, eps: float, pieces: _Normalized, wy: np.ndarray):
    """Per-sample cross-entropy with class-index targets (``wy``: the target weights)."""
    dtype, w, num_classes = args.x.dtype, args.weight, args.x.shape[-1]
    if w is not None and eps == 0:
        return _weighted_losses(args, pieces, wy, pieces.nll)
    with np.errstate(invalid="ignore", over="ignore"):
        # a zero weight masks its sample, also where -log p_y is infinite
        loss = pieces.nll if w is None and eps == 0 else nx.times(wy, pieces.nll)
        if eps > 0:
            total_w = num_classes if w is None else np.sum(w)
            share = dtype.type(eps / num_classes)

            def smoothed(target_term, gap, r):
                smooth = gap + total_w * r
                # (at eps = 1 the target term is absent: 0 * inf would be NaN)
                return share * smooth if eps == 1 else (1 - eps) * target_term + share * smooth

            loss = smoothed(loss, pieces.gap, pieces.r)
            if w is not None and dtype != np.float64:
                # a float32 r below the normal range has lost digits that a weight may lift
                # into range: those rows' r and -log p_y in float64, rounded once
                tiny = np.flatnonzero((pieces.r < np.finfo(dtype).smallest_normal) & args.valid)
                tiny = tiny[np.isfinite(pieces.m[tiny])]
                if tiny.size:
                    r = nx.log1p_rest(args.x, pieces.m, tiny)
                    nll = (pieces.m[tiny] - _gather(args.x[tiny], args.y[tiny])).astype(r.dtype)
                    target_term = wy[tiny].astype(r.dtype) * (nll + r)
                    loss[tiny] = nx.to_dtype(smoothed(target_term, pieces.gap[tiny], r), dtype)
            over = np.flatnonzero(np.isinf(loss) & args.valid)
            if over.size:
                _smoothed_beyond_range(args, pieces, over, eps, share, total_w, loss)
        return np.where(args.valid, loss, 0).astype(dtype, copy=False)


def _smoothed_beyond_range(args, pieces, rows, eps, share, total_w, loss) -> None:
    """In place: ``loss[rows]``, smoothed cross-entropies that overflowed, again where the
    logits are finite: their parts linear in the logits, ``(1 - eps) w_y (m - x_y)`` and
    ``eps / C sum_c w_c (m - x_c)``, overflow when the logits are more than the largest
    number apart, although weights below 1 may bring the loss back into range. They are
    formed from the halved logits (exact) and doubled once at the end."""
    x, w = args.x[rows], args.weight
    keep = np.isfinite(x).all(axis=-1)
    rows = rows[keep]
    if not rows.size:
        return
    x, m, y = x[keep] / 2, pieces.m[rows] / 2, args.y[rows]
    wy = np.ones(len(rows), x.dtype) if w is None else w[y]
    with np.errstate(over="ignore", invalid="ignore"):  # (inf where the loss is)
        d = m[:, None] - x
        gap = np.sum(d if w is None else w * d, axis=-1)
        linear = share * gap if eps == 1 else (1 - eps) * wy * _gather(d, y) + share * gap
        loss[rows] = 2 * linear + ((1 - eps) * wy + share * total_w) * pieces.r[rows]


def _ce_prob(args: _ProbArgs, reduction: str, value: bool, grad: bool):
    """The reduced probability-target cross-entropy and its gradient, from one normalization.

    ``-sum_c w_c q_c log p_c = sum_c w_c q_c (m - x_c) + (sum_c w_c q_c) r``: two sums of
    non-negative terms (a class with ``w_c q_c = 0`` is absent, also at ``x_c = -inf``).
    """
    shift = _weight_shift(args.weight, args.x.shape[-1])
    w = args.weight if not shift else np.ldexp(args.weight, -shift).astype(args.weight.dtype)
    x, wq = args.x, (args.q if w is None else nx.times(args.q, w))  # (q = 0: no term)
    v = np.empty(len(x), x.dtype)  # the value's sums, of the plain exponentials
    m, s, e = nx.exp_row_blocks(x, keep=grad, correct=grad, wide_sum=grad, v_out=v)
    with np.errstate(invalid="ignore"):
        total = np.sum(wq, axis=-1)
    per = loss = grad_out = None
    if value:
        with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
            r = np.log(v)
            hard = np.flatnonzero((v < 2) & np.isfinite(m))
            if hard.size:  # dominated rows: every digit of a small r counts (0 <= r <= log 2)
                r[hard] = nx.log1p_rest(x, m, hard)
            gap = -np.sum(nx.times(wq, x - m[:, None]), axis=-1)
            per = gap + total * r
    if grad:  # after the loss: it overwrites e
        grad_out = _ce_prob_grad(args, reduction, wq, m, e, s, total)
    if w is not None and np.isinf(w).any():
        _infinite_weight_limits(x, np.isinf(w) & (args.q > 0), per, grad_out)
    if value:
        loss = weighted_reduce(per, per.size, reduction, args.shape)
    return _shifted_back(loss, grad_out, shift)


@gradients_in_argument_dtypes("input")
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
    ignored samples get 0. A mean over a zero total weight is NaN, and so is every
    entry of each sample that is not ignored. An infinite class weight (for ``"sum"`` or
    ``"none"``) makes each entry of finite logit of its samples :math:`\pm\infty`, the
    exact product with a nonzero :math:`p_k - [k = y]` also where :math:`p_k` underflows
    the dtype (NaN where the logit is :math:`-\infty`: :math:`\infty \cdot 0`); a mean
    over an infinite total weight is NaN in the rows of infinite weight and 0 in the
    others. With label smoothing every class's weight enters every row, and with a
    probability target every class of nonzero target: there, outside a weighted mean, an
    infinite weight of class :math:`k` gives the limits, a loss of :math:`+\infty`
    (NaN where :math:`p_k = 1`) and :math:`-\infty` at entry :math:`k`, :math:`+\infty` at
    the others (NaN where :math:`p_j = 0`, and at entry :math:`k` where two or more such
    weights are infinite: :math:`\infty - \infty`).

    Parameters
    ----------
    input, target, weight, ignore_index, reduction, label_smoothing
        As for :func:`cross_entropy`.

    Returns
    -------
    ndarray
        :math:`\partial(\text{reduced loss}) / \partial z`, shape of ``input``.

    Raises
    ------
    ValueError
        As :func:`cross_entropy` does, for the same arguments.

    Notes
    -----
    Equivalent to the autograd of ``torch.nn.functional.cross_entropy``; optax's
    losses have no separate gradient function. The target entry
    :math:`p_y - 1` is evaluated as :math:`\operatorname{expm1}(-\ell)` from the
    accurate loss, so it keeps its relative accuracy when :math:`p_y \to 1`. Every
    probability is corrected for the rounding of :math:`z_k - m` and is within a few ULP,
    however far in the tail (uncorrected, an entry :math:`d = z_k - m` carries up to
    :math:`|d|/2` ULP). Where an entry is the difference of two nearly equal terms (a
    probability near :math:`\varepsilon / C` under label smoothing, or near its
    probability target, as at the optimum) it cancels: it is then within a few ULP of
    the larger of the two terms, not of the (much smaller) result, which no evaluation
    of :math:`p` to working precision can give.
    See :cite:t:`bishop2006pattern`, section 4.3.4.

    Examples
    --------
    >>> cross_entropy_grad([[5.0, 4.0, 2.0]], [0]).round(4).tolist()
    [[-0.2946, 0.2595, 0.0351]]
    """
    return _cross_entropy(
        input, target, weight, ignore_index, reduction, label_smoothing, value=False
    )[1]


@gradients_in_argument_dtypes("input")
def cross_entropy_value_and_grad(
    input, target, weight=None, ignore_index=-100, reduction="mean", label_smoothing=0.0
):
    r"""``cross_entropy`` and ``cross_entropy_grad`` in one pass: one softmax per row.

    The shift by the row maximum, the exponentials and the log-normalizer of each row are
    computed once and feed both.

    Parameters
    ----------
    input, target, weight, ignore_index, reduction, label_smoothing
        Same as :func:`cross_entropy`.

    Returns
    -------
    tuple
        ``(cross_entropy(...), cross_entropy_grad(...))``, bit for bit.

    Raises
    ------
    ValueError
        As :func:`cross_entropy` does, for the same arguments.

    Examples
    --------
    >>> z = [[5.0, 4.0, 2.0]]
    >>> value, grad = cross_entropy_value_and_grad(z, [0])
    >>> bool(value == cross_entropy(z, [0])), bool((grad == cross_entropy_grad(z, [0])).all())
    (True, True)
    >>> grad.round(4).tolist()
    [[-0.2946, 0.2595, 0.0351]]
    """
    return _cross_entropy(input, target, weight, ignore_index, reduction, label_smoothing)


def _dominated_grad(xr, mr, er, wq, total):
    """``W p - w q`` (``W = sum_c w_c q_c``) of rows dominated by their maximum, as
    ``p (W - w q) - w q (1 - p)``; and ``p`` and ``1 - p``.

    ``er`` holds the rows' corrected ``exp(x - m)``; ``1 - p`` of the maximal class comes
    from the compensated sum of the other classes, and that class's ``W - w q`` is the sum
    of the other classes' ``w q``: the rounded total minus its own ``w q`` would lose (or
    flip the sign of) a small remainder.
    """
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        top = np.argmax(xr, axis=-1)[:, None]
        rest = nx.exp_sum_rest(xr, mr)
        p = er / (1 + rest)[:, None]
        one_minus = 1 - p
        np.put_along_axis(one_minus, top, (rest / (1 + rest))[:, None], -1)
        others = total[:, None] - wq
        rest_wq = np.array(wq, copy=True)
        np.put_along_axis(rest_wq, top, 0, -1)
        np.put_along_axis(others, top, np.sum(rest_wq, -1)[:, None], -1)
        return p * others - nx.times(wq, one_minus), p, one_minus


def _ce_prob_grad(args: _ProbArgs, reduction: str, wq, m, e, s, total) -> np.ndarray:
    """``(sum_c w_c q_c) p - w q`` per row, scaled by 1/N for the mean.

    In rows dominated by their maximum (``S < 2``) the entry of the maximal class would
    cancel (``W p - w q`` with ``p`` near 1); there the gradient is evaluated as
    ``p (W - w q) - w q (1 - p)``, with ``1 - p`` of the maximal class from the compensated
    sum of the other classes.
    """
    x = args.x
    scale = sample_scale(np.ones(len(x), x.dtype), True, len(x), reduction)
    with np.errstate(invalid="ignore", divide="ignore"):
        rows = np.flatnonzero((s < 2) & np.isfinite(m))
        careful = None
        if rows.size:
            careful = _dominated_grad(x[rows], m[rows], e[rows], wq[rows], total[rows])[0]
            careful *= scale[rows, None]
        e *= (scale * total / s)[:, None]
        e -= scale[:, None] * wq
        if careful is not None:
            e[rows] = careful
    return e


_FLOAT64_MAX = float(np.finfo(np.float64).max)

# --- focal loss -----------------------------------------------------------------------------------


def _focal_terms(gamma: float):
    r"""The focal loss's per-row loss, gradient coefficient and target entry (see
    :func:`_index_wide`) from ``-log p_y``: ``u^gamma (-log p_y)`` with ``u = 1 - p_y``; the
    coefficient ``c g`` with ``g = u^gamma (1 + gamma p_y (-log p_y) / u)``; and ``-c g u``.
    ``u = -expm1(-log p_y)`` does not cancel; ``p_y = e^{log p_y}`` does not either where
    ``p_y`` is tiny (a confident wrong row), and ``p_y log p_y -> 0`` as ``p_y -> 0`` (an
    infinite ``-log p_y``). With the row sums ``s`` (float64 rows), also the gradient's row
    factor ``c g / s``, and the target entry, from ``g`` in double-double: one rounding
    each instead of five (``c``, a factor beyond ``2^900``, and a non-finite ``g`` keep the
    plain products)."""

    def terms(nll, c, s=None):
        u = -np.expm1(-nll)
        modulation = u**gamma
        ratio = np.divide(nll, u, out=np.ones_like(nll), where=u != 0)
        t = gamma * nx.times(np.exp(-nll), ratio)
        k = c * (modulation * (1 + t))
        if s is None:
            return modulation * nll, k, -k * u
        plain = ~(np.abs(c) < 2.0**900) | ~np.isfinite(k) | ~(s > 0)
        g = nx.dd_mul(modulation, 0.0, *nx.two_sum(np.ones_like(t), t))
        g = nx.dd_mul(*g, np.where(plain, 1, c), 0.0)
        factor = nx.dd_div(*g, np.where(plain, 1, s), 0.0)[0]
        target = -nx.dd_mul(*g, u, 0.0)[0]
        factor = np.where(plain, k / s, factor)
        target = np.where(plain, -k * u, target)
        return modulation * nll, k, target, factor

    return terms


def _focal_terms_dominated(gamma: float):
    r""":func:`_focal_terms` of rows dominated by their target (``p_y > 1/2``), from the sum
    ``R = (1 - p_y) / p_y`` of the other exponentials as a double-double ``(r_hi, r_lo)``
    (:func:`~lossutils._numerics.exp_sum_rest_dd`); and the gradient's row factor ``c g /
    (1 + R)`` as a double-double (the target entry is then ``-c g u``, rounded once).

    There the loss behaves like :math:`R^{1 + \gamma}`, so each rounding of ``-log p_y``
    or ``u = 1 - p_y`` on the way to it is multiplied by up to :math:`1 + \gamma`. Here
    ``-log p_y = log1p(R)`` and ``u = R / (1 + R)`` come from the exact ``R`` with one
    rounding each, ``u`` kept as a double-double so that ``u^gamma`` is ``pow(u_hi, gamma)
    (1 + gamma u_lo / u_hi)``, within about an ULP; and ``p_y (-log p_y) / u`` is
    ``log1p(R) / R`` (1 at ``R = 0``). The gradient's products and quotients are formed in
    double-double (each of six roundings cost up to half an ULP: 4.3 ULP at gamma = 0.5),
    leaving ``pow``'s and ``log1p``'s errors and one rounding per entry. A factor ``c``
    beyond ``2^900`` (outside Dekker's product's domain) multiplies the rounded factor."""

    def terms(r_hi, r_lo, c):
        log1p_r = np.log1p(r_hi)
        nll_hi, nll_lo = nx.two_sum(log1p_r, r_lo / (1 + r_hi))
        nll = nll_hi
        s_hi, s_lo = nx.two_sum(np.ones_like(r_hi), r_hi)  # 1 + R
        s_lo += r_lo
        u = r_hi / s_hi
        p, p_err = nx.two_prod(u, s_hi)
        residual = ((r_hi - p) - p_err) + (r_lo - u * s_lo)  # R - u (1 + R), r_hi - p exact
        u_lo = residual / s_hi
        shift = np.divide(gamma * residual, r_hi, out=np.zeros_like(u), where=u > 0)
        power = u**gamma
        mod_hi, mod_lo = nx.two_sum(power, power * shift)
        modulation = mod_hi
        ratio = np.divide(nll, r_hi, out=np.ones_like(u), where=r_hi > 0)
        k = c * (modulation * (1 + gamma * ratio))
        # the gradient: g = u^gamma (1 + gamma log1p(R) / R), c g / (1 + R) and -c g u
        tiny = r_hi > 0
        q_hi, q_lo = nx.dd_div(nll_hi, nll_lo, np.where(tiny, r_hi, 1), np.where(tiny, r_lo, 0))
        q_hi, q_lo = np.where(tiny, q_hi, 1), np.where(tiny, q_lo, 0)
        a_hi, a_lo = nx.dd_add(1.0, 0.0, *nx.dd_mul(gamma, 0.0, q_hi, q_lo))
        g_hi, g_lo = nx.dd_mul(mod_hi, mod_lo, a_hi, a_lo)
        safe = np.abs(c) < 2.0**900
        c_safe = np.where(safe, c, 1)
        f_hi, f_lo = nx.dd_mul(*nx.dd_div(g_hi, g_lo, s_hi, s_lo), c_safe, 0.0)
        t_hi, t_lo = nx.dd_mul(*nx.dd_mul(g_hi, g_lo, u, u_lo), c_safe, 0.0)
        f_hi = np.where(safe, f_hi, c * f_hi)
        f_lo = np.where(safe, f_lo, 0)
        target = np.where(safe, -(t_hi + t_lo), -k * u)
        return modulation * nll, k, target, (f_hi, f_lo)

    return terms


def softmax_focal_loss(input, target, gamma=2.0, weight=None, ignore_index=-100, reduction="mean"):
    r"""Focal loss on softmax probabilities: cross-entropy down-weighted where it is small.

    .. math::

        \ell_i = -w_{y_i} (1 - p_{i, y_i})^{\gamma} \log p_{i, y_i},
        \qquad p_i = \operatorname{softmax}(z_i),

    reduced as :func:`cross_entropy` (the mean divides by :math:`\sum_i w_{y_i}` over
    the samples that are not ignored, and is NaN when that is 0). ``gamma=0`` is
    :func:`cross_entropy`.

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

    Raises
    ------
    ValueError
        If ``gamma`` is negative or not finite; otherwise as :func:`nll_loss` (class
        axis, targets, ``weight``, ``ignore_index``, ``reduction``).

    Notes
    -----
    PyTorch and optax have no softmax focal loss; the usual PyTorch code is
    ``-(w[y] * (1 - p_y) ** gamma * log_softmax(z)[y])`` with ``nll_loss``'s
    weighted mean, which this reproduces. :math:`-\log p_y` is the accurate
    cross-entropy of :func:`cross_entropy`, and :math:`1 - p_y` is
    :math:`-\operatorname{expm1}(\log p_y)`, exact to a few ULP when
    :math:`p_y \to 1` (where ``1 - p_y`` would be 0). In float64, a row whose target is
    its maximum takes :math:`1 - p_y = R / (1 + R)` and :math:`-\log p_y =
    \operatorname{log1p}(R)` from the double-double sum :math:`R` of the other classes'
    :math:`e^{z_k - z_y}` (so does any row with :math:`p_y \ge 1/8`): the power
    :math:`(1 - p_y)^\gamma` multiplies the relative error of :math:`1 - p_y` by
    :math:`\gamma`; the gradient's row factor is formed in double-double and rounded
    once. float64 results are within :math:`2 + 1.5 (1 + \gamma)` ULP; float32 and
    float16 ones are rounded once from float64. See :cite:t:`lin2017focal`.

    Examples
    --------
    >>> z = [[5.0, 4.0, 2.0]]
    >>> float(round(softmax_focal_loss(z, [0], gamma=2.0), 6))
    0.030294
    >>> float(round(softmax_focal_loss(z, [0], gamma=0.0), 6))  # cross-entropy
    0.349012
    """
    return _softmax_focal(input, target, gamma, weight, ignore_index, reduction, grad=False)[0]


def _softmax_focal(input, target, gamma, weight, ignore_index, reduction, *, value=True, grad=True):
    r"""``(softmax_focal_loss(...), softmax_focal_loss_grad(...))``, each only if asked for.

    The modulation multiplies the error of :math:`-\log p_y` by up to :math:`1 + \gamma`
    (the loss behaves like :math:`\ell^{1 + \gamma}` as :math:`\ell \to 0`), so float16 and
    float32 results are rounded once from float64: unshifted (:func:`_index_wide`) where that
    is accurate, the rows it leaves shifted and compensated in float64. float64 results are
    within about :math:`2 + 1.5 (1 + \gamma)` ULP, on every platform (no ``long double``).
    """
    gamma = check_positive_scalar(gamma, "gamma", allow_zero=True)
    # rows holding +inf are replaced by their limit rows later, where their maximum tells
    check_ignore_index(ignore_index)
    args = _index_setup(input, target, weight, ignore_index, reduction, limit=False)
    total = weight_total(args.target_weight)
    if args.x.dtype == np.float32:
        terms = _focal_terms(gamma)
        per, g, rest = _index_wide(args, reduction, total, value, grad, terms)
        if rest.size:
            part = args.widened(rest)
            per_rest, g_rest, _ = _focal_rows(part, gamma, reduction, total, value, grad)
            if value:
                per[rest] = per_rest
            if grad:
                g[rest] = nx.to_dtype(g_rest, np.float32)
        scaled = None  # (float64 sums of float32 losses do not overflow)
    else:
        per, g, scaled = _focal_rows(args, gamma, reduction, total, value, grad)
    loss = grad_out = None
    if value:
        loss = weighted_reduce(per, total, reduction, args.shape, scaled)
        loss = nx.to_dtype(loss, args.dtype)[()]
    if grad:
        grad_out = nx.to_dtype(g.reshape(args.shape + args.x.shape[-1:]), args.dtype)
    return loss, grad_out


def _focal_rows(args: _IndexArgs, gamma: float, reduction: str, total, value, grad):
    """Per-sample focal losses and gradient rows (each None unless asked for) of float64
    rows, shifted and compensated (:func:`_normalize_index`); and, for a mean, the
    per-sample losses times their factors, for :func:`weighted_reduce` (else None). A row
    holding ``+inf`` from its limit row, which its maximum tells."""
    per, g, scaled, m = _focal_rows_shifted(args, gamma, reduction, total, value, grad)
    limit_scaled = []

    def compute(limit):
        per_limit, g_limit, scaled_limit, _ = _focal_rows_shifted(
            limit, gamma, reduction, total, value, grad
        )
        limit_scaled.append(scaled_limit)
        return per_limit, g_limit

    infinite = _redo_infinite_rows(args, m, compute, per, g)
    if infinite.size and scaled is not None:
        scaled_rows = scaled

        def scaled():
            out = scaled_rows()
            out[infinite] = limit_scaled[0]()
            return out

    return per, g, scaled


def _focal_rows_shifted(args: _IndexArgs, gamma: float, reduction: str, total, value, grad):
    """:func:`_focal_rows` before the rows holding ``+inf``; and the row maxima."""
    pieces, hard = _normalize_index(args, 0.0, keep=grad, rest_dd=True)
    wy = args.target_weight
    factor = sample_scale(wy, args.valid, total, reduction)
    # the coefficient k = factor g, g <= 1 + gamma, overflows for a factor near the largest
    # float (a class weight, "sum" or "none") where the gradient k (p - e_y) may not: those
    # rows take the factor over 2^shift and their gradient is multiplied back (exact)
    shift = int(np.frexp(1.0 + gamma)[1]) + 1
    big = np.flatnonzero(np.isfinite(factor) & (factor > np.ldexp(_FLOAT64_MAX, -shift)))
    coef = factor
    if big.size:
        coef = factor.copy()
        coef[big] = np.ldexp(factor[big], -shift)
    with np.errstate(invalid="ignore", divide="ignore"):
        loss, k, target, factor_rows = _focal_terms(gamma)(pieces.nll, coef, pieces.s)
        careful, f_hi, f_lo = _focal_careful_rows(args, gamma, pieces, hard, coef, loss, k, target)
    per = g = scaled = None
    if value:
        per = _weighted_losses(args, pieces, wy, loss)
        if reduction == "mean":

            def scaled():
                return _weighted_losses(args, pieces, factor, loss)

    if grad:
        g = pieces.e
        e_careful = g[careful]  # (a copy) a double-double factor: one rounding per entry
        with np.errstate(invalid="ignore", divide="ignore"):
            g *= factor_rows[:, None]
            if careful.size:
                p, p_err = nx.two_prod(e_careful, f_hi[:, None])
                exact = (np.abs(f_hi) < 2.0**990)[:, None]  # (Dekker's product's domain)
                g[careful] = np.where(exact, p + (p_err + e_careful * f_lo[:, None]), p)
        np.put_along_axis(g, args.y[:, None], target[:, None], -1)
        if big.size:
            with np.errstate(over="ignore"):
                g[big] = np.ldexp(g[big], shift)
        _infinite_factor_rows(g, args, factor)
        # an ignored sample, or one of weight 0, has no gradient (also where it is infinite);
        # under a mean over a zero total weight the factor is NaN, and so is the gradient
        g[np.flatnonzero(factor == 0)] = 0
    return per, g, scaled, pieces.m


def _focal_careful_rows(args: _IndexArgs, gamma, pieces: _Normalized, hard, coef, loss, k, target):
    """In place: ``loss``, ``k`` and ``target`` of the rows where ``u^gamma`` amplifies the
    roundings (:func:`_focal_terms_dominated`), and those rows with the double-double factor
    of their exponentials ``e^(x - m)``.

    Those are the rows dominated by their target (``hard``, whose sum ``R`` of the others is
    known), and the rows where ``p_y >= 1/8`` otherwise: there ``gamma p_y (-log p_y) / u``,
    up to 0.3 at ``p_y = 1/8`` and 0.7 at ``1/2``, multiplies the rounding of ``-log p_y``
    in ``u = -expm1(log p_y)`` (16.6 ULP at gamma = 8, p_y near 1/2): their ``R`` is
    summed around the target (``e^(x - x_y)``, in double-double), and their factor times
    ``e^(m - x_y)`` (at most 8).
    """
    known = np.zeros(len(pieces.nll), bool)
    known[hard] = True
    near = np.flatnonzero(~known & (pieces.nll <= np.log(8.0)))  # (not NaN, m finite)
    careful = np.concatenate([hard, near])
    if not careful.size:
        return careful, None, None
    y = args.y[near]
    xy = args.x[near, y]
    center = pieces.m.copy()
    center[near] = xy
    r_near = nx.exp_sum_rest_dd(args.x, center, near, pivot=y)
    rest = pieces.rest if hard.size else (np.empty(0), np.empty(0))
    r_hi, r_lo = (np.concatenate(pair) for pair in zip(rest, r_near, strict=True))
    terms = _focal_terms_dominated(gamma)(r_hi, r_lo, coef[careful])
    loss[careful], k[careful], target[careful], (f_hi, f_lo) = terms
    if near.size:
        gap_hi, gap_lo = nx.two_sum(pieces.m[near], xy, minus=True)
        # e^(m - x_y) (unnormalised: hi + lo): their e^(x - m) to e^(x - x_y)
        lift = nx.exp_shifted_dd(gap_hi, gap_lo)
        part = slice(len(hard), None)
        with np.errstate(over="ignore", invalid="ignore"):
            hi, lo = nx.dd_mul(f_hi[part], f_lo[part], *lift)
            exact = np.abs(f_hi[part]) < 2.0**990  # (Dekker's product's domain)
            f_hi[part], f_lo[part] = (
                np.where(exact, hi, f_hi[part] * (lift[0] + lift[1])),
                np.where(exact, lo, 0),
            )
    return careful, f_hi, f_lo


@gradients_in_argument_dtypes("input")
def softmax_focal_loss_grad(
    input, target, gamma=2.0, weight=None, ignore_index=-100, reduction="mean"
):
    r"""Gradient of :func:`softmax_focal_loss` with respect to the logits ``input``.

    With :math:`u = 1 - p_y` and :math:`\ell = -\log p_y`,

    .. math::

        \frac{\partial \ell_i}{\partial z_{i}} = w_{y_i}\, g_i\, (p_i - e_{y_i}),
        \qquad g = u^{\gamma} + \gamma\, u^{\gamma - 1} p_y \ell
                 = u^{\gamma}\Bigl(1 + \gamma\, p_y \frac{\ell}{u}\Bigr),

    scaled as the reduction scales each loss; ignored samples, and samples of weight 0,
    get 0, unless the total weight of a mean is 0: then every entry of each sample that
    is not ignored is NaN, as the loss is. An infinite class weight gives what it gives
    in :func:`cross_entropy_grad`. The last form stays finite for
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

    Raises
    ------
    ValueError
        As :func:`softmax_focal_loss` does, for the same arguments.

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
    return _softmax_focal(input, target, gamma, weight, ignore_index, reduction, value=False)[1]


@gradients_in_argument_dtypes("input")
def softmax_focal_loss_value_and_grad(
    input, target, gamma=2.0, weight=None, ignore_index=-100, reduction="mean"
):
    r"""``softmax_focal_loss`` and ``softmax_focal_loss_grad`` in one pass: one softmax per row.

    The softmax pieces, :math:`-\log p_y`, :math:`1 - p_y` and the modulation are computed
    once and feed both.

    Parameters
    ----------
    input, target, gamma, weight, ignore_index, reduction
        Same as :func:`softmax_focal_loss`.

    Returns
    -------
    tuple
        ``(softmax_focal_loss(...), softmax_focal_loss_grad(...))``, bit for bit.

    Raises
    ------
    ValueError
        As :func:`softmax_focal_loss` does, for the same arguments.

    Examples
    --------
    >>> z = [[5.0, 4.0, 2.0]]
    >>> value, grad = softmax_focal_loss_value_and_grad(z, [0])
    >>> bool(value == softmax_focal_loss(z, [0])), grad.round(4).tolist()
    (True, [[-0.0683, 0.0602, 0.0081]])
    """
    return _softmax_focal(input, target, gamma, weight, ignore_index, reduction)


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


def _margin_setup(input, target, margin, weight, reduction, widen=True):
    """The arguments and the margin as a float; with ``widen``, the arguments in float64
    where the working dtype does not hold the margin (:func:`~lossutils._numerics.
    margin_parts`: 0.1 in float32), so that the gaps are formed from the margin itself."""
    margin = check_finite_scalar(margin, "margin")
    # (its mean divides by the number of rows, not by the weights' total)
    setup = _index_setup(input, target, weight, None, reduction, limit=False, weighted_mean=False)
    work, _, lo = nx.margin_parts(setup.dtype, margin)
    work = np.dtype(np.float64) if lo else work
    if widen and setup.x.dtype != work:
        w = setup.weight
        setup = replace(setup, x=setup.x.astype(work), weight=None if w is None else w.astype(work))
    return setup, margin


def _crammer_singer(input, target, margin, reduction):
    """The arguments, the best rival ``j`` of each row, the gap margin + z_j - z_y (float64)
    and the function giving the gaps of the inputs scaled (for a mean whose gaps overflow)."""
    # (the gaps are formed in float64 from the margin itself: the scores keep their dtype)
    args, margin = _margin_setup(input, target, margin, None, reduction, widen=False)
    x, y = args.x, args.y
    j = np.empty(len(x), np.intp)

    def block(rows):  # (a block's copy with -inf at the target, not the whole input's)
        rivals = x[rows].copy()
        np.put_along_axis(rivals, y[rows, None], -np.inf, -1)
        j[rows] = np.argmax(rivals, axis=-1)  # the first best rival, as torch.max(dim)

    row_bytes = x.shape[-1] * x.dtype.itemsize
    for_each_block(block, len(x), row_bytes, BLOCK_BYTES // 4 // max(1, row_bytes))
    # j is the target itself only when every rival is -inf (or there is none)
    # in float64 (one number per row): a float32 gap beyond float32's range (3e38 - -3e38)
    # keeps its value for the mean
    rival = np.where(j == y, -np.inf, _gather(x, j)).astype(np.float64)
    own = _gather(x, y).astype(np.float64)

    def gap_at(s):  # the gaps of the inputs and margin times s (a power of 2: exact)
        return _margin_gap(np.float64(margin) * s, rival * s, own * s)

    return args, j, gap_at(1), gap_at


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

    Raises
    ------
    ValueError
        If ``margin`` is not a finite number; if ``reduction`` is unknown; if ``input`` has
        no class axis; if ``target`` is not integer indices in ``[0, C)`` of shape
        ``input.shape[:-1]``.

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
    return _multiclass_hinge(input, target, margin, reduction, grad=False)[0]


def _multiclass_hinge(input, target, margin, reduction, *, value=True, grad=True):
    """``(multiclass_hinge_loss(...), multiclass_hinge_loss_grad(...))``, each if asked for."""
    args, j, gap, gap_at = _crammer_singer(input, target, margin, reduction)
    x, y = args.x, args.y
    loss = grad_out = None
    if value:
        loss = reduce(np.maximum(gap, 0).reshape(args.shape), reduction)
        if reduction == "mean" and np.isinf(loss):  # float64 gaps beyond the range
            loss = scaled_shares(lambda s: np.maximum(gap_at(s), 0), len(x))
        loss = nx.to_dtype(loss, args.dtype)[()]
    if grad:
        with np.errstate(invalid="ignore"):
            active = np.where(gap > 0, 1, np.where(np.isnan(gap), np.nan, 0)).astype(x.dtype)
        # the two nonzero entries of each row, scaled (a per-row vector, not a full array)
        active = scale_grad(active, active.shape, reduction, args.dtype, count=len(x))
        grad_out = np.zeros(x.shape, args.dtype)
        np.put_along_axis(grad_out, j[:, None], active[:, None], -1)
        # with one class j == y and the two entries cancel to 0 (gap is -inf there)
        np.put_along_axis(grad_out, y[:, None], 0 - active[:, None], -1)
        grad_out = grad_out.reshape(args.shape + x.shape[-1:])
    return loss, grad_out


@gradients_in_argument_dtypes("input")
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

    Raises
    ------
    ValueError
        As :func:`multiclass_hinge_loss` does, for the same arguments.

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
    return _multiclass_hinge(input, target, margin, reduction, value=False)[1]


@gradients_in_argument_dtypes("input")
def multiclass_hinge_loss_value_and_grad(input, target, margin=1.0, reduction="mean"):
    r"""``multiclass_hinge_loss`` and ``multiclass_hinge_loss_grad`` in one pass.

    The best rival of each row and the compensated gap are found once and feed both.

    Parameters
    ----------
    input, target, margin, reduction
        Same as :func:`multiclass_hinge_loss`.

    Returns
    -------
    tuple
        ``(multiclass_hinge_loss(...), multiclass_hinge_loss_grad(...))``, bit for bit.

    Raises
    ------
    ValueError
        As :func:`multiclass_hinge_loss` does, for the same arguments.

    Examples
    --------
    >>> z = [[5.0, 4.0, 2.0], [1.0, 3.0, 0.0]]
    >>> value, grad = multiclass_hinge_loss_value_and_grad(z, [0, 0])
    >>> float(value), grad.tolist()
    (1.5, [[0.0, 0.0, 0.0], [-0.5, 0.5, 0.0]])
    """
    return _multiclass_hinge(input, target, margin, reduction)


def _check_p(p) -> int:
    if isinstance(p, bool) or not isinstance(p, numbers.Real) or p not in (1, 2):
        raise ValueError(f"p must be 1 or 2; got {describe(p)}")
    return int(p)


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

    Raises
    ------
    ValueError
        If ``p`` is not 1 or 2; if ``margin`` is not a finite number; if ``weight`` is not
        of length C; otherwise as :func:`multiclass_hinge_loss`.

    Notes
    -----
    Equivalent to ``torch.nn.functional.multi_margin_loss`` (which applies the
    weight after the power, as here; its documentation writes it inside).
    See :cite:t:`weston1999support`; :func:`multiclass_hinge_loss` keeps only the
    largest rival instead :cite:p:`crammer2001algorithmic`. In float64 a per-sample loss
    below 2.2e-308 times a class weight above 1 is within :math:`4 w_y 2^{-1074}` of the
    exact value instead of 4 ULP (the sum over classes is rounded before the weight
    multiplies it).

    Examples
    --------
    >>> z = [[5.0, 4.0, 2.0], [1.0, 3.0, 0.0]]
    >>> multi_margin_loss(z, [0, 0], reduction="none").round(6).tolist()
    [0.0, 1.0]
    >>> multi_margin_loss(z, [0, 0], p=2, reduction="none").round(6).tolist()
    [0.0, 3.0]
    """
    return _multi_margin(input, target, p, margin, weight, reduction, grad=False)[0]


def _multi_margin(input, target, p, margin, weight, reduction, *, value=True, grad=True):
    """``(multi_margin_loss(...), multi_margin_loss_grad(...))``, each only if asked for.

    In blocks of rows; a training step's gradient rows hold the hinges while they are
    formed, so its memory is about the gradient's.
    """
    p = _check_p(p)
    args, margin = _margin_setup(input, target, margin, weight, reduction)
    # C order: the blocks address each row's target by flat position
    x, y, w = np.ascontiguousarray(args.x), args.y, args.weight
    n, c = x.shape
    dtype = x.dtype
    # float64: a per-sample loss beyond float32's range may still have a finite mean
    per = np.empty(n, np.float64) if value else None
    out = np.empty(x.shape, args.dtype) if grad else None
    coef = None
    if grad:  # d loss / d hinge^p of each row (the reduction's scale included)
        # w_y / (C n) with one rounding (float64, then to dtype): a product of the rounded
        # 1 / C, w_y and 1 / n was up to 2.7 ULP off, p = 2 gradients then 4
        count = float(c * n) if reduction == "mean" and n else float(c)
        wy = np.ones(n) if w is None else w[y].astype(np.float64)
        coef = (wy / count).astype(dtype)
        if p == 2:
            coef *= 2

    def block(rows):
        _weston_watkins_block(x[rows], y[rows], dtype.type(margin), p, rows, per, out, coef)

    step = None if not grad else BLOCK_BYTES // 4 // max(1, c * dtype.itemsize)
    for_each_block(block, n, c * dtype.itemsize, step)
    loss = grad_out = None
    if value and w is not None:
        per = nx.times(w[y], per)
    # (p = 1: every gradient entry is w / C or a sum of them, 0 or NaN)
    beyond = _redo_overflowed_rows(x, y, margin, p, w, per, out if p == 2 else None, coef)
    if value:
        loss = reduce(per.reshape(args.shape), reduction)
        if reduction == "mean" and beyond is not None and np.isinf(loss):
            loss = mean_past_the_range(per, *beyond)  # float64 losses beyond the range
        loss = nx.to_dtype(loss, args.dtype)[()]
    if grad:
        if w is not None and not np.all(w[y]):  # a zero weight masks its row (also inf, NaN)
            out[w[y] == 0] = 0
        grad_out = out.reshape(args.shape + x.shape[-1:])
    return loss, grad_out


@nx.quiet  # (as the blocks: inf and NaN show in the result)
def _redo_overflowed_rows(x, y, margin, p, weight, per, out, coef):
    """Where a row's hinges or their sum overflowed though its scores are finite: the
    row's loss ``per`` (weighted) and gradient ``out`` (each if given) again, in float64,
    the scores and margin scaled by the power of 2 of the largest (exact; an entry below
    it by 2^1000 or more is lost, far below the result's last place), scaled back. The
    loss and the gradient then overflow only where they do (a float32 loss beyond
    float32's range keeps its value in ``per``, float64, for the mean). Returns the rows
    whose losses stay beyond float64's range, their scaled losses and the power of 2 that
    scales them back (None if there are none), for the mean."""
    lost_value = np.zeros(len(x), bool) if per is None else np.isinf(per)
    # a row's gradient entries sum to minus its target's: inf there if anywhere
    lost_grad = np.zeros(len(x), bool) if out is None else np.isinf(out[np.arange(len(x)), y])
    redo = np.flatnonzero(lost_value | lost_grad)
    redo = redo[np.isfinite(x[redo]).all(axis=-1)]
    if redo.size == 0:
        return None
    rows = x[redo].astype(np.float64)
    e = math.frexp(max(float(np.max(np.abs(rows))), abs(margin)))[1]
    scaled = np.empty(redo.size, np.float64)
    grad = None if out is None else np.empty(rows.shape, np.float64)
    rows = np.ldexp(rows, -e)
    part = (slice(None), scaled, grad, None if out is None else coef[redo])
    _weston_watkins_block(rows, y[redo], math.ldexp(margin, -e), p, *part)
    if per is not None:
        if weight is not None:
            scaled = nx.times(weight[y[redo]], scaled)
        keep = lost_value[redo]
        per[redo[keep]] = np.ldexp(scaled[keep], p * e)
        beyond = keep & np.isinf(per[redo])
    if out is not None:
        keep = lost_grad[redo]
        out[redo[keep]] = np.ldexp(grad[keep], e)
    if per is None or not beyond.any():
        return None
    return redo[beyond], scaled[beyond], p * e


def _weston_watkins_block(xb, yb, margin, p, rows, per, out, coef):
    """Rows ``rows`` of :func:`_multi_margin`: ``per[rows]`` (the unweighted losses) and the
    gradient's rows ``out[rows]``, each when given.

    The hinges are :func:`lossutils._numerics.margin_gaps` (a term is active exactly when
    its exact gap is positive) clipped at 0; the target's own column is no term (0, or NaN
    where the target's score is NaN).
    """
    c = xb.shape[1]
    grad = out is not None
    hinge = out[rows] if grad and out.dtype == xb.dtype else None
    own = np.arange(0, xb.size, c) + yb  # flat positions of the targets
    pivot = xb.reshape(-1)[own]
    hinge = nx.margin_gaps(xb, pivot, margin, out=hinge)
    flat = hinge.reshape(-1)
    flat[own] = np.where(np.isnan(pivot), np.nan, 0)
    nx.clip_hinges(hinge)  # (NaN stays)
    if per is not None:
        terms = hinge if p == 1 else np.square(hinge, out=None if grad else hinge)
        per[rows] = np.sum(terms, axis=-1) / np.float64(c)  # (per: float64, one rounding)
    if grad:
        if p == 1:
            nx.active_hinges(hinge)  # 1 where active, 0, or NaN
            total = (hinge @ np.ones(c, hinge.dtype)) * coef[rows]  # (a count, exact)
        hinge *= coef[rows, None]
        if p == 2:
            flat[own] = 0
            total = np.sum(hinge, axis=-1)
        flat[own] = 0 - total
        if out.dtype != xb.dtype:
            out[rows] = hinge


@gradients_in_argument_dtypes("input")
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

    Raises
    ------
    ValueError
        As :func:`multi_margin_loss` does, for the same arguments.

    Notes
    -----
    Equivalent to PyTorch's ``multi_margin_loss_backward``, which counts a term only
    where :math:`h_j > 0` strictly: the subgradient at the kink is 0. A NaN gap
    :math:`h_j` (a NaN score, or equal infinite ones) makes the loss NaN and gives NaN
    in the entries its term depends on, :math:`j` and :math:`y`, for ``p=1`` as for
    ``p=2`` (PyTorch counts it as inactive: 0); a NaN target score, in the whole row.
    See :cite:t:`weston1999support`.

    Examples
    --------
    >>> multi_margin_loss_grad([[5.0, 4.0, 2.0], [1.0, 3.0, 0.0]], [0, 0]).round(6).tolist()
    [[0.0, 0.0, 0.0], [-0.166667, 0.166667, 0.0]]
    """
    return _multi_margin(input, target, p, margin, weight, reduction, value=False)[1]


@gradients_in_argument_dtypes("input")
def multi_margin_loss_value_and_grad(input, target, p=1, margin=1.0, weight=None, reduction="mean"):
    r"""``multi_margin_loss`` and ``multi_margin_loss_grad`` in one pass: one set of gaps.

    The compensated gaps to every rival and the active terms are found once and feed both.

    Parameters
    ----------
    input, target, p, margin, weight, reduction
        Same as :func:`multi_margin_loss`.

    Returns
    -------
    tuple
        ``(multi_margin_loss(...), multi_margin_loss_grad(...))``, bit for bit.

    Raises
    ------
    ValueError
        As :func:`multi_margin_loss` does, for the same arguments.

    Examples
    --------
    >>> z = [[5.0, 4.0, 2.0], [1.0, 3.0, 0.0]]
    >>> value, grad = multi_margin_loss_value_and_grad(z, [0, 0])
    >>> float(value), grad.round(6).tolist()
    (0.5, [[0.0, 0.0, 0.0], [-0.166667, 0.166667, 0.0]])
    """
    return _multi_margin(input, target, p, margin, weight, reduction)
