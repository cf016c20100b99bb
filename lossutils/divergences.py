"""Entropies and divergences between distributions, and the ELBO.

Discrete distributions lie along ``axis`` (the last by default); the functions
without a ``reduction`` return one value per distribution, and their gradients
are those of the sum of these values.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import numpy as np

from ._binary import _bce_logits, _bce_logits_slope
from ._blocks import for_each_block
from ._checks import (
    check_bool,
    check_broadcastable,
    check_class_axis,
    check_has_axis,
    check_log_probability,
    check_reduction,
    check_same_shape,
    check_unit_interval,
    float_arrays,
    gradients_in_argument_dtypes,
    result_dtype,
)
from ._numerics import (
    CHUNK,
    TINY_TERMS_SHIFT,
    XlogMinus,
    accurate_sum,
    contiguous_rows,
    exp_minus_1_minus,
    exp_times_difference,
    exp_times_power,
    halved_square_sums,
    quiet,
    tiny_terms_limit,
    to_dtype,
    two_diff,
    working_dtype,
    xlog_minus_careful,
    xlogy,
    xlogy_row_sums_again,
    xlogy_sum,
)
from ._reduction import BlockReduction, batchmean_scale, reduce_to, reduction_scale

__all__ = [
    "entropy",
    "categorical_cross_entropy",
    "categorical_cross_entropy_grad",
    "categorical_cross_entropy_value_and_grad",
    "kl_divergence",
    "kl_divergence_grad",
    "kl_divergence_value_and_grad",
    "kl_div",
    "kl_div_grad",
    "kl_div_value_and_grad",
    "gaussian_kl",
    "gaussian_kl_grad",
    "gaussian_kl_value_and_grad",
    "vae_loss",
    "vae_loss_grad",
    "vae_loss_value_and_grad",
]

LIKELIHOODS = ("bernoulli", "gaussian")


def _as(value, dtype):
    """``value`` rounded once to ``dtype``; a 0-d result as a NumPy scalar."""
    return to_dtype(value, dtype)[()]


def _distributions(p, q, axis, widen=True):
    """``p`` and ``q`` as probabilities of one shape, in the working dtype, and the result dtype.

    Without ``widen`` they stay in the result dtype (a caller that widens blocks of them).
    """
    p, q = float_arrays({"p": p, "q": q})
    check_class_axis(p, "p", axis)  # (a distribution over no outcomes is none)
    check_same_shape(p, q, "p", "q")
    check_unit_interval(p, "p")
    check_unit_interval(q, "q")
    work = working_dtype(p.dtype) if widen else p.dtype
    return p.astype(work, copy=False), q.astype(work, copy=False), p.dtype


@quiet
def entropy(p, axis=-1):
    r"""Shannon entropy :math:`H(p) = -\sum_k p_k \log p_k` (in nats), with :math:`0 \log 0 = 0`.

    Every term is non-negative, so the sum cannot cancel.

    Parameters
    ----------
    p : array_like
        Probabilities in [0, 1], one distribution along ``axis``.
    axis : int, optional
        The axis that holds a distribution (default: the last).

    Returns
    -------
    ndarray
        The entropy of each distribution: ``p``'s shape without ``axis`` (a NumPy
        scalar for a single distribution).

    Raises
    ------
    ValueError
        If ``p`` is not real numeric, has no axis, or holds a value outside [0, 1], if
        ``axis`` is not an integer naming one of its axes, or if that axis is empty (a
        distribution over no outcomes; an empty batch gives an empty result).

    Notes
    -----
    Equivalent to ``torch.distributions.Categorical(probs=p).entropy()`` and
    ``scipy.stats.entropy(p)`` (which, unlike this function, renormalises ``p``).
    No gradient function: ``p`` is data. See :cite:t:`cover2006elements`, chapter 2.

    Examples
    --------
    >>> float(round(entropy([0.5, 0.5]), 6))
    0.693147
    >>> entropy([[1.0, 0.0], [0.25, 0.75]]).round(6).tolist()
    [0.0, 0.562335]
    """
    (p,) = float_arrays({"p": p})
    check_class_axis(p, "p", axis)  # (a distribution over no outcomes is none)
    check_unit_interval(p, "p")
    dtype, p = p.dtype, p.astype(working_dtype(p.dtype), copy=False)
    return _as(0.0 - xlogy_sum(p, p, axis), dtype)  # (a zero entropy as +0.0, not -0.0)


@quiet
def categorical_cross_entropy(p, q, axis=-1):
    r"""Cross-entropy :math:`H(p, q) = -\sum_k p_k \log q_k` between two distributions.

    Terms with :math:`p_k = 0` are 0 (even where :math:`q_k = 0`); a term with
    :math:`q_k = 0 < p_k` is :math:`+\infty`.

    Parameters
    ----------
    p : array_like
        The reference distribution: probabilities in [0, 1] along ``axis``.
    q : array_like
        The model distribution: probabilities in [0, 1], same shape as ``p``.
    axis : int, optional
        The axis that holds a distribution (default: the last).

    Returns
    -------
    ndarray
        One cross-entropy per distribution: ``p``'s shape without ``axis``.

    Raises
    ------
    ValueError
        If ``p`` or ``q`` is not real numeric, has no axis or a value outside [0, 1],
        their shapes differ, ``axis`` is not an integer naming one of their axes, or that
        axis is empty (a distribution over no outcomes; an empty batch gives an empty
        result).

    Notes
    -----
    :math:`H(p, q) = H(p) + \mathrm{KL}(p \,\|\, q)`. On probabilities rather than
    logits; PyTorch's ``cross_entropy(logits, p)`` equals
    ``categorical_cross_entropy(p, softmax(logits))``, and optax's
    ``softmax_cross_entropy`` likewise. See :cite:t:`cover2006elements`, section 2.3,
    and :cite:t:`murphy2022probabilistic`.

    Examples
    --------
    >>> float(round(categorical_cross_entropy([0.5, 0.5], [0.9, 0.1]), 6))
    1.203973
    """
    return _categorical_cross_entropy(p, q, axis, grad=False)[0]


@gradients_in_argument_dtypes("q")
@quiet
def categorical_cross_entropy_grad(p, q, axis=-1):
    r"""Gradient of :func:`categorical_cross_entropy` w.r.t. ``q``: :math:`-p_k / q_k`.

    The gradient of the sum of the per-distribution values; 0 where
    :math:`p_k = 0`, :math:`-\infty` where :math:`q_k = 0 < p_k`.

    Parameters
    ----------
    p, q, axis
        As for :func:`categorical_cross_entropy`.

    Returns
    -------
    ndarray
        Same shape and dtype as ``q``.

    Raises
    ------
    ValueError
        As :func:`categorical_cross_entropy`.

    Examples
    --------
    >>> categorical_cross_entropy_grad([0.5, 0.5], [0.5, 0.25]).tolist()
    [-1.0, -2.0]
    """
    return _categorical_cross_entropy(p, q, axis, value=False)[1]


@gradients_in_argument_dtypes("q")
@quiet
def categorical_cross_entropy_value_and_grad(p, q, axis=-1):
    r"""``categorical_cross_entropy`` and ``categorical_cross_entropy_grad`` in one pass.

    The arguments are checked and converted once for both.

    Parameters
    ----------
    p, q, axis
        Same as :func:`categorical_cross_entropy`.

    Returns
    -------
    tuple
        ``(categorical_cross_entropy(p, q, axis), categorical_cross_entropy_grad(p, q, axis))``,
        bit for bit.

    Raises
    ------
    ValueError
        As :func:`categorical_cross_entropy`.

    Examples
    --------
    >>> p, q = [0.5, 0.5], [0.5, 0.25]
    >>> value, grad = categorical_cross_entropy_value_and_grad(p, q)
    >>> value == categorical_cross_entropy(p, q), grad.tolist()
    (np.True_, [-1.0, -2.0])
    """
    return _categorical_cross_entropy(p, q, axis)


def _categorical_cross_entropy(p, q, axis, *, value=True, grad=True):
    """``(H(p, q) or None, its gradient w.r.t. q or None)``, from one check of the arguments.

    Rows of C-contiguous input (the distribution axis last) in cache-sized blocks: each
    block is widened (float16), its terms summed and its gradient written into the output
    while it is in cache, so that the gradient is the only full-size array.
    """
    p, q, dtype = _distributions(p, q, axis, widen=False)
    work = working_dtype(dtype)
    if p.size == 0 or not (
        p.flags.c_contiguous and q.flags.c_contiguous and axis in (-1, p.ndim - 1)
    ):
        p, q = p.astype(work, copy=False), q.astype(work, copy=False)
        loss = _as(0.0 - xlogy_sum(p, q, axis), dtype) if value else None
        return loss, (_neg_ratio(p, q, dtype) if grad else None)
    width = p.shape[-1]
    p_rows, q_rows = p.reshape(-1, width), q.reshape(-1, width)
    sums = np.empty(len(p_rows), work) if value else None
    d_q = np.empty(p_rows.shape, dtype) if grad else None

    def block(rows: slice) -> None:
        pb, qb = p_rows[rows].astype(work, copy=False), q_rows[rows].astype(work, copy=False)
        if value:
            # every term p log q <= 0 (no cancellation): the sum of the rounded terms is
            # accurate. A NaN sum marks a row with 0 log 0 (or a NaN): that row alone is
            # summed again with the limit 0 log 0 = 0
            terms = np.log(qb)
            terms *= pb
            row_sums = np.sum(terms, axis=-1, out=sums[rows])
            nan = np.flatnonzero(np.isnan(row_sums))
            if nan.size:
                row_sums[nan] = np.sum(xlogy(pb[nan], qb[nan]), axis=-1)
            xlogy_row_sums_again(pb, qb, row_sums)  # terms below the normal range
        if grad:
            _neg_ratio(pb, qb, dtype, out=d_q[rows])

    for_each_block(block, len(p_rows), width * work.itemsize)
    loss = _as(np.subtract(0.0, sums).reshape(p.shape[:-1]), dtype) if value else None
    return loss, (None if d_q is None else d_q.reshape(p.shape))


def _neg_ratio(p, q, dtype, out=None):
    """-p / q in ``dtype`` (written into ``out``, if given), with 0 where p = 0 (also where
    q = 0): the gradient w.r.t. q.

    -(p / q) is -p / q bit for bit, rounded once to ``dtype``; only 0 / 0 (NaN) is
    rewritten, to -0 (= -0 / 1).
    """
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        out = np.divide(p, q, out=out)
        np.negative(out, out=out)
        zero = p == 0
        if zero.any():
            out[zero & (q == 0)] = -0.0
    return out.astype(dtype, copy=False)


def _kl_pieces(p, q):
    r"""Per-element pieces whose exact sum along the last axis is :math:`\sum p \log(p/q)`.

    Where :math:`q/2 < p < 2q` the term :math:`p\log(p/q)` is split into the
    exact difference :math:`d = p - q` and the non-negative rest
    :math:`f = p\log(p/q) - d`. When :math:`q \approx p` the terms
    :math:`p\log(p/q) \approx d` cancel in the sum over the distribution (the
    :math:`d` sum to about 0) while the :math:`f \approx d^2/(2q)` carry the
    divergence; computing :math:`f` directly keeps its digits. With
    :math:`s = d/(p+q)`, :math:`\log(p/q) = 2\,\mathrm{atanh}(s)` and
    :math:`f = d\,s\,(1 + s(1+s) P(s^2))`,
    :math:`P(x) = \sum_{j\ge0} x^j/(2j+3)` (here :math:`|s| < 1/3`, so :math:`f < |d|`).

    Returns ``(f, near, rest)``: ``f`` at the flat indices ``near`` only (the series is
    evaluated there alone), and ``rest`` (``p``'s shape) holding :math:`d` there and
    :math:`p\log(p/q)` elsewhere. ``p`` and ``q`` are C-contiguous.
    """
    with np.errstate(divide="ignore", invalid="ignore", over="ignore", under="ignore"):
        rest = np.divide(p, q)
        flat_p, flat_q, flat_rest = p.reshape(-1), q.reshape(-1), rest.reshape(-1)
        # a rounded ratio strictly inside (1/2, 2) has the exact one inside: Sterbenz holds
        near = np.flatnonzero((rest > 0.5) & (rest < 2))
        # a ratio that is not a normal number (or a NaN, or p = 0) loses digits: those few
        # elements take log p - log q, and p = 0 contributes 0 (q * 0 keeps a NaN q)
        odd = np.flatnonzero(~(rest >= np.finfo(p.dtype).tiny) | (rest == np.inf))
        np.log(rest, out=rest)
        rest *= p
        po, qo = flat_p[odd], flat_q[odd]
        flat_rest[odd] = np.where(po == 0, qo * 0, po * (np.log(po) - np.log(qo)))
        pn, qn = flat_p[near], flat_q[near]
        d = pn - qn  # exact (Sterbenz)
        flat_rest[near] = d
        s = d / (pn + qn)
        s2 = s * s
        poly = np.zeros_like(s)
        for j in range(18, -1, -1):
            poly *= s2
            poly += 1.0 / (2 * j + 3)
        poly *= 1 + s
        poly *= s
        poly += 1
        poly *= s
        poly *= d
    return poly, near, rest


def _kl_careful_rows(p, q):
    """KL of each row of ``p`` and ``q``: the pieces summed as in twice the working precision."""
    f_near, near, rest = _kl_pieces(p, q)
    f = np.zeros_like(rest)
    f.reshape(-1)[near] = f_near
    return accurate_sum(np.concatenate([f, rest], axis=-1), -1)


# float32 rows are summed from the plain terms p log(p/q) in float64; a row keeps that sum when
# the bound on its error below is at most 2^-27 of it (a quarter of a float32 ULP).
_FLOAT32_ROW = 2.0**-27
# float64 blocks: the error of summing the low parts after the extraction, at most 2^-56 of
# the row's divergence (an eighth of an ULP).
_FLOAT64_ROW = 2.0**-56


def _kl_rows_float32(p, q):
    r"""Float32 rows: KL from the float64 terms :math:`p \log(p/q)`, the hard rows redone.

    In float64 the ratio rounds by at most :math:`u = 2^{-53}` (an absolute error of
    :math:`u` in its log), the log and the product by a few :math:`u` of the term: each
    term is within :math:`u\,(2p + 8|t|)`, and summing :math:`n` of them adds at most
    :math:`n u \sum|t|`. Rows where this bound exceeds a quarter of a float32 ULP of their
    sum (a tiny divergence: :math:`q \approx p`, where the terms cancel), and rows that
    are not finite, are recomputed by :func:`_kl_careful_rows` in float64. (In float32 its
    pieces carry a few float32 ULP each, and the float32 distributions need not sum to the
    same total: the exact sum of the differences ``p - q`` can exceed the divergence, whose
    pieces then cancel against it; 10 ULP were seen.)
    """
    n = p.shape[-1]
    p64, q64 = p.astype(np.float64), q.astype(np.float64)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        t = np.divide(p64, q64)
        np.log(t, out=t)
        t *= p64
        total = np.sum(t, axis=-1)
        # p = 0 gives 0 log 0 = NaN: in those rows only, the term is 0 (a NaN q stays)
        rows = np.flatnonzero(np.isnan(total))
        if rows.size:
            rows_t, zero = t[rows], p[rows] == 0
            rows_t[zero] = q64[rows][zero] * 0
            t[rows] = rows_t
            total[rows] = np.sum(rows_t, axis=-1)
        np.abs(t, out=t)
        bound = (n + 8) * np.sum(t, axis=-1) + 2 * n  # sum p <= n
        hard = np.flatnonzero(~(bound * 2.0**-53 <= _FLOAT32_ROW * total))  # also inf, NaN
    if hard.size:  # in float64: float32 pieces would carry a few float32 ULP of each term
        total[hard] = _kl_careful_rows(p64[hard], q64[hard])
    return total


def _kl_rows_float64(p, q):
    r"""Float64 rows: the pieces of :func:`_kl_pieces` summed by extraction.

    With :math:`\sigma = 2^k` at least :math:`(2n + 2)` times the largest piece of a row,
    :math:`h = (x + \sigma) - \sigma` and :math:`x - h` are exact and every :math:`h` is a
    multiple of :math:`u\sigma` below :math:`\sigma / (2n + 2)`: the :math:`h` of a row sum
    exactly in any order (Rump, Ogita and Oishi's AccSum). The low parts are below
    :math:`u\sigma`; their plain sum errs by at most :math:`2n \cdot 2n u^2 \sigma`. Rows where
    that exceeds an eighth of an ULP of the divergence, or that are not finite, are
    summed by :func:`accurate_sum`.
    """
    rows, n = p.shape
    n2 = 2 * n
    f, near, rest = _kl_pieces(p, q)
    row = near // n  # the row of each f
    with np.errstate(invalid="ignore", over="ignore"):
        biggest = np.max(np.abs(rest), axis=-1)  # also above each f (f < |d|)
        _, exponent = np.frexp(biggest)  # biggest < 2^exponent
        sigma = np.ldexp(1.0, exponent + int(np.ceil(np.log2(n2 + 2))))
        high = rest + sigma[:, None]
        high -= sigma[:, None]
        rest -= high
        sigma_f = sigma[row]
        high_f = f + sigma_f
        high_f -= sigma_f
        f -= high_f
        total = np.sum(high, axis=-1) + np.bincount(row, high_f, minlength=rows)  # exact
        total += np.sum(rest, axis=-1) + np.bincount(row, f, minlength=rows)
        error = n2 * n2 * 2.0**-106 * sigma
        hard = np.flatnonzero(~(error <= _FLOAT64_ROW * total))  # also inf, NaN
    if hard.size:
        total[hard] = _kl_careful_rows(p[hard], q[hard])
    # pieces below the normal range were rounded to the subnormal grid (95 ULP for 1000
    # subnormal probabilities): small rows again from p and q scaled by 2**k, exact, of
    # which the divergence is 2**k times
    small = np.flatnonzero(np.abs(total) < tiny_terms_limit(np.float64, n))
    if small.size:
        k = TINY_TERMS_SHIFT[np.dtype(np.float64)]
        scaled = _kl_careful_rows(np.ldexp(p[small], k), np.ldexp(q[small], k))
        total[small] = np.ldexp(scaled, -k)
    return total


@quiet
def kl_divergence(p, q, axis=-1):
    r"""Kullback-Leibler divergence :math:`\mathrm{KL}(p \,\|\, q) = \sum_k p_k \log(p_k / q_k)`.

    Terms with :math:`p_k = 0` are 0; a term with :math:`q_k = 0 < p_k` makes the
    divergence :math:`+\infty`. Accurate to a few ULP also when :math:`q \approx p`
    and the divergence is tiny: there the terms :math:`p_k\log(p_k/q_k)` are
    about :math:`p_k - q_k` and cancel in the sum, so each is split into the exact
    :math:`p_k - q_k` and the non-negative remainder computed from
    :math:`\mathrm{atanh}((p_k - q_k)/(p_k + q_k))` by its series, and the pieces
    are summed in twice the working precision.

    Parameters
    ----------
    p : array_like
        The reference distribution: probabilities in [0, 1] along ``axis``.
    q : array_like
        The approximating distribution: probabilities in [0, 1], same shape as ``p``.
    axis : int, optional
        The axis that holds a distribution (default: the last).

    Returns
    -------
    ndarray
        One divergence per distribution: ``p``'s shape without ``axis``.

    Raises
    ------
    ValueError
        If ``p`` or ``q`` is not real numeric, has no axis or a value outside [0, 1],
        their shapes differ, ``axis`` is not an integer naming one of their axes, or that
        axis is empty (a distribution over no outcomes; an empty batch gives an empty
        result).

    Notes
    -----
    Equals ``torch.nn.functional.kl_div(q.log(), p, reduction="sum")`` per
    distribution (see :func:`kl_div`) and ``scipy.special.rel_entr(p, q).sum(axis)``;
    optax's ``kl_divergence(log_q, p)``. Non-negative for normalised ``p`` and ``q``
    (Gibbs' inequality). See :cite:t:`kullback1951information` and
    :cite:t:`cover2006elements`, section 2.3.

    Examples
    --------
    >>> float(round(kl_divergence([0.5, 0.5], [0.9, 0.1]), 6))
    0.510826
    >>> float(kl_divergence([0.5, 0.5], [0.5 + 2**-30, 0.5 - 2**-30]))  # about 2**-59
    1.734723475976807e-18
    """
    return _kl_divergence(p, q, axis, grad=False)[0]


@gradients_in_argument_dtypes("q")
@quiet
def kl_divergence_grad(p, q, axis=-1):
    r"""Gradient of :func:`kl_divergence` w.r.t. ``q``: :math:`-p_k / q_k`.

    The gradient of the sum of the per-distribution divergences; 0 where
    :math:`p_k = 0`, :math:`-\infty` where :math:`q_k = 0 < p_k`. (Differentiated
    without the constraint :math:`\sum_k q_k = 1`, as autograd does.)

    Parameters
    ----------
    p, q, axis
        As for :func:`kl_divergence`.

    Returns
    -------
    ndarray
        Same shape and dtype as ``q``.

    Raises
    ------
    ValueError
        As :func:`kl_divergence`.

    Examples
    --------
    >>> kl_divergence_grad([0.5, 0.5, 0.0], [0.25, 0.5, 0.25]).tolist()
    [-2.0, -1.0, -0.0]
    """
    return _kl_divergence(p, q, axis, value=False)[1]


@gradients_in_argument_dtypes("q")
@quiet
def kl_divergence_value_and_grad(p, q, axis=-1):
    r"""``kl_divergence`` and ``kl_divergence_grad`` in one pass.

    The arguments are checked and converted once for both.

    Parameters
    ----------
    p, q, axis
        Same as :func:`kl_divergence`.

    Returns
    -------
    tuple
        ``(kl_divergence(p, q, axis), kl_divergence_grad(p, q, axis))``, bit for bit.

    Raises
    ------
    ValueError
        As :func:`kl_divergence`.

    Examples
    --------
    >>> p, q = [0.5, 0.5, 0.0], [0.25, 0.5, 0.25]
    >>> value, grad = kl_divergence_value_and_grad(p, q)
    >>> value == kl_divergence(p, q), grad.tolist()
    (np.True_, [-2.0, -1.0, -0.0])
    """
    return _kl_divergence(p, q, axis)


def _kl_divergence(p, q, axis, *, value=True, grad=True):
    """``(KL(p || q) or None, its gradient w.r.t. q or None)``, from one check of the arguments.

    In cache-sized blocks of rows (the distribution axis moved last), so that no
    full-size temporary is made besides the gradient.
    """
    p, q, dtype = _distributions(p, q, axis)
    moved = np.moveaxis(p, axis, -1).shape
    n, rows = moved[-1], int(np.prod(moved[:-1]))
    p2 = np.moveaxis(p, axis, -1).reshape(rows, n)
    q2 = np.moveaxis(q, axis, -1).reshape(rows, n)
    loss = np.zeros(rows, dtype=p.dtype) if value else None
    d_q = np.empty((rows, n), dtype=dtype) if grad else None
    row_sums = _kl_rows_float32 if p.dtype == np.float32 else _kl_rows_float64

    def block(rows: slice) -> None:
        pb, qb = np.ascontiguousarray(p2[rows]), np.ascontiguousarray(q2[rows])
        if value and n:
            loss[rows] = row_sums(pb, qb)
        if grad:
            d_q[rows] = _neg_ratio(pb, qb, dtype)

    # on up to two threads, in blocks of at most CHUNK elements (each row's sum is the same
    # in any block); smaller blocks cost more in calls than they save in page faults
    for_each_block(block, rows, n * p.itemsize, max(1, CHUNK // max(1, n)))
    if value:
        loss = _as(loss.reshape(moved[:-1]), dtype)
    if grad:
        d_q = np.moveaxis(d_q.reshape(moved), -1, axis)
    return loss, d_q


# Deferred elements of kl_div redone per call of the careful kernels: their temporaries (a few
# dozen arrays of this length) stay small next to the gradient.
_CAREFUL_GROUP = 1 << 11


@dataclass(frozen=True)
class _KLDivArgs:
    """Checked arguments of ``kl_div``, in the working dtype."""

    input: np.ndarray  # log q
    target: np.ndarray  # t, or log t with log_target
    reduction: str
    dtype: np.dtype  # the result dtype


def _kl_div_args(input, target, reduction, log_target) -> _KLDivArgs:
    reduction = check_reduction(reduction, ("mean", "sum", "none", "batchmean"))
    log_target = check_bool(log_target, "log_target")
    input, target = float_arrays({"input": input, "target": target})
    check_same_shape(input, target, "input", "target")
    if log_target:
        check_log_probability(target, "target")
    else:
        check_unit_interval(target, "target")
    if reduction == "batchmean" and input.ndim == 0:
        raise ValueError(
            'input must have a batch axis (axis 0) for reduction="batchmean"; got shape ()'
        )
    work = working_dtype(input.dtype)
    return _KLDivArgs(
        input.astype(work, copy=False), target.astype(work, copy=False), reduction, input.dtype
    )


def _kl_div_scale(input, reduction):
    """d(reduced)/d(each pointwise loss)."""
    if reduction == "batchmean":
        return batchmean_scale(input.shape, input.dtype)
    return reduction_scale(input.size, reduction, input.dtype)


@quiet
def kl_div(input, target, reduction="mean", log_target=False):
    r"""PyTorch's ``kl_div``: pointwise :math:`t\,(\log t - x)`, with ``input`` :math:`x = \log q`.

    With ``log_target=True`` the target is given as :math:`\log t` and the
    pointwise loss is :math:`e^{\log t}(\log t - x)`. The pointwise loss is 0
    where :math:`t = 0` (also where :math:`x = -\infty`, for which PyTorch's
    formula gives NaN). Summed over a distribution it is
    :math:`\mathrm{KL}(t \,\|\, q)`.

    Parameters
    ----------
    input : array_like
        Log-probabilities :math:`\log q` of the model (not checked: they may be
        unnormalised).
    target : array_like
        Probabilities in [0, 1] (or log-probabilities, at most 0, with
        ``log_target=True``); same shape as ``input``.
    reduction : {"mean", "sum", "none", "batchmean"}, optional
        ``"mean"`` averages over ALL elements (PyTorch's default, which is *not*
        the KL divergence per sample); ``"batchmean"`` divides the sum by
        ``input.shape[0]`` and gives the mean KL divergence per sample.
    log_target : bool, optional
        Whether ``target`` holds log-probabilities.

    Returns
    -------
    ndarray or numpy scalar
        The reduced loss, or the pointwise losses (``input``'s shape) for ``"none"``.

    Raises
    ------
    ValueError
        If ``reduction`` is not one of the four, ``target``'s shape differs from
        ``input``'s, ``target`` holds a value outside [0, 1] (a positive value with
        ``log_target=True``), an argument is not real numeric, ``input`` is 0-d with
        ``reduction="batchmean"``, or ``log_target`` is not True or False.

    Notes
    -----
    Accuracy: the pointwise :math:`t(\log t - x)` is within a few ULP also near the
    optimum :math:`x \approx \log t`, where :math:`\log t - x` cancels: there
    :math:`\log t` is carried to more bits (float64 for float32 input; for float64 input
    to about 60 bits (within :math:`2^{-60.5}` plus half an ULP) from a table of
    logarithms and ``log1p``, and to 90 bits where
    :math:`|\log t - x| < 2^{-7}`) and, where even that cancels (below :math:`2^{-36}`), the term
    comes from :math:`\operatorname{log1p}(t e^{-x} - 1)` with :math:`t e^{-x}` in
    double-double. In float64 the error is at most 4 ULP plus :math:`2^{-104} t` (which
    exceeds 4 ULP only where :math:`|\log t - x| < 2^{-54}`); float16 and float32 are
    within 4 ULP. With ``log_target=True`` the term :math:`e^{\log t}(\log t - x)` is within 4
    ULP also where :math:`e^{\log t}` is subnormal (it is then formed with a power-of-2
    scaling, in float64). A reduction that adds terms of both signs can cancel; float16 is
    evaluated in float32.

    Same as ``torch.nn.functional.kl_div(input, target, reduction=..., log_target=...)``;
    optax's ``kl_divergence(log_predictions, targets)`` is the per-sample sum over the
    last axis. PyTorch documents that ``reduction="mean"`` does not return the
    KL divergence: use ``"batchmean"``. See :cite:t:`kullback1951information`.

    Examples
    --------
    >>> import numpy as np
    >>> log_q = np.log([[0.9, 0.1], [0.5, 0.5]])
    >>> p = np.array([[0.5, 0.5], [0.5, 0.5]])
    >>> float(round(kl_div(log_q, p, reduction="batchmean"), 6))
    0.255413
    >>> float(round(kl_div(log_q, p), 6))  # the mean over all 4 elements
    0.127706
    """
    return _kl_div(input, target, reduction, log_target, grad=False)[0]


@gradients_in_argument_dtypes("input")
@quiet
def kl_div_grad(input, target, reduction="mean", log_target=False):
    r"""Gradient of :func:`kl_div` w.r.t. ``input``: :math:`-t` times the reduction's scale.

    Parameters
    ----------
    input, target, reduction, log_target
        As for :func:`kl_div`.

    Returns
    -------
    ndarray
        Same shape and dtype as ``input``.

    Raises
    ------
    ValueError
        As :func:`kl_div`.

    Examples
    --------
    >>> kl_div_grad([[-1.0, -2.0]], [[0.25, 0.75]], reduction="batchmean").tolist()
    [[-0.25, -0.75]]
    """
    return _kl_div(input, target, reduction, log_target, value=False)[1]


@gradients_in_argument_dtypes("input")
@quiet
def kl_div_value_and_grad(input, target, reduction="mean", log_target=False):
    r"""``kl_div`` and ``kl_div_grad`` in one pass: the target probabilities are formed once.

    Parameters
    ----------
    input, target, reduction, log_target
        Same as :func:`kl_div`.

    Returns
    -------
    tuple
        ``(kl_div(...), kl_div_grad(...))`` with the same arguments, bit for bit.

    Raises
    ------
    ValueError
        As :func:`kl_div`.

    Examples
    --------
    >>> log_q, p = [[-1.0, -2.0]], [[0.25, 0.75]]
    >>> value, grad = kl_div_value_and_grad(log_q, p, reduction="batchmean")
    >>> value == kl_div(log_q, p, reduction="batchmean"), grad.tolist()
    (np.True_, [[-0.25, -0.75]])
    """
    return _kl_div(input, target, reduction, log_target)


def _kl_div(input, target, reduction, log_target, *, value=True, grad=True):
    """``(the reduced kl_div or None, its gradient w.r.t. input or None)``.

    In blocks of about a megabyte (:func:`for_each_block`, on up to two threads), each in
    cache-sized pieces into buffers made once per thread: the pointwise losses of a piece
    are reduced while in cache (:class:`BlockReduction`), so that only ``"none"`` makes a
    full-size array of them, and the gradient is written into its output piece by piece.
    The few elements whose fast pointwise value may be off (:class:`XlogMinus`) are
    gathered and recomputed together: written over their entries for ``"none"``, else
    counted as 0 in their piece and added as more pieces. A block with few of them (at
    most 1/64 of its elements: random distributions have 0.4 %) leaves them for the end,
    where those of all such blocks are done in a few calls (a call of the careful kernels
    costs a fixed ~0.1 ms, however few its elements); a block with more does its own. The
    blocks, and which of them defer, are those of the sizes and values alone, so the result
    does not depend on the threads.
    """
    args = _kl_div_args(input, target, reduction, log_target)
    input, target, reduction, dtype = args.input, args.target, args.reduction, args.dtype
    work = input.dtype
    flat_x, flat_t = input.reshape(-1), target.reshape(-1)
    size = flat_x.size
    scale = _kl_div_scale(input, reduction)
    d_x = np.empty(size, dtype=dtype) if grad else None
    if not value:
        t = np.exp(flat_t) if log_target else flat_t
        np.multiply(t, -scale, out=d_x)  # rounded once to dtype
        return None, d_x.reshape(input.shape)
    per_element = reduction == "none"
    # the kept values, written in place by every thread (each into its own pieces)
    kept = BlockReduction("none", size, work) if per_element else None
    # "batchmean": the mean over the batch axis, rounded once (the sum rounded to the
    # dtype first was inf where the sum overflows though that mean does not)
    summed = "mean" if reduction == "batchmean" else reduction
    divisor = input.shape[0] if reduction == "batchmean" else None
    step = max(1, min(XlogMinus.block_size(work), size))
    local = threading.local()
    tiny = np.finfo(work).tiny
    parts = {}  # the first element of a block: its reduction
    deferred = {}  # the first element of a block: its hard elements and their differences

    def blocks(rows: slice) -> None:
        if not hasattr(local, "kernel"):
            # a reduced piece's values: float64 (float32 targets' products are not rounded);
            # kept ones are formed in place, in the working dtype
            local.values = np.empty(step, work if per_element else np.float64)
            local.t = np.empty(step, dtype=work) if log_target else None
            local.kernel = XlogMinus(work, size)
        reduced = kept if per_element else BlockReduction(summed, size, dtype, divisor)
        hard, hard_d = [], []
        for start in range(rows.start, rows.stop, step):
            piece = slice(start, min(start + step, rows.stop))
            xb, tb = flat_x[piece], flat_t[piece]
            n = xb.size
            pw = reduced.buffer(piece, local.values[:n])
            if log_target:
                t = np.exp(tb, out=local.t[:n])
                np.subtract(tb, xb, out=pw)
                pw *= t
                # below the normal range: a subnormal or zero e^t (the rare elements)
                low = np.flatnonzero(t < tiny)
                if low.size:
                    _kl_div_low_targets(tb[low], xb[low], pw, low)
            else:
                t = tb
                index, d = local.kernel.block(tb, xb, pw)
                if index.size:
                    pw[index] = 0  # (a reduced piece counts them when they are done)
                    hard.append(index + start)
                    hard_d.append(d)
            reduced.add(pw, piece)
            if grad:
                np.multiply(t, -scale, out=d_x[piece])  # rounded once to dtype
        if hard:
            index = np.concatenate(hard)
            d = np.concatenate(hard_d)
            if 64 * index.size <= rows.stop - rows.start:
                # kept small: offsets in the block, and the estimates of the differences in
                # float32 (they only choose among kernels that are each accurate)
                deferred[rows.start] = (index - rows.start).astype(np.int32), d.astype(np.float32)
            else:
                careful(index, d, reduced)
        parts[rows.start] = reduced

    def careful(index, d, into):
        values = xlog_minus_careful(flat_t[index], flat_x[index], d, work != np.float64)
        into.add(values, index)  # over their entries, or one more piece

    for_each_block(blocks, size, work.itemsize)
    reduced = kept
    if not per_element:
        # in the result's dtype: the float64 total is rounded once (through float32 first, a
        # float16 mean was an ULP off where the exact value lies near a float16 midpoint)
        reduced = BlockReduction(summed, size, dtype, divisor)
        for start in sorted(parts):
            reduced.extend(parts[start])
    group, count = [], 0  # the deferred elements, in groups of about _CAREFUL_GROUP
    for start in sorted(deferred):
        offsets, d = deferred.pop(start)
        group.append((offsets + start, d))
        count += offsets.size
        if count >= _CAREFUL_GROUP or not deferred:
            index, d = (np.concatenate(parts_) for parts_ in zip(*group, strict=True))
            careful(index, d, reduced)
            group, count = [], 0
    if per_element:
        loss = _as(reduced.result(input.shape), dtype)
    else:
        loss = _as(reduced.result(), dtype)
    return loss, (d_x.reshape(input.shape) if grad else None)


def _kl_div_low_targets(log_t, x, out, index):
    """Write the pointwise ``e^{log t} (log t - x)`` into ``out[index]`` where ``e^{log t}`` is
    subnormal or 0 in the working dtype: the plain product keeps only its absolute accuracy
    (and is NaN where ``log t - x`` overflows), so these come from
    :func:`exp_times_difference` in float64, rounded once. ``t = 0`` contributes 0;
    ``input * 0`` keeps a NaN input."""
    zero = log_t == -np.inf
    values = np.where(np.isnan(x), x, 0).astype(out.dtype)
    rest = ~zero
    if rest.any():
        values[rest] = exp_times_difference(
            log_t[rest].astype(np.float64), x[rest].astype(np.float64)
        )
    out[index] = values


@dataclass(frozen=True)
class _Gaussians:
    """Checked posterior and prior of ``gaussian_kl``, in the working dtype."""

    mu: np.ndarray
    logvar: np.ndarray
    mu_prior: np.ndarray  # broadcasts to mu's shape
    logvar_prior: np.ndarray  # broadcasts to mu's shape
    dtype: np.dtype  # the result dtype


def _gaussian_kl_args(mu, logvar, mu_prior, logvar_prior, axis=-1) -> _Gaussians:
    dtype = result_dtype(mu, logvar, mu_prior, logvar_prior)
    mu, logvar, mu_prior, logvar_prior = float_arrays(
        {"mu": mu, "logvar": logvar, "mu_prior": mu_prior, "logvar_prior": logvar_prior}, dtype
    )
    check_has_axis(mu, "mu", axis)
    check_same_shape(mu, logvar, "mu", "logvar")
    check_broadcastable(mu_prior, mu.shape, "mu_prior", "mu")
    check_broadcastable(logvar_prior, mu.shape, "logvar_prior", "mu")
    work = working_dtype(dtype)
    arrays = (a.astype(work, copy=False) for a in (mu, logvar, mu_prior, logvar_prior))
    return _Gaussians(*arrays, np.dtype(dtype))


def _scaled_square(diff, logvar_prior):
    """(mu - mu_prior)^2 / var_prior, exactly 0 where the means agree."""
    with np.errstate(over="ignore", under="ignore"):
        square = np.where(diff == 0, 0, diff * diff * np.exp(-logvar_prior))
    _prior_scaled_outside(square, diff, logvar_prior, 2)
    return square


# |mu - mu0| within which its square is a normal number, and |v0| within which e^{-v0} is
# (for float32 work, which float16 uses too; float64 beyond)
_PRIOR_LIMITS = {
    np.dtype(np.float32): (2.0**-63, 2.0**63, 87.0),
    np.dtype(np.float64): (2.0**-511, 2.0**511, 708.0),
}


def _priors_in_range(logvar_prior):
    """Whether every ``e^{-v0}`` is a normal number (two reductions of a block, so that the
    common block skips the element-wise test of :func:`_prior_scaled_outside`)."""
    top = _PRIOR_LIMITS[np.asarray(logvar_prior).dtype][2]
    return bool(np.max(logvar_prior) <= top and np.min(logvar_prior) >= -top)


def _squares_in_range(square):
    """Whether every entry of ``square`` (not NaN) is a normal number."""
    small, big, _ = _PRIOR_LIMITS[square.dtype]
    return bool(np.min(square) >= small * small and np.max(square) <= big * big)


def _prior_scaled_outside(out, diff, logvar_prior, power):
    """Rewrite ``out = diff^power e^{-v0}`` (``power`` 1 or 2) where a plain factor leaves the
    normal range (a subnormal or overflowing ``e^{-v0}`` or square) while the product need
    not: from :func:`exp_times_power` in float64, rounded once. ``out`` and ``diff`` have
    the same shape; ``logvar_prior`` broadcasts to it."""
    small, big, top = _PRIOR_LIMITS[diff.dtype]
    v0 = np.broadcast_to(logvar_prior, diff.shape)
    odd = np.abs(v0) > top
    if power == 2:
        a = np.abs(diff)
        odd |= (a > big) | ((a < small) & (a > 0))
    odd &= np.isfinite(diff) & np.isfinite(v0)
    where = np.nonzero(odd)
    if where[0].size:
        m, e = np.frexp(diff[where].astype(np.float64))
        if power == 2:
            m *= m
            e *= 2
        out[where] = exp_times_power(-v0[where].astype(np.float64), m, e)


@quiet
def gaussian_kl(mu, logvar, mu_prior=0.0, logvar_prior=0.0, axis=-1):
    r"""KL divergence between diagonal Gaussians, summed over ``axis``.

    .. math::

        \mathrm{KL}\big(\mathcal N(\mu, e^{v}) \,\|\, \mathcal N(\mu_0, e^{v_0})\big)
        = \frac12 \sum_k \Big( v_{0,k} - v_k
          + \frac{e^{v_k} + (\mu_k - \mu_{0,k})^2}{e^{v_{0,k}}} - 1 \Big)

    evaluated as :math:`\frac12\sum_k\big(e^{\delta_k} - 1 - \delta_k
    + (\mu_k - \mu_{0,k})^2 e^{-v_{0,k}}\big)` with :math:`\delta = v - v_0`, where
    :math:`e^\delta - 1 - \delta` is ``expm1(delta) - delta`` in a sample whose terms
    outweigh the error of ``expm1`` (:math:`\sum_k |e^{\delta_k} - 1|` at most the sum of
    the terms), and in the other samples comes from a Taylor series where
    :math:`|\delta| \le 1` (it cancels there). Every term is non-negative, so the result
    keeps a few ULP of accuracy down to :math:`\mu \approx \mu_0`, :math:`v \approx v_0`.
    Where :math:`(\mu - \mu_0)^2` or :math:`e^{-v_0}` underflows or overflows although
    their product (or the gradient's :math:`(\mu - \mu_0) e^{-v_0}`) is a normal number,
    these come from a power-of-2 scaled exponential instead of the plain products. A
    float32 (or float16) row whose terms overflow float32 (:math:`e^{\delta}` for
    :math:`\delta > 88.7`, a difference of means beyond 1.8e19) though half their sum may
    not is redone in float64; a float64 row from halved terms (:math:`e^{\delta} / 2`
    and the scaled square by a power-of-2 scaled exponential).

    Parameters
    ----------
    mu : array_like
        Means of the approximate posterior :math:`q`.
    logvar : array_like
        Log-variances :math:`v = \log\sigma^2` of :math:`q`; same shape as ``mu``.
    mu_prior, logvar_prior : array_like, optional
        Mean and log-variance of the prior :math:`p` (default: the standard normal);
        they broadcast to ``mu``'s shape.
    axis : int, optional
        The latent axis that is summed over (default: the last).

    Returns
    -------
    ndarray
        One divergence per sample: ``mu``'s shape without ``axis``.

    Raises
    ------
    ValueError
        If an argument is not real numeric, ``mu`` has no axis, ``logvar``'s shape differs
        from ``mu``'s, a prior does not broadcast to ``mu``'s shape, or ``axis`` is not an
        integer naming one of ``mu``'s axes.

    Notes
    -----
    For the standard normal prior this is the VAE's
    :math:`-\frac12\sum(1 + v - \mu^2 - e^{v})` :cite:p:`kingma2014auto`, appendix B.
    PyTorch: ``torch.distributions.kl_divergence(Normal(mu, (0.5 * logvar).exp()),
    Normal(mu_prior, (0.5 * logvar_prior).exp())).sum(-1)``. See also
    :cite:t:`rezende2014stochastic` and :cite:t:`blei2017variational`.

    Examples
    --------
    >>> float(round(gaussian_kl([1.0, 0.0], [0.0, 0.0]), 6))
    0.5
    >>> gaussian_kl([[0.0], [0.0]], [[2.0], [-2.0]]).round(6).tolist()
    [2.194528, 0.567668]
    >>> float(gaussian_kl([0.0], [1e-8]))  # (e^v - 1 - v) / 2, about v**2 / 4
    2.5000000083333336e-17
    """
    return _gaussian_kl(mu, logvar, mu_prior, logvar_prior, axis, grad=False)[0]


@gradients_in_argument_dtypes("mu", "logvar")
@quiet
def gaussian_kl_grad(mu, logvar, mu_prior=0.0, logvar_prior=0.0, axis=-1):
    r"""Gradient of :func:`gaussian_kl` w.r.t. ``mu`` and ``logvar``.

    .. math::

        \frac{\partial\,\mathrm{KL}}{\partial\mu_k} = (\mu_k - \mu_{0,k})\,e^{-v_{0,k}},
        \qquad
        \frac{\partial\,\mathrm{KL}}{\partial v_k} = \tfrac12\big(e^{v_k - v_{0,k}} - 1\big)

    (of the sum of the per-sample divergences).

    Parameters
    ----------
    mu, logvar, mu_prior, logvar_prior, axis
        As for :func:`gaussian_kl`.

    Returns
    -------
    tuple of ndarray
        ``(d_mu, d_logvar)``, each of ``mu``'s shape and dtype.

    Raises
    ------
    ValueError
        As :func:`gaussian_kl`.

    Examples
    --------
    >>> d_mu, d_logvar = gaussian_kl_grad([1.0, 0.0], [0.0, np.log(3.0)])
    >>> d_mu.tolist(), d_logvar.round(6).tolist()
    ([1.0, 0.0], [0.0, 1.0])
    """
    return _gaussian_kl(mu, logvar, mu_prior, logvar_prior, axis, value=False)[1]


@gradients_in_argument_dtypes("mu", "logvar")
@quiet
def gaussian_kl_value_and_grad(mu, logvar, mu_prior=0.0, logvar_prior=0.0, axis=-1):
    r"""``gaussian_kl`` and ``gaussian_kl_grad`` in one pass: :math:`e^{v - v_0} - 1` is shared.

    Parameters
    ----------
    mu, logvar, mu_prior, logvar_prior, axis
        Same as :func:`gaussian_kl`.

    Returns
    -------
    tuple
        ``(gaussian_kl(...), gaussian_kl_grad(...))`` with the same arguments, bit for bit:
        the divergences and the tuple ``(d_mu, d_logvar)``.

    Raises
    ------
    ValueError
        As :func:`gaussian_kl`.

    Examples
    --------
    >>> value, (d_mu, d_logvar) = gaussian_kl_value_and_grad([1.0, 0.0], [0.0, np.log(3.0)])
    >>> value == gaussian_kl([1.0, 0.0], [0.0, np.log(3.0)]), d_mu.tolist()
    (np.True_, [1.0, 0.0])
    """
    return _gaussian_kl(mu, logvar, mu_prior, logvar_prior, axis)


def _gaussian_kl(mu, logvar, mu_prior, logvar_prior, axis, *, value=True, grad=True):
    """``(the divergences or None, (d_mu, d_logvar) or None)`` in the result dtype."""
    g = _gaussian_kl_args(mu, logvar, mu_prior, logvar_prior, axis)
    kl, grads = _gaussian_kl_work(g, axis, value, grad, g.dtype)
    return (_as(kl, g.dtype) if value else None), grads


# Elements per block of rows: the block's temporaries stay in the L2 cache.
_BLOCK = 1 << 15
# A row is summed from the fast terms expm1(d) - d when the error of expm1 (an ULP of each
# |expm1(d)|) is at most an ULP of the row's divergence: sum |expm1(d)| <= sum of terms.
_FAST_ROW = 1.0


def _rows(a, shape2, axis):
    """``a`` (broadcasting to the moved shape) as rows of the latent axis; a 0-d array stays."""
    if a.ndim == 0:
        return a
    return contiguous_rows(np.moveaxis(np.broadcast_to(a, shape2[1]), axis, -1).reshape(shape2[0]))


def _gaussian_kl_work(g: _Gaussians, axis, value, grad, grad_dtype, scale=None):
    """The divergences (working dtype) and the gradient ``(d_mu, d_logvar)`` in ``grad_dtype``.

    The gradient is multiplied by ``scale`` (a working-dtype number, or None for 1)
    before it is rounded to ``grad_dtype``.

    In blocks of rows (the latent axis moved last), touching each element a few times:
    ``em1 = expm1(v - v0)`` feeds both the value (``em1 - d``, plus the scaled square of
    ``mu - mu0``) and the gradient (``em1 / 2``). ``em1 - d`` cancels where ``|d|`` is small,
    by at most one ULP of ``|em1|`` (it is exact by Sterbenz' lemma for ``|d| <= 1.25``):
    rows whose terms outweigh ``sum |em1|`` keep a few ULP; the other rows, and rows that
    are not finite, are recomputed by :func:`_gaussian_kl_careful`. The rounding of the
    differences to a non-zero prior is corrected to first order.
    """
    mu, logvar = g.mu, g.logvar
    work = working_dtype(g.dtype)
    moved = np.moveaxis(mu, axis, -1).shape
    latent = moved[-1]
    rows = int(np.prod(moved[:-1]))
    shape2 = ((rows, latent), mu.shape)
    mu2, lv2 = _rows(mu, shape2, axis), _rows(logvar, shape2, axis)
    mu0, lv0 = _rows(g.mu_prior, shape2, axis), _rows(g.logvar_prior, shape2, axis)
    standard = not np.any(g.mu_prior) and not np.any(g.logvar_prior)
    # float64 divergences (one per row): a float32 row whose terms overflow is redone there
    kl = np.empty(rows, dtype=np.float64) if value else None
    if grad:
        d_mu = np.empty((rows, latent), dtype=grad_dtype)
        d_lv = np.empty((rows, latent), dtype=grad_dtype)
    step = max(1, _BLOCK // max(1, latent))
    half = work.type(0.5) if scale is None else work.type(0.5) * scale  # exact
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        for start in range(0, rows, step):
            block = slice(start, start + step)
            m = np.asarray(mu2[block], dtype=work)
            v = np.asarray(lv2[block], dtype=work)
            m0 = mu0 if mu0.ndim == 0 else mu0[block]
            v0 = lv0 if lv0.ndim == 0 else lv0[block]
            if standard:
                d, d_low, diff, diff_low, prior_scale = v, None, m, None, None
            else:
                d, d_low = two_diff(v, v0)
                diff, diff_low = two_diff(m, m0)
                prior_scale = np.exp(-v0)
                priors_calm = _priors_in_range(v0)
            em1 = np.expm1(d)
            if value:
                terms = np.subtract(em1, d)
                if d_low is not None:
                    terms += em1 * d_low
                square = np.multiply(diff, diff)
                if prior_scale is not None:
                    calm = priors_calm and _squares_in_range(square)
                    square *= prior_scale
                    if not calm:
                        _prior_scaled_outside(square, diff, v0, 2)
                    if diff_low is not None:
                        square *= 1 + 2 * diff_low / np.where(diff == 0, 1, diff)
                terms += square
                total = np.sum(terms, axis=-1)
                np.abs(em1, out=square)
                hard = ~(np.sum(square, axis=-1) <= _FAST_ROW * total)  # also NaN and inf
                if hard.any():
                    m0h = m0 if np.ndim(m0) == 0 else m0[hard]
                    v0h = v0 if np.ndim(v0) == 0 else v0[hard]
                    total[hard] = _gaussian_kl_careful(m[hard], v[hard], m0h, v0h)
                np.multiply(total, 0.5, out=kl[block])
                if not np.isfinite(total).all():
                    _redo_overflowed_rows(kl[block], total, m, v, m0, v0)
            if grad:
                if d_low is not None:
                    em1 += np.where(d_low == 0, 0, (em1 + 1) * d_low)
                np.multiply(em1, half, out=d_lv[block])
                if np.max(d, initial=0) > _EXP_NEAR_OVERFLOW[work]:
                    _redo_overflowed_slopes(d_lv[block], d, d_low, half)
                if prior_scale is not None:
                    scaled = np.where(diff == 0, diff, diff * prior_scale)
                    if not priors_calm:
                        _prior_scaled_outside(scaled, diff, v0, 1)
                    diff = scaled
                if scale is None:
                    d_mu[block] = diff
                else:
                    np.multiply(diff, scale, out=d_mu[block])
    if value:
        kl = kl.reshape(moved[:-1])
    grads = None
    if grad:
        grads = tuple(np.moveaxis(a.reshape(moved), -1, axis) for a in (d_mu, d_lv))
    return kl, grads


# Beyond these e^d may overflow the working dtype (88.7 in float32, 709.8 in float64)
_EXP_NEAR_OVERFLOW = {np.dtype(np.float32): 88.0, np.dtype(np.float64): 709.0}


def _redo_overflowed_rows(kl, total, m, v, m0, v0):
    """Redo the rows of ``kl`` whose ``total`` (twice the divergence) is not finite: their
    terms or sum overflowed (float32: e^89, mu = 2e19; float64: e^710, mu = 1.5e154) though
    half the sum may be finite, and a mean of them is over enough rows. float32 rows in
    float64; float64 rows whose inputs are finite from the halved terms, each rounded once:
    ``e^d / 2`` and ``(mu - mu0)^2 e^-v0 / 2`` by :func:`exp_times_power`, and
    ``-(1 + d) / 2`` (where the row overflows, the cancellation near 0 is far below its
    last place). Limits (an infinite or NaN input) come out the same."""
    rows = np.flatnonzero(~np.isfinite(total))
    wide = [np.asarray(a if np.ndim(a) == 0 else a[rows], np.float64) for a in (m, v, m0, v0)]
    if total.dtype.itemsize < 8:
        kl[rows] = 0.5 * _gaussian_kl_careful(*wide)
        return
    m, v, m0, v0 = np.broadcast_arrays(*wide)
    finite = np.isfinite(m).all(-1) & np.isfinite(v).all(-1)
    finite &= np.isfinite(m0).all(-1) & np.isfinite(v0).all(-1)
    rows, m, v, m0, v0 = rows[finite], m[finite], v[finite], m0[finite], v0[finite]
    d = v - v0
    frac, e = np.frexp(m / 2 - m0 / 2)  # (m - m0) / 2 = frac 2^e: no overflow
    halves = exp_times_power(d, 1.0, -1) - (0.5 + d / 2)
    halves += exp_times_power(-v0, frac * frac, 2 * e + 1)
    kl[rows] = np.sum(halves, axis=-1)


def _redo_overflowed_slopes(d_lv, d, d_low, half):
    """Redo the entries of ``d_lv = (e^d - 1) half`` whose ``e^d`` may have overflowed
    (see ``_EXP_NEAR_OVERFLOW``) though the product may not (``half`` is 1/2 or 1/(2n)):
    float32 in float64, float64 as ``e^d half (1 + d_low)`` by :func:`exp_times_power`
    (``half`` is negligible there); rounded once."""
    where = np.nonzero(d > _EXP_NEAR_OVERFLOW[d.dtype])
    dw = d[where].astype(np.float64)
    low = 0.0 if d_low is None else d_low[where].astype(np.float64)
    if d.dtype.itemsize < 8:
        e = np.expm1(dw)
        e += np.where(low == 0, 0, (e + 1) * low)
        d_lv[where] = e * np.float64(half)
    else:
        d_lv[where] = exp_times_power(dw, half * (1 + low), 0) - half


def _gaussian_kl_careful(mu, logvar, mu_prior, logvar_prior):
    r"""Row sums of the KL terms (twice the divergence), each term within a few ULP.

    :math:`e^\delta - 1 - \delta` by :func:`exp_minus_1_minus` (a series where it
    cancels), the rounding of both differences corrected to first order; every term is
    non-negative, so the sum keeps their accuracy.
    """
    d, d_low = two_diff(logvar, logvar_prior)
    diff, diff_low = two_diff(mu, mu_prior)
    terms, em1 = exp_minus_1_minus(d)
    if d_low is not None:
        terms += np.where(d_low == 0, 0, em1 * d_low)
    square = _scaled_square(diff, logvar_prior)
    if diff_low is not None:
        square *= 1 + 2 * diff_low / np.where(diff == 0, 1, diff)
    return np.sum(terms + square, axis=-1)


@dataclass(frozen=True)
class _VAEArgs:
    """Checked arguments of the VAE loss, in the result dtype."""

    x: np.ndarray  # data (..., D)
    recon: np.ndarray  # decoder output, logits or means (..., D)
    mu: np.ndarray  # encoder means (..., L)
    logvar: np.ndarray  # encoder log-variances (..., L)
    reduction: str
    dtype: np.dtype  # the result dtype


def _vae_args(x, recon, mu, logvar, likelihood, reduction) -> _VAEArgs:
    if not isinstance(likelihood, str) or likelihood not in LIKELIHOODS:
        choices = ", ".join(repr(c) for c in LIKELIHOODS)
        raise ValueError(f"likelihood must be one of {choices}; got {likelihood!r}")
    reduction = check_reduction(reduction)
    x, recon, mu, logvar = float_arrays({"x": x, "recon": recon, "mu": mu, "logvar": logvar})
    dtype = x.dtype
    check_has_axis(x, "x")
    check_has_axis(mu, "mu")
    check_same_shape(x, recon, "x", "recon")
    check_same_shape(mu, logvar, "mu", "logvar")
    if x.shape[:-1] != mu.shape[:-1]:
        raise ValueError(
            f"mu must have the batch shape of x {x.shape[:-1]} (all axes but the last); "
            f"got shape {mu.shape}"
        )
    if likelihood == "bernoulli":
        check_unit_interval(x, "x")
    return _VAEArgs(x, recon, mu, logvar, reduction, dtype)


@quiet
def vae_loss(x, recon, mu, logvar, likelihood="bernoulli", reduction="mean"):
    r"""Negative ELBO of a VAE for one sample :math:`z` of the approximate posterior.

    .. math::

        \mathcal L = -\log p(x \mid z)
          + \mathrm{KL}\big(\mathcal N(\mu, e^{v}) \,\|\, \mathcal N(0, I)\big)

    per sample. For ``likelihood="bernoulli"`` ``recon`` holds logits :math:`r` and
    :math:`-\log p(x\mid z) = \sum_k x_k\,\mathrm{softplus}(-r_k)
    + (1 - x_k)\,\mathrm{softplus}(r_k)` (binary cross-entropy with logits, exact
    for logits of any size); for ``likelihood="gaussian"`` ``recon`` holds the means
    of :math:`\mathcal N(r, I)` and
    :math:`-\log p(x\mid z) = \frac12\sum_k (x_k - r_k)^2 + \frac D2 \log 2\pi`.
    The KL term is :func:`gaussian_kl` over the latent (last) axis.

    Parameters
    ----------
    x : array_like
        Data, shape ``(..., D)``; in [0, 1] for the Bernoulli likelihood.
    recon : array_like
        Decoder output (logits or means), same shape as ``x``.
    mu, logvar : array_like
        Encoder means and log-variances, shape ``(..., L)`` with the batch shape of ``x``.
    likelihood : {"bernoulli", "gaussian"}, optional
        The decoder's likelihood.
    reduction : {"mean", "sum", "none"}, optional
        Over the samples (the per-sample losses have shape ``x.shape[:-1]``).

    Returns
    -------
    ndarray or numpy scalar
        The reduced loss, or the per-sample losses for ``"none"``.

    Raises
    ------
    ValueError
        If ``likelihood`` or ``reduction`` is not one of its choices, an argument is not
        real numeric, ``recon``'s shape differs from ``x``'s or ``logvar``'s from ``mu``'s,
        ``x`` and ``mu`` have different batch shapes or no axis, or ``x`` holds a value
        outside [0, 1] for the Bernoulli likelihood.

    Notes
    -----
    The PyTorch VAE example computes
    ``binary_cross_entropy_with_logits(recon, x, reduction="sum")
    - 0.5 * (1 + logvar - mu**2 - logvar.exp()).sum()``, which is this loss with
    ``reduction="sum"``. See :cite:t:`kingma2014auto`, :cite:t:`rezende2014stochastic`
    and :cite:t:`blei2017variational`.

    float16 and float32 are computed in float32; a sample whose sums or terms overflow
    there (squared residuals beyond 1.8e19, logits near 3.4e38, :math:`e^{v}` for
    :math:`v > 88.7`, :math:`\mu` beyond 1.8e19) is redone in float64, so that a loss, a
    mean or a gradient is infinite only if its exact value is. In float64 such a sample
    (a residual or :math:`\mu` beyond 1.3e154, :math:`v > 709.8`) is redone from halved
    terms, so that its loss and gradient are infinite only if exact; a mean over samples
    whose losses exceed 1.8e308 is ``inf``.

    Examples
    --------
    >>> import numpy as np
    >>> x = np.array([[1.0, 0.0, 1.0]])
    >>> recon = np.array([[2.0, -1.0, 0.5]])
    >>> mu, logvar = np.array([[0.5, -0.5]]), np.array([[0.1, -0.2]])
    >>> float(round(vae_loss(x, recon, mu, logvar), 6))
    1.176218
    >>> float(round(vae_loss(x, recon, mu, logvar, likelihood="gaussian"), 6))
    4.143766
    """
    return _vae_loss(x, recon, mu, logvar, likelihood, reduction, grad=False)[0]


@gradients_in_argument_dtypes("recon", "mu", "logvar")
@quiet
def vae_loss_grad(x, recon, mu, logvar, likelihood="bernoulli", reduction="mean"):
    r"""Gradient of :func:`vae_loss` w.r.t. ``recon``, ``mu`` and ``logvar``.

    .. math::

        \frac{\partial\mathcal L}{\partial r} = \sigma(r) - x \ \text{(Bernoulli)},
        \quad r - x \ \text{(Gaussian)}, \qquad
        \frac{\partial\mathcal L}{\partial \mu} = \mu, \qquad
        \frac{\partial\mathcal L}{\partial v} = \tfrac12 (e^{v} - 1),

    each times the reduction's scale (:math:`1/n` for the mean over :math:`n` samples).

    Parameters
    ----------
    x, recon, mu, logvar, likelihood, reduction
        As for :func:`vae_loss`.

    Returns
    -------
    tuple of ndarray
        ``(d_recon, d_mu, d_logvar)``, shaped and typed as the arguments.

    Raises
    ------
    ValueError
        As :func:`vae_loss`.

    Examples
    --------
    >>> d_recon, d_mu, d_logvar = vae_loss_grad([[1.0, 0.0]], [[0.0, 0.0]], [[0.5]], [[0.0]])
    >>> d_recon.tolist(), d_mu.tolist(), d_logvar.tolist()
    ([[-0.5, 0.5]], [[0.5]], [[0.0]])
    """
    return _vae_loss(x, recon, mu, logvar, likelihood, reduction, value=False)[1]


@gradients_in_argument_dtypes("recon", "mu", "logvar")
@quiet
def vae_loss_value_and_grad(x, recon, mu, logvar, likelihood="bernoulli", reduction="mean"):
    r"""``vae_loss`` and ``vae_loss_grad`` in one pass: the KL term's :math:`e^{v} - 1` is shared.

    Parameters
    ----------
    x, recon, mu, logvar, likelihood, reduction
        Same as :func:`vae_loss`.

    Returns
    -------
    tuple
        ``(vae_loss(...), vae_loss_grad(...))`` with the same arguments, bit for bit: the
        loss and the tuple ``(d_recon, d_mu, d_logvar)``.

    Raises
    ------
    ValueError
        As :func:`vae_loss`.

    Examples
    --------
    >>> args = ([[1.0, 0.0]], [[0.0, 0.0]], [[0.5]], [[0.0]])
    >>> value, (d_recon, d_mu, d_logvar) = vae_loss_value_and_grad(*args)
    >>> value == vae_loss(*args), d_recon.tolist()
    (np.True_, [[-0.5, 0.5]])
    """
    return _vae_loss(x, recon, mu, logvar, likelihood, reduction)


def _redo_wide_samples(nll, x, recon, likelihood):
    """Redo in float64 the samples whose float32 reconstruction sum ``nll`` is not finite:
    squares of residuals beyond 1.8e19 or logits near 3.4e38 overflowed float32 though the
    loss (half the squares) or a mean over the samples may not. Limits come out the same."""
    rows = np.flatnonzero(~np.isfinite(nll))
    if rows.size:
        xw, rw = x[rows].astype(np.float64), recon[rows].astype(np.float64)
        terms = _bce_logits(rw, xw, xw) if likelihood == "bernoulli" else np.square(rw - xw)
        nll[rows] = np.sum(terms, axis=-1)


def _halved_square_rows(nll, x, recon):
    """Redo the float64 samples whose ``nll = sum(r^2) / 2`` is not finite while their data
    are: the residuals (1e308 - (-1e308)) or their squares (beyond 1.3e154) overflowed
    though half their sum may not (:func:`halved_square_sums`)."""
    rows = np.flatnonzero(~np.isfinite(nll))
    rows = rows[np.isfinite(x[rows]).all(axis=-1) & np.isfinite(recon[rows]).all(axis=-1)]
    if rows.size:
        nll[rows] = halved_square_sums(recon[rows], x[rows], np.full(rows.size, 0.5))


def _redo_overflowed_residuals(slope, x, recon, scale):
    """Redo the entries of ``slope = (recon - x) scale`` whose residual overflowed (float32:
    3e38 - (-3e38), float64: 1e308 - (-1e308)) though the mean's scale brings it back:
    float32 in float64, float64 from the halves ``(recon / 2 - x / 2) (2 scale)``; rounded
    once."""
    where = np.nonzero(np.isinf(slope) & np.isfinite(x) & np.isfinite(recon))
    if slope.dtype.itemsize < 8:
        residual = recon[where].astype(np.float64) - x[where].astype(np.float64)
        slope[where] = residual * np.float64(scale)
    else:
        slope[where] = (recon[where] / 2 - x[where] / 2) * (2 * scale)


def _vae_loss(x, recon, mu, logvar, likelihood, reduction, *, value=True, grad=True):
    """``(the reduced negative ELBO or None, (d_recon, d_mu, d_logvar) or None)``.

    The reconstruction term and its slope in cache-sized blocks of samples, from the
    kernels of ``binary_cross_entropy_with_logits`` (no ``pos_weight``: ``c * y = x``);
    the KL term and its gradient from :func:`_gaussian_kl_work`.
    """
    a = _vae_args(x, recon, mu, logvar, likelihood, reduction)
    dtype, reduction = a.dtype, a.reduction
    work = working_dtype(dtype)
    features = a.x.shape[-1]
    samples = int(np.prod(a.x.shape[:-1]))
    x, recon = a.x.reshape(samples, features), a.recon.reshape(samples, features)
    # d(reduced)/d(per-sample loss), never rounded to float16
    scale = None
    if reduction == "mean":
        scale = work.type(np.nan) if samples == 0 else work.type(1.0 / samples)
    zero = np.zeros((), dtype=work)
    prior = _Gaussians(a.mu, a.logvar, zero, zero, dtype)
    kl, kl_grads = _gaussian_kl_work(prior, -1, value, grad, dtype, scale)
    nll = np.empty(samples, dtype=np.float64) if value else None  # (float32 rows redone)
    d_recon = np.empty((samples, features), dtype=dtype) if grad else None
    step = max(1, _BLOCK // max(1, features))
    overflowed = False  # a Gaussian residual (float32 only then redone)
    for start in range(0, samples, step):
        block = slice(start, start + step)
        xb = np.asarray(x[block], dtype=work)
        rb = np.asarray(recon[block], dtype=work)
        if likelihood == "bernoulli":
            if value:
                nll[block] = np.sum(_bce_logits(rb, xb, xb), axis=-1)
            if grad:
                # (1 - x) sigma(r) - x sigma(-r): exact terms, no 1 - sigma(r) cancelling
                slope = _bce_logits_slope(rb, xb, xb)
        else:
            with np.errstate(over="raise"):  # the flag costs nothing; a search would
                try:
                    slope = np.subtract(rb, xb)
                    overflowed = False
                except FloatingPointError:
                    overflowed = True
            if overflowed:
                with np.errstate(over="ignore"):
                    slope = np.subtract(rb, xb)
            if value:
                nll[block] = np.sum(slope * slope, axis=-1)
        if grad:
            if scale is not None:
                slope *= scale
                if overflowed:
                    _redo_overflowed_residuals(slope, xb, rb, scale)
            d_recon[block] = slope
    loss = grads = None
    if value and work.itemsize < 8:
        _redo_wide_samples(nll, x, recon, likelihood)
    if value:
        if likelihood == "gaussian":
            nll *= 0.5
            if work.itemsize == 8 and not np.isfinite(nll).all():
                _halved_square_rows(nll, x, recon)
            nll += features * (0.5 * np.log(2 * np.pi))
        nll += kl.reshape(samples)
        loss = reduce_to(nll.reshape(a.x.shape[:-1]), reduction, dtype)
    if grad:
        grads = (d_recon.reshape(a.x.shape), *kl_grads)
    return loss, grads
